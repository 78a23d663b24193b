"""Convolution family: random PyTorch parity, fast == naive reference, the backward math spelled out.

* ``test_conv_matches_torch_random`` / ``test_conv_transpose_matches_torch_random``: 200 seeded
  random configurations each (1-D and 2-D mixed; strides 1-4, dilation 1-3, asymmetric and
  'same'/'valid' padding, groups, depthwise, with and without bias) -- forward, dx, dw, db against
  torch in float64 and float32 at the acceptance tolerance.
* hypothesis: the fast kernels equal the naive loops (float64, tight), forward and backward.
* the lecture's backward written out step by step with NumPy: dX as the full convolution of the
  zero-inserted, padded dZ with flipped channel-transposed filters, cropped; dW as the correlation
  of the padded input with dZ (== the cached columns times dZ).
* output_padding, 'same' with even kernels, unbatched inputs, dtype mismatches, im2col layout.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import striate
import striate.functional as F
from harness import assert_close_torch, needs_torch, torch
from opinfo.conv import conv_fan_in, conv_transpose_fan_in, torch_conv, torch_conv_transpose
from striate import Tensor
from striate.kernels import conv as K
from striate.kernels.im2col import im2col, pad_signed
from striate.kernels.shapes import ShapeError, as_padding
from striate.reference import conv as R

N_RANDOM = 200


# ----------------------------------------------------------------------------- helpers

def _run(op, x, w, b, dy, **kw):
    """striate forward and (dx, dw, db)."""
    tx, tw = Tensor._wrap(x).requires_grad_(True), Tensor._wrap(w).requires_grad_(True)
    tb = None if b is None else Tensor._wrap(b).requires_grad_(True)
    y = op(tx, tw, tb, **kw)
    if dy is None:
        return y.data, None
    y.backward(dy)
    return y.data, (tx.grad.data, tw.grad.data, None if tb is None else tb.grad.data)


def _run_torch(fn, x, w, b, dy, **kw):
    tx, tw = torch.from_numpy(x.copy()).requires_grad_(True), torch.from_numpy(w.copy()).requires_grad_(True)
    tb = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    y = fn(torch, tx, tw, tb, **kw)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), (tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy())


def _compare_with_torch(op, torch_fn, x, w, b, kw, fan_in, rng):
    for dtype in (np.float64, np.float32):
        xs, ws = x.astype(dtype), w.astype(dtype)
        bs = None if b is None else b.astype(dtype)
        y, _ = _run(op, xs, ws, bs, None, **kw)
        dy = rng.standard_normal(y.shape).astype(dtype)
        y, grads = _run(op, xs, ws, bs, dy, **kw)
        ty, tgrads = _run_torch(torch_fn, xs, ws, bs, dy, **kw)
        assert y.dtype == dtype
        assert_close_torch(y, ty, dtype, fan_in, f"forward {kw}")
        for name, g, tg in zip(("dx", "dw", "db"), grads, tgrads):
            if tg is None:
                assert g is None
                continue
            assert g.dtype == dtype, name
            assert_close_torch(g, tg, dtype, fan_in, f"{name} {kw}")


def _conv_config(seed):
    """A random valid conv1d/conv2d configuration (small shapes)."""
    rng = np.random.default_rng(seed)
    nd = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 1, 2, 3]))
    cg = 1 if rng.random() < 0.25 else int(rng.integers(1, 4))  # cg = 1 with groups = C: depthwise
    og = int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 5, nd))
    dilation = tuple(int(d) for d in rng.choice([1, 1, 2, 3], nd))
    stride = tuple(int(s) for s in rng.integers(1, 5, nd))
    mode = rng.choice(["int", "tuple", "pairs", "same", "valid"])
    if mode == "int":
        padding = int(rng.integers(0, 4))
    elif mode == "tuple":
        padding = tuple(int(p) for p in rng.integers(0, 4, nd))
    elif mode == "pairs":
        padding = tuple((int(lo), int(hi)) for lo, hi in rng.integers(0, 4, (nd, 2)))
    else:
        padding = str(mode)
        if mode == "same":
            stride = (1,) * nd
    pairs = as_padding(padding, nd, kernel=kernel, dilation=dilation, stride=stride)
    spatial = []
    for k, d, (lo, hi) in zip(kernel, dilation, pairs):
        need = max(1, d * (k - 1) + 1 - lo - hi)
        spatial.append(need + int(rng.integers(0, 6)))
    n = int(rng.integers(1, 4))
    x = rng.standard_normal((n, cg * groups, *spatial))
    w = rng.standard_normal((og * groups, cg, *kernel))
    b = rng.standard_normal(og * groups) if rng.random() < 0.6 else None
    if len(set(stride)) == 1 and rng.random() < 0.5:
        stride = stride[0]  # the int form too
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return nd, x, w, b, kw, rng


def _conv_transpose_config(seed):
    """A random valid conv_transpose1d/2d configuration."""
    rng = np.random.default_rng(10_000 + seed)
    nd = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 1, 2, 3]))
    cg = int(rng.integers(1, 4))
    og = 1 if rng.random() < 0.25 else int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 5, nd))
    dilation = tuple(int(d) for d in rng.choice([1, 1, 2, 3], nd))
    stride = tuple(int(s) for s in rng.integers(1, 5, nd))
    spatial = tuple(int(s) for s in rng.integers(1, 7, nd))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    padding = tuple(
        int(rng.integers(0, min(3, ((n - 1) * s + d * (k - 1) + a) // 2) + 1))
        for n, s, d, k, a in zip(spatial, stride, dilation, kernel, output_padding)
    )
    n = int(rng.integers(1, 4))
    x = rng.standard_normal((n, cg * groups, *spatial))
    w = rng.standard_normal((cg * groups, og, *kernel))
    b = rng.standard_normal(og * groups) if rng.random() < 0.6 else None
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    return nd, x, w, b, kw, rng


# ----------------------------------------------------------------------------- torch parity

@needs_torch
@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_conv_matches_torch_random(seed):
    nd, x, w, b, kw, rng = _conv_config(seed)
    op = F.conv1d if nd == 1 else F.conv2d
    y, _ = _run(op, x, w, b, None, **kw)
    fan = conv_fan_in(x.shape, w.shape, y.shape, kw["groups"])
    _compare_with_torch(op, torch_conv, x, w, b, kw, fan, rng)


@needs_torch
@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_conv_transpose_matches_torch_random(seed):
    nd, x, w, b, kw, rng = _conv_transpose_config(seed)
    op = F.conv_transpose1d if nd == 1 else F.conv_transpose2d
    fan = conv_transpose_fan_in(x.shape, w.shape, kw["groups"])
    _compare_with_torch(op, torch_conv_transpose, x, w, b, kw, fan, rng)


# ----------------------------------------------------------------------------- fast == reference

@st.composite
def _small_conv(draw, nd, transposed=False):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if transposed:
        spatial = tuple(draw(st.integers(1, 4)) for _ in range(nd))
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        padding = tuple(
            draw(st.integers(0, min(2, ((m - 1) * s + d * (k - 1) + a) // 2)))
            for m, s, d, k, a in zip(spatial, stride, dilation, kernel, output_padding)
        )
        x = rng.standard_normal((n, cg * groups, *spatial))
        w = rng.standard_normal((cg * groups, og, *kernel))
        kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    else:
        pairs = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
        spatial = tuple(
            max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(0, 3))
            for k, d, (lo, hi) in zip(kernel, dilation, pairs)
        )
        x = rng.standard_normal((n, cg * groups, *spatial))
        w = rng.standard_normal((og * groups, cg, *kernel))
        kw = dict(stride=stride, padding=pairs, dilation=dilation, groups=groups)
    b = rng.standard_normal(og * groups) if bias else None
    return x, w, b, kw, rng


def _check_against_reference(op, ref, ref_backward, x, w, b, kw, rng):
    y, _ = _run(op, x, w, b, None, **kw)
    np.testing.assert_allclose(y, ref(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    _, grads = _run(op, x, w, b, dy, **kw)
    for g, r in zip(grads, ref_backward(dy, x, w, b, **kw)):
        if r is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


_hyp = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_hyp
@given(_small_conv(2))
def test_conv2d_fast_equals_reference(cfg):
    _check_against_reference(F.conv2d, R.conv2d, R.conv2d_backward, *cfg)


@_hyp
@given(_small_conv(1))
def test_conv1d_fast_equals_reference(cfg):
    _check_against_reference(F.conv1d, R.conv1d, R.conv1d_backward, *cfg)


@_hyp
@given(_small_conv(2, transposed=True))
def test_conv_transpose2d_fast_equals_reference(cfg):
    _check_against_reference(F.conv_transpose2d, R.conv_transpose2d, R.conv_transpose2d_backward, *cfg)


@_hyp
@given(_small_conv(1, transposed=True))
def test_conv_transpose1d_fast_equals_reference(cfg):
    _check_against_reference(F.conv_transpose1d, R.conv_transpose1d, R.conv_transpose1d_backward, *cfg)


# ----------------------------------------------------------------------------- the lecture's backward

BACKWARD_CASES = [
    # stride, padding pairs, dilation, groups
    ((1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((2, 2), ((1, 1), (0, 0)), (1, 1), 1),
    ((3, 2), ((0, 2), (1, 0)), (2, 1), 2),  # unreached trailing rows, asymmetric padding
    ((2, 3), ((2, 2), (3, 1)), (1, 2), 2),
    ((1, 2), ((0, 0), (0, 0)), (3, 1), 1),
]


def _setup(stride, pairs, dilation, groups, seed=0):
    rng = np.random.default_rng(seed)
    c, o = 2 * groups, 3 * groups
    x = rng.standard_normal((2, c, 9, 8))
    w = rng.standard_normal((o, c // groups, 3, 2))
    y, cache = K.conv2d_forward(x, w, None, stride, pairs, dilation, groups)
    dz = rng.standard_normal(y.shape)
    return x, w, dz, cache


@pytest.mark.parametrize("stride,pairs,dilation,groups", BACKWARD_CASES)
def test_dx_is_full_convolution_of_zero_inserted_padded_dz_with_flipped_filters(stride, pairs, dilation, groups):
    x, w, dz, cache = _setup(stride, pairs, dilation, groups)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    ho, wo = dz.shape[2:]
    (sh, sw), (dh, dw) = stride, dilation
    (lo_h, hi_h), (lo_w, hi_w) = pairs
    hp, wp = h + lo_h + hi_h, wd + lo_w + hi_w

    # 1. S-1 zeros between the samples of dZ
    up = np.zeros((n, o, (ho - 1) * sh + 1, (wo - 1) * sw + 1))
    up[:, :, ::sh, ::sw] = dz
    # 2. zero-pad by d*(K-1) on every side, plus the padded-input rows no window reached
    unreached_h = hp - ((ho - 1) * sh + dh * (kh - 1) + 1)
    unreached_w = wp - ((wo - 1) * sw + dw * (kw - 1) + 1)
    full = np.pad(up, ((0, 0), (0, 0), (dh * (kh - 1), dh * (kh - 1) + unreached_h),
                       (dw * (kw - 1), dw * (kw - 1) + unreached_w)))
    # 3. flipped filters with in/out channels swapped, per group
    wflip = np.zeros((c, og, kh, kw))
    for g in range(groups):
        for oo in range(og):
            for cc in range(cg):
                wflip[g * cg + cc, oo] = w[g * og + oo, cc, ::-1, ::-1]
    # 4. correlate (stride 1, dilation d): one output per position of the padded input
    dxpad = np.zeros((n, c, hp, wp))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                seg = full[:, g * og:(g + 1) * og, i * dh:i * dh + hp, j * dw:j * dw + wp]
                dxpad[:, g * cg:(g + 1) * cg] += np.einsum("nopq,co->ncpq", seg, wflip[g * cg:(g + 1) * cg, :, i, j])
    # 5. crop the forward padding
    dx_steps = dxpad[:, :, lo_h:lo_h + h, lo_w:lo_w + wd]

    dx_fast, _, _ = K.conv2d_backward(dz, cache)
    np.testing.assert_allclose(dx_fast, dx_steps, rtol=1e-12, atol=1e-12)
    dx_ref, _, _ = R.conv2d_backward(dz, x, w, None, stride, pairs, dilation, groups)
    np.testing.assert_allclose(dx_steps, dx_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,pairs,dilation,groups", BACKWARD_CASES)
def test_dw_is_correlation_of_padded_input_with_dz(stride, pairs, dilation, groups):
    x, w, dz, cache = _setup(stride, pairs, dilation, groups, seed=1)
    o, cg, kh, kw = w.shape
    og = o // groups
    ho, wo = dz.shape[2:]
    (sh, sw), (dh, dw) = stride, dilation
    xpad = np.pad(x, ((0, 0), (0, 0)) + pairs)
    dw_steps = np.zeros_like(w)
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                # the samples tap (i, j) met: xpad[p*S + i*d, q*S + j*d] for every output (p, q)
                rows = slice(i * dh, i * dh + (ho - 1) * sh + 1, sh)
                cols_ = slice(j * dw, j * dw + (wo - 1) * sw + 1, sw)
                seg = xpad[:, g * cg:(g + 1) * cg, rows, cols_]
                dw_steps[g * og:(g + 1) * og, :, i, j] = np.einsum("nopq,ncpq->oc", dz[:, g * og:(g + 1) * og], seg)
    _, dw_fast, _ = K.conv2d_backward(dz, cache)
    np.testing.assert_allclose(dw_fast, dw_steps, rtol=1e-12, atol=1e-12)
    # ... which is the cached column matrix times dZ
    cols, _ = im2col(x, (kh, kw), stride, pairs, dilation, groups)
    np.testing.assert_allclose(K.conv2d_backward_weight(dz, cols, w.shape, groups), dw_steps, rtol=1e-12, atol=1e-12)
    _, dw_ref, _ = R.conv2d_backward(dz, x, w, None, stride, pairs, dilation, groups)
    np.testing.assert_allclose(dw_steps, dw_ref, rtol=1e-12, atol=1e-12)


def test_dw_without_cached_columns_rebuilds_them():
    x, w, dz, cache = _setup((2, 1), ((1, 0), (0, 1)), (1, 2), 2)
    _, cache2 = K.conv2d_forward(x, w, None, (2, 1), ((1, 0), (0, 1)), (1, 2), 2, keep_cols=False)
    assert cache2[3] is None
    np.testing.assert_allclose(K.conv2d_backward(dz, cache2)[1], K.conv2d_backward(dz, cache)[1], rtol=1e-13)


def test_data_input_keeps_no_columns():
    """A conv whose weight needs no gradient must not hold the column matrix."""
    rng = np.random.default_rng(0)
    x = Tensor._wrap(rng.standard_normal((1, 2, 5, 5))).requires_grad_(True)
    w = Tensor._wrap(rng.standard_normal((3, 2, 3, 3)))
    y = F.conv2d(x, w, padding=1)
    assert y._node.ctx.cache[3] is None
    y.sum().backward()
    assert x.grad is not None and w.grad is None


def test_im2col_layout():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6, 7))
    stride, pairs, dilation, groups, (kh, kw) = (2, 1), ((1, 2), (0, 1)), (1, 2), 2, (2, 3)
    cols, (ho, wo) = im2col(x, (kh, kw), stride, pairs, dilation, groups)
    xpad = np.pad(x, ((0, 0), (0, 0)) + pairs)
    cg = 2
    assert cols.shape == (groups, cg * kh * kw, 2 * ho * wo)
    for g in range(groups):
        for c in range(cg):
            for i in range(kh):
                for j in range(kw):
                    for n in range(2):
                        for p in range(ho):
                            for q in range(wo):
                                r, s = p * stride[0] + i * dilation[0], q * stride[1] + j * dilation[1]
                                assert cols[g, (c * kh + i) * kw + j, (n * ho + p) * wo + q] == xpad[n, g * cg + c, r, s]


@pytest.mark.parametrize("pairs", [((1, 2), (0, 0)), ((-1, 2), (2, -3)), ((-3, 2), (0, 0)), ((-2, -1), (0, -4))])
def test_pad_signed_is_pad_then_crop(pairs):
    x = np.arange(2 * 2 * 2 * 5, dtype=float).reshape(2, 2, 2, 5)
    big = 6
    padded = np.pad(x, ((0, 0), (0, 0), (big, big), (big, big)))
    expect = padded[:, :, big - pairs[0][0]:big + 2 + pairs[0][1], big - pairs[1][0]:big + 5 + pairs[1][1]]
    np.testing.assert_array_equal(pad_signed(x, pairs), expect)


def test_stride_skips_whole_input_with_large_padding():
    """Found by hypothesis: the only window lies in the padding (dX crop reaches past dZ)."""
    x, w = np.array([[[0.5]]]), np.array([[[2.0]]])
    kw = dict(stride=3, padding=((2, 0),))
    _check_against_reference(F.conv1d, R.conv1d, R.conv1d_backward, x, w, None, kw, np.random.default_rng(0))
    y, grads = _run(F.conv1d, x, w, None, np.ones((1, 1, 1)), **kw)
    assert y.shape == (1, 1, 1) and y[0, 0, 0] == 0.0 and grads[0].shape == x.shape


def test_conv_transpose_is_adjoint_of_conv():
    """<conv(x), y> == <x, conv_transpose(y)> with the same weight, stride, padding, dilation, groups."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    kw = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    z = F.conv2d(x, w, **kw).data
    y = rng.standard_normal(z.shape)
    op = tuple((n + 2 * p - d * (k - 1) - 1) % s for n, p, d, k, s in zip((9, 8), (1, 2), (2, 1), (3, 2), (2, 3)))
    xt = F.conv_transpose2d(y, w, output_padding=op, **kw).data
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.sum(z * y), np.sum(x * xt), rtol=1e-12)


