"""Datasets held in memory, views of them, deterministic splits and per-channel normalisation.

A dataset is anything with ``__len__`` and ``__getitem__`` returning one sample, usually an
``(image, label)`` pair with the image ``(C, H, W)`` float32 in [0, 1] and the label an int64.

*Array-backed* datasets (:class:`TensorDataset`, :class:`ArrayDataset` and views of them through
:class:`Subset` or :class:`TransformedDataset`) also answer ``get_batch(indices)``: the whole batch
in one fancy-indexing gather per array, ``images[indices]``, with no Python loop over samples.
:class:`~striate.data.DataLoader` uses ``get_batch`` whenever a dataset has it; the base class's
``get_batch`` falls back to one ``__getitem__`` per index followed by :func:`collate`.

Splits are index arithmetic from an explicit seed (:func:`split_indices`,
:func:`train_val_split`); normalisation statistics come from the training split only
(:meth:`Normalize.fit`, :func:`standardize`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .errors import DataError

__all__ = [
    "Dataset",
    "TensorDataset",
    "ArrayDataset",
    "Subset",
    "TransformedDataset",
    "collate",
    "labels_of",
    "split_indices",
    "train_val_split",
    "channel_stats",
    "Normalize",
    "standardize",
]


def collate(samples: Sequence[Any]):
    """Stack a list of samples into a batch: tuples field by field, arrays along a new axis 0.

    ``[(x0, y0), (x1, y1)]`` becomes ``(stack([x0, x1]), stack([y0, y1]))``; Python ints become an
    int64 array and Python floats a float64 array (NumPy's defaults on this platform).
    """
    if len(samples) == 0:
        raise ValueError("collate needs at least one sample")
    first = samples[0]
    if isinstance(first, (tuple, list)):
        width = len(first)
        for s in samples:
            if not isinstance(s, (tuple, list)) or len(s) != width:
                raise ValueError(
                    f"collate: samples disagree in structure: the first has {width} fields, "
                    f"another is {type(s).__name__} of length {len(s) if hasattr(s, '__len__') else '?'}"
                )
        return tuple(_stack([s[k] for s in samples]) for k in range(width))
    return _stack(samples)


def _stack(values):
    out = np.stack([np.asarray(v) for v in values])
    if out.ndim == 1 and out.dtype.kind in "iu":  # scalar integer labels -> int64 like torch
        out = out.astype(np.int64, copy=False)
    return out


class Dataset:
    """Base class: subclasses define ``__len__`` and ``__getitem__(i) -> sample``.

    ``classes`` (a list of class names, or None) gives ``num_classes``.  ``array_backed`` is True
    for datasets whose ``get_batch`` is one vectorised gather rather than a loop.
    """

    classes: list[str] | None = None
    array_backed: bool = False

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    @property
    def num_classes(self) -> int | None:
        """``len(classes)``, or None when the dataset carries no class list."""
        return None if self.classes is None else len(self.classes)

    def get_batch(self, indices: np.ndarray):
        """The samples at ``indices`` (a 1-D int array) collated into one batch."""
        return collate([self[int(i)] for i in np.asarray(indices).reshape(-1)])

    def with_transform(self, transform: Callable[[np.ndarray], np.ndarray]) -> "TransformedDataset":
        """A view of this dataset whose images (the first field) pass through ``transform``."""
        return TransformedDataset(self, transform)


class TensorDataset(Dataset):
    """Samples are the rows of equally long arrays: ``ds[i] == tuple(a[i] for a in arrays)``.

    The arrays are kept as given (``np.asarray``, no copy); ``get_batch(idx)`` gathers every
    array with one fancy index, ``tuple(a[idx] for a in arrays)``.
    """

    array_backed = True

    def __init__(self, *arrays, classes: Sequence[str] | None = None):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        arrays = tuple(np.asarray(a) for a in arrays)
        for k, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: array {k} is a scalar; every array needs a leading sample axis")
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError(
                "TensorDataset: arrays disagree in length: "
                + ", ".join(f"array {k} has {len(a)} rows (shape {a.shape})" for k, a in enumerate(arrays))
            )
        self.arrays = arrays
        self.classes = None if classes is None else [str(c) for c in classes]

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def get_batch(self, indices: np.ndarray):
        idx = np.asarray(indices, dtype=np.intp)
        return tuple(a[idx] for a in self.arrays)


class ArrayDataset(TensorDataset):
    """An in-memory labelled image set: ``images`` (N, C, H, W) and ``labels`` (N,).

    Integer labels are stored as int64; with ``classes`` given, every label must lie in
    ``[0, len(classes))``.  Labels may also be any other per-sample target (boxes, masks): only
    1-D integer labels are range-checked and converted.
    """

    def __init__(self, images, labels, classes: Sequence[str] | None = None):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim < 2:
            raise ValueError(f"ArrayDataset: images must be (N, C, H, W) (or at least (N, D)), got shape {images.shape}")
        if labels.ndim == 1 and labels.dtype.kind in "iub":
            labels = labels.astype(np.int64, copy=False)
        super().__init__(images, labels, classes=classes)
        if self.classes is not None and labels.ndim == 1 and labels.dtype == np.int64 and len(labels):
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= len(self.classes):
                raise DataError(
                    f"ArrayDataset: labels span [{lo}, {hi}] but there are {len(self.classes)} classes "
                    f"(labels must lie in [0, {len(self.classes) - 1}])"
                )

    @property
    def images(self) -> np.ndarray:
        return self.arrays[0]

    @property
    def labels(self) -> np.ndarray:
        return self.arrays[1]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(self.images.shape[1:])

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(images={self.images.shape} {self.images.dtype}, labels={self.labels.shape} "
            f"{self.labels.dtype}, num_classes={self.num_classes})"
        )


def _dataset_len(dataset) -> int:
    try:
        return len(dataset)
    except TypeError as e:
        raise TypeError(f"a dataset needs __len__; {type(dataset).__name__} has none") from e


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order (no copy of the data).

    Array-backed if ``dataset`` is: ``get_batch(j)`` is ``dataset.get_batch(indices[j])``.
    """

    def __init__(self, dataset, indices):
        n = _dataset_len(dataset)
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"Subset indices must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"Subset indices span [{idx.min()}, {idx.max()}] but the dataset has {n} samples")
        self.dataset = dataset
        self.indices = idx
        self.array_backed = bool(getattr(dataset, "array_backed", False))

    @property
    def classes(self):  # type: ignore[override]
        return getattr(self.dataset, "classes", None)

    @property
    def labels(self) -> np.ndarray:
        """The labels of the chosen samples, without touching the images where possible."""
        return labels_of(self.dataset)[self.indices]

    @property
    def images(self) -> np.ndarray:
        """The chosen images gathered into a new array."""
        return self.get_batch(np.arange(len(self)))[0]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices: np.ndarray):
        chosen = self.indices[np.asarray(indices, dtype=np.intp)]
        getter = getattr(self.dataset, "get_batch", None)
        if getter is not None:
            return getter(chosen)
        return collate([self.dataset[int(i)] for i in chosen])

    def __repr__(self) -> str:
        return f"Subset({len(self)} of {type(self.dataset).__name__} with {_dataset_len(self.dataset)})"


