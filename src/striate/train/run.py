"""A whole training run from a plain config dict: what ``striate train`` does.

``train_run(config)`` builds the data (held-out split, standardisation fitted on the training
split), the model (seeded), the optimizer and schedule, trains with progress and checkpoints, and
writes into the output directory::

    OUT/checkpoint/     safetensors weights + checkpoint.json (resumable)
    OUT/log.csv         one row per epoch
    OUT/curves.png      loss and accuracy against epoch
    OUT/filters.png     the first convolution's filters

``train_run(resume=OUT)`` rebuilds the identical run from the config saved in the checkpoint and
continues it exactly where it stopped.

Started by ``mpiexec -n N python -m mpi4py -m striate train ...`` (or with ``distributed=True``),
the run is data-parallel over the MPI ranks (:mod:`striate.distributed`): ``batch_size`` stays
the global batch, each rank trains on its shard, and rank 0 alone writes files and prints.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import optim
from .. import random as _random
from ..data import DataLoader, Normalize, TransformedDataset, get_dataset
from ..data.transforms import parse_augment
from ..models import get_model
from .checkpoint import CheckpointError, has_checkpoint, load_checkpoint
from .loop import CHECKPOINT_DIR, EarlyStopping, ModelCheckpoint, Trainer, evaluate

__all__ = ["DEFAULTS", "train_run", "build_model", "load_run", "RunError"]

DEFAULTS = {
    "model": "lenet5",
    "data": "mnist5k",
    "epochs": 30,
    "batch_size": 64,
    "lr": 2e-3,
    "optimizer": "adamw",
    "momentum": 0.9,
    "weight_decay": None,  # None: 0.05 for AdamW (decoupled), 0 for the others
    "scheduler": "cosine",
    "seed": 0,
    "val_fraction": 0.2,
    "checkpoint_every": 0,  # steps; 0 = at the end of every epoch only
    "early_stopping": 0,  # patience in epochs; 0 = off
    "clip_grad_norm": None,
    "prefetch": 2,
    "augment": "shift:2",  # random translation by up to 2 pixels; "none" to switch off
    "out": None,
}

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "cosine", "step", "onecycle", "plateau")


class RunError(ValueError):
    """A user-facing problem with a run's options or files."""


def _validate(cfg: dict) -> None:
    if cfg["optimizer"] not in OPTIMIZERS:
        raise RunError(f"unknown optimizer {cfg['optimizer']!r}; choose from {', '.join(OPTIMIZERS)}")
    if cfg["scheduler"] not in SCHEDULERS:
        raise RunError(f"unknown scheduler {cfg['scheduler']!r}; choose from {', '.join(SCHEDULERS)}")
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] <= 0:
            raise RunError(f"--{key.replace('_', '-')} must be a positive integer, got {cfg[key]!r}")
    if not (isinstance(cfg["lr"], (int, float)) and cfg["lr"] > 0):
        raise RunError(f"--lr must be positive, got {cfg['lr']!r}")
    parse_augment(cfg["augment"])  # raises on a bad spec
    if not 0 < cfg["val_fraction"] < 1:
        raise RunError(f"--val-fraction must lie in (0, 1), got {cfg['val_fraction']!r}")


def build_data(cfg: dict):
    """(train, held-out) datasets, standardised with statistics of the training split only."""
    train, held = get_dataset(cfg["data"], val_fraction=cfg["val_fraction"], seed=cfg["seed"])
    if cfg.get("normalize"):
        norm = Normalize(cfg["normalize"]["mean"], cfg["normalize"]["std"])
    else:
        norm = Normalize.fit(train)
        cfg["normalize"] = {"mean": norm.mean.tolist(), "std": norm.std.tolist()}
    return TransformedDataset(train, norm), TransformedDataset(held, norm), train, held


def build_model(cfg: dict):
    """The model named in the config, initialised from the run's seed."""
    _random.manual_seed(cfg["seed"])
    return get_model(cfg["model"], **cfg["model_config"])


def _build_optimizer(cfg, model, steps_per_epoch):
    params = model.parameters()
    name, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    if wd is None:
        wd = 0.05 if name == "adamw" else 0.0
    if name == "sgd":
        opt = optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd, nesterov=cfg["momentum"] > 0)
    elif name == "adam":
        opt = optim.Adam(params, lr=lr, weight_decay=wd)
    elif name == "adamw":
        opt = optim.AdamW(params, lr=lr, weight_decay=wd)
    else:
        opt = optim.RMSprop(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd)
    sched, interval = None, "epoch"
    s = cfg["scheduler"]
    if s == "cosine":
        sched, interval = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"] * steps_per_epoch), "step"
    elif s == "step":
        sched = optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg["epochs"] // 3), gamma=0.1)
    elif s == "onecycle":
        sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=cfg["epochs"] * steps_per_epoch)
        interval = "step"
    elif s == "plateau":
        sched = optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    return opt, sched, interval


def _default_out(cfg) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = cfg["data"].split(":", 1)[0]
    out = Path("runs") / f"{cfg['model']}-{name}-{stamp}"
    k = 2
    while out.exists():
        out = Path("runs") / f"{cfg['model']}-{name}-{stamp}-{k}"
        k += 1
    return out


