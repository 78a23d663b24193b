"""Registry entries: cross_entropy, nll_loss, mse/l1/smooth_l1/huber, binary cross-entropies.

Class-index targets are int64 arrays listed in ``nograd``; class-probability targets are floats
and differentiable (PyTorch gives them a gradient).  Weights that PyTorch cannot differentiate
(class-index cross_entropy/nll_loss, both binary cross-entropies) are in ``nograd`` too: striate,
like PyTorch, refuses a weight that requires grad there (tested in the error cases).
"""

from __future__ import annotations

import numpy as np

import striate.functional as F
from striate.kernels.shapes import ShapeError
from striate.reference import loss as R

from . import ErrorCase, OpInfo, Sample, register


def _tnf(torch):
    return torch.nn.functional


def _labels(rng, shape, C, ignore=None, n_ignore=0):
    """Random class indices; ``n_ignore`` of them replaced by ``ignore``."""
    y = rng.integers(0, C, size=shape).astype(np.int64)
    if n_ignore:
        flat = y.reshape(-1)
        flat[rng.choice(flat.size, n_ignore, replace=False)] = ignore
    return y


def _probs(rng, shape):
    """Non-negative soft labels, each position summing to 1 over axis 1 (or 0 when unbatched)."""
    p = rng.random(shape) + 0.05
    return p / p.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)


# --------------------------------------------------------------------------- cross entropy
def _ce_samples(rng):
    g = rng.standard_normal
    return [
        Sample((g((4, 5)), _labels(rng, 4, 5)), {}, nograd=(1,), fan_in=20, desc="indices 2-D mean"),
        Sample((g((4, 5)), _labels(rng, 4, 5), rng.random(5) + 0.1), {"reduction": "sum"},
               nograd=(1, 2), fan_in=20, desc="indices weight sum"),
        Sample((g((6, 4)), _labels(rng, 6, 4, -100, 2), rng.random(4) + 0.1),
               {"label_smoothing": 0.1}, nograd=(1, 2), fan_in=24, desc="ignore+weight+smoothing mean"),
        Sample((g((2, 3, 3, 4)), _labels(rng, (2, 3, 4), 3)), {"reduction": "none"},
               nograd=(1,), fan_in=72, desc="per-pixel 4-D none"),
        Sample((g((2, 3, 3, 4)), _labels(rng, (2, 3, 4), 3), rng.random(3) + 0.1),
               {"ignore_index": 2, "label_smoothing": 0.2}, nograd=(1, 2), fan_in=72,
               desc="per-pixel weight, in-range ignore_index, smoothing, mean"),
        Sample((g((3, 4, 5)), _labels(rng, (3, 5), 4, -1, 3)), {"ignore_index": -1, "reduction": "sum",
               "label_smoothing": 0.3}, nograd=(1,), fan_in=60, desc="3-D sum ignore smoothing"),
        Sample((g((2, 3, 2, 3)), _labels(rng, (2, 2, 3), 3, -100, 2), rng.random(3) + 0.1),
               {"reduction": "none", "label_smoothing": 0.25}, nograd=(1, 2), fan_in=36,
               desc="per-pixel none weight ignore smoothing"),
        Sample((g((4, 5)), _probs(rng, (4, 5))), {}, fan_in=20, desc="probabilities mean"),
        Sample((g((2, 4, 3, 3)), _probs(rng, (2, 4, 3, 3)), rng.random(4) + 0.1),
               {"label_smoothing": 0.15, "reduction": "none"}, fan_in=72,
               desc="probabilities 4-D weight (differentiable) smoothing none"),
        Sample((g((3, 4)), rng.random((3, 4)), rng.random(4) + 0.1), {"reduction": "sum"}, fan_in=12,
               desc="unnormalised probabilities weight sum"),
        Sample((g(5), np.array(3, dtype=np.int64)), {}, nograd=(1,), fan_in=5, desc="unbatched index"),
        Sample((g(5), np.array(1, dtype=np.int64)), {"reduction": "none", "label_smoothing": 0.2},
               nograd=(1,), fan_in=5, desc="unbatched index none smoothing"),
        Sample((g(4), _probs(rng, (4,))), {"reduction": "none"}, fan_in=4, desc="unbatched probabilities"),
        Sample((g((3, 4)), _labels(rng, 3, 4)), {"label_smoothing": 1.0}, nograd=(1,), fan_in=12,
               desc="label_smoothing 1"),
    ]


