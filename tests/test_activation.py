"""Activation family: erf accuracy, random PyTorch parity, extreme inputs, fast == reference, API.

The generic checks (gradcheck, contract, errors, ...) run from ``tests/opinfo/activation.py``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import striate
import striate.functional as F
from harness import assert_close_torch, needs_torch, torch
from striate.kernels import activation as K
from striate.kernels.shapes import ShapeError
from striate.reference import activation as R

TF = torch.nn.functional if torch is not None else None


# ---------------------------------------------------------------------------------------------
# erf / erfc against math.erf / math.erfc

_TINY = np.finfo(np.float64).tiny  # smallest normal float64


def _grid():
    """A dense grid over [-30, 30], both tails, tiny and subnormal arguments."""
    dense = np.linspace(-30.0, 30.0, 240_001)
    tiny = np.logspace(-323, 0, 4000)
    edges = np.array([0.46875, 4.0, 26.5, 27.3, 5.0])
    near = np.concatenate([np.nextafter(edges, -np.inf), edges, np.nextafter(edges, np.inf)])
    pos = np.concatenate([tiny, near])
    return np.concatenate([dense, pos, -pos, [0.0, -0.0]])


def _rel_err(actual, expected):
    """Relative error where the expected value is a normal number, absolute (in units of the
    smallest subnormal) below: a subnormal result only carries the bits it has."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    normal = np.abs(expected) >= _TINY
    rel = np.abs(actual - expected)[normal] / np.abs(expected[normal])
    sub = np.abs(actual - expected)[~normal] / 5e-324
    return (rel.max() if rel.size else 0.0), (sub.max() if sub.size else 0.0)


def test_erf_float64_matches_math_erf_on_dense_grid():
    x = _grid()
    ours = K.erf(x)
    ref = np.array([math.erf(v) for v in x])
    rel, sub = _rel_err(ours, ref)
    assert rel <= 2e-15, f"erf relative error {rel:.3g}"
    assert sub <= 2, f"erf subnormal error {sub} ulps"


def test_erfc_float64_matches_math_erfc_on_dense_grid_and_tails():
    x = _grid()
    ours = K.erfc(x)
    ref = np.array([math.erfc(v) for v in x])
    rel, sub = _rel_err(ours, ref)
    assert rel <= 2e-15, f"erfc relative error {rel:.3g}"
    assert sub <= 2, f"erfc subnormal error {sub} ulps"


def test_erf_erfc_float32_stay_float32_and_accurate():
    x = _grid().astype(np.float32)
    x = x[np.abs(x) >= np.finfo(np.float32).tiny]  # float32 subnormals carry few digits
    e, c = K.erf(x), K.erfc(x)
    assert e.dtype == np.float32 and c.dtype == np.float32
    re = np.array([math.erf(float(v)) for v in x])
    rc = np.array([math.erfc(float(v)) for v in x])
    np.testing.assert_allclose(e, re, rtol=2e-6, atol=0)
    keep = rc >= np.finfo(np.float32).tiny
    np.testing.assert_allclose(c[keep], rc[keep], rtol=4e-6, atol=0)


def test_erf_special_values_and_shapes():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e300, -1e300, np.finfo(np.float64).max])
    with np.errstate(all="raise"):
        e, c = K.erf(x), K.erfc(x)
    np.testing.assert_array_equal(e[[0, 1, 3, 5, 6, 7]], [1, -1, 0, 1, -1, 1])
    np.testing.assert_array_equal(c[[0, 1, 3, 5, 6, 7]], [0, 2, 1, 0, 2, 0])
    assert np.isnan(e[2]) and np.isnan(c[2])
    assert np.signbit(e[4]), "erf(-0.0) must be -0.0"
    a = np.linspace(-3, 3, 24).reshape(2, 3, 4)[:, ::2]  # non-contiguous
    np.testing.assert_array_equal(K.erf(a), K.erf(a.copy()))
    assert K.erf(a).shape == a.shape
    assert K.erf(np.float64(0.5)).shape == ()
    assert K.erf(np.array([0.5, 2.0], dtype=np.float16)).dtype == np.float16
    # odd symmetry holds to the last bit; erf + erfc = 1
    v = np.linspace(0, 6, 1001)
    np.testing.assert_array_equal(K.erf(-v), -K.erf(v))
    np.testing.assert_allclose(K.erf(v) + K.erfc(v), 1.0, rtol=0, atol=2.3e-16)


