"""Registry entries: max, average, adaptive pooling and max-unpooling (1-D and 2-D)."""

from __future__ import annotations

import numpy as np

import striate.functional as F
from striate.kernels.shapes import ShapeError
from striate.reference import pool as R

from . import ErrorCase, OpInfo, Sample, register


def distinct(rng, shape, scale=0.1):
    """Tie-free values: a shuffled arithmetic sequence, spaced ``scale`` apart, centred on 0
    (finite differences of eps 1e-6 never reorder them)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * scale).reshape(shape).astype(np.float64)


def _ref_pair(ref):
    """A reference backward aligned with positional args (input, kernel_size, ...): (dx, None...)."""
    def grad(dy, x, *rest, **kw):
        return (ref(dy, x, *rest, **kw),) + (None,) * len(rest)
    return grad


# ------------------------------------------------------------------------------------ max
def _max1d_samples(rng):
    return [
        Sample((distinct(rng, (2, 3, 9)), 3), {"stride": 2, "padding": 1}, fan_in=2),
        Sample((distinct(rng, (2, 2, 8)), 2), {}, fan_in=1, desc="default stride = kernel"),
        Sample((distinct(rng, (1, 2, 10)), 3), {"stride": 1, "dilation": 2, "padding": 1,
                                                "return_indices": True}, fan_in=3, desc="dilated, indices"),
        Sample((distinct(rng, (2, 7)), 2), {"stride": 3, "ceil_mode": True}, desc="unbatched, stride > kernel"),
        Sample((distinct(rng, (1, 2, 8)), 4), {"stride": 3, "padding": 2, "ceil_mode": True,
                                               "return_indices": True}, fan_in=2, desc="ceil overhang"),
    ]


def _max2d_samples(rng):
    return [
        Sample((distinct(rng, (2, 2, 6, 7)), 2), {}, desc="2x2 default stride"),
        Sample((distinct(rng, (1, 2, 7, 6)), 3), {"stride": 1, "padding": 1}, fan_in=9, desc="overlapping"),
        Sample((distinct(rng, (2, 1, 7, 8)), (3, 2)), {"stride": (2, 1), "padding": (1, 0),
                                                       "return_indices": True}, fan_in=6),
        Sample((distinct(rng, (1, 2, 8, 7)), 2), {"stride": 2, "dilation": (2, 3), "padding": 1,
                                                  "ceil_mode": True, "return_indices": True}, fan_in=4),
        Sample((distinct(rng, (2, 5, 6)), 2), {"stride": 3}, desc="unbatched, stride > kernel"),
        Sample((distinct(rng, (1, 1, 5, 5)), 3), {"stride": 2, "ceil_mode": True, "padding": 1}, fan_in=4),
    ]


def _max_errors(nd):
    shape = (2, 3) + (5,) * nd
    x = np.zeros(shape)
    s = r"\(2, 3" + r", 5" * nd + r"\)"
    return [
        ErrorCase((np.zeros((5,) * nd), 2), {}, ShapeError, r"got shape \(" + ", ".join(["5"] * nd), "rank"),
        ErrorCase((x, 3), {"padding": 2}, ShapeError, r"at most half of effective kernel size.*" + s, "pad too big"),
        ErrorCase((x, 2), {"stride": 0}, ShapeError, r"stride.*" + s, "zero stride"),
        ErrorCase((x, 0), {}, ShapeError, r"kernel_size.*" + s, "zero kernel"),
        ErrorCase((x, 3), {"padding": -1}, ShapeError, r"padding.*" + s, "negative padding"),
        ErrorCase((x, 7), {}, ShapeError, s + r".*too small", "kernel larger than input"),
        ErrorCase((x, 2), {"dilation": 0}, ShapeError, r"dilation.*" + s, "zero dilation"),
        ErrorCase((x, 3), {"dilation": 3, "stride": 1}, ShapeError, s + r".*too small",
                  "dilated kernel larger than input"),
        ErrorCase((x.astype(np.int64), 2), {}, TypeError, r"floating", "integer input"),
    ]


# -------------------------------------------------------------------------------- average
def _avg1d_samples(rng):
    return [
        Sample((rng.standard_normal((2, 3, 9)), 3), {"stride": 2, "padding": 1}, fan_in=3),
        Sample((rng.standard_normal((2, 2, 8)), 2), {}, fan_in=2),
        Sample((rng.standard_normal((1, 2, 10)), 4), {"stride": 3, "padding": 2, "ceil_mode": True,
                                                      "count_include_pad": False}, fan_in=4, desc="ceil, exclude pad"),
        Sample((rng.standard_normal((2, 7)), 2), {"stride": 3, "ceil_mode": True}, fan_in=2, desc="unbatched"),
    ]


def _avg2d_samples(rng):
    return [
        Sample((rng.standard_normal((2, 2, 6, 7)), 2), {}, fan_in=4),
        Sample((rng.standard_normal((1, 2, 7, 6)), 3), {"stride": 1, "padding": 1}, fan_in=9, desc="overlapping"),
        Sample((rng.standard_normal((2, 1, 7, 8)), (3, 2)), {"stride": (2, 1), "padding": (1, 0),
                                                             "count_include_pad": False}, fan_in=6),
        Sample((rng.standard_normal((1, 2, 8, 7)), 3), {"stride": 2, "padding": 1, "ceil_mode": True}, fan_in=9,
               desc="ceil window past the padding"),
        Sample((rng.standard_normal((1, 2, 8, 7)), 3), {"stride": 2, "padding": 1, "ceil_mode": True,
                                                        "count_include_pad": False}, fan_in=9),
        Sample((rng.standard_normal((2, 5, 6)), 2), {"stride": 3, "divisor_override": 3}, fan_in=4,
               desc="unbatched, divisor_override"),
    ]


def _avg_errors(nd):
    shape = (2, 3) + (5,) * nd
    x = np.zeros(shape)
    s = r"\(2, 3" + r", 5" * nd + r"\)"
    out = [
        ErrorCase((np.zeros((5,) * nd), 2), {}, ShapeError, r"got shape \(" + ", ".join(["5"] * nd), "rank"),
        ErrorCase((x, 3), {"padding": 2}, ShapeError, r"at most half.*" + s, "pad too big"),
        ErrorCase((x, 2), {"stride": 0}, ShapeError, r"stride.*" + s, "zero stride"),
        ErrorCase((x, 7), {}, ShapeError, s + r".*too small", "kernel larger than input"),
        ErrorCase((x.astype(np.int64), 2), {}, TypeError, r"floating", "integer input"),
    ]
    if nd == 2:
        out.append(ErrorCase((x, 2), {"divisor_override": 0}, ShapeError, r"divisor_override.*" + s, "zero divisor"))
    return out


# ------------------------------------------------------------------------------- adaptive
def _adaptive1d_samples(rng, positive=False):
    make = (lambda shape: distinct(rng, shape)) if positive else rng.standard_normal
    return [
        Sample((make((2, 3, 10)), 3), fan_in=4, desc="non-dividing"),
        Sample((make((2, 2, 9)), 3), fan_in=3, desc="dividing"),
        Sample((make((2, 7)), 1), fan_in=7, desc="unbatched, global"),
        Sample((make((1, 2, 4)), 6), fan_in=1, desc="output larger than input"),
    ]


def _adaptive2d_samples(rng, positive=False):
    make = (lambda shape: distinct(rng, shape)) if positive else rng.standard_normal
    return [
        Sample((make((2, 2, 7, 9)), (3, 4)), fan_in=12, desc="non-dividing"),
        Sample((make((2, 2, 6, 8)), (3, 2)), fan_in=8, desc="dividing"),
        Sample((make((2, 3, 5, 6)), 1), fan_in=30, desc="global"),
        Sample((make((2, 5, 7)), (None, 3)), fan_in=3, desc="unbatched, None keeps H"),
        Sample((make((1, 2, 3, 4)), (5, 6)), fan_in=1, desc="output larger than input"),
    ]


def _adaptive_errors(nd):
    x = np.zeros((2, 3) + (5,) * nd)
    s = r"\(2, 3" + r", 5" * nd + r"\)"
    return [
        ErrorCase((np.zeros((5,) * nd), 2), {}, ShapeError, r"got shape \(" + ", ".join(["5"] * nd), "rank"),
        ErrorCase((x, -1), {}, ShapeError, r"output_size.*" + s, "negative size"),
        ErrorCase((x, (1, 2, 3)), {}, TypeError, r"output_size.*" + s, "wrong length"),
        ErrorCase((np.zeros((2, 0) + (5,) * nd), 2), {}, ShapeError, r"\(2, 0", "empty channels"),
    ]


# ---------------------------------------------------------------------------------- unpool
def _unpool_samples(nd):
    def samples(rng):
        out = []
        configs = [  # (input spatial, kernel, stride, padding, output_size)
            ((6,) * nd, 2, None, 0, None),
            ((7,) * nd, 2, 2, 0, (7,) * nd),
            ((7,) * nd, 3, 3, 1, None),
            ((8,) * nd, 2, 3, 0, None),
        ]
        for k, (size, kernel, stride, padding, output_size) in enumerate(configs):
            lead = (2,) if k == 3 else (2, 2)
            x = distinct(rng, lead + size)
            pooled, idx = R._max_pool(x, nd, kernel, stride, padding)
            kwargs = {"stride": stride, "padding": padding}
            if output_size is not None:
                kwargs["output_size"] = output_size
            out.append(Sample((distinct(rng, pooled.shape), idx, kernel), kwargs, fan_in=1))
        return out
    return samples


def _unpool_errors(nd):
    x = np.zeros((2, 3) + (5,) * nd)
    s = r"\(2, 3" + r", 5" * nd + r"\)"
    return [
        ErrorCase((x, np.zeros((2, 3) + (4,) * nd, dtype=np.int64), 2), {}, ShapeError,
                  r"indices \(2, 3" + r", 4" * nd + r"\).*" + s, "indices shape"),
        ErrorCase((x, np.zeros(x.shape, dtype=np.int64), 2), {"output_size": (20,) * nd}, ShapeError,
                  r"output_size.*" + s, "output_size out of range"),
        ErrorCase((x, np.full(x.shape, 10**4, dtype=np.int64), 2), {}, ShapeError,
                  r"invalid max index.*" + s, "index out of range"),
        ErrorCase((x, np.zeros(x.shape), 2), {}, TypeError, r"integer", "float indices"),
        ErrorCase((np.zeros((5,) * nd), np.zeros((5,) * nd, dtype=np.int64), 2), {}, ShapeError,
                  r"got shape \(" + ", ".join(["5"] * nd), "rank"),
    ]


def _tf(name):
    return lambda torch, *a, **kw: getattr(torch.nn.functional, name)(*a, **kw)


register(
    OpInfo(
        name="max_pool1d", op=F.max_pool1d, samples=_max1d_samples, ref=R.max_pool1d,
        ref_grad=_ref_pair(R.max_pool1d_backward), torch_fn=_tf("max_pool1d"),
        errors=lambda: _max_errors(1), family="pool", output_index=0,
    ),
    OpInfo(
        name="max_pool2d", op=F.max_pool2d, samples=_max2d_samples, ref=R.max_pool2d,
        ref_grad=_ref_pair(R.max_pool2d_backward), torch_fn=_tf("max_pool2d"),
        errors=lambda: _max_errors(2), family="pool", output_index=0,
    ),
    OpInfo(
        name="avg_pool1d", op=F.avg_pool1d, samples=_avg1d_samples, ref=R.avg_pool1d,
        ref_grad=_ref_pair(R.avg_pool1d_backward), torch_fn=_tf("avg_pool1d"),
        errors=lambda: _avg_errors(1), family="pool",
    ),
    OpInfo(
        name="avg_pool2d", op=F.avg_pool2d, samples=_avg2d_samples, ref=R.avg_pool2d,
        ref_grad=_ref_pair(R.avg_pool2d_backward), torch_fn=_tf("avg_pool2d"),
        errors=lambda: _avg_errors(2), family="pool",
    ),
    OpInfo(
        name="adaptive_avg_pool1d", op=F.adaptive_avg_pool1d, samples=_adaptive1d_samples,
        ref=R.adaptive_avg_pool1d, ref_grad=_ref_pair(R.adaptive_avg_pool1d_backward),
        torch_fn=_tf("adaptive_avg_pool1d"), errors=lambda: _adaptive_errors(1),
        family="pool",
    ),
    OpInfo(
        name="adaptive_avg_pool2d", op=F.adaptive_avg_pool2d, samples=_adaptive2d_samples,
        ref=R.adaptive_avg_pool2d, ref_grad=_ref_pair(R.adaptive_avg_pool2d_backward),
        torch_fn=_tf("adaptive_avg_pool2d"), errors=lambda: _adaptive_errors(2),
        family="pool",
    ),
    OpInfo(
        name="adaptive_max_pool1d", op=F.adaptive_max_pool1d,
        samples=lambda rng: [
            Sample(s.args, {"return_indices": k % 2 == 0}, fan_in=s.fan_in, desc=s.desc)
            for k, s in enumerate(_adaptive1d_samples(rng, positive=True))
        ],
        ref=R.adaptive_max_pool1d, ref_grad=_ref_pair(R.adaptive_max_pool1d_backward),
        torch_fn=_tf("adaptive_max_pool1d"), errors=lambda: _adaptive_errors(1),
        family="pool", output_index=0,
    ),
    OpInfo(
        name="adaptive_max_pool2d", op=F.adaptive_max_pool2d,
        samples=lambda rng: [
            Sample(s.args, {"return_indices": k % 2 == 0}, fan_in=s.fan_in, desc=s.desc)
            for k, s in enumerate(_adaptive2d_samples(rng, positive=True))
        ],
        ref=R.adaptive_max_pool2d, ref_grad=_ref_pair(R.adaptive_max_pool2d_backward),
        torch_fn=_tf("adaptive_max_pool2d"), errors=lambda: _adaptive_errors(2),
        family="pool", output_index=0,
    ),
    OpInfo(
        name="max_unpool1d", op=F.max_unpool1d, samples=_unpool_samples(1), ref=R.max_unpool1d,
        ref_grad=lambda dy, x, idx, *rest, **kw: (R.max_unpool1d_backward(dy, x, idx), None, None),
        torch_fn=_tf("max_unpool1d"), errors=lambda: _unpool_errors(1), family="pool",
    ),
    OpInfo(
        name="max_unpool2d", op=F.max_unpool2d, samples=_unpool_samples(2), ref=R.max_unpool2d,
        ref_grad=lambda dy, x, idx, *rest, **kw: (R.max_unpool2d_backward(dy, x, idx), None, None),
        torch_fn=_tf("max_unpool2d"), errors=lambda: _unpool_errors(2), family="pool",
    ),
)