class TransformedDataset(Dataset):
    """``dataset`` with ``transform`` applied to the images (the first field of each sample).

    ``transform`` is a *batch* transform: it receives ``(N, C, H, W)`` and returns ``(N, ...)``.
    ``get_batch`` applies it once to the whole batch; ``ds[i]`` applies it to a batch of one.
    """

    def __init__(self, dataset, transform: Callable[[np.ndarray], np.ndarray]):
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.dataset = dataset
        self.transform = transform
        self.array_backed = bool(getattr(dataset, "array_backed", False))

    @property
    def classes(self):  # type: ignore[override]
        return getattr(self.dataset, "classes", None)

    @property
    def labels(self) -> np.ndarray:
        return labels_of(self.dataset)

    def __len__(self) -> int:
        return _dataset_len(self.dataset)

    def __getitem__(self, index):
        sample = self.dataset[index]
        if isinstance(sample, tuple):
            return (self.transform(np.asarray(sample[0])[None])[0],) + tuple(sample[1:])
        return self.transform(np.asarray(sample)[None])[0]

    def get_batch(self, indices: np.ndarray):
        getter = getattr(self.dataset, "get_batch", None)
        batch = getter(indices) if getter is not None else collate(
            [self.dataset[int(i)] for i in np.asarray(indices).reshape(-1)]
        )
        if isinstance(batch, tuple):
            return (self.transform(batch[0]),) + tuple(batch[1:])
        return self.transform(batch)

    def __repr__(self) -> str:
        return f"TransformedDataset({self.dataset!r}, {self.transform!r})"


