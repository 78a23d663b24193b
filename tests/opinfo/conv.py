"""Registry entries: conv1d, conv2d, conv_transpose1d, conv_transpose2d."""

from __future__ import annotations

import warnings

import numpy as np

import striate.functional as F
from striate.kernels.shapes import ShapeError
from striate.reference import conv as R

from . import ErrorCase, OpInfo, Sample, register


# ------------------------------------------------------------------------------ torch twins

def _is_pairs(padding):
    return isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list)) for p in padding)


def torch_conv(torch, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """torch's conv1d/conv2d; asymmetric (before, after) padding becomes F.pad then padding 0."""
    nd = w.dim() - 2
    if _is_pairs(padding):
        flat = []
        for lo, hi in reversed(padding):  # F.pad lists the last axis first
            flat += [lo, hi]
        x = torch.nn.functional.pad(x, flat)
        padding = 0
    fn = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
    with warnings.catch_warnings():  # 'same' with an even kernel: torch notes it copies the input
        warnings.simplefilter("ignore", UserWarning)
        return fn(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


def torch_conv_transpose(torch, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    nd = w.dim() - 2
    fn = torch.nn.functional.conv_transpose1d if nd == 1 else torch.nn.functional.conv_transpose2d
    return fn(x, w, b, stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)


# ------------------------------------------------------------------------------ fan-in helpers

def conv_fan_in(x_shape, w_shape, out_shape, groups):
    """Largest reduction length among z (C_g*K), dW (N*out positions) and dX (O_g*K)."""
    k = int(np.prod(w_shape[2:]))
    return max(w_shape[1] * k, out_shape[0] * int(np.prod(out_shape[2:])), (w_shape[0] // groups) * k)


def conv_transpose_fan_in(x_shape, w_shape, groups):
    k = int(np.prod(w_shape[2:]))
    return max((x_shape[1] // groups) * k, x_shape[0] * int(np.prod(x_shape[2:])), w_shape[1] * k)


# ------------------------------------------------------------------------------ samples

def _conv2d_samples(rng):
    specs = [
        # (x shape, w shape, bias, kwargs, desc)
        ((2, 3, 6, 5), (4, 3, 3, 3), True, dict(padding=1), "3x3 pad 1"),
        ((2, 2, 7, 6), (3, 2, 3, 2), False, dict(stride=2, padding=((1, 0), (0, 2))), "stride 2, asymmetric pad"),
        ((1, 4, 7, 7), (6, 2, 3, 2), True, dict(stride=(1, 2), padding=(2, 1), dilation=2, groups=2),
         "dilation 2, groups 2"),
        ((2, 3, 5, 6), (6, 1, 3, 3), True, dict(padding="same", groups=3), "depthwise x2, same"),
        ((1, 2, 6, 5), (3, 2, 2, 4), False, dict(padding="same", dilation=(1, 2)), "same, even kernel"),
        ((2, 2, 8, 7), (2, 2, 2, 2), True, dict(stride=3, padding="valid"), "stride > kernel"),
    ]
    return _make(rng, specs, conv=True)


def _conv1d_samples(rng):
    specs = [
        ((2, 3, 9), (4, 3, 3), True, dict(padding=1), "k3 pad 1"),
        ((2, 4, 11), (6, 2, 4), False, dict(stride=2, padding=((2, 1),), dilation=2, groups=2),
         "stride 2, asymmetric pad, dilation, groups"),
        ((1, 3, 8), (3, 1, 2), True, dict(padding="same", groups=3), "depthwise, same, even kernel"),
        ((2, 2, 10), (3, 2, 2), True, dict(stride=4), "stride > kernel"),
    ]
    return _make(rng, specs, conv=True)


def _conv_transpose2d_samples(rng):
    specs = [
        ((2, 3, 4, 3), (3, 2, 3, 3), True, dict(stride=2, padding=1, output_padding=1), "stride 2, output_padding"),
        ((1, 4, 3, 4), (4, 3, 2, 3), False, dict(stride=(1, 3), padding=(0, 1), groups=2, dilation=(2, 1),
                                                 output_padding=(1, 2)), "groups, dilation, op < dilation"),
        ((2, 3, 3, 3), (3, 1, 3, 3), True, dict(groups=3, padding=1), "depthwise"),
        ((1, 2, 3, 2), (2, 2, 2, 2), True, dict(stride=3), "stride > kernel (gaps)"),
    ]
    return _make(rng, specs, conv=False)


def _conv_transpose1d_samples(rng):
    specs = [
        ((2, 3, 5), (3, 2, 3), True, dict(stride=2, padding=1, output_padding=1), "stride 2, output_padding"),
        ((1, 4, 4), (4, 3, 2), False, dict(groups=2, dilation=3, output_padding=2), "groups, op < dilation"),
        ((2, 2, 4), (2, 1, 4), True, dict(stride=3, padding=2, groups=2), "stride 3, depthwise"),
    ]
    return _make(rng, specs, conv=False)


def _make(rng, specs, conv):
    out = []
    for xs, ws, bias, kw, desc in specs:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        groups = kw.get("groups", 1)
        o = ws[0] if conv else ws[1] * groups
        args = (x, w, rng.standard_normal(o)) if bias else (x, w)
        if conv:
            ref = R.conv2d if len(ws) == 4 else R.conv1d
            y_shape = ref(x, w, **kw).shape
            fan = conv_fan_in(xs, ws, y_shape, groups)
        else:
            fan = conv_transpose_fan_in(xs, ws, groups)
        out.append(Sample(args, kw, desc=desc, fan_in=fan))
    return out


# ------------------------------------------------------------------------------ errors

def _conv2d_errors():
    z = np.zeros
    x, w = z((2, 3, 8, 8)), z((4, 3, 3, 3))
    return [
        ErrorCase((z((3, 8)), w), {}, ShapeError, r"\(3, 8\)", "wrong input rank"),
        ErrorCase((x, z((4, 3, 3))), {}, ShapeError, r"weight.*\(4, 3, 3\)", "wrong weight rank"),
        ErrorCase((x, z((4, 2, 3, 3))), {}, ShapeError, r"\(2, 3, 8, 8\).*\(4, 2, 3, 3\)", "channel mismatch"),
        ErrorCase((z((2, 4, 8, 8)), z((6, 1, 3, 3))), {"groups": 4}, ShapeError,
                  r"groups=4.*\(2, 4, 8, 8\).*\(6, 1, 3, 3\)", "groups do not divide out channels"),
        ErrorCase((z((2, 3, 8, 8)), z((4, 1, 3, 3))), {"groups": 2}, ShapeError,
                  r"groups=2.*\(2, 3, 8, 8\)", "groups do not divide in channels"),
        ErrorCase((z((1, 1, 3, 3)), z((1, 1, 5, 5))), {}, ShapeError, r"\(5, 5\).*\(3, 3\).*\(1, 1, 3, 3\)",
                  "kernel larger than input"),
        ErrorCase((z((1, 1, 3, 3)), z((1, 1, 3, 3))), {"dilation": 2}, ShapeError,
                  r"spans \(5, 5\).*\(3, 3\)", "dilated kernel larger than padded input"),
        ErrorCase((x, w), {"stride": 0}, ShapeError, r"stride must be positive", "zero stride"),
        ErrorCase((x, w), {"dilation": (1, -1)}, ShapeError, r"dilation must be positive", "negative dilation"),
        ErrorCase((x, w), {"padding": -1}, ShapeError, r"padding must be non-negative", "negative padding"),
        ErrorCase((x, w), {"padding": ((0, 1), (-1, 0))}, ShapeError, r"non-negative", "negative pair"),
        ErrorCase((x, w), {"padding": "same", "stride": 2}, ShapeError, r"same.*stride", "same with stride"),
        ErrorCase((x, w, z(3)), {}, ShapeError, r"bias \(3,\).*\(4,\).*\(4, 3, 3, 3\)", "bias size"),
        ErrorCase((x, w), {"groups": 0}, ShapeError, r"groups", "zero groups"),
        ErrorCase((x.astype(np.float32), w), {}, TypeError, r"float32.*float64", "dtype mismatch"),
        ErrorCase((x, w, z(4, dtype=np.float32)), {}, TypeError, r"float64.*float32", "bias dtype mismatch"),
    ]


def _conv1d_errors():
    z = np.zeros
    x, w = z((2, 3, 8)), z((4, 3, 3))
    return [
        ErrorCase((z((2, 3, 8, 8)), w), {}, ShapeError, r"\(2, 3, 8, 8\)", "wrong input rank"),
        ErrorCase((x, z((4, 2, 3))), {}, ShapeError, r"\(2, 3, 8\).*\(4, 2, 3\)", "channel mismatch"),
        ErrorCase((z((2, 3, 2)), w), {}, ShapeError, r"\(3,\).*\(2,\).*\(2, 3, 2\)", "kernel larger than input"),
        ErrorCase((x, w), {"stride": 0}, ShapeError, r"stride", "zero stride"),
        ErrorCase((x, w, z(2)), {}, ShapeError, r"bias \(2,\)", "bias size"),
        ErrorCase((x, w.astype(np.float32)), {}, TypeError, r"float64.*float32", "dtype mismatch"),
    ]


def _conv_transpose2d_errors():
    z = np.zeros
    x, w = z((2, 3, 5, 5)), z((3, 2, 3, 3))
    return [
        ErrorCase((z((3, 5)), w), {}, ShapeError, r"\(3, 5\)", "wrong input rank"),
        ErrorCase((x, z((4, 2, 3, 3))), {}, ShapeError, r"\(2, 3, 5, 5\).*\(4, 2, 3, 3\)", "channel mismatch"),
        ErrorCase((x, w), {"groups": 2}, ShapeError, r"groups=2.*\(2, 3, 5, 5\)", "groups do not divide"),
        ErrorCase((x, w), {"stride": 2, "output_padding": 2}, ShapeError,
                  r"output_padding \(2, 2\).*stride \(2, 2\).*dilation \(1, 1\)", "output_padding too large"),
        ErrorCase((x, w, z(3)), {}, ShapeError, r"bias \(3,\).*\(3, 2, 3, 3\)", "bias size"),
        ErrorCase((z((1, 1, 1, 1)), z((1, 1, 1, 1))), {"padding": 1}, ShapeError, r"\(1, 1, 1, 1\)", "empty output"),
        ErrorCase((x, w), {"padding": -1}, ShapeError, r"padding", "negative padding"),
        ErrorCase((x, w), {"stride": 0}, ShapeError, r"stride", "zero stride"),
        ErrorCase((x, w), {"padding": "same"}, ValueError, r"padding", "string padding"),
        ErrorCase((x.astype(np.float32), w), {}, TypeError, r"float32.*float64", "dtype mismatch"),
    ]


def _conv_transpose1d_errors():
    z = np.zeros
    x, w = z((2, 3, 5)), z((3, 2, 3))
    return [
        ErrorCase((x, z((2, 2, 3))), {}, ShapeError, r"\(2, 3, 5\).*\(2, 2, 3\)", "channel mismatch"),
        ErrorCase((x, w), {"stride": 2, "output_padding": 3}, ShapeError, r"output_padding", "output_padding"),
        ErrorCase((x, w.astype(np.float32)), {}, TypeError, r"float64.*float32", "dtype mismatch"),
    ]


def _grad(ref_backward):
    def fn(dy, x, w, b=None, **kw):
        return ref_backward(dy, x, w, b, **kw)
    return fn


register(
    OpInfo(name="conv2d", op=F.conv2d, samples=_conv2d_samples, ref=R.conv2d, ref_grad=_grad(R.conv2d_backward),
           torch_fn=torch_conv, errors=_conv2d_errors, family="conv"),
    OpInfo(name="conv1d", op=F.conv1d, samples=_conv1d_samples, ref=R.conv1d, ref_grad=_grad(R.conv1d_backward),
           torch_fn=torch_conv, errors=_conv1d_errors, family="conv"),
    OpInfo(name="conv_transpose2d", op=F.conv_transpose2d, samples=_conv_transpose2d_samples,
           ref=R.conv_transpose2d, ref_grad=_grad(R.conv_transpose2d_backward),
           torch_fn=torch_conv_transpose, errors=_conv_transpose2d_errors, family="conv"),
    OpInfo(name="conv_transpose1d", op=F.conv_transpose1d, samples=_conv_transpose1d_samples,
           ref=R.conv_transpose1d, ref_grad=_grad(R.conv_transpose1d_backward),
           torch_fn=torch_conv_transpose, errors=_conv_transpose1d_errors, family="conv"),
)
