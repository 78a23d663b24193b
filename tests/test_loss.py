"""Loss family: random configurations vs PyTorch, kernels vs naive references, stability, API details.

The generic checks (reference, gradcheck, torch parity on fixed samples, contract, error cases
with their messages) run from ``tests/opinfo/loss.py`` through ``tests/test_ops_generic.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import striate
import striate.functional as F
from harness import assert_close_torch, needs_torch, torch
from striate import Tensor
from striate.kernels import loss as K
from striate.kernels.shapes import ShapeError
from striate.reference import loss as R

OPS = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
       "binary_cross_entropy", "binary_cross_entropy_with_logits")


# --------------------------------------------------------------------------- random configurations
class Case:
    """One call: ``F.<op>(input, target, **kw)`` with ``diff`` naming the arrays that need grads.

    ``kw`` may hold arrays (weight, pos_weight); ``fan_in`` sets the float32 tolerance.
    """

    def __init__(self, op, x, t, kw, diff, fan_in):
        self.op, self.x, self.t, self.kw, self.diff, self.fan_in = op, x, t, kw, diff, fan_in

    def __repr__(self):
        kw = {k: (f"array{v.shape}" if isinstance(v, np.ndarray) else v) for k, v in self.kw.items()}
        return f"{self.op}(input{self.x.shape}, target{self.t.shape} {self.t.dtype}, {kw}, grads={self.diff})"


def _class_case(rng, op):
    rank = int(rng.choice([1, 2, 2, 3, 4]))
    C = int(rng.integers(1, 7))
    N = int(rng.integers(1, 5))
    spatial = tuple(int(s) for s in rng.integers(1, 4, size=max(rank - 2, 0)))
    shape = (C,) if rank == 1 else (N, C) + spatial
    scale = float(rng.choice([1.0, 1.0, 10.0, 100.0]))
    x = scale * rng.standard_normal(shape)
    kw = {"reduction": str(rng.choice(["none", "mean", "sum"]))}
    diff = ["input"]
    probs = op == "cross_entropy" and rng.random() < 0.35
    if op == "nll_loss":
        # genuine log-probabilities most of the time; nll_loss accepts any values
        if rng.random() < 0.7:
            axis = 0 if rank == 1 else 1
            x = x - x.max(axis=axis, keepdims=True)
            x = x - np.log(np.exp(x).sum(axis=axis, keepdims=True))
    if op == "cross_entropy" and rng.random() < 0.5:
        kw["label_smoothing"] = float(rng.choice([0.0, 1.0, rng.uniform(0, 1)]))
    if rng.random() < 0.5:
        kw["weight"] = rng.uniform(0.1, 2.0, C)
        if probs and rng.random() < 0.5:
            diff.append("weight")
    if probs:
        t = rng.random(shape)
        if rng.random() < 0.7:
            t /= t.sum(axis=0 if rank == 1 else 1, keepdims=True)
        if rng.random() < 0.7:
            diff.append("target")
        if rng.random() < 0.3:
            kw["ignore_index"] = int(rng.integers(-5, 0))  # negative ignore_index is allowed
    else:
        pos = () if rank == 1 else (N,) + spatial
        t = rng.integers(0, C, size=pos).astype(np.int64)
        if rng.random() < 0.6:
            ignore = int(rng.choice([-100, -1, int(rng.integers(0, C))]))
            kw["ignore_index"] = ignore
            if t.ndim:
                mask = rng.random(t.shape) < 0.3
                t[mask] = ignore
                # keep one counted position so that 'mean' is not 0/0 (NaN is tested on its own)
                if ignore in range(C):
                    t.flat[0] = (ignore + 1) % C if C > 1 else ignore
                else:
                    t.flat[0] = int(rng.integers(0, C))
            if C == 1 and ignore == 0:
                kw["ignore_index"] = -100
            if t.ndim == 0 and t == kw["ignore_index"]:
                kw["ignore_index"] = -100
    return Case(op, x, t, kw, diff, fan_in=x.size)


def _elementwise_case(rng, op):
    rank = int(rng.integers(0, 5))
    shape = tuple(int(s) for s in rng.integers(1, 5, size=rank))
    kw = {"reduction": str(rng.choice(["none", "mean", "sum"]))}
    diff = ["input", "target"] if rng.random() < 0.7 else ["input"]
    if op == "binary_cross_entropy":
        x = rng.uniform(0.01, 0.99, shape)
        t = rng.random(shape) if rng.random() < 0.6 else (rng.random(shape) < 0.5).astype(np.float64)
        if rng.random() < 0.5:
            kw["weight"] = rng.uniform(0.1, 2.0, shape[rng.integers(0, rank + 1):])
    elif op == "binary_cross_entropy_with_logits":
        x = float(rng.choice([1.0, 5.0, 50.0])) * rng.standard_normal(shape)
        t = rng.random(shape) if rng.random() < 0.6 else (rng.random(shape) < 0.5).astype(np.float64)
        for name in ("weight", "pos_weight"):
            if rng.random() < 0.5:
                sub = shape[rng.integers(0, rank + 1):]
                kw[name] = rng.uniform(0.1, 3.0, sub)
    else:
        x = rng.standard_normal(shape)
        # keep |x - t| away from the kinks (0 for l1/smooth_l1, +-beta/delta) for float32 agreement
        d = rng.standard_normal(shape)
        d = np.sign(d) * (np.abs(d) + 0.01)
        t = x - d
        if op in ("mse_loss", "l1_loss", "huber_loss") and rng.random() < 0.4:
            kw["weight"] = rng.uniform(0.1, 2.0, shape)
            if rng.random() < 0.6:
                diff.append("weight")
        if op == "smooth_l1_loss":
            kw["beta"] = float(rng.choice([0.0, 1.0, 0.37, 2.5]))
        if op == "huber_loss":
            kw["delta"] = float(rng.choice([1.0, 0.37, 2.5]))
    return Case(op, np.asarray(x), np.asarray(t), kw, diff, fan_in=max(1, int(np.size(x))))


def random_case(rng, op=None):
    if op is None:  # cross_entropy has the most options: give it about a third of the draws
        op = "cross_entropy" if rng.random() < 0.3 else OPS[int(rng.integers(len(OPS)))]
    if op in ("cross_entropy", "nll_loss"):
        return _class_case(rng, op)
    return _elementwise_case(rng, op)


def _cases(n, seed):
    rng = np.random.default_rng(seed)
    # every op gets its share, then random picks
    return [random_case(rng, OPS[k % len(OPS)] if k < 4 * len(OPS) else None) for k in range(n)]


TORCH_CASES = _cases(280, 2024)
REF_CASES = _cases(80, 7)


def _cast(a, dtype):
    return a.astype(dtype) if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating) else a


def _run_striate(case, dtype, dy):
    arrays = {"input": _cast(case.x, dtype), "target": _cast(case.t, dtype)}
    arrays.update({k: _cast(v, dtype) for k, v in case.kw.items() if isinstance(v, np.ndarray)})
    tensors = {k: Tensor(v, requires_grad=k in case.diff) for k, v in arrays.items()}
    kw = {k: (tensors[k] if isinstance(v, np.ndarray) else v) for k, v in case.kw.items()}
    out = getattr(F, case.op)(tensors["input"], tensors["target"], **kw)
    out.backward(dy.astype(dtype))
    return out.data, {k: tensors[k].grad.data for k in case.diff}


def _run_torch(case, dtype, dy):
    arrays = {"input": _cast(case.x, dtype), "target": _cast(case.t, dtype)}
    arrays.update({k: _cast(v, dtype) for k, v in case.kw.items() if isinstance(v, np.ndarray)})
    tensors = {k: torch.from_numpy(np.array(v)).requires_grad_(k in case.diff) for k, v in arrays.items()}
    kw = {k: (tensors[k] if isinstance(v, np.ndarray) else v) for k, v in case.kw.items()}
    out = getattr(torch.nn.functional, case.op)(tensors["input"], tensors["target"], **kw)
    out.backward(torch.from_numpy(dy.astype(dtype)))
    return out.detach().numpy(), {k: tensors[k].grad.numpy() for k in case.diff}


def _dy(case, seed):
    with striate.no_grad():
        kw = {k: (Tensor(v) if isinstance(v, np.ndarray) else v) for k, v in case.kw.items()}
        out = getattr(F, case.op)(Tensor(case.x), Tensor(case.t), **kw)
    return np.random.default_rng(seed).standard_normal(out.shape)


def test_enough_configurations_per_op():
    assert len(TORCH_CASES) >= 200
    for op in OPS:
        assert sum(c.op == op for c in TORCH_CASES) >= 8, op


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", range(len(TORCH_CASES)))
def test_random_config_matches_torch(k, dtype):
    case = TORCH_CASES[k]
    dy = _dy(case, k)
    out, grads = _run_striate(case, dtype, dy)
    tout, tgrads = _run_torch(case, dtype, dy)
    assert out.dtype == dtype
    assert_close_torch(out, tout, dtype, case.fan_in, f"{case} output")
    for name in case.diff:
        assert grads[name].dtype == dtype
        assert_close_torch(grads[name], tgrads[name], dtype, case.fan_in, f"{case} grad of {name}")


_REF_GRAD_ORDER = {"input": 0, "target": 1, "weight": 2}


@pytest.mark.parametrize("k", range(len(REF_CASES)))
def test_kernel_matches_naive_reference(k):
    """Vectorised kernels == per-sample/per-pixel loops, float64, tight."""
    case = REF_CASES[k]
    dy = _dy(case, k)
    out, grads = _run_striate(case, np.float64, dy)
    ref = getattr(R, case.op)(case.x, case.t, **case.kw)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(ref).max(initial=0)))
    rgrads = getattr(R, case.op + "_backward")(dy, case.x, case.t, **case.kw)
    for name in case.diff:
        r = rgrads[_REF_GRAD_ORDER[name]]
        assert r is not None, f"{case}: reference has no gradient for {name}"
        np.testing.assert_allclose(grads[name], r, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(r).max(initial=0)),
                                   err_msg=f"{case} grad of {name}")


# --------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_large_logits_finite(dtype, smoothing):
    z = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [3e4, 3e4, -3e4]], dtype=dtype)
    y = np.array([2, 1, 0])
    x = Tensor(z, requires_grad=True)
    loss = F.cross_entropy(x, y, label_smoothing=smoothing)
    loss.backward()
    assert np.isfinite(loss.data) and np.isfinite(x.grad.data).all()
    assert loss.dtype == dtype and x.grad.dtype == dtype
    if smoothing == 0:
        # -log softmax: 2e4 for the first row, 0 for the second, log 2 for the tie
        np.testing.assert_allclose(loss.item(), (2e4 + 0 + np.log(2)) / 3, rtol=1e-6)
    if torch is not None:
        xt = torch.tensor(z, requires_grad=True)
        lt = torch.nn.functional.cross_entropy(xt, torch.tensor(y), label_smoothing=smoothing)
        lt.backward()
        assert_close_torch(loss.data, lt.detach().numpy(), dtype, 3, "loss")
        assert_close_torch(x.grad.data, xt.grad.numpy(), dtype, 3, "grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_other_modes_finite(dtype):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((2, 4, 3, 3)) * 1e4).astype(dtype)
    probs = rng.random(z.shape).astype(dtype)
    for target in (rng.integers(0, 4, (2, 3, 3)), probs):
        x = Tensor(z, requires_grad=True)
        F.cross_entropy(x, target, weight=np.linspace(0.5, 2, 4).astype(dtype), label_smoothing=0.2).backward()
        assert np.isfinite(x.grad.data).all()
    x = Tensor(z, requires_grad=True)
    out = F.binary_cross_entropy_with_logits(x, probs, pos_weight=np.full(3, 2.0, dtype=dtype), reduction="sum")
    out.backward()
    assert np.isfinite(out.data) and np.isfinite(x.grad.data).all()
    logp = z - z.max(axis=1, keepdims=True)
    x = Tensor(logp, requires_grad=True)
    F.nll_loss(x, rng.integers(0, 4, (2, 3, 3))).backward()
    assert np.isfinite(x.grad.data).all()


def test_binary_cross_entropy_clamps_log_at_minus_100():
    x = np.array([0.0, 1.0, 0.0, 1.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    xs, ts = Tensor(x, requires_grad=True), Tensor(t, requires_grad=True)
    out = F.binary_cross_entropy(xs, ts, reduction="none")
    np.testing.assert_array_equal(out.data, [100.0, 100.0, 0.0, 0.0])
    out.backward(np.ones(4))
    # d/dx = (x - t) / max(x (1 - x), 1e-12): finite; d/dt = log(1 - x) - log(x): +-inf at the ends
    np.testing.assert_allclose(xs.grad.data, [-1e12, 1e12, 0.0, 0.0], rtol=1e-8)
    assert np.isposinf(ts.grad.data[[0, 2]]).all() and np.isneginf(ts.grad.data[[1, 3]]).all()
    if torch is not None:
        xt, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
        torch.nn.functional.binary_cross_entropy(xt, tt, reduction="none").backward(torch.ones(4, dtype=torch.float64))
        np.testing.assert_array_equal(xs.grad.data, xt.grad.numpy())
        np.testing.assert_array_equal(ts.grad.data, tt.grad.numpy())


# --------------------------------------------------------------------------- semantics
def test_cross_entropy_is_the_batch_mean_of_the_divergence():
    """Loss = (1/T) sum_i Div(Y_i, d_i) with Div = -log softmax(z_i)[d_i]."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((7, 4))
    d = rng.integers(0, 4, 7)
    div = [-np.log(np.exp(z[i, d[i]]) / np.exp(z[i]).sum()) for i in range(7)]
    np.testing.assert_allclose(F.cross_entropy(Tensor(z), d).item(), np.mean(div), rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(Tensor(z), d, reduction="none").data, div, rtol=1e-12)


