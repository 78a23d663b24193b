"""Resampling family: random PyTorch parity, fast == naive reference, and the duality of the
lecture's downsampling and zero-insertion upsampling.

* ``test_interpolate_matches_torch_random``: 240 seeded random configurations (every mode,
  1-D / 2-D / 3-D maps, sizes up and down, integer and non-integer scale factors, per-axis
  factors, align_corners both ways, recompute_scale_factor) -- forward and input gradient
  against torch in float64 and float32 at the acceptance tolerance.
* ``test_downsample_upsample_zeros_match_torch_random``: 200 configurations of the lecture's
  resampling against torch slicing / strided scatter.
* hypothesis: the fast kernels equal the naive loops (float64, tight), forward and backward.
* duality: the backward of ``downsample`` is ``upsample_zeros`` padded to the input size and
  the backward of ``upsample_zeros`` is ``downsample``, both through autograd and at kernel level.
* ``upsample(x, 2, mode='zeros')``, the deprecated aliases, PyTorch's index-rule quirks (2-D
  nearest special cases, the linear same-size copy), and the documented gradient deviation
  where PyTorch's own backward is not the adjoint of its forward.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import striate
import striate.functional as F
from harness import assert_close_torch, needs_torch, torch
from opinfo.resample import interp_fan_in, torch_downsample, torch_zeros_upsample
from striate import Tensor
from striate.gradcheck import gradcheck
from striate.kernels import resample as K
from striate.reference import resample as R

N_RANDOM = 240

_RANK_OF = {"linear": (1,), "bilinear": (2,), "bicubic": (2,), "trilinear": (3,)}
_MODES = ["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area"]
_MODE_P = np.array([0.2, 0.15, 0.15, 0.2, 0.1, 0.05, 0.15])


# ----------------------------------------------------------------------------- helpers
def _run(op, x, dy, *args, **kw):
    """striate forward and input gradient (None when dy is None)."""
    tx = Tensor._wrap(x).requires_grad_(True)
    y = op(tx, *args, **kw)
    if dy is None:
        return y.data, None
    y.backward(dy)
    return y.data, tx.grad.data


def _draw_interp(rng):
    """One random interpolate configuration: (input shape, kwargs)."""
    while True:
        mode = str(rng.choice(_MODES, p=_MODE_P))
        d = int(rng.choice(_RANK_OF.get(mode, (1, 2, 2, 3))))
        top = {1: 13, 2: 9, 3: 5}[d]
        spatial = tuple(int(v) for v in rng.integers(1, top, d))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + spatial
        kw: dict = {"mode": mode}
        if mode not in ("nearest", "nearest-exact", "area"):
            kw["align_corners"] = bool(rng.random() < 0.5)
        if rng.random() < 0.45:
            size = tuple(int(v) for v in rng.integers(1, 2 * top, d))
            kw["size"] = size[0] if (rng.random() < 0.3 and len(set(size)) == 1) else size
        else:
            def factor():
                kind = rng.random()
                if kind < 0.3:
                    return int(rng.integers(1, 4))  # integer factors 1..3
                if kind < 0.5:
                    return float(rng.choice([0.5, 1.5, 2.5, 1 / 3, 0.25, 0.75]))
                return float(np.round(rng.uniform(0.3, 3.5), int(rng.integers(1, 4))))
            sf = tuple(factor() for _ in range(d))
            kw["scale_factor"] = sf[0] if rng.random() < 0.3 else sf
            if mode != "area":
                kw["recompute_scale_factor"] = [None, False, True][int(rng.integers(0, 3))]
        out = K.interpolate_output_size(spatial, size=None if "size" not in kw else (
            kw["size"] if isinstance(kw["size"], tuple) else (kw["size"],) * d),
            scale_factor=None if "scale_factor" not in kw else (
                kw["scale_factor"] if isinstance(kw["scale_factor"], tuple) else (kw["scale_factor"],) * d))[0]
        if min(out) >= 1:
            return shape, kw, out


def _torch_jacobian_adjoint(x, dy, kw):
    """dX = J^T dY with J the Jacobian of torch's *forward* (torch is linear in x): the exact
    gradient of torch's forward, built from forwards on the basis of one (n, c) slice."""
    spatial = x.shape[2:]
    P = math.prod(spatial)
    basis = torch.eye(P, dtype=torch.float64).reshape((P, 1) + spatial)
    J = torch.nn.functional.interpolate(basis, **kw).reshape(P, -1).numpy()  # (P, prod(out))
    N, C = x.shape[:2]
    return (dy.astype(np.float64).reshape(N * C, -1) @ J.T).reshape(x.shape)


