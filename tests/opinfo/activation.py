"""Registry entries: point-wise activations, PReLU and the softmax family.

Inputs of the piece-wise ops keep every element at least 1e-2 away from the kinks (0 for ReLU,
the clip bounds for hardtanh, +-3 for the hard sigmoid/swish, the threshold ...), so that the
central differences of the gradcheck (eps 1e-6) never straddle one.
"""

from __future__ import annotations

import numpy as np

import striate.functional as F
from striate.kernels.activation import SELU_ALPHA, SELU_SCALE
from striate.kernels.shapes import ShapeError
from striate.reference import activation as R

from . import ErrorCase, OpInfo, Sample, register

SHAPES = [(3, 4), (2, 3, 5), (7,), (2, 2, 2, 3), ()]


def away_from(rng, shape, kinks=(0.0,), low=-4.0, high=4.0, gap=1e-2):
    """Uniform values in [low, high) with none closer than ``gap`` to a kink."""
    v = rng.uniform(low, high, size=shape)
    for _ in range(1000):
        bad = np.zeros(np.shape(v), dtype=bool)
        for k in kinks:
            bad |= np.abs(v - k) < gap
        if not bad.any():
            break
        v[bad] = rng.uniform(low, high, size=int(bad.sum()))
    return np.asarray(v, dtype=np.float64)


def _int_input():
    return np.arange(6, dtype=np.int64).reshape(2, 3)


def _dtype_error(**kwargs):
    return ErrorCase((_int_input(),), kwargs, TypeError, r"int64.*\(2, 3\)", "integer input")


def pointwise_info(name, op, ref, ref_grad, torch_fn, params=({},), kinks=(0.0,), low=-4.0,
                   high=4.0, extra_errors=()):
    """An OpInfo for an element-wise op; ``params`` are kwarg sets cycled over the shapes."""

    def samples(rng):
        out = []
        for k, shape in enumerate(SHAPES):
            kw = dict(params[k % len(params)])
            out.append(Sample((away_from(rng, shape, kinks(kw) if callable(kinks) else kinks, low, high),),
                              kw, desc=f"{shape} {kw}"))
        return out

    return OpInfo(
        name=name, op=op, samples=samples, ref=ref, ref_grad=ref_grad, torch_fn=torch_fn,
        errors=lambda: [_dtype_error(**params[0]), *extra_errors], family="activation",
    )


def _with_inplace(info):
    """Add an ``inplace=True`` sample: the input must come back untouched.  (torch is asked
    without the flag: its in-place form refuses leaves that require grad.)"""
    base = info.samples

    def samples(rng):
        extra = Sample((away_from(rng, (3, 4), (0.0, 3.0, -3.0, 6.0, 1.0, -1.0)),), {"inplace": True},
                       torch_kwargs={}, desc="inplace=True")
        if info.name == "threshold":
            extra.kwargs.update(threshold=0.5, value=-2.0)
            extra.torch_kwargs = {"threshold": 0.5, "value": -2.0}
        return base(rng) + [extra]

    info.samples = samples
    return info


def _tf(name):
    return lambda torch, x, **kw: getattr(torch.nn.functional, name)(x, **kw)


def _drop_inplace(fn):
    return lambda *a, inplace=False, **kw: fn(*a, **kw)


def _grad1(fn):
    """A reference backward for one differentiable input, as a 1-tuple."""
    return lambda dy, *a, inplace=False, **kw: (fn(dy, *a, **kw),)