def load_run(directory) -> dict:
    """The run config saved in the checkpoint under ``directory`` (a run's OUT or its checkpoint/)."""
    directory = Path(directory)
    ckpt = directory / CHECKPOINT_DIR if (directory / CHECKPOINT_DIR).is_dir() else directory
    if not has_checkpoint(ckpt):
        raise CheckpointError(f"no checkpoint found in {directory} (expected {ckpt}/checkpoint.json)")
    state = load_checkpoint(ckpt)
    run = (state.get("extra") or {}).get("run")
    if not run:
        raise CheckpointError(f"{ckpt} holds no run configuration (was it written by `striate train`?)")
    run = dict(run)
    run["out"] = str(ckpt.parent)
    return run


def _setup(cfg, device: str = "cpu"):
    train_ds, held_ds, raw_train, _ = build_data(cfg)
    c, h, w = raw_train.images.shape[1:]
    classes = raw_train.classes
    num_classes = len(classes) if classes is not None else int(raw_train.labels.max()) + 1
    cfg.setdefault("model_config", {"num_classes": num_classes, "in_channels": int(c), "input_size": int(h)})
    cfg.setdefault("classes", list(classes) if classes is not None else [str(k) for k in range(num_classes)])
    cfg.setdefault("input_shape", [int(c), int(h), int(w)])
    model = build_model(cfg)
    if device != "cpu":
        model.to(device)  # before the optimizer: its state is created where the parameters live
    loader = DataLoader(train_ds, batch_size=cfg["batch_size"], shuffle=True,
                        generator=np.random.default_rng(cfg["seed"]), prefetch=cfg["prefetch"])
    val_loader = DataLoader(held_ds, batch_size=512)
    opt, sched, interval = _build_optimizer(cfg, model, len(loader))
    return model, loader, val_loader, opt, sched, interval


def train_run(config: dict | None = None, *, resume=None, epochs: int | None = None, progress: bool = True,
              plots: bool = True, log=None, stream=None, distributed: bool | None = None,
              device: str = "cpu") -> dict:
    """Run (or resume) a training run; returns {'out', 'history', 'eval', 'is_main', ...}.

    ``device``: ``"cpu"`` or ``"cuda"`` (CuPy); the batches are copied to it step by step, and
    checkpoints hold host arrays, so a run trained on one device resumes on the other.

    ``distributed``: None detects an MPI launch with several ranks, True requires MPI (even one
    rank), False never uses it.
    """
    from .. import backend

    device = backend.require(device)
    dist = None
    if distributed is not False:
        from ..distributed.run import world_for_run

        dist = world_for_run(distributed)
    if dist is not None and device != "cpu":
        raise RunError("data-parallel (MPI) training runs on the CPU only; drop --device cuda")
    main = dist is None or dist.is_main
    if resume is not None:
        cfg = load_run(resume) if dist is None else dist.from_main(load_run, resume)
        if epochs is not None:
            cfg["epochs"] = epochs
    else:
        cfg = {**DEFAULTS, **{k: v for k, v in (config or {}).items() if v is not None}}
        _validate(cfg)
        out = Path(cfg["out"]) if cfg["out"] else _default_out(cfg)
        if has_checkpoint(out / CHECKPOINT_DIR):
            raise RunError(f"{out} already holds a checkpoint; continue it with --resume {out} or choose another --out")
        cfg["out"] = str(out)
    out = Path(cfg["out"])
    model, loader, val_loader, opt, sched, interval = _setup(cfg, device)
    callbacks = [ModelCheckpoint(every_steps=cfg["checkpoint_every"] or None, every_epochs=1)]
    if cfg["early_stopping"]:
        callbacks.append(EarlyStopping(patience=cfg["early_stopping"]))
    kwargs = dict(val_loader=val_loader, scheduler=sched, scheduler_interval=interval,
                  out_dir=out, callbacks=callbacks, progress=progress, clip_grad_norm=cfg["clip_grad_norm"],
                  model_name=cfg["model"], model_config=cfg["model_config"], run_config=cfg,
                  augment=parse_augment(cfg.get("augment")), augment_seed=cfg["seed"], log=log, stream=stream)
    if dist is not None:
        loader, kwargs = dist.prepare(cfg, model, loader, kwargs)
    trainer = Trainer(model, opt, loader, **kwargs)
    if resume is not None:
        if dist is None:
            trainer.resume()
        else:  # rank 0 alone reads the checkpoint; dist.sync below copies its state to the others
            dist.from_main(trainer.resume, share=False)
        trainer.log(f"resumed {out} at epoch {trainer.epoch}, step {trainer.step}")
    else:
        if main:
            out.mkdir(parents=True, exist_ok=True)
        trainer.log(f"training {cfg['model']} on {cfg['data']} ({len(loader.dataset)} train / "
                    f"{len(val_loader.dataset)} held-out images) for {cfg['epochs']} epochs -> {out}")
    if dist is not None:
        dist.sync(trainer)
    history = trainer.fit(cfg["epochs"])
    if trainer.epoch == 0:
        trainer.save_checkpoint()
    result = evaluate(model, val_loader)
    if plots and main:
        _write_plots(out, history, model)
    return {"out": out, "history": history, "eval": result, "config": cfg, "trainer": trainer, "is_main": main}


def first_conv_weight(model):
    """The weight of the model's first 2-D convolution (for filter pictures), or None."""
    from ..nn import Conv2d

    for m in model.modules():
        if isinstance(m, Conv2d):
            return m.weight.data
    return None


def _write_plots(out: Path, history, model) -> None:
    from .. import viz

    if history:
        viz.plot_curves(history, out / "curves.png")
    w = first_conv_weight(model)
    if w is not None:
        viz.filter_grid(w, out / "filters.png")
