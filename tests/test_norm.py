"""Family tests for batch normalisation, dropout and striate's default generator.

* 200 random batch_norm configurations (2-, 3-, 4-D; training/eval; affine or not; tracked or
  untracked statistics; momentum and eps drawn at random) against PyTorch in float64 and
  float32: output, gradients of input/weight/bias and the updated running statistics;
* fast kernels == naive references (float64, tight) on random configurations;
* running statistics: updated in place exactly once per forward (Tensor or ndarray buffers),
  never on backward, never in eval, never when an error is raised; the input is never modified;
* dropout / dropout2d: fraction kept ~ 1 - p and mean preserved in expectation, whole channels
  for dropout2d, same seed -> same mask, the mask saved for backward, inplace=True leaves the
  input alone, p=0 / eval is the identity;
* striate.random: manual_seed == numpy default_rng(seed), get/set_rng_state resumes exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import striate
import striate.functional as F
from harness import assert_close_torch, needs_torch, torch
from striate import Tensor
from striate import random as srandom
from striate.kernels import norm as K
from striate.kernels.shapes import ShapeError
from striate.reference import norm as R


# --------------------------------------------------------------------------- random configurations
def _bn_config(seed):
    """One random batch_norm configuration, drawn from its own seeded generator."""
    rng = np.random.default_rng(10_000 + seed)
    ndim = int(rng.integers(2, 5))
    training = bool(rng.random() < 0.6)
    N = int(rng.integers(1, 5))
    C = int(rng.integers(1, 6))
    spatial = tuple(int(s) for s in rng.integers(1, 6, size=ndim - 2))
    if training and N * int(np.prod(spatial)) < 2:
        N = 2
    shape = (N, C) + spatial
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0) + rng.uniform(-2.0, 2.0)
    affine = ["wb", "w", "b", ""][int(rng.integers(0, 4))]
    weight = rng.standard_normal(C) if "w" in affine else None
    bias = rng.standard_normal(C) if "b" in affine else None
    track = (not training) or bool(rng.random() < 0.75)
    rm = rng.standard_normal(C) * 0.5 if track else None
    rv = rng.uniform(0.2, 2.0, C) if track else None
    momentum = float(rng.choice([0.1, 0.0, 1.0, rng.uniform(0.0, 1.0)]))
    eps = float(rng.choice([1e-5, 1e-3, 0.1, 10 ** rng.uniform(-6, -1)]))
    dy = rng.standard_normal(shape)
    return dict(x=x, rm=rm, rv=rv, weight=weight, bias=bias, training=training,
                momentum=momentum, eps=eps, dy=dy)


def _run_striate_bn(cfg, dtype):
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    x = Tensor(cast(cfg["x"]), requires_grad=True)
    w = None if cfg["weight"] is None else Tensor(cast(cfg["weight"]), requires_grad=True)
    b = None if cfg["bias"] is None else Tensor(cast(cfg["bias"]), requires_grad=True)
    rm, rv = cast(cfg["rm"]), cast(cfg["rv"])
    y = F.batch_norm(x, rm, rv, w, b, training=cfg["training"], momentum=cfg["momentum"], eps=cfg["eps"])
    y.backward(cfg["dy"].astype(dtype))
    grads = [x.grad.data] + [t.grad.data for t in (w, b) if t is not None]
    return y.data, grads, rm, rv


def _run_torch_bn(cfg, dtype):
    cast = lambda a: None if a is None else torch.from_numpy(a.astype(dtype))  # noqa: E731
    x = cast(cfg["x"]).requires_grad_(True)
    w = None if cfg["weight"] is None else cast(cfg["weight"]).requires_grad_(True)
    b = None if cfg["bias"] is None else cast(cfg["bias"]).requires_grad_(True)
    rm, rv = cast(cfg["rm"]), cast(cfg["rv"])
    y = torch.nn.functional.batch_norm(
        x, rm, rv, w, b, training=cfg["training"], momentum=cfg["momentum"], eps=cfg["eps"])
    y.backward(cast(cfg["dy"]))
    grads = [x.grad.numpy()] + [t.grad.numpy() for t in (w, b) if t is not None]
    to_np = lambda t: None if t is None else t.numpy()  # noqa: E731
    return y.detach().numpy(), grads, to_np(rm), to_np(rv)


@needs_torch
@pytest.mark.parametrize("seed", range(200))
def test_batch_norm_random_configs_match_torch(seed):
    cfg = _bn_config(seed)
    M = cfg["x"].size // cfg["x"].shape[1]
    for dtype in (np.float64, np.float32):
        y, grads, rm, rv = _run_striate_bn(cfg, dtype)
        ty, tgrads, trm, trv = _run_torch_bn(cfg, dtype)
        assert y.dtype == dtype and all(g.dtype == dtype for g in grads)
        assert_close_torch(y, ty, dtype, M, f"config {seed} output")
        for k, (g, tg) in enumerate(zip(grads, tgrads)):
            assert_close_torch(g, tg, dtype, M, f"config {seed} grad {['input', 'weight/bias', 'bias'][k]}")
        if rm is not None:
            assert_close_torch(rm, trm, dtype, M, f"config {seed} running_mean")
            assert_close_torch(rv, trv, dtype, M, f"config {seed} running_var")


@pytest.mark.parametrize("seed", range(0, 200, 8))
def test_batch_norm_kernels_match_reference(seed):
    cfg = _bn_config(seed)
    x, rm, rv, w, b = cfg["x"], cfg["rm"], cfg["rv"], cfg["weight"], cfg["bias"]
    training, momentum, eps = cfg["training"], cfg["momentum"], cfg["eps"]
    y, cache = K.batch_norm_forward(x, w, b, rm, rv, training=training, eps=eps)
    ry, rrm, rrv = R.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    if training and rm is not None:
        krm, krv = rm.copy(), rv.copy()
        K.batch_norm_update_running_stats(krm, krv, cache, momentum)
        np.testing.assert_allclose(krm, rrm, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(krv, rrv, rtol=1e-12, atol=1e-13)
    dx, dw, db = K.batch_norm_backward(cfg["dy"], cache)
    rdx, rdw, rdb = R.batch_norm_backward(cfg["dy"], x, rm, rv, w, b, training, eps)
    np.testing.assert_allclose(dx, rdx, rtol=1e-9, atol=1e-11)
    for k, r in ((dw, rdw), (db, rdb)):
        if r is None:
            assert k is None
        else:
            np.testing.assert_allclose(k, r, rtol=1e-11, atol=1e-11)


# --------------------------------------------------------------------------- running statistics
def _bn_inputs(shape=(4, 3, 2, 2), seed=0):
    rng = np.random.default_rng(seed)
    C = shape[1]
    return rng.standard_normal(shape), rng.standard_normal(C), rng.uniform(0.5, 1.5, C)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_running_stats_updated_in_place_once_per_forward(as_tensor):
    x, rm0, rv0 = _bn_inputs()
    rm_buf, rv_buf = rm0.copy(), rv0.copy()
    rm = Tensor._wrap(rm_buf) if as_tensor else rm_buf
    rv = Tensor._wrap(rv_buf) if as_tensor else rv_buf
    xt = Tensor(x, requires_grad=True)
    x_before = x.copy()
    y = F.batch_norm(xt, rm, rv, training=True, momentum=0.25)
    # the very same buffers were written (in place), once
    M = x.size // x.shape[1]
    mean = x.mean(axis=(0, 2, 3))
    var_u = x.var(axis=(0, 2, 3)) * M / (M - 1)
    np.testing.assert_allclose(rm_buf, 0.75 * rm0 + 0.25 * mean, rtol=1e-13)
    np.testing.assert_allclose(rv_buf, 0.75 * rv0 + 0.25 * var_u, rtol=1e-13)
    if as_tensor:
        assert rm.data is rm_buf and rv.data is rv_buf
    after_forward = rm_buf.copy(), rv_buf.copy()
    y.sum().backward()
    np.testing.assert_array_equal(rm_buf, after_forward[0])  # backward never touches them
    np.testing.assert_array_equal(rv_buf, after_forward[1])
    np.testing.assert_array_equal(x, x_before)  # input never modified
    # a second forward folds in one more batch
    F.batch_norm(xt, rm, rv, training=True, momentum=0.25)
    np.testing.assert_allclose(rm_buf, 0.75 * after_forward[0] + 0.25 * mean, rtol=1e-13)


@needs_torch
def test_running_stats_over_several_steps_match_torch():
    rng = np.random.default_rng(5)
    rm, rv = np.zeros(4), np.ones(4)
    trm, trv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    for step in range(5):
        x = rng.standard_normal((3, 4, 3)) * (step + 1) + step
        with striate.no_grad():  # the update happens in no_grad too, as in torch
            F.batch_norm(Tensor(x), rm, rv, training=True, momentum=0.3)
        torch.nn.functional.batch_norm(torch.from_numpy(x), trm, trv, training=True, momentum=0.3)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12, atol=1e-14)


def test_eval_mode_leaves_running_stats_alone_and_uses_them():
    x, rm, rv = _bn_inputs((3, 2, 4))
    rm0, rv0 = rm.copy(), rv.copy()
    y = F.batch_norm(Tensor(x), rm, rv, training=False)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    expect = (x - rm[None, :, None]) / np.sqrt(rv[None, :, None] + 1e-5)
    np.testing.assert_allclose(y.data, expect, rtol=1e-12, atol=1e-12)


def test_training_without_running_stats_uses_batch_stats():
    x, _, _ = _bn_inputs((5, 3))
    y = F.batch_norm(Tensor(x), None, None, training=True)
    np.testing.assert_allclose(y.data.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.data.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        (dict(weight=np.ones(4)), ShapeError),
        (dict(bias=np.ones((3, 1))), ShapeError),
        (dict(weight=np.ones(3, dtype=np.float32)), TypeError),
        (dict(momentum=None), NotImplementedError),
    ],
)
def test_errors_leave_running_stats_untouched(kwargs, exc):
    x, rm, rv = _bn_inputs()
    rm0, rv0 = rm.copy(), rv.copy()
    with pytest.raises(exc):
        F.batch_norm(Tensor(x), rm, rv, training=True, **{"momentum": 0.1, **kwargs})
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)


def test_read_only_running_stats_refused_before_anything_changes():
    x, rm, rv = _bn_inputs()
    rv0 = rv.copy()
    rm.flags.writeable = False
    with pytest.raises(ValueError, match=r"running_mean \(3,\) is read-only"):
        F.batch_norm(Tensor(x), rm, rv, training=True)
    np.testing.assert_array_equal(rv, rv0)


def test_batch_norm_messages_name_shapes():
    x, rm, rv = _bn_inputs((2, 3, 4))
    with pytest.raises(ShapeError, match=r"running_var has shape \(4,\) but must be \(3,\).*\(2, 3, 4\)"):
        F.batch_norm(Tensor(x), rm, np.ones(4), training=False)
    msg = r"Expected more than 1 value per channel when training, got input size \(1, 3, 1\)"
    with pytest.raises(ValueError, match=msg):
        F.batch_norm(Tensor(np.zeros((1, 3, 1))), rm, rv, training=True)
    # one value per channel is fine in eval mode
    F.batch_norm(Tensor(np.zeros((1, 3, 1))), rm, rv, training=False)


def test_batch_norm_is_exported():
    assert F.batch_norm is striate.nn.functional.batch_norm
    assert {"batch_norm", "dropout", "dropout2d"} <= set(F.__all__)


# --------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_statistics(p):
    n = 200_000
    x = np.full(n, 2.0)
    y = F.dropout(Tensor(x), p, generator=np.random.default_rng(123)).data
    kept = y != 0
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma, "fraction kept should be ~ 1 - p"
    np.testing.assert_allclose(y[kept], 2.0 / (1 - p), rtol=1e-15)
    # mean preserved in expectation: E[y] = x
    assert abs(y.mean() - 2.0) < 5 * 2.0 / (1 - p) * sigma


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout2d_statistics_and_whole_channels(p):
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 2.0, (64, 32, 3, 4))  # no zero inputs: y == 0 means dropped
    y = F.dropout2d(Tensor(x), p, generator=np.random.default_rng(9)).data
    dropped = np.all(y == 0, axis=(2, 3))
    kept = np.all(y != 0, axis=(2, 3))
    assert np.all(dropped | kept), "every channel is zeroed or kept as a whole"
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    sigma = np.sqrt(p * (1 - p) / dropped.size)
    assert abs(dropped.mean() - p) < 5 * sigma


def test_dropout2d_unbatched_input_drops_channels():
    x = np.random.default_rng(1).uniform(1.0, 2.0, (40, 3, 3))
    y = F.dropout2d(Tensor(x), 0.5, generator=np.random.default_rng(2)).data
    per_channel = np.all(y == 0, axis=(1, 2))
    assert np.all(per_channel | np.all(y != 0, axis=(1, 2)))
    assert 0 < per_channel.sum() < 40


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_same_seed_same_mask_and_dtype_independent(fn):
    x = np.random.default_rng(0).standard_normal((4, 5, 3, 3))
    a = fn(Tensor(x), 0.4, generator=np.random.default_rng(77)).data
    b = fn(Tensor(x), 0.4, generator=np.random.default_rng(77)).data
    c = fn(Tensor(x), 0.4, generator=np.random.default_rng(78)).data
    f32 = fn(Tensor(x.astype(np.float32)), 0.4, generator=np.random.default_rng(77)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a == 0, c == 0)
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32 == 0, a == 0)


def test_dropout_gradient_uses_saved_mask():
    x = Tensor(np.random.default_rng(3).uniform(1.0, 2.0, (6, 7)), requires_grad=True)
    y = F.dropout(x, 0.3, generator=np.random.default_rng(4))
    y.backward(np.ones((6, 7)))
    kept = y.data != 0
    np.testing.assert_allclose(x.grad.data, np.where(kept, 1 / 0.7, 0.0), rtol=1e-15)


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_inplace_never_mutates_input(fn):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    before = x.copy()
    t = Tensor._wrap(x)
    y = fn(t, 0.5, training=True, inplace=True, generator=np.random.default_rng(0))
    np.testing.assert_array_equal(x, before)
    assert y is not t and not np.shares_memory(y.data, x)


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_identity_when_p_zero_or_eval(fn):
    t = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)))
    state = srandom.get_rng_state()
    assert fn(t, 0.0) is t
    assert fn(t, 0.7, training=False) is t
    assert srandom.get_rng_state() == state  # no random numbers drawn


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_dropout_argument_errors(fn):
    x = Tensor(np.zeros((2, 3, 4, 4)))
    for p in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
            fn(x, p)
    with pytest.raises(TypeError, match="generator"):
        fn(x, 0.5, generator=np.random.RandomState(0))


def test_dropout_p_one_gives_zeros_and_zero_grad():
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.data, 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, 0.0)


# --------------------------------------------------------------------------- default generator
@pytest.fixture
def restore_rng():
    state = srandom.get_rng_state()
    seed = srandom.initial_seed()
    yield
    srandom.manual_seed(seed)
    srandom.set_rng_state(state)


def test_manual_seed_matches_numpy_default_rng(restore_rng):
    g = srandom.default_generator()
    assert srandom.manual_seed(42) is g
    assert srandom.initial_seed() == 42
    np.testing.assert_array_equal(g.random(5), np.random.default_rng(42).random(5))


def test_default_generator_used_when_none(restore_rng):
    x = Tensor(np.ones((8, 9)))
    srandom.manual_seed(3)
    a = F.dropout(x, 0.5).data
    b = F.dropout(x, 0.5, generator=np.random.default_rng(3)).data
    np.testing.assert_array_equal(a, b)
    srandom.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, a)


def test_rng_state_round_trip_resumes_exactly(restore_rng):
    srandom.manual_seed(11)
    x = Tensor(np.ones((5, 6)))
    F.dropout(x, 0.5)
    state = srandom.get_rng_state()
    assert isinstance(state, dict) and state["bit_generator"] == "PCG64"
    first = [F.dropout(x, 0.5).data for _ in range(3)]
    srandom.manual_seed(999)
    srandom.set_rng_state(state)
    state["state"]["state"] = 0  # set_rng_state copied it: editing the dict changes nothing
    again = [F.dropout(x, 0.5).data for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_rng_state_errors(restore_rng):
    with pytest.raises(TypeError):
        srandom.set_rng_state([1, 2])
    with pytest.raises(ValueError, match="MT19937"):
        srandom.set_rng_state(np.random.MT19937(0).state)
    with pytest.raises(TypeError):
        srandom.manual_seed(1.5)
    with pytest.raises(ValueError):
        srandom.manual_seed(-1)
