"""Registry entries: downsample, zero-insertion upsample, interpolate and its upsample aliases."""

from __future__ import annotations

import math

import numpy as np

import striate.functional as F
from striate.kernels.shapes import ShapeError
from striate.reference import resample as R

from . import ErrorCase, OpInfo, Sample, register

_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}


def interp_fan_in(in_spatial, out_spatial, mode):
    """Largest number of terms summed into one output (forward) or one input gradient (backward)."""
    fan = 1
    for n, o in zip(in_spatial, out_spatial):
        per_axis = math.ceil(n / o) if mode == "area" else _TAPS[mode] * (math.ceil(o / n) + 1)
        fan *= max(per_axis, math.ceil(o / n) + 1)
    return fan


def torch_zeros_upsample(torch, x, factor):
    """Zero insertion in torch: scatter x into every S-th position of a zero map (differentiable)."""
    d = x.dim() - 2
    f = tuple(factor) if isinstance(factor, (tuple, list)) else (int(factor),) * d
    shape = tuple(x.shape[:2]) + tuple((n - 1) * s + 1 for n, s in zip(x.shape[2:], f))
    y = x.new_zeros(shape)
    y[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in f)] = x
    return y


def torch_downsample(torch, x, factor):
    d = x.dim() - 2
    f = tuple(factor) if isinstance(factor, (tuple, list)) else (int(factor),) * d
    return x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in f)]


def _torch_interp(torch, x, *a, **kw):
    return torch.nn.functional.interpolate(x, *a, **kw)


def _out_spatial(x, size=None, scale_factor=None, **_):
    d = x.ndim - 2
    if size is not None:
        return tuple(size) if isinstance(size, (tuple, list)) else (size,) * d
    sf = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * d
    return tuple(math.floor(n * s) for n, s in zip(x.shape[2:], sf))


def _interp_samples(rng):
    cases = [
        ((2, 3, 7), dict(size=12, mode="nearest")),
        ((2, 3, 7), dict(scale_factor=0.5, mode="nearest")),
        ((2, 2, 5, 4), dict(scale_factor=2, mode="nearest")),
        ((2, 2, 5, 4), dict(size=(3, 7), mode="nearest")),
        ((2, 2, 5, 6), dict(scale_factor=(1.5, 0.5), mode="nearest-exact")),
        ((1, 2, 6), dict(size=10, mode="nearest-exact")),
        ((2, 3, 6), dict(size=11, mode="linear")),
        ((2, 3, 6), dict(scale_factor=2.5, mode="linear", align_corners=True)),
        ((2, 3, 9), dict(size=4, mode="linear", align_corners=False)),
        ((2, 2, 4, 5), dict(size=(7, 3), mode="bilinear")),
        ((2, 2, 4, 5), dict(scale_factor=(1.7, 2.0), mode="bilinear", align_corners=True)),
        ((1, 2, 5, 5), dict(scale_factor=0.6, mode="bilinear", recompute_scale_factor=True)),
        ((1, 2, 4, 5), dict(size=(6, 7), mode="bicubic")),
        ((1, 2, 4, 5), dict(scale_factor=(0.75, 1.5), mode="bicubic", align_corners=True)),
        ((1, 2, 3, 4, 3), dict(size=(4, 3, 5), mode="trilinear")),
        ((1, 2, 3, 3, 4), dict(scale_factor=2, mode="nearest")),
        ((2, 2, 7, 6), dict(size=(3, 4), mode="area")),
        ((2, 2, 9), dict(scale_factor=0.4, mode="area")),
    ]
    out = []
    for shape, kw in cases:
        x = rng.standard_normal(shape)
        fan = interp_fan_in(shape[2:], _out_spatial(x, **kw), kw["mode"])
        out.append(Sample((x,), kw, fan_in=fan, desc=f"{kw['mode']} {shape}"))
    return out


