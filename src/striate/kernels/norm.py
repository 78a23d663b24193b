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

All reductions are over every axis but C at once (``einsum`` on an (N, C, L) view); nothing loops
over batch, channel or pixel indices.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

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
    return np.einsum("ncl->c", _ncl(a))


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum over every axis but C of a * b, without materialising the product."""
    return np.einsum("ncl,ncl->c", _ncl(a), _ncl(b))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector viewed as (1, C, 1, ...) so it broadcasts along C of an ndim-D input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class BatchNormCache(NamedTuple):
    """What ``batch_norm_backward`` needs (and the batch statistics, for the running update).

    In training ``saved`` is ``xhat``; in eval it is ``x`` itself (xhat is rebuilt only if the
    weight gradient is wanted).  ``mean`` and ``var`` are the statistics used (batch or running).
    """

    training: bool
    saved: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    weight: np.ndarray | None
    has_bias: bool
    count: int  # M, values per channel


def check_batch_norm_args(x, running_mean, running_var, weight, bias, training, momentum, eps) -> None:
    """Raise, before anything is computed or updated, if the arguments cannot work together.

    * ``x`` must be a floating array of rank 2 to 5, (N, C, *S);
    * ``running_mean``, ``running_var``, ``weight``, ``bias`` must be None or shaped (C,), with
      ``x``'s dtype; the running statistics are required in eval mode;
    * in training, each channel needs more than one value (M = N * prod(S) > 1);
    * ``momentum`` must be a number (``None``, PyTorch's cumulative average, is the module's job).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"batch_norm: input must be an array, got {type(x).__name__}")
    check_float(x, "batch_norm: input")
    check_rank(x, (2, 3, 4, 5), "batch_norm: input", "(N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)")
    C = x.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if v is None:
            continue
        if not isinstance(v, np.ndarray):
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
    eval uses ``running_mean`` / ``running_var``.  This kernel does **not** touch the running
    statistics: call :func:`batch_norm_update_running_stats` with the cache afterwards.
    """
    check_batch_norm_args(x, running_mean, running_var, weight, bias, training, 0.0, eps)
    ndim, C = x.ndim, x.shape[1]
    count = x.size // C if C else 0
    eps = float(eps)
    if training:
        mean = _channel_sum(x) / count
        xhat = x - _per_channel(mean, ndim)              # x - mean, soon divided by the std
        var = _channel_dot(xhat, xhat) / count           # biased: (1/M) sum (x - mean)^2
        inv_std = 1.0 / np.sqrt(var + eps)
        xhat *= _per_channel(inv_std, ndim)
        if weight is not None:
            y = xhat * _per_channel(weight, ndim)
            if bias is not None:
                y += _per_channel(bias, ndim)
        elif bias is not None:
            y = xhat + _per_channel(bias, ndim)
        else:
            y = xhat  # shared with the cache: nothing writes to it afterwards
        saved = xhat
    else:
        mean, var = running_mean, running_var
        inv_std = 1.0 / np.sqrt(var + eps)
        # an affine map per channel: y = x * scale + shift, one pass over x
        scale = inv_std if weight is None else weight * inv_std
        shift = -mean * scale if bias is None else bias - mean * scale
        y = x * _per_channel(scale, ndim)
        y += _per_channel(shift, ndim)
        saved = x
    cache = BatchNormCache(bool(training), saved, mean, var, inv_std, weight, bias is not None, count)
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
    """
    ndim = dy.ndim
    need = tuple(need) + (True,) * (3 - len(need))
    w = cache.weight
    k = cache.inv_std if w is None else w * cache.inv_std  # d y / d x for fixed statistics
    want_dw = need[1] and w is not None
    want_db = need[2] and cache.has_bias
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
