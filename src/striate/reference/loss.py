"""Naive references for the losses: one sample (and one pixel) at a time, scalar formulas.

Classification losses visit every position ``(n, d1, d2, ...)`` of the target, compute the
softmax over the classes of that position with a running max (so large logits stay finite), and
transcribe::

    logp[c]  = z[c] - (m + log sum_k exp(z[k] - m)),   m = max_k z[k]
    indices: div = (1 - e) * (-w[y] logp[y]) + (e / C) * (-sum_c w[c] logp[c])   (0 if ignored)
    probs:   div = -sum_c w[c] ((1 - e) t[c] + e / C) logp[c]

then reduce: 'none' keeps the divergences, 'sum' adds them, 'mean' divides the sum by the summed
target weights (indices) or the number of positions (probabilities).  The backward pass is the
softmax minus the (weighted, smoothed) target distribution, ``p[c] sum_k a[k] - a[c]``, scaled by
each position's share of the reduced gradient.

The elementwise losses loop over every element with the scalar formula and its derivative.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "cross_entropy", "cross_entropy_backward", "nll_loss", "nll_loss_backward",
    "mse_loss", "mse_loss_backward", "l1_loss", "l1_loss_backward",
    "smooth_l1_loss", "smooth_l1_loss_backward", "huber_loss", "huber_loss_backward",
    "binary_cross_entropy", "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
]


# --------------------------------------------------------------------------- helpers
def _reduce(loss: np.ndarray, reduction: str, denom: float) -> np.ndarray:
    if reduction == "none":
        return loss
    total = 0.0
    for idx in np.ndindex(*loss.shape):
        total += float(loss[idx])
    if reduction == "sum":
        return np.asarray(total, dtype=loss.dtype)
    return np.asarray(total / denom if denom != 0 else math.nan, dtype=loss.dtype)


def _share(dy, reduction: str, denom: float, pos) -> float:
    """d (reduced loss) / d (divergence at ``pos``)."""
    if reduction == "none":
        return float(dy[pos])
    g = float(dy)
    if reduction == "mean":
        return g / denom if denom != 0 else math.nan
    return g


def _unbatch(x, target, probs):
    if x.ndim == 1:
        return x[None], target[None], True
    return x, target, False


def _log_softmax_at(z, n, s, C) -> list[float]:
    """log softmax over the classes of one position (n, s) of z (N, C, ...)."""
    m = max(float(z[(n, c) + s]) for c in range(C))
    total = 0.0
    for c in range(C):
        total += math.exp(float(z[(n, c) + s]) - m)
    lse = m + math.log(total)
    return [float(z[(n, c) + s]) - lse for c in range(C)]


def _weights(weight, C) -> list[float]:
    return [1.0] * C if weight is None else [float(weight[c]) for c in range(C)]


def _ce_positions(x, target, weight, ignore_index, label_smoothing):
    """Per-position (divergence, a-vector, logp, smoothed target) and the 'mean' denominator."""
    probs = np.issubdtype(target.dtype, np.floating)
    z, tgt, unbatched = _unbatch(x, target, probs)
    N, C = z.shape[:2]
    e = float(label_smoothing)
    w = _weights(weight, C)
    pos_shape = (N,) + z.shape[2:]
    rows = {}
    denom = 0.0
    for pos in np.ndindex(*pos_shape):
        n, s = pos[0], pos[1:]
        logp = _log_softmax_at(z, n, s, C)
        if probs:
            tt = [(1 - e) * float(tgt[(n, c) + s]) + e / C for c in range(C)]
            a = [w[c] * tt[c] for c in range(C)]
            denom += 1.0
        else:
            y = int(tgt[pos])
            tt = None
            if y == ignore_index:
                rows[pos] = (0.0, None, logp, None)  # skipped: no divergence, no gradient
                continue
            else:
                # (1 - e) on the labelled class (weighted w[y]), e / C spread over all classes
                a = [(e / C) * w[c] for c in range(C)]
                a[y] += (1 - e) * w[y]
                denom += w[y]
        div = 0.0
        for c in range(C):
            div -= a[c] * logp[c]
        rows[pos] = (div, a, logp, tt)
    return rows, pos_shape, denom, probs, unbatched, z, tgt, w, e, C


# --------------------------------------------------------------------------- cross entropy
def cross_entropy(x, target, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Loop over positions; see the module docstring for the divergence and the reductions."""
    rows, pos_shape, denom, _, unbatched, *_ = _ce_positions(x, target, weight, ignore_index, label_smoothing)
    loss = np.zeros(pos_shape, dtype=x.dtype)
    for pos, (div, *_) in rows.items():
        loss[pos] = div
    out = _reduce(loss, reduction, denom)
    return out[0] if unbatched and reduction == "none" else out