def test_cross_entropy_equals_nll_of_log_softmax():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 5, 2, 2))
    y = rng.integers(0, 5, (3, 2, 2))
    w = rng.random(5) + 0.1
    logp = K.log_softmax_classes(z)
    for red in ("none", "mean", "sum"):
        np.testing.assert_allclose(
            F.cross_entropy(Tensor(z), y, w, ignore_index=1, reduction=red).data,
            F.nll_loss(Tensor(logp), y, w, ignore_index=1, reduction=red).data, rtol=1e-12, atol=1e-14)


def test_one_hot_probabilities_equal_indices_without_weight():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((4, 3, 2))
    y = rng.integers(0, 3, (4, 2))
    onehot = np.moveaxis(np.eye(3)[y], -1, 1)
    for smoothing in (0.0, 0.3):
        a = F.cross_entropy(Tensor(z), y, label_smoothing=smoothing)
        b = F.cross_entropy(Tensor(z), onehot, label_smoothing=smoothing)
        np.testing.assert_allclose(a.item(), b.item(), rtol=1e-12)


@needs_torch
@pytest.mark.parametrize("op,args", [
    ("cross_entropy", lambda: (np.zeros((3, 4)), np.full(3, -100))),
    ("nll_loss", lambda: (np.zeros((2, 4)), np.full(2, 1))),  # every target ignored (ignore_index=1)
    ("cross_entropy", lambda: (np.zeros((0, 4)), np.zeros(0, dtype=np.int64))),
    ("cross_entropy", lambda: (np.zeros((0, 4)), np.zeros((0, 4)))),
    ("mse_loss", lambda: (np.zeros(0), np.zeros(0))),
])
def test_nothing_to_average_gives_nan_like_torch(op, args):
    x, t = args()
    kw = {"ignore_index": 1} if op == "nll_loss" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 either
        ours = getattr(F, op)(Tensor(x), t, **kw).item()
    theirs = getattr(torch.nn.functional, op)(torch.from_numpy(x), torch.from_numpy(t), **kw).item()
    assert np.isnan(ours) and np.isnan(theirs)
    for red in ("sum", "none"):
        out = getattr(F, op)(Tensor(x), t, reduction=red, **kw).data
        assert not np.isnan(out).any()


