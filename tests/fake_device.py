"""A fake device array module: NumPy arrays that behave, for striate's purposes, like CuPy's.

CuPy refuses to mix its arrays with host NumPy arrays (``TypeError: Unsupported type <class
'numpy.ndarray'>``) and its functions always return device arrays.  This module reproduces that
contract on the CPU so that the device-generic paths of the kernels can be tested without a GPU:

* :class:`FakeDeviceArray` is an ``ndarray`` subclass whose ``__array_ufunc__`` and
  ``__array_function__`` **raise** when a plain host ``numpy.ndarray`` (even a 0-d one: CuPy
  accepts only Python and NumPy *scalars* from the host) takes part in an operation with it, run the NumPy implementation otherwise, and return
  FakeDeviceArrays (0-d arrays for reductions, as CuPy does);
* ``ufunc.at`` is refused (the kernels must go through ``backend.scatter_add``);
* :data:`fake` is the "module": NumPy's namespace whose functions return FakeDeviceArrays
  (``fake.zeros``, ``fake.asarray``, ``fake.arange``, ...), with ``asnumpy`` and
  ``lib.stride_tricks.as_strided``, and without what CuPy lacks (``errstate``, ``seterr``);
* :func:`install` registers it with ``striate.backend`` as the ``"cuda"`` device, so that
  ``Tensor.to("cuda")`` and ``Module.to("cuda")`` move data onto it.

A kernel that creates an array with ``np.`` instead of ``xp.`` then either mixes it with a
device array (and raises) or returns it (and the tests see a host array where a device array was
due).  What it cannot catch: ``np.asarray(device_array)`` silently giving a host view (CuPy raises
there) unless the result is later mixed with a device array or returned.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

from striate import backend


class HostDeviceMixError(TypeError):
    pass


class FakeDeviceArray(np.ndarray):
    """An ndarray that claims to live on a device (see the module docstring)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method in ("at",):
            raise TypeError(f"{ufunc.__name__}.at is not supported on device arrays; use backend.scatter_add")
        _check(ufunc.__name__, inputs, kwargs)
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ in _REFUSED_FUNCTIONS:
            raise TypeError(f"numpy.{func.__name__} does not accept device arrays")
        _check(func.__name__, args, kwargs)
        result = func(*_unwrap(args), **_unwrap(kwargs))
        return _wrap(result)

    def __getitem__(self, index):
        _check("__getitem__", index if isinstance(index, tuple) else (index,), {})
        return _wrap(super().__getitem__(_unwrap(index)))  # an element is a 0-d array, as in CuPy

    def __setitem__(self, index, value):
        _check("__setitem__", (index if isinstance(index, tuple) else (index,)) + (value,), {})
        super().__setitem__(_unwrap(index), _unwrap(value))

    def __repr__(self):
        return "fake-device " + repr(self.view(np.ndarray))

    def get(self):
        return np.array(self.view(np.ndarray), copy=True)


# functions CuPy arrays do not support through NumPy (they need the host data)
_REFUSED_FUNCTIONS = {"array2string", "array_repr", "array_str", "save", "savez", "tofile"}


def _is_host(a) -> bool:
    # CuPy takes Python and NumPy scalars (np.float32(2)), but no numpy.ndarray, not even 0-d
    return type(a) is np.ndarray


def _check(name, args, kwargs):
    bad = [a for a in _flatten(args) if _is_host(a)] + [a for a in _flatten(kwargs) if _is_host(a)]
    if bad:
        raise HostDeviceMixError(
            f"{name}: a host numpy.ndarray of shape {bad[0].shape} was mixed with a device array"
        )


def _flatten(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _flatten(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _flatten(v)
    else:
        yield obj


def _unwrap(obj):
    if isinstance(obj, FakeDeviceArray):
        return obj.view(np.ndarray)
    if isinstance(obj, tuple):
        return tuple(_unwrap(v) for v in obj)
    if isinstance(obj, list):
        return [_unwrap(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return obj.view(FakeDeviceArray) if type(obj) is not FakeDeviceArray else obj
    if isinstance(obj, np.generic):
        return np.asarray(obj).view(FakeDeviceArray)
    if isinstance(obj, tuple):
        return tuple(_wrap(v) for v in obj)
    if isinstance(obj, list):
        return [_wrap(v) for v in obj]
    return obj


def _as_strided(x, shape=None, strides=None):
    if not isinstance(x, FakeDeviceArray):
        raise HostDeviceMixError("as_strided: a host array was given to the device module")
    return np.lib.stride_tricks.as_strided(x.view(np.ndarray), shape=shape, strides=strides).view(FakeDeviceArray)


def _scatter_add(a, index, values):
    _check("scatter_add", (a, index, values), {})
    if not isinstance(a, FakeDeviceArray):
        raise HostDeviceMixError("scatter_add: the target is a host array")
    np.add.at(a.view(np.ndarray), _unwrap(index), _unwrap(values))


def _asnumpy(a):
    if isinstance(a, FakeDeviceArray):
        return np.array(a.view(np.ndarray), copy=True)
    return np.asarray(a)


_TRANSFERS = {"asarray", "array", "asanyarray"}
_MISSING = {"errstate", "seterr", "geterr", "set_printoptions", "array2string"}


class _Ufunc:
    """A NumPy ufunc as the device module's: refuses host arrays, returns device arrays."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        _check(self.__name__, args, kwargs)
        return _wrap(self._ufunc(*args, **kwargs))

    def __getattr__(self, name):
        if name == "at":
            raise AttributeError("the device module's ufuncs have no .at; use backend.scatter_add")
        method = getattr(self._ufunc, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            _check(f"{self.__name__}.{name}", args, kwargs)
            return _wrap(method(*args, **kwargs))

        return call


class _FakeModule(types.ModuleType):
    """NumPy's namespace, returning FakeDeviceArrays (see the module docstring)."""

    ndarray = FakeDeviceArray

    def __init__(self):
        super().__init__("fake_device_numpy")
        self.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=_as_strided))
        self.asnumpy = _asnumpy
        self.scatter_add = _scatter_add
        self.calls = 0

    def __getattr__(self, name):
        if name in _MISSING or name.startswith("__"):
            raise AttributeError(f"the device module has no attribute {name!r}")
        attr = getattr(np, name)
        if isinstance(attr, np.ufunc):
            return _Ufunc(attr)
        if isinstance(attr, (types.FunctionType, types.BuiltinFunctionType)) or type(attr).__name__ in (
            "_ArrayFunctionDispatcher", "builtin_function_or_method",
        ):
            def fn(*args, **kwargs):
                self.calls += 1
                if name not in _TRANSFERS:  # host -> device copies are what these are for
                    _check(name, args, kwargs)
                return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

            fn.__name__ = name
            return fn
        return attr


fake = _FakeModule()


def to_fake(a):
    """A host array copied onto the fake device."""
    return np.array(a, copy=True).view(FakeDeviceArray)


def install():
    backend.register_array_module(FakeDeviceArray, fake, "cuda")


def uninstall():
    backend.unregister_array_module(FakeDeviceArray)


@contextlib.contextmanager
def installed():
    install()
    try:
        yield fake
    finally:
        uninstall()