# ----------------------------------------------------------------------------- PyTorch behaviours

@needs_torch
@pytest.mark.parametrize("stride,dilation", [(2, 1), (3, 1), (1, 3), (2, 3), (3, 2)])
def test_output_padding_matches_torch(stride, dilation):
    rng = np.random.default_rng(stride * 10 + dilation)
    x = rng.standard_normal((2, 2, 4, 3))
    w = rng.standard_normal((2, 3, 3, 2))
    b = rng.standard_normal(3)
    for op in range(max(stride, dilation)):
        kw = dict(stride=stride, padding=1, output_padding=(op, 0), dilation=dilation)
        y, _ = _run(F.conv_transpose2d, x, w, b, None, **kw)
        expect_h = (4 - 1) * stride - 2 + dilation * 2 + op + 1
        assert y.shape[2] == expect_h
        _compare_with_torch(F.conv_transpose2d, torch_conv_transpose, x, w, b, kw,
                            conv_transpose_fan_in(x.shape, w.shape, 1), rng)


def test_output_padding_rule():
    x, w = np.zeros((1, 2, 4, 4)), np.zeros((2, 1, 3, 3))
    with pytest.raises(ShapeError, match=r"output_padding \(2, 0\).*stride \(2, 2\).*dilation \(1, 1\)"):
        F.conv_transpose2d(x, w, stride=2, output_padding=(2, 0))
    F.conv_transpose2d(x, w, stride=1, dilation=3, output_padding=2)  # below the dilation: allowed


