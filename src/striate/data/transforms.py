"""Batch transforms for augmentation, driven by an explicit ``numpy.random.Generator``.

Each transform takes a batch ``(N, C, H, W)`` and a generator and returns a new batch (the input
is never modified).  Random translation teaches a CNN the shift tolerance its pooling only
approximates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["random_shift", "parse_augment"]


def random_shift(images: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Translate each image by its own random (dy, dx) in [-max_shift, max_shift], filling with zeros.

    Vectorised: the batch is zero-padded once and every image's window is gathered with one
    fancy-indexing operation.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"random_shift expects a batch (N, C, H, W), got shape {images.shape}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return images.copy()
    n, c, h, w = images.shape
    s = max_shift
    padded = np.pad(images, ((0, 0), (0, 0), (s, s), (s, s)))
    oy = rng.integers(0, 2 * s + 1, n)
    ox = rng.integers(0, 2 * s + 1, n)
    rows = oy[:, None] + np.arange(h)
    cols = ox[:, None] + np.arange(w)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def parse_augment(spec: str | None):
    """A batch transform ``f(images, rng)`` from a CLI spec: ``none`` or ``shift:K``."""
    if spec is None or spec in ("", "none"):
        return None
    name, _, arg = spec.partition(":")
    if name == "shift":
        try:
            k = int(arg or 2)
        except ValueError:
            raise ValueError(f"--augment shift:K needs an integer K, got {spec!r}") from None
        if k < 0:
            raise ValueError(f"--augment shift:K needs K >= 0, got {spec!r}")
        return lambda images, rng: random_shift(images, rng, k)
    raise ValueError(f"unknown augmentation {spec!r}; known: none, shift:K")
