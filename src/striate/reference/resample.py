"""Naive references for resampling: one output sample at a time, from the index formulas.

Downsampling by S keeps x[i*S]; zero-insertion upsampling puts x[i] at i*S and zeros between.
Interpolation computes, for every output sample, the source coordinate of each spatial axis
and the taps (source index, weight) it reads, then sums weight products times input samples:

    y[n, c, o_1, ..., o_d] = sum over taps (j_k, w_k) of axis k:  w_1 * ... * w_d * x[n, c, j_1, ..., j_d]

The backward scatters every dy[n, c, o...] back to the same taps with the same weights.
Arguments are read exactly as ``striate.functional`` reads them (PyTorch's rules); this module
computes the output size itself and never calls a fast kernel.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "downsample", "downsample_backward", "upsample_zeros", "upsample_zeros_backward",
    "interpolate", "interpolate_backward", "upsample", "upsample_backward",
]


def _factor(factor, n):
    f = tuple(factor) if isinstance(factor, (list, tuple)) else (factor,) * n
    f = f * n if len(f) == 1 else f
    return tuple(int(v) for v in f)


# ----------------------------------------------------------------------------- lecture resampling
def downsample(x, factor):
    """y[n, c, o...] = x[n, c, o_1*S_1, ..., o_d*S_d]; ceil(L/S) outputs per axis."""
    S = _factor(factor, x.ndim - 2)
    out = x.shape[:2] + tuple(-(-L // s) for L, s in zip(x.shape[2:], S))
    y = np.zeros(out, dtype=x.dtype)
    for idx in np.ndindex(*out):
        src = idx[:2] + tuple(o * s for o, s in zip(idx[2:], S))
        y[idx] = x[src]
    return y


def downsample_backward(dy, x, factor):
    """dx[n, c, o_1*S_1, ...] = dy[n, c, o...]; the dropped positions get zero."""
    S = _factor(factor, x.ndim - 2)
    dx = np.zeros_like(x)
    for idx in np.ndindex(*dy.shape):
        dx[idx[:2] + tuple(o * s for o, s in zip(idx[2:], S))] += dy[idx]
    return dx


def upsample_zeros(x, factor):
    """y[n, c, p...] = x[n, c, p/S] when every p_k is a multiple of S_k, else 0; (L-1)*S+1 per axis."""
    S = _factor(factor, x.ndim - 2)
    out = x.shape[:2] + tuple((L - 1) * s + 1 for L, s in zip(x.shape[2:], S))
    y = np.zeros(out, dtype=x.dtype)
    for idx in np.ndindex(*out):
        if all(p % s == 0 for p, s in zip(idx[2:], S)):
            y[idx] = x[idx[:2] + tuple(p // s for p, s in zip(idx[2:], S))]
    return y


def upsample_zeros_backward(dy, x, factor):
    """dx[n, c, i...] = dy[n, c, i_1*S_1, ...]: only the inserted samples' own positions count."""
    S = _factor(factor, x.ndim - 2)
    dx = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        dx[idx] = dy[idx[:2] + tuple(i * s for i, s in zip(idx[2:], S))]
    return dx


# ----------------------------------------------------------------------------- interpolation
def _sizes_and_scales(x, size, scale_factor, mode, recompute_scale_factor):
    """Output size per axis and the scale factors the index rules see (None: use in/out)."""
    d = x.ndim - 2
    if size is not None:
        sizes = tuple(size) if isinstance(size, (list, tuple)) else (size,) * d
        return tuple(int(s) for s in sizes), (None,) * d
    sf = tuple(scale_factor) if isinstance(scale_factor, (list, tuple)) else (scale_factor,) * d
    sf = sf * d if len(sf) == 1 else sf
    out = tuple(math.floor(float(L) * float(s)) for L, s in zip(x.shape[2:], sf))
    if recompute_scale_factor or mode == "area":
        return out, (None,) * d
    return out, tuple(float(s) for s in sf)


def _floorf(v) -> int:
    """floor of ``v`` rounded to float32 first (C's floorf on a double, as PyTorch does)."""
    return int(math.floor(float(np.float32(v))))


def _nearest_source(i, n_in, n_out, s, exact, legacy):
    """Source index of output i for 'nearest' ('nearest-exact' when exact)."""
    if legacy:  # PyTorch's 2-D 'nearest': same length -> copy, doubled -> i // 2, else float32 math
        if n_out == n_in:
            return i
        if n_out == 2 * n_in:
            return i // 2
        r = np.float32(1.0 / s) if s is not None and s > 0 else np.float32(n_in) / np.float32(n_out)
        return min(int(math.floor(np.float32(i) * r)), n_in - 1)
    r = 1.0 / s if s is not None and s > 0 else n_in / n_out
    return min(_floorf((i + 0.5) * r if exact else i * r), n_in - 1)


