"""Weights files in the safetensors format, written atomically; never pickle.

A safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's dtype,
shape and byte range, plus an optional ``"__metadata__"`` map of strings) and the raw little-endian
bytes.  Reading one executes nothing, unlike ``torch.load``/``pickle``.  The encoding and decoding
are done by the ``safetensors`` package (``safetensors.numpy``), an optional dependency::

    pip install 'striate[train]'

:func:`save_safetensors` / :func:`load_safetensors` move a flat ``{name: ndarray}`` dict and a
``{str: str}`` metadata dict; :func:`save_state_dict` / :func:`load_state_dict_file` do the same
for a :class:`~striate.nn.Module`'s ``state_dict`` (PyTorch's key names, so a file written from
a PyTorch ``state_dict`` by ``safetensors.torch.save_file`` loads unchanged).

Crash safety: every file is written by :func:`atomic_write_bytes` -- into a temporary file in the
destination directory (``.tmp-<pid>-<random>-<name>``), flushed, ``fsync``-ed, renamed over the
destination with ``os.replace`` and the directory ``fsync``-ed -- so a reader sees either the old
file or the complete new one, never a torn one, even if the writer is killed or the machine loses
power.  A killed writer may leave its temporary file behind; :func:`sweep_stale_temp_files`
removes those whose writer process is gone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import numpy as np

from ..autograd import Tensor

__all__ = [
    "save_safetensors", "load_safetensors", "save_state_dict", "load_state_dict_file",
    "SafetensorsError", "atomic_write_bytes", "sweep_stale_temp_files", "serialize_safetensors",
    "deserialize_safetensors",
]

_EXTRA_HINT = "the safetensors package is needed for weights files: pip install 'striate[train]'"
_CHUNK = 1 << 20  # bytes per os.write call

# ---------------------------------------------------------------------- errors and the backend


class SafetensorsError(ValueError):
    """A weights file is missing a piece, truncated, or otherwise not valid safetensors."""


def _backend():
    """``safetensors.numpy``, imported on first use (it is an optional extra)."""
    try:
        import safetensors.numpy as st_numpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_EXTRA_HINT) from exc
    return st_numpy


# ---------------------------------------------------------------------- atomic files

_TEMP_RE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+-")
_active_temps: set[str] = set()  # temp files this process is writing right now (not stale)
_active_lock = threading.Lock()
_NON_POSIX_STALE_AFTER_S = 3600.0


def _fsync_dir(directory: Path) -> None:
    """Make a rename/unlink in ``directory`` durable (a no-op where directories cannot be opened)."""
    if os.name != "posix":  # pragma: no cover - Windows has no directory fsync
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path, data) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is always either the old or the new content.

    Steps: create ``<dir>/.tmp-<pid>-<random>-<name>`` exclusively, write all bytes, ``fsync``,
    ``os.replace`` onto ``path``, ``fsync`` the directory.  On any error the temporary file is
    removed and the error propagates; ``path`` is untouched.  Returns ``path`` as a Path.
    """
    path = Path(path)
    directory = path.parent
    view = memoryview(data).cast("B")
    while True:
        tmp = directory / f".tmp-{os.getpid()}-{secrets.token_hex(6)}-{path.name}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        break
    with _active_lock:
        _active_temps.add(str(tmp))
    try:
        try:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:written + _CHUNK])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        with _active_lock:
            _active_temps.discard(str(tmp))
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # pragma: no cover
        return True
    return True


def sweep_stale_temp_files(directory) -> list[Path]:
    """Remove temporary files left in ``directory`` by writers that were killed; return them.

    A temp file is stale when the process that created it (its pid is in the name) no longer
    exists, or is this process and is not writing it right now.  Where processes cannot be
    probed (non-POSIX) a temp file is stale when it is more than an hour old.  Files of live
    writers are left alone, so a reader sweeping never breaks a concurrent writer on this host.
    Errors (a read-only directory, a file already gone) are ignored: sweeping is best effort.
    """
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    me = os.getpid()
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(m.group(1))
        with _active_lock:
            if entry.path in _active_temps:
                continue
        if os.name == "posix":
            stale = pid == me or not _pid_alive(pid)
        else:  # pragma: no cover
            try:
                stale = time.time() - entry.stat().st_mtime > _NON_POSIX_STALE_AFTER_S
            except OSError:
                stale = False
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    if removed:
        try:
            _fsync_dir(directory)
        except OSError:  # pragma: no cover
            pass
    return removed


