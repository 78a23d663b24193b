"""The array module behind the kernels: NumPy on the CPU, CuPy on a CUDA device.

Every kernel asks its inputs which module to use, ``xp = get_array_module(x, w)``, and creates
and combines arrays through ``xp``: NumPy arrays get NumPy (and the kernels' threaded, chunked
fast paths), CuPy arrays get CuPy (and whole-batch vectorised paths written against ``xp``).
CuPy is imported lazily -- only once an argument is a CuPy array or a device is asked for -- and
is never a dependency (``pip install cupy-cuda12x``, or the ``cuda`` extra).

Devices are named as in PyTorch: ``"cpu"`` and ``"cuda"`` (``"cuda:0"`` is accepted and means
the current CuPy device).  :func:`to_device` moves an array, :func:`device_of` names where one
lives, :func:`is_available` says whether a device can be used.

This module imports nothing from striate: the kernels sit above it, autograd above them.

Test hook: :func:`register_array_module` makes :func:`get_array_module` return ``module`` for
arrays of a given type, and (with ``device="cuda"``) makes that module stand in for CuPy as the
``"cuda"`` device.  The test suite registers a *fake device module* this way -- NumPy arrays of a
subclass that, like CuPy, refuse to be mixed with host arrays -- so that the device-generic code
paths are exercised on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import sys
from types import ModuleType

import numpy as np

__all__ = [
    "get_array_module", "asarray", "is_available", "require", "to_device", "to_numpy", "device_of", "normalize_device",
    "as_strided", "scatter_add", "errstate", "is_numpy", "check_same_device", "DeviceError",
    "register_array_module", "unregister_array_module", "DEVICES",
]

DEVICES = ("cpu", "cuda")

# array type -> (module, device name); filled only by register_array_module (tests)
_registered: dict[type, tuple[object, str]] = {}


class DeviceError(RuntimeError):
    """A device that cannot be used, or arrays of different devices in one operation."""


def register_array_module(array_type: type, module, device: str = "cuda") -> None:
    """Make ``module`` the array module of ``array_type`` arrays, standing in for ``device``."""
    _registered[array_type] = (module, normalize_device(device))


def unregister_array_module(array_type: type) -> None:
    _registered.pop(array_type, None)


def _cupy() -> ModuleType | None:
    """CuPy if it can be imported, else None (imported on first use only)."""
    if "cupy" in sys.modules:
        return sys.modules["cupy"]
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a CUDA runtime that fails to load
        return None
    return sys.modules["cupy"]


def _module_for_type(t: type):
    """(module, device) for a non-NumPy array type, or None when it is not a device array."""
    for typ, entry in _registered.items():
        if issubclass(t, typ):
            return entry
    mod = t.__module__ or ""
    if mod == "cupy" or mod.startswith("cupy."):
        cp = _cupy()
        if cp is not None and issubclass(t, cp.ndarray):
            return cp, "cuda"
    return None


def get_array_module(*arrays):
    """``numpy``, or the device module (CuPy) when one of ``arrays`` is a device array.

    ``None``, Python scalars, NumPy scalars and NumPy arrays count as host values; the first
    device array decides.  Cheap for the all-NumPy case (a type check per argument).
    """
    for a in arrays:
        t = type(a)
        if t is np.ndarray or a is None or t in (float, int, bool) or isinstance(a, np.generic):
            continue
        entry = _module_for_type(t)
        if entry is not None:
            return entry[0]
    return np


def asarray(x, dtype=None):
    """``np.asarray(x, dtype)``, except that a device array stays on its device (cast if asked)."""
    if type(x) is not np.ndarray:
        entry = _module_for_type(type(x))
        if entry is not None:
            return x if dtype is None else x.astype(dtype, copy=False)
    return np.asarray(x, dtype=dtype)


def is_numpy(xp) -> bool:
    return xp is np


def normalize_device(device) -> str:
    """``"cpu"`` or ``"cuda"`` from a device name (``"cuda:0"``, ``"CUDA"``) or an object with ``.type``."""
    if device is None:
        return "cpu"
    name = getattr(device, "type", device)
    if not isinstance(name, str):
        raise TypeError(f"device must be 'cpu' or 'cuda', got {device!r}")
    name = name.strip().lower()
    base, _, index = name.partition(":")
    if base not in DEVICES or (index and not index.isdigit()):
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    return base


def device_of(array) -> str:
    """``"cpu"`` for host values (NumPy arrays, scalars), else the device of the array (``"cuda"``)."""
    t = type(array)
    if t is np.ndarray or isinstance(array, (np.generic, float, int, bool)) or array is None:
        return "cpu"
    entry = _module_for_type(t)
    return "cpu" if entry is None else entry[1]


def _device_module(device: str):
    """The module that holds ``device``'s arrays; raises DeviceError when it cannot be used."""
    device = normalize_device(device)
    if device == "cpu":
        return np
    for module, dev in _registered.values():
        if dev == device:
            return module
    cp = _cupy()
    if cp is None:
        raise DeviceError(
            "device 'cuda' needs CuPy, which is not installed: pip install cupy-cuda12x "
            "(or pip install 'striate[cuda]')"
        )
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a broken CUDA install
        raise DeviceError(f"device 'cuda': CuPy is installed but no CUDA device is usable ({exc})") from None
    if count < 1:
        raise DeviceError("device 'cuda': CuPy is installed but no CUDA device was found")
    return cp