def _torch_interp(x, dy, kw):
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.nn.functional.interpolate(tx, **kw)
    ty.backward(torch.from_numpy(dy))
    return ty.detach().numpy(), tx.grad.numpy()


# ----------------------------------------------------------------------------- torch parity
@needs_torch
def test_interpolate_matches_torch_random():
    rng = np.random.default_rng(2024)
    seen_modes, adjoint_fallbacks = set(), []
    for k in range(N_RANDOM):
        shape, kw, out = _draw_interp(rng)
        seen_modes.add((kw["mode"], len(shape)))
        x64 = rng.standard_normal(shape)
        dy64 = rng.standard_normal(shape[:2] + tuple(out))
        fan = interp_fan_in(shape[2:], out, kw["mode"])
        # PyTorch's nearest (1-D/3-D) and bicubic backward use other index rules than their
        # forward for a few non-integer scale factors; there ours is the exact gradient of the
        # (matching) forward, so the expected gradient is the adjoint of torch's forward.
        expected_grad = None
        if kw["mode"] in ("nearest", "bicubic"):
            adjoint = _torch_jacobian_adjoint(x64, dy64, kw)
            if np.abs(_torch_interp(x64, dy64, kw)[1] - adjoint).max() > 1e-9 * max(1, np.abs(adjoint).max()):
                assert (kw["mode"], len(shape)) != ("nearest", 4), kw  # 2-D nearest is consistent
                adjoint_fallbacks.append(f"config {k}: {shape} {kw}")
                expected_grad = adjoint
        for dtype in (np.float64, np.float32):
            x, dy = x64.astype(dtype), dy64.astype(dtype)
            what = f"config {k}: {shape} {kw} {np.dtype(dtype).name}"
            y, dx = _run(F.interpolate, x, dy, **kw)
            ty, tdx = _torch_interp(x, dy, kw)
            assert y.dtype == dtype and dx.dtype == dtype, what
            assert_close_torch(y, ty, dtype, fan, what + " forward")
            if expected_grad is not None:
                tdx = expected_grad.astype(dtype)
            assert_close_torch(dx, tdx, dtype, fan, what + " grad")
    assert len(seen_modes) >= 9, seen_modes
    assert len(adjoint_fallbacks) <= 0.05 * N_RANDOM, adjoint_fallbacks


@needs_torch
def test_downsample_upsample_zeros_match_torch_random():
    rng = np.random.default_rng(7)
    for k in range(200):
        d = int(rng.integers(1, 3))
        spatial = tuple(int(v) for v in rng.integers(1, 10, d))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + spatial
        factor = int(rng.integers(1, 5)) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(1, 5, d))
        x64 = rng.standard_normal(shape)
        for name, op, tfn in (("downsample", F.downsample, torch_downsample),
                              ("upsample_zeros", F.upsample_zeros, torch_zeros_upsample)):
            for dtype in (np.float64, np.float32):
                x = x64.astype(dtype)
                tx = torch.from_numpy(x.copy()).requires_grad_(True)
                ty = tfn(torch, tx, factor)
                dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
                ty.backward(torch.from_numpy(dy))
                y, dx = _run(op, x, dy, factor)
                what = f"config {k}: {name} {shape} factor={factor} {np.dtype(dtype).name}"
                assert_close_torch(y, ty.detach().numpy(), dtype, 1, what)
                assert_close_torch(dx, tx.grad.numpy(), dtype, 1, what + " grad")


# ----------------------------------------------------------------------------- fast == reference
_interp_configs = st.builds(
    lambda seed: _draw_interp(np.random.default_rng(seed)), st.integers(0, 2**32 - 1))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=_interp_configs, seed=st.integers(0, 2**16))
def test_interpolate_fast_equals_reference(cfg, seed):
    shape, kw, out = cfg
    shape = (1,) + shape[1:]  # keep the naive loops cheap
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape[:2] + tuple(out))
    y, dx = _run(F.interpolate, x, dy, **kw)
    np.testing.assert_allclose(y, R.interpolate(x, **kw), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, R.interpolate_backward(dy, x, **kw), rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    spatial=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    factors=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_downsample_upsample_zeros_fast_equal_reference(spatial, factors, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2) + tuple(spatial))
    f = tuple(factors[: len(spatial)])
    for op, ref, ref_grad in ((F.downsample, R.downsample, R.downsample_backward),
                              (F.upsample_zeros, R.upsample_zeros, R.upsample_zeros_backward)):
        y_ref = ref(x, f)
        dy = rng.standard_normal(y_ref.shape)
        y, dx = _run(op, x, dy, f)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(dx, ref_grad(dy, x, f))


