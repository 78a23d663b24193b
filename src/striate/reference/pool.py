"""Naive references for pooling: one output element at a time, forward and backward.

Transcribes the lecture's pooling loops (0-based here).  For every map (the leading axes) and
every output position ``i`` (one index per spatial axis) the window's taps are visited one by
one, ``p = i * S - P + k * d`` for each kernel offset ``k``:

* max pooling records the position of the largest tap (``pidx``) and copies its value; the
  backward adds each output's gradient at its recorded position with ``+=``, because an element
  may be the maximum of several overlapping windows;
* mean pooling averages the taps; the backward gives each tap ``dy / divisor``;
* adaptive pooling uses the windows ``[floor(i*L/Lo), ceil((i+1)*L/Lo))``;
* unpooling writes each value at its index in a zero map; the backward reads it back.

Taps that fall in the padding are skipped (max pooling treats padding as ``-inf``, mean pooling
as ``0``).  Only the argument normalisation of ``striate.kernels.shapes`` is shared with the
fast kernels.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..kernels.shapes import as_tuple, pool_out_size

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool1d_backward", "max_pool2d_backward",
    "avg_pool1d", "avg_pool2d", "avg_pool1d_backward", "avg_pool2d_backward",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool1d_backward", "adaptive_max_pool2d_backward",
    "max_unpool1d", "max_unpool2d", "max_unpool1d_backward", "max_unpool2d_backward",
]


def _geometry(x, nd, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = as_tuple(kernel_size, nd, "kernel_size")
    stride = kernel if stride is None else as_tuple(stride, nd, "stride")
    pad = as_tuple(padding, nd, "padding")
    dil = as_tuple(dilation, nd, "dilation")
    size = x.shape[x.ndim - nd:]
    out = tuple(pool_out_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip(size, kernel, stride, pad, dil))
    return kernel, stride, pad, dil, size, out


def _flat(pos, size):
    """Row-major position of ``pos`` inside a plane of shape ``size``."""
    f = 0
    for p, n in zip(pos, size):
        f = f * n + p
    return f


def _taps(i, kernel, stride, pad, dil):
    """Every tap of window ``i``: (kernel offset, input position) in row-major offset order."""
    for k in itertools.product(*(range(kk) for kk in kernel)):
        yield k, tuple(ii * s - p + kk * d for ii, s, p, kk, d in zip(i, stride, pad, k, dil))


def _inside(pos, size):
    return all(0 <= p < n for p, n in zip(pos, size))


# ------------------------------------------------------------------------------------- max
def _max_pool(x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    kernel, stride, pad, dil, size, out = _geometry(x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    lead = x.shape[: x.ndim - nd]
    y = np.zeros(lead + out, dtype=x.dtype)
    pidx = np.zeros(lead + out, dtype=np.int64)
    for m in np.ndindex(*lead):
        for i in np.ndindex(*out):
            # as PyTorch: start from -inf at the first tap that is not in the left padding
            # (kept when no real element beats -inf), then scan the window in row-major order
            best, where = -np.inf, None
            for _, pos in _taps(i, kernel, stride, pad, dil):
                if where is None and all(p >= 0 for p in pos):
                    where = pos
                if not _inside(pos, size):
                    continue  # padding is -inf: never the maximum
                v = x[m + pos]
                if v > best or np.isnan(v):
                    best, where = v, pos
            y[m + i] = best
            pidx[m + i] = _flat(where, size)
    return y, pidx


def _max_pool_backward(dy, x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    _, pidx = _max_pool(x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    size = x.shape[x.ndim - nd:]
    dx = np.zeros_like(x)
    for m in np.ndindex(*pidx.shape[: pidx.ndim - nd]):
        for i in np.ndindex(*pidx.shape[pidx.ndim - nd:]):
            pos = divmod(int(pidx[m + i]), size[-1]) if nd == 2 else (int(pidx[m + i]),)
            if _inside(pos, size):  # a window of padding only has no input to send dy to
                dx[m + pos] += dy[m + i]  # += : overlapping windows share a max
    return dx


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """y[n, c, i] = max_k x[n, c, i*S - P + k*d]; indices = the argmax position l."""
    y, idx = _max_pool(x, 1, kernel_size, stride, padding, dilation, ceil_mode)
    return (y, idx) if return_indices else y


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """y[n, c, i, j] = max over (a, b) of x[n, c, i*Sh - Ph + a*dh, j*Sw - Pw + b*dw];
    indices = h * W + w of the (first) maximum."""
    y, idx = _max_pool(x, 2, kernel_size, stride, padding, dilation, ceil_mode)
    return (y, idx) if return_indices else y


def max_pool1d_backward(dy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, **_):
    """dx[argmax_i] += dy[i]."""
    return _max_pool_backward(dy, x, 1, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, **_):
    """dx[argmax_ij] += dy[i, j]."""
    return _max_pool_backward(dy, x, 2, kernel_size, stride, padding, dilation, ceil_mode)


# ------------------------------------------------------------------------------------ mean
def _divisor(i, size, kernel, stride, pad, count_include_pad, divisor_override):
    """PyTorch's divisor for window ``i``: its size cut at the padded end (padding counted) or
    the number of real elements, unless overridden."""
    if divisor_override is not None:
        return divisor_override
    total = 1
    for ii, n, k, s, p in zip(i, size, kernel, stride, pad):
        a = ii * s - p
        b = min(a + k, n + p)
        total *= (b - a) if count_include_pad else (min(b, n) - max(a, 0))
    return total


def _avg_pool(x, nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    kernel, stride, pad, dil, size, out = _geometry(x, nd, kernel_size, stride, padding, 1, ceil_mode)
    lead = x.shape[: x.ndim - nd]
    y = np.zeros(lead + out, dtype=x.dtype)
    for m in np.ndindex(*lead):
        for i in np.ndindex(*out):
            acc = 0.0
            for _, pos in _taps(i, kernel, stride, pad, dil):
                if _inside(pos, size):  # padding contributes 0 to the sum
                    acc += x[m + pos]
            y[m + i] = acc / _divisor(i, size, kernel, stride, pad, count_include_pad, divisor_override)
    return y


def _avg_pool_backward(dy, x, nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    kernel, stride, pad, dil, size, out = _geometry(x, nd, kernel_size, stride, padding, 1, ceil_mode)
    dx = np.zeros_like(x)
    for m in np.ndindex(*x.shape[: x.ndim - nd]):
        for i in np.ndindex(*out):
            g = dy[m + i] / _divisor(i, size, kernel, stride, pad, count_include_pad, divisor_override)
            for _, pos in _taps(i, kernel, stride, pad, dil):
                if _inside(pos, size):
                    dx[m + pos] += g
    return dx


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """y[n, c, i] = sum_k x[n, c, i*S - P + k] / divisor_i (zero padding)."""
    return _avg_pool(x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    """y[n, c, i, j] = sum over the window / divisor_ij (zero padding)."""
    return _avg_pool(x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def avg_pool1d_backward(dy, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """dx[tap] += dy[i] / divisor_i for each tap of each window."""
    return _avg_pool_backward(dy, x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                        divisor_override=None):
    """dx[tap] += dy[i, j] / divisor_ij for each tap of each window."""
    return _avg_pool_backward(dy, x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


# -------------------------------------------------------------------------------- adaptive
def _adaptive_out(x, nd, output_size):
    size = x.shape[x.ndim - nd:]
    if output_size is None or isinstance(output_size, (int, np.integer)):
        entries = (output_size,) * nd
    else:
        entries = tuple(output_size)
        if len(entries) == 1:
            entries = entries * nd
    return size, tuple(n if e is None else int(e) for n, e in zip(size, entries))


def _adaptive_window(i, size, out):
    """Positions of window ``i``: per axis range(floor(i*n/o), ceil((i+1)*n/o))."""
    ranges = [range(math.floor(ii * n / o), math.ceil((ii + 1) * n / o)) for ii, n, o in zip(i, size, out)]
    return list(itertools.product(*ranges))


def _adaptive_avg(x, nd, output_size):
    size, out = _adaptive_out(x, nd, output_size)
    lead = x.shape[: x.ndim - nd]
    y = np.zeros(lead + out, dtype=x.dtype)
    for m in np.ndindex(*lead):
        for i in np.ndindex(*out):
            window = _adaptive_window(i, size, out)
            y[m + i] = sum(x[m + pos] for pos in window) / len(window)
    return y


def _adaptive_avg_backward(dy, x, nd, output_size):
    size, out = _adaptive_out(x, nd, output_size)
    dx = np.zeros_like(x)
    for m in np.ndindex(*x.shape[: x.ndim - nd]):
        for i in np.ndindex(*out):
            window = _adaptive_window(i, size, out)
            for pos in window:
                dx[m + pos] += dy[m + i] / len(window)
    return dx


def _adaptive_max(x, nd, output_size):
    size, out = _adaptive_out(x, nd, output_size)
    lead = x.shape[: x.ndim - nd]
    y = np.zeros(lead + out, dtype=x.dtype)
    idx = np.zeros(lead + out, dtype=np.int64)
    for m in np.ndindex(*lead):
        for i in np.ndindex(*out):
            best, where = -np.inf, None
            for pos in _adaptive_window(i, size, out):
                v = x[m + pos]
                if where is None or v > best or np.isnan(v):
                    best, where = v, pos
            y[m + i] = best
            idx[m + i] = _flat(where, size)
    return y, idx


def _adaptive_max_backward(dy, x, nd, output_size):
    _, idx = _adaptive_max(x, nd, output_size)
    size = x.shape[x.ndim - nd:]
    dx = np.zeros_like(x)
    for m in np.ndindex(*idx.shape[: idx.ndim - nd]):
        for i in np.ndindex(*idx.shape[idx.ndim - nd:]):
            dx[m + tuple(int(p) for p in np.unravel_index(idx[m + i], size))] += dy[m + i]
    return dx


def adaptive_avg_pool1d(x, output_size):
    """y[n, c, i] = mean of x[n, c, floor(i*L/Lo) : ceil((i+1)*L/Lo)]."""
    return _adaptive_avg(x, 1, output_size)


def adaptive_avg_pool2d(x, output_size):
    """y[n, c, i, j] = mean of x over rows window_i and columns window_j."""
    return _adaptive_avg(x, 2, output_size)


def adaptive_avg_pool1d_backward(dy, x, output_size):
    return _adaptive_avg_backward(dy, x, 1, output_size)


def adaptive_avg_pool2d_backward(dy, x, output_size):
    return _adaptive_avg_backward(dy, x, 2, output_size)


def adaptive_max_pool1d(x, output_size, return_indices=False):
    y, idx = _adaptive_max(x, 1, output_size)
    return (y, idx) if return_indices else y


def adaptive_max_pool2d(x, output_size, return_indices=False):
    y, idx = _adaptive_max(x, 2, output_size)
    return (y, idx) if return_indices else y


def adaptive_max_pool1d_backward(dy, x, output_size, return_indices=False):
    return _adaptive_max_backward(dy, x, 1, output_size)


def adaptive_max_pool2d_backward(dy, x, output_size, return_indices=False):
    return _adaptive_max_backward(dy, x, 2, output_size)


# --------------------------------------------------------------------------------- unpool
def _unpool_size(x, nd, kernel_size, stride, padding, output_size):
    kernel = as_tuple(kernel_size, nd, "kernel_size")
    stride = kernel if stride is None else as_tuple(stride, nd, "stride")
    pad = as_tuple(padding, nd, "padding")
    if output_size is not None:
        return tuple(output_size)[-nd:]
    size = x.shape[x.ndim - nd:]
    return tuple((n - 1) * s - 2 * p + k for n, s, p, k in zip(size, stride, pad, kernel))


def _max_unpool(x, indices, nd, kernel_size, stride=None, padding=0, output_size=None):
    out = _unpool_size(x, nd, kernel_size, stride, padding, output_size)
    lead = x.shape[: x.ndim - nd]
    y = np.zeros(lead + out, dtype=x.dtype)
    for m in np.ndindex(*lead):
        for i in np.ndindex(*x.shape[x.ndim - nd:]):
            pos = np.unravel_index(int(indices[m + i]), out)
            y[m + tuple(int(p) for p in pos)] = x[m + i]
    return y


def _max_unpool_backward(dy, x, indices, nd):
    out = dy.shape[dy.ndim - nd:]
    dx = np.zeros_like(x)
    for m in np.ndindex(*x.shape[: x.ndim - nd]):
        for i in np.ndindex(*x.shape[x.ndim - nd:]):
            pos = np.unravel_index(int(indices[m + i]), out)
            dx[m + i] = dy[m + tuple(int(p) for p in pos)]
    return dx


def max_unpool1d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """y = 0 except y[n, c, indices[n, c, i]] = x[n, c, i]."""
    return _max_unpool(x, indices, 1, kernel_size, stride, padding, output_size)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """y = 0 except y[n, c].flat[indices[n, c, i, j]] = x[n, c, i, j]."""
    return _max_unpool(x, indices, 2, kernel_size, stride, padding, output_size)


def max_unpool1d_backward(dy, x, indices, *_, **__):
    """dx[n, c, i] = dy[n, c, indices[n, c, i]]."""
    return _max_unpool_backward(dy, x, indices, 1)


def max_unpool2d_backward(dy, x, indices, *_, **__):
    """dx[n, c, i, j] = dy[n, c].flat[indices[n, c, i, j]]."""
    return _max_unpool_backward(dy, x, indices, 2)