def _ce_errors():
    x = np.zeros((3, 5))
    idx = np.array([1, 2, 0], dtype=np.int64)
    return [
        ErrorCase((x, np.array([1, 7, 2])), {}, IndexError, r"target 7 is out of range for 5 classes", "target too big"),
        ErrorCase((x, np.array([1, -3, 2])), {}, IndexError, r"target -3 is out of range for 5 classes.*\(3, 5\)",
                  "negative target"),
        ErrorCase((x, np.array([1, 5, 2])), {"ignore_index": 4}, IndexError, r"target 5 is out of range",
                  "in-range ignore_index does not allow C"),
        ErrorCase((x, np.array([1.0, 3.0, 2.0])), {}, TypeError, r"floating-point target \(3,\).*input \(3, 5\)",
                  "float labels where indices expected"),
        ErrorCase((x, np.zeros((3, 5), dtype=np.int64)), {}, TypeError, r"\(3, 5\).*floating-point",
                  "integer target for probabilities"),
        ErrorCase((x, np.array([1, 2])), {}, ShapeError, r"batch size \(3\).*\(2\).*\(3, 5\).*\(2,\)",
                  "batch size mismatch"),
        ErrorCase((np.zeros((2, 5, 3, 3)), np.zeros((2, 3, 4), dtype=np.int64)), {}, ShapeError,
                  r"\(2, 3, 4\).*\(2, 3, 3\).*\(2, 5, 3, 3\)", "spatial mismatch"),
        ErrorCase((x, idx), {"weight": np.ones(4)}, ShapeError, r"weight \(4,\) must be \(5,\).*\(3, 5\)",
                  "weight not (C,)"),
        ErrorCase((x, idx), {"weight": np.ones((1, 5))}, ShapeError, r"weight \(1, 5\)", "weight 2-D"),
        ErrorCase((x, idx), {"reduction": "avg"}, ValueError, r"'avg'.*'none', 'mean', 'sum'", "bad reduction"),
        ErrorCase((x, idx), {"label_smoothing": 1.5}, ValueError, r"label_smoothing.*1\.5", "smoothing > 1"),
        ErrorCase((x, idx), {"label_smoothing": -0.1}, ValueError, r"label_smoothing.*-0\.1", "smoothing < 0"),
        ErrorCase((x, np.full((3, 5), 0.2)), {"ignore_index": 1}, ValueError, r"ignore_index", "ignore_index with probs"),
        ErrorCase((np.zeros(()), np.array(0)), {}, ShapeError, r"got shape \(\)", "0-d input"),
        ErrorCase((np.zeros(5), np.array([1, 2])), {}, ShapeError, r"\(5,\).*\(2,\)", "unbatched with batch target"),
        ErrorCase((x, idx), {"weight": np.ones(5, dtype=np.float32)}, TypeError, r"float64.*float32", "weight dtype"),
        ErrorCase((x, np.full((3, 5), 0.2, dtype=np.float32)), {}, TypeError, r"float64.*float32", "prob target dtype"),
        ErrorCase((x, np.array([True, False, True])), {}, TypeError, r"bool", "bool target"),
        ErrorCase((x.astype(np.int64), idx), {}, TypeError, r"input must be a floating-point", "integer input"),
        ErrorCase((x, idx, np.ones(5)), {}, RuntimeError, r"weight", "weight requiring grad"),
    ]


def _ce_torch(torch, x, t, w=None, **kw):
    return _tnf(torch).cross_entropy(x, t, w, **kw)


