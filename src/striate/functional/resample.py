"""Resampling: the lecture's downsampling and zero-insertion upsampling, and PyTorch's interpolate.

* :func:`downsample` keeps every S-th row/column, :func:`upsample_zeros` inserts S-1 zeros
  between neighbours; each is the other's backward.
* :func:`interpolate` (alias :func:`upsample`) resizes with PyTorch's modes and index rules:
  'nearest', 'nearest-exact', 'linear' (3-D), 'bilinear' (4-D), 'bicubic' (4-D),
  'trilinear' (5-D) and 'area'.  :func:`upsample` also takes ``mode='zeros'``.

Shapes: inputs are (N, C, L), (N, C, H, W) or (N, C, D, H, W); only the spatial axes change.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import Function
from ..autograd.tensor import as_array
from ..kernels import resample as K
from ..kernels.shapes import ShapeError, check_float, fmt_shape

__all__ = [
    "downsample", "upsample_zeros", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
]

_SPATIAL_LAYOUT = "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"


# ----------------------------------------------------------------------------- Functions
class _Downsample(Function):
    @staticmethod
    def forward(ctx, x, *, factor):
        y, ctx.cache = K.downsample_forward(x, factor)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (K.downsample_backward(dy, ctx.cache),)


class _UpsampleZeros(Function):
    @staticmethod
    def forward(ctx, x, *, factor):
        y, ctx.cache = K.upsample_zeros_forward(x, factor)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (K.upsample_zeros_backward(dy, ctx.cache),)


class _Interpolate(Function):
    @staticmethod
    def forward(ctx, x, *, out_size, mode, align_corners, scales):
        y, ctx.cache = K.interpolate_forward(x, out_size, mode=mode, align_corners=align_corners, scales=scales)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (K.interpolate_backward(dy, ctx.cache),)


# ----------------------------------------------------------------------------- argument checks
def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (numbers.Real, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))


def _spatial_input(input, what: str) -> np.ndarray:
    x = as_array(input)
    check_float(x, "input")
    if x.ndim not in (3, 4, 5):
        raise ShapeError(f"{what}: input must be 3-D, 4-D or 5-D {_SPATIAL_LAYOUT}, got shape {fmt_shape(x.shape)}")
    return x


def _per_axis(value, n: int, name: str, what: str, shape) -> tuple:
    """A scalar repeated over the ``n`` spatial axes, or a sequence of exactly ``n`` values."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and n > 1:
            value = tuple(value) * n
        if len(value) != n:
            raise ShapeError(
                f"{what}: {name} {tuple(value)!r} has {len(value)} entries but input of shape "
                f"{fmt_shape(shape)} has {n} spatial dimension{'s' if n > 1 else ''}"
            )
        return tuple(value)
    return (value,) * n


def _integer_factor(factor, n: int, what: str, shape) -> tuple[int, ...]:
    """Resampling factors: positive integers (an integral float such as 2.0 is accepted)."""
    values = _per_axis(factor, n, "factor", what, shape)
    out = []
    for v in values:
        if _is_int(v):
            out.append(int(v))
        elif _is_real(v) and float(v).is_integer():
            out.append(int(v))
        else:
            raise TypeError(
                f"{what}: the factor must be an integer or a tuple of {n} integers, got {factor!r} "
                f"(input shape {fmt_shape(shape)})"
            )
    if any(v < 1 for v in out):
        raise ShapeError(f"{what}: factor must be positive, got {factor!r} for input of shape {fmt_shape(shape)}")
    return tuple(out)


# ----------------------------------------------------------------------------- the lecture's resampling
def downsample(input, factor):
    """Keep every ``factor``-th sample of each spatial axis (drop the S-1 in between).

    ``y[n, c, i, j] = x[n, c, i*S_h, j*S_w]``.  ``factor`` is an int or one int per spatial axis.

    Shape: (N, C, L) -> (N, C, ceil(L/S)); (N, C, H, W) -> (N, C, ceil(H/S_h), ceil(W/S_w)).

    Backward: dX is dY placed at the kept positions and zero elsewhere, i.e.
    ``upsample_zeros(dY, factor)`` padded with zeros at the end to the input size.
    """
    x = _spatial_input(input, "downsample")
    f = _integer_factor(factor, x.ndim - 2, "downsample", x.shape)
    return _Downsample.apply(input, factor=f)