# ---------------------------------------------------------------------------------------------
# the op table shared by the random tests


@dataclass
class Spec:
    name: str
    ours: Callable  # (x, **params) -> Tensor
    theirs: Callable  # (x, **params) -> torch tensor
    params: Callable = lambda rng, ndim: {}
    kind: str = "pointwise"  # or "softmax"
    large_ok: bool = True  # finite results for |x| up to 1e3
    extra: dict = field(default_factory=dict)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _dim(rng, ndim):
    return {"dim": int(rng.integers(-max(ndim, 1), max(ndim, 1)))}


SPECS = [
    Spec("relu", F.relu, lambda x: TF.relu(x)),
    Spec("relu6", F.relu6, lambda x: TF.relu6(x)),
    Spec("leaky_relu", F.leaky_relu, lambda x, **p: TF.leaky_relu(x, **p),
         lambda rng, nd: {} if rng.random() < 0.3 else {"negative_slope": _u(rng, -1.0, 2.0)}),
    Spec("elu", F.elu, lambda x, **p: TF.elu(x, **p),
         lambda rng, nd: {} if rng.random() < 0.3 else {"alpha": _u(rng, 0.1, 3.0)}),
    Spec("selu", F.selu, lambda x: TF.selu(x)),
    # PyTorch's float64 CELU backward uses 1/float32(alpha); compare with a elu(x / a), exact
    Spec("celu", F.celu, lambda x, alpha=1.0: alpha * TF.elu(x / alpha),
         lambda rng, nd: {"alpha": _u(rng, 0.2, 3.0)}),
    Spec("gelu", F.gelu, lambda x, **p: TF.gelu(x, **p),
         lambda rng, nd: {"approximate": str(rng.choice(["none", "tanh"]))}),
    Spec("sigmoid", F.sigmoid, lambda x: TF.sigmoid(x)),
    Spec("tanh", F.tanh, lambda x: TF.tanh(x)),
    Spec("hardtanh", F.hardtanh, lambda x, **p: TF.hardtanh(x, **p),
         lambda rng, nd: dict(zip(("min_val", "max_val"), sorted(rng.uniform(-3, 3, 2).tolist())))),
    # PyTorch's float64 F.hardsigmoid gradient uses float32(1/6); the exact composition instead
    Spec("hardsigmoid", F.hardsigmoid, lambda x: torch.clamp(x + 3, 0, 6) / 6),
    Spec("hardswish", F.hardswish, lambda x: TF.hardswish(x)),
    Spec("silu", F.silu, lambda x: TF.silu(x)),
    Spec("mish", F.mish, lambda x: TF.mish(x)),
    Spec("softplus", F.softplus, lambda x, **p: TF.softplus(x, **p),
         lambda rng, nd: {"beta": float(rng.choice([1.0, 0.5, 2.0, -1.0, 3.7])),
                          "threshold": float(rng.choice([20.0, 1.0, 5.0, 50.0]))}),
    Spec("logsigmoid", F.logsigmoid, lambda x: TF.logsigmoid(x)),
    Spec("threshold", F.threshold, lambda x, **p: TF.threshold(x, **p),
         lambda rng, nd: {"threshold": _u(rng, -2, 2), "value": _u(rng, -3, 3)}),
    Spec("prelu", F.prelu, lambda x, w: TF.prelu(x, w), kind="prelu"),
    Spec("softmax", F.softmax, lambda x, **p: TF.softmax(x, **p), _dim, kind="softmax"),
    Spec("softmin", F.softmin, lambda x, **p: TF.softmin(x, **p), _dim, kind="softmax"),
    Spec("log_softmax", F.log_softmax, lambda x, **p: TF.log_softmax(x, **p), _dim, kind="softmax"),
]
SPEC = {s.name: s for s in SPECS}

N_CONFIGS = 252  # 12 per op
SCALES = [1e-2, 1.0, 1.0, 4.0, 30.0, 1e3]


