"""The ``striate`` command line: train, evaluate, predict, summary, demo.

User errors (missing data, corrupt files, incompatible checkpoints, bad options) print one line
``striate: error: ...`` and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


class _UserError(Exception):
    pass


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed)
    return 0


def _cmd_train(args) -> int:
    from .train.run import train_run

    progress = not args.no_progress
    if args.device != "cpu":
        from . import backend

        if args.task != "classify":
            raise _UserError(f"--device {args.device} is supported for --task classify only")
        backend.require(args.device)  # one clear line (exit status 2) without CuPy or a GPU
    if args.task != "classify":
        import importlib

        task = importlib.import_module(f"striate.tasks.{args.task}")
        return task.cli_train(args)
    distributed = True if args.distributed else None  # None: data-parallel when launched by mpiexec -n N > 1
    if args.resume:
        result = train_run(resume=args.resume, epochs=args.epochs, progress=progress, distributed=distributed,
                           device=args.device)
    else:
        config = {
            "model": args.model, "data": args.data, "epochs": args.epochs, "batch_size": args.batch_size,
            "lr": args.lr, "optimizer": args.optimizer, "momentum": args.momentum,
            "weight_decay": args.weight_decay, "scheduler": args.scheduler, "seed": args.seed,
            "val_fraction": args.val_fraction, "checkpoint_every": args.checkpoint_every,
            "early_stopping": args.early_stopping, "out": args.out, "augment": args.augment,
        }
        result = train_run(config, progress=progress, distributed=distributed, device=args.device)
    if not result.get("is_main", True):
        return 0
    ev = result["eval"]
    out = result["out"]
    print(f"held-out accuracy {ev['accuracy']:.2%} (loss {ev['loss']:.4f}, {ev['n']} images)")
    print(f"wrote {out}/checkpoint, {out}/log.csv, {out}/curves.png, {out}/filters.png")
    return 0


def _load_for_inference(path):
    """(model, run config) from a run directory or its checkpoint/ folder."""
    from .train.checkpoint import load_checkpoint
    from .train.loop import CHECKPOINT_DIR
    from .train.run import build_model, load_run

    cfg = load_run(path)
    model = build_model(cfg)
    load_checkpoint(Path(cfg["out"]) / CHECKPOINT_DIR, model=model,
                    expect_model={"name": cfg["model"], "config": cfg["model_config"]})
    model.eval()
    return model, cfg


def _cmd_evaluate(args) -> int:
    import numpy as np

    from .data import DataLoader
    from .train.loop import evaluate
    from .train.metrics import per_class_accuracy
    from .train.run import build_data

    from .train.run import load_run

    task = load_run(args.checkpoint).get("task", "classify")
    if task != "classify":
        import importlib

        return importlib.import_module(f"striate.tasks.{task}").cli_evaluate(args)
    model, cfg = _load_for_inference(args.checkpoint)
    if args.data:
        cfg["data"] = args.data
    _, held, _, _ = build_data(cfg)
    if args.tta:
        from .invariance import tta_evaluate

        images, labels = held.get_batch(np.arange(len(held)))
        result = tta_evaluate(model, images, labels, args.tta, num_classes=len(cfg["classes"]))
    else:
        result = evaluate(model, DataLoader(held, batch_size=512), num_classes=len(cfg["classes"]))
    print(f"{cfg['model']} on {cfg['data']} held-out split: {result['n']} images")
    print(f"loss {result['loss']:.4f}  accuracy {result['accuracy']:.2%}  top-5 {result['top5']:.2%}")
    for name, acc in zip(cfg["classes"], per_class_accuracy(result["confusion"])):
        print(f"  class {name}: {acc:.2%}" if np.isfinite(acc) else f"  class {name}: no samples")
    if args.confusion:
        from .viz import confusion_matrix_plot

        confusion_matrix_plot(result["confusion"], args.confusion, class_names=cfg["classes"])
        print(f"wrote {args.confusion}")
    return 0


def _read_image(path, shape):
    """An image file as a (C, H, W) float32 array in [0, 1], converted and resized to ``shape``."""
    import numpy as np

    from .data import DataError, decode_image

    c, h, w = shape
    if not Path(path).is_file():
        raise _UserError(f"no such image file: {path}")
    try:
        img = decode_image(path, mode="L" if c == 1 else "RGB", size=(h, w))
    except DataError as exc:
        raise _UserError(str(exc)) from None
    return img.astype(np.float32) / 255.0


def _cmd_predict(args) -> int:
    import numpy as np

    from .data import Normalize
    from .train.loop import predict

    model, cfg = _load_for_inference(args.checkpoint)
    if cfg.get("task", "classify") != "classify":
        raise _UserError(f"{args.checkpoint} is a {cfg['task']} run; use `striate {cfg['task']} RUN IMAGE --out PNG`")
    shape = cfg["input_shape"]
    images = np.stack([_read_image(p, shape) for p in args.images])
    if args.invert:
        images = 1.0 - images
    norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
    if args.tta:
        from .invariance import tta_predict

        probs = tta_predict(model, norm(images), args.tta)
    else:
        probs = predict(model, norm(images))
    for path, p in zip(args.images, probs):
        k = int(np.argmax(p))
        print(f"{path}: {cfg['classes'][k]} ({p[k]:.1%})")
    return 0


def _cmd_summary(args) -> int:
    from .models import get_model
    from .summary import format_summary, summarize

    shape = tuple(int(s) for s in args.input_shape.split(","))
    config = {}
    if args.num_classes:
        config["num_classes"] = args.num_classes
    if len(shape) == 3:
        config.setdefault("in_channels", shape[0])
        config.setdefault("input_size", shape[1])
    model = get_model(args.model, **config)
    print(format_summary(summarize(model, shape)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .train.run import DEFAULTS, OPTIMIZERS, SCHEDULERS

    parser = argparse.ArgumentParser(prog="striate", description="Convolutional networks in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (default: LeNet-5 on the 5,000 MNIST digits)")
    t.add_argument("--task", default="classify", choices=("classify", "segment", "localize"),
                   help="what to learn: image classes, per-pixel masks, or class + bounding box")
    t.add_argument("--model", default=DEFAULTS["model"], help="model name (see `striate summary --list`)")
    t.add_argument("--data", default=DEFAULTS["data"], help="mnist5k | digits | idx:DIR | cifar:DIR | folder:DIR; for --task segment|localize: "
                        "shapes[:opts] | digits-canvas[:opts]")
    t.add_argument("--epochs", type=int, default=None, help=f"epochs to train (default {DEFAULTS['epochs']})")
    t.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    t.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="learning rate")
    t.add_argument("--optimizer", default=DEFAULTS["optimizer"], choices=OPTIMIZERS)
    t.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    t.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    t.add_argument("--scheduler", default=DEFAULTS["scheduler"], choices=SCHEDULERS)
    t.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    t.add_argument("--val-fraction", type=float, default=DEFAULTS["val_fraction"],
                   help="held-out fraction for sources without a test split")
    t.add_argument("--checkpoint-every", type=int, default=DEFAULTS["checkpoint_every"],
                   help="also checkpoint every N steps (0: only at epoch ends)")
    t.add_argument("--augment", default=DEFAULTS["augment"],
                   help="none | comma-separated items, e.g. rotate:15,scale:0.1,elastic:34/4,shift:2,hflip "
                        "(grammar: docs/invariance.md)")
    t.add_argument("--early-stopping", type=int, default=DEFAULTS["early_stopping"], metavar="PATIENCE")
    t.add_argument("--out", default=None, help="output directory (default runs/MODEL-DATA-TIME)")
    t.add_argument("--resume", default=None, metavar="DIR", help="continue the run saved in DIR")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where to train: cpu (NumPy, default) or cuda (CuPy on a GPU; pip install cupy-cuda12x)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (automatic under mpiexec -n N with N > 1); "
                        "launch as: mpiexec -n N python -m mpi4py -m striate train ...")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on its held-out split")
    e.add_argument("checkpoint", help="a run directory (or its checkpoint/ folder)")
    e.add_argument("--data", default=None, help="evaluate on another data source")
    e.add_argument("--tta", default=None, metavar="SPEC",
                   help="test-time augmentation: average over views, e.g. shift:1 or shift:1,hflip")
    e.add_argument("--confusion", default=None, metavar="PNG", help="write a confusion-matrix plot")
    e.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+")
    p.add_argument("--tta", default=None, metavar="SPEC",
                   help="test-time augmentation: average over views, e.g. shift:1 or shift:1,hflip")
    p.add_argument("--invert", action="store_true", help="invert gray levels (dark digits on white paper)")
    p.set_defaults(func=_cmd_predict)

    s = sub.add_parser("summary", help="per-layer output shapes, parameters, receptive fields, mult-adds")
    s.add_argument("model")
    s.add_argument("--input-shape", default="1,28,28", help="C,H,W of one input (default 1,28,28)")
    s.add_argument("--num-classes", type=int, default=None)
    s.set_defaults(func=_cmd_summary)

    d = sub.add_parser("demo", help="train a tiny CNN on generated images and print its loss")
    d.add_argument("--epochs", type=int, default=8)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)

    import importlib
    import pkgutil

    from . import cli_ext

    for info in sorted(pkgutil.iter_modules(cli_ext.__path__), key=lambda m: m.name):
        importlib.import_module(f"{cli_ext.__name__}.{info.name}").register(sub)
    return parser


def _user_errors():
    from .backend import DeviceError
    from .data import DataError
    from .nn.module import StateDictError
    from .train.checkpoint import CheckpointError
    from .train.loop import TrainingDiverged

    return (_UserError, DeviceError, DataError, CheckpointError, StateDictError, TrainingDiverged, FileNotFoundError,
            PermissionError, IsADirectoryError, NotADirectoryError, ImportError, ValueError)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("striate: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        message = " ".join(line.strip() for line in str(exc).strip().splitlines()) or type(exc).__name__
        if isinstance(exc, KeyError) and message.startswith("'"):
            message = message.strip("'")
        print(f"striate: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
