"""Elementwise arithmetic, reductions and shape ops on Tensors, each a small ``Function``.

Broadcasting follows NumPy (and PyTorch).  The backward of a broadcast op sums the incoming
gradient back down to each input's shape (:func:`unbroadcast`): an input that was repeated along
an axis receives the sum of the gradients of all its copies.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..kernels.shapes import normalize_dim
from ..kernels import parallel, workspace
from .function import Function
from .tensor import Tensor, as_array

__all__ = [
    "unbroadcast", "add", "sub", "mul", "div", "neg", "pow", "matmul", "exp", "log", "sqrt", "abs",
    "sum", "mean", "amax", "reshape", "flatten", "permute", "getitem",
]


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes along which an array of ``shape`` was broadcast to ``grad.shape``."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1
    )
    out = grad.sum(axis=axes, keepdims=True) if axes else grad
    return out.reshape(shape)


def _operands(a, b):
    """Arrays for a binary op; a Python scalar takes the dtype of the Tensor beside it."""
    def conv(x, other):
        if isinstance(x, Tensor):
            return x
        if isinstance(x, numbers.Number) and not isinstance(x, np.ndarray):
            o = as_array(other)
            dt = o.dtype if np.issubdtype(o.dtype, np.floating) or isinstance(x, numbers.Integral) else np.float32
            return np.dtype(dt).type(x)  # a NumPy scalar: it goes with arrays of any device
        return as_array(x)
    return conv(a, b), conv(b, a)


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return workspace.add(a, b)  # a residual sum of two activations goes to recycled memory

    @staticmethod
    def backward(ctx, dy):
        sa, sb = ctx.shapes
        return unbroadcast(dy, sa), unbroadcast(dy, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, dy):
        sa, sb = ctx.shapes
        return unbroadcast(dy, sa), unbroadcast(-dy, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved
        da = unbroadcast(dy * b, np.shape(a)) if ctx.needs_input_grad[0] else None
        db = unbroadcast(dy * a, np.shape(b)) if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return np.divide(a, b)

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved
        da = unbroadcast(dy / b, np.shape(a)) if ctx.needs_input_grad[0] else None
        db = unbroadcast(-dy * a / (b * b), np.shape(b)) if ctx.needs_input_grad[1] else None
        return da, db


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, dy):
        return (-dy,)


class Pow(Function):
    @staticmethod
    def forward(ctx, a, *, exponent):
        ctx.save(a)
        ctx.exponent = exponent
        return np.power(a, a.dtype.type(exponent))

    @staticmethod
    def backward(ctx, dy):
        (a,) = ctx.saved
        p = ctx.exponent
        return (dy * p * np.power(a, a.dtype.type(p - 1)),)


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 1 or b.ndim < 1 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied")
        ctx.save(a, b)
        return parallel.matmul(a, b)

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        dy2 = dy
        if a.ndim == 1:
            dy2 = np.expand_dims(dy2, -2)
        if b.ndim == 1:
            dy2 = np.expand_dims(dy2, -1)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = unbroadcast(parallel.matmul(dy2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            g = parallel.matmul(np.swapaxes(a2, -1, -2), dy2)
            db = unbroadcast(g, b2.shape).reshape(b.shape)
        return da, db


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = np.exp(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved
        return (dy * y,)


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved
        return (dy / x,)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        y = np.sqrt(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved
        return (dy / (2 * y),)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved
        return (dy * np.sign(x),)


def _axes(dim, shape):
    """The sorted, non-negative axes named by ``dim`` (all axes when None)."""
    if dim is None:
        return tuple(range(len(shape)))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    return tuple(sorted(normalize_dim(d, shape, "reduction") for d in dims))


class Sum(Function):
    @staticmethod
    def forward(ctx, x, *, dim=None, keepdim=False):
        axes = _axes(dim, x.shape)
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        return backend.get_array_module(x).asarray(x.sum(axis=axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, dy):
        if not ctx.keepdim:
            dy = np.expand_dims(dy, ctx.axes)
        return (np.broadcast_to(dy, ctx.shape).copy(),)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, *, dim=None, keepdim=False):
        axes = _axes(dim, x.shape)
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        ctx.count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        return backend.get_array_module(x).asarray(x.mean(axis=axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, dy):
        if not ctx.keepdim:
            dy = np.expand_dims(dy, ctx.axes)
        return (np.broadcast_to(dy / ctx.count, ctx.shape).copy(),)


class Amax(Function):
    """Maximum over axes; the gradient is shared equally among tied maxima (as PyTorch's amax)."""

    @staticmethod
    def forward(ctx, x, *, dim=None, keepdim=False):
        axes = _axes(dim, x.shape)
        y = np.max(x, axis=axes, keepdims=True)
        ctx.save(x, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else np.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, dy):
        x, y = ctx.saved
        if not ctx.keepdim:
            dy = np.expand_dims(dy, ctx.axes)
        mask = x == y
        return (mask * (dy / mask.sum(axis=ctx.axes, keepdims=True)),)


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, *, shape):
        ctx.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, dy):
        return (dy.reshape(ctx.shape),)