@needs_torch
@pytest.mark.parametrize("op,target,weight,smoothing", [
    ("cross_entropy", [-100, -100], None, 0.0),
    ("cross_entropy", [-100, -100], [0.5, 1.0, 2.0], 0.3),
    ("cross_entropy", [0, 1], [0.0, 0.0, 0.0], 0.0),   # zero total weight, nothing ignored: NaN rows
    ("cross_entropy", [0, -100], [0.0, 0.0, 1.0], 0.2),
    ("nll_loss", [-100, -100], None, 0.0),
    ("nll_loss", [0, 1], [0.0, 0.0, 0.0], 0.0),
])
def test_degenerate_mean_gradients_match_torch(op, target, weight, smoothing):
    """0/0 means: the loss is NaN; ignored positions still get exactly 0, others NaN (as PyTorch)."""
    z = np.random.default_rng(11).standard_normal((2, 3))
    kw = {"label_smoothing": smoothing} if op == "cross_entropy" else {}
    x = Tensor(z, requires_grad=True)
    w = None if weight is None else np.array(weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = getattr(F, op)(x, np.array(target), w, **kw)
        out.backward()
    xt = torch.tensor(z, requires_grad=True)
    tout = getattr(torch.nn.functional, op)(
        xt, torch.tensor(target), None if w is None else torch.tensor(w), **kw)
    tout.backward()
    np.testing.assert_array_equal(np.isnan(out.data), np.isnan(tout.detach().numpy()))
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy(), rtol=1e-12, atol=1e-14, equal_nan=True)