# ---------------------------------------------------------------------- (de)serialization


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a dict of name -> numpy array, got {type(arrays).__name__}")
    out = OrderedDict()
    for key, value in arrays.items():
        if not isinstance(key, str):
            raise TypeError(f"safetensors keys must be strings, got {key!r} ({type(key).__name__})")
        if isinstance(value, Tensor):  # a Parameter or buffer
            value = value.data
        if not isinstance(value, np.ndarray):
            raise TypeError(f"safetensors value for {key!r} must be a numpy array, got {type(value).__name__}")
        if value.dtype.kind not in "biuf" and value.dtype != np.complex64:
            raise TypeError(f"safetensors cannot store dtype {value.dtype} (key {key!r})")
        # safetensors reads raw memory: it needs C-contiguous data
        out[key] = value if value.flags.c_contiguous else value.copy(order="C")  # (keeps 0-d arrays 0-d)
    return out


def _check_metadata(metadata) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict of str -> str, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"safetensors metadata must map str to str, got {k!r}: {v!r}")
    return dict(metadata)


def serialize_safetensors(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``arrays`` (and ``metadata``); nothing is written."""
    arrays = _check_arrays(arrays)
    metadata = _check_metadata(metadata)
    backend = _backend()
    try:
        return backend.save(dict(arrays), metadata=metadata)
    except Exception as exc:  # the Rust error type is not a ValueError subclass
        raise TypeError(f"cannot serialize arrays to safetensors: {exc}") from exc


def deserialize_safetensors(data: bytes, *, source: str = "<bytes>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes into ``(arrays, metadata)``; raise :class:`SafetensorsError` naming ``source``.

    The arrays are writable and independent of ``data``; their order is the file's
    (safetensors sorts tensors by dtype, then name), not necessarily the order they were saved in.
    """
    if len(data) < 8:
        raise SafetensorsError(f"{source}: not a safetensors file (only {len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", bytes(data[:8]))
    if header_len > len(data) - 8:
        raise SafetensorsError(
            f"{source}: truncated safetensors file (header claims {header_len} bytes, file has {len(data)})"
        )
    try:
        header = json.loads(bytes(data[8:8 + header_len]).decode("utf-8"))
        metadata = header.get("__metadata__") or {}
        if not isinstance(metadata, dict):
            raise ValueError("__metadata__ is not an object")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise SafetensorsError(f"{source}: corrupt safetensors header: {exc}") from exc
    backend = _backend()
    try:
        loaded = backend.load(bytes(data))
    except Exception as exc:  # SafetensorError derives from Exception only
        raise SafetensorsError(f"{source}: corrupt or truncated safetensors file: {exc}") from exc
    arrays = {}
    for key in header:  # the file's order (safetensors sorts by dtype, then name)
        if key != "__metadata__":
            arr = loaded[key]
            arrays[key] = arr if arr.flags.writeable and arr.flags.owndata else arr.copy()
    return arrays, {str(k): str(v) for k, v in metadata.items()}


# ---------------------------------------------------------------------- files


def save_safetensors(path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``arrays`` (``{name: ndarray}``) and optional string ``metadata`` to ``path`` atomically.

    Non-contiguous arrays are copied; big-endian arrays are stored little-endian.  Raises
    TypeError for non-string keys, non-array values, unsupported dtypes (object, complex128...)
    or non-string metadata -- before anything is written.  Returns the path.
    """
    data = serialize_safetensors(arrays, metadata)
    path = Path(path)
    sweep_stale_temp_files(path.parent)
    return atomic_write_bytes(path, data)


def load_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: ``(arrays, metadata)`` (metadata ``{}`` when the file has none).

    Raises FileNotFoundError for a missing file and :class:`SafetensorsError` (a ValueError)
    naming the path for a truncated or corrupt one.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    return deserialize_safetensors(data, source=str(path))


def save_state_dict(model, path, metadata: Mapping[str, str] | None = None) -> Path:
    """Save ``model.state_dict()`` (parameters and persistent buffers) to a safetensors file."""
    state = model.state_dict()
    return save_safetensors(path, {k: np.asarray(v) for k, v in state.items()}, metadata)


def load_state_dict_file(model, path, strict: bool = True):
    """Load a safetensors weights file into ``model`` with ``model.load_state_dict(..., strict)``.

    Everything is checked before anything is copied: a missing/corrupt file raises before the
    model is touched, and mismatched keys or shapes raise ``striate.nn.StateDictError`` listing
    all of them.  Returns ``(missing, unexpected)`` as ``Module.load_state_dict`` does.
    """
    arrays, _ = load_safetensors(path)
    return model.load_state_dict(arrays, strict=strict)
