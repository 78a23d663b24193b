"""The training loop: ``Trainer.fit`` with progress, CSV log, NaN guard, callbacks and exact resume.

One step is the lecture's gradient descent on the batch-averaged divergence::

    logits = model(images)                  # forward through every layer
    loss = loss_fn(logits, labels)          # e.g. cross-entropy averaged over the batch
    optimizer.zero_grad(); loss.backward()  # every layer's explicit backward
    optimizer.step()                        # w <- w - lr * dLoss/dw (or a variant)

A :class:`Trainer` owns the counters (completed epochs, global step), the history and the
partial sums of the epoch in progress, so that a checkpoint written at any step boundary -- with
the loader's position, the optimizer and scheduler state and the RNG state -- lets ``resume()``
continue with bit-identical losses and weights.  A non-finite loss stops training before the
optimizer touches the weights (:class:`TrainingDiverged`), so the last checkpoint stays good.
Ctrl-C (SIGINT) is deferred to the end of the current step, a checkpoint is written, and
``KeyboardInterrupt`` is raised.

Data-parallel hooks (used by :mod:`striate.distributed`; all optional, the defaults change
nothing): ``reduce_stats(loss, correct, n)`` turns a step's local loss, number correct and batch
size into the global ones before the NaN guard (so every rank stops together and the log shows the
whole batch); ``backward_fn(loss)`` replaces ``loss.backward()`` and must leave the final (e.g.
rank-averaged) gradients in ``.grad``; ``is_main=False`` makes a trainer silent -- no progress bar,
no log lines, no ``log.csv``, no checkpoint files (rank 0 alone writes them) -- and deaf to Ctrl-C
(rank 0 alone stops, after its checkpoint, which ends the whole job).
"""

from __future__ import annotations

import csv
import io
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import Tensor, no_grad
from ..io.safetensors import atomic_write_bytes
from .checkpoint import POINTER_NAME, load_checkpoint, save_checkpoint
from .metrics import confusion_matrix, topk_accuracy

__all__ = ["Trainer", "TrainingDiverged", "Callback", "EarlyStopping", "ModelCheckpoint", "evaluate", "predict"]

CHECKPOINT_DIR = "checkpoint"
LOG_NAME = "log.csv"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the weights were not updated with it."""


class Callback:
    """Hooks called by :meth:`Trainer.fit`; set ``trainer.should_stop = True`` to end training."""

    def on_step_end(self, trainer: "Trainer", loss: float) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", record: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 5, min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best: float | None = None
        self.bad_epochs = 0

    def on_epoch_end(self, trainer, record):
        value = record.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta)
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                trainer.should_stop = True
                trainer.log(f"early stopping: {self.monitor} has not improved for {self.bad_epochs} epochs")

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


class ModelCheckpoint(Callback):
    """Write the trainer's checkpoint every ``every_steps`` steps and/or every ``every_epochs`` epochs."""

    def __init__(self, every_steps: int | None = None, every_epochs: int | None = 1):
        for name, v in (("every_steps", every_steps), ("every_epochs", every_epochs)):
            if v is not None and v <= 0:
                raise ValueError(f"{name} must be positive, got {v}")
        self.every_steps, self.every_epochs = every_steps, every_epochs

    def on_step_end(self, trainer, loss):
        if self.every_steps and trainer.step % self.every_steps == 0:
            trainer.save_checkpoint()

    def on_epoch_end(self, trainer, record):
        if self.every_epochs and trainer.epoch % self.every_epochs == 0:
            trainer.save_checkpoint()