def require(device: str) -> str:
    """``device`` normalised, or a DeviceError saying in one line why it cannot be used."""
    _device_module(device)
    return normalize_device(device)


def is_available(device: str = "cuda") -> bool:
    """Whether arrays can be put on ``device`` (``"cpu"`` always; ``"cuda"``: CuPy and a GPU)."""
    try:
        _device_module(device)
    except DeviceError:
        return False
    return True


def to_device(array, device: str):
    """``array`` on ``device``; the array itself when it is already there (no copy)."""
    device = normalize_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return to_numpy(array)
    xp = _device_module(device)
    return xp.asarray(array)


def to_numpy(array):
    """A host (NumPy) copy of a device array; NumPy arrays and scalars are returned as they are."""
    t = type(array)
    if t is np.ndarray or isinstance(array, (np.generic, float, int, bool)):
        return array
    entry = _module_for_type(t)
    if entry is None:
        return array
    module = entry[0]
    asnumpy = getattr(module, "asnumpy", None)
    if asnumpy is not None:
        return asnumpy(array)
    return array.get()


def check_same_device(op: str, *arrays) -> str:
    """The one device of ``arrays`` (Python and NumPy scalars go with any device); raises
    DeviceError naming both devices when they differ."""
    found = None
    for a in arrays:
        if a is None or isinstance(a, (float, int, bool, np.generic)):
            continue
        d = device_of(a)
        if found is None:
            found = d
        elif d != found:
            raise DeviceError(
                f"{op}: expected all tensors to be on the same device, but found at least two "
                f"devices, {found} and {d}"
            )
    return found or "cpu"


def as_strided(x, shape, strides):
    """A read-only strided view of ``x`` (``numpy.lib.stride_tricks.as_strided`` or CuPy's);
    ``strides`` in bytes, as in NumPy."""
    xp = get_array_module(x)
    if xp is np:
        if type(x) is np.ndarray and x.flags.c_contiguous:
            # the same view on x's memory in 1 instead of 9 us (kernels build many per step)
            view = np.ndarray(shape, x.dtype, x, 0, strides)
            view.flags.writeable = False
            return view
        return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


def scatter_add(a, index, values) -> None:
    """``a[index] += values`` with repeated indices accumulating, in place
    (``np.add.at``; ``cupyx.scatter_add`` on CuPy)."""
    xp = get_array_module(a)
    if xp is np:
        np.add.at(a, index, values)
        return
    hook = getattr(xp, "scatter_add", None)  # a registered module may bring its own
    if hook is not None:
        hook(a, index, values)
        return
    import cupyx

    cupyx.scatter_add(a, index, values)


def errstate(xp, **kwargs):
    """``np.errstate(**kwargs)`` for NumPy; a no-op context for device modules (CuPy has no
    floating-point error reporting to silence)."""
    return np.errstate(**kwargs) if xp is np else contextlib.nullcontext()
