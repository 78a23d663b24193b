"""Loss functions: the divergence between a network's output and the desired output.

The training loss of the lecture is the divergence averaged over the training instances,
``Loss = (1/T) sum_i Div(Y_i, d_i)``; for classification ``Div`` is the cross-entropy between the
softmax of the logits and the one-hot (or soft) label.  Every kernel here computes the per-element
divergence, then reduces it (``'none'`` keeps it, ``'sum'`` adds it up, ``'mean'`` divides the sum
by the op's denominator, exactly as PyTorch does), and its backward returns the gradient of that
reduced value.

Shapes for the classification losses (class axis 1, PyTorch's layout)::

    input  (N, C, d1, d2, ...)   logits (cross_entropy) or log-probabilities (nll_loss);
           (C,)                  one unbatched sample
    target (N, d1, d2, ...)      integer class indices, or ignore_index
           (N, C, d1, d2, ...)   class probabilities (cross_entropy only), the input's shape
    weight (C,)                  a rescaling weight per class
    output ()                    for 'mean' and 'sum';  (N, d1, d2, ...) (or ()) for 'none'

The elementwise losses (mse, l1, smooth_l1, huber, the binary cross-entropies) take ``input`` and
``target`` of one shape and return that shape for ``'none'``.

Backward functions take ``need`` (which inputs want a gradient) and return one gradient (or None)
per forward array argument.  All arithmetic stays in the input's dtype.
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend import asarray as _asarray
from ..backend import get_array_module
from .shapes import ShapeError, check_float, check_same_dtype, fmt_shape

__all__ = [
    "REDUCTIONS",
    "check_reduction",
    "log_softmax_classes",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "nll_loss_forward",
    "nll_loss_backward",
    "mse_loss_forward",
    "mse_loss_backward",
    "l1_loss_forward",
    "l1_loss_backward",
    "smooth_l1_loss_forward",
    "smooth_l1_loss_backward",
    "huber_loss_forward",
    "huber_loss_backward",
    "binary_cross_entropy_forward",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits_forward",
    "binary_cross_entropy_with_logits_backward",
]

REDUCTIONS = ("none", "mean", "sum")

# PyTorch clamps log(x) and log(1 - x) at -100 in binary_cross_entropy, and keeps the denominator
# x (1 - x) of its input gradient away from zero with 1e-12 -- a float32 constant there, so
# 9.99999996e-13 in double precision.
BCE_LOG_CLAMP = -100.0
BCE_GRAD_EPS = float(np.float32(1e-12))


# --------------------------------------------------------------------------- shared helpers
def check_reduction(reduction: str) -> str:
    """Validate ``reduction`` ('none' | 'mean' | 'sum')."""
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{reduction!r} is not a valid value for reduction; expected one of 'none', 'mean', 'sum'"
        )
    return reduction


def _reduce(loss: np.ndarray, reduction: str, denom) -> np.ndarray:
    """'none' -> ``loss``; 'sum' -> sum; 'mean' -> sum / ``denom`` (0/0 gives NaN, as PyTorch)."""
    if reduction == "none":
        return loss
    total = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return _asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _asarray(total / denom, dtype=loss.dtype)


def _coeff(dy: np.ndarray, reduction: str, denom) -> np.ndarray:
    """d (reduced loss) / d (per-element loss), broadcastable to the per-element loss."""
    dy = _asarray(dy)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return dy / denom
    return dy


def _quiet(fn):
    """Let NaN and inf propagate silently, as PyTorch does (e.g. a 'mean' over zero total weight
    is 0/0 = NaN, and its gradient is NaN too): no RuntimeWarning from NumPy."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(invalid="ignore", divide="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _typed(value, dtype) -> np.ndarray:
    """A 0-d array of ``dtype`` (so that counts and sums never promote float32 to float64)."""
    if get_array_module(value) is not np:
        return value.astype(dtype, copy=False)
    return np.dtype(dtype).type(value)  # a NumPy scalar goes with arrays of any device