def _coordinate(i, n_in, n_out, s, align_corners, cubic, ft):
    """Source coordinate of output i in op-math type ``ft`` (float32 or float64)."""
    if align_corners:
        r = ft(n_in - 1) / ft(n_out - 1) if n_out > 1 else ft(0)
        return r * ft(i)
    r = ft(1.0 / s) if s is not None and s > 0 else ft(n_in) / ft(n_out)
    src = r * (ft(i) + ft(0.5)) - ft(0.5)
    return src if cubic or src >= 0 else ft(0)


def _cubic(t, a):
    """Keys cubic convolution kernel W(t) at distance |t| (a = -0.75)."""
    t = abs(t)
    if t <= 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return t * 0


def _taps(i, n_in, n_out, s, mode, align_corners, legacy, ft):
    """The (source index, weight) pairs output sample i of one axis reads."""
    if mode in ("nearest", "nearest-exact"):
        return [(_nearest_source(i, n_in, n_out, s, mode == "nearest-exact", legacy), 1.0)]
    if mode == "area":
        start = (i * n_in) // n_out
        end = -(-((i + 1) * n_in) // n_out)
        return [(j, 1.0 / (end - start)) for j in range(start, end)]
    if mode == "bicubic":
        src = _coordinate(i, n_in, n_out, s, align_corners, True, ft)
        j = min(_floorf(src), n_in - 1)
        t = min(max(src - ft(j), ft(0)), ft(1))
        a = ft(-0.75)
        # taps at j-1, j, j+1, j+2 (clamped to the border), at distances t+1, t, 1-t, 2-t
        return [(min(max(j - 1 + k, 0), n_in - 1), _cubic(t - ft(k - 1), a)) for k in range(4)]
    # linear family
    if n_out == n_in and not align_corners:
        return [(i, 1.0)]  # PyTorch copies an axis whose length does not change
    src = _coordinate(i, n_in, n_out, s, align_corners, False, ft)
    j0 = min(_floorf(src), n_in - 1)
    lam = min(max(src - ft(j0), ft(0)), ft(1))
    j1 = j0 + 1 if j0 < n_in - 1 else j0
    return [(j0, ft(1) - lam), (j1, lam)]


def _plan(x, size, scale_factor, mode, align_corners, recompute_scale_factor):
    out, scales = _sizes_and_scales(x, size, scale_factor, mode, recompute_scale_factor)
    ac = bool(align_corners)
    legacy = mode == "nearest" and x.ndim == 4
    ft = np.float64 if x.dtype == np.float64 else np.float32

    def taps(k, i):
        return _taps(i, x.shape[2 + k], out[k], scales[k], mode, ac, legacy, ft)

    return out, taps


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """y[n, c, o...] = sum over the taps of every axis of (product of weights) * x[n, c, j...]."""
    out, taps = _plan(x, size, scale_factor, mode, align_corners, recompute_scale_factor)
    y = np.zeros(x.shape[:2] + out, dtype=x.dtype)
    for n, c in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*out):
            acc = 0.0
            for combo in itertools.product(*(taps(k, i) for k, i in enumerate(o))):
                w = 1.0
                for _, wk in combo:
                    w *= float(wk)
                acc += w * x[(n, c) + tuple(j for j, _ in combo)]
            y[(n, c) + o] = acc
    return y


def interpolate_backward(dy, x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                         recompute_scale_factor=None, antialias=False):
    """dx[n, c, j...] += (product of weights) * dy[n, c, o...] for every tap of every output."""
    out, taps = _plan(x, size, scale_factor, mode, align_corners, recompute_scale_factor)
    dx = np.zeros(x.shape, dtype=np.float64)
    for n, c in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*out):
            g = float(dy[(n, c) + o])
            for combo in itertools.product(*(taps(k, i) for k, i in enumerate(o))):
                w = 1.0
                for _, wk in combo:
                    w *= float(wk)
                dx[(n, c) + tuple(j for j, _ in combo)] += w * g
    return dx.astype(x.dtype)


def upsample(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """``interpolate`` under PyTorch's older name, plus mode='zeros' (factor = scale_factor or size)."""
    if mode == "zeros":
        return upsample_zeros(x, scale_factor if scale_factor is not None else size)
    return interpolate(x, size, scale_factor, mode, align_corners)


def upsample_backward(dy, x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    if mode == "zeros":
        return upsample_zeros_backward(dy, x, scale_factor if scale_factor is not None else size)
    return interpolate_backward(dy, x, size, scale_factor, mode, align_corners)
