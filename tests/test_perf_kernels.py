"""Correctness of the fast paths: chunked convolution, channels-last columns, the two dX algorithms,
threads, work buffers and the chunked batch norm.

The performance work must never change a result beyond rounding, so every path is checked on its
own -- not only the one the heuristics pick for a shape:

* convolution, float64, against the naive loops of ``striate.reference.conv``: every shape class
  (3x3/5x5/1x1, strides, dilation, asymmetric padding, padding past the kernel span) x both
  column layouts x both dX algorithms x three execution plans (serial; two threads with many
  small chunks; a memory budget so small that single images are cut into row ranges);
* the automatic choices on many-channel shapes against PyTorch (float64 and float32);
* determinism (bit-identical repeats on two threads), inputs never written, non-contiguous inputs,
  empty batches;
* batch norm, chunked and threaded, against the reference in every rank and mode;
* the work-buffer pool and the chunk planner, and the thread pool (order, errors, nesting,
  the BLAS thread count restored).

No timing is asserted anywhere: speed is measured by ``bench/run.py``.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest

import striate.functional as F
from harness import needs_torch, torch
from striate import Tensor
from striate.kernels import conv as K
from striate.kernels import norm as KN
from striate.kernels import parallel, workspace
from striate.kernels.im2col import im2col_chunk, pad_into_cl, tap_range
from striate.reference import conv as R
from striate.reference import norm as RN


@pytest.fixture
def plan(request):
    """Execution plan: (threads, memory budget, chunk target); restored afterwards."""
    threads, budget, target = request.param
    saved = (parallel.get_num_threads(), workspace.get_memory_budget(), workspace.get_chunk_target())
    parallel.set_num_threads(threads)
    workspace.set_memory_budget(budget)
    workspace.set_chunk_target(target)
    yield request.param
    parallel.set_num_threads(saved[0])
    workspace.set_memory_budget(saved[1])
    workspace.set_chunk_target(saved[2])


PLANS = [
    pytest.param((1, 256 << 20, 4 << 20), id="serial"),
    pytest.param((2, 256 << 20, 512), id="threads-small-chunks"),
    pytest.param((2, 1500, 512), id="row-chunks"),
]

# x shape, w shape, stride, padding pairs, dilation
CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 3, 9, 8), (5, 3, 3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2)),
    ((3, 3, 7, 7), (4, 3, 1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    ((2, 3, 7, 6), (4, 3, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((2, 2, 7, 6), (3, 2, 5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),
    ((2, 3, 7, 6), (4, 3, 3, 3), (3, 2), ((4, 0), (0, 3)), (1, 1)),  # padding wider than the kernel
    ((1, 2, 9, 9), (3, 2, 3, 3), (1, 1), ((3, 1), (0, 2)), (2, 2)),
    ((2, 2, 6, 6), (3, 2, 1, 1), (1, 1), ((1, 0), (0, 1)), (1, 1)),  # 1x1 with padding
    ((3, 1, 8, 8), (2, 1, 5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),  # LeNet's first layer in small
    ((2, 2, 6, 5), (3, 2, 3, 3), (1, 1), ((3, 0), (0, 3)), (1, 1)),  # stride 1, dZ's grid cropped
]


@functools.lru_cache(maxsize=None)
def _case(i):
    xs, ws, stride, pairs, dil = CASES[i]
    rng = np.random.default_rng(100 + i)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    y = R.conv2d(x, w, b, stride, pairs, dil)
    dz = rng.standard_normal(y.shape)
    return x, w, b, stride, pairs, dil, y, dz, R.conv2d_backward(dz, x, w, b, stride, pairs, dil)


@pytest.mark.parametrize("plan", PLANS, indirect=True)
@pytest.mark.parametrize("algorithm", K.DX_ALGORITHMS)
@pytest.mark.parametrize("layout", K.LAYOUTS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_every_path_matches_the_naive_reference(case, layout, algorithm, plan):
    x, w, b, stride, pairs, dil, y_ref, dz, (dx_ref, dw_ref, db_ref) = _case(case)
    y, cache = K.conv2d_forward(x, w, b, stride, pairs, dil, 1, layout=layout)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    assert cache[3] is None  # the chunked path keeps no columns
    dx, dw, db = K.conv2d_backward(dz, cache, algorithm=algorithm, layout=layout)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(db, db_ref, rtol=1e-11, atol=1e-11)
    # dX alone (the transposed convolution's forward) takes the same paths
    dx2 = K.conv2d_backward_data(dz, w, x.shape, stride, pairs, dil, 1, algorithm=algorithm, layout=layout)
    np.testing.assert_allclose(dx2, dx_ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("plan", PLANS[:2], indirect=True)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_partial_gradients(case, plan):
    x, w, b, stride, pairs, dil, _, dz, (dx_ref, dw_ref, db_ref) = _case(case)
    _, cache = K.conv2d_forward(x, w, b, stride, pairs, dil, 1)
    for need in [(True, False, False), (False, True, False), (False, False, True), (False, True, True),
                 (True, True, False), (True, True, True)]:
        got = K.conv2d_backward(dz, cache, need)
        for g, r, wanted in zip(got, (dx_ref, dw_ref, db_ref), need):
            if wanted:
                np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-11)
            else:
                assert g is None


STRIDE1_FLIPPED = [i for i, c in enumerate(CASES) if c[2] == (1, 1) and c[1][2] * c[1][3] <= 9]


@pytest.mark.parametrize("plan", PLANS, indirect=True)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", STRIDE1_FLIPPED)
def test_dx_and_dw_from_one_column_matrix_of_dz(case, bias, plan, monkeypatch):
    """Stride 1, images innermost, flipped dX: dX and dW both come from the columns of dZ
    (``_backward_bi_shared``).  Same gradients as the naive loops and as the two-pass path
    (columns of x for dW, of dZ for dX); the path is really taken unless an image is over budget
    (the row-chunk plan), where the two-pass kernels take over."""
    x, w, b, stride, pairs, dil, _, dz, (dx_ref, dw_ref, db_ref) = _case(case)
    b = b if bias else None
    _, cache = K.conv2d_forward(x, w, b, stride, pairs, dil, 1, layout="batch_inner")
    calls = []
    shared = K._backward_bi_shared
    monkeypatch.setattr(K, "_backward_bi_shared", lambda *a: calls.append(1) or shared(*a))
    dx, dw, db = K.conv2d_backward(dz, cache, algorithm="flipped", layout="batch_inner")
    assert calls and (db is None) != bias
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-11, atol=1e-11)
    if bias:
        np.testing.assert_allclose(db, db_ref, rtol=1e-11, atol=1e-11)
    assert dw.flags.c_contiguous and dw.dtype == w.dtype and dx.dtype == x.dtype
    # x and dZ in Fortran order (the chunk copies read any strides): the same gradients, inputs untouched
    xv, dzv = np.asfortranarray(x), np.asfortranarray(dz)
    saved = (xv.copy(), dzv.copy())
    _, cache_v = K.conv2d_forward(xv, w, b, stride, pairs, dil, 1, layout="batch_inner")
    dxv, dwv, _ = K.conv2d_backward(dzv, cache_v, algorithm="flipped", layout="batch_inner")
    assert len(calls) == 2
    np.testing.assert_allclose(dxv, dx_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dwv, dw_ref, rtol=1e-11, atol=1e-11)
    assert np.array_equal(xv, saved[0]) and np.array_equal(dzv, saved[1])
    monkeypatch.setattr(K, "_SHARED_COLUMNS", False)
    dx2, dw2, _ = K.conv2d_backward(dz, cache, algorithm="flipped", layout="batch_inner")
    assert len(calls) == 2
    np.testing.assert_allclose(dx2, dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw2, dw, rtol=1e-12, atol=1e-12)


def test_default_choices():
    assert K.dx_algorithm((3, 3), (1, 1), (1, 1)) == "flipped"
    assert K.dx_algorithm((3, 3), (2, 2), (1, 1)) == "col2im"
    assert K.dx_algorithm((5, 5), (1, 1), (1, 1)) == "col2im"
    pad1, pad2 = ((1, 1), (1, 1)), ((2, 2), (2, 2))
    assert K.conv_layout(16, (3, 3), pad1) == "channels_first"  # no sizes: no grid
    assert K.conv_layout(16, (3, 3), pad1, (1, 1), (1, 1), (32, 32), (32, 32)) == "batch_inner"
    assert K.conv_layout(16, (3, 3), pad1, (1, 1), (1, 1), (34, 34), (34, 34)) == "padded_grid"  # rows 36/34
    assert K.conv_layout(16, (3, 3), pad1, (2, 2), (1, 1), (32, 32), (16, 16)) == "channels_first"
    assert K.conv_layout(6, (5, 5), ((0, 0), (0, 0)), (1, 1), (1, 1), (6, 6), (2, 2)) == "batch_inner"
    assert K.conv_layout(6, (13, 13), ((0, 0), (0, 0)), (1, 1), (1, 1), (48, 48), (36, 36)) == "channels_first"  # 48/36
    assert K.conv_layout(64, (3, 3), ((1, 1), (1, 1))) == "channels_last"
    assert K.conv_layout(64, (3, 3), pad1, (1, 1), (1, 1), (8, 8), (8, 8)) == "batch_inner"
    assert K.conv_layout(64, (3, 3), pad1, (2, 2), (1, 1), (16, 16), (8, 8)) == "channels_last"
    assert K.conv_layout(64, (3, 3), pad1, (1, 1), (1, 1), (56, 56), (56, 56)) == "padded_grid"
    assert K.conv_layout(32, (3, 3), pad1, (1, 1), (1, 1), (16, 16), (16, 16)) == "batch_inner"
    assert K.conv_layout(6, (5, 5), ((0, 0), (0, 0)), (1, 1), (1, 1), (14, 14), (10, 10)) == "batch_inner"
    assert K.conv_layout(1, (5, 5), pad2, (1, 1), (1, 1), (28, 28), (28, 28)) == "batch_inner"
    # few values a column for the output channels (an RGB stem): over the padded grid instead
    assert K.conv_layout(3, (3, 3), pad1, (1, 1), (1, 1), (32, 32), (32, 32), 16) == "padded_grid"
    assert K.conv_layout(3, (3, 3), pad1, (1, 1), (1, 1), (32, 32), (32, 32), 13) == "batch_inner"
    assert K.conv_layout(1, (5, 5), pad2, (1, 1), (1, 1), (28, 28), (28, 28), 6) == "batch_inner"
    assert K.conv_layout(16, (3, 3), pad1, (1, 1), (1, 1), (32, 32), (32, 32), 16) == "batch_inner"
    assert K.conv_layout(3, (1, 1), ((0, 0), (0, 0))) == "pointwise"
    assert K.conv_layout(3, (1, 1), pad1) != "pointwise"
    with pytest.raises(ValueError, match="algorithm"):
        K.conv2d_backward(np.zeros((1, 1, 1, 1)), K.conv2d_forward(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1)),
                                                                   None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)[1],
                          algorithm="winograd")


# ------------------------------------------------------------------ many channels, against PyTorch
TORCH_CASES = [
    # x shape, out channels, kernel, stride, padding
    ((4, 32, 8, 8), 32, 3, 1, 1),      # images innermost, flipped dX
    ((3, 64, 9, 7), 24, 3, 2, 1),      # channels-last, col2im dX
    ((3, 64, 6, 6), 128, 1, 2, 0),     # strided 1x1
    ((5, 16, 12, 12), 16, 3, 1, 1),    # images innermost, flipped dX
    ((4, 6, 14, 14), 16, 5, 1, 0),     # LeNet conv2: images innermost, col2im dX
    ((3, 8, 9, 9), 12, 3, 2, 1),       # channels-first, col2im dX
    ((2, 8, 34, 34), 16, 3, 1, 1),     # a map too wide for images innermost: padded grid
]


@needs_torch
@pytest.mark.parametrize("plan", PLANS[:2], indirect=True)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(TORCH_CASES)))
def test_automatic_paths_match_torch(case, dtype, plan):
    xs, o, k, s, p = TORCH_CASES[case]
    rng = np.random.default_rng(7 + case)
    x = rng.standard_normal(xs).astype(dtype)
    w = (rng.standard_normal((o, xs[1], k, k)) / np.sqrt(xs[1] * k * k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    sx, sw, sb = (Tensor._wrap(a.copy()).requires_grad_(True) for a in (x, w, b))
    y = F.conv2d(sx, sw, sb, stride=s, padding=p)
    dy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(dy)
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)
    ty.backward(torch.from_numpy(dy))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), **tol)
    for a, t in ((sx, tx), (sw, tw), (sb, tb)):
        assert a.grad.data.dtype == dtype
        np.testing.assert_allclose(a.grad.data, t.grad.numpy(), **tol)


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("plan", PLANS[1:2], indirect=True)
@pytest.mark.parametrize("layout", K.LAYOUTS)
def test_bit_identical_repeats_on_two_threads(layout, plan):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 5, 10, 10)).astype(np.float32)
    w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    dz = rng.standard_normal((9, 6, 10, 10)).astype(np.float32)
    runs = []
    for _ in range(3):
        y, cache = K.conv2d_forward(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1, layout=layout)
        runs.append((y,) + K.conv2d_backward(dz, cache, layout=layout)[:2])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("plan", PLANS[1:2], indirect=True)
@pytest.mark.parametrize("layout", K.LAYOUTS)
def test_inputs_untouched_and_noncontiguous_inputs(layout, plan):
    rng = np.random.default_rng(4)
    base = rng.standard_normal((6, 7, 4, 9))
    x = base.transpose(0, 3, 2, 1)[:, ::2]  # (6, 5, 4, 7), no unit stride anywhere
    w = rng.standard_normal((3, 5, 3, 2))
    dz_full = rng.standard_normal((6, 3, 4, 8)).transpose(0, 1, 3, 2)[:, :, ::2]
    copies = [a.copy() for a in (x, w, dz_full)]
    pairs = ((1, 1), (0, 1))
    y, cache = K.conv2d_forward(x, w, None, (1, 2), pairs, (1, 1), 1, layout=layout)
    np.testing.assert_allclose(y, R.conv2d(copies[0], w, None, (1, 2), pairs, (1, 1)), rtol=1e-12, atol=1e-12)
    dz = dz_full[:, :, : y.shape[2], : y.shape[3]]
    dx, dw, _ = K.conv2d_backward(dz, cache, layout=layout)
    rdx, rdw, _ = R.conv2d_backward(np.ascontiguousarray(dz), copies[0], w, None, (1, 2), pairs, (1, 1))
    np.testing.assert_allclose(dx, rdx, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dw, rdw, rtol=1e-11, atol=1e-11)
    for a, c in zip((x, w, dz_full), copies):
        assert np.array_equal(a, c)


def test_empty_batch():
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    y, cache = K.conv2d_forward(x, w, np.zeros(4, np.float32), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert y.shape == (0, 4, 5, 5) and y.dtype == np.float32
    dx, dw, db = K.conv2d_backward(y, cache)
    assert dx.shape == x.shape and not dw.any() and not db.any()


@pytest.mark.parametrize("plan", [pytest.param((2, 1 << 20, 1 << 16), id="1MiB")], indirect=True)
def test_work_buffers_stay_within_the_budget(plan):
    workspace.clear()
    rng = np.random.default_rng(5)
    for xs, ws, pairs in [((64, 16, 32, 32), (16, 16, 3, 3), ((1, 1), (1, 1))),
                          ((64, 64, 8, 8), (64, 64, 3, 3), ((1, 1), (1, 1))),
                          ((2, 8, 120, 120), (8, 8, 3, 3), ((1, 1), (1, 1)))]:  # one image over budget
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        y, cache = K.conv2d_forward(x, w, None, (1, 1), pairs, (1, 1), 1)
        K.conv2d_backward(y, cache)
        assert workspace.held_bytes() <= workspace.get_memory_budget()
    workspace.clear()
    assert workspace.held_bytes() == 0


# ------------------------------------------------------------------ index helpers
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(20, 4, 32, 32), (20, 2, 32, 32), (20, 3, 5, 7), (3, 4, 32, 32)])
def test_to_images_inner_staged_or_plain(shape, dtype):
    """The NCHW -> images-innermost copy, staged (image strides a multiple of 16 KiB, 16+ images)
    or plain, from a cropped (non-contiguous) source into a padded grid's interior."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((shape[0], shape[1], shape[2] + 2, shape[3] + 1)).astype(dtype)
    src = x[:, :, 1:-1, :-1] if shape[2] % 2 == 0 else x[:, :, 1:-1, 1:]
    src = np.ascontiguousarray(src) if shape[1] == 4 else src  # 4x32x32: 16 KiB (f32) apart
    grid = np.full((shape[1], shape[2] + 2, shape[3] + 2, shape[0]), 7.0, dtype)
    x0 = x.copy()
    K._to_images_inner(grid[:, 1:-1, 1:-1], src, np.dtype(dtype))
    np.testing.assert_array_equal(grid[:, 1:-1, 1:-1], src.transpose(1, 2, 3, 0))
    interior = np.zeros(grid.shape, bool)
    interior[:, 1:-1, 1:-1] = True
    assert (grid[~interior] == 7.0).all()  # nothing outside the destination written
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_images_inner_layout_on_big_batches(dtype, monkeypatch):
    """Chunks large enough for the staged copies (images 16 KiB apart) and for the bias added in
    source order (16+ images, an image stride no multiple of 4 KiB) match the reference."""
    rng = np.random.default_rng(13)
    c = 16384 // (32 * 32 * np.dtype(dtype).itemsize)
    names = []
    real = workspace.buffer
    monkeypatch.setattr(workspace, "buffer", lambda name, *a, **k: (names.append(name), real(name, *a, **k))[1])
    saved = parallel.get_num_threads()
    parallel.set_num_threads(1)  # whole batches in one chunk
    try:
        for xs, ws, pad in [((40, 1, 12, 12), (3, 1, 5, 5), 2), ((20, c, 32, 32), (c, c, 3, 3), 1)]:
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            b = rng.standard_normal(ws[0]).astype(dtype)
            pairs = ((pad, pad), (pad, pad))
            f64 = [a.astype(np.float64) for a in (x, w, b)]
            y, cache = K.conv2d_forward(x, w, b, (1, 1), pairs, (1, 1), 1, layout="batch_inner")
            tol = 1e-4 if dtype == np.float32 else 1e-11
            assert y.dtype == dtype
            np.testing.assert_allclose(y, R.conv2d(*f64, (1, 1), pairs, (1, 1)), rtol=tol, atol=tol)
            dz = rng.standard_normal(y.shape).astype(dtype)
            got = K.conv2d_backward(dz, cache, layout="batch_inner")
            ref = R.conv2d_backward(dz.astype(np.float64), *f64, (1, 1), pairs, (1, 1))
            for g, r in zip(got, ref):
                assert g.dtype == dtype
                np.testing.assert_allclose(g, r, rtol=tol * 10, atol=tol * 10)
    finally:
        parallel.set_num_threads(saved)
    assert "staged" in names


