"""Registry entries: batch_norm (training and eval), dropout and dropout2d.

batch_norm samples put the running statistics among the positional args (so the float32 runs
convert them too) but mark them ``nograd``.  The op wrapper hands F.batch_norm fresh copies
(the generic tests require the sample arrays to stay unchanged) and returns
``(y, running_mean_after, running_var_after)`` -- or ``(y,)`` when none are tracked -- so the
updated statistics are compared with the reference and with PyTorch as extra outputs.

Dropout is random; the wrapper ops take a ``seed`` and pass
``generator=np.random.default_rng(seed)`` freshly on every call, so each call draws the same mask
and gradcheck sees a deterministic function.  The reference and the torch twin rebuild that mask
with ``kernels.norm.dropout_mask`` and apply it (torch computes ``input * mask / (1 - p)``).
"""

from __future__ import annotations

import numpy as np

import striate.functional as F
from striate.autograd import Tensor
from striate.kernels import norm as K
from striate.kernels.shapes import ShapeError
from striate.reference import norm as R

from . import ErrorCase, OpInfo, Sample, register


# --------------------------------------------------------------------------- batch norm
def _copy_buffer(v):
    if v is None:
        return None
    return (v.data if isinstance(v, Tensor) else v).copy()  # stays on its device


def bn_op(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """F.batch_norm on copies of the running statistics; returns y and the updated copies."""
    rm, rv = _copy_buffer(running_mean), _copy_buffer(running_var)
    y = F.batch_norm(x, rm, rv, weight, bias, training=training, momentum=momentum, eps=eps)
    return (y,) if rm is None else (y, rm, rv)


def bn_ref(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    y, rm, rv = R.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    return (y,) if rm is None else (y, rm, rv)


def bn_ref_grad(dy, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    dx, dw, db = R.batch_norm_backward(dy, x, running_mean, running_var, weight, bias, training, eps)
    return dx, None, None, dw, db


def bn_torch(torch, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    # run_torch already hands over copies, which torch updates in place
    y = torch.nn.functional.batch_norm(
        x, running_mean, running_var, weight, bias, training=training, momentum=momentum, eps=eps)
    return (y,) if running_mean is None else (y, running_mean, running_var)


def _stats(rng, C):
    return rng.standard_normal(C), rng.random(C) + 0.5


def _bn_samples(training):
    def samples(rng):
        out = []
        configs = [  # shape, affine, track stats, momentum, eps
            ((5, 3), "wb", True, 0.1, 1e-5),
            ((2, 3, 5), "wb", True, 0.3, 1e-3),
            ((2, 3, 3, 4), "wb", True, 0.1, 1e-5),
            ((3, 2, 2, 3), "", True, 0.5, 1e-5),
            ((2, 2, 5), "w", True, 0.1, 1e-2),
            ((2, 3, 2, 2), "wb", False, 0.1, 1e-5),
            ((2, 2, 2, 2, 2), "wb", True, 0.2, 1e-5),
        ]
        for shape, affine, track, momentum, eps in configs:
            if not training and not track:
                continue
            C = shape[1]
            x = rng.standard_normal(shape) * 2.0 + 0.5
            rm, rv = _stats(rng, C) if track else (None, None)
            args = [x, rm, rv]
            if affine:
                args.append(rng.standard_normal(C))
                args.append(rng.standard_normal(C) if "b" in affine else None)
            M = x.size // C
            out.append(Sample(
                tuple(args), {"training": training, "momentum": momentum, "eps": eps}, nograd=(1, 2),
                desc=f"{shape} affine={affine or 'none'} track={track}", fan_in=M,
            ))
        return out
    return samples


def _bn_errors():
    x = np.zeros((2, 3, 5))
    rm, rv = np.zeros(3), np.ones(3)
    return [
        ErrorCase((x, np.zeros(4), rv), {"training": True}, ShapeError,
                  r"running_mean.*\(4,\).*\(3,\).*\(2, 3, 5\)", "running_mean shape"),
        ErrorCase((x, rm, np.ones((3, 1))), {"training": False}, ShapeError,
                  r"running_var.*\(3, 1\).*\(2, 3, 5\)", "running_var shape"),
        ErrorCase((x, rm, rv, np.ones(2)), {"training": True}, ShapeError,
                  r"weight.*\(2,\).*\(2, 3, 5\)", "weight shape"),
        ErrorCase((x, rm, rv, np.ones(3), np.ones(5)), {"training": True}, ShapeError,
                  r"bias.*\(5,\).*\(2, 3, 5\)", "bias shape"),
        ErrorCase((np.zeros((1, 3)), rm, rv), {"training": True}, ValueError,
                  r"Expected more than 1 value per channel when training, got input size \(1, 3\)",
                  "one value per channel"),
        ErrorCase((np.zeros((1, 3, 1, 1)), None, None), {"training": True}, ValueError,
                  r"more than 1 value per channel.*\(1, 3, 1, 1\)", "one value per channel 4-D"),
        ErrorCase((np.zeros(3), rm, rv), {"training": True}, ShapeError, r"\(3,\)", "rank 1"),
        ErrorCase((np.zeros((2, 3, 2, 2, 2, 2)), rm, rv), {"training": True}, ShapeError,
                  r"\(2, 3, 2, 2, 2, 2\)", "rank 6"),
        ErrorCase((x.astype(np.float32), rm.astype(np.float32), rv.astype(np.float32), np.ones(3)),
                  {"training": True}, TypeError, r"float32.*float64", "dtype mismatch weight"),
        ErrorCase((x.astype(np.float32), rm, rv), {"training": False}, TypeError,
                  r"float32.*float64", "dtype mismatch running stats"),
        ErrorCase((x, None, None), {"training": False}, ValueError,
                  r"running_mean must be defined in evaluation mode", "eval without stats"),
        ErrorCase((x, rm, rv), {"training": True, "momentum": None}, NotImplementedError,
                  r"momentum=None", "momentum None"),
    ]


# --------------------------------------------------------------------------- dropout
def _mask(shape, p, training, seed, channel_wise):
    """The mask F.dropout(2d) draws with generator=default_rng(seed); None when it is the identity."""
    if not training or p == 0:
        return None
    mshape = K.dropout2d_mask_shape(shape) if channel_wise else tuple(shape)
    if p == 1:
        return np.zeros(mshape, dtype=bool)
    return K.dropout_mask(mshape, p, np.random.default_rng(seed))


def _dropout_entry(name, channel_wise):
    fn = F.dropout2d if channel_wise else F.dropout

    def op(x, p=0.5, training=True, seed=0):
        return fn(x, p, training, generator=np.random.default_rng(seed))

    def ref(x, p=0.5, training=True, seed=0):
        mask = _mask(x.shape, p, training, seed, channel_wise)
        return x.copy() if mask is None else R.dropout(x, mask, p)

    def ref_grad(dy, x, p=0.5, training=True, seed=0):
        mask = _mask(x.shape, p, training, seed, channel_wise)
        return (dy.copy() if mask is None else R.dropout_backward(dy, mask, p)),

    def torch_fn(torch, x, p=0.5, training=True, seed=0):
        mask = _mask(tuple(x.shape), p, training, seed, channel_wise)
        if mask is None:
            return x
        return x * torch.from_numpy(mask).to(x.dtype) / (1 - p) if p < 1 else x * 0.0

    if channel_wise:
        def samples(rng):
            return [
                Sample((rng.standard_normal((2, 5, 3, 3)),), {"p": 0.5, "seed": 1}),
                Sample((rng.standard_normal((6, 2, 3)),), {"p": 0.3, "seed": 2}, desc="(C, H, W)"),
                Sample((rng.standard_normal((2, 3, 2, 2)),), {"p": 0.5, "training": False}, desc="eval"),
                Sample((rng.standard_normal((2, 3, 2, 2)),), {"p": 1.0, "seed": 3}, desc="p=1"),
            ]

        def errors():
            return [
                ErrorCase((np.zeros((2, 3)),), {"p": 0.5}, ShapeError, r"\(2, 3\)", "rank 2"),
                ErrorCase((np.zeros((2, 3, 4, 4)),), {"p": -0.1}, ValueError, r"between 0 and 1, but got -0.1", "p<0"),
            ]
    else:
        def samples(rng):
            return [
                Sample((rng.standard_normal((4, 6)),), {"p": 0.5, "seed": 1}),
                Sample((rng.standard_normal((2, 3, 4)),), {"p": 0.2, "seed": 7}),
                Sample((rng.standard_normal((2, 3, 2, 2)),), {"p": 0.8, "seed": 3}),
                Sample((rng.standard_normal((3, 4)),), {"p": 0.0, "seed": 0}, desc="p=0"),
                Sample((rng.standard_normal((3, 4)),), {"p": 0.5, "training": False}, desc="eval"),
                Sample((rng.standard_normal((3, 4)),), {"p": 1.0, "seed": 0}, desc="p=1"),
            ]

        def errors():
            return [
                ErrorCase((np.zeros((2, 3)),), {"p": 1.5}, ValueError, r"between 0 and 1, but got 1.5", "p>1"),
                ErrorCase((np.zeros((2, 3)),), {"p": -0.5, "training": False}, ValueError,
                          r"between 0 and 1, but got -0.5", "p<0 eval"),
                ErrorCase((np.zeros((2, 3), dtype=np.int64),), {"p": 0.5}, TypeError, r"int64", "integer input"),
            ]

    return OpInfo(name=name, op=op, samples=samples, ref=ref, ref_grad=ref_grad, torch_fn=torch_fn,
                  errors=errors, family="norm")


register(
    OpInfo(name="batch_norm", op=bn_op, samples=_bn_samples(True), ref=bn_ref, ref_grad=bn_ref_grad,
           torch_fn=bn_torch, errors=_bn_errors, family="norm", output_index=0),
    OpInfo(name="batch_norm_eval", op=bn_op, samples=_bn_samples(False), ref=bn_ref, ref_grad=bn_ref_grad,
           torch_fn=bn_torch, family="norm", output_index=0),
    _dropout_entry("dropout", channel_wise=False),
    _dropout_entry("dropout2d", channel_wise=True),
)
