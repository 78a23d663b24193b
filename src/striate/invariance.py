"""How invariant is a trained model?  Accuracy under controlled transformations, and test-time augmentation.

A CNN's weight sharing and pooling give it some tolerance to small shifts; tolerance to larger
shifts, flips, scaling, rotation and deformation it learns only from data that shows them
(:mod:`striate.data.transforms`).  This module measures what a model actually learned: it
applies one *fixed* transformation of a given strength to every held-out image and records the
accuracy, for a sweep of strengths::

    from striate.invariance import measure_invariance, default_sweeps
    rows = measure_invariance(model, raw_images, labels, normalize=norm)     # list of dicts
    # {"transform": "rotation", "strength": 30.0, "accuracy": 0.93, "loss": 0.24, "n": 1000}, ...

The transformations act on the *raw* images (before standardisation), so "zeros" boundary
handling fills with true black -- the background of digit images -- and the result is then
standardised with the statistics the model was trained with.

Sweeps (:func:`default_sweeps`): rotation -45..45 degrees, scale 0.7..1.3, translation -4..4 px
along x and along y, the flips (none, horizontal, vertical, transpose) and elastic deformation
with alpha 0..40 (sigma 4, one fixed random field per image scaled by alpha, so the curve is smooth).

``striate invariance RUN [RUN2] --out DIR`` (:func:`compare`) writes ``invariance.csv`` (long
format: model, transform, strength, accuracy, loss, n), ``invariance.md`` (one table per
transformation, one column per model) and ``invariance.png`` (accuracy against strength, the
models as lines on shared axes).

Test-time augmentation (:func:`tta_predict`) averages the class probabilities over a few
transformed copies of each image -- flips and small shifts -- which smooths over the positions
the network is least sure about.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .data import transforms as T

__all__ = [
    "Sweep", "default_sweeps", "SWEEP_NAMES", "measure_invariance", "load_checkpoint_data",
    "invariance_for_checkpoint", "write_csv", "format_markdown", "plot_invariance", "compare",
    "tta_views", "tta_predict", "tta_evaluate",
]


# ============================================================================ sweeps


@dataclass
class Sweep:
    """One transformation and the strengths to try: ``make(strength)`` returns a fixed transform
    (``None`` for the identity).  ``numeric`` sweeps are plotted as lines, others as bars."""

    name: str
    axis_label: str
    strengths: list
    make: Callable[[object], object]
    numeric: bool = True
    reference: object = None  # the identity strength (marked on plots)


def _grid(lo, hi, step):
    k = int(round((hi - lo) / step))
    return [round(lo + i * step, 6) for i in range(k + 1)]


def default_sweeps(boundary: str = "zeros", quick: bool = False, elastic_sigma: float = 4.0) -> list[Sweep]:
    """The standard sweeps; ``quick`` keeps every second or third strength (same end points)."""
    q = 3 if quick else 1
    q2 = 2 if quick else 1
    flips = {
        "none": None,
        "hflip": T.RandomHorizontalFlip(1.0),
        "vflip": T.RandomVerticalFlip(1.0),
        "transpose": T.RandomTranspose(1.0),
    }

    def elastic(alpha):
        return T.ElasticDeformation(alpha, elastic_sigma, boundary=boundary) if alpha else None

    return [
        Sweep("rotation", "rotation (degrees)", _grid(-45, 45, 5 * q),
              lambda a: T.Affine(angle=a, boundary=boundary) if a else None, reference=0.0),
        Sweep("scale", "scale factor", _grid(0.7, 1.3, 0.05 * q2),
              lambda s: T.Affine(scale=s, boundary=boundary) if s != 1 else None, reference=1.0),
        Sweep("translate_x", "translation along x (px)", _grid(-4, 4, q2),
              lambda t: T.Affine(translate=(t, 0), boundary=boundary) if t else None, reference=0.0),
        Sweep("translate_y", "translation along y (px)", _grid(-4, 4, q2),
              lambda t: T.Affine(translate=(0, t), boundary=boundary) if t else None, reference=0.0),
        Sweep("flip", "flip", list(flips), lambda k: flips[k], numeric=False, reference="none"),
        Sweep("elastic", f"elastic alpha (sigma {elastic_sigma:g})", _grid(0, 40, 5 * q2), elastic,
              reference=0.0),
    ]


SWEEP_NAMES = tuple(s.name for s in default_sweeps())


# ============================================================================ measuring


def _probabilities(model, images, batch_size):
    from .train.loop import predict

    return predict(model, images, batch_size=batch_size)


def _scores(probs, labels) -> tuple[float, float]:
    labels = np.asarray(labels)
    acc = float(np.mean(probs.argmax(axis=1) == labels))
    p = probs[np.arange(len(labels)), labels]
    loss = float(np.mean(-np.log(np.clip(p, 1e-12, None))))
    return acc, loss


def measure_invariance(model, images, labels, sweeps: Sequence[Sweep] | None = None, *, normalize=None,
                       seed: int = 0, batch_size: int = 500, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Accuracy and loss of ``model`` on ``images`` (N, C, H, W) under each sweep's transformations.

    ``normalize`` (e.g. a :class:`~striate.data.Normalize`) is applied *after* the transformation.
    Random transformations (elastic) draw from ``np.random.default_rng(seed)`` afresh for every
    strength, so each strength deforms the same images with the same (scaled) field.  Returns one
    dict per (transform, strength): ``transform, strength, accuracy, loss, n``.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"measure_invariance needs images (N, C, H, W) and N labels, got {images.shape} and {labels.shape}")
    if len(images) == 0:
        raise ValueError("measure_invariance: no images")
    sweeps = default_sweeps() if sweeps is None else sweeps
    norm = normalize or (lambda x: x)
    rows, cache = [], {}
    for sweep in sweeps:
        for strength in sweep.strengths:
            t = sweep.make(strength)
            if t is None and "identity" in cache:
                acc, loss = cache["identity"]
            else:
                x = images if t is None else t(images, np.random.default_rng(seed))
                acc, loss = _scores(_probabilities(model, norm(x), batch_size), labels)
                if t is None:
                    cache["identity"] = (acc, loss)
            rows.append({"transform": sweep.name, "strength": strength, "accuracy": acc, "loss": loss,
                         "n": int(len(labels))})
            if progress is not None:
                progress(f"{sweep.name} {strength}: accuracy {acc:.2%}")
    return rows


def load_checkpoint_data(path, *, data: str | None = None, limit: int | None = None):
    """``(model, cfg, raw_images, labels, normalize)`` for a run directory written by ``striate train``."""
    from .cli import _load_for_inference
    from .data import Normalize
    from .train.run import build_data

    model, cfg = _load_for_inference(path)
    if data:
        cfg["data"] = data
    _, _, _, held = build_data(cfg)
    images, labels = held.images, held.labels
    if limit is not None:
        if limit <= 0:
            raise ValueError(f"--limit must be positive, got {limit}")
        images, labels = images[:limit], labels[:limit]
    norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
    return model, cfg, np.asarray(images, dtype=np.float32), np.asarray(labels), norm


def invariance_for_checkpoint(path, *, sweeps=None, data=None, limit=None, seed=0, boundary="zeros",
                              quick=False, progress=None) -> list[dict]:
    """:func:`measure_invariance` of the run saved in ``path`` on its held-out split."""
    model, _, images, labels, norm = load_checkpoint_data(path, data=data, limit=limit)
    sweeps = default_sweeps(boundary, quick) if sweeps is None else sweeps
    return measure_invariance(model, images, labels, sweeps, normalize=norm, seed=seed, progress=progress)


# ============================================================================ tables and plots


def _fmt_strength(v) -> str:
    if isinstance(v, str):
        return v
    return f"{v:g}"


def write_csv(results: dict[str, list[dict]], path) -> Path:
    """Long-format CSV: ``model, transform, strength, accuracy, loss, n`` (one row per measurement)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "transform", "strength", "accuracy", "loss", "n"])
    for label, rows in results.items():
        for r in rows:
            w.writerow([label, r["transform"], _fmt_strength(r["strength"]), f"{r['accuracy']:.6f}",
                        f"{r['loss']:.6f}", r["n"]])
    path.write_text(buf.getvalue())
    return path


