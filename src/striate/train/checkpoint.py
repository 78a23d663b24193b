"""Training checkpoints that survive a crash at any instant: safetensors weights + a JSON pointer.

Usage::

    save_checkpoint("runs/a", model=model, optimizer=opt, scheduler=sched, epoch=3, step=1200,
                    data_state=loader.state_dict(), model_name="resnet18", model_config=cfg,
                    extra={"best_acc": 0.91})
    ...
    state = load_checkpoint("runs/a", model=model, optimizer=opt, scheduler=sched,
                            expect_model={"name": "resnet18", "config": cfg}, restore_rng=True)
    loader.load_state_dict(state["data_state"]); start = state["step"]

On-disk scheme (one checkpoint per directory, written by one process at a time)::

    runs/a/
      checkpoint.json                               the pointer and every non-array value
      weights-0000001200-<sha256[:16]>.safetensors  every array, immutable once written

* ``weights-<step>-<hash>.safetensors`` holds all arrays under prefixed keys: ``model.<key>``
  (the model's ``state_dict``), ``optimizer.state.<index>.<name>`` (the optimizer's buffers:
  ``momentum_buffer``, ``exp_avg`` ...), and ``<section>.<path>`` for any array found elsewhere
  (``rng_state.state.key`` for an MT19937 state, ``extra.<key>`` ...).  The name carries the
  step and the first 16 hex digits of the file's SHA-256, so a new save never overwrites the file
  the current pointer names.
* ``checkpoint.json`` holds ``format``, ``format_version``, ``weights`` (``file``, ``sha256``,
  ``size``), ``model`` (``name``, ``config``), ``epoch``, ``step``, ``rng_state`` (the numpy
  ``bit_generator.state`` dict of :mod:`striate.random`'s generator: Python ints, exact),
  ``data_state``, ``optimizer`` / ``scheduler`` (``class`` and ``state_dict``) and ``extra``.
  It is strict JSON; values JSON cannot express exactly are tagged objects: ``{"$tuple": [...]}``,
  ``{"$dict": [[key, value], ...]}`` (non-string keys such as an optimizer's integer state
  indices, or keys starting with ``$``), ``{"$float": "inf"}``, ``{"$numpy": "float32", "value":
  ...}`` for NumPy scalars and ``{"$array": "<safetensors key>"}`` for arrays.  So PyTorch-style
  optimizer state dicts (``{'state': {0: {...}}, 'param_groups': [{..., 'betas': (0.9, 0.999)}]}``),
  scheduler state dicts and RNG states come back exactly: same types, same bits.

Write order (:func:`save_checkpoint`): everything is encoded and validated in memory first (an
unsupported value raises before the directory is touched); stale temporary files are swept; the
weights file is written atomically (temp file in the same directory, flush, ``fsync``,
``os.replace``, ``fsync`` of the directory); then ``checkpoint.json`` the same way -- the commit
point; only then are the older ``weights-*.safetensors`` files removed.  A writer killed at any
moment therefore leaves either the old pointer with its intact old weights file, or the new
pointer with its intact new weights file; what else it may leave (a ``.tmp-<pid>-...`` file, an
unreferenced new weights file) is swept by the next save (temp files also by the next load, for
writers that are dead: a live writer's temp file is never touched).

Read order (:func:`load_checkpoint`): parse ``checkpoint.json``, read the weights file it names,
check its size and SHA-256, parse it, decode the JSON, then check the architecture (the saved model
name/config against ``expect_model``; the saved keys and shapes against ``model``, with the
message of :class:`striate.nn.StateDictError` listing every missing, unexpected and mis-shaped
key) and the optimizer/scheduler classes and group sizes -- all before anything is assigned.
Any problem raises :class:`CheckpointError` (a ValueError) naming the file; the model, optimizer
and scheduler are unchanged.  (Should an object's own ``load_state_dict`` still fail while
assigning, what was already assigned is restored from snapshots before the error is raised.)
No pickle is used anywhere.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import backend
from .. import random as _random
from ..autograd import Tensor
from ..io.safetensors import (
    SafetensorsError,
    _fsync_dir,
    atomic_write_bytes,
    deserialize_safetensors,
    serialize_safetensors,
    sweep_stale_temp_files,
)
from ..nn.module import StateDictError

__all__ = [
    "save_checkpoint", "load_checkpoint", "has_checkpoint", "CheckpointError",
    "ArchitectureMismatchError", "FORMAT", "FORMAT_VERSION", "POINTER_NAME",
]

FORMAT = "striate-checkpoint"
FORMAT_VERSION = 1
POINTER_NAME = "checkpoint.json"
_WEIGHTS_RE = re.compile(r"^weights-(?:\d+-)?[0-9a-f]{16}\.safetensors$")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, inconsistent, or does not fit the objects given.

    ``path`` is the file (or directory) at fault.
    """

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class ArchitectureMismatchError(CheckpointError):
    """The checkpoint was saved from another architecture than the model/``expect_model`` given."""


