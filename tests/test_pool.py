"""Pooling family: random configurations against PyTorch, fast kernels against the naive loops,
and the properties that matter for backprop (overlapping max windows accumulate gradient).

The random configurations (seeded) cover 1-D and 2-D, batched and unbatched, kernels 1-4,
strides 1-4 (including stride > kernel), overlapping windows, padding up to half the kernel,
dilation (max), ceil_mode (including windows hanging past the padding), count_include_pad and
divisor_override (average), in float64 (max abs error <= 1e-10 x scale) and float32
(rtol 1e-4, atol 1e-5 sqrt(fan_in)), through :func:`harness.assert_close_torch`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import striate
import striate.functional as F
from harness import assert_close_torch, needs_torch, torch
from striate import Tensor
from striate.kernels import pool as K
from striate.kernels.shapes import ShapeError, pool_out_size
from striate.reference import pool as R

N_CONFIGS = 208  # per family (max, avg), split into chunks for readable failures
CHUNKS = 8


# ------------------------------------------------------------------------------------ helpers
def distinct(rng, shape, dtype=np.float64):
    """Tie-free values (a shuffled arithmetic sequence), exact in float32 as well."""
    n = math.prod(shape)
    return ((rng.permutation(n) - n / 2) * 0.25).reshape(shape).astype(dtype)


def run_striate(name, x, dy_rng, args=(), kwargs=None, extra=()):
    """Forward (all outputs) and input gradient of striate's ``F.<name>`` for a random dy."""
    kwargs = kwargs or {}
    t = Tensor(x.copy(), requires_grad=True)
    out = getattr(F, name)(t, *extra, *args, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    dy = dy_rng.standard_normal(outs[0].shape).astype(x.dtype)
    outs[0].backward(dy)
    return tuple(o.data for o in outs), t.grad.data, dy


def run_torch(name, x, dy, args=(), kwargs=None, extra=()):
    kwargs = kwargs or {}
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    extra = tuple(torch.from_numpy(e) if isinstance(e, np.ndarray) else e for e in extra)
    out = getattr(torch.nn.functional, name)(t, *extra, *args, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    outs[0].backward(torch.from_numpy(dy))
    return tuple(o.detach().numpy() for o in outs), t.grad.numpy()


def compare_with_torch(name, x, args, kwargs, fan_in, seed, extra=()):
    what = f"{name}{tuple(x.shape)} {args} {kwargs} {x.dtype}"
    outs, dx, dy = run_striate(name, x, np.random.default_rng(seed), args, kwargs, extra)
    touts, tdx = run_torch(name, x, dy, args, kwargs, extra)
    assert len(outs) == len(touts), what
    for k, (a, b) in enumerate(zip(outs, touts)):
        assert_close_torch(a, b, x.dtype, fan_in, f"{what} output {k}")
    assert dx.dtype == x.dtype, what
    assert_close_torch(dx, tdx, x.dtype, fan_in, f"{what} input grad")


def _lead(rng):
    """Batched (N, C) with N possibly 1, or unbatched (C,)."""
    r = rng.integers(0, 5)
    if r == 0:
        return (int(rng.integers(1, 4)),)
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)))