@pytest.mark.parametrize("offset,length,stride", [(-3, 7, 2), (2, 7, 2), (0, 5, 1), (-1, 4, 3), (6, 7, 1), (9, 7, 1)])
def test_tap_range(offset, length, stride):
    lo, hi = tap_range(offset, length, stride, 0, 8)
    inside = [p for p in range(8) if 0 <= p * stride + offset < length]
    assert list(range(lo, hi)) == inside


def test_im2col_chunk_row_ranges_tile_the_full_matrix():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 7, 6))
    kernel, stride, pairs, dil = (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2)
    full = np.empty((2, 3, 2, 3, 5, 5))
    im2col_chunk(x, full, kernel, stride, pairs, dil, (0, 3, 0, 5))
    part = np.empty((2, 3, 2, 1, 2, 5))
    im2col_chunk(x, part, kernel, stride, pairs, dil, (1, 2, 2, 4))
    np.testing.assert_array_equal(part, full[:, :, :, 1:2, 2:4])


def test_pad_into_cl_sets_every_border_element():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 5))
    buf = np.full((2, 7, 9, 3), np.nan)
    pad_into_cl(x, buf, (1, 2))
    expect = np.zeros((2, 7, 9, 3))
    expect[:, 1:5, 2:7] = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(buf, expect)


