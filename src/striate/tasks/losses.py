"""Losses for dense and multi-task outputs, built from differentiable ``striate.functional`` ops.

* Per-pixel cross-entropy is ``F.cross_entropy`` on ``(N, K, H, W)`` logits with ``(N, H, W)``
  labels (``ignore_index`` pixels count neither in the sum nor in the mean).
* :func:`dice_loss` -- one minus the soft Dice coefficient, averaged over classes::

      p = softmax(logits) over K,   t = one-hot(target),   m = 1 on pixels that are not ignored
      dice_k = (2 sum(m p_k t_k) + eps) / (sum(m p_k) + sum(m t_k) + eps)    (sums over N, H, W)
      loss = 1 - mean_k dice_k

  It measures overlap rather than per-pixel likelihood, so small objects weigh as much as the
  background.
* :func:`localization_loss` -- cross-entropy on the class logits plus ``box_weight`` times the
  smooth-L1 distance between predicted and true normalised box corners.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor

__all__ = ["dice_loss", "SegmentationLoss", "LocalizationLoss", "localization_loss", "one_hot"]


def _array(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def one_hot(target: np.ndarray, num_classes: int, ignore_index: int = -100, dtype=np.float32) -> np.ndarray:
    """``(N, K, H, W)`` one-hot of integer labels ``(N, H, W)``; ignored pixels are all-zero."""
    target = np.asarray(target)
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bad.any():
        raise ValueError(f"target labels must lie in [0, {num_classes - 1}] (or be ignore_index={ignore_index}), "
                         f"got values {np.unique(target[bad])[:5].tolist()}")
    classes = np.arange(num_classes).reshape(1, -1, *([1] * (target.ndim - 1)))
    return ((target[:, None] == classes) & valid[:, None]).astype(dtype)


def dice_loss(logits, target, ignore_index: int = -100, eps: float = 1.0):
    """``1 - mean_k dice_k`` of ``softmax(logits)`` (N, K, H, W) against integer ``target`` (N, H, W)."""
    if logits.ndim < 3:
        raise ValueError(f"dice_loss needs (N, K, H, W) logits, got shape {tuple(logits.shape)}")
    target = _array(target)
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"dice_loss: logits {tuple(logits.shape)} need a target of shape "
                         f"{(logits.shape[0], *logits.shape[2:])}, got {target.shape}")
    k = logits.shape[1]
    dtype = logits.dtype
    t = one_hot(target, k, ignore_index, dtype=dtype)
    valid = (target != ignore_index).astype(dtype)[:, None]  # (N, 1, H, W)
    p = F.softmax(logits, dim=1) * valid
    dims = (0, *range(2, logits.ndim))
    intersection = F.sum(p * t, dim=dims)
    totals = F.sum(p, dim=dims) + t.sum(axis=dims)
    dice = (intersection * 2.0 + eps) / (totals + eps)
    return 1.0 - F.mean(dice)


class SegmentationLoss:
    """``cross_entropy + dice_weight * dice_loss`` on (N, K, H, W) logits and (N, H, W) labels."""

    def __init__(self, dice_weight: float = 0.5, ignore_index: int = -100):
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        self.dice_weight, self.ignore_index = float(dice_weight), int(ignore_index)

    def __call__(self, logits, target):
        labels = _array(target).astype(np.int64, copy=False)
        if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(f"segmentation needs (N, K, H, W) logits and (N, H, W) labels, got "
                             f"{tuple(logits.shape)} and {labels.shape}")
        loss = F.cross_entropy(logits, labels, ignore_index=self.ignore_index)
        if self.dice_weight:
            loss = loss + self.dice_weight * dice_loss(logits, labels, ignore_index=self.ignore_index)
        return loss


def localization_loss(outputs, targets, num_classes: int, box_weight: float = 5.0, beta: float = 0.05):
    """Multi-task loss of a localizer.

    ``outputs`` (N, K + 4): class logits then normalised box ``(x0, y0, x1, y1)``; ``targets``
    (N, 5): the class (as a number) then the true normalised box.  Returns
    ``cross_entropy(logits, class) + box_weight * smooth_l1(box, true_box, beta)`` (the smooth-L1
    term averaged over the 4N coordinates; quadratic for errors below ``beta``, linear above).
    """
    t = _array(targets)
    if outputs.ndim != 2 or outputs.shape[1] != num_classes + 4 or t.shape != (outputs.shape[0], 5):
        raise ValueError(f"localization needs outputs (N, {num_classes} + 4) and targets (N, 5), got "
                         f"{tuple(outputs.shape)} and {t.shape}")
    labels = t[:, 0].astype(np.int64)
    boxes = np.ascontiguousarray(t[:, 1:], dtype=outputs.dtype)
    ce = F.cross_entropy(outputs[:, :num_classes], labels)
    return ce + box_weight * F.smooth_l1_loss(outputs[:, num_classes:], boxes, beta=beta)


class LocalizationLoss:
    """:func:`localization_loss` with its options bound: ``loss_fn(outputs, targets)``."""

    def __init__(self, num_classes: int, box_weight: float = 5.0, beta: float = 0.05):
        if box_weight < 0 or beta <= 0:
            raise ValueError(f"box_weight must be >= 0 and beta > 0, got {box_weight}, {beta}")
        self.num_classes, self.box_weight, self.beta = int(num_classes), float(box_weight), float(beta)

    def __call__(self, outputs, targets):
        return localization_loss(outputs, targets, self.num_classes, self.box_weight, self.beta)
