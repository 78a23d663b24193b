"""What segmentation and localization training share: data specs, the trainer, the run, loading.

A task is a small object (see :class:`Task`) that knows its default model and data, how to turn
a :class:`~striate.data.synthetic.SyntheticSet` into training targets, its loss, a per-step score
and a held-out evaluation.  :func:`run_task` does the rest the way ``striate train`` does for
classification: the run directory with a resumable checkpoint, ``log.csv``, ``curves.png``,
``metrics.json`` and ``examples.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..autograd import no_grad
from ..models.fcn import FCN  # noqa: F401 - importing the modules registers "fcn", "localizer", "unet"
from ..models.localizer import Localizer  # noqa: F401
from ..models.unet import UNet  # noqa: F401
from ..data import DataLoader, Normalize, TensorDataset
from ..data.synthetic import SyntheticSet, digits_canvas_split, shapes_split
from ..train.checkpoint import CheckpointError, has_checkpoint, load_checkpoint
from ..train.loop import CHECKPOINT_DIR, Callback, EarlyStopping, ModelCheckpoint, Trainer, _loss_and_logits
from ..train.run import DEFAULTS, RunError, _build_optimizer, _default_out, _validate, build_model, load_run

__all__ = ["Task", "parse_data_spec", "load_task_data", "run_task", "load_task_model",
           "evaluate_run", "predict_outputs", "read_image", "TASK_DATA"]

# spec name -> (builder, {option: (builder keyword, type)})
TASK_DATA = {
    "shapes": (shapes_split, {"n": ("n_train", int), "held": ("n_held", int), "size": ("size", int),
                              "objects": ("max_objects", int), "min_objects": ("min_objects", int),
                              "noise": ("noise", float), "rmin": ("rmin", float), "rmax": ("rmax", float)}),
    "digits-canvas": (digits_canvas_split, {"n": ("n_train", int), "held": ("n_held", int), "size": ("size", int),
                                            "per": ("per_canvas", int), "min": ("dmin", int), "max": ("dmax", int),
                                            "noise": ("noise", float)}),
}


def parse_data_spec(spec: str) -> tuple[str, dict]:
    """``"shapes:n=500,held=100,objects=1"`` -> ``("shapes", {"n_train": 500, "n_held": 100, "max_objects": 1})``."""
    name, _, rest = str(spec).strip().partition(":")
    name = name.lower()
    if name not in TASK_DATA:
        raise RunError(f"--data {spec!r}: segmentation and localization need masks and boxes; use "
                       + " or ".join(f"{k}[:key=value,...]" for k in TASK_DATA))
    known = TASK_DATA[name][1]
    options = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in known:
            raise RunError(f"--data {spec!r}: bad option {item!r}; {name} takes {', '.join(k + '=' for k in known)}")
        target, kind = known[key]
        try:
            options[target] = kind(value)
        except ValueError:
            raise RunError(f"--data {spec!r}: {key} must be {kind.__name__}, got {value!r}") from None
    if "rmin" in options or "rmax" in options:
        options["radius"] = (options.pop("rmin", None), options.pop("rmax", None))
    if "dmin" in options or "dmax" in options:
        options["digit_size"] = (options.pop("dmin", 24), options.pop("dmax", 44))
    return name, options


def load_task_data(spec: str, seed: int = 0, val_fraction: float = 0.2, **defaults):
    """``(train, held_out)`` :class:`SyntheticSet` s for a task data spec; ``defaults`` fill unset options."""
    name, options = parse_data_spec(spec)
    options = {**defaults.get(name, {}), **options}
    if "radius" in options:
        size = options.get("size", 32)
        lo, hi = options["radius"]
        options["radius"] = (size / 8 if lo is None else lo, size / 3.5 if hi is None else hi)
    if name == "digits-canvas":
        options["val_fraction"] = val_fraction
    try:
        return TASK_DATA[name][0](seed=seed, **options)
    except TypeError as exc:  # an option the generator does not take
        raise RunError(f"--data {spec!r}: {exc}") from None


class Task:
    """The task-specific pieces :func:`run_task` needs; :mod:`~striate.tasks.segment` and
    :mod:`~striate.tasks.localize` define one each."""

    name = "task"
    default_model = ""
    default_data = ""
    default_epochs = 10
    data_defaults: dict = {}

    def model_config(self, train: SyntheticSet) -> dict:
        raise NotImplementedError

    def classes(self, train: SyntheticSet) -> list[str]:
        raise NotImplementedError

    def targets(self, data: SyntheticSet) -> np.ndarray:
        raise NotImplementedError

    def loss(self, cfg: dict):
        raise NotImplementedError

    def check_outputs(self, outputs, targets, cfg) -> None:
        """Raise a RunError when the model's outputs do not fit the task."""

    def score(self, outputs, targets, cfg) -> float:
        """Per-step 'accuracy numerator' (in samples) for the training log."""
        return 0.0

    def evaluate(self, model, images, targets, cfg) -> dict:
        raise NotImplementedError

    def record(self, result: dict) -> dict:
        """Entries of the per-epoch log from an :meth:`evaluate` result."""
        raise NotImplementedError

    def report(self, result: dict, cfg: dict) -> list[str]:
        raise NotImplementedError

    def examples(self, model, raw: SyntheticSet, cfg: dict, path) -> None:
        pass


