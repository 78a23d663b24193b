"""IDX files (MNIST, Fashion-MNIST, EMNIST, KMNIST): a validating reader, a writer, a loader.

The format (big-endian)::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 * d       each dimension as a uint32
    payload     prod(dims) elements, row-major

so MNIST images start with the magic number 0x00000803 (uint8, 3 dims: N, rows, cols) and labels
with 0x00000801 (uint8, 1 dim: N).  Files may be gzip-compressed (recognised by content, not by
name).  Every check raises :class:`~striate.data.DataError` naming the file and the numbers:
magic, header length, payload length against the header, image/label counts, label range.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset
from .errors import DataError

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "read_idx",
    "write_idx",
    "load_idx",
    "idx_dataset",
    "FASHION_MNIST_CLASSES",
]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip stream: {e}") from e
    return raw


def _describe_magic(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    kind = np.dtype(_DTYPES[code]).name if code in _DTYPES else f"unknown type 0x{code:02X}"
    return f"0x{magic:08X} ({kind}, {ndim} dims)"


def read_idx(path, *, expect_magic: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (native byte order), after validating it.

    ``expect_magic`` (e.g. :data:`IMAGES_MAGIC`) makes any other magic number an error.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for the 4-byte IDX magic number")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(
            f"{path}: bad IDX magic number 0x{magic:08X} (expected 0x0000TTDD with a type byte TT in "
            f"{{{', '.join(f'0x{c:02X}' for c in _DTYPES)}}}); not an IDX file"
        )
    if expect_magic is not None and magic != expect_magic:
        raise DataError(
            f"{path}: magic number {_describe_magic(magic)}, expected {_describe_magic(expect_magic)}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header of {ndim} dims needs {header} bytes, file holds {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        what = "truncated" if actual < expected else "trailing bytes"
        raise DataError(
            f"{path}: header declares dims {dims} = {expected} payload bytes, file holds {actual} ({what})"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path, array) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code (use one of {sorted(map(str, _CODES))})")
    if array.ndim > 255:
        raise ValueError(f"write_idx: {array.ndim} dims, IDX allows at most 255")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=np.dtype(_DTYPES[code])).tobytes()
    data = header + payload
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def load_idx(images_path, labels_path, *, num_classes: int | None = None, transpose: bool = False):
    """Read an IDX image file and its label file; validate them against each other.

    Returns ``(images, labels)``: images ``(N, 1, H, W)`` float32 in [0, 1] (uint8 / 255),
    labels ``(N,)`` int64.  With ``num_classes`` every label must be below it.  ``transpose``
    swaps rows and columns (EMNIST stores its images transposed).
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = read_idx(images_path, expect_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expect_magic=LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    labels = labels.astype(np.int64)
    if num_classes is not None and len(labels):
        bad = np.flatnonzero(labels >= num_classes)
        if bad.size:
            raise DataError(
                f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is out of range for "
                f"{num_classes} classes ({bad.size} labels >= {num_classes})"
            )
    if transpose:
        images = images.transpose(0, 2, 1)
    out = np.empty((len(images), 1) + images.shape[1:], dtype=np.float32)
    np.divide(images[:, None], np.float32(255), out=out, casting="unsafe")
    return out, labels


_IMAGE_WORDS = re.compile(r"images|idx3", re.I)
_LABEL_WORDS = re.compile(r"labels|idx1", re.I)
_TEST_WORDS = re.compile(r"t10k|test", re.I)
_TRAIN_WORDS = re.compile(r"train", re.I)


def _find(directory: Path, files: list[Path], kind: re.Pattern, split: re.Pattern, what: str) -> Path | None:
    hits = [f for f in files if kind.search(f.name) and split.search(f.name)]
    if split is _TRAIN_WORDS:
        hits = [f for f in hits if not _TEST_WORDS.search(f.name)]
    if len(hits) > 1:
        raise DataError(f"{directory}: several {what} files: {', '.join(sorted(h.name for h in hits))}")
    return hits[0] if hits else None


def idx_dataset(directory, *, num_classes: int | None = None):
    """The train and test sets of an MNIST-style directory of IDX files.

    Recognises the usual names (``train-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte``,
    ``emnist-balanced-test-images-idx3-ubyte`` ...): a file is images if its name contains
    ``images`` or ``idx3``, labels if ``labels`` or ``idx1``; test if ``t10k`` or ``test``,
    train if ``train``.  EMNIST files (names starting ``emnist``) are transposed upright.

    Returns ``(train, test)`` :class:`ArrayDataset` s; ``test`` is None when the directory has
    no test files.  ``num_classes`` defaults to 10 (MNIST, Fashion-MNIST) -- a label outside
    0..9 is then an error, not a new class -- and, for EMNIST (whose splits have 10 to 62
    classes), to the largest training label + 1; test labels must lie below it.  Class names are the digits, or Fashion-MNIST's when the directory's
    name mentions "fashion" and there are ten classes.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    files = [f for f in directory.iterdir() if f.is_file()]
    found = {
        (split_name, kind_name): _find(directory, files, kind, split, f"{split_name} {kind_name}")
        for split_name, split in (("train", _TRAIN_WORDS), ("test", _TEST_WORDS))
        for kind_name, kind in (("images", _IMAGE_WORDS), ("labels", _LABEL_WORDS))
    }
    if found["train", "images"] is None or found["train", "labels"] is None:
        raise DataError(
            f"{directory}: no IDX training images/labels found (looked for names like "
            f"train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]); the directory holds: "
            f"{', '.join(sorted(f.name for f in files)) or 'nothing'}"
        )
    if (found["test", "images"] is None) != (found["test", "labels"] is None):
        present = found["test", "images"] or found["test", "labels"]
        raise DataError(f"{directory}: test file {present.name} has no matching images/labels partner")
    transpose = found["train", "images"].name.lower().startswith("emnist")
    if num_classes is None and not transpose:
        num_classes = 10
    x_tr, y_tr = load_idx(found["train", "images"], found["train", "labels"], num_classes=num_classes, transpose=transpose)
    k = num_classes if num_classes is not None else (int(y_tr.max()) + 1 if len(y_tr) else 0)
    if "fashion" in str(directory.resolve()).lower() and k == 10:
        classes = list(FASHION_MNIST_CLASSES)
    else:
        classes = [str(c) for c in range(k)]
    train = ArrayDataset(x_tr, y_tr, classes=classes)
    test = None
    if found["test", "images"] is not None:
        x_te, y_te = load_idx(found["test", "images"], found["test", "labels"], num_classes=k, transpose=transpose)
        if x_te.shape[1:] != x_tr.shape[1:]:
            raise DataError(
                f"{found['test', 'images']}: images are {x_te.shape[2:]} but the training images "
                f"{found['train', 'images'].name} are {x_tr.shape[2:]}"
            )
        test = ArrayDataset(x_te, y_te, classes=classes)
    return train, test
