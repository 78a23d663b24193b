"""Resampling: the lecture's downsampling (keep every S-th sample) and zero-insertion upsampling.

Downsampling by S drops S-1 of every S rows/columns; upsampling by S inserts S-1 zeros between
neighbouring samples.  Each is the other's backward: the gradient of a downsample scatters dY back
to the kept positions (zeros elsewhere, i.e. an upsample), and the gradient of an upsample keeps
only the positions that held real samples (a downsample).

These act on the trailing ``len(factor)`` axes of any array, so the same code serves 1-D (N, C, L)
and 2-D (N, C, H, W) maps.
"""

from __future__ import annotations

import numpy as np

__all__ = ["downsample_forward", "downsample_backward", "upsample_zeros_forward", "upsample_zeros_backward"]


def _steps(x: np.ndarray, factor: tuple[int, ...]) -> tuple[slice, ...]:
    return (slice(None),) * (x.ndim - len(factor)) + tuple(slice(None, None, f) for f in factor)


def downsample_forward(x: np.ndarray, factor: tuple[int, ...]):
    """y[..., i, j] = x[..., i*S, j*S]: keep every S-th sample of each trailing axis."""
    y = np.ascontiguousarray(x[_steps(x, factor)])
    return y, (x.shape, factor)


def downsample_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx is dy placed at the kept positions, zero at the dropped ones."""
    shape, factor = cache
    dx = np.zeros(shape, dtype=dy.dtype)
    dx[_steps(dx, factor)] = dy
    return dx


def upsample_zeros_forward(x: np.ndarray, factor: tuple[int, ...]):
    """Insert S-1 zeros between neighbours: length L becomes (L-1)*S + 1 on each trailing axis."""
    lead = x.shape[: x.ndim - len(factor)]
    tail = x.shape[x.ndim - len(factor):]
    y = np.zeros(lead + tuple((n - 1) * f + 1 if n > 0 else 0 for n, f in zip(tail, factor)), dtype=x.dtype)
    y[_steps(y, factor)] = x
    return y, factor


def upsample_zeros_backward(dy: np.ndarray, cache) -> np.ndarray:
    """Only the positions that held real samples received anything: keep every S-th gradient."""
    factor = cache
    return np.ascontiguousarray(dy[_steps(dy, factor)])