def _softmax_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(logp, p)``: log softmax and softmax over axis 1, new C-contiguous arrays.

    ``logp[n, c] = z[n, c] - m[n] - log s[n]`` and ``p[n, c] = exp(z[n, c] - m[n]) / s[n]`` with
    ``m[n] = max_k z[n, k]`` and ``s[n] = sum_k exp(z[n, k] - m[n])``: subtracting the max makes
    every exponent <= 0, so nothing overflows and ``s >= 1`` (its log is finite) for any logits.
    """
    logp = np.subtract(x, x.max(axis=1, keepdims=True), order="C")
    p = np.exp(logp)
    s = p.sum(axis=1, keepdims=True)
    logp -= np.log(s)
    p /= s
    return logp, p


def log_softmax_classes(x: np.ndarray) -> np.ndarray:
    """log softmax over axis 1 (the class axis), stable for large logits; ``x`` is not touched."""
    logp = np.subtract(x, x.max(axis=1, keepdims=True), order="C")
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return logp


def _flat_class_index(safe: np.ndarray, C: int) -> np.ndarray:
    """Flat positions of the elements ``[n, y[n, s], s]`` in a C-contiguous (N, C, *S) array.

    One 1-D gather/scatter through this index replaces ``take_along_axis`` (which builds a
    broadcast index array per axis): element (n, c, s) sits at ``(n C + c) S + s``.
    """
    N = safe.shape[0]
    S = int(np.prod(safe.shape[1:], dtype=np.intp))
    y = safe.reshape(N, S)
    xp = get_array_module(safe)
    flat = (xp.arange(N, dtype=np.intp)[:, None] * C + y) * S + xp.arange(S, dtype=np.intp)
    return flat.reshape(-1)


def _class_dot(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """sum_c a[n, c, ...] v[c]  -> shape (N, ...)."""
    if a.ndim == 2:
        return a @ v
    return np.einsum("nc...,c->n...", a, v)


def _class_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector viewed as (1, C, 1, ..., 1) to broadcast along the class axis."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _check_classes(
    op: str, x: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
    ignore_index: int, allow_probs: bool,
) -> bool:
    """Validate a classification loss's arguments; return True for class-probability targets."""
    check_float(x, "input")
    if x.ndim < 1:
        raise ShapeError(
            f"{op}: input must be (C,) or (N, C, d1, ...) with the classes on axis 1, "
            f"got shape {fmt_shape(x.shape)}"
        )
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    if weight is not None:
        check_same_dtype(input=x, weight=weight)
        if weight.shape != (C,):
            raise ShapeError(
                f"{op}: weight {fmt_shape(weight.shape)} must be ({C},), one weight per class of "
                f"input {fmt_shape(x.shape)}"
            )
    if target.dtype == np.bool_ or not (
        np.issubdtype(target.dtype, np.integer) or np.issubdtype(target.dtype, np.floating)
    ):
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype}")
    if np.issubdtype(target.dtype, np.floating):
        if not allow_probs:
            raise TypeError(
                f"{op}: target must hold integer class indices, got floating-point {target.dtype} "
                f"target {fmt_shape(target.shape)} for input {fmt_shape(x.shape)}"
            )
        if target.shape != x.shape:
            raise TypeError(
                f"{op}: floating-point target {fmt_shape(target.shape)} does not match input "
                f"{fmt_shape(x.shape)}; class indices must be an integer array of shape "
                f"{fmt_shape(x.shape[:1] + x.shape[2:]) if x.ndim > 1 else '()'}, class "
                f"probabilities a floating-point array of the input's shape"
            )
        check_same_dtype(input=x, target=target)
        if ignore_index >= 0:
            raise ValueError(
                f"{op}: ignore_index is not supported for floating-point (class-probability) "
                f"targets, got ignore_index={ignore_index}"
            )
        return True
    # integer class indices
    if target.shape == x.shape:
        raise TypeError(
            f"{op}: target {fmt_shape(target.shape)} has the input's shape, so it must hold class "
            f"probabilities, but its dtype is {target.dtype}; probabilities must be floating-point"
        )
    if x.ndim == 1:
        if target.ndim != 0:
            raise ShapeError(
                f"{op}: unbatched input {fmt_shape(x.shape)} needs a 0-d class index target, got "
                f"target {fmt_shape(target.shape)}"
            )
    else:
        if target.ndim == 0 or target.shape[0] != x.shape[0]:
            raise ShapeError(
                f"{op}: expected input batch size ({x.shape[0]}) to match target batch size "
                f"({target.shape[0] if target.ndim else 'none, 0-d target'}); input "
                f"{fmt_shape(x.shape)}, target {fmt_shape(target.shape)}"
            )
        if target.shape[1:] != x.shape[2:]:
            raise ShapeError(
                f"{op}: target {fmt_shape(target.shape)} must be {fmt_shape(x.shape[:1] + x.shape[2:])} "
                f"for input {fmt_shape(x.shape)}: the spatial sizes differ"
            )
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= C))
    if bad.any():
        value = int(target[bad].flat[0])
        raise IndexError(
            f"{op}: target {value} is out of range for {C} classes (input {fmt_shape(x.shape)}, "
            f"target {fmt_shape(target.shape)}; valid targets are 0..{C - 1} or "
            f"ignore_index={ignore_index})"
        )
    return False


