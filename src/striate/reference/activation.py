"""Naive references for the activations and the softmax family.

A point-wise activation is ``y = f(x)`` element by element, and its backward is the chain rule
element by element, ``dx = dy f'(x)``: each op below is a scalar formula ``f`` and its derivative
``f'``, written with :mod:`math`, and one loop that visits every element.  The softmax family
visits every slice along ``dim`` and loops over that slice explicitly; its backward multiplies
``dy`` by the full Jacobian of the slice, ``dy_i/dx_j``, one entry at a time.

Nothing here calls a kernel of :mod:`striate.kernels.activation`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "pointwise", "pointwise_backward",
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward",
    "elu", "elu_backward", "gelu", "gelu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "hardtanh", "hardtanh_backward", "hardsigmoid", "hardsigmoid_backward",
    "hardswish", "hardswish_backward", "silu", "silu_backward", "mish", "mish_backward",
    "softplus", "softplus_backward", "logsigmoid", "logsigmoid_backward",
    "threshold", "threshold_backward", "prelu", "prelu_backward",
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def pointwise(f, x):
    """out[i] = f(x[i]) for every index i."""
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=x.dtype)
    for idx in np.ndindex(*x.shape):
        out[idx] = f(float(x[idx]))
    return out


def pointwise_backward(fprime, dy, x):
    """dx[i] = dy[i] f'(x[i]) for every index i (the chain rule for y[i] = f(x[i]))."""
    x = np.asarray(x)
    dx = np.empty(x.shape, dtype=dy.dtype)
    for idx in np.ndindex(*x.shape):
        dx[idx] = float(dy[idx]) * fprime(float(x[idx]))
    return dx


# ---------------------------------------------------------------------------------------------
# scalar building blocks


def _sigmoid(v: float) -> float:
    """1 / (1 + e^-v), choosing the form whose exponential cannot overflow."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def _softplus(z: float) -> float:
    """log(1 + e^z) = max(z, 0) + log(1 + e^-|z|)."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _phi(v: float) -> float:
    """Standard normal density exp(-v^2/2) / sqrt(2 pi)."""
    return math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)


def _cdf(v: float) -> float:
    """Standard normal CDF Phi(v) = (1 + erf(v / sqrt 2)) / 2 = erfc(-v / sqrt 2) / 2."""
    return 0.5 * math.erfc(-v / math.sqrt(2.0))


_K_BETA = math.sqrt(2.0 / math.pi)
_K_KAPPA = 0.044715


# ---------------------------------------------------------------------------------------------
# point-wise ops: forward f and backward f'


def relu(x):
    return pointwise(lambda v: v if v > 0 else 0.0, x)


def relu_backward(dy, x):
    return pointwise_backward(lambda v: 1.0 if v > 0 else 0.0, dy, x)


def leaky_relu(x, negative_slope=0.01):
    return pointwise(lambda v: v if v > 0 else negative_slope * v, x)


def leaky_relu_backward(dy, x, negative_slope=0.01):
    return pointwise_backward(lambda v: 1.0 if v > 0 else negative_slope, dy, x)


def elu(x, alpha=1.0, scale=1.0, input_scale=1.0):
    """scale x (x > 0), scale alpha (e^(input_scale x) - 1) otherwise; SELU and CELU are cases."""
    return pointwise(lambda v: scale * v if v > 0 else scale * alpha * math.expm1(input_scale * v), x)


def elu_backward(dy, x, alpha=1.0, scale=1.0, input_scale=1.0):
    return pointwise_backward(
        lambda v: scale if v > 0 else scale * alpha * input_scale * math.exp(input_scale * v), dy, x
    )


def _gelu_tanh_parts(v):
    inner = _K_BETA * (v + _K_KAPPA * v * v * v)
    return math.tanh(inner)


def gelu(x, approximate="none"):
    """x Phi(x), or x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2."""
    if approximate == "tanh":
        return pointwise(lambda v: 0.5 * v * (1.0 + _gelu_tanh_parts(v)), x)
    return pointwise(lambda v: v * _cdf(v), x)