# ------------------------------------------------------------------ work buffers and chunk plans
def test_buffer_reuse_and_alignment():
    a = workspace.buffer("t_test", (10, 7), np.float32)
    a[...] = 1
    b = workspace.buffer("t_test", (5, 3), np.float64)
    assert b.ctypes.data % 64 == 0 and b.flags.c_contiguous
    assert np.shares_memory(a, b)
    c = workspace.buffer("t_test", (1000, 1000), np.float32)  # grows
    assert c.shape == (1000, 1000)
    seen = {}

    def other():
        seen["buf"] = workspace.buffer("t_test", (5, 3), np.float64)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert not np.shares_memory(seen["buf"], c)  # one set of buffers per thread


@pytest.mark.parametrize("contiguous", [True, False])
def test_strided_views_match_as_strided(contiguous):
    """workspace.strided: the view as_strided makes, from an offset, read-only unless asked."""
    base = np.arange(200.0).reshape(10, 20)
    a = base if contiguous else base[:, ::2]
    assert a.flags.c_contiguous == contiguous
    shape, strides, offset = (3, 4), (a.strides[0], 2 * a.itemsize), a.strides[0] + a.strides[1]
    got = workspace.strided(a, shape, strides, offset)
    expect = np.lib.stride_tricks.as_strided(a[1, 1:], shape, strides)
    np.testing.assert_array_equal(got, expect)
    assert np.shares_memory(got, a) and not got.flags.writeable
    w = workspace.strided(a, shape, strides, offset, writeable=True)
    w[0, 0] = -1.0
    assert a[1, 1] == -1.0
    with pytest.raises(ValueError):
        workspace.strided(base, (30,), (base.strides[1] * 10,))  # past the end of base


