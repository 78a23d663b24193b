"""Normalisation and dropout: ``batch_norm``, ``dropout``, ``dropout2d`` (PyTorch's signatures).

Shapes:

* ``batch_norm``: input (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); ``running_mean``,
  ``running_var``, ``weight``, ``bias`` (C,) or None; output the input's shape.
* ``dropout``: any shape, output the same.  ``dropout2d``: (N, C, H, W) or (C, H, W); whole
  channels (an H x W plane each) are kept or zeroed together.

The formulas are in :mod:`striate.kernels.norm`.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .. import random as _random
from ..autograd import Function, Tensor
from ..autograd.tensor import as_array
from ..kernels import norm as K
from ..kernels.shapes import check_float, fmt_shape

__all__ = ["batch_norm", "dropout", "dropout2d"]


# --------------------------------------------------------------------------- batch norm
class _BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, *, training, momentum, eps):
        K.check_batch_norm_args(x, running_mean, running_var, weight, bias, training, momentum, eps)
        if training and running_mean is not None:
            for name, buf in (("running_mean", running_mean), ("running_var", running_var)):
                if not buf.flags.writeable:
                    raise ValueError(
                        f"batch_norm: {name} {fmt_shape(buf.shape)} is read-only but training "
                        "updates it in place"
                    )
        y, cache = K.batch_norm_forward(
            x, weight, bias, running_mean, running_var, training=training, eps=eps,
        )
        if training and running_mean is not None:
            # the only write to the buffers: once per forward, never in backward
            K.batch_norm_update_running_stats(running_mean, running_var, cache, momentum)
        ctx.cache = cache
        return y

    @staticmethod
    def backward(ctx, dy):
        need = ctx.needs_input_grad
        dx, dw, db = K.batch_norm_backward(dy, ctx.cache, (need[0], need[3], need[4]))
        return dx, None, None, dw, db


def _buffer(v, name):
    """A running statistic: a Tensor or ndarray updated in place (never converted or copied)."""
    if v is None or isinstance(v, (Tensor, np.ndarray)) or backend.device_of(v) != "cpu":
        return v
    raise TypeError(f"batch_norm: {name} must be a Tensor, an ndarray or None, got {type(v).__name__}")


def _operand(v):
    return v if v is None or isinstance(v, Tensor) else backend.asarray(v)


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-05,
):
    """Batch normalisation over every axis but C, as ``torch.nn.functional.batch_norm``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel, where in training
    ``mean``/``var`` are the batch mean and biased variance over the N * prod(spatial) values of
    each channel, and in eval (``training=False``) the running statistics.

    In training, ``running_mean`` / ``running_var`` (striate Tensors or ndarrays of shape (C,),
    or None to skip tracking) are updated **in place**, once per call::

        running_mean = (1 - momentum) * running_mean + momentum * batch_mean
        running_var  = (1 - momentum) * running_var  + momentum * batch_var * M / (M - 1)

    (the unbiased variance, M = values per channel).  The input is never modified.
    ``momentum=None`` (PyTorch modules' cumulative average) raises NotImplementedError here: the
    module computes the factor 1 / num_batches_tracked and passes it as a float.

    Shapes: input (N, C, *S) with 0 to 3 spatial axes; parameters and buffers (C,); output as
    input.  Raises ShapeError naming the shapes for a parameter not shaped (C,) or a wrong rank,
    ValueError for a single value per channel in training or missing running statistics in eval,
    TypeError for a dtype mismatch.
    """
    running_mean = _buffer(running_mean, "running_mean")
    running_var = _buffer(running_var, "running_var")
    return _BatchNorm.apply(
        _operand(input), running_mean, running_var, _operand(weight), _operand(bias),
        training=bool(training), momentum=momentum, eps=eps,
    )


# --------------------------------------------------------------------------- dropout
class _Dropout(Function):
    @staticmethod
    def forward(ctx, x, *, mask, p):
        y, ctx.cache = K.dropout_forward(x, mask, p)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (K.dropout_backward(dy, ctx.cache),)


def _resolve_generator(generator) -> np.random.Generator:
    if generator is None:
        return _random.default_generator()
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator or None, got {type(generator).__name__}")
    return generator


def _identity(input):
    # PyTorch returns the input itself when dropout does nothing; so do we
    return input if isinstance(input, Tensor) else Tensor._wrap(backend.asarray(input))


def _dropout(input, p, training, generator, mask_shape_of):
    p = K.check_dropout_p(p)
    if not training or p == 0.0:
        return _identity(input)
    x = as_array(input)
    check_float(x, "dropout: input")
    shape = mask_shape_of(x.shape)
    gen = _resolve_generator(generator)
    mask = np.zeros(shape, dtype=bool) if p == 1.0 else K.dropout_mask(shape, p, gen)
    # drawn on the host from the NumPy generator (the same mask on every device), then moved
    mask = backend.to_device(mask, backend.device_of(x))
    return _Dropout.apply(input if isinstance(input, Tensor) else x, mask=mask, p=p)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False, generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p).

    ``y = x * mask / (1 - p)`` with ``mask`` Bernoulli(1 - p) per element, drawn from
    ``generator`` (a ``numpy.random.Generator``; None uses :func:`striate.random.default_generator`,
    seeded by :func:`striate.random.manual_seed`).  With ``p == 0`` or ``training=False`` the
    input is returned unchanged (the same tensor); with ``p == 1`` the output is zero.  The mask
    is saved for backward: ``dx = dy * mask / (1 - p)``.

    ``inplace`` is accepted for compatibility with PyTorch but ignored: striate never modifies
    the input, it always returns a new tensor.  Shape: any; output as input.  ``p`` outside
    [0, 1] raises ValueError.
    """
    return _dropout(input, p, training, generator, lambda shape: shape)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False, generator=None):
    """Zero whole channels with probability ``p`` and scale the rest by 1 / (1 - p).

    Input (N, C, H, W) or (C, H, W) (unbatched, as PyTorch documents it); each of the N * C (or
    C) feature maps is kept or zeroed as a whole: ``y[n, c] = x[n, c] * mask[n, c] / (1 - p)``.
    Other arguments as :func:`dropout` (``inplace`` accepted, never modifies the input).

    Note: PyTorch 2.x still treats a 3-D input as (N, C, L) with a deprecation warning; striate
    follows its documented (C, H, W) meaning.  Other ranks raise ShapeError.
    """
    return _dropout(input, p, training, generator, K.dropout2d_mask_shape)