def _config(k):
    """Configuration k: (spec, arrays, params, fan_in), drawn from a generator seeded by k."""
    spec = SPECS[k % len(SPECS)]
    rng = np.random.default_rng(1000 + k)
    ndim = int(rng.integers(0, 5))
    if spec.kind == "prelu":
        ndim = max(ndim, 1)
    shape = tuple(int(s) for s in rng.integers(1, 6, size=ndim))
    scale = SCALES[k // len(SPECS) % len(SCALES)]
    x = np.asarray(rng.standard_normal(shape) * scale)
    params = spec.params(rng, ndim)
    arrays = [x]
    fan_in = 1
    if spec.kind == "prelu":
        channels = shape[1] if ndim >= 2 else 1
        n = channels if (channels > 1 and rng.random() < 0.7) else 1
        arrays.append(rng.uniform(-1, 1, n))
        fan_in = max(1, x.size // n)
    if spec.kind == "softmax":
        axis = params["dim"] % max(ndim, 1)
        fan_in = shape[axis] if shape else 1
    return spec, arrays, params, fan_in


def _run_both(spec, arrays, params, dtype, rng):
    arrays = [a.astype(dtype) for a in arrays]
    ours_in = [striate.tensor(a, requires_grad=True) for a in arrays]
    y = spec.ours(*ours_in, **params)
    dy = np.asarray(rng.standard_normal(y.shape)).astype(dtype)
    y.backward(dy)
    theirs_in = [torch.from_numpy(a.copy()).requires_grad_(True) for a in arrays]
    ty = spec.theirs(*theirs_in, **params)
    ty.backward(torch.from_numpy(dy))
    ours = [y.data] + [t.grad.data for t in ours_in]
    theirs = [ty.detach().numpy()] + [t.grad.numpy() for t in theirs_in]
    return ours, theirs


@needs_torch
@pytest.mark.parametrize("k", range(N_CONFIGS))
def test_random_configs_match_torch(k):
    """Forward and every gradient vs PyTorch, float64 (1e-10 x scale) and float32 (rtol 1e-4)."""
    spec, arrays, params, fan_in = _config(k)
    for dtype in (np.float64, np.float32):
        ours, theirs = _run_both(spec, arrays, params, dtype, np.random.default_rng(k))
        assert ours[0].dtype == dtype
        for i, (a, t) in enumerate(zip(ours, theirs)):
            what = f"{spec.name} {params} shape {arrays[0].shape} {np.dtype(dtype)} " + (
                "output" if i == 0 else f"grad {i - 1}")
            assert_close_torch(a, t, dtype, fan_in, what)


def test_random_configs_cover_every_op_and_scale():
    seen = {}
    for k in range(N_CONFIGS):
        spec, arrays, _, _ = _config(k)
        seen.setdefault(spec.name, set()).add(float(np.max(np.abs(arrays[0]), initial=0)) > 100)
    assert set(seen) == set(SPEC) and N_CONFIGS >= 200
    assert all(True in v for v in seen.values()), "every op must see large inputs"


# ---------------------------------------------------------------------------------------------
# kinks: the exact kink values follow PyTorch's conventions


@needs_torch
@pytest.mark.parametrize("name,params,points", [
    ("relu", {}, [0.0, -0.0]),
    ("relu6", {}, [0.0, 6.0]),
    ("leaky_relu", {"negative_slope": 0.1}, [0.0]),
    ("elu", {"alpha": 2.0}, [0.0]),
    ("hardtanh", {"min_val": -0.5, "max_val": 1.5}, [-0.5, 1.5]),
    ("hardswish", {}, [-3.0, 3.0]),
    ("threshold", {"threshold": 0.5, "value": 2.0}, [0.5]),
    ("softplus", {"beta": 2.0, "threshold": 4.0}, [2.0]),
])
def test_gradient_at_kinks_follows_torch(name, params, points):
    spec = SPEC[name]
    x = np.array(points + [-1.25, 2.5])
    ours, theirs = _run_both(spec, [x], params, np.float64, np.random.default_rng(0))
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a, t, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# extreme inputs: no overflow, no NaN, no warning


def _extremes(dtype):
    if dtype == np.float32:
        big = [1e38, 3e37, 1e30, 1e20, 1e8]
    else:
        big = [1e307, 1e300, 1e200, 1e30, 1e8]
    small = [1e3, 50.0, 20.0, 1e-3, 1e-30, np.finfo(dtype).tiny, 0.0]
    v = np.array(big + small, dtype=np.float64)
    return np.concatenate([v, -v]).astype(dtype)


_EXTREME_PARAMS = {
    "leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 1.5}, "celu": {"alpha": 0.5},
    "softplus": {"beta": 2.0, "threshold": 20.0}, "threshold": {"threshold": 0.1, "value": -1.0},
}


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_extreme_inputs_finite_without_warnings(name, dtype):
    spec = SPEC[name]
    x = _extremes(dtype)
    arrays = [x]
    params = dict(_EXTREME_PARAMS.get(name, {}))
    if spec.kind == "prelu":
        arrays.append(np.array([0.25]))
    if spec.kind == "softmax":
        # one slice of the extremes and one of huge logits of both signs
        arrays = [np.stack([x, x[::-1] * 0.5]).astype(dtype)]
        params["dim"] = 1
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        ours, theirs = _run_both(spec, arrays, params, dtype, np.random.default_rng(7))
    for i, (a, t) in enumerate(zip(ours, theirs)):
        assert np.all(np.isfinite(a)), f"{name} {'output' if i == 0 else 'grad'}: {a}"
        ok = np.isfinite(t)  # PyTorch itself gives NaN in places (e.g. tanh-GELU's gradient)
        assert_close_torch(a[ok], t[ok], dtype, max(1, x.size), f"{name} extreme {i}")


def test_sigmoid_and_softmax_saturate_cleanly():
    x = np.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4])
    with np.errstate(all="raise"):
        y = F.sigmoid(x).data
        s = F.softmax(np.array([[1000.0, 0.0, -1000.0]]), dim=1).data
        ls = F.log_softmax(np.array([[1000.0, 0.0, -1000.0]]), dim=1).data
    assert y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5
    np.testing.assert_array_equal(s, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(ls, [[0.0, -1000.0, -2000.0]], rtol=1e-15)


@needs_torch
def test_softmax_masked_rows_follow_torch():
    """-inf entries (masking) get probability 0; an all -inf row is NaN, as in PyTorch."""
    x = np.array([[-np.inf, 1.0, 2.0], [-np.inf, -np.inf, -np.inf], [0.5, -np.inf, 0.5]])
    for op in ("softmax", "log_softmax", "softmin"):
        xi = -x if op == "softmin" else x
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = getattr(F, op)(xi, dim=1).data
        theirs = getattr(TF, op)(torch.from_numpy(xi), dim=1).numpy()
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        np.testing.assert_allclose(ours[~np.isnan(ours)], theirs[~np.isnan(theirs)], rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# fast kernel == naive reference (float64, tight), hypothesis-driven

_REFS = {
    "relu": (lambda x: R.relu(x), lambda dy, x: R.relu_backward(dy, x), {}),
    "relu6": (lambda x: R.hardtanh(x, 0.0, 6.0), lambda dy, x: R.hardtanh_backward(dy, x, 0.0, 6.0), {}),
    "leaky_relu": (R.leaky_relu, R.leaky_relu_backward, {"negative_slope": (-1.0, 2.0)}),
    "elu": (R.elu, R.elu_backward, {"alpha": (0.1, 3.0)}),
    "selu": (lambda x: R.elu(x, R.SELU_ALPHA, R.SELU_SCALE),
             lambda dy, x: R.elu_backward(dy, x, R.SELU_ALPHA, R.SELU_SCALE), {}),
    "celu": (lambda x, alpha: R.elu(x, alpha, 1.0, 1.0 / alpha),
             lambda dy, x, alpha: R.elu_backward(dy, x, alpha, 1.0, 1.0 / alpha), {"alpha": (0.2, 3.0)}),
    "gelu": (R.gelu, R.gelu_backward, {"approximate": ["none", "tanh"]}),
    "sigmoid": (R.sigmoid, R.sigmoid_backward, {}),
    "tanh": (R.tanh, R.tanh_backward, {}),
    "hardtanh": (R.hardtanh, R.hardtanh_backward, {"min_val": (-3.0, -0.1), "max_val": (0.1, 3.0)}),
    "hardsigmoid": (R.hardsigmoid, R.hardsigmoid_backward, {}),
    "hardswish": (R.hardswish, R.hardswish_backward, {}),
    "silu": (R.silu, R.silu_backward, {}),
    "mish": (R.mish, R.mish_backward, {}),
    "softplus": (R.softplus, R.softplus_backward,
                 {"beta": [1.0, 0.5, 2.0, -1.0], "threshold": [20.0, 1.0, 4.0]}),
    "logsigmoid": (R.logsigmoid, R.logsigmoid_backward, {}),
    "threshold": (R.threshold, R.threshold_backward, {"threshold": (-2.0, 2.0), "value": (-3.0, 3.0)}),
    "softmax": (R.softmax, R.softmax_backward, "dim"),
    "softmin": (lambda x, dim: R.softmax(-x, dim),
                lambda dy, x, dim: -R.softmax_backward(dy, -x, dim), "dim"),
    "log_softmax": (R.log_softmax, R.log_softmax_backward, "dim"),
}


def _close(a, b, what, rtol=1e-12):
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    err = float(np.max(np.abs(a - b), initial=0.0))
    assert err <= rtol * scale, f"{what}: error {err:.3g} > {rtol:g} x {scale:.3g}"


@st.composite
def _case(draw, name):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    elements = st.floats(-12, 12, allow_nan=False, allow_subnormal=False, width=64)
    x = draw(hnp.arrays(np.float64, shape, elements=elements))
    dy = draw(hnp.arrays(np.float64, shape, elements=st.floats(-2, 2, width=64)))
    spec = _REFS[name][2]
    if spec == "dim":
        n = max(len(shape), 1)
        params = {"dim": draw(st.integers(-n, n - 1))}
    else:
        params = {}
        for key, choice in spec.items():
            if isinstance(choice, tuple):
                params[key] = draw(st.floats(*choice, allow_nan=False, width=64))
            else:
                params[key] = draw(st.sampled_from(choice))
    return x, dy, params


@pytest.mark.parametrize("name", list(_REFS))
def test_fast_equals_reference_hypothesis(name):
    fwd_ref, bwd_ref, _ = _REFS[name]

    @settings(max_examples=25, deadline=None, database=None)
    @given(_case(name))
    def check(case):
        x, dy, params = case
        t = striate.tensor(x, requires_grad=True)
        y = getattr(F, name)(t, **params)
        y.backward(dy)
        _close(y.data, fwd_ref(x, **params), f"{name} forward {params}")
        _close(t.grad.data, bwd_ref(dy, x, **params), f"{name} backward {params}")

    check()


@settings(max_examples=25, deadline=None, database=None)
@given(
    st.integers(1, 3), st.integers(1, 4), st.integers(0, 2), st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_prelu_fast_equals_reference_hypothesis(n, c, spatial, per_channel, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c) + (3,) * spatial)
    w = rng.uniform(-1, 1, c if per_channel else 1)
    dy = rng.standard_normal(x.shape)
    tx, tw = striate.tensor(x, requires_grad=True), striate.tensor(w, requires_grad=True)
    y = F.prelu(tx, tw)
    y.backward(dy)
    _close(y.data, R.prelu(x, w), "prelu forward")
    dx, dw = R.prelu_backward(dy, x, w)
    _close(tx.grad.data, dx, "prelu dx")
    _close(tw.grad.data, dw, "prelu dw")


# ---------------------------------------------------------------------------------------------
# API: PyTorch's names, arguments and defaults

_BUILTIN_SIGNATURES = {  # torch functions implemented in C, whose signature inspect cannot read
    "gelu": ["input", "approximate"], "softplus": ["input", "beta", "threshold"],
    "logsigmoid": ["input"], "prelu": ["input", "weight"],
}


@needs_torch
@pytest.mark.parametrize("name", F.activation.__all__)
def test_signature_matches_torch(name):
    ours = inspect.signature(getattr(F, name)).parameters
    try:
        theirs = inspect.signature(getattr(TF, name)).parameters
    except (TypeError, ValueError):
        assert list(ours) == _BUILTIN_SIGNATURES[name]
        return
    assert list(ours) == list(theirs)
    for p in theirs.values():
        if p.default is not inspect.Parameter.empty:
            assert ours[p.name].default == p.default, f"{name}: default of {p.name}"
        else:
            assert ours[p.name].default is inspect.Parameter.empty


def test_builtin_defaults():
    sig = inspect.signature(F.gelu).parameters
    assert sig["approximate"].default == "none"
    sig = inspect.signature(F.softplus).parameters
    assert sig["beta"].default == 1.0 and sig["threshold"].default == 20.0


def test_every_op_is_in_the_namespace():
    for name in F.activation.__all__:
        assert getattr(F, name) is getattr(striate.nn.functional, name)


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "elu", "selu", "celu", "hardtanh",
                                  "hardsigmoid", "hardswish", "silu", "mish", "threshold"])