def _batched(x: np.ndarray, target: np.ndarray):
    """Unbatched (C,) input -> (1, C); its target -> (1,) (indices) or (1, C) (probabilities)."""
    if x.ndim == 1:
        return x[None], target[None], True
    return x, target, False


def _index_terms(target, weight, ignore_index, dtype):
    """safe index (ignored -> 0), valid mask, and the weight w[y] of each position (0 if ignored)."""
    valid = target != ignore_index
    safe = np.where(valid, target, 0).astype(np.intp, copy=False)
    if weight is not None:
        wy = weight[safe]
        wy[~valid] = 0
    else:
        wy = valid.astype(dtype)
    return safe, valid, wy


# --------------------------------------------------------------------------- cross entropy
def cross_entropy_forward(
    x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, *,
    ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
):
    """Cross-entropy between softmax(input) over the classes and the target.

    Class indices ``y`` (integer target), with ``logp = log_softmax(z)`` over axis 1, ``C``
    classes, smoothing ``e`` and per-class weight ``w`` (all ones when None)::

        loss[n, s] = (1 - e) * (-w[y] logp[n, y, s]) + (e / C) * (-sum_c w[c] logp[n, c, s])
        loss[n, s] = 0 where y == ignore_index
        'mean' = sum loss / sum_{non-ignored} w[y]          (NaN when nothing counts)

    Class probabilities ``t`` (floating target of the input's shape)::

        t' = (1 - e) t + e / C
        loss[n, s] = -sum_c w[c] t'[n, c, s] logp[n, c, s]
        'mean' = sum loss / (number of positions N * d1 * ...)

    Returns ``(y, cache)``; ``y`` is () for 'mean'/'sum', the target positions' shape for 'none'.
    """
    check_reduction(reduction)
    label_smoothing = float(label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    probs = _check_classes("cross_entropy", x, target, weight, ignore_index, allow_probs=True)
    z, tgt, unbatched = _batched(x, target)
    dtype, C, e = z.dtype, z.shape[1], label_smoothing
    logp, p = _softmax_parts(z)
    if probs:
        t = tgt * (1 - e) + e / C if e > 0 else tgt
        a = t * _class_view(weight, z.ndim) if weight is not None else t
        loss = -(a * logp).sum(axis=1)
        denom = _typed(loss.size, dtype)
        saved = (logp, tgt)
    else:
        safe, valid, wy = _index_terms(tgt, weight, ignore_index, dtype)
        flat = _flat_class_index(safe, C)
        # -w[y] logp[y] at every position (wy is 0 where the target is ignored)
        loss = logp.reshape(-1)[flat].reshape(wy.shape)
        loss *= -wy
        if e > 0:
            smooth = -(_class_dot(logp, weight) if weight is not None else logp.sum(axis=1))
            smooth[~valid] = 0
            loss = (1 - e) * loss + (e / C) * smooth
        denom = wy.sum(dtype=dtype)
        saved = (flat, valid, wy)
    out = _reduce(loss, reduction, denom)
    if reduction == "mean" and denom == 0:
        # PyTorch averages the nll and smoothing terms separately; the nll one is 0/0 = NaN
        out = get_array_module(loss).asarray(np.nan, dtype=dtype)
    if unbatched and reduction == "none":
        out = out[0]
    return out, (p, saved, weight, probs, e, reduction, denom, unbatched)


@_quiet
def cross_entropy_backward(dy: np.ndarray, cache, need=(True, True, True)):
    """Gradients of cross_entropy: ``(d input, d target, d weight)`` (None where not needed).

    Writing either mode as ``loss = -sum_c a[c] logp[c]`` for a per-position vector ``a`` (for
    indices ``a[c] = (1-e) w[y] [c == y] + (e/C) w[c]``, for probabilities ``a[c] = w[c] t'[c]``),
    the softmax Jacobian gives ``d loss / d z[c] = p[c] * sum_k a[k] - a[c]``: the softmax minus
    the weighted target, times each position's share ``g`` of the reduced gradient (``dy`` for
    'none' and 'sum', ``dy / denom`` for 'mean').  Probability targets also get
    ``d / d t[c] = -(1-e) w[c] logp[c] g`` and ``d / d w[c] = -sum_positions t'[c] logp[c] g``.
    """
    p, saved, weight, probs, e, reduction, denom, unbatched = cache
    need = tuple(need) + (False,) * (3 - len(need))
    dtype, C, nd = p.dtype, p.shape[1], p.ndim
    dy = _asarray(dy, dtype=dtype)
    if unbatched and reduction == "none":
        dy = dy[None]
    g = np.broadcast_to(_coeff(dy, reduction, denom), p.shape[:1] + p.shape[2:])
    wb = _class_view(weight, nd) if weight is not None else None
    dx = dt = dw = None
    if probs:
        logp, tgt = saved
        t = tgt * (1 - e) + e / C if e > 0 else tgt
        if need[0]:
            a = t * wb if wb is not None else t
            dx = p * a.sum(axis=1, keepdims=True)
            dx -= a
            dx *= g[:, None]
        if need[1]:
            dt = logp * (-(1 - e) * g[:, None])
            if wb is not None:
                dt *= wb
            if unbatched:
                dt = dt[0]
        if need[2] and weight is not None:
            gl = logp * g[:, None]
            gl *= t
            dw = -gl.sum(axis=tuple(k for k in range(nd) if k != 1))
    elif need[0]:
        flat, valid, wy = saved
        # ignored positions contribute exactly 0, even when 'mean' divides by a zero total weight;
        # the others get NaN then (PyTorch's 0/0 in the nll term spreads over the whole row)
        g = np.where(valid, np.nan if (reduction == "mean" and denom == 0) else g, 0).astype(dtype, copy=False)
        wsum = weight.sum() if weight is not None else C
        # sum_c a[c] for every position: (1-e) w[y] + (e/C) sum_c w[c] (0 where ignored)
        total = (1 - e) * wy + (e / C * wsum) * valid.astype(dtype) if e > 0 else wy
        dx = np.multiply(p, (g * total)[:, None], order="C")  # C order: the flat scatter below needs a view
        if e > 0:
            smooth = (g * valid) * (e / C)
            dx -= smooth[:, None] * wb if wb is not None else smooth[:, None]
        # the labelled class also loses (1-e) w[y] g (positions are distinct: no collisions)
        dx.reshape(-1)[flat] -= ((1 - e) * g * wy).reshape(-1)
    if dx is not None:
        dx = dx.astype(dtype, copy=False)
        if unbatched:
            dx = dx[0]
    return dx, dt, dw


# --------------------------------------------------------------------------- nll loss
def nll_loss_forward(
    x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, *,
    ignore_index: int = -100, reduction: str = "mean",
):
    """Negative log-likelihood of log-probabilities ``x`` (N, C, d1, ...) or (C,).

    ``loss[n, s] = -w[y] x[n, y, s]`` (0 where ``y == ignore_index``); 'mean' divides the sum by
    ``sum_{non-ignored} w[y]``.  ``cross_entropy`` without smoothing is ``nll_loss(log_softmax)``.
    """
    check_reduction(reduction)
    _check_classes("nll_loss", x, target, weight, ignore_index, allow_probs=False)
    z, tgt, unbatched = _batched(x, target)
    safe, valid, wy = _index_terms(tgt, weight, ignore_index, z.dtype)
    flat = _flat_class_index(safe, z.shape[1])
    loss = get_array_module(z).ascontiguousarray(z).reshape(-1)[flat].reshape(wy.shape)
    loss *= -wy
    loss[~valid] = 0  # skipped outright, so a -inf log-probability there cannot give NaN
    denom = wy.sum(dtype=z.dtype)
    out = _reduce(loss, reduction, denom)
    if unbatched and reduction == "none":
        out = out[0]
    return out, (z.shape, z.dtype, flat, valid, wy, reduction, denom, unbatched)


@_quiet
def nll_loss_backward(dy: np.ndarray, cache, need=(True, True, True)):
    """d input: ``-w[y] g`` at each position's target class, 0 elsewhere (g as in cross_entropy)."""
    shape, dtype, flat, valid, wy, reduction, denom, unbatched = cache
    if not need[0]:
        return None, None, None
    dy = _asarray(dy, dtype=dtype)
    if unbatched and reduction == "none":
        dy = dy[None]
    g = np.broadcast_to(_coeff(dy, reduction, denom), wy.shape)
    g = np.where(valid, g, 0).astype(dtype, copy=False)  # ignored positions give exactly 0
    dx = get_array_module(dy).zeros(shape, dtype=dtype)
    dx.reshape(-1)[flat] = -(g * wy).reshape(-1)
    return (dx[0] if unbatched else dx), None, None


# --------------------------------------------------------------------------- elementwise losses
def _check_pair(op: str, x: np.ndarray, t: np.ndarray) -> None:
    check_float(x, "input")
    check_float(t, "target")
    if x.shape != t.shape:
        raise ShapeError(
            f"{op}: target {fmt_shape(t.shape)} must have the input's shape {fmt_shape(x.shape)} "
            "(no broadcasting)"
        )
    check_same_dtype(input=x, target=t)


def _check_weight(op: str, name: str, x: np.ndarray, w: np.ndarray | None, exact: bool) -> None:
    """``exact``: weight must have the input's shape; otherwise it must broadcast to it."""
    if w is None:
        return
    check_same_dtype(input=x, **{name: w})
    if exact:
        if w.shape != x.shape:
            raise ShapeError(
                f"{op}: {name} {fmt_shape(w.shape)} and input {fmt_shape(x.shape)} must have the same size"
            )
        return
    try:
        ok = np.broadcast_shapes(w.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(
            f"{op}: {name} {fmt_shape(w.shape)} does not broadcast to input {fmt_shape(x.shape)}"
        )


def _elementwise_denom(x, w, reduction, weighted_mean: bool):
    """Denominator of 'mean': sum of the weights (mse/l1 with weight) or the element count."""
    if reduction == "mean" and weighted_mean and w is not None:
        return w.sum(dtype=x.dtype)
    return _typed(x.size, x.dtype)


def _weighted(loss, w):
    return loss * w if w is not None else loss


def _weight_grad(e: np.ndarray, g, reduction, weighted_mean: bool, out):
    """d (reduced weighted loss) / d w for loss = sum w e (/ sum w when ``weighted_mean``)."""
    if reduction == "mean" and weighted_mean:
        # d/dw_k (sum w e / sum w) = (e_k - out) / sum w
        return (e - out) * g
    return e * g


def mse_loss_forward(x, t, weight=None, *, reduction="mean"):
    """loss = w (x - t)^2; 'mean' = sum / N (sum / sum w with a weight of the input's shape)."""
    check_reduction(reduction)
    _check_pair("mse_loss", x, t)
    _check_weight("mse_loss", "weight", x, weight, exact=True)
    d = x - t
    e = d * d
    denom = _elementwise_denom(x, weight, reduction, True)
    out = _reduce(_weighted(e, weight), reduction, denom)
    return out, (d, e, weight, reduction, denom, out)


@_quiet
def mse_loss_backward(dy, cache, need=(True, True, True)):
    """d x = 2 (x - t) w g;  d t = -d x;  d w = (x - t)^2 g (mean: ((x-t)^2 - loss) g)."""
    d, e, w, reduction, denom, out = cache
    g = _coeff(_asarray(dy, dtype=d.dtype), reduction, denom)
    dx = dt = dw = None
    if need[0] or need[1]:
        gx = _weighted(2 * d * g, w)
        dx = gx if need[0] else None
        dt = -gx if need[1] else None
    if len(need) > 2 and need[2] and w is not None:
        dw = _weight_grad(e, g, reduction, True, out)
    return dx, dt, dw


def l1_loss_forward(x, t, weight=None, *, reduction="mean"):
    """loss = w |x - t|; 'mean' = sum / N (sum / sum w with a weight of the input's shape)."""
    check_reduction(reduction)
    _check_pair("l1_loss", x, t)
    _check_weight("l1_loss", "weight", x, weight, exact=True)
    d = x - t
    e = np.abs(d)
    denom = _elementwise_denom(x, weight, reduction, True)
    out = _reduce(_weighted(e, weight), reduction, denom)
    return out, (d, e, weight, reduction, denom, out)


@_quiet
def l1_loss_backward(dy, cache, need=(True, True, True)):
    """d x = sign(x - t) w g (sign(0) = 0, as PyTorch);  d t = -d x;  d w = |x - t| g."""
    d, e, w, reduction, denom, out = cache
    g = _coeff(_asarray(dy, dtype=d.dtype), reduction, denom)
    dx = dt = dw = None
    if need[0] or need[1]:
        gx = _weighted(np.sign(d) * g, w)
        dx = gx if need[0] else None
        dt = -gx if need[1] else None
    if len(need) > 2 and need[2] and w is not None:
        dw = _weight_grad(e, g, reduction, True, out)
    return dx, dt, dw


def smooth_l1_loss_forward(x, t, *, reduction="mean", beta=1.0):
    """loss = 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (d = x - t).

    ``beta == 0`` is the L1 loss; a negative beta is refused.
    """
    check_reduction(reduction)
    beta = float(beta)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    _check_pair("smooth_l1_loss", x, t)
    d = x - t
    a = np.abs(d)
    if beta == 0:
        e = a
    else:
        e = np.where(a < beta, (0.5 / beta) * d * d, a - 0.5 * beta)
    denom = _typed(x.size, x.dtype)
    return _reduce(e, reduction, denom), (d, beta, reduction, denom)


@_quiet
def smooth_l1_loss_backward(dy, cache, need=(True, True)):
    """d x = clip(d / beta, -1, 1) g (sign(d) g when beta == 0);  d t = -d x."""
    d, beta, reduction, denom = cache
    g = _coeff(_asarray(dy, dtype=d.dtype), reduction, denom)
    slope = np.sign(d) if beta == 0 else np.clip(d / beta, -1, 1)
    gx = slope * g
    return (gx if need[0] else None), (-gx if len(need) > 1 and need[1] else None)


def huber_loss_forward(x, t, weight=None, *, reduction="mean", delta=1.0):
    """loss = w * (0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere); 'mean' = sum / N."""
    check_reduction(reduction)
    delta = float(delta)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    _check_pair("huber_loss", x, t)
    _check_weight("huber_loss", "weight", x, weight, exact=True)
    d = x - t
    a = np.abs(d)
    e = np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    denom = _typed(x.size, x.dtype)
    out = _reduce(_weighted(e, weight), reduction, denom)
    return out, (d, e, weight, delta, reduction, denom, out)


@_quiet
def huber_loss_backward(dy, cache, need=(True, True, True)):
    """d x = clip(d, -delta, delta) w g;  d t = -d x;  d w = huber(d) g."""
    d, e, w, delta, reduction, denom, out = cache
    g = _coeff(_asarray(dy, dtype=d.dtype), reduction, denom)
    dx = dt = dw = None
    if need[0] or need[1]:
        gx = _weighted(np.clip(d, -delta, delta) * g, w)
        dx = gx if need[0] else None
        dt = -gx if need[1] else None
    if len(need) > 2 and need[2] and w is not None:
        dw = _weight_grad(e, g, reduction, False, out)
    return dx, dt, dw


def binary_cross_entropy_forward(x, t, weight=None, *, reduction="mean"):
    """loss = -w (t max(log x, -100) + (1 - t) max(log(1 - x), -100)); 'mean' = sum / N.

    ``x`` and ``t`` must lie in [0, 1]; ``weight`` broadcasts to the input's shape.
    """
    check_reduction(reduction)
    _check_pair("binary_cross_entropy", x, t)
    _check_weight("binary_cross_entropy", "weight", x, weight, exact=False)
    for name, arr in (("input", x), ("target", t)):
        if arr.size and not np.all((arr >= 0) & (arr <= 1)):
            raise ValueError(
                f"binary_cross_entropy: all elements of {name} {fmt_shape(arr.shape)} should be "
                f"between 0 and 1, got values in [{np.nanmin(arr)}, {np.nanmax(arr)}]"
                + (" and NaN" if np.isnan(arr).any() else "")
            )
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), BCE_LOG_CLAMP)
        log_1mx = np.maximum(np.log1p(-x), BCE_LOG_CLAMP)
    e = (t - 1) * log_1mx - t * log_x
    denom = _typed(x.size, x.dtype)
    out = _reduce(_weighted(e, weight), reduction, denom)
    return out, (x, t, weight, reduction, denom)


