"""Convolutions: conv1d, conv2d, conv_transpose1d, conv_transpose2d (PyTorch's signatures).

Layouts follow PyTorch: input (N, C, L) / (N, C, H, W) -- or unbatched (C, L) / (C, H, W) --,
convolution weight (out, in/groups, K...), transposed-convolution weight (in, out/groups, K...).
1-D ops are the 2-D kernels with a singleton height axis.

Output sizes per spatial axis (padding ``lo``/``hi`` before/after, ``K_eff = d*(K-1) + 1``):

* convolution:  ``L_out = floor((L + lo + hi - K_eff) / S) + 1``
* transposed:   ``L_out = (L - 1)*S - 2*padding + K_eff + output_padding``
"""

from __future__ import annotations


from ..autograd import Function
from ..autograd.tensor import as_array
from ..kernels import conv as K
from ..kernels.shapes import ShapeError, as_padding, as_tuple, fmt_shape

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


def _lift(x, w, b, nd, op):
    """Check ranks and return (x4, w4, unbatched) with 1-D and unbatched inputs lifted to 4-D views."""
    layout = "(N, C, L) or (C, L)" if nd == 1 else "(N, C, H, W) or (C, H, W)"
    if x.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{op}: input must be {nd + 1}-D or {nd + 2}-D {layout}, got shape {fmt_shape(x.shape)}")
    if w.ndim != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-D, got shape {fmt_shape(w.shape)}")
    if b is not None and b.ndim != 1:
        raise ShapeError(f"{op}: bias must be 1-D, got shape {fmt_shape(b.shape)}")
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    if nd == 1:
        x, w = x[:, :, None, :], w[:, :, None, :]
    return x, w, unbatched


def _drop(a, nd, unbatched):
    """Undo :func:`_lift` on an activation-shaped array."""
    if nd == 1:
        a = a[:, :, 0, :]
    return a[0] if unbatched else a


def _lift2(nd, stride, padding, dilation, extra=None):
    """Prepend the singleton height axis's (1, (0, 0), 1) to 1-D arguments."""
    if nd == 2:
        return stride, padding, dilation, extra
    return (1,) + stride, ((0, 0),) + padding, (1,) + dilation, (None if extra is None else (0,) + extra)


def _backward_2d(ctx, dy, kernel_backward):
    """Lift dy to the 2-D batched layout the kernels use, run ``kernel_backward``, and reshape
    the gradients back to the caller's (possibly 1-D or unbatched) shapes."""
    nd, unbatched, x_shape, w_shape = ctx.meta
    if unbatched:
        dy = dy[None]
    if nd == 1:
        dy = dy[:, :, None, :]
    need = ctx.needs_input_grad + (False,) * (3 - len(ctx.needs_input_grad))
    dx, dw, db = kernel_backward(dy, ctx.cache, need)
    return (
        None if dx is None else dx.reshape(x_shape),
        None if dw is None else dw.reshape(w_shape),
        db,
    )


class _Conv(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, *, nd, stride, padding, dilation, groups):
        x4, w4, unbatched = _lift(x, w, b, nd, f"conv{nd}d")
        s4, p4, d4, _ = _lift2(nd, stride, padding, dilation)
        keep_cols = len(ctx.needs_input_grad) > 1 and ctx.needs_input_grad[1]
        y, ctx.cache = K.conv2d_forward(x4, w4, b, s4, p4, d4, groups, keep_cols=keep_cols)
        ctx.meta = (nd, unbatched, x.shape, w.shape)
        return _drop(y, nd, unbatched)

    @staticmethod
    def backward(ctx, dy):
        return _backward_2d(ctx, dy, K.conv2d_backward)


class _ConvTranspose(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, *, nd, stride, padding, output_padding, dilation, groups):
        x4, w4, unbatched = _lift(x, w, b, nd, f"conv_transpose{nd}d")
        s4, p4, d4, a4 = _lift2(nd, stride, padding, dilation, output_padding)
        y, ctx.cache = K.conv_transpose2d_forward(x4, w4, b, s4, p4, a4, d4, groups)
        ctx.meta = (nd, unbatched, x.shape, w.shape)
        return _drop(y, nd, unbatched)

    @staticmethod
    def backward(ctx, dy):
        return _backward_2d(ctx, dy, K.conv_transpose2d_backward)