def upsample_zeros(input, factor):
    """Insert ``factor - 1`` zeros between neighbouring samples of each spatial axis.

    ``y[n, c, i*S_h, j*S_w] = x[n, c, i, j]`` and every other entry of ``y`` is zero (the
    "dilation" or fractional-stride upsampling that precedes a transposed convolution).
    ``factor`` is an int or one int per spatial axis.

    Shape: (N, C, L) -> (N, C, (L-1)*S + 1); likewise per axis for (N, C, H, W).

    Backward: dX = ``downsample(dY, factor)``: only the positions holding real samples
    received gradient.
    """
    x = _spatial_input(input, "upsample_zeros")
    f = _integer_factor(factor, x.ndim - 2, "upsample_zeros", x.shape)
    return _UpsampleZeros.apply(input, factor=f)


# ----------------------------------------------------------------------------- interpolate
_MODE_NAMES = " | ".join(repr(m) for m in K.INTERPOLATE_MODES)


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False):
    """Resize the spatial axes, as ``torch.nn.functional.interpolate``.

    Args:
        input: (N, C, L), (N, C, H, W) or (N, C, D, H, W).
        size: output spatial size, an int or one int per spatial axis.
        scale_factor: multiplier(s) for the spatial size; exactly one of ``size`` and
            ``scale_factor`` must be given.
        mode: 'nearest' | 'nearest-exact' | 'linear' (3-D) | 'bilinear' (4-D) |
            'bicubic' (4-D) | 'trilinear' (5-D) | 'area'.
        align_corners: for the (bi/tri)linear and bicubic modes (default False); must be None
            for the others.  True maps the corner samples of input and output onto each other.
        recompute_scale_factor: when True, the output size is computed from ``scale_factor``
            and then the index rules use in/out, as if that size had been given.
        antialias: not supported (must be False).

    Output size: ``size``, or ``floor(in * scale_factor)`` per axis.

    Index rules (per axis, 0-based, ``s`` the given scale factor):

    * source step ``r = (in-1)/(out-1)`` with align_corners, else ``1/s`` when a scale factor
      is given (and not recomputed), else ``in/out``;
    * 'nearest': ``x[min(floor(r*i), in-1)]``; 'nearest-exact': ``x[min(floor(r*(i+0.5)), in-1)]``;
    * 'linear' family: source coordinate ``r*i`` (align_corners) or ``max(r*(i+0.5)-0.5, 0)``,
      ``y = (1-t) x[j] + t x[j+1]`` with ``j = floor``, ``t`` the fraction (j+1 clamped);
    * 'bicubic': Keys cubic (a = -0.75) on the 4 taps around the coordinate, clamped at borders;
    * 'area': the mean of ``x[floor(i*in/out) : ceil((i+1)*in/out)]``.

    The separable modes are per-axis matrices applied by matrix products, so the backward is
    the product with the transposed matrices.  The backward is always the exact gradient of
    the forward; in a few degenerate cases (1-D/3-D 'nearest' or 'bicubic' with a
    non-integer scale factor that leaves an axis length unchanged) PyTorch's own backward is
    not, and there the gradients differ from PyTorch's.
    """
    x = as_array(input)
    check_float(x, "input")
    shape = fmt_shape(x.shape)
    if mode not in K.INTERPOLATE_MODES:
        raise ValueError(f"interpolate: unknown mode {mode!r}; expected one of {_MODE_NAMES} (input shape {shape})")
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError(
                "align_corners option can only be set with the interpolating modes: "
                f"linear | bilinear | bicubic | trilinear (got mode={mode!r}, input shape {shape})"
            )
        align_corners = False
    else:
        align_corners = False if align_corners is None else bool(align_corners)
    ranks, layout = K.INTERPOLATE_MODES[mode]
    if x.ndim not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(f"interpolate: mode={mode!r} needs a {want} input {layout}, got shape {shape}")
    nsp = x.ndim - 2
    spatial = x.shape[2:]
    if size is not None and scale_factor is not None:
        raise ShapeError(f"interpolate: only one of size or scale_factor should be defined (input shape {shape})")
    if size is None and scale_factor is None:
        raise ShapeError(f"interpolate: either size or scale_factor should be defined (input shape {shape})")
    if recompute_scale_factor and size is not None:
        raise ValueError(
            f"interpolate: recompute_scale_factor is not meaningful with an explicit size (input shape {shape})")
    if antialias:
        if not (mode in ("bilinear", "bicubic") and x.ndim == 4):
            raise ValueError(
                "Anti-alias option is restricted to bilinear and bicubic modes and requires a 4-D "
                f"tensor as input (got mode={mode!r}, input shape {shape})"
            )
        raise NotImplementedError(f"interpolate: antialias=True is not supported (input shape {shape})")
    if any(n < 1 for n in spatial):
        raise ShapeError(f"interpolate: input spatial size must be positive, got input shape {shape}")
    if size is not None:
        sizes = _per_axis(size, nsp, "size", "interpolate", x.shape)
        if not all(_is_int(s) for s in sizes):
            raise TypeError(
                f"interpolate: size must be an int or a tuple of {nsp} ints, got {size!r} (input shape {shape})")
        if any(s < 1 for s in sizes):
            raise ShapeError(
                f"interpolate: output size {fmt_shape(sizes)} must be positive (input shape {shape})")
        out_size, scales = K.interpolate_output_size(spatial, size=sizes)
    else:
        factors = _per_axis(scale_factor, nsp, "scale_factor", "interpolate", x.shape)
        if not all(_is_real(s) for s in factors):
            raise TypeError(
                f"interpolate: scale_factor must be a number or a tuple of {nsp} numbers, got {scale_factor!r} "
                f"(input shape {shape})")
        if not all(math.isfinite(float(s)) and float(s) > 0 for s in factors):
            raise ShapeError(
                f"interpolate: scale_factor must be positive, got {scale_factor!r} for input of shape {shape}")
        # 'area' always works from the output size, as PyTorch does
        recompute = bool(recompute_scale_factor) or mode == "area"
        out_size, scales = K.interpolate_output_size(
            spatial, scale_factor=factors, recompute_scale_factor=recompute)
        if any(o < 1 for o in out_size):
            raise ShapeError(
                f"interpolate: output size {fmt_shape(out_size)} computed from input shape {shape} and "
                f"scale_factor {scale_factor!r} must be positive"
            )
    return _Interpolate.apply(input, out_size=out_size, mode=mode, align_corners=align_corners, scales=scales)