def test_legacy_size_average_and_reduce():
    rng = np.random.default_rng(6)
    z, y = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    per = F.cross_entropy(Tensor(z), y, reduction="none").data
    for size_average, reduce, expected in [
        (None, False, per), (False, None, per.sum()), (True, True, per.mean()), (False, True, per.sum()),
        (True, False, per),
    ]:
        with pytest.warns(UserWarning, match="size_average and reduce"):
            out = F.cross_entropy(Tensor(z), y, size_average=size_average, reduce=reduce, reduction="sum")
        np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    with pytest.warns(UserWarning, match="elementwise_mean"):
        np.testing.assert_allclose(F.mse_loss(Tensor(a), Tensor(b), reduction="elementwise_mean").item(),
                                   np.mean((a - b) ** 2), rtol=1e-12)


def test_targets_accept_other_integer_dtypes_and_python_ints():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((4, 3))
    y = rng.integers(0, 3, 4)
    ref = F.cross_entropy(Tensor(z), y.astype(np.int64)).item()
    for dt in (np.int32, np.uint8, np.int16):
        assert F.cross_entropy(Tensor(z), y.astype(dt)).item() == pytest.approx(ref, rel=1e-14)
    assert F.cross_entropy(Tensor(z), list(y)).item() == pytest.approx(ref, rel=1e-14)
    assert F.cross_entropy(Tensor(z[0]), int(y[0]), reduction="none").shape == ()