# ----------------------------------------------------------------------------- duality
def _pad_to(a, shape):
    """Zero-pad ``a`` at the end of every axis up to ``shape``."""
    return np.pad(a, [(0, t - s) for s, t in zip(a.shape, shape)])


@pytest.mark.parametrize("shape,factor", [
    ((2, 3, 7), 2), ((2, 3, 7), 3), ((2, 3, 9), 3), ((1, 2, 6, 5), 2), ((1, 2, 7, 8), (3, 2)),
    ((1, 1, 5, 4), (1, 4)), ((1, 2, 3, 5, 4), (2, 1, 3)), ((2, 2, 4, 4), 5),
])
def test_downsample_backward_is_zero_upsample_padded(shape, factor):
    """d downsample / dx applied to dY == upsample_zeros(dY) zero-padded to the input size."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    y = F.downsample(Tensor(x), factor)
    dy = rng.standard_normal(y.shape)
    _, dx = _run(F.downsample, x, dy, factor)
    up = F.upsample_zeros(Tensor(dy), factor).data
    np.testing.assert_array_equal(dx, _pad_to(up, x.shape))
    # the same at kernel level, and as the adjoint identity <D x, v> = <x, D^T v>
    f = (factor,) * (len(shape) - 2) if isinstance(factor, int) else factor
    _, cache = K.downsample_forward(x, f)
    up_kernel, _ = K.upsample_zeros_forward(dy, f)
    np.testing.assert_array_equal(K.downsample_backward(dy, cache), _pad_to(up_kernel, x.shape))
    assert np.isclose(np.sum(y.data * dy), np.sum(x * dx))


@pytest.mark.parametrize("shape,factor", [
    ((2, 3, 7), 2), ((2, 3, 4), 3), ((1, 2, 6, 5), 2), ((1, 2, 3, 4), (3, 2)), ((1, 1, 2, 3, 2), (2, 1, 3)),
])
def test_upsample_zeros_backward_is_downsample(shape, factor):
    """d upsample_zeros / dx applied to dY == downsample(dY): keep every S-th gradient."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    y = F.upsample_zeros(Tensor(x), factor)
    dy = rng.standard_normal(y.shape)
    _, dx = _run(F.upsample_zeros, x, dy, factor)
    np.testing.assert_array_equal(dx, F.downsample(Tensor(dy), factor).data)
    f = (factor,) * (len(shape) - 2) if isinstance(factor, int) else factor
    _, cache = K.upsample_zeros_forward(x, f)
    np.testing.assert_array_equal(K.upsample_zeros_backward(dy, cache), K.downsample_forward(dy, f)[0])
    assert np.isclose(np.sum(y.data * dy), np.sum(x * dx))
    # downsample undoes zero insertion exactly
    np.testing.assert_array_equal(F.downsample(y, factor).data, x)


def test_upsample_zeros_layout():
    x = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    y = F.upsample_zeros(Tensor(x), 2).data[0, 0]
    np.testing.assert_array_equal(y, [[1, 0, 2, 0, 3], [0, 0, 0, 0, 0], [4, 0, 5, 0, 6]])
    np.testing.assert_array_equal(F.downsample(Tensor(np.arange(10.0).reshape(1, 1, 10)), 3).data[0, 0], [0, 3, 6, 9])


# ----------------------------------------------------------------------------- upsample and aliases
def test_upsample_zeros_mode_positional_factor():
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    y = F.upsample(Tensor(x), 2, mode="zeros")
    assert y.shape == (2, 3, 7, 9)
    np.testing.assert_array_equal(y.data, F.upsample_zeros(Tensor(x), 2).data)
    np.testing.assert_array_equal(F.upsample(Tensor(x), scale_factor=(2, 3), mode="zeros").data,
                                  F.upsample_zeros(Tensor(x), (2, 3)).data)
    np.testing.assert_array_equal(F.upsample(Tensor(x), scale_factor=2.0, mode="zeros").data, y.data)