def upsample(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None):
    """PyTorch's ``upsample`` (an alias of :func:`interpolate`), plus ``mode='zeros'``.

    ``mode='zeros'`` is the lecture's zero-insertion upsampling (:func:`upsample_zeros`): the
    integer factor S (or one per spatial axis) is given as ``scale_factor`` or as the second
    positional argument, so ``upsample(x, 2, mode='zeros')`` turns (N, C, H, W) into
    (N, C, 2H-1, 2W-1) with zeros between the original samples.  For the other modes the
    second positional argument is the output ``size``, as in PyTorch.
    """
    if mode == "zeros":
        x = _spatial_input(input, "upsample")
        if size is not None and scale_factor is not None:
            raise ShapeError(
                "upsample: with mode='zeros' give the factor once (as scale_factor or the second "
                f"positional argument), not both (input shape {fmt_shape(x.shape)})"
            )
        if align_corners is not None:
            raise ValueError(
                f"upsample: align_corners has no meaning for mode='zeros' (input shape {fmt_shape(x.shape)})")
        factor = scale_factor if scale_factor is not None else size
        if factor is None:
            raise ShapeError(f"upsample: mode='zeros' needs a factor (input shape {fmt_shape(x.shape)})")
        f = _integer_factor(factor, x.ndim - 2, "upsample", x.shape)
        return _UpsampleZeros.apply(input, factor=f)
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """PyTorch's deprecated ``upsample_nearest``: ``interpolate(..., mode='nearest')``."""
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """PyTorch's deprecated ``upsample_bilinear``: ``interpolate(..., mode='bilinear', align_corners=True)``."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