def test_zero_new_buffers_start_at_zero_and_keep_what_is_written():
    a = workspace.buffer("t_zero_new", (4, 5), np.float64, zero_new=True)
    np.testing.assert_array_equal(a, 0)
    a[1:3] = 7
    b = workspace.buffer("t_zero_new", (4, 5), np.float64, zero_new=True)
    assert np.shares_memory(a, b)
    np.testing.assert_array_equal(b[1:3], 7)
    np.testing.assert_array_equal(b[[0, 3]], 0)


@pytest.mark.parametrize("plan", PLANS[:1], indirect=True)
def test_images_inner_grids_keep_their_zero_border(plan):
    """Paddings whose images-innermost grids have one shape but their samples in different
    places, alternated on one thread: each grid's border is zeroed once, so a grid shared
    between them would leave samples of one in the border of the other."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = np.zeros(4)
    for _ in range(2):
        for pairs in (((1, 1), (1, 1)), ((2, 0), (0, 2)), ((0, 2), (2, 0))):
            y = K.conv2d_forward_chunked(x, w, None, (1, 1), pairs, (1, 1), layout="batch_inner")
            np.testing.assert_allclose(y, R.conv2d(x, w, b, (1, 1), pairs, (1, 1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,rows,per_row,threads,budget", [
    (128, 32, 4096, 2, 256 << 20), (7, 5, 10, 1, 256 << 20), (3, 50, 1000, 2, 12000), (1, 9, 10 ** 6, 1, 10 ** 6),
    (5, 1, 999, 3, 256 << 20),
])
def test_plan_chunks_covers_every_row_once(n, rows, per_row, threads, budget):
    saved = workspace.get_memory_budget()
    workspace.set_memory_budget(budget)
    try:
        chunks = workspace.plan_chunks(n, rows, per_row, threads)
    finally:
        workspace.set_memory_budget(saved)
    seen = np.zeros((n, rows), int)
    for n0, n1, r0, r1 in chunks:
        assert n1 > n0 and r1 > r0
        seen[n0:n1, r0:r1] += 1
        if (n1 - n0) * (r1 - r0) > 1:  # a chunk bigger than one row stays within the budget share
            assert (n1 - n0) * (r1 - r0) * per_row <= max(budget // threads, rows * per_row)
    assert (seen == 1).all()


def test_configuration_errors():
    with pytest.raises(ValueError):
        workspace.set_memory_budget(0)
    with pytest.raises(ValueError):
        workspace.set_chunk_target(-1)
    with pytest.raises(ValueError):
        parallel.set_num_threads(0)


# ------------------------------------------------------------------ the thread pool
def test_run_chunks_order_errors_and_nesting():
    saved = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        assert parallel.run_chunks(lambda i: i * i, range(20)) == [i * i for i in range(20)]
        inner = parallel.run_chunks(lambda i: (parallel.in_worker(), parallel.run_chunks(lambda j: j, range(3))),
                                    range(4))
        assert all(flag and res == [0, 1, 2] for flag, res in inner)

        def boom(i):
            if i == 5:
                raise KeyError("chunk 5")
            return i

        with pytest.raises(KeyError, match="chunk 5"):
            parallel.run_chunks(boom, range(10))
    finally:
        parallel.set_num_threads(saved)


def test_blas_threads_restored_after_a_parallel_region():
    info = parallel.blas_info()
    if not info:
        pytest.skip("threadpoolctl not installed")
    before = [d["num_threads"] for d in info]
    saved = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        inside = parallel.run_chunks(lambda i: [d["num_threads"] for d in parallel.blas_info()], range(4))
    finally:
        parallel.set_num_threads(saved)
    assert all(v == [1] * len(before) for v in inside)
    assert [d["num_threads"] for d in parallel.blas_info()] == before


# ------------------------------------------------------------------ batch norm, chunked
@pytest.fixture
def tiny_bn_chunks(monkeypatch):
    """One image per chunk, two threads: every reduction is a sum of chunk partials."""
    monkeypatch.setattr(KN, "_CHUNK_BYTES", 1)
    saved = parallel.get_num_threads()
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(saved)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (6, 2, 3, 5), (3, 2, 2, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", ["wb", "w", ""])
def test_chunked_batch_norm_matches_reference(shape, training, affine, tiny_bn_chunks):
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = rng.standard_normal(shape) * 2.5 + 4.0  # a large mean: the centred sums must be exact
    w = rng.standard_normal(c) if "w" in affine else None
    b = rng.standard_normal(c) if "b" in affine else None
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    dy = rng.standard_normal(shape)
    x0 = x.copy()
    y, cache = KN.batch_norm_forward(x, w, b, rm, rv, training=training, eps=1e-3)
    ry, _, _ = RN.batch_norm(x, rm.copy(), rv.copy(), w, b, training, 0.1, 1e-3)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    assert cache.saved is x and cache.saved_is_input
    dx, dw, db = KN.batch_norm_backward(dy, cache)
    rdx, rdw, rdb = RN.batch_norm_backward(dy, x, rm, rv, w, b, training, 1e-3)
    np.testing.assert_allclose(dx, rdx, rtol=1e-9, atol=1e-11)
    for k, r in ((dw, rdw), (db, rdb)):
        if r is None:
            assert k is None
        else:
            np.testing.assert_allclose(k, r, rtol=1e-10, atol=1e-10)
    assert np.array_equal(x, x0)


@pytest.mark.parametrize("row_min", [1, 150, 10 ** 6])
@pytest.mark.parametrize("strided", [False, True])
def test_batch_norm_rows_of_whole_images(row_min, strided, monkeypatch):
    """Per-channel rows spanning one image, two (7 images: three whole rows and one image left
    over) or more images than the batch holds; and a strided view as the input."""
    monkeypatch.setattr(KN, "_ROW_MIN", row_min)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((7, 3, 5, 10 if strided else 5)) * 2.0 + 3.0
    if strided:
        x = x[..., ::2]
        assert not x.flags.c_contiguous
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    dy = rng.standard_normal(x.shape)
    y, cache = KN.batch_norm_forward(x, w, b, training=True, eps=1e-3)
    ry, _, _ = RN.batch_norm(x, None, None, w, b, True, 0.1, 1e-3)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    got = KN.batch_norm_backward(dy, cache)
    ref = RN.batch_norm_backward(dy, x, None, None, w, b, True, 1e-3)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-11)
    _, cache = KN.batch_norm_forward(x, w, b, cache.mean, cache.var, training=False, eps=1e-3)
    np.testing.assert_allclose(KN.batch_norm_backward(dy, cache)[0], dy * (w / np.sqrt(cache.var + 1e-3))[:, None, None],
                               rtol=1e-12, atol=1e-12)


def test_batch_norm_cache_holding_xhat_still_works():
    """A cache built the old way (``saved`` = xhat, as SyncBatchNorm builds it)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 3, 5))
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    y, cache = KN.batch_norm_forward(x, w, b, training=True)
    xhat = (x - cache.mean[None, :, None]) * cache.inv_std[None, :, None]
    old = KN.BatchNormCache(True, xhat, cache.mean, cache.var, cache.inv_std, w, True, cache.count)
    dy = rng.standard_normal(x.shape)
    for a, r in zip(KN.batch_norm_backward(dy, old), KN.batch_norm_backward(dy, cache)):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ max pooling, chunked