def _gelu_tanh_grad(v):
    t = _gelu_tanh_parts(v)
    sech2 = 1.0 - t * t
    # d/dv tanh(u(v)) = sech^2(u) u'(v); sech^2 is exactly 0 once tanh saturates, and u' may
    # overflow there, so the product is taken as 0
    slope = 0.0 if sech2 == 0.0 else 0.5 * v * sech2 * _K_BETA * (1.0 + 3.0 * _K_KAPPA * v * v)
    return 0.5 * (1.0 + t) + slope


def gelu_backward(dy, x, approximate="none"):
    """d/dx [x Phi(x)] = Phi(x) + x phi(x)."""
    if approximate == "tanh":
        return pointwise_backward(_gelu_tanh_grad, dy, x)
    return pointwise_backward(lambda v: _cdf(v) + v * _phi(v), dy, x)


def sigmoid(x):
    return pointwise(_sigmoid, x)


def sigmoid_backward(dy, x):
    return pointwise_backward(lambda v: _sigmoid(v) * (1.0 - _sigmoid(v)), dy, x)


def tanh(x):
    return pointwise(math.tanh, x)


def tanh_backward(dy, x):
    return pointwise_backward(lambda v: 1.0 - math.tanh(v) ** 2, dy, x)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return pointwise(lambda v: min(max(v, min_val), max_val), x)


def hardtanh_backward(dy, x, min_val=-1.0, max_val=1.0):
    return pointwise_backward(lambda v: 1.0 if min_val < v < max_val else 0.0, dy, x)


def hardsigmoid(x):
    return pointwise(lambda v: min(max(v + 3.0, 0.0), 6.0) / 6.0, x)


def hardsigmoid_backward(dy, x):
    return pointwise_backward(lambda v: 1.0 / 6.0 if -3.0 < v < 3.0 else 0.0, dy, x)


def hardswish(x):
    return pointwise(lambda v: v * min(max(v + 3.0, 0.0), 6.0) / 6.0, x)


def hardswish_backward(dy, x):
    """0 up to -3, (2x + 3) / 6 = x/3 + 1/2 on (-3, 3), 1 from 3 on."""
    return pointwise_backward(lambda v: 0.0 if v <= -3.0 else (v / 3.0 + 0.5 if v < 3.0 else 1.0), dy, x)


def silu(x):
    return pointwise(lambda v: v * _sigmoid(v), x)


def silu_backward(dy, x):
    """d/dx [x s(x)] = s + x s (1 - s)."""
    return pointwise_backward(lambda v: _sigmoid(v) * (1.0 + v * (1.0 - _sigmoid(v))), dy, x)


def mish(x):
    return pointwise(lambda v: v * math.tanh(_softplus(v)), x)


def mish_backward(dy, x):
    """d/dx [x tanh(sp(x))] = tanh(sp) + x (1 - tanh^2(sp)) sigmoid(x), as sp' = sigmoid."""
    def fprime(v):
        t = math.tanh(_softplus(v))
        return t + v * (1.0 - t * t) * _sigmoid(v)
    return pointwise_backward(fprime, dy, x)


def softplus(x, beta=1.0, threshold=20.0):
    return pointwise(lambda v: v if beta * v > threshold else _softplus(beta * v) / beta, x)


def softplus_backward(dy, x, beta=1.0, threshold=20.0):
    return pointwise_backward(lambda v: 1.0 if beta * v > threshold else _sigmoid(beta * v), dy, x)


def logsigmoid(x):
    return pointwise(lambda v: -_softplus(-v), x)


def logsigmoid_backward(dy, x):
    return pointwise_backward(lambda v: _sigmoid(-v), dy, x)


def threshold(x, threshold, value):
    return pointwise(lambda v: v if v > threshold else value, x)


def threshold_backward(dy, x, threshold, value=None):
    return pointwise_backward(lambda v: 1.0 if v > threshold else 0.0, dy, x)


