"""Loss functions with ``torch.nn.functional``'s names, arguments, defaults and reductions.

``cross_entropy`` (softmax + negative log-likelihood, the lecture's training divergence averaged
over the batch), ``nll_loss``, ``mse_loss``, ``l1_loss``, ``smooth_l1_loss``, ``huber_loss``,
``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``.  The math and the shapes are
documented on the kernels in :mod:`striate.kernels.loss`.

Deliberate differences from PyTorch (all of them refuse input PyTorch would accept or coerce):

* a target whose shape differs from the input's raises :class:`ShapeError` in the elementwise
  losses (PyTorch only warns and broadcasts ``mse_loss``/``l1_loss``/``smooth_l1_loss``/
  ``huber_loss``, which is almost always a bug);
* no dtype promotion: input, target and weights must share one float dtype (TypeError);
* class-index targets may be any integer dtype (PyTorch wants int64 or uint8).

Gradients follow PyTorch: the input always; the target where PyTorch gives one (class
probabilities, mse/l1/smooth_l1/huber, both binary cross-entropies); ``weight`` of the elementwise
losses and of probability-target cross_entropy.  Where PyTorch refuses to differentiate a weight
(class-index ``cross_entropy``/``nll_loss``, ``binary_cross_entropy``, the ``weight`` and
``pos_weight`` of ``binary_cross_entropy_with_logits``) a weight that requires grad raises
RuntimeError, as in PyTorch, rather than silently getting no gradient.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, is_grad_enabled
from ..kernels import loss as K

__all__ = [
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits",
]


def _reduction(size_average, reduce, reduction: str) -> str:
    """PyTorch's legacy ``size_average``/``reduce`` flags win over ``reduction`` when given."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if (size_average and reduce) else ("sum" if reduce else "none")
        warnings.warn(
            f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
            stacklevel=3,
        )
    if reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
                      stacklevel=3)
        reduction = "mean"
    return K.check_reduction(reduction)


def _as_target(target):
    """Tensors pass through (so probability targets can carry gradients); anything else -> array."""
    return target if isinstance(target, Tensor) else backend.asarray(target)


def _array(x):
    return x.data if isinstance(x, Tensor) else (None if x is None else backend.asarray(x))


def _refuse_grad(op: str, name: str, value) -> None:
    """PyTorch cannot differentiate these weights; refuse rather than silently drop the gradient."""
    if isinstance(value, Tensor) and value.requires_grad and is_grad_enabled():
        raise RuntimeError(
            f"{op} is not differentiable with respect to argument '{name}'; this input cannot "
            f"have requires_grad=True (pass {name}.detach())"
        )


class _CrossEntropy(Function):
    @staticmethod
    def forward(ctx, x, target, weight, *, ignore_index, reduction, label_smoothing):
        y, ctx.cache = K.cross_entropy_forward(
            x, target, weight, ignore_index=ignore_index, reduction=reduction,
            label_smoothing=label_smoothing,
        )
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.cross_entropy_backward(dy, ctx.cache, ctx.needs_input_grad)


def cross_entropy(
    input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
    reduction: str = "mean", label_smoothing: float = 0.0,
):
    """Cross-entropy between the softmax of ``input`` (logits) and ``target``.

    Shapes: ``input`` (N, C), (N, C, d1, d2, ...) for per-pixel labels, or (C,) unbatched;
    ``target`` integer class indices (N,), (N, d1, ...) or () -- or class probabilities, a float
    array of the input's shape; ``weight`` (C,).  Output () for 'mean'/'sum', the target
    positions' shape (N, d1, ...) for 'none'.

    With ``logp = log_softmax(input, dim=1)`` (the max is subtracted first, so logits of 1e4 are
    fine), smoothing ``e`` and ``C`` classes::

        indices:        loss = (1 - e) (-w[y] logp[y]) + (e / C) (-sum_c w[c] logp[c]), 0 if ignored
                        'mean' = sum(loss) / sum of w[y] over the non-ignored positions
        probabilities:  loss = -sum_c w[c] ((1 - e) t[c] + e / C) logp[c]
                        'mean' = sum(loss) / number of positions
    """
    reduction = _reduction(size_average, reduce, reduction)
    target = _as_target(target)
    if not np.issubdtype(_array(target).dtype, np.floating):
        _refuse_grad("cross_entropy with class-index targets", "weight", weight)
    return _CrossEntropy.apply(
        input, target, weight, ignore_index=int(ignore_index), reduction=reduction,
        label_smoothing=label_smoothing,
    )


class _NLLLoss(Function):
    @staticmethod
    def forward(ctx, x, target, weight, *, ignore_index, reduction):
        y, ctx.cache = K.nll_loss_forward(x, target, weight, ignore_index=ignore_index, reduction=reduction)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.nll_loss_backward(dy, ctx.cache, ctx.needs_input_grad)