def test_weight_gradients_follow_torch_rules():
    rng = np.random.default_rng(9)
    z, y, p = rng.standard_normal((3, 4)), rng.integers(0, 4, 3), rng.random((3, 4))
    w = Tensor(rng.random(4) + 0.1, requires_grad=True)
    # class indices: PyTorch cannot differentiate the weight, so striate refuses it too ...
    with pytest.raises(RuntimeError, match="weight"):
        F.cross_entropy(Tensor(z, requires_grad=True), y, w)
    with pytest.raises(RuntimeError, match="weight"):
        F.nll_loss(Tensor(z, requires_grad=True), y, w)
    # ... unless no graph is being recorded
    with striate.no_grad():
        F.cross_entropy(Tensor(z), y, w)
    # class probabilities: the weight gets a gradient
    F.cross_entropy(Tensor(z, requires_grad=True), Tensor(p), w).backward()
    assert w.grad is not None and w.grad.shape == (4,)
    # a weight without requires_grad is always fine
    F.binary_cross_entropy_with_logits(Tensor(z, requires_grad=True), Tensor(p), w.detach()).backward()


def test_inputs_are_not_modified_and_grads_only_where_requested():
    rng = np.random.default_rng(10)
    z, p = rng.standard_normal((3, 4, 2)), rng.random((3, 4, 2))
    z0, p0 = z.copy(), p.copy()
    x, t = Tensor(z, requires_grad=True), Tensor(p)
    F.cross_entropy(x, t, label_smoothing=0.3).backward()
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(p, p0)
    assert x.grad is not None and t.grad is None


@pytest.mark.parametrize("op", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
def test_elementwise_losses_refuse_broadcasting(op):
    """PyTorch only warns and broadcasts here; striate raises (a (N,) vs (N, 1) slip is a bug)."""
    with pytest.raises(ShapeError, match=r"target \(4, 1\).*\(4,\)"):
        getattr(F, op)(Tensor(np.zeros(4)), Tensor(np.zeros((4, 1))))


def test_errors_leave_no_graph():
    x = Tensor(np.zeros((3, 5)), requires_grad=True)
    with pytest.raises(IndexError, match="target 9 is out of range for 5 classes"):
        F.cross_entropy(x, np.array([0, 9, 1]))
    assert x.grad is None
