"""Naive references for the affine layer, broadcasting arithmetic and padding."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["linear", "linear_backward", "broadcast_binary", "broadcast_binary_backward", "pad", "pad_backward"]


def linear(x, w, b=None):
    """z[..., o] = sum_i x[..., i] * w[o, i] + b[o], one output element at a time."""
    lead = x.shape[:-1]
    out = np.zeros(lead + (w.shape[0],), dtype=x.dtype)
    for idx in np.ndindex(*lead):
        for o in range(w.shape[0]):
            acc = 0.0
            for i in range(w.shape[1]):
                acc += x[idx + (i,)] * w[o, i]
            out[idx + (o,)] = acc + (b[o] if b is not None else 0.0)
    return out


def linear_backward(dy, x, w, b=None):
    """dx[..., i] = sum_o dy[..., o] w[o, i];  dw[o, i] = sum_... dy[..., o] x[..., i];  db[o] = sum dy[..., o]."""
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = None if b is None else np.zeros_like(b)
    for idx in np.ndindex(*x.shape[:-1]):
        for o in range(w.shape[0]):
            g = dy[idx + (o,)]
            for i in range(w.shape[1]):
                dx[idx + (i,)] += g * w[o, i]
                dw[o, i] += g * x[idx + (i,)]
            if db is not None:
                db[o] += g
    return dx, dw, db


def _source_index(out_idx, shape):
    """Index into an array of ``shape`` broadcast to an output index (size-1 axes repeat)."""
    lead = len(out_idx) - len(shape)
    return tuple(0 if s == 1 else out_idx[lead + k] for k, s in enumerate(shape))


def broadcast_binary(f, a, b):
    """out[i] = f(a[i'], b[i'']) where i', i'' are ``i`` folded back onto each input's shape."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = np.zeros(shape, dtype=np.result_type(a, b))
    for idx in np.ndindex(*shape):
        out[idx] = f(a[_source_index(idx, a.shape)], b[_source_index(idx, b.shape)])
    return out


def broadcast_binary_backward(dfa, dfb, dy, a, b):
    """Each input element collects dy * (df/dinput) from every output element it was copied to."""
    da, db = np.zeros_like(a), np.zeros_like(b)
    for idx in np.ndindex(*dy.shape):
        ia, ib = _source_index(idx, a.shape), _source_index(idx, b.shape)
        da[ia] += dy[idx] * dfa(a[ia], b[ib])
        db[ib] += dy[idx] * dfb(a[ia], b[ib])
    return da, db


def pad(x, pad, value=0.0):
    """Constant padding: out[j] = x[j - before] where that lies inside x, else ``value``."""
    pairs = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        pairs[x.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    shape = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, pairs))
    out = np.full(shape, value, dtype=x.dtype)
    for idx in np.ndindex(*shape):
        src = tuple(j - lo for j, (lo, _) in zip(idx, pairs))
        if all(0 <= s < n for s, n in zip(src, x.shape)):
            out[idx] = x[src]
    return out


def pad_backward(dy, x, pad, value=0.0):
    """dx[i] = dy[i + before] for every input element that survived (cropped ones get 0)."""
    pairs = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        pairs[x.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    dx = np.zeros_like(x)
    for idx in itertools.product(*(range(s) for s in x.shape)):
        dst = tuple(i + lo for i, (lo, _) in zip(idx, pairs))
        if all(0 <= d < n for d, n in zip(dst, dy.shape)):
            dx[idx] = dy[dst]
    return dx