@_quiet
def binary_cross_entropy_backward(dy, cache, need=(True, True)):
    """d x = w g (x - t) / max(x (1 - x), 1e-12);  d t = w g (log(1 - x) - log x) (unclamped)."""
    x, t, w, reduction, denom = cache
    g = _coeff(_asarray(dy, dtype=x.dtype), reduction, denom)
    dx = dt = None
    if need[0]:
        dx = _weighted((x - t) / np.maximum((1 - x) * x, BCE_GRAD_EPS) * g, w)
    if len(need) > 1 and need[1]:
        with np.errstate(divide="ignore", invalid="ignore"):
            dt = _weighted((np.log1p(-x) - np.log(x)) * g, w)
    return dx, dt


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|)): no overflow for any x."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """sigmoid(x) via exp(-|x|) <= 1, so large |x| neither overflows nor gives 0/0."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def binary_cross_entropy_with_logits_forward(x, t, weight=None, pos_weight=None, *, reduction="mean"):
    """Sigmoid + binary cross-entropy in one stable expression (PyTorch's form)::

        loss = w * ((1 - t) x - (1 + (pos_weight - 1) t) log_sigmoid(x))

    which equals ``-w (pos_weight t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))``.  ``weight``
    and ``pos_weight`` broadcast to the input's shape; 'mean' = sum / N.
    """
    check_reduction(reduction)
    op = "binary_cross_entropy_with_logits"
    _check_pair(op, x, t)
    _check_weight(op, "weight", x, weight, exact=False)
    _check_weight(op, "pos_weight", x, pos_weight, exact=False)
    ls = _log_sigmoid(x)
    if pos_weight is not None:
        ls = ls * ((pos_weight - 1) * t + 1)
    e = (1 - t) * x - ls
    denom = _typed(x.size, x.dtype)
    out = _reduce(_weighted(e, weight), reduction, denom)
    return out, (x, t, weight, pos_weight, reduction, denom)


@_quiet
def binary_cross_entropy_with_logits_backward(dy, cache, need=(True, True)):
    """d x = w g ((pos_weight t + 1 - t) sigmoid(x) - pos_weight t)  (sigmoid(x) - t without
    pos_weight);  d t = w g (log_sigmoid(-x) - pos_weight log_sigmoid(x))  (-x without it)."""
    x, t, w, pw, reduction, denom = cache
    g = _coeff(_asarray(dy, dtype=x.dtype), reduction, denom)
    dx = dt = None
    if need[0]:
        if pw is not None:
            pt = pw * t
            dx = (pt + 1 - t) * _sigmoid(x) - pt
        else:
            dx = _sigmoid(x) - t
        dx = _weighted(dx * g, w)
    if len(need) > 1 and need[1]:
        dt = _log_sigmoid(-x) - _log_sigmoid(x) * pw if pw is not None else -x
        dt = _weighted(dt * g, w)
    return dx, dt