class _Progress:
    """A tqdm bar on a terminal; plain lines (about four per epoch) when output is redirected."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool, stream):
        self.total, self.n, self.desc, self.stream = total, initial, desc, stream
        self.bar = None
        self._next_line = initial
        self.enabled = enabled
        if not enabled:
            return
        if stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, desc=desc, file=stream, dynamic_ncols=True, leave=True)

    def update(self, **stats) -> None:
        self.n += 1
        if not self.enabled:
            return
        text = ", ".join(f"{k}={v}" for k, v in stats.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.n >= self._next_line or self.n == self.total:
            print(f"{self.desc} step {self.n}/{self.total} {text}", file=self.stream, flush=True)
            self._next_line = self.n + max(1, self.total // 4)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _to_tensor(array, device: str = "cpu") -> Tensor:
    """A batch as a Tensor on ``device`` (the model's): host batches are copied to a GPU here."""
    t = array if isinstance(array, Tensor) else Tensor._wrap(backend.asarray(array))
    return t if t.device == device else Tensor._wrap(backend.to_device(t.data, device))


def _model_device(model) -> str:
    device = getattr(model, "device", "cpu")
    return device if isinstance(device, str) else "cpu"


def _host(a) -> np.ndarray:
    """A Tensor's data or an array as a NumPy array (device arrays are copied to the host)."""
    return np.asarray(backend.to_numpy(a.data if isinstance(a, Tensor) else a))


def _loss_and_logits(model, loss_fn, images, labels):
    device = _model_device(model)
    logits = model(_to_tensor(images, device))
    return loss_fn(logits, _to_tensor(labels, device)), logits


def evaluate(model, loader, loss_fn: Callable = F.cross_entropy, num_classes: int | None = None, topk: int = 5) -> dict:
    """Mean loss, accuracy, top-k accuracy and confusion matrix of ``model`` over ``loader`` (eval mode)."""
    was_training = model.training
    model.eval()
    total_loss, n, all_logits, all_labels = 0.0, 0, [], []
    try:
        with no_grad():
            for images, labels in loader:
                loss, logits = _loss_and_logits(model, loss_fn, images, labels)
                total_loss += float(loss.item()) * len(labels)
                n += len(labels)
                all_logits.append(_host(logits))
                all_labels.append(_host(labels))
    finally:
        model.train(was_training)
    if n == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "n": 0}
    logits = np.concatenate(all_logits)
    labels = np.concatenate(all_labels)
    classes = num_classes or logits.shape[1]
    preds = logits.argmax(axis=1)
    return {
        "loss": total_loss / n,
        "accuracy": float(np.mean(preds == labels)),
        f"top{topk}": topk_accuracy(logits, labels, topk),
        "confusion": confusion_matrix(preds, labels, classes),
        "n": n,
    }