def _interp_errors():
    x3, x4 = np.zeros((2, 3, 8)), np.zeros((2, 3, 4, 4))
    return [
        ErrorCase((x3,), dict(size=4, mode="bilinear"), ShapeError, r"4-D.*\(2, 3, 8\)", "bilinear on 3-D"),
        ErrorCase((x4,), dict(size=4, mode="linear"), ShapeError, r"3-D.*\(2, 3, 4, 4\)", "linear on 4-D"),
        ErrorCase((np.zeros((2, 8)),), dict(size=4), ShapeError, r"\(2, 8\)", "nearest on 2-D"),
        ErrorCase((x4,), dict(size=4, scale_factor=2.0), ShapeError, r"only one.*\(2, 3, 4, 4\)", "both"),
        ErrorCase((x4,), dict(), ShapeError, r"either.*\(2, 3, 4, 4\)", "neither"),
        ErrorCase((x4,), dict(scale_factor=0.0), ShapeError, r"positive.*\(2, 3, 4, 4\)", "zero scale"),
        ErrorCase((x4,), dict(scale_factor=-2.0), ShapeError, r"positive.*\(2, 3, 4, 4\)", "negative scale"),
        ErrorCase((x4,), dict(scale_factor=0.1), ShapeError, r"\(0, 0\).*\(2, 3, 4, 4\)", "empty output"),
        ErrorCase((x4,), dict(size=(0, 3)), ShapeError, r"\(0, 3\).*\(2, 3, 4, 4\)", "zero size"),
        ErrorCase((x4,), dict(size=(2, 3, 4)), ShapeError, r"3 entries.*\(2, 3, 4, 4\)", "size length"),
        ErrorCase((x4,), dict(size=2, align_corners=True), ValueError, r"align_corners.*\(2, 3, 4, 4\)",
                  "align_corners with nearest"),
        ErrorCase((x4,), dict(size=2, recompute_scale_factor=True), ValueError, r"\(2, 3, 4, 4\)",
                  "recompute with size"),
        ErrorCase((x4,), dict(size=2, mode="cubic"), ValueError, r"'cubic'.*\(2, 3, 4, 4\)", "unknown mode"),
        ErrorCase((x4,), dict(size=(2.5, 3)), TypeError, r"\(2, 3, 4, 4\)", "float size"),
    ]


def _factor_samples(rng):
    return [
        Sample((rng.standard_normal((2, 3, 7)), 2), desc="1-D S=2"),
        Sample((rng.standard_normal((2, 3, 7)), 3), desc="1-D S=3 (S does not divide L)"),
        Sample((rng.standard_normal((2, 2, 6, 5)), 2), desc="2-D S=2"),
        Sample((rng.standard_normal((1, 2, 7, 8)), (3, 2)), desc="2-D per-axis factors"),
        Sample((rng.standard_normal((1, 2, 5, 4)), 1), desc="S=1 is the identity"),
        Sample((rng.standard_normal((1, 1, 3, 4, 5)), (1, 2, 3)), desc="3-D"),
    ]


def _factor_errors(name):
    x = np.zeros((2, 3, 4, 4))
    errs = [
        ErrorCase((x, 0), {}, ShapeError, r"positive.*\(2, 3, 4, 4\)", "zero factor"),
        ErrorCase((x, (2, -1)), {}, ShapeError, r"positive.*\(2, 3, 4, 4\)", "negative factor"),
        ErrorCase((x, (2, 2, 2)), {}, ShapeError, r"3 entries.*\(2, 3, 4, 4\)", "factor length"),
        ErrorCase((x, 1.5), {}, TypeError, r"integer.*\(2, 3, 4, 4\)", "non-integer factor"),
        ErrorCase((np.zeros((4, 4)), 2), {}, ShapeError, r"\(4, 4\)", "2-D input"),
    ]
    return errs


def _upsample_samples(rng):
    return [
        Sample((rng.standard_normal((2, 2, 4, 5)), 2), {"mode": "zeros"}, desc="zeros, positional factor"),
        Sample((rng.standard_normal((2, 3, 6)),), {"scale_factor": 3, "mode": "zeros"},
               torch_kwargs={"mode": "zeros", "factor": 3}, desc="zeros, scale_factor"),
        Sample((rng.standard_normal((2, 2, 4, 5)), (6, 7)), {"mode": "bilinear"}, fan_in=16, desc="bilinear size"),
        Sample((rng.standard_normal((2, 2, 4, 5)),), {"scale_factor": 2}, fan_in=4, desc="nearest alias"),
    ]


