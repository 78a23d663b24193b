"""Registry entries: linear, broadcasting arithmetic, reductions, joins and pad."""

from __future__ import annotations

import numpy as np

import striate.functional as F
from striate.kernels.shapes import ShapeError
from striate.reference import array as R

from . import ErrorCase, OpInfo, Sample, register


def _cuts(n, sizes):
    """Cut points for np.split from torch.split's chunk size or list of sizes."""
    if isinstance(sizes, int):
        return list(range(sizes, n, sizes))
    return list(np.cumsum(sizes)[:-1])


def _linear_samples(rng):
    return [
        Sample((rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)), fan_in=5),
        Sample((rng.standard_normal((2, 3, 6)), rng.standard_normal((4, 6))), fan_in=6, desc="3-D input, no bias"),
        Sample((rng.standard_normal((1, 1)), rng.standard_normal((2, 1)), rng.standard_normal(2)), fan_in=1),
    ]


def _linear_grad(dy, x, w, b=None):
    return R.linear_backward(dy, x, w, b)


def _linear_errors():
    x, w = np.zeros((4, 5)), np.zeros((3, 6))
    return [
        ErrorCase((x, w), {}, ShapeError, r"\(4, 5\).*\(3, 6\)", "in_features mismatch"),
        ErrorCase((x, np.zeros((3, 5)), np.zeros(4)), {}, ShapeError, r"bias \(4,\)", "bias size"),
        ErrorCase((x.astype(np.float32), np.zeros((3, 5))), {}, TypeError, r"float32.*float64", "dtype mismatch"),
    ]


def _binary(name, f, dfa, dfb, positive_b=False):
    def samples(rng):
        shapes = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((2, 1, 3), (2, 4, 1))]
        out = []
        for sa, sb in shapes:
            b = rng.standard_normal(sb)
            if positive_b:
                b = np.abs(b) + 0.5
            out.append(Sample((rng.standard_normal(sa), b)))
        return out

    return OpInfo(
        name=name,
        op=getattr(F, name),
        samples=samples,
        ref=lambda a, b: R.broadcast_binary(f, a, b),
        ref_grad=lambda dy, a, b: R.broadcast_binary_backward(dfa, dfb, dy, a, b),
        torch_fn=lambda torch, a, b: getattr(torch, name)(a, b),
        errors=lambda: [
            ErrorCase((np.zeros((3, 4)), np.zeros((2, 4))), {}, ValueError, r"\(3,\s?4\).*\(2,\s?4\)|broadcast", "shapes")
        ],
        family="array",
    )


register(
    OpInfo(
        name="linear", op=F.linear, samples=_linear_samples, ref=R.linear, ref_grad=_linear_grad,
        torch_fn=lambda torch, *a: torch.nn.functional.linear(*a), errors=_linear_errors, family="array",
    ),
    _binary("add", lambda a, b: a + b, lambda a, b: 1.0, lambda a, b: 1.0),
    _binary("sub", lambda a, b: a - b, lambda a, b: 1.0, lambda a, b: -1.0),
    _binary("mul", lambda a, b: a * b, lambda a, b: b, lambda a, b: a),
    _binary("div", lambda a, b: a / b, lambda a, b: 1.0 / b, lambda a, b: -a / (b * b), positive_b=True),
    OpInfo(
        name="sum", op=F.sum,
        samples=lambda rng: [Sample((rng.standard_normal((2, 3, 4)),), {"dim": d, "keepdim": k})
                             for d, k in [(None, False), (1, False), ((0, 2), True), (-1, True)]],
        ref=lambda x, dim=None, keepdim=False: np.sum(x, axis=dim, keepdims=keepdim),
        torch_fn=lambda torch, x, dim=None, keepdim=False: (
            torch.sum(x) if dim is None else torch.sum(x, dim=dim, keepdim=keepdim)),
        family="array",
    ),
    OpInfo(
        name="mean", op=F.mean,
        samples=lambda rng: [Sample((rng.standard_normal((2, 3, 4)),), {"dim": d, "keepdim": k})
                             for d, k in [(None, False), (1, False), ((0, 2), True)]],
        ref=lambda x, dim=None, keepdim=False: np.mean(x, axis=dim, keepdims=keepdim),
        torch_fn=lambda torch, x, dim=None, keepdim=False: (
            torch.mean(x) if dim is None else torch.mean(x, dim=dim, keepdim=keepdim)),
        family="array",
    ),
    OpInfo(
        name="cat", op=lambda a, b, dim=0: F.cat([a, b], dim=dim),
        samples=lambda rng: [
            Sample((rng.standard_normal((2, 3)), rng.standard_normal((4, 3))), {"dim": 0}),
            Sample((rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 1, 2))), {"dim": 1}),
        ],
        ref=lambda a, b, dim=0: np.concatenate([a, b], axis=dim),
        torch_fn=lambda torch, a, b, dim=0: torch.cat([a, b], dim=dim),
        errors=lambda: [ErrorCase((np.zeros((2, 3)), np.zeros((2, 4))), {"dim": 0}, ShapeError,
                                  r"\(2, 3\).*\(2, 4\)", "shape mismatch")],
        family="array",
    ),
    OpInfo(
        name="stack", op=lambda a, b, dim=0: F.stack([a, b], dim=dim),
        samples=lambda rng: [Sample((rng.standard_normal((2, 3)), rng.standard_normal((2, 3))), {"dim": d})
                             for d in (0, 2, -1)],
        ref=lambda a, b, dim=0: np.stack([a, b], axis=dim),
        torch_fn=lambda torch, a, b, dim=0: torch.stack([a, b], dim=dim),
        errors=lambda: [ErrorCase((np.zeros((2, 3)), np.zeros((3, 2))), {}, ShapeError, r"\(2, 3\).*\(3, 2\)")],
        family="array",
    ),
    OpInfo(
        name="split", op=lambda x, s, dim=0: F.split(x, s, dim=dim)[1],
        samples=lambda rng: [Sample((rng.standard_normal((5, 3)), 2), {"dim": 0}),
                             Sample((rng.standard_normal((2, 6)), [1, 3, 2]), {"dim": 1})],
        ref=lambda x, s, dim=0: np.split(x, _cuts(x.shape[dim], s), axis=dim)[1],
        torch_fn=lambda torch, x, s, dim=0: torch.split(x, s, dim=dim)[1],
        errors=lambda: [ErrorCase((np.zeros((2, 6)), [1, 2]), {"dim": 1}, ShapeError, r"\(2, 6\)")],
        family="array",
    ),
    OpInfo(
        name="pad", op=F.pad,
        samples=lambda rng: [
            Sample((rng.standard_normal((2, 3, 4, 5)), (1, 2)), {}),
            Sample((rng.standard_normal((2, 3, 4, 5)), (1, 0, 2, 3)), {"value": 0.5}),
            Sample((rng.standard_normal((2, 3, 4, 5)), (-1, 2, 0, -2)), {}, desc="negative pad crops"),
        ],
        ref=lambda x, p, value=0.0: R.pad(x, p, value),
        ref_grad=lambda dy, x, p, value=0.0: (R.pad_backward(dy, x, p, value), None),
        torch_fn=lambda torch, x, p, value=0.0: torch.nn.functional.pad(x, p, value=value),
        errors=lambda: [ErrorCase((np.zeros((2, 3)), (1, 2, 3)), {}, ShapeError, r"\(2, 3\)", "odd pad"),
                        ErrorCase((np.zeros((2, 3)), (-2, -2)), {}, ShapeError, r"\(2, 3\)", "over-crop")],
        family="array",
    ),
)