# ---------------------------------------------------------------------- lossless JSON encoding


def _is_tag_free(d: Mapping) -> bool:
    return all(isinstance(k, str) and not k.startswith("$") for k in d)


class _Encoder:
    """Turns a value into strict-JSON data, moving NumPy arrays out into ``self.arrays``."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _key(self, key: str) -> str:
        if key not in self.arrays:
            return key
        n = 1
        while f"{key}~{n}" in self.arrays:
            n += 1
        return f"{key}~{n}"

    def encode(self, value, where: str, key: str):
        if value is None or isinstance(value, (bool, str)):
            return value
        if backend.device_of(value) != "cpu":  # a device (CuPy) array: checkpoints hold host arrays
            value = backend.to_numpy(value)
        if isinstance(value, int):
            return int(value)  # int subclasses (IntEnum...) become plain ints
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf" and value.dtype != np.complex64:
                raise TypeError(f"{where}: cannot store an array of dtype {value.dtype} in a checkpoint")
            k = self._key(key)
            self.arrays[k] = value
            return {"$array": k}
        if isinstance(value, np.generic):
            if value.dtype.kind not in "biuf":
                raise TypeError(f"{where}: cannot store a NumPy {value.dtype} scalar in a checkpoint")
            return {"$numpy": value.dtype.name, "value": self.encode(value.item(), where, key)}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, f"{where}[{i}]", f"{key}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]", f"{key}.{i}") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if _is_tag_free(value):
                return {k: self.encode(v, f"{where}[{k!r}]", f"{key}.{k}") for k, v in value.items()}
            return {"$dict": [
                [self.encode(k, f"{where} key {k!r}", f"{key}.{k}"), self.encode(v, f"{where}[{k!r}]", f"{key}.{k}")]
                for k, v in value.items()
            ]}
        raise TypeError(
            f"{where}: cannot store a {type(value).__name__} in a checkpoint (allowed: None, bool, int, "
            "float, str, list, tuple, dict, NumPy arrays and scalars)"
        )


def _decode(value, arrays: Mapping[str, np.ndarray], where: str):
    """Invert :class:`_Encoder`; ``ValueError`` for a malformed tag or a missing array."""
    if isinstance(value, list):
        return [_decode(v, arrays, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, body), = value.items()
        if tag == "$tuple" and isinstance(body, list):
            return tuple(_decode(v, arrays, where) for v in body)
        if tag == "$dict" and isinstance(body, list):
            out = {}
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise ValueError(f"{where}: malformed $dict entry {pair!r}")
                k = _decode(pair[0], arrays, where)
                out[k] = _decode(pair[1], arrays, where)
            return out
        if tag == "$float" and body in ("inf", "-inf", "nan"):
            return float(body)
        if tag == "$array" and isinstance(body, str):
            if body not in arrays:
                raise ValueError(f"{where}: array {body!r} is not in the weights file")
            return arrays[body]
    if set(value) == {"$numpy", "value"} and isinstance(value["$numpy"], str):
        dtype = np.dtype(value["$numpy"])
        if dtype.kind not in "biuf":
            raise ValueError(f"{where}: NumPy scalar of dtype {dtype} is not allowed")
        return dtype.type(_decode(value["value"], arrays, where))
    if not _is_tag_free(value):
        raise ValueError(f"{where}: unknown tagged value {value!r}")
    return {k: _decode(v, arrays, where) for k, v in value.items()}


def _plain(value):
    """A comparison form: tuples as lists, NumPy scalars as Python numbers."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------- saving