def _torch_upsample(torch, x, *a, mode="nearest", factor=None, **kw):
    if mode == "zeros":
        return torch_zeros_upsample(torch, x, factor if factor is not None else a[0])
    return torch.nn.functional.interpolate(x, *a, mode=mode, **kw)


def _upsample_errors():
    x = np.zeros((2, 3, 4, 4))
    return [
        ErrorCase((x, 1.5), {"mode": "zeros"}, TypeError, r"integer.*\(2, 3, 4, 4\)", "zeros non-integer"),
        ErrorCase((x,), {"scale_factor": 2.5, "mode": "zeros"}, TypeError, r"\(2, 3, 4, 4\)", "zeros 2.5"),
        ErrorCase((x, 2), {"scale_factor": 2, "mode": "zeros"}, ShapeError, r"\(2, 3, 4, 4\)", "zeros both"),
        ErrorCase((x,), {"mode": "zeros"}, ShapeError, r"factor.*\(2, 3, 4, 4\)", "zeros no factor"),
        ErrorCase((x, 0), {"mode": "zeros"}, ShapeError, r"positive.*\(2, 3, 4, 4\)", "zeros zero factor"),
        ErrorCase((np.zeros((2, 3, 4)), 8), {"mode": "bilinear"}, ShapeError, r"\(2, 3, 4\)", "bilinear 3-D"),
    ]


register(
    OpInfo(
        name="downsample", op=F.downsample, samples=_factor_samples,
        ref=R.downsample, ref_grad=lambda dy, x, f: (R.downsample_backward(dy, x, f), None),
        torch_fn=torch_downsample, errors=lambda: _factor_errors("downsample"), family="resample",
    ),
    OpInfo(
        name="upsample_zeros", op=F.upsample_zeros, samples=_factor_samples,
        ref=R.upsample_zeros, ref_grad=lambda dy, x, f: (R.upsample_zeros_backward(dy, x, f), None),
        torch_fn=torch_zeros_upsample, errors=lambda: _factor_errors("upsample_zeros"), family="resample",
    ),
    OpInfo(
        name="interpolate", op=F.interpolate, samples=_interp_samples,
        ref=R.interpolate, ref_grad=lambda dy, x, **kw: (R.interpolate_backward(dy, x, **kw),),
        torch_fn=_torch_interp, errors=_interp_errors, family="resample",
    ),
    OpInfo(
        name="upsample", op=F.upsample, samples=_upsample_samples,
        ref=R.upsample,
        ref_grad=lambda dy, x, *a, **kw: (R.upsample_backward(dy, x, *a, **kw),) + (None,) * len(a),
        torch_fn=_torch_upsample, errors=_upsample_errors, family="resample",
    ),
    OpInfo(
        name="upsample_nearest", op=F.upsample_nearest,
        samples=lambda rng: [Sample((rng.standard_normal((2, 2, 3, 4)),), {"scale_factor": 3}, fan_in=4),
                             Sample((rng.standard_normal((2, 2, 5)),), {"size": 8}, fan_in=4)],
        ref=lambda x, size=None, scale_factor=None: R.interpolate(x, size, scale_factor, "nearest"),
        ref_grad=lambda dy, x, size=None, scale_factor=None: (
            R.interpolate_backward(dy, x, size, scale_factor, "nearest"),),
        torch_fn=lambda torch, x, **kw: torch.nn.functional.interpolate(x, mode="nearest", **kw),
        family="resample",
    ),
    OpInfo(
        name="upsample_bilinear", op=F.upsample_bilinear,
        samples=lambda rng: [Sample((rng.standard_normal((2, 2, 3, 4)),), {"scale_factor": 2}, fan_in=16),
                             Sample((rng.standard_normal((1, 2, 5, 4)),), {"size": (3, 7)}, fan_in=16)],
        ref=lambda x, size=None, scale_factor=None: R.interpolate(x, size, scale_factor, "bilinear", True),
        ref_grad=lambda dy, x, size=None, scale_factor=None: (
            R.interpolate_backward(dy, x, size, scale_factor, "bilinear", True),),
        torch_fn=lambda torch, x, **kw: torch.nn.functional.interpolate(x, mode="bilinear", align_corners=True, **kw),
        family="resample",
    ),
)