@needs_torch
@pytest.mark.parametrize("kernel", [(2,), (4,), (2, 2), (4, 3), (2, 4)])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_same_padding_even_kernels_match_torch(kernel, dilation):
    rng = np.random.default_rng(len(kernel) * 100 + kernel[0] * 10 + dilation)
    nd = len(kernel)
    x = rng.standard_normal((2, 3) + (7, 6)[:nd])
    w = rng.standard_normal((4, 3) + kernel)
    b = rng.standard_normal(4)
    op = F.conv1d if nd == 1 else F.conv2d
    kw = dict(padding="same", dilation=dilation)
    y, _ = _run(op, x, w, b, None, **kw)
    assert y.shape[2:] == x.shape[2:]
    _compare_with_torch(op, torch_conv, x, w, b, kw, 100, rng)


@needs_torch
@pytest.mark.parametrize("name", ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"])
def test_unbatched_input_matches_torch(name):
    rng = np.random.default_rng(7)
    nd = 1 if name.endswith("1d") else 2
    x = rng.standard_normal((4,) + (6, 5)[:nd])
    w = rng.standard_normal((4, 2) + (3, 2)[:nd])
    b = rng.standard_normal(4)
    kw = dict(stride=2, padding=1, groups=2)
    fn = torch_conv_transpose if "transpose" in name else torch_conv
    _compare_with_torch(getattr(F, name), fn, x, w, b, kw, 50, rng)


@pytest.mark.parametrize("name", ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"])
def test_dtype_mismatch_raises(name):
    nd = 1 if name.endswith("1d") else 2
    op = getattr(F, name)
    x = np.zeros((1, 2) + (5, 5)[:nd])
    w = np.zeros((2, 2) + (3, 3)[:nd])
    with pytest.raises(TypeError, match=r"float32.*float64"):
        op(x.astype(np.float32), w)
    with pytest.raises(TypeError, match=r"float64.*float32"):
        op(x, w.astype(np.float32))
    with pytest.raises(TypeError, match=r"bias is float32"):
        op(x, w, np.zeros(2, dtype=np.float32))
    with pytest.raises(TypeError, match=r"floating"):
        op(x.astype(np.int64), w.astype(np.int64))


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y, grads = _run(F.conv2d, x, w, b, np.ones((2, 4, 3, 3), np.float32), stride=2, padding=1)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    y, grads = _run(F.conv_transpose2d, x, w.transpose(1, 0, 2, 3).copy(), b, np.ones((2, 4, 11, 11), np.float32),
                    stride=2, padding=1)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


@needs_torch
def test_empty_batch_matches_torch():
    """PyTorch accepts a batch of zero images; so do we (forward and backward)."""
    x = np.zeros((0, 2, 5, 5))
    for op, tfn, w in ((F.conv2d, torch_conv, np.ones((3, 2, 3, 3))),
                       (F.conv_transpose2d, torch_conv_transpose, np.ones((2, 3, 3, 3)))):
        y, grads = _run(op, x, w, None, np.zeros(op(x, w, stride=2).shape), stride=2)
        ty, tgrads = _run_torch(tfn, x, w, None, np.zeros(y.shape), stride=2)
        assert y.shape == ty.shape and grads[0].shape == x.shape
        np.testing.assert_array_equal(grads[1], tgrads[1])


@settings(max_examples=60, deadline=None)
@given(
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    size=st.tuples(st.integers(6, 11), st.integers(6, 11)),
    one_d=st.booleans(),
)
def test_strided_conv_equals_downsampled_stride_one_conv(stride, kernel, padding, dilation, size, one_d):
    """The lecture: convolving with stride S is convolving with stride 1, then dropping S-1 of
    every S rows and columns; the same holds for every gradient, since downsampling's backward is
    zero insertion."""
    rng = np.random.default_rng(sum(stride) * 100 + sum(kernel) * 10 + padding)
    if one_d:
        x_np, w_np = rng.standard_normal((2, 3, size[0])), rng.standard_normal((4, 3, kernel[0]))
        conv, s = F.conv1d, stride[0]
    else:
        x_np, w_np = rng.standard_normal((2, 3) + size), rng.standard_normal((4, 3) + kernel)
        conv, s = F.conv2d, stride
    if (size[0] + 2 * padding - dilation * (kernel[0] - 1)) < 1 or (
            not one_d and size[1] + 2 * padding - dilation * (kernel[1] - 1) < 1):
        return
    b_np = rng.standard_normal(4)
    grads = []
    for build in (lambda x, w, b: conv(x, w, b, stride=s, padding=padding, dilation=dilation),
                  lambda x, w, b: F.downsample(conv(x, w, b, stride=1, padding=padding, dilation=dilation), s)):
        x, w, b = (striate.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
        y = build(x, w, b)
        dy = np.random.default_rng(7).standard_normal(y.shape)
        y.backward(dy)
        grads.append((y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