class _HeldOutEvaluation(Callback):
    """At every epoch end: evaluate on the held-out set, add the figures to the epoch's record."""

    def __init__(self, task: Task, images, targets, cfg):
        self.task, self.images, self.targets, self.cfg = task, images, targets, cfg

    def on_epoch_end(self, trainer, record):
        result = self.task.evaluate(trainer.model, self.images, self.targets, self.cfg)
        record.update(self.task.record(result))
        trainer.log("  held-out: " + ", ".join(f"{k[4:] if k.startswith('val_') else k} {v:.4f}"
                                               for k, v in self.task.record(result).items()))
        trainer.write_log()


def predict_outputs(model, images, batch_size: int = 64) -> np.ndarray:
    """The model's raw outputs on ``images`` (eval mode, no gradients), batch by batch."""
    from ..autograd import Tensor

    was_training = model.training
    model.eval()
    try:
        with no_grad():
            parts = [np.asarray(model(Tensor._wrap(np.ascontiguousarray(images[s:s + batch_size]))).data)
                     for s in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(parts)


def _config_from_args(args, task: Task) -> dict:
    model = args.model if args.model != DEFAULTS["model"] else task.default_model
    data = args.data if args.data != DEFAULTS["data"] else task.default_data
    cfg = {
        **DEFAULTS, "task": task.name, "model": model, "data": data,
        "epochs": args.epochs if args.epochs is not None else task.default_epochs,
        "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer, "momentum": args.momentum,
        "weight_decay": args.weight_decay, "scheduler": args.scheduler, "seed": args.seed,
        "val_fraction": args.val_fraction, "checkpoint_every": args.checkpoint_every,
        "early_stopping": args.early_stopping, "out": args.out, "augment": "none",
    }
    _validate(cfg)
    return cfg


def run_task(args, task: Task, *, log=None, stream=None, plots: bool = True) -> dict:
    """``striate train --task NAME``: build or resume the run described by ``args``; returns a summary dict."""
    progress = not getattr(args, "no_progress", False)
    say = log or print
    if args.resume:
        cfg = load_run(args.resume)
        if cfg.get("task", "classify") != task.name:
            raise RunError(f"{args.resume} is a {cfg.get('task', 'classify')} run; resume it with "
                           f"--task {cfg.get('task', 'classify')}")
        if args.epochs is not None:
            cfg["epochs"] = args.epochs
    else:
        cfg = _config_from_args(args, task)
        out = Path(cfg["out"]) if cfg["out"] else _default_out(cfg)
        if has_checkpoint(out / CHECKPOINT_DIR):
            raise RunError(f"{out} already holds a checkpoint; continue it with --resume {out} or choose another --out")
        cfg["out"] = str(out)
        if getattr(args, "augment", "none") not in ("none", DEFAULTS["augment"]):
            say(f"note: --augment is not applied to --task {task.name} (images and targets would need to move "
                "together); training without augmentation")
    out = Path(cfg["out"])
    t_data = time.perf_counter()
    raw_train, raw_held = load_task_data(cfg["data"], cfg["seed"], cfg["val_fraction"], **task.data_defaults)
    if cfg.get("normalize"):
        norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
    else:
        norm = Normalize.fit(raw_train.images)
        cfg["normalize"] = {"mean": norm.mean.tolist(), "std": norm.std.tolist()}
    cfg.setdefault("model_config", task.model_config(raw_train))
    cfg.setdefault("classes", task.classes(raw_train))
    cfg.setdefault("input_shape", [int(v) for v in raw_train.images.shape[1:]])
    train_x, held_x = norm(raw_train.images), norm(raw_held.images)
    train_y, held_y = task.targets(raw_train), task.targets(raw_held)
    data_time = time.perf_counter() - t_data
    try:
        model = build_model(cfg)
    except (TypeError, ValueError) as exc:
        raise RunError(f"cannot build model {cfg['model']!r} for --task {task.name}: {exc}") from None
    with no_grad():
        model.eval()
        probe, _ = _loss_and_logits(model, lambda o, t: o, train_x[:2], train_y[:2])
        model.train()
    task.check_outputs(probe, train_y[:2], cfg)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=cfg["batch_size"], shuffle=True,
                        generator=np.random.default_rng(cfg["seed"]), prefetch=cfg["prefetch"])
    opt, sched, interval = _build_optimizer(cfg, model, len(loader))
    loss_fn = task.loss(cfg)
    callbacks = [_HeldOutEvaluation(task, held_x, held_y, cfg),
                 ModelCheckpoint(every_steps=cfg["checkpoint_every"] or None, every_epochs=1)]
    if cfg["early_stopping"]:
        callbacks.append(EarlyStopping(patience=cfg["early_stopping"]))
    trainer = Trainer(model, opt, loader, loss_fn=loss_fn, scheduler=sched, scheduler_interval=interval,
                          out_dir=out, callbacks=callbacks, progress=progress, clip_grad_norm=cfg["clip_grad_norm"],
                          model_name=cfg["model"], model_config=cfg["model_config"], run_config=cfg,
                          log=log, stream=stream, metric_fn=lambda o, t: task.score(o, t, cfg))
    if args.resume:
        trainer.resume()
        trainer.log(f"resumed {out} at epoch {trainer.epoch}, step {trainer.step}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        trainer.log(f"training {cfg['model']} to {task.name} {cfg['data']} ({len(train_x)} train / {len(held_x)} "
                    f"held-out images, {data_time:.1f} s to generate) for {cfg['epochs']} epochs -> {out}")
    history = trainer.fit(cfg["epochs"])
    if trainer.epoch == 0:
        trainer.save_checkpoint()
    result = task.evaluate(model, held_x, held_y, cfg)
    train_time = float(sum(r.get("epoch_time", 0.0) for r in history))
    summary = {"task": task.name, "model": cfg["model"], "data": cfg["data"], "epochs": trainer.epoch,
               "held_out_images": len(held_x), "train_seconds": train_time,
               **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    for line in task.report(result, cfg):
        say(line)
    written = [f"{out}/checkpoint", f"{out}/log.csv", f"{out}/metrics.json"]
    if plots:
        from .. import viz

        if history:
            viz.plot_curves(history, out / "curves.png", title=f"{cfg['model']} - {task.name} {cfg['data']}")
            written.append(f"{out}/curves.png")
        task.examples(model, raw_held, cfg, out / "examples.png")
        written.append(f"{out}/examples.png")
    say(f"trained for {train_time:.1f} s; wrote " + ", ".join(written))
    return {"out": out, "history": history, "eval": result, "config": cfg, "trainer": trainer}


def load_task_model(path, task: str):
    """``(model, run config)`` of a ``--task`` run directory (or its checkpoint/ folder), in eval mode."""
    cfg = load_run(path)
    kind = cfg.get("task", "classify")
    if kind != task:
        hint = "striate predict" if kind == "classify" else f"striate {kind}"
        raise CheckpointError(f"{path} holds a {kind} model, not a {task} model (use {hint})")
    model = build_model(cfg)
    load_checkpoint(Path(cfg["out"]) / CHECKPOINT_DIR, model=model,
                    expect_model={"name": cfg["model"], "config": cfg["model_config"]})
    model.eval()
    return model, cfg


def evaluate_run(path, task: Task, data: str | None = None) -> tuple[dict, list[str]]:
    """``(result, report lines)``: a trained ``--task`` run evaluated on its held-out images.

    ``data`` evaluates on the held-out part of another spec instead (same seed); its images must
    have the run's shape.
    """
    model, cfg = load_task_model(path, task.name)
    spec = data or cfg["data"]
    _, held = load_task_data(spec, cfg["seed"], cfg["val_fraction"], **task.data_defaults)
    if list(held.images.shape[1:]) != list(cfg["input_shape"]):
        raise RunError(f"--data {spec!r} has images of shape {tuple(held.images.shape[1:])}, the run was trained "
                       f"on {tuple(cfg['input_shape'])}")
    norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
    result = task.evaluate(model, norm(held.images), task.targets(held), cfg)
    lines = [f"{cfg['model']} ({task.name}) on the held-out part of {spec}: {len(held)} images"]
    return result, lines + task.report(result, cfg)


def read_image(path, channels: int, size=None) -> np.ndarray:
    """An image file as ``(channels, H, W)`` float32 in [0, 1] (1: grayscale, 3: RGB), optionally resized."""
    from ..data import DataError, decode_image

    if not Path(path).is_file():
        raise RunError(f"no such image file: {path}")
    if channels not in (1, 3):
        raise RunError(f"the run's images have {channels} channels; only 1 (gray) and 3 (RGB) can be read from files")
    try:
        img = decode_image(path, mode="L" if channels == 1 else "RGB", size=size)
    except DataError as exc:
        raise RunError(str(exc)) from None
    return img.astype(np.float32) / 255.0
