"""``striate explain CHECKPOINT IMAGE --out DIR``: pictures of what a trained network looks at.

Writes into DIR (see `striate.viz.explain.explain`): ``saliency.png``, ``gradcam.png``,
``filters.png``, one ``features_NN_LAYER.png`` per convolution, and ``confusion.png`` (the
run's held-out split; skipped with ``--no-confusion`` or when the run's data cannot be loaded).
"""

from __future__ import annotations

import sys
from pathlib import Path


def _target_index(target, classes) -> int | None:
    """A class given by name (as in the run's class list) or by index."""
    if target is None:
        return None
    names = [str(c) for c in classes]
    if target in names:
        return names.index(target)
    try:
        k = int(target)
    except ValueError:
        raise ValueError(f"--target {target!r} is neither a class name nor an index; classes: "
                         f"{', '.join(names)}") from None
    if not 0 <= k < len(names):
        raise ValueError(f"--target {k} is out of range: the model has {len(names)} classes")
    return k


def _held_out_confusion(model, cfg):
    from ..data import DataLoader
    from ..train.loop import evaluate
    from ..train.run import build_data

    _, held, _, _ = build_data(dict(cfg))
    return evaluate(model, DataLoader(held, batch_size=512), num_classes=len(cfg["classes"]))["confusion"]


def _cmd_explain(args) -> int:
    from ..cli import _load_for_inference, _read_image
    from ..data import DataError, Normalize
    from ..viz.explain import explain, saliency

    if args.max_maps < 1:
        raise ValueError(f"--max-maps must be positive, got {args.max_maps}")
    model, cfg = _load_for_inference(args.checkpoint)
    raw = _read_image(args.image, cfg["input_shape"])
    if args.invert:
        raw = 1.0 - raw
    image = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])(raw)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    target = _target_index(args.target, cfg["classes"])
    confusion = None
    if not args.no_confusion:
        try:
            confusion = _held_out_confusion(model, cfg)
        except (DataError, OSError, ImportError) as exc:
            print(f"striate: skipped confusion.png: {exc}", file=sys.stderr)
    written = explain(model, image, Path(args.out), display=raw, class_names=cfg["classes"],
                      target=target, layers=layers,
                      cam_layer=args.cam_layer, confusion=confusion, max_maps=args.max_maps)
    result = saliency(model, image)  # the prediction, for the summary line
    k = result.target
    print(f"{args.image}: {cfg['classes'][k]} ({result.probs[k]:.1%})")
    for path in written.values():
        print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="saliency, Grad-CAM, feature maps and filters of a checkpoint, as PNGs")
    p.add_argument("checkpoint", help="a run directory written by `striate train` (or its checkpoint/ folder)")
    p.add_argument("image", help="an image file (PNG, JPEG, ...), resized to the model's input")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PNGs (created if needed)")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="class to explain, by name or index (default: the predicted class)")
    p.add_argument("--layers", default=None, metavar="L1,L2",
                   help="layers whose feature maps to draw (module names; default: every Conv2d)")
    p.add_argument("--cam-layer", default=None, metavar="LAYER", help="Grad-CAM layer (default: the last Conv2d)")
    p.add_argument("--max-maps", type=int, default=16, help="feature maps drawn per layer (default 16)")
    p.add_argument("--invert", action="store_true", help="invert gray levels (dark digits on white paper)")
    p.add_argument("--no-confusion", action="store_true", help="skip the held-out confusion matrix")
    p.set_defaults(func=_cmd_explain)
