"""Pooling with PyTorch's names, signatures, defaults and output sizes.

Shapes: 1-D ops take ``(N, C, L)`` or ``(C, L)``, 2-D ops ``(N, C, H, W)`` or ``(C, H, W)``.
Output size per spatial axis (PyTorch's rule)::

    L_out = floor((L + 2P - d*(K-1) - 1) / S) + 1          (ceil instead of floor with ceil_mode,
                                                              dropping a last window that would
                                                              start in the right padding)

``stride`` defaults to ``kernel_size``; the padding may be at most half the effective kernel.
The math lives in :mod:`striate.kernels.pool`; these functions validate, dispatch and record
the backward.
"""

from __future__ import annotations

from ..autograd import Function
from ..autograd.function import is_grad_enabled
from ..autograd.tensor import as_array
from ..kernels import pool as K

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "avg_pool1d", "avg_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "max_unpool1d", "max_unpool2d",
]


# ----------------------------------------------------------------------------------- Functions
class _MaxPool(Function):
    @staticmethod
    def forward(ctx, x, *, nd, kernel_size, stride, padding, dilation, ceil_mode, return_indices, track, op):
        # the argmax is only worth computing for the indices or a backward that will happen
        need = return_indices or (track and bool(ctx.needs_input_grad[0]))
        y, ctx.cache = K.max_pool_forward(
            x, kernel_size, stride, padding, dilation, ceil_mode, nd=nd, need_argmax=need, op=op,
        )
        if return_indices:
            return y, K.max_pool_indices(ctx.cache)
        return y

    @staticmethod
    def backward(ctx, dy, *_):
        return (K.max_pool_backward(dy, ctx.cache),)


class _AvgPool(Function):
    @staticmethod
    def forward(ctx, x, *, nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, op):
        y, ctx.cache = K.avg_pool_forward(
            x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd=nd, op=op,
        )
        return y

    @staticmethod
    def backward(ctx, dy):
        return (K.avg_pool_backward(dy, ctx.cache),)


class _AdaptiveAvgPool(Function):
    @staticmethod
    def forward(ctx, x, *, nd, output_size, op):
        y, ctx.cache = K.adaptive_avg_pool_forward(x, output_size, nd=nd, op=op)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (K.adaptive_avg_pool_backward(dy, ctx.cache),)


class _AdaptiveMaxPool(Function):
    @staticmethod
    def forward(ctx, x, *, nd, output_size, return_indices, op):
        y, ctx.cache = K.adaptive_max_pool_forward(x, output_size, nd=nd, op=op)
        if return_indices:
            return y, K.adaptive_max_pool_indices(ctx.cache)
        return y

    @staticmethod
    def backward(ctx, dy, *_):
        return (K.adaptive_max_pool_backward(dy, ctx.cache),)


class _MaxUnpool(Function):
    @staticmethod
    def forward(ctx, x, indices, *, out, op):
        y, ctx.cache = K.max_unpool_forward(x, indices, out, op=op)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.max_unpool_backward(dy, ctx.cache), None