# --------------------------------------------------------------------------- nll loss
def _logp(rng, shape):
    z = rng.standard_normal(shape)
    axis = 1 if len(shape) > 1 else 0
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _nll_samples(rng):
    return [
        Sample((_logp(rng, (4, 5)), _labels(rng, 4, 5)), {}, nograd=(1,), fan_in=4, desc="2-D mean"),
        Sample((_logp(rng, (5, 3)), _labels(rng, 5, 3, -100, 2), rng.random(3) + 0.1), {"reduction": "sum"},
               nograd=(1, 2), fan_in=5, desc="weight ignore sum"),
        Sample((_logp(rng, (2, 3, 3, 2)), _labels(rng, (2, 3, 2), 3, 0, 3), rng.random(3) + 0.1),
               {"ignore_index": 0}, nograd=(1, 2), fan_in=12, desc="per-pixel weight ignore 0 mean"),
        Sample((_logp(rng, (2, 4, 5)), _labels(rng, (2, 5), 4)), {"reduction": "none"}, nograd=(1,),
               fan_in=1, desc="3-D none"),
        Sample((_logp(rng, (4,)), np.array(2, dtype=np.int64)), {}, nograd=(1,), desc="unbatched"),
    ]


def _nll_errors():
    x = np.zeros((3, 4))
    return [
        ErrorCase((x, np.array([0, 4, 1])), {}, IndexError, r"target 4 is out of range for 4 classes", "out of range"),
        ErrorCase((x, np.full((3, 4), 0.25)), {}, TypeError, r"integer class indices.*\(3, 4\)", "float target"),
        ErrorCase((x, np.array([0, 1])), {}, ShapeError, r"batch size \(3\).*\(2\)", "batch mismatch"),
        ErrorCase((x, np.array([0, 1, 2])), {"weight": np.ones(3)}, ShapeError, r"weight \(3,\) must be \(4,\)",
                  "weight size"),
        ErrorCase((x, np.array([0, 1, 2])), {"reduction": "mena"}, ValueError, r"'mena'", "bad reduction"),
        ErrorCase((x, np.array([0, 1, 2]), np.ones(4)), {}, RuntimeError, r"weight", "weight requiring grad"),
    ]


# --------------------------------------------------------------------------- elementwise losses
def _pair(rng, shape, gap=0.0):
    """input and target whose differences stay at least ``gap`` away from 0 (for |.| kinks)."""
    x = rng.standard_normal(shape)
    d = rng.standard_normal(shape)
    d = np.sign(d) * (np.abs(d) + gap)
    return np.asarray(x), np.asarray(x - d)


def _elementwise_samples(weighted=True, gap=0.0, extra=()):
    def samples(rng):
        out = []
        for shape, red in (((3, 4), "mean"), ((2, 3, 2, 2), "sum"), ((5,), "none"), ((), "mean")):
            x, t = _pair(rng, shape, gap)
            out.append(Sample((x, t), {"reduction": red, **dict(extra)}, fan_in=max(1, x.size),
                              desc=f"{shape} {red}"))
        if weighted:
            for red in ("mean", "sum", "none"):
                x, t = _pair(rng, (3, 4), gap)
                out.append(Sample((x, t, rng.random((3, 4)) + 0.1), {"reduction": red, **dict(extra)},
                                  fan_in=12, desc=f"weight {red}"))
        return out

    return samples


def _elementwise_errors(op_extra=None):
    x = np.zeros((3, 4))
    cases = [
        ErrorCase((x, np.zeros(4)), {}, ShapeError, r"target \(4,\).*input's shape \(3, 4\)", "broadcasting refused"),
        ErrorCase((x, np.zeros((3, 4), dtype=np.float32)), {}, TypeError, r"float64.*float32", "dtype mismatch"),
        ErrorCase((x, np.zeros((3, 4), dtype=np.int64)), {}, TypeError, r"target must be a floating-point", "int target"),
        ErrorCase((x, x.copy()), {"reduction": "avg"}, ValueError, r"'avg'", "bad reduction"),
    ]
    return cases + list(op_extra or [])


def _weight_errors():
    x = np.zeros((3, 4))
    return [ErrorCase((x, x.copy(), np.ones(4)), {}, ShapeError, r"weight \(4,\).*input \(3, 4\)",
                      "weight shape")]


def _wrap3(ref_backward):
    """Reference backward giving (dx, dt, dw) for (x, t[, w]) positional args."""
    def grad(dy, x, t, w=None, **kw):
        return ref_backward(dy, x, t, w, **kw)

    return grad