def _by_transform(results):
    """{transform: {strength: {label: row}}}, keeping first-seen order."""
    table: dict = {}
    for label, rows in results.items():
        for r in rows:
            table.setdefault(r["transform"], {}).setdefault(r["strength"], {})[label] = r
    return table


def format_markdown(results: dict[str, list[dict]]) -> str:
    """One markdown table per transformation: strength, then each model's held-out accuracy."""
    labels = list(results)
    out = ["# Invariance: held-out accuracy under transformations", ""]
    for name, strengths in _by_transform(results).items():
        out.append(f"## {name}")
        out.append("")
        out.append("| strength | " + " | ".join(labels) + " |")
        out.append("|---:|" + "---:|" * len(labels))
        for s, per_label in strengths.items():
            cells = [f"{per_label[l]['accuracy']:.2%}" if l in per_label else "" for l in labels]
            out.append(f"| {_fmt_strength(s)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot_invariance(results: dict[str, list[dict]], path, sweeps: Sequence[Sweep] | None = None,
                    title: str | None = None) -> Path:
    """Accuracy against transformation strength, one panel per transformation, one line per model."""
    from .viz._figure import new_figure, save_png

    table = _by_transform(results)
    info = {s.name: s for s in (sweeps or default_sweeps())}
    names = list(table)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    labels = list(results)
    with new_figure(figsize=(4.6 * ncols, 3.4 * nrows + 0.6)) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for k, name in enumerate(names):
            ax = axes[k // ncols][k % ncols]
            strengths = list(table[name])
            sweep = info.get(name)
            numeric = all(isinstance(s, (int, float)) for s in strengths)
            for j, label in enumerate(labels):
                ys = [100 * table[name][s][label]["accuracy"] if label in table[name][s] else np.nan
                      for s in strengths]
                if numeric:
                    ax.plot(strengths, ys, marker="o", markersize=3, label=label)
                else:
                    width = 0.8 / max(len(labels), 1)
                    xs = np.arange(len(strengths)) + (j - (len(labels) - 1) / 2) * width
                    ax.bar(xs, ys, width=width, label=label)
            if not numeric:
                ax.set_xticks(np.arange(len(strengths)))
                ax.set_xticklabels([str(s) for s in strengths])
            elif sweep is not None and sweep.reference is not None:
                ax.axvline(sweep.reference, color="0.8", linewidth=0.8, zorder=0)
            ax.axhline(90, color="0.7", linestyle=":", linewidth=0.8, zorder=0)
            ax.set_xlabel(sweep.axis_label if sweep else name)
            ax.set_ylabel("held-out accuracy (%)")
            ax.set_ylim(0, 100)
            ax.set_title(name)
            ax.grid(True, alpha=0.3)
        for k in range(len(names), nrows * ncols):
            axes[k // ncols][k % ncols].set_visible(False)
        if labels:
            axes[0][0].legend(loc="lower center", fontsize=8)
        fig.suptitle(title or "accuracy under transformations: " + " vs ".join(labels))
        fig.tight_layout()
        return save_png(fig, path)


def compare(paths: Sequence, out, *, labels: Sequence[str] | None = None, data=None, limit=None, seed=0,
            boundary="zeros", quick=False, sweep_names: Sequence[str] | None = None, progress=None) -> dict:
    """Measure each run in ``paths`` and write ``invariance.csv``, ``.md`` and ``.png`` into ``out``.

    Returns ``{"results": {label: rows}, "csv": Path, "markdown": Path, "png": Path}``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("compare needs at least one checkpoint")
    if labels is None:
        labels = _default_labels(paths)
    labels = list(labels)
    if len(labels) != len(paths) or len(set(labels)) != len(labels):
        raise ValueError(f"need {len(paths)} distinct labels, got {labels}")
    sweeps = default_sweeps(boundary, quick)
    if sweep_names:
        unknown = [s for s in sweep_names if s not in SWEEP_NAMES]
        if unknown:
            raise ValueError(f"unknown transformation(s) {', '.join(unknown)}; known: {', '.join(SWEEP_NAMES)}")
        sweeps = [s for s in sweeps if s.name in sweep_names]
    results = {}
    for label, path in zip(labels, paths):
        results[label] = invariance_for_checkpoint(path, sweeps=sweeps, data=data, limit=limit, seed=seed,
                                                   progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(results, out / "invariance.csv")
    md_path = out / "invariance.md"
    md_path.write_text(format_markdown(results))
    png_path = plot_invariance(results, out / "invariance.png", sweeps)
    return {"results": results, "csv": csv_path, "markdown": md_path, "png": png_path}


def _default_labels(paths):
    names = [p.resolve().name or str(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{n} ({k + 1})" for k, n in enumerate(names)]


# ============================================================================ test-time augmentation


def tta_views(spec: str = "shift:1", boundary: str = "edge") -> list:
    """The fixed transformations a TTA spec stands for (``None`` is the untouched image).

    ``spec`` is comma-separated; each item contributes a set of variants and the views are all
    combinations (the product):

    ``hflip``, ``vflip``, ``transpose``  -- {identity, the flip}
    ``shift:K``   -- identity and shifts by K px left, right, up, down (5 variants)
    ``rotate:D``  -- {0, -D, +D} degrees;   ``scale:S`` -- {1, 1-S, 1+S}

    ``none`` (or empty) is a single view, the image itself.  ``boundary`` defaults to ``edge``
    because the images reaching a model are already standardised.
    """
    if spec is None or str(spec).strip() in ("", "none"):
        return [None]
    options = []
    for item in str(spec).split(","):
        name, _, arg = item.strip().partition(":")
        name = name.strip().lower()
        try:
            value = float(arg) if arg else None
        except ValueError:
            raise ValueError(f"--tta item {item!r}: {arg!r} is not a number") from None
        if name in ("hflip", "vflip", "transpose"):
            cls = {"hflip": T.RandomHorizontalFlip, "vflip": T.RandomVerticalFlip, "transpose": T.RandomTranspose}[name]
            options.append([None, cls(1.0)])
        elif name == "shift":
            k = 1.0 if value is None else value
            options.append([None] + [T.Affine(translate=t, boundary=boundary)
                                     for t in ((k, 0), (-k, 0), (0, k), (0, -k))])
        elif name == "rotate":
            d = 10.0 if value is None else value
            options.append([None, T.Affine(angle=-d, boundary=boundary), T.Affine(angle=d, boundary=boundary)])
        elif name == "scale":
            s = 0.1 if value is None else value
            options.append([None, T.Affine(scale=1 - s, boundary=boundary), T.Affine(scale=1 + s, boundary=boundary)])
        else:
            raise ValueError(f"unknown --tta item {item!r}; known: none, hflip, vflip, transpose, shift:K, rotate:D, scale:S")
    views = []
    for combo in itertools.product(*options):
        parts = [t for t in combo if t is not None]
        views.append(None if not parts else parts[0] if len(parts) == 1 else T.Compose(parts))
    return views


def tta_predict(model, images, spec: str = "shift:1", batch_size: int = 256, boundary: str = "edge") -> np.ndarray:
    """Class probabilities averaged over the TTA views of ``images`` (N, C, H, W), standardised
    as the model expects; ``spec`` as in :func:`tta_views`.  Returns (N, classes)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"tta_predict expects images (N, C, H, W), got shape {images.shape}")
    views = tta_views(spec, boundary)
    total = None
    for view in views:
        x = images if view is None else view(images)
        p = _probabilities(model, x, batch_size)
        total = p if total is None else total + p
    return total / len(views)


def tta_evaluate(model, images, labels, spec: str = "shift:1", num_classes: int | None = None,
                 batch_size: int = 256, boundary: str = "edge") -> dict:
    """Like :func:`striate.train.evaluate` but on TTA-averaged probabilities: loss (mean negative
    log of the averaged probability of the true class), accuracy, top-5, confusion matrix, n."""
    from .train.metrics import confusion_matrix, topk_accuracy

    labels = np.asarray(labels)
    probs = tta_predict(model, images, spec, batch_size, boundary)
    acc, loss = _scores(probs, labels)
    classes = num_classes or probs.shape[1]
    return {"loss": loss, "accuracy": acc, "top5": topk_accuracy(probs, labels, 5),
            "confusion": confusion_matrix(probs.argmax(axis=1), labels, classes), "n": int(len(labels)),
            "views": len(tta_views(spec, boundary))}