def test_inplace_is_accepted_and_never_mutates(name):
    x = np.linspace(-4, 4, 12).reshape(3, 4) + 0.01
    kwargs = {"threshold": 0.5, "value": -1.0} if name == "threshold" else {}
    t = striate.tensor(x, requires_grad=True)
    h = t * 2.0  # a non-leaf, the usual target of an in-place activation
    before = h.data.copy()
    out = getattr(F, name)(h, inplace=True, **kwargs)
    np.testing.assert_array_equal(h.data, before)
    np.testing.assert_array_equal(out.data, getattr(F, name)(h, **kwargs).data)
    out.sum().backward()
    assert t.grad is not None and np.all(np.isfinite(t.grad.data))


@needs_torch
@pytest.mark.parametrize("op", ["softmax", "softmin", "log_softmax"])
@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
def test_implicit_dim_follows_torch_legacy_rule(op, ndim):
    x = np.asarray(np.random.default_rng(ndim).standard_normal((2, 3, 4, 5)[:ndim]))
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        ours = getattr(F, op)(x).data
    with pytest.warns(UserWarning):
        theirs = getattr(TF, op)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)
    expected = 0 if ndim in (0, 1, 3) else 1
    np.testing.assert_array_equal(ours, getattr(F, op)(x, dim=expected).data)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, "float64", "double", "torch.float64"])