def predict(model, images, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (softmax of the logits) for an (N, C, H, W) array, in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with no_grad():
            for start in range(0, len(images), batch_size):
                logits = model(_to_tensor(np.asarray(images[start : start + batch_size]), _model_device(model)))
                out.append(backend.to_numpy(F.softmax(logits, dim=1).data))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


class Trainer:
    """Fit ``model`` with ``optimizer`` on ``train_loader``; see the module docstring.

    ``out_dir`` (optional) receives ``checkpoint/`` and ``log.csv``.  ``scheduler_interval`` is
    'epoch' or 'step'; a ReduceLROnPlateau scheduler is stepped with the monitored validation
    loss (training loss when there is no validation loader).
    """

    def __init__(self, model, optimizer, train_loader, *, loss_fn: Callable = F.cross_entropy, val_loader=None,
                 scheduler=None, scheduler_interval: str = "epoch", out_dir=None,
                 callbacks: Iterable[Callback] = (), progress: bool = True, clip_grad_norm: float | None = None,
                 model_name: str | None = None, model_config: dict | None = None, run_config: dict | None = None,
                 augment: Callable | None = None, augment_seed: int = 0, metric_fn: Callable | None = None,
                 log: Callable[[str], None] | None = None, stream=None,
                 backward_fn: Callable[[Tensor], None] | None = None,
                 reduce_stats: Callable[[float, int, int], tuple[float, int, int]] | None = None,
                 is_main: bool = True):
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.model, self.optimizer, self.train_loader = model, optimizer, train_loader
        self.loss_fn, self.val_loader, self.scheduler = loss_fn, val_loader, scheduler
        self.scheduler_interval = scheduler_interval
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks)
        self.progress, self.clip_grad_norm = progress, clip_grad_norm
        self.model_name = model_name or getattr(model, "model_name", type(model).__name__)
        self.model_config = model_config if model_config is not None else getattr(model, "model_config", {})
        self.run_config = run_config or {}
        self.augment, self.augment_seed = augment, augment_seed
        self.metric_fn = metric_fn  # (outputs, targets) -> "correct" count; default: argmax hits of (N, K) logits
        self.stream = stream if stream is not None else sys.stderr
        self.log = log or (lambda msg: print(msg, file=self.stream, flush=True))
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimisation steps
        self.history: list[dict] = []
        self.should_stop = False
        self._partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        self._interrupted = False
        self.backward_fn, self.reduce_stats, self.is_main = backward_fn, reduce_stats, bool(is_main)
        if not self.is_main:
            self.progress = False
            self.log = lambda msg: None
        self.last_batch_size = 0  # samples in the last step's batch (over all ranks when data-parallel)

    # ------------------------------------------------------------------ one step
    def train_step(self, images, labels) -> tuple[float, int]:
        """Forward, NaN guard, backward, optimizer step; returns (loss, number correct).

        With ``augment``, the batch is first transformed with a generator seeded by
        (``augment_seed``, global step): random, yet a pure function of the position in the run,
        so a resumed run draws exactly the same transformations.
        """
        if self.augment is not None:
            images = self.augment(np.asarray(images), np.random.default_rng([self.augment_seed, self.step]))
        # Overflow in a diverging run is reported once, by the guard below, not as NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, logits = _loss_and_logits(self.model, self.loss_fn, images, labels)
        value = float(loss.item())
        if self.metric_fn is not None:
            correct = float(self.metric_fn(logits, labels))  # may be fractional (pixel accuracy x batch)
        else:
            correct = int(np.sum(_host(logits).argmax(axis=1) == _host(labels))) if logits.ndim == 2 else 0
        n = len(labels)
        if self.reduce_stats is not None:
            value, correct, n = self.reduce_stats(value, correct, n)
        self.last_batch_size = n
        if not math.isfinite(value):
            where = f" in {self.out_dir / CHECKPOINT_DIR}" if self.out_dir else ""
            raise TrainingDiverged(
                f"loss became {value} at epoch {self.epoch + 1}, step {self.step + 1}; training stopped before "
                f"the weights were updated and the last good checkpoint{where} is kept (try a lower learning rate)"
            )
        self.optimizer.zero_grad()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.backward_fn is not None:
                self.backward_fn(loss)
            else:
                loss.backward()
        if self.clip_grad_norm is not None:
            from ..nn.utils import clip_grad_norm_

            clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        return value, correct

    # ------------------------------------------------------------------ the loop
    def fit(self, epochs: int) -> list[dict]:
        """Train until ``epochs`` epochs are complete (counting any already done); returns the history."""
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        restore = self._install_sigint()
        try:
            while self.epoch < epochs and not self.should_stop:
                self._run_epoch(epochs)
        finally:
            restore()
        return self.history

    def _run_epoch(self, epochs: int) -> None:
        self.model.train()
        loader = self.train_loader
        start_pos = getattr(loader, "position", 0)
        bar = _Progress(len(loader), start_pos, f"epoch {self.epoch + 1}/{epochs}", self.progress, self.stream)
        p = self._partial
        t0 = time.perf_counter()
        try:
            for images, labels in loader:
                t_step = time.perf_counter()
                self.last_batch_size = len(labels)  # train_step replaces it with the global count
                loss, correct = self.train_step(images, labels)
                self.step += 1
                n = self.last_batch_size
                p["loss_sum"] += loss * n
                p["correct"] += correct
                p["seen"] += n
                p["time"] += time.perf_counter() - t_step
                if self.scheduler is not None and self.scheduler_interval == "step":
                    self.scheduler.step()
                bar.update(loss=f"{loss:.4f}", acc=f"{p['correct'] / max(p['seen'], 1):.3f}",
                           img_s=f"{p['seen'] / max(p['time'], 1e-9):.0f}")
                for cb in self.callbacks:
                    cb.on_step_end(self, loss)
                if self._interrupted:
                    self._stop_on_interrupt()
        finally:
            bar.close()
        record = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "train_loss": p["loss_sum"] / max(p["seen"], 1),
            "train_acc": p["correct"] / max(p["seen"], 1),
        }
        if self.val_loader is not None:
            result = evaluate(self.model, self.val_loader, self.loss_fn)
            record["val_loss"], record["val_acc"] = result["loss"], result["accuracy"]
        record["images_per_s"] = p["seen"] / max(p["time"], 1e-9)
        record["epoch_time"] = time.perf_counter() - t0
        self.history.append(record)
        self.epoch += 1
        self._partial = p = {"loss_sum": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            if type(self.scheduler).__name__ == "ReduceLROnPlateau":
                self.scheduler.step(record.get("val_loss", record["train_loss"]))
            else:
                self.scheduler.step()
        self.log(self._describe(record))
        self.write_log()
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)

    @staticmethod
    def _describe(r: dict) -> str:
        text = f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.2%}"
        if "val_loss" in r:
            text += f" | held-out loss {r['val_loss']:.4f} acc {r['val_acc']:.2%}"
        return text + f" | {r['images_per_s']:.0f} images/s, {r['epoch_time']:.1f} s"

    # ------------------------------------------------------------------ SIGINT
    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)
        if not self.is_main:  # data-parallel: rank 0 alone stops (after checkpointing), which ends the job
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return lambda: signal.signal(signal.SIGINT, previous)

        def handler(signum, frame):
            if self._interrupted:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._interrupted = True
            self.log("interrupt received: finishing this step and writing a checkpoint (Ctrl-C again to abort)")

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)

    def _stop_on_interrupt(self):
        if self.out_dir is not None:
            path = self.save_checkpoint()
            self.log(f"checkpoint written to {path.parent}; resume with --resume {self.out_dir}")
        raise KeyboardInterrupt

    # ------------------------------------------------------------------ files
    @property
    def checkpoint_dir(self) -> Path:
        if self.out_dir is None:
            raise ValueError("this Trainer has no out_dir, so it cannot checkpoint")
        return self.out_dir / CHECKPOINT_DIR

    def save_checkpoint(self) -> Path:
        """Write everything needed to continue exactly from the current step boundary.

        Returns the path of ``checkpoint.json``; a trainer with ``is_main=False`` writes nothing.
        """
        if not self.is_main:
            return self.checkpoint_dir / POINTER_NAME
        extra = {
            "history": self.history,
            "partial": dict(self._partial),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "run": self.run_config,
        }
        data_state = self.train_loader.state_dict() if hasattr(self.train_loader, "state_dict") else None
        return save_checkpoint(
            self.checkpoint_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            epoch=self.epoch, step=self.step, data_state=data_state, model_name=self.model_name,
            model_config=self.model_config, extra=extra,
        )

    def resume(self, directory=None) -> dict:
        """Load the checkpoint (default: ``out_dir/checkpoint``) into model, optimizer, scheduler, loader."""
        directory = Path(directory) if directory is not None else self.checkpoint_dir
        state = load_checkpoint(
            directory, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            expect_model={"name": self.model_name, "config": self.model_config}, restore_rng=True,
        )
        if state.get("data_state") is not None and hasattr(self.train_loader, "load_state_dict"):
            self.train_loader.load_state_dict(state["data_state"])
        extra = state.get("extra") or {}
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(extra.get("history", []))
        self._partial = dict(extra.get("partial", self._partial))
        for cb, s in zip(self.callbacks, extra.get("callbacks", [])):
            cb.load_state_dict(s)
        return state

    def write_log(self) -> None:
        """Rewrite ``log.csv`` from the history (atomically, so it always matches a checkpoint)."""
        if self.out_dir is None or not self.history or not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        for r in self.history:
            writer.writerow({k: r.get(k, "") for k in keys})
        atomic_write_bytes(self.out_dir / LOG_NAME, buf.getvalue().encode())
