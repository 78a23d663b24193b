"""Confusion matrix as a heat map with counts in the cells."""

from __future__ import annotations

import numpy as np

from ._figure import new_figure, save_png, to_numpy

__all__ = ["confusion_matrix_plot"]


def confusion_matrix_plot(cm, path, class_names=None, *, normalize: bool = False, cmap: str = "Blues",
                          title: str | None = None, dpi: int = 100):
    """PNG of a (K, K) confusion matrix: rows are true classes, columns predicted ones.

    ``class_names`` (K strings) label the axes (default 0..K-1).  ``normalize=True`` divides each
    row by its total, so the diagonal reads as per-class recall.  Cell values are printed when
    K <= 30.  Returns ``path`` as a :class:`pathlib.Path`.
    """
    m = to_numpy(cm, "cm")
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {tuple(m.shape)}")
    k = m.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names for a {k}x{k} confusion matrix")
    counts = m
    if normalize:
        totals = m.sum(axis=1, keepdims=True)
        m = m / np.where(totals > 0, totals, 1.0)
    integral = not normalize and np.allclose(counts, np.round(counts))
    side = min(14.0, max(4.0, 0.45 * k + 2.0))
    with new_figure(figsize=(side + 1.0, side), dpi=dpi) as fig:
        ax = fig.add_subplot(1, 1, 1)
        vmax = 1.0 if normalize else max(float(m.max()), 1e-12)
        im = ax.imshow(m, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
        ax.set_xticks(np.arange(k))
        ax.set_yticks(np.arange(k))
        long = max(len(n) for n in names) > 3
        ax.set_xticklabels(names, rotation=45 if long else 0, ha="right" if long else "center")
        ax.set_yticklabels(names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 30:
            size = 9 if k <= 12 else 7 if k <= 20 else 5
            for r in range(k):
                for c in range(k):
                    v = m[r, c]
                    text = f"{int(round(v))}" if integral else f"{v:.2f}"
                    ax.text(c, r, text, ha="center", va="center", fontsize=size,
                            color="white" if v > 0.5 * vmax else "black")
        total = counts.sum()
        acc = np.trace(counts) / total if total > 0 else float("nan")
        ax.set_title(title or f"confusion matrix (accuracy {acc:.1%})")
        fig.tight_layout()
        return save_png(fig, path, dpi=dpi)