class Permute(Function):
    @staticmethod
    def forward(ctx, x, *, dims):
        if sorted(d % x.ndim for d in dims) != list(range(x.ndim)):
            raise ValueError(f"permute dims {dims} are not a permutation of the {x.ndim} axes of shape {x.shape}")
        ctx.dims = dims
        return np.transpose(x, dims)

    @staticmethod
    def backward(ctx, dy):
        return (np.transpose(dy, np.argsort([d % dy.ndim for d in ctx.dims])),)


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, *, index):
        ctx.shape, ctx.dtype, ctx.index = x.shape, x.dtype, index
        return backend.get_array_module(x).asarray(x[index])

    @staticmethod
    def backward(ctx, dy):
        dx = backend.get_array_module(dy).zeros(ctx.shape, dtype=dy.dtype)
        if _is_basic_index(ctx.index):
            dx[ctx.index] = dy  # a view: each input element appears at most once
        else:
            backend.scatter_add(dx, ctx.index, dy)  # repeated advanced indices accumulate
        return (dx,)


def _is_basic_index(index) -> bool:
    """True for indices made only of ints, slices, None and Ellipsis (NumPy basic indexing)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


class Cast(Function):
    @staticmethod
    def forward(ctx, x, *, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, dy):
        return (dy.astype(ctx.dtype),)


class ToDevice(Function):
    """Move to another device; the gradient goes back to the device of the input."""

    crosses_devices = True

    @staticmethod
    def forward(ctx, x, *, device):
        ctx.device = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx, dy):
        return (backend.to_device(dy, ctx.device),)


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, dy):
        return (dy,)


# --------------------------------------------------------------------- user-facing wrappers
def add(a, b):
    """``a + b`` with broadcasting."""
    return Add.apply(*_operands(a, b))


def sub(a, b):
    """``a - b`` with broadcasting."""
    return Sub.apply(*_operands(a, b))


def mul(a, b):
    """``a * b`` with broadcasting."""
    return Mul.apply(*_operands(a, b))


def div(a, b):
    """``a / b`` with broadcasting."""
    return Div.apply(*_operands(a, b))


def neg(a):
    return Neg.apply(a)


def pow(a, exponent):
    if not isinstance(exponent, numbers.Number):
        raise TypeError("pow supports a scalar exponent only")
    return Pow.apply(a, exponent=exponent)


def matmul(a, b):
    return MatMul.apply(*_operands(a, b))


def exp(x):
    return Exp.apply(x)


def log(x):
    return Log.apply(x)


def sqrt(x):
    return Sqrt.apply(x)


def abs(x):
    return Abs.apply(x)


def sum(x, dim=None, keepdim=False):
    return Sum.apply(x, dim=dim, keepdim=keepdim)


def mean(x, dim=None, keepdim=False):
    return Mean.apply(x, dim=dim, keepdim=keepdim)


def amax(x, dim=None, keepdim=False):
    return Amax.apply(x, dim=dim, keepdim=keepdim)


def reshape(x, shape):
    return Reshape.apply(x, shape=tuple(int(s) for s in shape))


def flatten(x, start_dim=0, end_dim=-1):
    shape = as_array(x).shape
    nd = len(shape)
    if nd == 0:
        return reshape(x, (1,))
    s, e = start_dim % nd, end_dim % nd
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {shape}")
    new = shape[:s] + (int(np.prod(shape[s : e + 1])),) + shape[e + 1 :]
    return reshape(x, new)


def permute(x, dims):
    return Permute.apply(x, dims=tuple(dims))


def getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(x, index=index)
