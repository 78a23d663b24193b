"""A pickle reader that can rebuild plain NumPy arrays, dicts, lists and bytes, and nothing else.

The CIFAR "python version" batches are pickles of ``{b"data": uint8 array, b"labels": [...]}``.
Plain :func:`pickle.load` on a file of unknown origin runs whatever the file asks for
(``os.system``, ``builtins.eval`` ...).  :class:`RestrictedUnpickler` resolves **no** real global:
``find_class`` answers the handful of names NumPy and Python write for a plain array with inert
stand-ins defined here, and refuses every other name with a :class:`DataError` before anything
is called.

=======================================  =============================================================
name in the pickle                       stand-in
=======================================  =============================================================
``numpy[._]core.multiarray._reconstruct``  returns an :class:`_ArrayStub`; its ``__setstate__`` checks
                                         the state ``(version, shape, dtype, fortran, raw bytes)``
                                         and builds the array with ``np.frombuffer`` (exact length)
``numpy.ndarray``                        a marker object, accepted only as ``_reconstruct``'s argument
``numpy.dtype``                          :class:`_DTypeStub`: bool/int/uint/float/complex only, no
                                         structured, object or sub-array dtypes; byte order checked
``numpy[._]core.numeric._frombuffer``    the protocol-5 path: ``np.frombuffer`` with a checked dtype,
                                         shape and length
``_codecs.encode``                       ``str.encode('latin1')`` only (protocol 2 written by Python 3)
=======================================  =============================================================

NumPy itself is never handed attacker-chosen state: every array is made by ``np.frombuffer`` on
a bytes object whose length equals ``prod(shape) * itemsize`` and then copied.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["RestrictedUnpickler", "safe_load", "safe_loads"]

_SIMPLE_KINDS = "biufc"  # bool, signed, unsigned, float, complex


class _NDArrayMarker:
    """Stands for ``numpy.ndarray`` in a pickle; not callable, not a class."""

    def __repr__(self) -> str:
        return "<numpy.ndarray marker>"


_NDARRAY = _NDArrayMarker()


def _text(value, what: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if not isinstance(value, str):
        raise pickle.UnpicklingError(f"{what} must be a string, got {type(value).__name__}")
    return value


class _DTypeStub:
    """A vetted NumPy dtype: simple numeric kinds only (``numpy.dtype(spec, align, copy)``)."""

    def __init__(self, spec, align=False, copy=False):
        spec = _text(spec, "dtype spec")
        if len(spec) > 8:
            raise pickle.UnpicklingError(f"refusing dtype spec {spec!r}")
        dtype = np.dtype(spec)
        if dtype.kind not in _SIMPLE_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype:
            raise pickle.UnpicklingError(f"refusing dtype {spec!r}: only bool/int/uint/float/complex arrays are allowed")
        self.dtype = dtype

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) < 5:
            raise pickle.UnpicklingError(f"refusing dtype state {state!r}")
        order = _text(state[1], "dtype byte order")
        if order not in ("<", ">", "=", "|"):
            raise pickle.UnpicklingError(f"refusing dtype byte order {order!r}")
        if any(part is not None for part in state[2:5]):
            raise pickle.UnpicklingError("refusing a structured or sub-array dtype")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _checked_array(raw, dtype, shape, order: str) -> np.ndarray:
    if not isinstance(dtype, _DTypeStub) or not hasattr(dtype, "dtype"):
        raise pickle.UnpicklingError(f"array dtype must be a numpy.dtype, got {type(dtype).__name__}")
    if isinstance(raw, str):  # a protocol-0..2 pickle read with encoding='latin1'
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"array data must be bytes, got {type(raw).__name__}")
    if not isinstance(shape, tuple) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise pickle.UnpicklingError(f"refusing array shape {shape!r}")
    need = math.prod(shape) * dtype.dtype.itemsize
    if len(raw) != need:
        raise pickle.UnpicklingError(f"array of shape {shape} {dtype.dtype} needs {need} bytes, the pickle holds {len(raw)}")
    order = _text(order, "array order")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"refusing array order {order!r}")
    return np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order=order).copy(order="K")


class _ArrayStub:
    """What ``_reconstruct`` returns; ``__setstate__`` turns the pickled state into ``self.array``."""

    array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("refusing ndarray state that is not (version, shape, dtype, fortran, data)")
        if len(state) == 5:
            state = state[1:]
        shape, dtype, fortran, raw = state
        if not isinstance(fortran, (bool, int)):
            raise pickle.UnpicklingError("refusing ndarray state: the Fortran flag is not a bool")
        self.array = _checked_array(raw, dtype, shape, "F" if fortran else "C")


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError(f"_reconstruct may only build numpy.ndarray, got {cls!r}")
    return _ArrayStub()


def _frombuffer(buf, dtype, shape, order):
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    return _checked_array(buf, dtype, tuple(shape), order)


def _encode(text, encoding="utf-8"):
    if not isinstance(text, str) or _text(encoding, "encoding").lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str.encode('latin1')")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTypeStub,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` resolves only the inert stand-ins listed above.

    ``source`` names the file in error messages.  Objects are read with ``encoding="bytes"`` so
    Python 2 pickles (the original CIFAR batches) keep their byte-string keys.
    """

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module, name):
        stand_in = _ALLOWED.get((module, name))
        if stand_in is None:
            raise DataError(
                f"{self.source}: refusing to load global {module}.{name}: this reader only rebuilds "
                f"plain numeric arrays, lists, dicts, strings and bytes"
            )
        return stand_in

    def persistent_load(self, pid):
        raise DataError(f"{self.source}: refusing persistent id {pid!r}")


def _unstub(obj, memo: dict):
    """Replace every _ArrayStub in nested dicts/lists/tuples by its array; reject loose markers."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("an ndarray was reconstructed without its state")
        memo[key] = obj.array
        return obj.array
    if isinstance(obj, (_DTypeStub, _NDArrayMarker)) or callable(obj):
        raise pickle.UnpicklingError(f"refusing a bare {type(obj).__name__} in the data")
    if isinstance(obj, dict):
        out: dict = {}
        memo[key] = out
        for k, v in obj.items():
            out[_unstub(k, memo)] = _unstub(v, memo)
        return out
    if isinstance(obj, list):
        out_list: list = []
        memo[key] = out_list
        out_list.extend(_unstub(v, memo) for v in obj)
        return out_list
    if isinstance(obj, tuple):
        out_t = tuple(_unstub(v, memo) for v in obj)
        memo[key] = out_t
        return out_t
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, bytearray, np.ndarray)):
        return obj
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_unstub(v, memo) for v in obj)
    raise pickle.UnpicklingError(f"refusing an object of type {type(obj).__name__}")


def safe_loads(data: bytes, *, source: str = "<pickle>"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is a :class:`DataError`."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source=source).load()
        return _unstub(obj, {})
    except DataError:
        raise
    except RecursionError as e:
        raise DataError(f"{source}: pickle nests too deeply") from e
    except Exception as e:  # UnpicklingError, EOFError (truncated), TypeError, ValueError ...
        raise DataError(f"{source}: not a plain-data pickle or corrupt: {type(e).__name__}: {e}") from e


def safe_load(path) -> object:
    """Read a pickle file of plain data (see :func:`safe_loads`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    return safe_loads(data, source=str(path))
