"""Fully connected (affine) layer: y = x W^T + b, the MLP head of a CNN."""

from __future__ import annotations

import math

import numpy as np

from .parallel import matmul
from .shapes import ShapeError, check_float, check_same_dtype, fmt_shape

__all__ = ["linear_forward", "linear_backward"]


def _rows(a):
    """``a (..., k)`` as a matrix ``(prod(...), k)`` (also when a dimension is 0)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None):
    """x (..., in), w (out, in), b (out,) -> y (..., out) with y = x @ w.T + b."""
    check_float(x, "input")
    check_same_dtype(input=x, weight=w, bias=b)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ShapeError(
            f"linear: input {fmt_shape(x.shape)} does not match weight {fmt_shape(w.shape)}; "
            "expected input (..., in_features) and weight (out_features, in_features)"
        )
    if b is not None and b.shape != (w.shape[0],):
        raise ShapeError(f"linear: bias {fmt_shape(b.shape)} must be ({w.shape[0]},) for weight {fmt_shape(w.shape)}")
    y = matmul(_rows(x), w.T).reshape(x.shape[:-1] + w.shape[:1])
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_backward(dy: np.ndarray, cache, need=(True, True, True)):
    """dx = dy W; dW = sum over leading axes of dy^T x; db = sum of dy over leading axes."""
    x, w, has_bias = cache
    dy2 = _rows(dy)
    dx = matmul(dy2, w).reshape(dy.shape[:-1] + w.shape[1:]) if need[0] else None
    dw = matmul(dy2.T, _rows(x)) if need[1] else None
    db = dy2.sum(axis=0) if has_bias and need[2] else None
    return dx, dw, db
