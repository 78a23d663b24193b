"""Segmentation and localization metrics on NumPy arrays.

* Pixel accuracy: the fraction of (non-ignored) pixels whose predicted class is right.
* IoU of class k: ``|pred == k and true == k| / |pred == k or true == k|`` over all pixels, read
  off the confusion matrix as ``cm[k, k] / (row_k + column_k - cm[k, k])``; NaN for a class that
  appears in neither.  mIoU is the mean over the classes that appear.
* Box IoU: the area of the intersection of two boxes over the area of their union.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pixel_confusion", "pixel_accuracy", "iou_per_class", "mean_iou", "segmentation_scores", "box_iou"]


def pixel_confusion(pred, target, num_classes: int, ignore_index: int = -100) -> np.ndarray:
    """``cm[i, j]``: pixels of true class ``i`` predicted as ``j`` (ignored pixels left out)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"predictions {pred.shape} and targets {target.shape} differ in shape")
    keep = target != ignore_index
    p, t = pred[keep].astype(np.int64), target[keep].astype(np.int64)
    if p.size and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got predictions in [{p.min()}, {p.max()}] "
                         f"and targets in [{t.min()}, {t.max()}]")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def pixel_accuracy(pred, target, ignore_index: int = -100) -> float:
    pred, target = np.asarray(pred), np.asarray(target)
    keep = target != ignore_index
    return float(np.mean(pred[keep] == target[keep])) if keep.any() else float("nan")


def iou_per_class(cm) -> np.ndarray:
    """IoU of every class from a confusion matrix (NaN for classes neither predicted nor present)."""
    cm = np.asarray(cm, dtype=np.float64)
    inter = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def mean_iou(cm) -> float:
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def segmentation_scores(pred, target, num_classes: int, ignore_index: int = -100) -> dict:
    """``{'pixel_accuracy', 'iou' (per class), 'miou', 'confusion'}`` of label maps (N, H, W)."""
    cm = pixel_confusion(pred, target, num_classes, ignore_index)
    total = cm.sum()
    return {"pixel_accuracy": float(np.trace(cm) / total) if total else float("nan"),
            "iou": iou_per_class(cm), "miou": mean_iou(cm), "confusion": cm}


def box_iou(a, b) -> np.ndarray:
    """IoU of boxes ``(..., 4)`` given as corners ``(x0, y0, x1, y1)`` (broadcasting); 0 for empty unions.

    Degenerate boxes (``x1 < x0``) count as empty.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 coordinates (x0, y0, x1, y1), got shapes {a.shape} and {b.shape}")

    def area(x):
        return np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)

    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = area(a) + area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
