"""Classification metrics on NumPy arrays: accuracy, top-k, confusion matrix, per-class accuracy."""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "topk_accuracy", "confusion_matrix", "per_class_accuracy"]


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    return labels


def accuracy(logits, labels) -> float:
    """Fraction of rows whose largest logit is at the label."""
    return topk_accuracy(logits, labels, 1)


def topk_accuracy(logits, labels, k: int = 5) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits (ties broken by position)."""
    logits, labels = np.asarray(logits), _labels(labels)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match (expected (N, C) and (N,))")
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k] if k < logits.shape[1] else np.argsort(-logits, axis=1)
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(predictions, labels, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = how many samples of true class ``i`` were predicted as ``j``."""
    predictions, labels = _labels(predictions), _labels(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (NaN for classes with no samples)."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)