def cross_entropy_backward(dy, x, target, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """(d input, d target or None, d weight or None) of :func:`cross_entropy`.

    d z[c] = g (p[c] sum_k a[k] - a[c]);  probabilities also: d t[c] = -g (1 - e) w[c] logp[c] and
    d w[c] = -sum_positions g t'[c] logp[c].
    """
    rows, pos_shape, denom, probs, unbatched, z, tgt, w, e, C = _ce_positions(
        x, target, weight, ignore_index, label_smoothing)
    dy = np.asarray(dy)
    if unbatched and reduction == "none":
        dy = dy[None]
    dx = np.zeros(z.shape, dtype=x.dtype)
    dt = np.zeros(z.shape, dtype=x.dtype) if probs else None
    dw = [0.0] * C
    for pos, (_, a, logp, tt) in rows.items():
        if a is None:
            continue
        n, s = pos[0], pos[1:]
        g = _share(dy, reduction, denom, pos)
        total = sum(a)
        for c in range(C):
            dx[(n, c) + s] = g * (math.exp(logp[c]) * total - a[c])
            if probs:
                dt[(n, c) + s] = -g * (1 - e) * w[c] * logp[c]
                dw[c] -= g * tt[c] * logp[c]
    if unbatched:
        dx = dx[0]
        dt = dt[0] if dt is not None else None
    dweight = np.asarray(dw, dtype=x.dtype) if (probs and weight is not None) else None
    return dx, dt, dweight


def nll_loss(x, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """div[n, s] = -w[y] x[n, y, s] (0 where y == ignore_index); mean over the summed w[y]."""
    z, tgt, unbatched = _unbatch(x, target, False)
    N, C = z.shape[:2]
    w = _weights(weight, C)
    loss = np.zeros((N,) + z.shape[2:], dtype=x.dtype)
    denom = 0.0
    for pos in np.ndindex(*loss.shape):
        y = int(tgt[pos])
        if y != ignore_index:
            loss[pos] = -w[y] * float(z[(pos[0], y) + pos[1:]])
            denom += w[y]
    out = _reduce(loss, reduction, denom)
    return out[0] if unbatched and reduction == "none" else out


def nll_loss_backward(dy, x, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """d x[n, c, s] = -g w[y] where c == y, else 0."""
    z, tgt, unbatched = _unbatch(x, target, False)
    N, C = z.shape[:2]
    w = _weights(weight, C)
    pos_shape = (N,) + z.shape[2:]
    denom = sum(w[int(tgt[pos])] for pos in np.ndindex(*pos_shape) if int(tgt[pos]) != ignore_index)
    dy = np.asarray(dy)
    if unbatched and reduction == "none":
        dy = dy[None]
    dx = np.zeros(z.shape, dtype=x.dtype)
    for pos in np.ndindex(*pos_shape):
        y = int(tgt[pos])
        if y != ignore_index:
            dx[(pos[0], y) + pos[1:]] = -_share(dy, reduction, denom, pos) * w[y]
    return (dx[0] if unbatched else dx), None, None


# --------------------------------------------------------------------------- elementwise losses
def _elementwise(x, t, weight, reduction, div, weighted_mean=False):
    """Apply the scalar divergence ``div(x, t)`` everywhere, times the weight, then reduce."""
    wb = None if weight is None else np.broadcast_to(weight, x.shape)
    loss = np.zeros(x.shape, dtype=x.dtype)
    wsum = 0.0
    for idx in np.ndindex(*x.shape):
        wi = 1.0 if wb is None else float(wb[idx])
        loss[idx] = wi * div(float(x[idx]), float(t[idx]))
        wsum += wi
    denom = wsum if (weighted_mean and weight is not None) else float(x.size)
    return _reduce(loss, reduction, denom), denom


def _elementwise_backward(dy, x, t, weight, reduction, div, dx_fn, dt_fn, weighted_mean=False):
    """Per element: g = share of dy; dx = g w dx_fn; dt = g w dt_fn; dw = g (div - out if weighted mean)."""
    out, denom = _elementwise(x, t, weight, reduction, div, weighted_mean)
    wb = None if weight is None else np.broadcast_to(weight, x.shape)
    dx, dt = np.zeros_like(x), np.zeros_like(x)
    dw = np.zeros(x.shape, dtype=x.dtype)
    for idx in np.ndindex(*x.shape):
        g = _share(dy, reduction, denom, idx)
        wi = 1.0 if wb is None else float(wb[idx])
        xi, ti = float(x[idx]), float(t[idx])
        dx[idx] = g * wi * dx_fn(xi, ti)
        dt[idx] = g * wi * dt_fn(xi, ti)
        value = div(xi, ti)
        dw[idx] = g * (value - float(out) if (weighted_mean and reduction == "mean") else value)
    return dx, dt, (dw if weight is not None and np.shape(weight) == x.shape else None)


def _sign(v: float) -> float:
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


def mse_loss(x, t, weight=None, *, reduction="mean"):
    """div = (x - t)^2; weighted 'mean' divides by sum(w)."""
    return _elementwise(x, t, weight, reduction, lambda a, b: (a - b) ** 2, True)[0]


def mse_loss_backward(dy, x, t, weight=None, *, reduction="mean"):
    return _elementwise_backward(dy, x, t, weight, reduction, lambda a, b: (a - b) ** 2,
                                 lambda a, b: 2 * (a - b), lambda a, b: -2 * (a - b), True)


def l1_loss(x, t, weight=None, *, reduction="mean"):
    """div = |x - t|; weighted 'mean' divides by sum(w)."""
    return _elementwise(x, t, weight, reduction, lambda a, b: abs(a - b), True)[0]


def l1_loss_backward(dy, x, t, weight=None, *, reduction="mean"):
    return _elementwise_backward(dy, x, t, weight, reduction, lambda a, b: abs(a - b),
                                 lambda a, b: _sign(a - b), lambda a, b: -_sign(a - b), True)


def _smooth_l1(beta):
    def div(a, b):
        d = abs(a - b)
        return d if beta == 0 else (0.5 * d * d / beta if d < beta else d - 0.5 * beta)

    def slope(a, b):
        d = a - b
        return _sign(d) if beta == 0 else (d / beta if abs(d) < beta else _sign(d))

    return div, slope


def smooth_l1_loss(x, t, *, reduction="mean", beta=1.0):
    """div = 0.5 d^2 / beta for |d| < beta, |d| - 0.5 beta otherwise."""
    return _elementwise(x, t, None, reduction, _smooth_l1(beta)[0])[0]


def smooth_l1_loss_backward(dy, x, t, *, reduction="mean", beta=1.0):
    div, slope = _smooth_l1(beta)
    dx, dt, _ = _elementwise_backward(dy, x, t, None, reduction, div, slope, lambda a, b: -slope(a, b))
    return dx, dt


def _huber(delta):
    def div(a, b):
        d = abs(a - b)
        return 0.5 * d * d if d < delta else delta * (d - 0.5 * delta)

    def slope(a, b):
        d = a - b
        return d if abs(d) < delta else delta * _sign(d)

    return div, slope


def huber_loss(x, t, weight=None, *, reduction="mean", delta=1.0):
    """div = 0.5 d^2 for |d| < delta, delta (|d| - 0.5 delta) otherwise; 'mean' over the count."""
    return _elementwise(x, t, weight, reduction, _huber(delta)[0])[0]


def huber_loss_backward(dy, x, t, weight=None, *, reduction="mean", delta=1.0):
    div, slope = _huber(delta)
    return _elementwise_backward(dy, x, t, weight, reduction, div, slope, lambda a, b: -slope(a, b))


def _bce_div(a, b):
    log_a = max(math.log(a), -100.0) if a > 0 else -100.0
    log_1ma = max(math.log1p(-a), -100.0) if a < 1 else -100.0
    return -(b * log_a + (1 - b) * log_1ma)


def binary_cross_entropy(x, t, weight=None, *, reduction="mean"):
    """div = -(t log x + (1 - t) log(1 - x)), each log clamped at -100."""
    return _elementwise(x, t, weight, reduction, _bce_div)[0]


def binary_cross_entropy_backward(dy, x, t, weight=None, *, reduction="mean"):
    """d x = (x - t) / max(x (1 - x), eps) (eps = 1e-12 rounded to float32, as PyTorch);
    d t = log(1 - x) - log(x)."""
    dx, dt, _ = _elementwise_backward(
        dy, x, t, weight, reduction, _bce_div,
        lambda a, b: (a - b) / max((1 - a) * a, float(np.float32(1e-12))),
        lambda a, b: math.log1p(-a) - math.log(a),
    )
    return dx, dt, None


def _log_sigmoid(v: float) -> float:
    return min(v, 0.0) - math.log1p(math.exp(-abs(v)))


def binary_cross_entropy_with_logits(x, t, weight=None, pos_weight=None, *, reduction="mean"):
    """div = -w (pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), using
    log(1 - sigmoid(x)) = log_sigmoid(x) - x; 'mean' over the element count."""
    pwb = np.broadcast_to(1.0 if pos_weight is None else pos_weight, x.shape)
    wb = np.broadcast_to(1.0 if weight is None else weight, x.shape)
    loss = np.zeros(x.shape, dtype=x.dtype)
    for idx in np.ndindex(*x.shape):
        a, b, pw = float(x[idx]), float(t[idx]), float(pwb[idx])
        loss[idx] = -float(wb[idx]) * (pw * b * _log_sigmoid(a) + (1 - b) * (_log_sigmoid(a) - a))
    return _reduce(loss, reduction, float(x.size))


def binary_cross_entropy_with_logits_backward(dy, x, t, weight=None, pos_weight=None, *, reduction="mean"):
    """d x = (pw t + 1 - t) sigmoid(x) - pw t;  d t = -(pw log_sigmoid(x) - log_sigmoid(x) + x)."""
    pwb = np.broadcast_to(1.0 if pos_weight is None else pos_weight, x.shape)
    wb = None if weight is None else np.broadcast_to(weight, x.shape)
    dx, dt = np.zeros_like(x), np.zeros_like(x)
    denom = float(x.size)
    for idx in np.ndindex(*x.shape):
        g = _share(dy, reduction, denom, idx) * (1.0 if wb is None else float(wb[idx]))
        a, b, pw = float(x[idx]), float(t[idx]), float(pwb[idx])
        sig = math.exp(_log_sigmoid(a))
        dx[idx] = g * ((pw * b + 1 - b) * sig - pw * b)
        dt[idx] = -g * (pw * _log_sigmoid(a) - (_log_sigmoid(a) - a))
    return dx, dt, None, None
