"""Learning curves: loss and accuracy against epoch, training and validation side by side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ._figure import new_figure, save_png

__all__ = ["plot_curves"]


def _records(history) -> list[Mapping]:
    """Per-epoch dicts from a list of dicts, a dict of lists, or an object with ``.history``."""
    history = getattr(history, "history", history)
    if isinstance(history, Mapping):  # {"train_loss": [...], "val_loss": [...], ...}
        n = max((len(v) for v in history.values() if isinstance(v, Sequence)), default=0)
        return [{k: (v[i] if isinstance(v, Sequence) and i < len(v) else None) for k, v in history.items()}
                for i in range(n)]
    if not isinstance(history, Sequence) or isinstance(history, (str, bytes)):
        raise TypeError(f"history must be a list of per-epoch dicts, got {type(history).__name__}")
    for i, rec in enumerate(history):
        if not isinstance(rec, Mapping):
            raise TypeError(f"history[{i}] must be a dict of metrics, got {type(rec).__name__}")
    return list(history)


def _number(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _series(records, keys):
    """{key: (epochs, values)} for the metric keys present, skipping epochs where a key is missing."""
    out = {}
    for key in keys:
        xs, ys = [], []
        for i, rec in enumerate(records):
            y = _number(rec.get(key))
            if y is None:
                continue
            x = _number(rec.get("epoch"))
            xs.append(x if x is not None else i + 1)
            ys.append(y)
        if ys:
            out[key] = (xs, ys)
    return out


def _metric_keys(records, word):
    """Keys mentioning ``word`` ('loss' or 'acc'), train first then val then the rest, in first-seen order."""
    seen = []
    for rec in records:
        for k in rec:
            if isinstance(k, str) and word in k.lower() and k not in seen:
                seen.append(k)
    def rank(k):
        k = k.lower()
        return 0 if k.startswith("train") else 1 if k.startswith("val") else 2

    return sorted(seen, key=lambda k: (rank(k), seen.index(k)))


def _label(key: str) -> str:
    return key.replace("_", " ")


def plot_curves(history, path, title: str | None = None, dpi: int = 100):
    """PNG of loss (left) and accuracy (right) against epoch.

    ``history``: a list of per-epoch dicts such as ``{"epoch": 3, "train_loss": 0.41,
    "train_acc": 0.87, "val_loss": 0.45, "val_acc": 0.86}`` (also accepted: a dict of lists, or an
    object with a ``.history`` attribute).  Every key containing ``loss`` is drawn in the loss
    panel and every key containing ``acc`` in the accuracy panel; keys missing from some epochs,
    or ``None``/NaN values, are skipped.  Without an ``epoch`` key, epochs count from 1.
    Returns ``path`` as a :class:`pathlib.Path`.
    """
    records = _records(history)
    panels = [("loss", _series(records, _metric_keys(records, "loss"))),
              ("accuracy", _series(records, _metric_keys(records, "acc")))]
    with new_figure(figsize=(10, 4)) as fig:
        axes = fig.subplots(1, 2)
        for ax, (ylabel, series) in zip(axes, panels):
            for key, (xs, ys) in series.items():
                style = "--" if key.lower().startswith("val") else "-"
                ax.plot(xs, ys, style, marker="o" if len(xs) < 30 else None, markersize=3, label=_label(key))
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(ylabel)
            ax.grid(True, alpha=0.3)
            if series:
                ax.legend()
                if all(float(x).is_integer() for xs, _ in series.values() for x in xs):
                    from matplotlib.ticker import MaxNLocator

                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            else:
                ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center", transform=ax.transAxes)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return save_png(fig, path, dpi=dpi)