def _conv(nd, input, weight, bias, stride, padding, dilation, groups):
    op = f"conv{nd}d"
    x, w = as_array(input), as_array(weight)
    b = None if bias is None else as_array(bias)
    _, _, unbatched = _lift(x, w, b, nd, op)  # rank errors quote the caller's shapes
    stride = as_tuple(stride, nd, "stride", minimum=1)
    dilation = as_tuple(dilation, nd, "dilation", minimum=1)
    pairs = as_padding(padding, nd, kernel=w.shape[2:], dilation=dilation, stride=stride)
    xb = x[None] if unbatched else x
    K.check_conv_args(op, xb, w, b, stride, pairs, dilation, groups)
    return _Conv.apply(input, weight, bias, nd=nd, stride=stride, padding=pairs, dilation=dilation, groups=groups)


def _conv_transpose(nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
    op = f"conv_transpose{nd}d"
    x, w = as_array(input), as_array(weight)
    b = None if bias is None else as_array(bias)
    _lift(x, w, b, nd, op)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of {nd} ints, got {padding!r}")
    stride = as_tuple(stride, nd, "stride", minimum=1)
    dilation = as_tuple(dilation, nd, "dilation", minimum=1)
    pairs = tuple((p, p) for p in as_tuple(padding, nd, "padding", minimum=0))
    output_padding = as_tuple(output_padding, nd, "output_padding", minimum=0)
    xb = x[None] if x.ndim == nd + 1 else x
    K.check_conv_transpose_args(op, xb, w, b, stride, pairs, output_padding, dilation, groups)
    return _ConvTranspose.apply(
        input, weight, bias, nd=nd, stride=stride, padding=pairs, output_padding=output_padding,
        dilation=dilation, groups=groups,
    )


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) over an NCHW input.

    Shapes: input (N, C, H, W) or (C, H, W); weight (O, C/groups, K_h, K_w); bias (O,) or None
    -> (N, O, H_out, W_out) with ``H_out = floor((H + lo + hi - dilation*(K_h-1) - 1)/stride) + 1``.

    ``z[n, o, p, q] = b[o] + sum_{c,i,j} w[o, c, i, j] * xpad[n, g*C_g + c, p*S + i*d, q*S + j*d]``.

    ``padding``: int, per-axis tuple, per-axis (before, after) pairs (asymmetric, an extension
    of PyTorch), ``'valid'`` or ``'same'`` (stride 1 only; an odd total puts the extra zero after).
    """
    return _conv(2, input, weight, bias, stride, padding, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution: input (N, C, L) or (C, L), weight (O, C/groups, K) -> (N, O, L_out).

    ``z[n, o, p] = b[o] + sum_{c,i} w[o, c, i] * xpad[n, g*C_g + c, p*S + i*d]``,
    ``L_out = floor((L + lo + hi - d*(K-1) - 1)/S) + 1``.  Padding as for :func:`conv2d`.
    """
    return _conv(1, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution ("deconvolution"), the adjoint of :func:`conv2d`.

    Shapes: input (N, C, H, W) or (C, H, W); weight (C, O/groups, K_h, K_w); bias (O,) or None
    -> (N, O, H_out, W_out), ``H_out = (H-1)*S - 2*padding + d*(K_h-1) + output_padding + 1``.

    ``out[n, g*O_g + o, p*S + i*d - padding, q*S + j*d - padding] += x[n, c, p, q] * w[c, o, i, j]``.
    ``output_padding`` must be smaller than the stride or the dilation (PyTorch's rule).
    """
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution: input (N, C, L), weight (C, O/groups, K) -> (N, O, L_out),
    ``L_out = (L-1)*S - 2*padding + d*(K-1) + output_padding + 1``."""
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation)
