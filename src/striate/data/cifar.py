"""CIFAR-10 and CIFAR-100 from local files: the binary version and the python-pickle version.

Binary version (``cifar-10-batches-bin``, ``cifar-100-binary``): each record is the label
byte(s) then 3072 pixel bytes, the 1024 red, 1024 green and 1024 blue values of a 32x32 image
row by row, so a record is already ``(3, 32, 32)`` channel-major.  CIFAR-10 records have one
label byte (``data_batch_1.bin`` ... ``data_batch_5.bin``, ``test_batch.bin``); CIFAR-100 records
have two, coarse then fine (``train.bin``, ``test.bin``).  A file whose length is not a whole
number of records is refused.

Python version (``cifar-10-batches-py``, ``cifar-100-python``): pickled dicts holding a uint8
``data`` array (N, 3072) and a label list, read only through
:class:`~striate.data.safe_pickle.RestrictedUnpickler`, which rebuilds plain arrays and refuses
every other global (a hostile pickle raises :class:`DataError` and runs nothing).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset
from .errors import DataError
from .safe_pickle import safe_load

__all__ = [
    "CIFAR10_CLASSES",
    "read_cifar_binary",
    "read_cifar_pickle",
    "cifar_dataset",
]

PIXELS = 3 * 32 * 32

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


def read_cifar_binary(path, label_bytes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Records of a binary CIFAR file: ``(images uint8 (N, 3, 32, 32), labels uint8 (N, label_bytes))``."""
    path = Path(path)
    if label_bytes not in (1, 2):
        raise ValueError(f"label_bytes must be 1 (CIFAR-10) or 2 (CIFAR-100), got {label_bytes}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    record = label_bytes + PIXELS
    if len(raw) == 0 or len(raw) % record:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a whole number of {record}-byte records "
            f"({label_bytes} label byte(s) + {PIXELS} pixels): {len(raw) // record} records and "
            f"{len(raw) % record} bytes left over"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy(), rows[:, :label_bytes].copy()


def read_cifar_pickle(path) -> dict:
    """One python-version CIFAR batch as a dict with ``str`` keys (``data``, ``labels`` ...)."""
    path = Path(path)
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _check_labels(path, labels: np.ndarray, k: int, what: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        bad = int(np.flatnonzero((labels < 0) | (labels >= k))[0])
        raise DataError(f"{path}: {what} label {int(labels[bad])} at record {bad} is out of range for {k} classes")


def _batch_from_pickle(path: Path, label_key: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: batch dict lacks {'data' if 'data' not in batch else label_key!r}; keys: {sorted(map(str, batch))}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array (N, {PIXELS}), got {desc}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: {label_key!r} is not a list of integers: {e}") from e
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} {label_key!r}")
    _check_labels(path, labels, k, label_key)
    return data.reshape(-1, 3, 32, 32), labels


def _to_float(images: np.ndarray) -> np.ndarray:
    out = np.empty(images.shape, dtype=np.float32)
    np.divide(images, np.float32(255), out=out, casting="unsafe")
    return out


def _batch_number(path: Path) -> int:
    m = re.search(r"(\d+)", path.name)
    return int(m.group(1)) if m else 0


def _names_from_text(path: Path, k: int) -> list[str] | None:
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return names if len(names) == k else None


def _names_from_pickle(path: Path, key: str, k: int) -> list[str] | None:
    if not path.is_file():
        return None
    names = read_cifar_pickle(path).get(key)
    if not isinstance(names, list) or len(names) != k:
        return None
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _locate(root: Path) -> tuple[str, Path]:
    """(layout, directory) for a CIFAR root or the directory that contains the extracted one."""
    candidates = [root] + [root / d for d in ("cifar-10-batches-bin", "cifar-100-binary", "cifar-10-batches-py", "cifar-100-python")]
    for d in candidates:
        if not d.is_dir():
            continue
        if any(d.glob("data_batch_*.bin")):
            return "10-bin", d
        if (d / "train.bin").is_file():
            return "100-bin", d
        if any(p.is_file() for p in d.glob("data_batch_*") if p.suffix == ""):
            return "10-py", d
        if (d / "train").is_file():
            return "100-py", d
    listing = ", ".join(sorted(p.name for p in root.iterdir())) if root.is_dir() else "not a directory"
    raise DataError(
        f"{root}: no CIFAR files found (expected data_batch_*.bin, train.bin, data_batch_* or train, "
        f"here or in an extracted cifar-* folder); found: {listing or 'nothing'}"
    )


def cifar_dataset(root, *, label_mode: str = "fine"):
    """CIFAR-10 or CIFAR-100 train and test sets from a local directory (layout auto-detected).

    ``root`` is the extracted folder (or its parent).  For CIFAR-100 ``label_mode`` picks the
    ``"fine"`` (100) or ``"coarse"`` (20) labels.  Returns ``(train, test)`` :class:`ArrayDataset`
    s with images (N, 3, 32, 32) float32 in [0, 1]; ``test`` is None if the test file is absent.
    Class names come from the metadata file when present (CIFAR-10 falls back to the standard
    names, CIFAR-100 to the label numbers).
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    root = Path(root)
    layout, d = _locate(root)
    if layout in ("10-bin", "10-py"):
        k = 10
    else:
        k = 100 if label_mode == "fine" else 20

    def load_bin(path: Path):
        if layout == "10-bin":
            images, labels = read_cifar_binary(path, 1)
            labels = labels[:, 0].astype(np.int64)
        else:
            images, labels = read_cifar_binary(path, 2)
            labels = labels[:, 1 if label_mode == "fine" else 0].astype(np.int64)
        _check_labels(path, labels, k, label_mode if layout == "100-bin" else "class")
        return images, labels

    def load_py(path: Path):
        key = "labels" if layout == "10-py" else f"{label_mode}_labels"
        return _batch_from_pickle(path, key, k)

    if layout == "10-bin":
        train_files = sorted(d.glob("data_batch_*.bin"), key=_batch_number)
        test_file = d / "test_batch.bin"
        classes = _names_from_text(d / "batches.meta.txt", 10)
        loader = load_bin
    elif layout == "100-bin":
        train_files = [d / "train.bin"]
        test_file = d / "test.bin"
        classes = _names_from_text(d / f"{label_mode}_label_names.txt", k)
        loader = load_bin
    elif layout == "10-py":
        train_files = sorted((p for p in d.glob("data_batch_*") if p.suffix == ""), key=_batch_number)
        test_file = d / "test_batch"
        classes = _names_from_pickle(d / "batches.meta", "label_names", 10)
        loader = load_py
    else:
        train_files = [d / "train"]
        test_file = d / "test"
        classes = _names_from_pickle(d / "meta", f"{label_mode}_label_names", k)
        loader = load_py
    if classes is None:
        classes = list(CIFAR10_CLASSES) if k == 10 else [str(c) for c in range(k)]

    parts = [loader(p) for p in train_files]
    train = ArrayDataset(
        _to_float(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts]), classes=classes
    )
    test = None
    if test_file.is_file():
        x, y = loader(test_file)
        test = ArrayDataset(_to_float(x), y, classes=classes)
    return train, test