def test_softmax_dtype_argument_casts_first(dtype):
    x = np.random.default_rng(3).standard_normal((3, 5)).astype(np.float32)
    dy = np.random.default_rng(4).standard_normal((3, 5))
    for op in ("softmax", "log_softmax", "softmin"):
        t = striate.tensor(x, requires_grad=True)
        y = getattr(F, op)(t, dim=1, dtype=dtype)
        assert y.dtype == np.float64
        y.backward(dy)
        assert t.grad.dtype == np.float32
        tt = torch.from_numpy(x.copy()).requires_grad_(True)
        ty = getattr(TF, op)(tt, dim=1, dtype=torch.float64)
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(t.grad.data, tt.grad.numpy(), rtol=1e-6, atol=1e-7)
    # an integer input is fine once dtype makes it floating, as in PyTorch
    assert F.softmax(np.arange(4), dim=0, dtype=torch.float64).dtype == np.float64


def test_softmax_dim_errors_name_the_shape():
    x = np.zeros((2, 3, 4))
    for dim in (3, -4, 10):
        with pytest.raises(IndexError, match=r"dim -?\d+ is out of range.*\(2, 3, 4\)"):
            F.softmax(x, dim=dim)
        with pytest.raises(ShapeError, match=r"\(2, 3, 4\)"):
            F.log_softmax(x, dim=dim)
    with pytest.raises(IndexError, match=r"\[-1, 0\]"):
        F.softmax(np.float64(1.0), dim=1)
    with pytest.raises(TypeError, match="dim must be an int"):
        F.softmax(x, dim=1.0)