# --------------------------------------------------------------------------- binary cross-entropies
def _bce_samples(rng):
    out = []
    for shape, red in (((3, 4), "mean"), ((2, 3, 4), "sum"), ((6,), "none")):
        x = rng.uniform(0.05, 0.95, shape)
        t = rng.random(shape)
        out.append(Sample((x, t), {"reduction": red}, fan_in=x.size, desc=f"{shape} {red}"))
    x, t = rng.uniform(0.05, 0.95, (3, 4)), (rng.random((3, 4)) > 0.5).astype(np.float64)
    out.append(Sample((x, t, rng.random(4) + 0.1), {}, nograd=(1, 2), fan_in=12,
                      desc="hard labels (constant: 0 - eps is out of range), weight (4,) broadcast"))
    out.append(Sample((x, t, rng.random((3, 4)) + 0.1), {"reduction": "none"}, nograd=(1, 2), fan_in=12,
                      desc="weight none"))
    return out


def _bce_errors():
    x = np.full((3, 4), 0.5)
    bad = x.copy()
    bad[1, 2] = 1.5
    return [
        ErrorCase((bad, x.copy()), {}, ValueError, r"input \(3, 4\) should be between 0 and 1", "input > 1"),
        ErrorCase((x, -x), {}, ValueError, r"target \(3, 4\) should be between 0 and 1", "target < 0"),
        ErrorCase((x, np.full(4, 0.5)), {}, ShapeError, r"\(4,\).*\(3, 4\)", "shape mismatch"),
        ErrorCase((x, x.copy()), {"weight": np.ones(3)}, ShapeError, r"weight \(3,\).*\(3, 4\)", "weight broadcast"),
        ErrorCase((x, x.copy(), np.ones(4)), {}, RuntimeError, r"weight", "weight requiring grad"),
        ErrorCase((x, x.copy()), {"reduction": "avg"}, ValueError, r"'avg'", "bad reduction"),
    ]


def _bcel_op(x, t, w=None, pw=None, **kw):
    return F.binary_cross_entropy_with_logits(x, t, w, pos_weight=pw, **kw)


def _bcel_samples(rng):
    out = []
    for shape, red in (((3, 4), "mean"), ((2, 3, 4), "sum"), ((6,), "none")):
        x = 3 * rng.standard_normal(shape)
        out.append(Sample((x, rng.random(shape)), {"reduction": red}, fan_in=x.size, desc=f"{shape} {red}"))
    x, t = 3 * rng.standard_normal((3, 4)), (rng.random((3, 4)) > 0.5).astype(np.float64)
    out.append(Sample((x, t, rng.random(4) + 0.1, rng.random(4) * 3), {}, nograd=(2, 3), fan_in=12,
                      desc="weight and pos_weight (4,)"))
    out.append(Sample((x, rng.random((3, 4)), None, rng.random((3, 1)) * 3), {"reduction": "none"}, nograd=(3,),
                      fan_in=12, desc="pos_weight (3, 1)"))
    out.append(Sample((np.array([30.0, -30.0, 0.5, -40.0]), np.array([0.0, 1.0, 0.3, 0.0])), {"reduction": "sum"},
                      fan_in=4, desc="large logits"))
    return out


def _bcel_errors():
    x = np.zeros((3, 4))
    return [
        ErrorCase((x, np.zeros(4)), {}, ShapeError, r"\(4,\).*\(3, 4\)", "shape mismatch"),
        ErrorCase((x, x.copy()), {"pw": np.ones(3)}, ShapeError, r"pos_weight \(3,\).*\(3, 4\)", "pos_weight shape"),
        ErrorCase((x, x.copy()), {"w": np.ones((2, 3, 4))}, ShapeError, r"weight \(2, 3, 4\).*\(3, 4\)", "weight grows output"),
        ErrorCase((x, x.copy(), np.ones(4)), {}, RuntimeError, r"'weight'", "weight requiring grad"),
        ErrorCase((x, x.copy(), None, np.ones(4)), {}, RuntimeError, r"'pos_weight'", "pos_weight requiring grad"),
        ErrorCase((x, x.copy()), {"reduction": "avg"}, ValueError, r"'avg'", "bad reduction"),
    ]


