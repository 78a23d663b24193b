"""Naive references for batch normalisation and dropout: loops, one value at a time.

Batch norm for an input (N, C, *S): channel ``c`` owns the M = N * prod(S) values x[n, c, s].
The forward loops over channels, accumulating the mean and the (biased) variance one value at a
time, then normalises each element.  The backward does *not* use the closed form of the fast
kernel; it applies the chain rule through the two statistics, step by step::

    xhat_i  = (x_i - mu) * r,           r = (var + eps)^(-1/2)
    y_i     = gamma * xhat_i + beta
    dxhat_i = gamma * dy_i
    dvar    = sum_i dxhat_i * (x_i - mu) * (-1/2) * (var + eps)^(-3/2)
    dmu     = sum_i dxhat_i * (-r)  +  dvar * (1/M) sum_i (-2) (x_i - mu)
    dx_i    = dxhat_i * r  +  dvar * 2 (x_i - mu) / M  +  dmu / M

(in eval mode mu and var are constants and only the first term of dx_i remains).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["batch_norm", "batch_norm_backward", "dropout", "dropout_backward"]


def _channel_indices(shape, c):
    """Every index of an (N, C, *S) array whose channel is ``c``: the M values of channel c."""
    rest = (shape[0],) + tuple(shape[2:])
    for idx in np.ndindex(*rest):
        yield (idx[0], c) + idx[1:]


def _channel_stats(x, c):
    """Batch mean and biased variance of channel ``c``, accumulated one value at a time."""
    total, count = 0.0, 0
    for i in _channel_indices(x.shape, c):
        total += x[i]
        count += 1
    mu = total / count
    sq = 0.0
    for i in _channel_indices(x.shape, c):
        sq += (x[i] - mu) * (x[i] - mu)
    return mu, sq / count, count


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Returns ``(y, new_running_mean, new_running_var)``; the arguments are never modified.

    y[n, c, s] = (x[n, c, s] - mu_c) / sqrt(var_c + eps) * gamma_c + beta_c with the batch
    statistics (training) or the running ones (eval).  The new running statistics (None when
    not tracked) are (1 - momentum) * old + momentum * batch, with the variance unbiased
    (times M / (M - 1)); in eval they are copies of the old.
    """
    C = x.shape[1]
    y = np.zeros_like(x)
    new_mean = None if running_mean is None else np.array(running_mean, copy=True)
    new_var = None if running_var is None else np.array(running_var, copy=True)
    for c in range(C):
        if training:
            mu, var, m = _channel_stats(x, c)
            if new_mean is not None:
                new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
                new_var[c] = (1 - momentum) * running_var[c] + momentum * var * m / (m - 1)
        else:
            mu, var = running_mean[c], running_var[c]
        gamma = 1.0 if weight is None else weight[c]
        beta = 0.0 if bias is None else bias[c]
        for i in _channel_indices(x.shape, c):
            y[i] = (x[i] - mu) / math.sqrt(var + eps) * gamma + beta
    return y, new_mean, new_var


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False, eps=1e-5):
    """``(dx, dweight, dbias)`` by the chain rule through mu and var (see the module docstring).

    dweight[c] = sum dy * xhat and dbias[c] = sum dy over channel c (None without the parameter).
    """
    C = x.shape[1]
    dx = np.zeros_like(x)
    dw = None if weight is None else np.zeros_like(weight)
    db = None if bias is None else np.zeros_like(bias)
    for c in range(C):
        if training:
            mu, var, m = _channel_stats(x, c)
        else:
            mu, var, m = running_mean[c], running_var[c], None
        r = 1.0 / math.sqrt(var + eps)
        gamma = 1.0 if weight is None else weight[c]
        idx = list(_channel_indices(x.shape, c))
        # parameters: y = gamma * xhat + beta
        for i in idx:
            xhat = (x[i] - mu) * r
            if dw is not None:
                dw[c] += dy[i] * xhat
            if db is not None:
                db[c] += dy[i]
        # through xhat directly
        for i in idx:
            dx[i] = gamma * dy[i] * r
        if not training:
            continue
        # through var: d xhat_i / d var = (x_i - mu) * (-1/2) (var + eps)^(-3/2)
        dvar = 0.0
        for i in idx:
            dvar += gamma * dy[i] * (x[i] - mu) * (-0.5) * r ** 3
        # through mu: directly (-r per element) and via var (d var / d mu = (1/M) sum -2 (x - mu))
        dmu = 0.0
        centred_sum = 0.0
        for i in idx:
            dmu += gamma * dy[i] * (-r)
            centred_sum += -2.0 * (x[i] - mu)
        dmu += dvar * centred_sum / m
        # d var / d x_i = 2 (x_i - mu) / M;  d mu / d x_i = 1 / M
        for i in idx:
            dx[i] += dvar * 2.0 * (x[i] - mu) / m + dmu / m
    return dx, dw, db


def _mask_index(idx, mask_shape):
    """The mask entry governing element ``idx`` (size-1 mask axes repeat, e.g. per channel)."""
    lead = len(idx) - len(mask_shape)
    return tuple(0 if s == 1 else idx[lead + k] for k, s in enumerate(mask_shape))


def dropout(x, mask, p):
    """y[i] = x[i] / (1 - p) where the mask keeps i, else 0 (p = 1: all zero)."""
    y = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        if mask[_mask_index(idx, mask.shape)]:
            y[idx] = x[idx] / (1.0 - p)
        else:
            y[idx] = x[idx] * 0.0
    return y


def dropout_backward(dy, mask, p):
    """dx[i] = dy[i] / (1 - p) where the mask kept i, else 0."""
    dx = np.zeros_like(dy)
    for idx in np.ndindex(*dy.shape):
        if mask[_mask_index(idx, mask.shape)]:
            dx[idx] = dy[idx] / (1.0 - p)
    return dx
