"""Image folders: ``root/<class name>/<image>.png|jpg`` decoded with Pillow (PNG and JPEG only).

Classes are the sub-directories of ``root`` in sorted order (label ``k`` is ``classes[k]``);
each class's images are found recursively and sorted by path, so the sample order is the same
on every machine.  Files whose extension is not ``.png``, ``.jpg`` or ``.jpeg`` are skipped (and
listed in ``skipped``); a file with an image extension that Pillow cannot decode *as PNG or
JPEG* (a GIF renamed ``.png``, text, a truncated file) raises :class:`DataError` naming it.
Pillow is asked for those two decoders only (``Image.open(path, formats=["PNG", "JPEG"])``), and
the global ``ImageFile.LOAD_TRUNCATED_IMAGES`` switch is left alone, so truncation is an error.

Images are converted to ``mode`` ("L": 1 channel, "RGB": 3 channels; palette, alpha and 16-bit
modes go through Pillow's ``convert``), optionally resized (bilinear) to ``size = (H, W)``,
and returned as ``(C, H, W)`` float32 in [0, 1].
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset, Dataset
from .errors import DataError, missing_extra

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "ImageFolder", "image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FORMATS = ["PNG", "JPEG"]
_MODES = {"L": 1, "RGB": 3}


def _pil_image():
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("Pillow", "reading image folders") from None
    return Image


def _as_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be an int or (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {(h, w)}")
    return h, w


def decode_image(path, mode: str = "RGB", size=None) -> np.ndarray:
    """Decode one PNG/JPEG file to a uint8 array ``(C, H, W)`` in ``mode``, resized to ``size``."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    size = _as_size(size)
    Image = _pil_image()
    path = Path(path)
    try:
        with Image.open(path, formats=_FORMATS) as img:
            img.load()  # decode everything now: a truncated file fails here
            if img.mode != mode:
                img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except Exception as e:  # UnidentifiedImageError, OSError (truncated), SyntaxError, DecompressionBombError ...
        raise DataError(f"{path}: cannot decode as PNG or JPEG: {type(e).__name__}: {e}") from e
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


class ImageFolder(Dataset):
    """A lazily decoded image folder: ``ds[i]`` opens file ``i`` and returns ``(image, label)``.

    ``samples`` is the list of ``(path, label)``; ``labels`` their labels (no decoding needed);
    ``skipped`` the files ignored for their extension.  :meth:`load` decodes everything into an
    :class:`ArrayDataset`.  Reading goes through ``__getitem__``, so a :class:`DataLoader`
    with ``prefetch`` decodes in its background thread.
    """

    def __init__(self, root, *, mode: str = "RGB", size=None, extensions=IMAGE_EXTENSIONS):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: not a directory")
        self.root = root
        self.mode = mode
        self.size = _as_size(size)
        exts = tuple(e.lower() for e in extensions)
        class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)
        if not class_dirs:
            raise DataError(f"{root}: no class sub-directories (expected {root}/<class name>/<image>.png)")
        self.classes = [p.name for p in class_dirs]
        self.samples: list[tuple[Path, int]] = []
        self.skipped: list[Path] = []
        for label, d in enumerate(class_dirs):
            files = sorted(p for p in d.rglob("*") if p.is_file() and _visible(p))
            found = 0
            for p in files:
                if p.suffix.lower() in exts:
                    self.samples.append((p, label))
                    found += 1
                else:
                    self.skipped.append(p)
            if not found:
                raise DataError(f"{d}: class {d.name!r} has no {'/'.join(exts)} files")
        self._labels = np.array([lab for _, lab in self.samples], dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        image = decode_image(path, self.mode, self.size)
        return image.astype(np.float32) / np.float32(255), np.int64(label)

    def load(self, *, errors: str = "raise") -> ArrayDataset:
        """Decode every image into one :class:`ArrayDataset` (N, C, H, W) float32.

        Without ``size`` all images must share the first image's size (else DataError naming
        both files).  ``errors="skip"`` drops undecodable files with a warning instead of raising.
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        keep: list[int] = []
        out: np.ndarray | None = None
        first: Path | None = None
        bad: list[str] = []
        for i, (path, _) in enumerate(self.samples):
            try:
                img = decode_image(path, self.mode, self.size)
            except DataError as e:
                if errors == "raise":
                    raise
                bad.append(str(e))
                continue
            if out is None:
                out = np.empty((len(self.samples),) + img.shape, dtype=np.uint8)
                first = path
            elif img.shape != out.shape[1:]:
                raise DataError(
                    f"{path}: image is {img.shape[1]}x{img.shape[2]} but {first} is "
                    f"{out.shape[2]}x{out.shape[3]}; pass size=(H, W) to resize them to one size"
                )
            out[len(keep)] = img
            keep.append(i)
        if bad:
            warnings.warn(f"{self.root}: skipped {len(bad)} undecodable file(s): " + "; ".join(bad), stacklevel=2)
        if out is None:
            raise DataError(f"{self.root}: no decodable images")
        images = np.empty((len(keep),) + out.shape[1:], dtype=np.float32)
        np.divide(out[: len(keep)], np.float32(255), out=images, casting="unsafe")
        return ArrayDataset(images, self._labels[keep], classes=self.classes)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, {len(self.classes)} classes, mode={self.mode!r})"


def image_folder(root, *, mode: str = "RGB", size=None, errors: str = "raise") -> ArrayDataset:
    """Decode ``root/<class>/<image>`` into an :class:`ArrayDataset` (see :class:`ImageFolder`)."""
    return ImageFolder(root, mode=mode, size=size).load(errors=errors)