def labels_of(data) -> np.ndarray:
    """The label array of a dataset (``.labels`` if it has one) or of an ``(images, labels)`` tuple.

    Datasets without a ``labels`` attribute are read sample by sample (field 1 of each sample).
    """
    if isinstance(data, (tuple, list)):
        if len(data) < 2:
            raise ValueError("labels_of needs (images, labels, ...) arrays; got a single array")
        return np.asarray(data[1])
    labels = getattr(data, "labels", None)
    if labels is not None:
        return np.asarray(labels)
    n = _dataset_len(data)
    return np.asarray([data[i][1] for i in range(n)])


# ----------------------------------------------------------------------------------- splits


def _as_generator(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _val_count(n: int, val_fraction) -> int:
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into a non-empty train and validation part")
    if isinstance(val_fraction, (bool, np.bool_)):
        raise TypeError("val_fraction must be a float in (0, 1) or an int count")
    if isinstance(val_fraction, (int, np.integer)):
        k = int(val_fraction)
        if not 1 <= k <= n - 1:
            raise ValueError(f"a validation count of {k} leaves an empty part of {n} samples (need 1..{n - 1})")
        return k
    f = float(val_fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    return min(max(int(round(f * n)), 1), n - 1)


def split_indices(n: int, val_fraction=0.1, seed=0, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``(train_idx, val_idx)``, disjoint, covering ``range(n)``, each sorted.

    The validation part has ``round(val_fraction * n)`` samples (clipped to ``1..n-1``; an int
    ``val_fraction`` is a count).  With ``labels`` (length ``n``) the split is *stratified*: each
    class gives ``val_fraction`` of its samples, rounded by largest remainder so the total is
    exact, so class proportions are equal in both parts up to one sample per class.
    """
    n = int(n)
    k = _val_count(n, val_fraction)
    rng = _as_generator(seed)
    if labels is None:
        perm = rng.permutation(n)
        return np.sort(perm[k:]), np.sort(perm[:k])
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"stratify labels must have shape ({n},), got {labels.shape}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = counts * (k / n)
    take = np.floor(quota).astype(np.int64)
    short = k - int(take.sum())
    if short > 0:  # largest remainders first; ties go to the earlier class (stable sort)
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:short]] += 1
    val_parts = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        val_parts.append(members[rng.permutation(len(members))[: take[c]]])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, np.int64)
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask).astype(np.int64), val.astype(np.int64)


def train_val_split(data, val_fraction=0.1, seed=0, stratify=False):
    """Split a dataset, or a tuple of equally long arrays, into (train, val) deterministically.

    * ``data`` a dataset: returns two :class:`Subset` views.
    * ``data`` a tuple ``(images, labels, ...)`` of arrays: returns two tuples of arrays.

    ``seed`` is an int or a ``numpy.random.Generator``; the same seed gives the same split.
    ``stratify=True`` keeps class proportions (labels from ``data``); an array gives the labels
    to stratify on.  See :func:`split_indices` for the sizes.
    """
    labels = None
    if stratify is not False and stratify is not None:
        labels = labels_of(data) if stratify is True else np.asarray(stratify)
    if isinstance(data, (tuple, list)):
        arrays = [np.asarray(a) for a in data]
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError(f"train_val_split: arrays disagree in length: {[len(a) for a in arrays]}")
        tr, va = split_indices(n, val_fraction, seed, labels)
        return tuple(a[tr] for a in arrays), tuple(a[va] for a in arrays)
    tr, va = split_indices(_dataset_len(data), val_fraction, seed, labels)
    return Subset(data, tr), Subset(data, va)


# ---------------------------------------------------------------------------- normalisation


def _iter_image_chunks(data, batch_size: int):
    if isinstance(data, np.ndarray):
        for s in range(0, len(data), batch_size):
            yield data[s : s + batch_size]
        return
    n = _dataset_len(data)
    getter = getattr(data, "get_batch", None)
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(s + batch_size, n))
        batch = getter(idx) if getter is not None else collate([data[int(i)] for i in idx])
        yield np.asarray(batch[0] if isinstance(batch, tuple) else batch)


def channel_stats(data, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of images ``(N, C, ...)``.

    ``data`` is an array or a dataset (images in field 0).  Streams over chunks of
    ``batch_size`` samples in float64, merging the chunks' means and centred sums of squares
    (Chan et al.), so a dataset that does not fit in memory twice is fine.
    """
    count = 0
    mean = m2 = None
    for x in _iter_image_chunks(data, int(batch_size)):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2 or len(x) == 0:
            if x.ndim < 2:
                raise ValueError(f"channel_stats needs images (N, C, ...), got a chunk of shape {x.shape}")
            continue
        axes = (0,) + tuple(range(2, x.ndim))
        nb = x.size // x.shape[1]
        mb = x.mean(axis=axes)
        m2b = ((x - mb.reshape((1, -1) + (1,) * (x.ndim - 2))) ** 2).sum(axis=axes)
        if mean is None:
            count, mean, m2 = nb, mb, m2b
            continue
        if mb.shape != mean.shape:
            raise ValueError(f"channel_stats: chunks disagree in channel count: {mean.shape[0]} vs {mb.shape[0]}")
        total = count + nb
        delta = mb - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta**2 * (count * nb / total)
        count = total
    if mean is None:
        raise ValueError("channel_stats: no samples")
    return mean, np.sqrt(m2 / count)


class Normalize:
    """Per-channel standardisation ``(x - mean[c]) / std[c]`` of images ``(..., C, H, W)``.

    A batch transform (works on ``(N, C, H, W)`` and ``(C, H, W)``); returns float32.  Fit the
    statistics on the training split only::

        norm = Normalize.fit(train)              # mean/std over train's images
        train, val = train.with_transform(norm), val.with_transform(norm)
    """

    def __init__(self, mean, std):
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"Normalize: mean has {mean.size} channels, std has {std.size}")
        if not (np.all(np.isfinite(std)) and np.all(std > 0) and np.all(np.isfinite(mean))):
            raise ValueError(f"Normalize: std must be finite and positive and mean finite, got mean={mean}, std={std}")
        self.mean = mean
        self.std = std

    @classmethod
    def fit(cls, data, *, batch_size: int = 1024, min_std: float = 1e-6) -> "Normalize":
        """Statistics of ``data`` (array or dataset); a channel with std below ``min_std`` gets 1."""
        mean, std = channel_stats(data, batch_size)
        std = np.where(std < min_std, 1.0, std)
        return cls(mean, std)

    @property
    def num_channels(self) -> int:
        return self.mean.size

    def _shaped(self, x: np.ndarray):
        if x.ndim < 3 or x.shape[-3] != self.mean.size:
            raise ValueError(
                f"Normalize expects images (..., {self.mean.size}, H, W), got shape {x.shape}"
            )
        shape = (self.mean.size, 1, 1)
        return self.mean.reshape(shape), self.std.reshape(shape)

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x)
        mean, std = self._shaped(x)
        return ((x - mean) / std).astype(np.float32, copy=False)

    def inverse(self, x) -> np.ndarray:
        """Undo the standardisation: ``x * std[c] + mean[c]``."""
        x = np.asarray(x)
        mean, std = self._shaped(x)
        return (x * std + mean).astype(np.float32, copy=False)

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalize":
        return cls(state["mean"], state["std"])

    def __repr__(self) -> str:
        fmt = lambda a: "[" + ", ".join(f"{v:.4f}" for v in a) + "]"  # noqa: E731
        return f"Normalize(mean={fmt(self.mean)}, std={fmt(self.std)})"


def standardize(train, *others, batch_size: int = 1024):
    """Fit :class:`Normalize` on ``train`` alone and apply it to ``train`` and every other split.

    Returns ``(normalize, train_view, *other_views)``, each view a :class:`TransformedDataset`::

        norm, train, val = standardize(train, val)
    """
    norm = Normalize.fit(train, batch_size=batch_size)
    return (norm,) + tuple(TransformedDataset(d, norm) for d in (train,) + others)