def nll_loss(
    input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
    reduction: str = "mean",
):
    """Negative log-likelihood of log-probabilities ``input`` (N, C, d1, ...) or (C,).

    ``loss[n, ...] = -weight[y] input[n, y, ...]`` for ``y = target[n, ...]`` (0 where
    ``y == ignore_index``); 'mean' divides by the summed weights of the non-ignored targets.
    """
    reduction = _reduction(size_average, reduce, reduction)
    _refuse_grad("nll_loss", "weight", weight)
    return _NLLLoss.apply(input, _as_target(target), weight, ignore_index=int(ignore_index), reduction=reduction)


class _MSELoss(Function):
    @staticmethod
    def forward(ctx, x, t, w, *, reduction):
        y, ctx.cache = K.mse_loss_forward(x, t, w, reduction=reduction)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.mse_loss_backward(dy, ctx.cache, ctx.needs_input_grad)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    """Mean squared error ``w (input - target)^2``; shapes must match exactly.

    'mean' divides by the element count, or by ``sum(weight)`` when a ``weight`` of the input's
    shape is given (PyTorch 2.13's weighted form).
    """
    reduction = _reduction(size_average, reduce, reduction)
    return _MSELoss.apply(input, target, weight, reduction=reduction)


class _L1Loss(Function):
    @staticmethod
    def forward(ctx, x, t, w, *, reduction):
        y, ctx.cache = K.l1_loss_forward(x, t, w, reduction=reduction)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.l1_loss_backward(dy, ctx.cache, ctx.needs_input_grad)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    """Mean absolute error ``w |input - target|``; 'mean' as in :func:`mse_loss`."""
    reduction = _reduction(size_average, reduce, reduction)
    return _L1Loss.apply(input, target, weight, reduction=reduction)


class _SmoothL1Loss(Function):
    @staticmethod
    def forward(ctx, x, t, *, reduction, beta):
        y, ctx.cache = K.smooth_l1_loss_forward(x, t, reduction=reduction, beta=beta)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.smooth_l1_loss_backward(dy, ctx.cache, ctx.needs_input_grad)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
    """``0.5 d^2 / beta`` for ``|d| < beta``, ``|d| - 0.5 beta`` otherwise (``d = input - target``)."""
    reduction = _reduction(size_average, reduce, reduction)
    return _SmoothL1Loss.apply(input, target, reduction=reduction, beta=beta)


class _HuberLoss(Function):
    @staticmethod
    def forward(ctx, x, t, w, *, reduction, delta):
        y, ctx.cache = K.huber_loss_forward(x, t, w, reduction=reduction, delta=delta)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.huber_loss_backward(dy, ctx.cache, ctx.needs_input_grad)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    """``0.5 d^2`` for ``|d| < delta``, ``delta (|d| - 0.5 delta)`` otherwise, times ``weight``;
    'mean' divides by the element count (also with a weight, as PyTorch)."""
    reduction = _reduction(None, None, reduction)
    return _HuberLoss.apply(input, target, weight, reduction=reduction, delta=delta)


class _BCELoss(Function):
    @staticmethod
    def forward(ctx, x, t, w, *, reduction):
        y, ctx.cache = K.binary_cross_entropy_forward(x, t, w, reduction=reduction)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.binary_cross_entropy_backward(dy, ctx.cache, ctx.needs_input_grad) + (None,)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
    """``-w (t log x + (1 - t) log(1 - x))`` with each log clamped at -100; x, t in [0, 1].

    ``weight`` broadcasts to the input's shape; 'mean' divides by the element count.
    """
    reduction = _reduction(size_average, reduce, reduction)
    _refuse_grad("binary_cross_entropy", "weight", weight)
    return _BCELoss.apply(input, target, weight, reduction=reduction)


class _BCEWithLogitsLoss(Function):
    @staticmethod
    def forward(ctx, x, t, w, pw, *, reduction):
        y, ctx.cache = K.binary_cross_entropy_with_logits_forward(x, t, w, pw, reduction=reduction)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.binary_cross_entropy_with_logits_backward(dy, ctx.cache, ctx.needs_input_grad) + (None, None)


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None,
):
    """Sigmoid and binary cross-entropy fused into the stable
    ``w ((1 - t) x - (1 + (pos_weight - 1) t) log_sigmoid(x))``; finite for any logit.

    ``weight`` and ``pos_weight`` (e.g. (C,) for the last axis) broadcast to the input's shape.
    """
    reduction = _reduction(size_average, reduce, reduction)
    _refuse_grad("binary_cross_entropy_with_logits", "weight", weight)
    _refuse_grad("binary_cross_entropy_with_logits", "pos_weight", pos_weight)
    return _BCEWithLogitsLoss.apply(input, target, weight, pos_weight, reduction=reduction)