register(
    OpInfo(
        name="cross_entropy", op=F.cross_entropy, samples=_ce_samples, ref=R.cross_entropy,
        ref_grad=R.cross_entropy_backward, torch_fn=_ce_torch, errors=_ce_errors, family="loss",
    ),
    OpInfo(
        name="nll_loss", op=F.nll_loss, samples=_nll_samples, ref=R.nll_loss, ref_grad=R.nll_loss_backward,
        torch_fn=lambda torch, x, t, w=None, **kw: _tnf(torch).nll_loss(x, t, w, **kw), errors=_nll_errors,
        family="loss",
    ),
    OpInfo(
        name="mse_loss", op=lambda x, t, w=None, **kw: F.mse_loss(x, t, weight=w, **kw),
        samples=_elementwise_samples(), ref=lambda x, t, w=None, **kw: R.mse_loss(x, t, w, **kw),
        ref_grad=_wrap3(R.mse_loss_backward),
        torch_fn=lambda torch, x, t, w=None, **kw: _tnf(torch).mse_loss(x, t, weight=w, **kw),
        errors=lambda: _elementwise_errors(_weight_errors()), family="loss",
    ),
    OpInfo(
        name="l1_loss", op=lambda x, t, w=None, **kw: F.l1_loss(x, t, weight=w, **kw),
        samples=_elementwise_samples(gap=0.05), ref=lambda x, t, w=None, **kw: R.l1_loss(x, t, w, **kw),
        ref_grad=_wrap3(R.l1_loss_backward),
        torch_fn=lambda torch, x, t, w=None, **kw: _tnf(torch).l1_loss(x, t, weight=w, **kw),
        errors=lambda: _elementwise_errors(_weight_errors()), family="loss",
    ),
    OpInfo(
        name="smooth_l1_loss", op=F.smooth_l1_loss,
        samples=lambda rng: (_elementwise_samples(False, 0.05, {"beta": 0.5}.items())(rng)
                             + _elementwise_samples(False, 0.05, {"beta": 0.0}.items())(rng)[:2]
                             + _elementwise_samples(False, 0.05)(rng)[:1]),
        ref=R.smooth_l1_loss, ref_grad=R.smooth_l1_loss_backward,
        torch_fn=lambda torch, x, t, **kw: _tnf(torch).smooth_l1_loss(x, t, **kw),
        errors=lambda: _elementwise_errors([
            ErrorCase((np.zeros(3), np.zeros(3)), {"beta": -1.0}, ValueError, r"beta.*-1\.0", "negative beta")]),
        family="loss",
    ),
    OpInfo(
        name="huber_loss", op=lambda x, t, w=None, **kw: F.huber_loss(x, t, weight=w, **kw),
        samples=lambda rng: (_elementwise_samples(True, 0.05, {"delta": 0.7}.items())(rng)
                             + _elementwise_samples(False, 0.05)(rng)[:1]),
        ref=lambda x, t, w=None, **kw: R.huber_loss(x, t, w, **kw), ref_grad=_wrap3(R.huber_loss_backward),
        torch_fn=lambda torch, x, t, w=None, **kw: _tnf(torch).huber_loss(x, t, weight=w, **kw),
        errors=lambda: _elementwise_errors(_weight_errors() + [
            ErrorCase((np.zeros(3), np.zeros(3)), {"delta": 0.0}, ValueError, r"delta.*0\.0", "zero delta")]),
        family="loss",
    ),
    OpInfo(
        name="binary_cross_entropy", op=F.binary_cross_entropy, samples=_bce_samples,
        ref=R.binary_cross_entropy, ref_grad=R.binary_cross_entropy_backward,
        torch_fn=lambda torch, x, t, w=None, **kw: _tnf(torch).binary_cross_entropy(x, t, w, **kw),
        errors=_bce_errors, family="loss",
    ),
    OpInfo(
        name="binary_cross_entropy_with_logits", op=_bcel_op, samples=_bcel_samples,
        ref=R.binary_cross_entropy_with_logits, ref_grad=R.binary_cross_entropy_with_logits_backward,
        torch_fn=lambda torch, x, t, w=None, pw=None, **kw: _tnf(torch).binary_cross_entropy_with_logits(
            x, t, w, pos_weight=pw, **kw),
        errors=_bcel_errors, family="loss",
    ),
)