@pytest.mark.parametrize("name", F.activation.__all__)
def test_integer_input_is_a_type_error(name):
    x = np.arange(6).reshape(2, 3)
    args = (x, np.zeros(1)) if name == "prelu" else (x,)
    kwargs = {"threshold": 0.0, "value": 0.0} if name == "threshold" else (
        {"dim": 1} if "soft" in name and name not in ("softplus",) else {})
    with pytest.raises(TypeError, match=r"\(2, 3\)"):
        getattr(F, name)(*args, **kwargs)


def test_empty_inputs():
    for shape in [(0,), (2, 0), (0, 3)]:
        x = np.zeros(shape)
        for name in ("relu", "gelu", "sigmoid", "mish", "softplus"):
            t = striate.tensor(x, requires_grad=True)
            y = getattr(F, name)(t)
            assert y.shape == shape
            y.sum().backward()
            assert t.grad.shape == shape
        for name in ("softmax", "log_softmax"):
            t = striate.tensor(x, requires_grad=True)
            y = getattr(F, name)(t, dim=-1)
            assert y.shape == shape
            y.sum().backward()
            assert t.grad.shape == shape


def test_float32_in_float32_out_and_grads():
    x = np.linspace(-5, 5, 20, dtype=np.float32).reshape(4, 5)
    for name in F.activation.__all__:
        args = (x, np.float32([0.25])) if name == "prelu" else (x,)
        kwargs = {"threshold": 0.3, "value": 0.0} if name == "threshold" else (
            {"dim": 1} if name in ("softmax", "softmin", "log_softmax") else {})
        ts = [striate.tensor(a, requires_grad=True) for a in args]
        y = getattr(F, name)(*ts, **kwargs)
        assert y.dtype == np.float32, name
        y.backward(np.ones(y.shape, np.float32))
        assert all(t.grad.dtype == np.float32 for t in ts), name