register(
    _with_inplace(pointwise_info(
        "relu", F.relu, _drop_inplace(R.relu), _grad1(R.relu_backward), _tf("relu"),
    )),
    _with_inplace(pointwise_info(
        "relu6", F.relu6, _drop_inplace(lambda x: R.hardtanh(x, 0.0, 6.0)),
        _grad1(lambda dy, x: R.hardtanh_backward(dy, x, 0.0, 6.0)), _tf("relu6"),
        kinks=(0.0, 6.0), low=-3.0, high=9.0,
    )),
    _with_inplace(pointwise_info(
        "leaky_relu", F.leaky_relu, _drop_inplace(R.leaky_relu), _grad1(R.leaky_relu_backward),
        _tf("leaky_relu"),
        params=({}, {"negative_slope": 0.2}, {"negative_slope": -0.5}, {"negative_slope": 1.5}),
    )),
    _with_inplace(pointwise_info(
        "elu", F.elu, _drop_inplace(R.elu), _grad1(R.elu_backward), _tf("elu"),
        params=({}, {"alpha": 0.5}, {"alpha": 2.5}),
    )),
    _with_inplace(pointwise_info(
        "selu", F.selu, _drop_inplace(lambda x: R.elu(x, SELU_ALPHA, SELU_SCALE)),
        _grad1(lambda dy, x: R.elu_backward(dy, x, SELU_ALPHA, SELU_SCALE)), _tf("selu"),
    )),
    _with_inplace(pointwise_info(
        # PyTorch's float64 CELU backward uses 1 / float32(alpha) (2e-7 relative off); the twin
        # is the exact identity celu(x, a) = a elu(x / a) for a > 0.
        "celu", F.celu, _drop_inplace(lambda x, alpha=1.0: R.elu(x, alpha, 1.0, 1.0 / alpha)),
        _grad1(lambda dy, x, alpha=1.0: R.elu_backward(dy, x, alpha, 1.0, 1.0 / alpha)),
        lambda torch, x, alpha=1.0: alpha * torch.nn.functional.elu(x / alpha),
        params=({}, {"alpha": 0.3}, {"alpha": 2.0}),
        extra_errors=[ErrorCase((np.zeros((2, 3)),), {"alpha": 0.0}, ValueError, r"alpha", "alpha=0")],
    )),
    pointwise_info(
        "gelu", F.gelu, R.gelu, _grad1(R.gelu_backward), _tf("gelu"),
        params=({}, {"approximate": "tanh"}, {"approximate": "none"}), low=-6.0, high=6.0,
        extra_errors=[ErrorCase((np.zeros((2, 3)),), {"approximate": "erf"}, ValueError, r"approximate",
                                "bad approximate")],
    ),
    pointwise_info("sigmoid", F.sigmoid, R.sigmoid, _grad1(R.sigmoid_backward), _tf("sigmoid"),
                   low=-8, high=8),
    pointwise_info("tanh", F.tanh, R.tanh, _grad1(R.tanh_backward), _tf("tanh")),
    _with_inplace(pointwise_info(
        "hardtanh", F.hardtanh, _drop_inplace(R.hardtanh), _grad1(R.hardtanh_backward), _tf("hardtanh"),
        params=({}, {"min_val": -0.5, "max_val": 2.0}, {"min_val": 0.25, "max_val": 0.75}),
        kinks=lambda kw: (kw.get("min_val", -1.0), kw.get("max_val", 1.0)), low=-3.0, high=3.0,
        extra_errors=[ErrorCase((np.zeros((2, 3)),), {"min_val": 1.0, "max_val": 0.0}, ValueError,
                                r"min_val.*max_val", "min_val > max_val")],
    )),
    _with_inplace(pointwise_info(
        # F.hardsigmoid's float64 gradient in PyTorch multiplies by 1/6 rounded to float32
        # (3e-8 relative); the twin here is the exact composition clamp(x + 3, 0, 6) / 6.
        "hardsigmoid", F.hardsigmoid, _drop_inplace(R.hardsigmoid), _grad1(R.hardsigmoid_backward),
        lambda torch, x, **kw: torch.clamp(x + 3, 0, 6) / 6, kinks=(-3.0, 3.0), low=-5.0, high=5.0,
    )),
    _with_inplace(pointwise_info(
        "hardswish", F.hardswish, _drop_inplace(R.hardswish), _grad1(R.hardswish_backward),
        _tf("hardswish"), kinks=(-3.0, 3.0), low=-5.0, high=5.0,
    )),
    _with_inplace(pointwise_info("silu", F.silu, _drop_inplace(R.silu), _grad1(R.silu_backward), _tf("silu"),
                                 low=-8, high=8)),
    _with_inplace(pointwise_info("mish", F.mish, _drop_inplace(R.mish), _grad1(R.mish_backward), _tf("mish"),
                                 low=-8, high=8)),
    pointwise_info(
        "softplus", F.softplus, R.softplus, _grad1(R.softplus_backward), _tf("softplus"),
        params=({}, {"beta": 2.0}, {"beta": 0.5, "threshold": 1.0}, {"beta": 3.0, "threshold": 5.0},
                {"beta": -1.5}),
        # keep beta x away from the threshold, where the function switches to the identity
        kinks=lambda kw: (kw.get("threshold", 20.0) / kw.get("beta", 1.0),), low=-8.0, high=8.0,
        extra_errors=[ErrorCase((np.zeros((2, 3)),), {"beta": 0.0}, ValueError, r"beta", "beta=0")],
    ),
    pointwise_info("logsigmoid", F.logsigmoid, R.logsigmoid, _grad1(R.logsigmoid_backward),
                   _tf("logsigmoid"), low=-8, high=8),
    _with_inplace(pointwise_info(
        "threshold", F.threshold, _drop_inplace(R.threshold), _grad1(R.threshold_backward), _tf("threshold"),
        params=({"threshold": 0.5, "value": -2.0}, {"threshold": -1.0, "value": 0.0},
                {"threshold": 0.0, "value": 3.5}),
        kinks=lambda kw: (kw["threshold"],),
    )),
)