def prelu(x, weight):
    """y[i] = x[i] if x[i] > 0 else a[c] x[i], c = i's channel (axis 1) or 0 for one slope."""
    x = np.asarray(x)
    w = np.asarray(weight).reshape(-1)
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        c = idx[1] if (w.size > 1) else 0
        v = float(x[idx])
        out[idx] = v if v > 0 else float(w[c]) * v
    return out


def prelu_backward(dy, x, weight):
    """dx[i] = dy[i] (1 or a[c]);  da[c] += dy[i] x[i] for every i of channel c with x[i] <= 0."""
    x = np.asarray(x)
    w = np.asarray(weight)
    wf = w.reshape(-1)
    dx = np.empty_like(x)
    dw = np.zeros(wf.shape, dtype=w.dtype)
    for idx in np.ndindex(*x.shape):
        c = idx[1] if (wf.size > 1) else 0
        v, g = float(x[idx]), float(dy[idx])
        if v > 0:
            dx[idx] = g
        else:
            dx[idx] = float(wf[c]) * g
            dw[c] += g * v
    return dx, dw.reshape(w.shape)


# ---------------------------------------------------------------------------------------------
# softmax family: loops over the slices along ``dim``


def _slices(shape, dim):
    """(axis, length, list of index-makers), one per slice of ``shape`` along ``dim``."""
    n = len(shape)
    axis = dim % n
    rest = shape[:axis] + shape[axis + 1:]
    makers = []
    for idx in np.ndindex(*rest):
        makers.append(lambda k, idx=idx: idx[:axis] + (k,) + idx[axis:])
    return axis, shape[axis], makers


def softmax(x, dim):
    """y[.., i, ..] = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j, per slice along dim."""
    x = np.asarray(x)
    x1 = x.reshape(1) if x.ndim == 0 else x
    out = np.empty(x1.shape, dtype=x.dtype)
    _, n, makers = _slices(x1.shape, dim)
    for at in makers:
        m = max(float(x1[at(j)]) for j in range(n))
        total = 0.0
        for j in range(n):
            total += math.exp(float(x1[at(j)]) - m)
        for i in range(n):
            out[at(i)] = math.exp(float(x1[at(i)]) - m) / total
    return out.reshape(x.shape)


def softmax_backward(dy, x, dim):
    """dx_j = sum_i dy_i dy_i/dx_j with the Jacobian dy_i/dx_j = y_i (delta_ij - y_j)."""
    x = np.asarray(x)
    y = softmax(x, dim)
    if x.ndim == 0:
        return np.zeros_like(dy)
    dx = np.empty_like(dy)
    _, n, makers = _slices(x.shape, dim)
    for at in makers:
        for j in range(n):
            acc = 0.0
            for i in range(n):
                jac = float(y[at(i)]) * ((1.0 if i == j else 0.0) - float(y[at(j)]))
                acc += float(dy[at(i)]) * jac
            dx[at(j)] = acc
    return dx


def log_softmax(x, dim):
    """y_i = x_i - m - log sum_j exp(x_j - m) per slice along dim."""
    x = np.asarray(x)
    x1 = x.reshape(1) if x.ndim == 0 else x
    out = np.empty(x1.shape, dtype=x.dtype)
    _, n, makers = _slices(x1.shape, dim)
    for at in makers:
        m = max(float(x1[at(j)]) for j in range(n))
        total = 0.0
        for j in range(n):
            total += math.exp(float(x1[at(j)]) - m)
        for i in range(n):
            out[at(i)] = float(x1[at(i)]) - m - math.log(total)
    return out.reshape(x.shape)


def log_softmax_backward(dy, x, dim):
    """dx_j = sum_i dy_i (delta_ij - softmax_j), the Jacobian of log-softmax."""
    x = np.asarray(x)
    if x.ndim == 0:
        return np.zeros_like(dy)
    p = softmax(x, dim)
    dx = np.empty_like(dy)
    _, n, makers = _slices(x.shape, dim)
    for at in makers:
        for j in range(n):
            acc = 0.0
            for i in range(n):
                acc += float(dy[at(i)]) * ((1.0 if i == j else 0.0) - float(p[at(j)]))
            dx[at(j)] = acc
    return dx