def test_numpy_scalar_parameters_do_not_promote_float32():
    x = np.linspace(-2, 2, 6, dtype=np.float32)
    assert F.leaky_relu(x, np.float64(0.1)).dtype == np.float32
    assert F.softplus(x, beta=np.float64(2.0)).dtype == np.float32
    assert F.hardtanh(x, np.float64(-0.5), np.float64(0.5)).dtype == np.float32


def test_parameter_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(ValueError, match="beta"):
        F.softplus(x, beta=0)
    with pytest.raises(ValueError, match="alpha"):
        F.celu(x, alpha=0.0)
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu(x, negative_slope="0.1")


@needs_torch
def test_torch_quirks_we_do_not_copy_are_tiny():
    """PyTorch's float64 hardsigmoid and celu gradients use float32-rounded constants; ours are
    exact.  The difference stays at float32 rounding level."""
    x = np.linspace(-2.9, 2.9, 13)
    for name, kw in (("hardsigmoid", {}), ("celu", {"alpha": 0.3})):
        t = striate.tensor(x, requires_grad=True)
        getattr(F, name)(t, **kw).sum().backward()
        tt = torch.from_numpy(x.copy()).requires_grad_(True)
        getattr(TF, name)(tt, **kw).sum().backward()
        np.testing.assert_allclose(t.grad.data, tt.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_softplus_large_threshold_does_not_overflow():
    """With threshold beyond exp's range PyTorch returns inf; the stable form returns x."""
    for dtype, big in ((np.float64, 1000.0), (np.float32, 100.0)):
        x = np.array([big, -big, 0.5], dtype=dtype)
        t = striate.tensor(x, requires_grad=True)
        with np.errstate(over="raise", invalid="raise"):
            y = F.softplus(t, threshold=1e4)
            y.sum().backward()
        np.testing.assert_allclose(y.data, [big, 0.0, math.log1p(math.exp(0.5))], rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(t.grad.data, [1.0, 0.0, 1 / (1 + math.exp(-0.5))], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("size", [8192 * 3, 1024 * 5, 1000, 8192 * 600])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_rows_bit_identical_to_maximum(size, dtype):
    """ReLU's forward against a zero row of 8,192 or 1,024 values, or the scalar 0 (sizes that
    neither divides), split over threads or not: np.maximum(x, 0) bit for bit, NaN, infinities
    and signed zeros included."""
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(dtype)
    x[:6] = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0]
    x = x.reshape(-1, 8)
    y, _ = K.relu_forward(x)
    expect = np.maximum(x, 0)
    assert y.dtype == dtype and y.shape == x.shape
    assert np.array_equal(y.view(np.uint8), expect.view(np.uint8))


@pytest.mark.parametrize("size", [1000, 8192 * 600])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_bit_exact(size, dtype):
    """ReLU's backward (integer mask passes, split over threads for big arrays): dy where not
    (y <= 0) -- NaN outputs pass their gradient, as in PyTorch -- and +0.0 elsewhere, even for an
    infinite or NaN dy (``dy * mask`` would give NaN there, and -0.0 for a negative dy)."""
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(dtype)
    dy = rng.standard_normal(size).astype(dtype)
    x[:8] = [np.nan, -1.0, -2.0, 0.0, -0.0, 3.0, -4.0, np.inf]
    dy[:8] = [5.0, np.inf, -np.inf, np.nan, -7.0, -0.0, -3.0, 2.0]
    y, cache = K.relu_forward(x)
    dy_copy = dy.copy()
    dx = K.relu_backward(dy, cache)
    expect = np.where(~(y <= 0), dy, dtype(0.0))
    assert dx.dtype == dtype and dx.shape == x.shape
    assert np.array_equal(dx.view(np.uint8), expect.view(np.uint8))
    assert np.array_equal(dy.view(np.uint8), dy_copy.view(np.uint8))
    assert dx[0] == 5.0 and not np.signbit(dx[1:5]).any()