@needs_torch
def test_upsample_aliases_match_torch():
    x = np.random.default_rng(4).standard_normal((2, 2, 4, 5))
    tx = torch.from_numpy(x)
    tnf = torch.nn.functional
    np.testing.assert_allclose(F.upsample(Tensor(x), (7, 3), mode="bilinear").data,
                               tnf.interpolate(tx, (7, 3), mode="bilinear").numpy(), atol=1e-12)
    np.testing.assert_allclose(F.upsample_nearest(Tensor(x), scale_factor=2).data,
                               tnf.interpolate(tx, scale_factor=2, mode="nearest").numpy(), atol=0)
    np.testing.assert_allclose(F.upsample_bilinear(Tensor(x), size=(6, 9)).data,
                               tnf.interpolate(tx, size=(6, 9), mode="bilinear", align_corners=True).numpy(),
                               atol=1e-12)


# ----------------------------------------------------------------------------- PyTorch's index quirks
@needs_torch
def test_nearest_2d_keeps_unchanged_axes_but_1d_does_not():
    """PyTorch's 2-D nearest copies an axis whose length is unchanged (scale 1.1 on length 3),
    its 1-D kernel applies floor(i / 1.1): we reproduce both forwards."""
    tnf = torch.nn.functional
    x2 = np.arange(9.0).reshape(1, 1, 3, 3)
    y2 = F.interpolate(Tensor(x2), scale_factor=(1.5, 1.1)).data
    np.testing.assert_array_equal(y2, tnf.interpolate(torch.from_numpy(x2), scale_factor=(1.5, 1.1)).numpy())
    np.testing.assert_array_equal(y2[0, 0, 0], [0, 1, 2])
    x1 = np.arange(6.0).reshape(1, 1, 6)
    y1 = F.interpolate(Tensor(x1), scale_factor=1.1).data
    np.testing.assert_array_equal(y1, tnf.interpolate(torch.from_numpy(x1), scale_factor=1.1).numpy())
    np.testing.assert_array_equal(y1[0, 0], [0, 0, 1, 2, 3, 4])


@needs_torch
def test_nearest_1d_gradient_is_the_adjoint_where_torch_is_not():
    """Documented deviation: torch's 1-D nearest backward uses the old index rule (a copy for
    an unchanged length) while its forward does not; our gradient is the forward's adjoint."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 6))
    dy = rng.standard_normal((1, 2, 6))
    y, dx = _run(F.interpolate, x, dy, scale_factor=1.1)
    ty, tdx = _torch_interp(x, dy, {"scale_factor": 1.1})
    np.testing.assert_array_equal(y, ty)
    adj = _torch_jacobian_adjoint(x, dy, {"scale_factor": 1.1})
    np.testing.assert_allclose(dx, adj, atol=1e-12)
    assert not np.allclose(tdx, adj)  # torch's gradient is not the gradient of its forward here
    assert gradcheck(lambda t: F.interpolate(t, scale_factor=1.1), [Tensor(x, requires_grad=True)])


def test_linear_same_size_is_a_copy():
    """With align_corners=False an axis whose length does not change is copied unchanged,
    even for a scale factor other than 1 (PyTorch's rule)."""
    x = np.random.default_rng(6).standard_normal((1, 2, 5))
    np.testing.assert_array_equal(F.interpolate(Tensor(x), scale_factor=1.1, mode="linear").data, x)
    np.testing.assert_array_equal(K.linear_matrix(5, 5, False, 1.1), np.eye(5))


@pytest.mark.parametrize("n_in,n_out,ac", [(4, 9, False), (4, 9, True), (9, 4, False), (7, 1, True), (1, 5, False)])
def test_interpolation_matrices_are_partitions_of_unity(n_in, n_out, ac):
    """Every row of the linear / cubic / area matrices sums to 1 (constants are preserved)."""
    for A in (K.linear_matrix(n_in, n_out, ac, None), K.cubic_matrix(n_in, n_out, ac, None),
              K.area_matrix(n_in, n_out)):
        assert A.shape == (n_out, n_in)
        np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
    idx = K.nearest_indices(n_in, n_out, None)
    assert np.all(np.diff(idx) >= 0) and idx.max() < n_in


def test_interpolate_accepts_arrays_and_no_grad():
    x = np.random.default_rng(8).standard_normal((1, 1, 3, 3)).astype(np.float32)
    with striate.no_grad():
        y = F.interpolate(x, size=(5, 5), mode="bilinear")
    assert y.shape == (1, 1, 5, 5) and y.dtype == np.float32 and not y.requires_grad


def test_antialias_not_supported():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(NotImplementedError, match=r"antialias"):
        F.interpolate(x, size=2, mode="bilinear", antialias=True)
    with pytest.raises(ValueError, match=r"Anti-alias.*\(1, 1, 4, 4\)"):
        F.interpolate(x, size=2, mode="nearest", antialias=True)