POOL_CASES = [
    # x shape, kernel, stride, padding, dilation, ceil_mode
    ((9, 3, 8, 8), 2, 2, 0, 1, False),    # tiling windows: phases written directly
    ((9, 2, 9, 7), 2, 2, 0, 1, False),    # odd sizes: leftover rows get no gradient
    ((7, 3, 9, 9), 3, 2, 1, 1, False),    # overlapping windows with padding
    ((8, 2, 10, 9), 3, 2, 1, 2, True),    # dilation, ceil mode
    ((6, 4, 7), 2, 3, 0, 1, False),       # 1-D, stride above the kernel: some samples unread
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_chunked_max_pool_matches_reference(case, monkeypatch):
    from striate.kernels import pool as KP
    from striate.reference import pool as RP

    xs, k, s, p, d, ceil = POOL_CASES[case]
    nd = len(xs) - 2
    monkeypatch.setattr(KP, "row_chunks", lambda n, per, chunk_bytes=0: [slice(i, i + 1) for i in range(n)])
    saved = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        rng = np.random.default_rng(case)
        x = rng.permutation(np.prod(xs)).reshape(xs).astype(np.float64)  # tie-free
        x[0, 0].flat[0] = np.nan if case == 2 else x[0, 0].flat[0]  # a NaN takes the max
        y, cache = KP.max_pool_forward(x, k, s, p, d, ceil, nd=nd)
        ref_fwd = RP.max_pool1d if nd == 1 else RP.max_pool2d
        ref_bwd = RP.max_pool1d_backward if nd == 1 else RP.max_pool2d_backward
        np.testing.assert_array_equal(y, ref_fwd(x, k, s, p, d, ceil))
        dy = rng.standard_normal(y.shape)
        np.testing.assert_allclose(KP.max_pool_backward(dy, cache), ref_bwd(dy, x, k, s, p, d, ceil),
                                   rtol=1e-12, atol=1e-14)
    finally:
        parallel.set_num_threads(saved)


def test_map_blocks_elementwise():
    saved = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        x = np.random.default_rng(10).standard_normal(300_001).astype(np.float32)
        y = np.empty_like(x)
        parallel.map_blocks(lambda o, a: np.maximum(a, 0, out=o), y, x, block_bytes=4096)
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        with pytest.raises(ValueError, match="one shape"):
            parallel.map_blocks(lambda o, a: None, y, x[:10])
    finally:
        parallel.set_num_threads(saved)


@pytest.mark.parametrize("shape", [((40, 30), (30, 20)), ((3, 4), (4, 500)), ((0, 5), (5, 3)), ((4, 0), (0, 3)),
                                   ((6,), (6, 2)), ((2, 3, 4), (4, 5))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_matches_numpy_split_or_not(shape, dtype, monkeypatch):
    """parallel.matmul equals np.matmul, cut into row or column blocks or not, any dtype."""
    monkeypatch.setattr(parallel, "_SPLIT_MACS", 1)  # split whatever can be split
    rng = np.random.default_rng(11)
    a = rng.standard_normal(shape[0]).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    a0, b0 = a.copy(), b.copy()
    saved = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        seen = []
        real = np.matmul
        monkeypatch.setattr(np, "matmul", lambda *x, **k: (seen.append(x[0].shape), real(*x, **k))[1])
        y = parallel.matmul(a, b)
    finally:
        parallel.set_num_threads(saved)
    ref = real(a, b)
    assert y.shape == ref.shape and y.dtype == ref.dtype
    np.testing.assert_allclose(y, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    if a.ndim == b.ndim == 2 and a.shape[0] * b.shape[1] * a.shape[1] > 0:
        assert len(seen) == 2  # one block per thread


def test_matmul_holds_blas_at_one_thread(monkeypatch):
    """Products never run on the BLAS library's own threads (their busy-waiting after each
    shared product would take a core from the chunked kernels); the limit is restored after."""
    info = parallel.blas_info()
    if not info:
        pytest.skip("threadpoolctl not installed")
    before = [d["num_threads"] for d in info]
    seen = []
    real = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *x, **k: (seen.append([d["num_threads"] for d in parallel.blas_info()]),
                                                       real(*x, **k))[1])
    for shapes in [((3, 4), (4, 2)), ((300, 300), (300, 300)), ((2, 3, 4), (4, 5))]:
        parallel.matmul(np.ones(shapes[0]), np.ones(shapes[1]))
    assert len(seen) >= 3 and all(v == [1] * len(before) for v in seen)
    assert [d["num_threads"] for d in parallel.blas_info()] == before


def test_run_chunks_carries_the_callers_error_state():
    saved = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        with np.errstate(over="raise", divide="ignore"):
            states = parallel.run_chunks(lambda i: np.geterr(), range(6))
            quiet = parallel.run_chunks(lambda i: np.geterr(), range(6), errstate={"over": "ignore"})
        assert all(s["over"] == "raise" and s["divide"] == "ignore" for s in states)
        assert all(s["over"] == "ignore" and s["divide"] == "ignore" for s in quiet)
    finally:
        parallel.set_num_threads(saved)


# ------------------------------------------------------------------ recycled outputs
def _pooled():
    return [b for blocks in workspace._out["blocks"].values() for b in blocks]


def test_output_pool_reuses_only_unreferenced_memory(monkeypatch):
    monkeypatch.setitem(workspace._out, "cap", 8 << 20)
    monkeypatch.setitem(workspace._out, "blocks", {})
    shape = (4, 16, 64, 64)  # 1 MiB of float32: pooled
    a = workspace.output(shape, np.float32)
    assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
    a[...] = 1.0
    b = workspace.output(shape, np.float32)  # a is alive: fresh memory
    assert not np.shares_memory(a, b)
    view = a[1:, ::2]
    del a
    c = workspace.output(shape, np.float32)  # a's view keeps a's memory taken
    assert not np.shares_memory(view, c) and not np.shares_memory(b, c)
    assert np.all(view == 1.0)  # untouched
    base = view.base
    del view, base
    d = workspace.output((2, 16, 64, 64), np.float64)  # a's bytes again, as another dtype
    assert d.dtype == np.float64 and d.shape == (2, 16, 64, 64) and len(_pooled()) == 3
    # a tensor wrapping an output keeps it alive too
    t = Tensor._wrap(workspace.output((2, 1 << 17), np.float32))
    t.data[...] = 3.0
    for _ in range(4):
        assert not np.shares_memory(workspace.output((2, 1 << 17), np.float32), t.data)
    assert np.all(t.data == 3.0)


def test_output_pool_steady_state_allocates_nothing(monkeypatch):
    monkeypatch.setitem(workspace._out, "cap", 64 << 20)
    monkeypatch.setitem(workspace._out, "blocks", {})
    sizes = [(128, 16, 32, 32), (128, 32, 16, 16), (3, 5, 7, 5003), (128, 64, 8, 8)]  # 8, 4, 4.2, 2 MiB

    def step():
        kept = [workspace.output(s, np.float32) for s in sizes]  # "activations", alive together
        for a in kept:
            a[...] = 1
        grads = [workspace.output(s, np.float32) for s in sizes]
        return kept, grads

    step()
    blocks = [id(b) for b in _pooled()]
    for _ in range(3):
        kept, grads = step()
        assert all(not np.shares_memory(a, g) for a in kept for g in grads)
        del kept, grads
    assert [id(b) for b in _pooled()] == blocks  # every output after the first step reused a block


def test_output_pool_limits(monkeypatch):
    monkeypatch.setitem(workspace._out, "blocks", {})
    monkeypatch.setitem(workspace._out, "cap", 2 << 20)
    small = workspace.output((10,), np.float32)  # under 256 KiB: plain np.empty
    assert small.base is None and _pooled() == []
    keep = [workspace.output((1 << 18,), np.float32) for _ in range(3)]  # 1 MiB each, cap 2 MiB
    assert len(_pooled()) == 2 and keep[2].base is None  # over the cap: plain
    del keep[:2]
    # a free block up to twice the size serves a smaller output (its first bytes)
    half = workspace.output((3 << 16,), np.float32)  # 768 KiB from a free 1 MiB block
    assert half.base is not None and half.base.nbytes == 1 << 20 and workspace.pooled_bytes() == 2 << 20
    other = workspace.output((1 << 16,), np.float32)  # 256 KiB: the other 1 MiB block is 4x too big
    assert other.base is not None and other.base.nbytes == 1 << 18  # evicted it to fit under the cap
    assert workspace.pooled_bytes() <= 2 << 20
    workspace.clear()
    assert _pooled() == [] and workspace.pooled_bytes() == 0
    monkeypatch.setitem(workspace._out, "cap", 0)
    assert workspace.output((1 << 18,), np.float32).base is None


def test_output_pool_keeps_little_free_memory(monkeypatch):
    monkeypatch.setitem(workspace._out, "blocks", {})
    monkeypatch.setitem(workspace._out, "cap", 64 << 20)
    monkeypatch.setattr(workspace, "_KEEP_FREE", 2 << 20)
    outs = [workspace.output((1 << 18,), np.float32) for _ in range(6)]  # 6 x 1 MiB, in use
    assert workspace.pooled_bytes() == 6 << 20
    del outs[:5]  # 5 MiB free
    new = workspace.output((1 << 20,), np.float32)  # 4 MiB: fits no free block
    # the free blocks beyond 2 MiB went back to the system before the new one was allocated
    free = [b for b in _pooled() if not (np.shares_memory(b, outs[0]) or np.shares_memory(b, new))]
    assert sum(b.nbytes for b in free) <= 2 << 20 and any(np.shares_memory(b, new) for b in _pooled())


def test_output_pool_env(monkeypatch):
    monkeypatch.setenv("STRIATE_OUTPUT_POOL_MB", "0")
    assert workspace._pool_cap() == 0
    monkeypatch.setenv("STRIATE_OUTPUT_POOL_MB", "-1")
    with pytest.raises(ValueError, match="STRIATE_OUTPUT_POOL_MB"):
        workspace._pool_cap()
    monkeypatch.setenv("STRIATE_OUTPUT_POOL_MB", "lots")
    with pytest.raises(ValueError, match="STRIATE_OUTPUT_POOL_MB"):
        workspace._pool_cap()
