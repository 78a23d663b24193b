"""Batch normalisation and dropout: forward/backward pairs on NumPy arrays.

Batch normalisation (Ioffe & Szegedy, 2015) over an input ``x`` of shape (N, C, *S), where ``S``
is zero, one or more spatial axes.  Every channel ``c`` is normalised with statistics over its
``M = N * prod(S)`` values::

    mean_c  = (1/M) sum x                        (training: the batch; eval: running_mean)
    var_c   = (1/M) sum (x - mean_c)^2           (biased; eval: running_var)
    xhat    = (x - mean_c) / sqrt(var_c + eps)
    y       = gamma_c * xhat + beta_c            (gamma = 1, beta = 0 without affine parameters)

In training the running statistics are updated, in place, with the *unbiased* batch variance::

    running_mean <- (1 - momentum) * running_mean + momentum * mean_c
    running_var  <- (1 - momentum) * running_var  + momentum * var_c * M / (M - 1)

Backward in training (the statistics depend on x) is the closed form, with dxhat = gamma * dy::

    dx     = (1/M) * inv_std * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
    dgamma = sum(dy * xhat),   dbeta = sum(dy)          (sums over the M values of a channel)

and in eval mode (the statistics are constants) the op is an affine map per channel:
``dx = dy * gamma * inv_std``.

Dropout zeroes each element (``dropout``) or each whole channel (``dropout2d``) with probability
``p`` and scales what is kept by ``1 / (1 - p)``, so the expectation of the output is the input.
The boolean keep-mask is drawn from a ``numpy.random.Generator`` and saved for backward:
``dx = dy * mask / (1 - p)``.

All reductions are over every axis but C (``einsum`` on an (N, C, L) view), made over chunks of
the batch axis that run on every core; nothing loops over channel or pixel indices.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import device_of, get_array_module
from . import parallel, workspace
from .shapes import ShapeError, check_float, check_rank, check_same_dtype, fmt_shape

__all__ = [
    "BatchNormCache", "check_batch_norm_args", "batch_norm_forward", "batch_norm_backward",
    "batch_norm_update_running_stats",
    "check_dropout_p", "dropout_mask", "dropout2d_mask_shape", "dropout_forward", "dropout_backward",
]


# --------------------------------------------------------------------------- batch norm helpers
def _ncl(a: np.ndarray) -> np.ndarray:
    """(N, C, *S) -> (N, C, L) with L = prod(S): a view when possible, else one copy."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _channel_sum(a: np.ndarray) -> np.ndarray:
    """sum over every axis but C: (N, C, *S) -> (C,)."""
    return get_array_module(a).einsum("ncl->c", _ncl(a))


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum over every axis but C of a * b, without materialising the product."""
    return get_array_module(a, b).einsum("ncl,ncl->c", _ncl(a), _ncl(b))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector viewed as (1, C, 1, ...) so it broadcasts along C of an ndim-D input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class BatchNormCache(NamedTuple):
    """What ``batch_norm_backward`` needs (and the batch statistics, for the running update).

    ``saved`` is the input ``x`` when ``saved_is_input`` (what :func:`batch_norm_forward`
    keeps: xhat is rebuilt chunk by chunk in the backward, never stored); a cache built with
    ``saved_is_input=False`` holds ``xhat`` in training and ``x`` in eval.  ``mean`` and ``var``
    are the statistics used (batch or running).
    """

    training: bool
    saved: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    weight: np.ndarray | None
    has_bias: bool
    count: int  # M, values per channel
    saved_is_input: bool = False


def check_batch_norm_args(x, running_mean, running_var, weight, bias, training, momentum, eps) -> None:
    """Raise, before anything is computed or updated, if the arguments cannot work together.

    * ``x`` must be a floating array of rank 2 to 5, (N, C, *S);
    * ``running_mean``, ``running_var``, ``weight``, ``bias`` must be None or shaped (C,), with
      ``x``'s dtype; the running statistics are required in eval mode;
    * in training, each channel needs more than one value (M = N * prod(S) > 1);
    * ``momentum`` must be a number (``None``, PyTorch's cumulative average, is the module's job).
    """
    if not isinstance(x, np.ndarray) and device_of(x) == "cpu":
        raise TypeError(f"batch_norm: input must be an array, got {type(x).__name__}")
    check_float(x, "batch_norm: input")
    check_rank(x, (2, 3, 4, 5), "batch_norm: input", "(N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)")
    C = x.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if v is None:
            continue
        if not isinstance(v, np.ndarray) and device_of(v) == "cpu":
            raise TypeError(f"batch_norm: {name} must be an array or a Tensor, got {type(v).__name__}")
        if v.shape != (C,):
            raise ShapeError(
                f"batch_norm: {name} has shape {fmt_shape(v.shape)} but must be ({C},), one value per "
                f"channel of input {fmt_shape(x.shape)}"
            )
    check_same_dtype(input=x, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("batch_norm: running_mean must be defined in evaluation mode (training=False)")
    if momentum is None:
        raise NotImplementedError(
            "batch_norm: momentum=None (cumulative moving average) needs a count of batches, which "
            "the functional form does not keep; pass momentum=1/num_batches_tracked (as nn.BatchNorm "
            "does) or a float"
        )
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, (int, float, np.integer, np.floating)):
        raise TypeError(f"batch_norm: momentum must be a float, got {momentum!r}")
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"batch_norm: eps must be a float, got {eps!r}")
    if training:
        count = x.size // C if C else 0
        if count <= 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{fmt_shape(x.shape)}"
            )


# --------------------------------------------------------------------------- batch norm kernels
#
# How it runs.  Every per-channel reduction and every elementwise pass is made over chunks of
# whole images (a slice of the batch axis, about 1 MiB each, see _chunks): the temporaries
# of a chunk stay in the cache, the chunks run on every core (kernels/parallel.py), and the
# partial sums of the chunks are added in chunk order, so results do not depend on the threads.
# Training forward is three streaming passes over x -- the mean, the centred sum of squares
# (two passes, for accuracy), then y = x * scale + shift with scale = gamma * inv_std and
# shift = beta - mean * scale -- and keeps x itself (not xhat) for the backward, which needs one
# pass for its two sums and one for dx.

_CHUNK_BYTES = 1 << 20  # per chunk of images: big enough for threads to pay (workspace.row_chunks)


def _chunks(x3: np.ndarray):
    """Slices of the batch axis of ``x3 (N, C, L)`` for chunked passes."""
    return workspace.row_chunks(x3.shape[0], x3[0].nbytes if x3.shape[0] else 0, _CHUNK_BYTES)


def _run(fn, chunks):
    return parallel.run_chunks(fn, chunks) if len(chunks) > 1 else [fn(chunks[0])]


def _ordered_sum(parts):
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


# a per-channel row spans at least this many elements (whole images of a chunk; see _row)
_ROW_MIN = 8192


def _row(v: np.ndarray, length: int, dtype) -> np.ndarray:
    """A per-channel vector ``v (C,)`` spread over whole images, for :func:`_rowwise`: a
    C-contiguous ``(k*C*L,)`` array, ``v[c]`` at ``(i, c, l)``, ``k`` the fewest images making
    at least ``_ROW_MIN`` values.

    NumPy's loops run an array against a ``(1, C, 1)`` broadcast with the stride-0 operand in
    the innermost loop, a path 1.4-1.8x slower here than two contiguous operands; against a
    row of whole images only the outer axis is broadcast.  The row must not be short.  Rows of
    one image of ``C*L = 4096`` values (ResNet-20's 64x8x8 maps) make some processes 2-3x
    slower on every pass against them, depending on where the arrays happen to lie (AMD
    EPYC; a 1 MiB chunk took 735 instead of 56 us in the worst case measured): batch norm
    fwd+bwd of 128x64x8x8 on one thread, three processes each, 2.9-4.9 ms in rows of one
    image, 2.2-2.5 ms in rows of two.  Rows of under 4096 values pay the loop overhead (1,024
    to 3,840 values: 89-94 us against 56-63 us per 1 MiB).  Same values, bit for bit."""
    c_l = len(v) * length
    k = 1 if c_l >= _ROW_MIN or c_l == 0 else -(-_ROW_MIN // c_l)
    one = np.repeat(np.asarray(v, dtype=dtype).reshape(-1, 1), length, axis=1).reshape(-1)
    return np.tile(one, k) if k > 1 else one


def _rowwise(ufunc, a: np.ndarray, row: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``ufunc(a, v, out=out)`` for a chunk ``a (n, C, L)`` and ``row = _row(v, L, dtype)``: a
    C-contiguous chunk as rows of the row's length, the images left over (fewer than the row
    spans) against the start of the row; other strides (an input that is a strided view)
    against the row's first image broadcast over the chunk."""
    m, size = row.size, a.size
    if not (a.flags.c_contiguous and out.flags.c_contiguous):
        return ufunc(a, row[:a[0].size].reshape((1,) + a.shape[1:]), out=out)
    whole = size // m * m
    flat_a, flat_out = a.reshape(-1), out.reshape(-1)
    if whole:
        ufunc(flat_a[:whole].reshape(-1, m), row, out=flat_out[:whole].reshape(-1, m))
    if whole < size:
        ufunc(flat_a[whole:], row[:size - whole], out=flat_out[whole:])
    return out


def _batch_stats(x3: np.ndarray, count: int):
    """Per-channel mean and biased variance of ``x3 (N, C, L)`` over its ``count`` = N*L values,
    in one chunked pass: each chunk's mean and sum of squared deviations from it (two passes over
    a chunk that is still in the cache), combined in chunk order by Chan et al.'s rule
    ``M2 = sum_k M2_k + sum_k n_k (mean_k - mean)^2`` (in float64; deterministic)."""
    chunks = _chunks(x3)
    per = x3.shape[2]

    def stats(sl):
        xs = x3[sl]
        n_k = xs.shape[0] * per
        mean_k = np.einsum("ncl->c", xs) / xs.dtype.type(n_k)
        d = _rowwise(np.subtract, xs, _row(mean_k, per, xs.dtype), workspace.buffer("bn_tmp", xs.shape, xs.dtype))
        return n_k, mean_k.astype(np.float64), np.einsum("ncl,ncl->c", d, d).astype(np.float64)

    parts = _run(stats, chunks)
    mean = sum(n_k * m_k for n_k, m_k, _ in parts) / count
    m2 = parts[0][2].copy()
    for _, _, m2_k in parts[1:]:
        m2 += m2_k
    for n_k, m_k, _ in parts:
        m2 += n_k * (m_k - mean) ** 2
    return mean.astype(x3.dtype), (m2 / count).astype(x3.dtype)


def _affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``y = x * scale + shift`` per channel, chunk by chunk: one pass over x, one over y."""
    x3 = _ncl(x)
    y = workspace.output(x.shape, x.dtype)
    y3 = y.reshape(x3.shape)
    sc, sh = _row(scale, x3.shape[2], x.dtype), _row(shift, x3.shape[2], x.dtype)

    def work(sl):
        out = y3[sl]
        _rowwise(np.multiply, x3[sl], sc, out)
        _rowwise(np.add, out, sh, out)

    _run(work, _chunks(x3))
    return y


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    *,
    training: bool = False,
    eps: float = 1e-5,
):
    """x (N, C, *S) -> y (N, C, *S) normalised per channel; returns ``(y, cache)``.

    Training uses the batch mean and biased variance over the N * prod(S) values of each channel;
    eval uses ``running_mean`` / ``running_var``.  Both compute ``y = x * scale + shift`` with
    ``scale = gamma * inv_std`` and ``shift = beta - mean * scale`` (= gamma * xhat + beta).
    This kernel does **not** touch the running statistics: call
    :func:`batch_norm_update_running_stats` with the cache afterwards.
    """
    check_batch_norm_args(x, running_mean, running_var, weight, bias, training, 0.0, eps)
    C = x.shape[1]
    count = x.size // C if C else 0
    eps = float(eps)
    if get_array_module(x, weight, bias, running_mean, running_var) is not np:
        return _batch_norm_device(x, weight, bias, running_mean, running_var, bool(training), eps, count)
    if training:
        if x.size == 0:  # pragma: no cover - refused by the argument check (count > 1)
            raise ValueError("batch_norm: empty input")
        mean, var = _batch_stats(_ncl(x), count)
    else:
        mean, var = running_mean, running_var
    inv_std = 1.0 / np.sqrt(var + eps)
    scale = inv_std if weight is None else weight * inv_std
    shift = -mean * scale if bias is None else bias - mean * scale
    y = _affine(x, scale.astype(x.dtype, copy=False), shift.astype(x.dtype, copy=False))
    cache = BatchNormCache(bool(training), x, mean, var, inv_std, weight, bias is not None, count, True)
    return y, cache


def _batch_norm_device(x, weight, bias, running_mean, running_var, training, eps, count):
    """Batch norm for device (CuPy) arrays: whole-batch reductions instead of the chunked,
    threaded passes.  The cache holds xhat (training) or x (eval), as ``_backward_from_xhat``
    expects."""
    ndim = x.ndim
    if training:
        mean = _channel_sum(x) / x.dtype.type(count)
        d = x - _per_channel(mean, ndim)
        var = _channel_dot(d, d) / x.dtype.type(count)
    else:
        mean, var, d = running_mean, running_var, None
    inv_std = 1.0 / get_array_module(x).sqrt(var + eps)
    if training:
        xhat = d
        xhat *= _per_channel(inv_std, ndim)
        y = xhat * _per_channel(weight, ndim) if weight is not None else xhat.copy()
        if bias is not None:
            y += _per_channel(bias, ndim)
    else:
        scale = inv_std if weight is None else weight * inv_std
        shift = -mean * scale if bias is None else bias - mean * scale
        y = x * _per_channel(scale.astype(x.dtype, copy=False), ndim)
        y += _per_channel(shift.astype(x.dtype, copy=False), ndim)
    saved = xhat if training else x
    cache = BatchNormCache(training, saved, mean, var, inv_std, weight, bias is not None, count, False)
    return y, cache


def batch_norm_update_running_stats(
    running_mean: np.ndarray, running_var: np.ndarray, cache: BatchNormCache, momentum: float,
) -> None:
    """In place: running <- (1 - momentum) * running + momentum * batch statistic.

    The variance folded in is the unbiased one, var * M / (M - 1), as PyTorch does.  Only the
    two buffers are written; call once per training forward.
    """
    if not cache.training:
        raise ValueError("batch_norm_update_running_stats: the cache comes from an eval-mode forward")
    m = float(momentum)
    unbiased = cache.var * (cache.count / (cache.count - 1))
    running_mean *= 1.0 - m
    running_mean += m * cache.mean
    running_var *= 1.0 - m
    running_var += m * unbiased


def batch_norm_backward(dy: np.ndarray, cache: BatchNormCache, need=(True, True, True)):
    """dy (N, C, *S) -> (dx, dweight, dbias); entries not in ``need`` (or absent) are None.

    Training: dx = (gamma * inv_std) * (dy - sum(dy)/M - xhat * sum(dy * xhat)/M), which is the
    closed form (1/M) inv_std (M dxhat - sum dxhat - xhat sum(dxhat xhat)) with dxhat = gamma dy.
    Eval: dx = dy * gamma * inv_std.  Both: dgamma = sum(dy * xhat), dbeta = sum(dy).

    With ``xhat = (x - mean) * inv_std`` this is computed from the saved input in two chunked
    passes: ``sum(dy)`` and ``sum(dy * (x - mean))`` in one, then
    ``dx = k * dy - a * (x - mean) - k * sum(dy)/M`` with ``k = gamma * inv_std`` and
    ``a = k * inv_std * sum(dy * xhat)/M``.
    """
    need = tuple(need) + (True,) * (3 - len(need))
    w = cache.weight
    k = cache.inv_std if w is None else w * cache.inv_std  # d y / d x for fixed statistics
    want_dw = need[1] and w is not None
    want_db = need[2] and cache.has_bias
    dx = dw = db = None
    if not cache.saved_is_input:  # a cache holding xhat (e.g. built by another kernel)
        return _backward_from_xhat(dy, cache, need, k, want_dw, want_db)
    x3, dy3 = _ncl(cache.saved), _ncl(np.ascontiguousarray(dy))
    chunks = _chunks(dy3)
    m3 = _row(cache.mean, x3.shape[2], x3.dtype)
    train_dx = cache.training and need[0]
    sums_needed = want_dw or want_db or train_dx
    sum_dy = sum_dy_xhat = None
    if sums_needed:
        def sums(sl):
            d = _rowwise(np.subtract, x3[sl], m3, workspace.buffer("bn_tmp", x3[sl].shape, x3.dtype))
            return np.einsum("ncl->c", dy3[sl]), np.einsum("ncl,ncl->c", dy3[sl], d)

        parts = _run(sums, chunks)
        sum_dy = _ordered_sum([p[0] for p in parts])
        sum_dy_xhat = _ordered_sum([p[1] for p in parts]) * cache.inv_std
    if need[0]:
        dx = workspace.output(dy.shape, dy.dtype)
        dx3 = dx.reshape(dy3.shape)
        length = dy3.shape[2]
        kk = _row(k, length, dy.dtype)
        if cache.training:
            M = cache.count
            a = _row(k * cache.inv_std * (sum_dy_xhat / M), length, dy.dtype)
            c = _row(k * (sum_dy / M), length, dy.dtype)

            def work(sl):
                t = _rowwise(np.subtract, x3[sl], m3, workspace.buffer("bn_tmp", x3[sl].shape, x3.dtype))
                _rowwise(np.multiply, t, a, t)
                out = dx3[sl]
                _rowwise(np.multiply, dy3[sl], kk, out)
                out -= t
                _rowwise(np.subtract, out, c, out)
        else:
            def work(sl):
                _rowwise(np.multiply, dy3[sl], kk, dx3[sl])

        _run(work, chunks)
    if want_dw:
        dw = sum_dy_xhat.astype(dy.dtype, copy=False)
    if want_db:
        db = sum_dy.astype(dy.dtype, copy=False)
    return dx, dw, db


def _backward_from_xhat(dy, cache, need, k, want_dw, want_db):
    """The backward for a cache whose ``saved`` is xhat (training) or x (eval), unchunked."""
    ndim = dy.ndim
    dx = dw = db = None
    if cache.training:
        xhat, M = cache.saved, cache.count
        sum_dy = _channel_sum(dy)                 # = dbeta
        sum_dy_xhat = _channel_dot(dy, xhat)      # = dgamma
        if need[0]:
            dx = dy * _per_channel(k, ndim)
            dx -= xhat * _per_channel(k * (sum_dy_xhat / M), ndim)
            dx -= _per_channel(k * (sum_dy / M), ndim)
        if want_dw:
            dw = sum_dy_xhat
        if want_db:
            db = sum_dy
    else:
        if need[0]:
            dx = dy * _per_channel(k, ndim)
        if want_dw:
            x = cache.saved
            xhat = (x - _per_channel(cache.mean, ndim)) * _per_channel(cache.inv_std, ndim)
            dw = _channel_dot(dy, xhat)
        if want_db:
            db = _channel_sum(dy)
    return dx, dw, db


# --------------------------------------------------------------------------- dropout
def check_dropout_p(p) -> float:
    """``p`` as a float in [0, 1], else ValueError (PyTorch's message)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout probability must be a float, got {p!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also refuses NaN
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return p


def dropout_mask(shape, p: float, generator: np.random.Generator) -> np.ndarray:
    """A boolean keep-mask of ``shape``: each entry True with probability 1 - p, independently.

    Drawn as ``u >= p`` for ``u`` uniform on [0, 1) in float64, whatever the data's dtype, so one
    generator state gives the same mask for float32 and float64 inputs.
    """
    return generator.random(tuple(shape)) >= p


def dropout2d_mask_shape(shape) -> tuple[int, ...]:
    """Shape of a whole-channel mask: (N, C, H, W) -> (N, C, 1, 1); (C, H, W) -> (C, 1, 1)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4):
        raise ShapeError(
            f"dropout2d: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {fmt_shape(shape)}"
        )
    lead = 2 if len(shape) == 4 else 1
    return shape[:lead] + (1,) * (len(shape) - lead)


def dropout_forward(x: np.ndarray, mask: np.ndarray, p: float):
    """y = x * mask / (1 - p), ``mask`` boolean and broadcastable to x; returns ``(y, cache)``.

    With p = 1 nothing is kept and y is zero (the scale is not used, avoiding 1/0).
    """
    check_float(x, "dropout: input")
    try:
        fits = np.broadcast_shapes(mask.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"dropout: mask {fmt_shape(mask.shape)} does not broadcast to input {fmt_shape(x.shape)}")
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    y = np.multiply(x, mask)   # float dtype of x: False -> 0, True -> 1
    y *= scale
    return y, (mask, scale, x.shape)


def dropout_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx = dy * mask / (1 - p): the gradient flows only through the kept elements."""
    mask, scale, shape = cache
    dx = np.multiply(dy, mask)
    dx *= scale
    return dx