def _pool_config(rng, *, avg):
    """A random valid pooling configuration: (shape, args, kwargs, fan_in)."""
    while True:
        nd = int(rng.integers(1, 3))
        kernel = tuple(int(k) for k in rng.integers(1, 5, size=nd))
        stride = None if rng.random() < 0.2 else tuple(int(s) for s in rng.integers(1, 5, size=nd))
        dil = (1,) * nd if avg or rng.random() < 0.5 else tuple(int(d) for d in rng.integers(1, 4, size=nd))
        pad = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        ceil_mode = bool(rng.random() < 0.4)
        eff = [d * (k - 1) + 1 for k, d in zip(kernel, dil)]
        size = tuple(int(rng.integers(max(1, e - 2 * p), e + 9)) for e, p in zip(eff, pad))
        s = stride or kernel
        out = [pool_out_size(n, k, st_, p, d, ceil_mode) for n, k, st_, p, d in zip(size, kernel, s, pad, dil)]
        if min(out) < 1:
            continue
        # sometimes pass the int form PyTorch also accepts
        stride_arg = stride[0] if stride is not None and nd == 1 and rng.random() < 0.3 else stride
        pad_arg = pad[0] if len(set(pad)) == 1 and rng.random() < 0.3 else pad
        kwargs = {"stride": stride_arg, "padding": pad_arg, "ceil_mode": ceil_mode}
        if avg:
            kwargs["count_include_pad"] = bool(rng.random() < 0.5)
            if nd == 2 and rng.random() < 0.25:
                kwargs["divisor_override"] = int(rng.integers(1, 10))
        else:
            kwargs["dilation"] = dil
            kwargs["return_indices"] = bool(rng.random() < 0.6)
        # windows covering one element: the number of dy terms summed into one gradient entry
        overlap = math.prod(-(-e // st_) for e, st_ in zip(eff, s))
        fan_in = max(math.prod(kernel), overlap) if avg else overlap
        return _lead(rng) + size, (kernel,), kwargs, fan_in


def _configs(avg, chunk):
    rng = np.random.default_rng(1000 + 7 * chunk + (1 if avg else 0))
    return [_pool_config(rng, avg=avg) for _ in range(N_CONFIGS // CHUNKS)]


# ------------------------------------------------------------------- random configs vs torch
@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_max_pool_random_configs_match_torch(chunk, dtype):
    for k, (shape, args, kwargs, fan_in) in enumerate(_configs(False, chunk)):
        rng = np.random.default_rng(chunk * 1000 + k)
        nd = len(args[0])
        x = distinct(rng, shape, dtype)
        compare_with_torch(f"max_pool{nd}d", x, args, kwargs, fan_in, seed=k)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_avg_pool_random_configs_match_torch(chunk, dtype):
    for k, (shape, args, kwargs, fan_in) in enumerate(_configs(True, chunk)):
        rng = np.random.default_rng(chunk * 1000 + k)
        nd = len(args[0])
        x = rng.standard_normal(shape).astype(dtype)
        compare_with_torch(f"avg_pool{nd}d", x, args, kwargs, fan_in, seed=k)


def test_random_configs_cover_the_cases():
    """The drawn configurations really include what the acceptance asks for."""
    for avg in (False, True):
        cfgs = [c for chunk in range(CHUNKS) for c in _configs(avg, chunk)]
        assert len(cfgs) >= 200
        kernels = [c[1][0] for c in cfgs]
        strides = [c[2]["stride"] for c in cfgs]
        stride_t = [
            k if s is None else s if isinstance(s, tuple) else (s,) * len(k) for s, k in zip(strides, kernels)
        ]
        assert {len(k) for k in kernels} == {1, 2}
        assert any(any(s > k for s, k in zip(st_, k)) for st_, k in zip(stride_t, kernels)), "stride > kernel"
        assert any(any(s < k for s, k in zip(st_, k)) for st_, k in zip(stride_t, kernels)), "overlapping"
        assert {s for st_ in stride_t for s in st_} >= {1, 2, 3, 4}
        assert any(c[2]["ceil_mode"] for c in cfgs)
        assert any(np.any(np.asarray(c[2]["padding"]) > 0) for c in cfgs)
        assert any(len(c[0]) == len(c[1][0]) + 1 for c in cfgs), "unbatched"
        if avg:
            assert any(not c[2]["count_include_pad"] for c in cfgs)
            assert any("divisor_override" in c[2] for c in cfgs)
        else:
            assert any(max(c[2]["dilation"]) > 1 for c in cfgs)
            assert any(c[2]["return_indices"] for c in cfgs)


# -------------------------------------------------------------------------------- adaptive
def _adaptive_configs(seed, n=60):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        nd = int(rng.integers(1, 3))
        size = tuple(int(s) for s in rng.integers(1, 13, size=nd))
        osize = [int(o) for o in rng.integers(1, 13, size=nd)]
        r = rng.random()
        if r < 0.15:
            output_size = 1  # global pooling
        elif r < 0.3 and nd == 2:
            output_size = (None, osize[1]) if rng.random() < 0.5 else (osize[0], None)
        elif r < 0.4:
            output_size = osize[0]
        else:
            output_size = tuple(osize) if nd == 2 else osize[0]
        out.append((nd, _lead(rng) + size, output_size))
    return out


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pool_random_configs_match_torch(kind, dtype):
    saw_nondividing = False
    for k, (nd, shape, output_size) in enumerate(_adaptive_configs(77 if kind == "avg" else 78)):
        rng = np.random.default_rng(k)
        size = shape[len(shape) - nd:]
        entries = output_size if isinstance(output_size, tuple) else (output_size,) * nd
        out = [n if o is None else o for n, o in zip(size, entries)]
        saw_nondividing |= any(n % o for n, o in zip(size, out))
        x = distinct(rng, shape, dtype) if kind == "max" else rng.standard_normal(shape).astype(dtype)
        fan_in = math.prod(-(-n // o) + 1 for n, o in zip(size, out))
        kwargs = {"return_indices": bool(k % 2)} if kind == "max" else {}
        compare_with_torch(f"adaptive_{kind}_pool{nd}d", x, (output_size,), kwargs, fan_in, seed=k)
    assert saw_nondividing


# ---------------------------------------------------------------------------------- unpool
@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unpool_round_trip_matches_torch(dtype):
    """torch max_pool -> (values, indices) -> striate unpool == torch unpool, forward and grad;
    striate's own pool -> unpool gives the same map as torch's round trip."""
    rng = np.random.default_rng(5)
    for k in range(60):
        nd = 1 + k % 2
        kernel = int(rng.integers(1, 4))
        stride = int(rng.integers(1, 4)) if rng.random() < 0.7 else None
        pad = int(rng.integers(0, kernel // 2 + 1))
        s = stride or kernel
        size = tuple(int(v) for v in rng.integers(max(1, kernel - 2 * pad), kernel + 8, size=nd))
        if min(pool_out_size(n, kernel, s, pad, 1, False) for n in size) < 1:
            continue
        shape = _lead(rng) + size
        x = distinct(rng, shape, dtype)
        tx = torch.from_numpy(x)
        pool = getattr(torch.nn.functional, f"max_pool{nd}d")
        tv, ti = pool(tx, kernel, stride, pad, return_indices=True)
        default = [(o - 1) * s - 2 * pad + kernel for o in tv.shape[-nd:]]
        output_size = None
        if rng.random() < 0.5:  # any size strictly within stride of the default is allowed
            output_size = tuple(int(d + rng.integers(-(s - 1), s)) for d in default)
        chosen = output_size or tuple(default)
        if min(chosen) < 1 or int(ti.max()) >= math.prod(chosen):
            # padding can make the default smaller than the pooled input: fall back to its size
            output_size = size
            if any(not (d - s < n < d + s) for n, d in zip(size, default)):
                continue
        if output_size is not None and len(shape) == nd + 2 and rng.random() < 0.5:
            output_size = tuple(tv.shape[:-nd]) + tuple(output_size)  # the (N, C, *spatial) form
        kwargs = {"stride": stride, "padding": pad, "output_size": output_size}
        values = np.ascontiguousarray(tv.numpy())
        compare_with_torch(f"max_unpool{nd}d", values, (kernel,), kwargs, 1, seed=k, extra=(ti.numpy(),))
        # round trip through striate's own pooling
        y, idx = getattr(F, f"max_pool{nd}d")(Tensor(x), kernel, stride, pad, return_indices=True)
        np.testing.assert_array_equal(idx.data, ti.numpy())
        ours = getattr(F, f"max_unpool{nd}d")(y, idx, kernel, stride, pad, output_size).data
        theirs = getattr(torch.nn.functional, f"max_unpool{nd}d")(tv, ti, kernel, stride, pad, output_size)
        np.testing.assert_array_equal(ours, theirs.numpy())


# --------------------------------------------------------------- fast kernels == references
_small = st.integers(1, 3)


@st.composite
def pool_cases(draw, avg):
    nd = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    dil = (1,) * nd if avg else tuple(draw(st.integers(1, 3)) for _ in range(nd))
    pad = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    ceil_mode = draw(st.booleans())
    size = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 9)) for k, d, p in zip(kernel, dil, pad))
    lead = (draw(_small), draw(_small)) if draw(st.booleans()) else (draw(_small),)
    seed = draw(st.integers(0, 2**16))
    kwargs = {"stride": stride, "padding": pad, "ceil_mode": ceil_mode}
    if avg:
        kwargs["count_include_pad"] = draw(st.booleans())
        if nd == 2 and draw(st.booleans()):
            kwargs["divisor_override"] = draw(st.integers(1, 7))
    else:
        kwargs["dilation"] = dil
    return nd, lead + size, kernel, kwargs, seed


def _valid(nd, shape, kernel, kwargs):
    size = shape[len(shape) - nd:]
    dil = kwargs.get("dilation", (1,) * nd)
    return all(
        pool_out_size(n, k, s, p, d, kwargs["ceil_mode"]) >= 1
        for n, k, s, p, d in zip(size, kernel, kwargs["stride"], kwargs["padding"], dil)
    )


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(pool_cases(avg=False))
def test_max_pool_fast_equals_reference(case):
    nd, shape, kernel, kwargs, seed = case
    assume(_valid(nd, shape, kernel, kwargs))
    rng = np.random.default_rng(seed)
    x = distinct(rng, shape)
    y, cache = K.max_pool_forward(x, kernel, nd=nd, **kwargs)
    ry, ridx = getattr(R, f"max_pool{nd}d")(x, kernel, return_indices=True, **kwargs)
    _close(y, ry)
    np.testing.assert_array_equal(K.max_pool_indices(cache), ridx)
    dy = rng.standard_normal(y.shape)
    _close(K.max_pool_backward(dy, cache), getattr(R, f"max_pool{nd}d_backward")(dy, x, kernel, **kwargs))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(pool_cases(avg=True))
def test_avg_pool_fast_equals_reference(case):
    nd, shape, kernel, kwargs, seed = case
    assume(_valid(nd, shape, kernel, kwargs))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    y, cache = K.avg_pool_forward(x, kernel, nd=nd, **kwargs)
    _close(y, getattr(R, f"avg_pool{nd}d")(x, kernel, **kwargs))
    dy = rng.standard_normal(y.shape)
    _close(K.avg_pool_backward(dy, cache), getattr(R, f"avg_pool{nd}d_backward")(dy, x, kernel, **kwargs))


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    nd=st.integers(1, 2),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    out=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    seed=st.integers(0, 2**16),
)
def test_adaptive_fast_equals_reference(nd, size, out, seed):
    rng = np.random.default_rng(seed)
    shape = (2, 2) + size[:nd]
    x = distinct(rng, shape)
    for kind in ("avg", "max"):
        fwd = getattr(K, f"adaptive_{kind}_pool_forward")
        bwd = getattr(K, f"adaptive_{kind}_pool_backward")
        y, cache = fwd(x, out[:nd], nd=nd)
        _close(y, getattr(R, f"adaptive_{kind}_pool{nd}d")(x, out[:nd]))
        dy = rng.standard_normal(y.shape)
        _close(bwd(dy, cache), getattr(R, f"adaptive_{kind}_pool{nd}d_backward")(dy, x, out[:nd]))
    _, cache = K.adaptive_max_pool_forward(x, out[:nd], nd=nd)
    np.testing.assert_array_equal(
        K.adaptive_max_pool_indices(cache), getattr(R, f"adaptive_max_pool{nd}d")(x, out[:nd], True)[1]
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(nd=st.integers(1, 2), kernel=st.integers(1, 3), stride=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_unpool_fast_equals_reference(nd, kernel, stride, seed):
    rng = np.random.default_rng(seed)
    x = distinct(rng, (2, 2) + (7,) * nd)
    pooled, idx = getattr(R, f"max_pool{nd}d")(x, kernel, stride, return_indices=True)
    values = rng.standard_normal(pooled.shape)
    # indices address the 7-wide input plane: unpool to that size (always within stride of the default)
    out = K.unpool_output_size(values.shape, nd, kernel, stride, output_size=(7,) * nd, op="unpool")
    y, cache = K.max_unpool_forward(values, idx, out)
    ry = getattr(R, f"max_unpool{nd}d")(values, idx, kernel, stride, output_size=out)
    if stride >= kernel:  # no index repeats: the scatter is unambiguous
        _close(y, ry)
    dy = rng.standard_normal(y.shape)
    _close(K.max_unpool_backward(dy, cache), getattr(R, f"max_unpool{nd}d_backward")(dy, values, idx))


# ------------------------------------------------------------------------ specific behaviour
def test_overlapping_max_windows_accumulate_gradient():
    """The centre of a 3x3 map is the maximum of all four 2x2 stride-1 windows: its gradient
    is the sum of the four output gradients (the lecture's ``+=``)."""
    x = np.array([[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]).reshape(1, 1, 3, 3)
    t = Tensor(x, requires_grad=True)
    y, idx = F.max_pool2d(t, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(y.data, np.full((1, 1, 2, 2), 9.0))
    np.testing.assert_array_equal(idx.data, np.full((1, 1, 2, 2), 4))
    dy = np.array([1.0, 10.0, 100.0, 1000.0]).reshape(1, 1, 2, 2)
    y.backward(dy)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 1111.0
    np.testing.assert_array_equal(t.grad.data, expected)
    # and in 1-D, dilated windows sharing a maximum
    x1 = np.array([0.0, 1.0, 5.0, 2.0, 3.0]).reshape(1, 1, 5)
    t1 = Tensor(x1, requires_grad=True)
    y1 = F.max_pool1d(t1, 2, stride=1, dilation=2)  # windows {0,2}, {1,3}, {2,4}
    y1.backward(np.ones(y1.shape))
    np.testing.assert_array_equal(t1.grad.data.ravel(), [0.0, 0.0, 2.0, 1.0, 0.0])


def test_avg_pool_divisor_rules():
    """A ceil-mode window hanging past the padding is divided by its size up to the padded end,
    or by its count of real elements; divisor_override replaces both."""
    x = np.ones((1, 1, 5, 5))
    y = F.avg_pool2d(Tensor(x), 2, stride=2, padding=1, ceil_mode=True).data
    # windows start at -1, 1, 3 (and 5 is dropped): the first covers one real row of 2
    np.testing.assert_allclose(y[0, 0, 0], [0.25, 0.5, 0.5])
    y = F.avg_pool2d(Tensor(x), 2, stride=2, padding=1, ceil_mode=True, count_include_pad=False).data
    np.testing.assert_allclose(y, np.ones((1, 1, 3, 3)))
    y = F.avg_pool2d(Tensor(x), 3, stride=3, ceil_mode=True, divisor_override=2).data
    np.testing.assert_allclose(y[0, 0], [[4.5, 3.0], [3.0, 2.0]])


@needs_torch
def test_avg_ceil_window_past_padding_matches_torch():
    x = np.arange(1.0, 1 + 2 * 7 * 6).reshape(1, 2, 7, 6)
    for cip in (True, False):
        kw = {"stride": 3, "padding": 1, "ceil_mode": True, "count_include_pad": cip}
        compare_with_torch("avg_pool2d", x, (3,), kw, 9, seed=0)
        compare_with_torch("avg_pool1d", x[:, 0], (3,), kw, 3, seed=1)


@needs_torch
def test_large_kernel_offsets_beyond_uint8():
    """17 x 17 = 289 kernel offsets: the compact argmax widens to uint16."""
    rng = np.random.default_rng(3)
    x = distinct(rng, (1, 2, 20, 19))
    _, cache = K.max_pool_forward(x, 17, stride=2)
    assert cache[-1].dtype == np.uint16
    _, cache = K.max_pool_forward(x, 3)
    assert cache[-1].dtype == np.uint8
    compare_with_torch("max_pool2d", x, (17,), {"stride": 2, "return_indices": True}, 4, seed=0)


@needs_torch
def test_max_pool_nan_and_inference_path():
    """NaN wins its windows as in PyTorch; without grad the argmax is not computed."""
    rng = np.random.default_rng(4)
    x = distinct(rng, (2, 3, 6, 6))
    x[0, 1, 2, 3] = np.nan
    y, idx = F.max_pool2d(Tensor(x), 3, stride=1, padding=1, return_indices=True)
    ty, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(y.data, ty.numpy())
    np.testing.assert_array_equal(idx.data, ti.numpy())
    with striate.no_grad():
        y2 = F.max_pool2d(Tensor(x, requires_grad=True), 3, stride=1, padding=1)
    np.testing.assert_array_equal(y2.data, ty.numpy())


@pytest.mark.parametrize("nd, shape, kernel", [
    (2, (3, 4, 8, 8), 2), (2, (2, 3, 7, 9), 2), (2, (2, 2, 9, 9), 3), (2, (2, 2, 6, 7), (2, 3)),
    (1, (3, 2, 11), 2), (2, (5, 6, 6), 2),
])
@pytest.mark.parametrize("with_nan", [False, True])
def test_tiling_windows_read_the_input_directly(nd, shape, kernel, with_nan):
    """kernel == stride without padding takes the tiled path (no phase split): the same values,
    first-maximum indices on ties and routed gradients as the naive reference; a NaN sends the
    call to the general path, which routes the gradient to the NaN as PyTorch does."""
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, shape).astype(np.float64)  # many ties
    if with_nan:
        x[(0,) * (x.ndim - 1) + (1,)] = np.nan
    y, cache = K.max_pool_forward(x, kernel, nd=nd)
    assert (cache[1] is None) == (not with_nan)  # tiled path unless the output holds a NaN
    ry, ridx = getattr(R, f"max_pool{nd}d")(x, kernel, return_indices=True)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(K.max_pool_indices(cache), ridx)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(K.max_pool_backward(dy, cache),
                                  getattr(R, f"max_pool{nd}d_backward")(dy, x, kernel))


@needs_torch
def test_empty_batch():
    for name, args in [("max_pool2d", (2,)), ("avg_pool2d", (2,)), ("adaptive_avg_pool2d", (3,)),
                       ("max_pool1d", (2,)), ("avg_pool1d", (2,)), ("adaptive_max_pool2d", (2,))]:
        nd = int(name[-2])
        x = np.zeros((0, 3) + (5,) * nd)
        y = getattr(F, name)(Tensor(x), *args)
        ty = getattr(torch.nn.functional, name)(torch.from_numpy(x), *args)
        assert y.shape == tuple(ty.shape), name
    y, idx = F.max_pool2d(Tensor(np.zeros((0, 3, 4, 4))), 2, return_indices=True)
    assert F.max_unpool2d(y, idx, 2).shape == (0, 3, 4, 4)


@needs_torch
@pytest.mark.parametrize("output_size", [0, (0, 3), (None, 0)])
def test_adaptive_zero_output_size(output_size):
    """PyTorch allows an empty adaptive output; its gradient is zero."""
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    for kind in ("avg", "max"):
        t = Tensor(x, requires_grad=True)
        y = getattr(F, f"adaptive_{kind}_pool2d")(t, output_size)
        ty = getattr(torch.nn.functional, f"adaptive_{kind}_pool2d")(torch.from_numpy(x), output_size)
        assert y.shape == tuple(ty.shape)
        y.backward(np.zeros(y.shape))
        np.testing.assert_array_equal(t.grad.data, np.zeros_like(x))


def test_stride_defaults_to_kernel_and_output_size_rule():
    x = Tensor(np.zeros((1, 1, 11, 9)))
    assert F.max_pool2d(x, 3).shape == (1, 1, 3, 3)
    assert F.max_pool2d(x, 3, stride=[]).shape == (1, 1, 3, 3)
    assert F.max_pool2d(x, 3, ceil_mode=True).shape == (1, 1, 4, 3)
    # rows: ceil((11 + 2 - 2) / 3) + 1 = 5, but the 5th window would start in the padding: 4
    assert F.avg_pool2d(x, (2, 3), stride=(3, 2), padding=(1, 1), ceil_mode=True).shape == (1, 1, 4, 5)
    assert F.max_pool2d(x, 2, stride=1, dilation=3).shape == (1, 1, 8, 6)
    assert F.adaptive_avg_pool2d(x, (None, 4)).shape == (1, 1, 11, 4)
    assert F.adaptive_avg_pool2d(x, 1).shape == (1, 1, 1, 1)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda x: F.max_pool2d(x, 3, padding=2), ShapeError,
         r"at most half of effective kernel size.*\(2, 3, 5, 5\)"),
        (lambda x: F.max_pool2d(x, 3, padding=2, dilation=2), ShapeError,
         r"at most half of kernel size.*\(2, 3, 5, 5\)"),
        (lambda x: F.avg_pool2d(x, 2, stride=(1, -1)), ShapeError, r"stride.*\(2, 3, 5, 5\)"),
        (lambda x: F.max_pool1d(x, 2), ShapeError, r"max_pool1d.*got shape \(2, 3, 5, 5\)"),
        (lambda x: F.max_pool2d(x, (2, 2, 2)), TypeError, r"kernel_size.*\(2, 3, 5, 5\)"),
        (lambda x: F.max_pool2d(x, 2.5), TypeError, r"kernel_size"),
        (lambda x: F.avg_pool2d(x, 6, padding=0), ShapeError, r"\(2, 3, 5, 5\).*output size \(0, 0\)"),
        (lambda x: F.adaptive_avg_pool2d(x, (2, -3)), ShapeError, r"output_size.*\(2, 3, 5, 5\)"),
        (lambda x: F.max_unpool2d(x, np.zeros((2, 3, 5, 5), dtype=np.int64), 2, output_size=(1, 2, 3)),
         ShapeError, r"output_size.*\(2, 3, 5, 5\)"),
        (lambda x: F.max_unpool2d(x, np.full((2, 3, 5, 5), -1), 2), ShapeError, r"invalid max index -1"),
    ],
)
def test_errors_name_the_shapes(call, exc, match):
    with pytest.raises(exc, match=match):
        call(Tensor(np.zeros((2, 3, 5, 5))))
