"""Affine layer, shape ops and joins: linear, flatten, reshape, cat, stack, split, pad, arithmetic."""

from __future__ import annotations

import builtins

import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from ..autograd import ops as _ops
from ..autograd.tensor import as_array
from ..kernels import linear as K
from ..kernels.shapes import ShapeError, fmt_shape

__all__ = [
    "linear", "flatten", "reshape", "cat", "concat", "stack", "split", "pad",
    "add", "sub", "mul", "div", "sum", "mean", "matmul", "exp", "log",
]

add, sub, mul, div, matmul, exp, log = _ops.add, _ops.sub, _ops.mul, _ops.div, _ops.matmul, _ops.exp, _ops.log
reshape = _ops.reshape


def sum(input, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    """Sum over ``dim`` (all axes when None)."""
    return _ops.sum(input, dim=dim, keepdim=keepdim)


def mean(input, dim=None, keepdim: bool = False):
    """Mean over ``dim`` (all axes when None)."""
    return _ops.mean(input, dim=dim, keepdim=keepdim)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    """Merge axes ``start_dim..end_dim`` into one (``torch.flatten``)."""
    return _ops.flatten(input, start_dim, end_dim)


class _Linear(Function):
    @staticmethod
    def forward(ctx, x, w, b=None):
        y, ctx.cache = K.linear_forward(x, w, b)
        return y

    @staticmethod
    def backward(ctx, dy):
        need = ctx.needs_input_grad + (False,) * (3 - len(ctx.needs_input_grad))
        return K.linear_backward(dy, ctx.cache, need)


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias.  Shapes: input (*, in), weight (out, in), bias (out,) -> (*, out)."""
    return _Linear.apply(input, weight, bias)


def _check_joinable(arrays, dim, what):
    if not arrays:
        raise ValueError(f"{what}: expected a non-empty sequence of tensors")
    first = arrays[0]
    for a in arrays[1:]:
        if a.dtype != first.dtype:
            raise TypeError(f"{what}: dtype mismatch {first.dtype} vs {a.dtype}")


class _Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, dim):
        _check_joinable(arrays, dim, "cat")
        ref = arrays[0]
        axis = dim % ref.ndim
        for a in arrays[1:]:
            if a.ndim != ref.ndim or any(s != t for k, (s, t) in enumerate(zip(a.shape, ref.shape)) if k != axis):
                raise ShapeError(
                    f"cat: shapes {fmt_shape(ref.shape)} and {fmt_shape(a.shape)} differ outside dim {dim}"
                )
        ctx.sizes, ctx.axis = [a.shape[axis] for a in arrays], axis
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, dy):
        cuts = np.cumsum(ctx.sizes)[:-1].tolist()
        return tuple(np.split(dy, cuts, axis=ctx.axis))


def cat(tensors, dim: int = 0):
    """Join tensors along an existing axis ``dim``; every other axis must agree."""
    return _Cat.apply(*tensors, dim=dim)


concat = cat


class _Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, dim):
        _check_joinable(arrays, dim, "stack")
        for a in arrays[1:]:
            if a.shape != arrays[0].shape:
                raise ShapeError(f"stack: all shapes must be equal, got {fmt_shape(arrays[0].shape)} and {fmt_shape(a.shape)}")
        ctx.axis = dim % (arrays[0].ndim + 1)
        return np.stack(arrays, axis=ctx.axis)

    @staticmethod
    def backward(ctx, dy):
        return tuple(np.moveaxis(dy, ctx.axis, 0))


def stack(tensors, dim: int = 0):
    """Join equally shaped tensors along a new axis ``dim``."""
    return _Stack.apply(*tensors, dim=dim)


class _Slice(Function):
    @staticmethod
    def forward(ctx, x, *, axis, start, stop):
        ctx.shape, ctx.axis, ctx.start, ctx.stop = x.shape, axis, start, stop
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, stop)
        return x[tuple(index)]

    @staticmethod
    def backward(ctx, dy):
        dx = backend.get_array_module(dy).zeros(ctx.shape, dtype=dy.dtype)
        index = [slice(None)] * dx.ndim
        index[ctx.axis] = slice(ctx.start, ctx.stop)
        dx[tuple(index)] = dy
        return (dx,)


def split(tensor, split_size_or_sections, dim: int = 0):
    """Split into chunks of ``split_size`` (last may be smaller) or of the listed sizes (``torch.split``)."""
    shape = as_array(tensor).shape
    axis = dim % len(shape)
    n = shape[axis]
    if isinstance(split_size_or_sections, (int, np.integer)):
        step = int(split_size_or_sections)
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, n - s) for s in range(0, n, step)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n or any(s < 0 for s in sizes):
            raise ShapeError(f"split: sizes {sizes} do not add up to {n}, the length of dim {dim} of shape {fmt_shape(shape)}")
    out, start = [], 0
    for s in sizes:
        out.append(_Slice.apply(tensor, axis=axis, start=start, stop=start + s))
        start += s
    return tuple(out)


class _Pad(Function):
    @staticmethod
    def forward(ctx, x, *, pad, value):
        pairs = [(0, 0)] * x.ndim
        for k in range(len(pad) // 2):
            pairs[x.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
        # negative amounts crop, positive ones add `value`
        grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
        crop = tuple(slice(max(-lo, 0), s + max(lo, 0) + max(hi, 0) - max(-hi, 0)) for (lo, hi), s in zip(pairs, x.shape))
        out_shape = [s + lo + hi for (lo, hi), s in zip(pairs, x.shape)]
        if any(s < 0 for s in out_shape):
            raise ShapeError(f"pad {tuple(pad)} would give a negative size for input {fmt_shape(x.shape)}")
        y = np.pad(x, grow, mode="constant", constant_values=value)[crop]
        ctx.pairs = pairs
        ctx.shape = x.shape
        return backend.get_array_module(y).ascontiguousarray(y)

    @staticmethod
    def backward(ctx, dy):
        # the gradient of a pad is a crop of the same amounts (and zero where the input was cropped)
        dx = backend.get_array_module(dy).zeros(ctx.shape, dtype=dy.dtype)
        src, dst = [], []
        for (lo, hi), s, so in zip(ctx.pairs, ctx.shape, dy.shape):
            a = max(lo, 0)
            b = max(-lo, 0)
            n = so - a - max(hi, 0)
            src.append(slice(a, a + n))
            dst.append(slice(b, b + n))
        dx[tuple(dst)] = dy[tuple(src)]
        return (dx,)


def pad(input, pad, mode: str = "constant", value: float = 0.0):
    """Pad (or, with negative amounts, crop) the last axes, as ``torch.nn.functional.pad``.

    ``pad`` = (last_before, last_after, second_last_before, second_last_after, ...).  Only
    ``mode='constant'`` is supported.
    """
    x = as_array(input)
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not supported (only 'constant')")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ShapeError(f"pad: {pad} must hold an even number of amounts, at most 2 per axis of {fmt_shape(x.shape)}")
    return _Pad.apply(input, pad=pad, value=value)