# ---------------------------------------------------------------------------------------------
# PReLU: a learnt slope per channel


def _prelu_samples(rng):
    return [
        Sample((away_from(rng, (2, 3, 4)), rng.uniform(-0.5, 0.5, 3)), desc="per channel", fan_in=8),
        Sample((away_from(rng, (2, 3, 2, 2)), np.array([0.25])), desc="one slope", fan_in=24),
        Sample((away_from(rng, (5,)), np.array([-0.3])), desc="1-D input", fan_in=5),
        Sample((away_from(rng, (3, 2)), rng.uniform(0, 1, 2)), nograd=(1,), desc="weight frozen", fan_in=3),
    ]


def _prelu_errors():
    x = np.zeros((2, 3, 5))
    return [
        ErrorCase((x, np.zeros(4)), {}, ShapeError, r"\(4,\).*\(2, 3, 5\)", "slopes != channels"),
        ErrorCase((x, np.zeros((3, 1))), {}, ShapeError, r"\(3, 1\)", "2-D weight"),
        ErrorCase((x.astype(np.float32), np.zeros(3)), {}, TypeError, r"float32.*float64", "dtype mismatch"),
        ErrorCase((_int_input(), np.zeros(3)), {}, TypeError, r"int64.*\(2, 3\)", "integer input"),
    ]


register(OpInfo(
    name="prelu", op=F.prelu, samples=_prelu_samples, ref=R.prelu,
    ref_grad=lambda dy, x, w: R.prelu_backward(dy, x, w),
    torch_fn=lambda torch, x, w: torch.nn.functional.prelu(x, w), errors=_prelu_errors, family="activation",
))


# ---------------------------------------------------------------------------------------------
# softmax family


def _softmax_samples(rng):
    cases = [((3, 5), 1, 1.0), ((2, 3, 4), 0, 1.0), ((2, 3, 4), -1, 3.0), ((2, 3, 2, 3), 2, 1.0),
             ((6,), 0, 1.0), ((4, 6), 1, 100.0), ((2, 1, 3), 1, 1.0), ((), 0, 1.0)]
    out = []
    for shape, dim, scale in cases:
        x = np.asarray(rng.standard_normal(shape) * scale)
        fan = shape[dim] if shape else 1
        out.append(Sample((x,), {"dim": dim}, desc=f"{shape} dim={dim} x{scale:g}", fan_in=fan))
    return out


def _softmax_errors(name):
    return lambda: [
        ErrorCase((np.zeros((2, 3)),), {"dim": 2}, IndexError, r"dim 2.*\(2, 3\)", "dim too large"),
        ErrorCase((np.zeros((2, 3)),), {"dim": -3}, ShapeError, r"dim -3.*\(2, 3\)", "dim too small"),
        ErrorCase((_int_input(),), {"dim": 1}, TypeError, r"int64.*\(2, 3\)", "integer input"),
    ]


register(
    OpInfo(
        name="softmax", op=F.softmax, samples=_softmax_samples, ref=R.softmax,
        ref_grad=lambda dy, x, dim: (R.softmax_backward(dy, x, dim),),
        torch_fn=lambda torch, x, dim: torch.nn.functional.softmax(x, dim=dim),
        errors=_softmax_errors("softmax"), family="activation",
    ),
    OpInfo(
        name="softmin", op=F.softmin, samples=_softmax_samples, ref=lambda x, dim: R.softmax(-x, dim),
        ref_grad=lambda dy, x, dim: (-R.softmax_backward(dy, -x, dim),),
        torch_fn=lambda torch, x, dim: torch.nn.functional.softmin(x, dim=dim),
        errors=_softmax_errors("softmin"), family="activation",
    ),
    OpInfo(
        name="log_softmax", op=F.log_softmax, samples=_softmax_samples, ref=R.log_softmax,
        ref_grad=lambda dy, x, dim: (R.log_softmax_backward(dy, x, dim),),
        torch_fn=lambda torch, x, dim: torch.nn.functional.log_softmax(x, dim=dim),
        errors=_softmax_errors("log_softmax"), family="activation",
    ),
)