# ------------------------------------------------------------------------------- max pooling
def _max_pool(input, nd, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    op = f"max_pool{nd}d"
    # validate before recording anything (the kernel validates again, cheaply)
    K.pool_geometry(as_array(input).shape, nd, kernel_size, stride, padding, dilation, ceil_mode, op=op)
    return _MaxPool.apply(
        input, nd=nd, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
        ceil_mode=ceil_mode, return_indices=bool(return_indices), track=is_grad_enabled(), op=op,
    )


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """1-D max pooling: ``y[n, c, i] = max_k x[n, c, i*S - P + k*d]`` (padding is -inf).

    Shapes: input ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, L_out)``.  With ``return_indices`` also
    returns the int64 position ``l`` of each maximum (first one on ties), for :func:`max_unpool1d`.
    Backward: each output's gradient goes to its maximum; overlapping windows accumulate.
    """
    return _max_pool(input, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling: ``y[n, c, i, j] = max_{a, b} x[n, c, i*Sh - Ph + a*dh, j*Sw - Pw + b*dw]``.

    Shapes: input ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, H_out, W_out)``.  With
    ``return_indices`` also returns the int64 flat index ``h * W + w`` of each maximum within
    its ``(H, W)`` plane (first in row-major order on ties), as PyTorch does.
    Backward: ``dx[argmax] += dy``, so an element that is the maximum of several overlapping
    windows collects all their gradients.
    """
    return _max_pool(input, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    """:func:`max_pool1d` returning ``(output, indices)``."""
    return _max_pool(input, 1, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    """:func:`max_pool2d` returning ``(output, indices)``."""
    return _max_pool(input, 2, kernel_size, stride, padding, dilation, ceil_mode, True)


# --------------------------------------------------------------------------- average pooling
def _avg_pool(input, nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    op = f"avg_pool{nd}d"
    K.pool_geometry(as_array(input).shape, nd, kernel_size, stride, padding, 1, ceil_mode, op=op)
    return _AvgPool.apply(
        input, nd=nd, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
        count_include_pad=bool(count_include_pad), divisor_override=divisor_override, op=op,
    )


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling: ``y[n, c, i] = sum_k x[n, c, i*S - P + k] / divisor_i`` (zero padding).

    Shapes: ``(N, C, L)`` or ``(C, L)`` -> ``(N, C, L_out)``.  The divisor is the window length
    cut at the padded end (``count_include_pad=True``) or the number of real elements in it.
    Backward: every element of a window receives ``dy / divisor``.
    """
    return _avg_pool(input, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling: ``y[n, c, i, j] = (window sum) / divisor_ij`` (zero padding).

    Shapes: ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, H_out, W_out)``.  The divisor is
    ``divisor_override`` when given, else the window area cut at the padded end
    (``count_include_pad=True``) or the number of real elements it covers.
    Backward: every element of a window receives ``dy / divisor`` (overlaps add).
    """
    return _avg_pool(input, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


# -------------------------------------------------------------------------- adaptive pooling
def _adaptive_avg(input, nd, output_size):
    op = f"adaptive_avg_pool{nd}d"
    K.adaptive_output_size(as_array(input).shape, nd, output_size, op)
    return _AdaptiveAvgPool.apply(input, nd=nd, output_size=output_size, op=op)


def adaptive_avg_pool1d(input, output_size):
    """Average over windows ``[floor(i*L/Lo), ceil((i+1)*L/Lo))``: ``(N, C, L) -> (N, C, Lo)``.

    ``output_size=1`` is global average pooling.
    """
    return _adaptive_avg(input, 1, output_size)


def adaptive_avg_pool2d(input, output_size):
    """Average over row windows x column windows ``[floor(i*H/Ho), ceil((i+1)*H/Ho))``.

    Shapes ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, Ho, Wo)``; ``output_size`` is an int or
    a pair whose ``None`` entries keep the input size; ``1`` is global average pooling.
    """
    return _adaptive_avg(input, 2, output_size)


def _adaptive_max(input, nd, output_size, return_indices):
    op = f"adaptive_max_pool{nd}d"
    K.adaptive_output_size(as_array(input).shape, nd, output_size, op)
    return _AdaptiveMaxPool.apply(input, nd=nd, output_size=output_size, return_indices=bool(return_indices), op=op)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Maximum over the adaptive windows (see :func:`adaptive_avg_pool1d`); optional int64 indices."""
    return _adaptive_max(input, 1, output_size, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Maximum over the adaptive windows (see :func:`adaptive_avg_pool2d`); optional int64
    indices ``h * W + w`` within each plane."""
    return _adaptive_max(input, 2, output_size, return_indices)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=True):
    return _adaptive_max(input, 1, output_size, True)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=True):
    return _adaptive_max(input, 2, output_size, True)


# --------------------------------------------------------------------------------- unpooling
def _max_unpool(input, indices, nd, kernel_size, stride, padding, output_size):
    op = f"max_unpool{nd}d"
    out = K.unpool_output_size(as_array(input).shape, nd, kernel_size, stride, padding, output_size, op=op)
    return _MaxUnpool.apply(input, indices, out=out, op=op)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of :func:`max_pool1d`: zeros of length ``(L-1)*S - 2P + K`` (or
    ``output_size``) with ``input`` written at ``indices``.  Backward gathers at the indices."""
    return _max_unpool(input, indices, 1, kernel_size, stride, padding, output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of :func:`max_pool2d`: each ``(H, W)`` plane of zeros of size
    ``((H-1)*S - 2P + K)`` per axis (or ``output_size``) receives ``input`` at the flat
    ``indices``.  Backward: ``dx = dy.flat[indices]``."""
    return _max_unpool(input, indices, 2, kernel_size, stride, padding, output_size)