def _as_array(v) -> np.ndarray:
    return v.data if isinstance(v, Tensor) else np.asarray(v)


def _check_count(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(f"{name} must be a non-negative int or None, got {value!r}")
    return int(value)


def _make_dirs_durably(directory: Path) -> None:
    """``mkdir -p`` that also fsyncs the parent of every directory it creates."""
    missing = []
    d = directory.absolute()
    while not d.is_dir():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        _fsync_dir(d.parent)


def has_checkpoint(directory) -> bool:
    """Whether ``directory`` holds a checkpoint pointer (it may still turn out to be corrupt)."""
    return (Path(directory) / POINTER_NAME).is_file()


def save_checkpoint(
    directory,
    *,
    model,
    optimizer=None,
    scheduler=None,
    epoch: int | None = None,
    step: int | None = None,
    rng_state: dict | None = None,
    data_state: dict | None = None,
    model_name: str | None = None,
    model_config: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Save a checkpoint into ``directory`` (created if needed), replacing the previous one atomically.

    Args:
        model: a Module (anything with ``state_dict()``); its arrays go to the weights file.
        optimizer, scheduler: objects with ``state_dict()``; arrays in their state go to the
            weights file, everything else to ``checkpoint.json``.
        epoch, step: counters to resume from (non-negative ints or None); ``step`` names the
            weights file.
        rng_state: the bit-generator state to record; None records :mod:`striate.random`'s
            default generator (``striate.random.get_rng_state()``).
        data_state: e.g. ``loader.state_dict()`` (the data order and position).
        model_name, model_config: the architecture, checked by ``load_checkpoint(expect_model=)``;
            the name defaults to the model's class name.
        extra: any other values (JSON types, tuples, NumPy arrays/scalars), returned as saved.

    Returns the path of ``checkpoint.json``.  Raises TypeError for a value that cannot be stored,
    before anything is written.  See the module docstring for the on-disk scheme.
    """
    directory = Path(directory)
    epoch, step = _check_count("epoch", epoch), _check_count("step", step)
    if model_name is None:
        model_name = type(model).__name__
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a dict, got {type(extra).__name__}")
    if rng_state is None:
        rng_state = _random.get_rng_state()

    # 1. encode everything in memory (errors here leave the directory untouched)
    enc = _Encoder()
    for k, v in model.state_dict().items():
        enc.arrays[f"model.{k}"] = _as_array(v)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": None,  # filled in below
        "saved_at": time.time(),
        "model": {"name": model_name, "config": enc.encode(model_config, "model_config", "model_config")},
        "epoch": epoch,
        "step": step,
        "rng_state": enc.encode(rng_state, "rng_state", "rng_state"),
        "data_state": enc.encode(data_state, "data_state", "data_state"),
        "optimizer": None,
        "scheduler": None,
        "extra": enc.encode(dict(extra or {}), "extra", "extra"),
    }
    for section, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            doc[section] = {
                "class": type(obj).__name__,
                "state_dict": enc.encode(obj.state_dict(), f"{section}.state_dict()", section),
            }
    weights = serialize_safetensors(enc.arrays, {"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    digest = hashlib.sha256(weights).hexdigest()
    weights_name = (f"weights-{step:010d}-" if step is not None else "weights-") + f"{digest[:16]}.safetensors"
    doc["weights"] = {"file": weights_name, "sha256": digest, "size": len(weights)}
    pointer_bytes = (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8")

    # 2. write: weights, then the pointer (the commit point), then drop the old weights
    _make_dirs_durably(directory)
    sweep_stale_temp_files(directory)
    atomic_write_bytes(directory / weights_name, weights)
    pointer = atomic_write_bytes(directory / POINTER_NAME, pointer_bytes)
    removed = False
    for entry in os.scandir(directory):
        if entry.name != weights_name and _WEIGHTS_RE.match(entry.name):
            try:
                os.unlink(entry.path)
                removed = True
            except OSError:  # pragma: no cover - e.g. removed concurrently
                pass
    if removed:
        _fsync_dir(directory)
    return pointer


# ---------------------------------------------------------------------- loading


def _read(directory: Path):
    """``(doc, arrays, weights_path)`` of a consistent checkpoint, or CheckpointError."""
    pointer = directory / POINTER_NAME
    attempts = 10
    for attempt in range(attempts):  # retry while a concurrent writer replaces the pointer mid-read
        try:
            raw = pointer.read_bytes()
        except FileNotFoundError:
            where = "directory does not exist" if not directory.exists() else f"no {POINTER_NAME}"
            raise CheckpointError(f"no checkpoint at {pointer} ({where})", pointer) from None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {pointer}: {exc}", pointer) from exc
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"corrupt checkpoint {pointer}: not valid JSON ({exc})", pointer) from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CheckpointError(f"{pointer} is not a striate checkpoint (format {FORMAT!r} expected)", pointer)
        version = doc.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise CheckpointError(
                f"{pointer}: checkpoint format version {version!r} is not supported "
                f"(this striate reads versions 1..{FORMAT_VERSION})", pointer)
        w = doc.get("weights")
        if not (isinstance(w, dict) and isinstance(w.get("file"), str) and _WEIGHTS_RE.match(w["file"])
                and isinstance(w.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", w["sha256"])
                and isinstance(w.get("size"), int)):
            raise CheckpointError(f"corrupt checkpoint {pointer}: bad 'weights' entry {w!r}", pointer)
        weights_path = directory / w["file"]
        problem = None
        try:
            data = weights_path.read_bytes()
        except FileNotFoundError:
            problem = f"weights file {weights_path} named by {pointer} is missing"
        except OSError as exc:
            problem = f"cannot read weights file {weights_path}: {exc}"
        else:
            if len(data) != w["size"]:
                problem = (f"weights file {weights_path} has {len(data)} bytes, {pointer} records "
                           f"{w['size']} (truncated or replaced)")
            elif hashlib.sha256(data).hexdigest() != w["sha256"]:
                problem = (f"weights file {weights_path} fails its SHA-256 check (recorded in {pointer}): "
                           "the file is corrupt or was replaced")
        if problem is None:
            break
        try:
            changed = pointer.read_bytes() != raw
        except OSError:
            changed = False
        if not changed or attempt == attempts - 1:
            raise CheckpointError(problem, weights_path)
    try:
        arrays, _ = deserialize_safetensors(data, source=str(weights_path))
    except SafetensorsError as exc:
        raise CheckpointError(str(exc), weights_path) from exc
    return doc, arrays, weights_path


def _describe_model(name, config) -> str:
    return f"{name!r}" + ("" if config is None else f" with config {config!r}")


def _check_expected_model(saved: dict, expect: Mapping, pointer: Path) -> None:
    if not isinstance(expect, Mapping) or not set(expect) <= {"name", "config"}:
        raise TypeError("expect_model must be a dict with keys 'name' and/or 'config'")
    problems = []
    if "name" in expect and expect["name"] != saved.get("name"):
        problems.append(f"model name: checkpoint {saved.get('name')!r}, expected {expect['name']!r}")
    if "config" in expect:
        got, want = _plain(saved.get("config")), _plain(expect["config"])
        if got != want:
            if isinstance(got, dict) and isinstance(want, dict):
                for k in sorted(set(got) | set(want), key=str):
                    if got.get(k, "<absent>") != want.get(k, "<absent>"):
                        problems.append(f"config[{k!r}]: checkpoint {got.get(k, '<absent>')!r}, "
                                        f"expected {want.get(k, '<absent>')!r}")
            else:
                problems.append(f"config: checkpoint {got!r}, expected {want!r}")
    if problems:
        raise ArchitectureMismatchError(
            f"checkpoint {pointer} was saved from another architecture "
            f"({_describe_model(saved.get('name'), saved.get('config'))}); nothing was loaded:\n  "
            + "\n  ".join(problems), pointer)


def _check_model_arrays(model, given: Mapping[str, np.ndarray], strict: bool, pointer: Path, saved_name) -> None:
    """Module.load_state_dict's checks, without writing (so later failures leave the model intact)."""
    current = model.state_dict()
    missing = [k for k in current if k not in given]
    unexpected = [k for k in given if k not in current]
    mismatched = [(k, tuple(given[k].shape), tuple(_as_array(v).shape)) for k, v in current.items()
                  if k in given and tuple(given[k].shape) != tuple(_as_array(v).shape)]  # the model's order
    if mismatched or (strict and (missing or unexpected)):
        err = StateDictError(missing, unexpected, mismatched)
        raise ArchitectureMismatchError(
            f"checkpoint {pointer} (model {saved_name!r}) does not fit this {type(model).__name__}: {err}",
            pointer) from err


def _check_optimizer(optimizer, saved, pointer: Path) -> None:
    if saved is None:
        raise CheckpointError(f"checkpoint {pointer} has no optimizer state", pointer)
    if saved["class"] != type(optimizer).__name__:
        raise CheckpointError(
            f"checkpoint {pointer} holds {saved['class']} state, the optimizer given is "
            f"{type(optimizer).__name__}", pointer)
    groups = getattr(optimizer, "param_groups", None)
    saved_groups = saved["state_dict"].get("param_groups") if isinstance(saved["state_dict"], dict) else None
    if groups is not None and isinstance(saved_groups, list):
        sizes = [len(g["params"]) for g in groups]
        saved_sizes = [len(g.get("params", ())) for g in saved_groups]
        if sizes != saved_sizes:
            raise CheckpointError(
                f"checkpoint {pointer}: the optimizer's parameter groups have sizes {sizes}, the saved "
                f"ones {saved_sizes}", pointer)


def load_checkpoint(
    directory,
    *,
    model=None,
    optimizer=None,
    scheduler=None,
    expect_model: dict | None = None,
    strict: bool = True,
    restore_rng: bool = False,
) -> dict:
    """Load the checkpoint in ``directory`` into the objects given; return its non-array state.

    Everything is read, hash-checked and validated before anything is assigned: the saved model
    name/config must equal ``expect_model`` (``{'name': ..., 'config': ...}``, either key
    optional), the saved keys and shapes must fit ``model`` (``strict`` as in
    ``Module.load_state_dict``), and the saved optimizer/scheduler must be of the classes given
    (with the same parameter-group sizes).  ``restore_rng=True`` also restores
    :mod:`striate.random`'s default generator from the saved state.

    Returns a dict with ``epoch``, ``step``, ``rng_state``, ``data_state``, ``model_name``,
    ``model_config``, ``extra`` (as saved), ``optimizer_state`` / ``scheduler_state`` (the
    rebuilt state dicts, or None), ``format_version``, ``saved_at`` and ``weights_file``.

    Raises :class:`CheckpointError` (missing, corrupt or hash-mismatched files, or objects that
    do not fit) or its subclass :class:`ArchitectureMismatchError`, naming the path; the objects
    are then unchanged.
    """
    directory = Path(directory)
    pointer = directory / POINTER_NAME
    sweep_stale_temp_files(directory)
    doc, arrays, weights_path = _read(directory)

    # decode the JSON sections, resolving array references
    decoded = {}
    try:
        for section in ("rng_state", "data_state", "extra"):
            decoded[section] = _decode(doc.get(section), arrays, section)
        saved_model = doc.get("model") or {}
        if not isinstance(saved_model, dict):
            raise ValueError("'model' is not an object")
        model_config = _decode(saved_model.get("config"), arrays, "model.config")
        for section in ("optimizer", "scheduler"):
            entry = doc.get(section)
            if entry is None:
                decoded[section] = None
                continue
            if not (isinstance(entry, dict) and isinstance(entry.get("class"), str) and "state_dict" in entry):
                raise ValueError(f"'{section}' entry is malformed")
            decoded[section] = {"class": entry["class"],
                                "state_dict": _decode(entry["state_dict"], arrays, f"{section}.state_dict")}
        for key in ("epoch", "step"):
            if doc.get(key) is not None and (isinstance(doc[key], bool) or not isinstance(doc[key], int)):
                raise ValueError(f"'{key}' is not an int")
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"corrupt checkpoint {pointer}: {exc}", pointer) from exc
    saved_name = saved_model.get("name")

    # validate against the objects given -- before assigning anything
    if expect_model is not None:
        _check_expected_model({"name": saved_name, "config": model_config}, expect_model, pointer)
    model_arrays = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    if model is not None:
        _check_model_arrays(model, model_arrays, strict, pointer, saved_name)
    if optimizer is not None:
        _check_optimizer(optimizer, decoded["optimizer"], pointer)
    if scheduler is not None:
        if decoded["scheduler"] is None:
            raise CheckpointError(f"checkpoint {pointer} has no scheduler state", pointer)
        if decoded["scheduler"]["class"] != type(scheduler).__name__:
            raise CheckpointError(
                f"checkpoint {pointer} holds {decoded['scheduler']['class']} state, the scheduler given is "
                f"{type(scheduler).__name__}", pointer)
    rng_state = decoded["rng_state"]
    if restore_rng and not isinstance(rng_state, dict):
        raise CheckpointError(f"checkpoint {pointer} has no RNG state to restore", pointer)

    # assign, with snapshots to roll back to should an object's own load_state_dict still fail
    undo = []
    try:
        if model is not None:
            snap = {k: _as_array(v).copy() for k, v in model.state_dict().items()}
            undo.append(lambda: model.load_state_dict(snap, strict=False))
            model.load_state_dict(model_arrays, strict=strict)
        if optimizer is not None:
            snap_opt = copy.deepcopy(optimizer.state_dict())
            undo.append(lambda: optimizer.load_state_dict(snap_opt))
            optimizer.load_state_dict(copy.deepcopy(decoded["optimizer"]["state_dict"]))
        if scheduler is not None:
            snap_sched = copy.deepcopy(scheduler.state_dict())
            undo.append(lambda: scheduler.load_state_dict(snap_sched))
            scheduler.load_state_dict(copy.deepcopy(decoded["scheduler"]["state_dict"]))
        if restore_rng:
            snap_rng = _random.get_rng_state()
            undo.append(lambda: _random.set_rng_state(snap_rng))
            _random.set_rng_state(rng_state)
    except Exception as exc:
        for fn in reversed(undo):
            try:
                fn()
            except Exception:  # pragma: no cover - best effort
                pass
        raise CheckpointError(
            f"checkpoint {pointer} could not be loaded ({type(exc).__name__}: {exc}); nothing was changed",
            pointer) from exc

    return {
        "epoch": doc.get("epoch"),
        "step": doc.get("step"),
        "rng_state": rng_state,
        "data_state": decoded["data_state"],
        "model_name": saved_name,
        "model_config": model_config,
        "extra": decoded["extra"],
        "optimizer_state": None if decoded["optimizer"] is None else decoded["optimizer"]["state_dict"],
        "scheduler_state": None if decoded["scheduler"] is None else decoded["scheduler"]["state_dict"],
        "format_version": doc["format_version"],
        "saved_at": doc.get("saved_at"),
        "weights_file": str(weights_path),
    }
