"""Loading PyTorch weights (torchvision key names) from safetensors files, without unpickling.

A PyTorch checkpoint (``.pt``/``.pth``) is a pickle: loading one can run arbitrary code.  striate
never reads those.  Convert once where torch is installed, with the documented converter::

    python tools/pt_to_safetensors.py resnet18-f37072fd.pth resnet18.safetensors

(it loads with ``torch.load(..., weights_only=True)``), then::

    from striate.models import get_model
    from striate.io import load_torch_weights

    model = get_model("resnet18")                  # torchvision's layout and key names
    load_torch_weights(model, "resnet18.safetensors")

What is reconciled, and what is not:

* ``num_batches_tracked`` -- older torchvision files have no such keys; newer ones do.  A model's
  counter missing from the file keeps its value; a counter in the file for a model without one
  (``track_running_stats=False``) is ignored.  Neither is reported as a mismatch.
* a ``module.`` prefix on every key (weights saved from ``nn.DataParallel``) is removed.
* ``key_map`` (a dict ``{file key: model key}`` or a function of the key) renames the rest, e.g.
  ``{"linear.weight": "fc.weight", "linear.bias": "fc.bias"}`` for a CIFAR ResNet that calls its
  head ``linear``.
* dtypes are converted to each parameter's dtype (bfloat16 files are widened exactly).
* everything else -- a missing key, an unexpected key, a shape mismatch -- raises
  :class:`striate.nn.StateDictError` listing every problem key by key, before anything is
  copied (the model is unchanged).  ``strict=False`` tolerates missing/unexpected keys, never a
  shape mismatch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..nn import StateDictError
from .safetensors import SafetensorsError, deserialize_safetensors

__all__ = ["load_torch_weights", "read_torch_state_dict", "TORCH_CONVERTER"]

TORCH_CONVERTER = "tools/pt_to_safetensors.py"
_NBT = "num_batches_tracked"

# safetensors dtype names -> numpy (BF16 is handled separately: numpy has no bfloat16)
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _looks_like_pickle(data: bytes) -> bool:
    # torch.save writes a zip archive ("PK\x03\x04"); the legacy format and plain pickles start
    # with the pickle protocol opcode 0x80
    return data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"


def _has_bf16(data: bytes) -> bool:
    """Whether the header lists a bfloat16 tensor (which ``safetensors.numpy`` cannot decode)."""
    if len(data) < 8:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
        return any(isinstance(v, dict) and v.get("dtype") == "BF16" for k, v in header.items() if k != "__metadata__")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False  # let the regular decoder report the corruption


def _decode_with_bf16(data: bytes, source: str) -> dict[str, np.ndarray]:
    """Decode a safetensors file holding bfloat16 tensors (widened exactly to float32)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = memoryview(data)[8 + n:]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = body[start:end]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            # bfloat16 is the top half of a float32: shift the 16 bits up
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            out[key] = bits.view(np.float32).reshape(shape)
        elif info["dtype"] in _DTYPES:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            out[key] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        else:
            raise SafetensorsError(f"{source}: tensor {key!r} has unsupported dtype {info['dtype']}")
    return out


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """The ``{key: ndarray}`` of a safetensors file written from a PyTorch ``state_dict``.

    Refuses pickle-based ``.pt``/``.pth`` files (without reading past their first bytes'
    signature) and names the converter to use instead.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    if _looks_like_pickle(data):
        raise SafetensorsError(
            f"{path} is a pickled PyTorch file, which striate never loads (unpickling can run code); "
            f"convert it where torch is installed: python {TORCH_CONVERTER} {path} {path.with_suffix('.safetensors')}"
        )
    if _has_bf16(data):
        try:
            return _decode_with_bf16(data, str(path))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, struct.error) as exc:
            raise SafetensorsError(f"{path}: corrupt safetensors file: {exc}") from exc
    arrays, _ = deserialize_safetensors(data, source=str(path))
    return arrays


def _rename(arrays: dict, key_map) -> dict:
    keys = list(arrays)
    if keys and all(k.startswith("module.") for k in keys):
        arrays = {k[len("module."):]: v for k, v in arrays.items()}
    if key_map is None:
        return arrays
    fn = key_map if callable(key_map) else (lambda k: key_map.get(k, k))
    out = {}
    for k, v in arrays.items():
        new = fn(k)
        if new in out:
            raise ValueError(f"key_map sends two keys to {new!r}")
        out[new] = v
    return out


def load_torch_weights(model, path, strict: bool = True,
                       key_map: Mapping[str, str] | Callable[[str], str] | None = None):
    """Load a safetensors file of a PyTorch ``state_dict`` into ``model``; returns ``(missing, unexpected)``.

    See the module docstring for what is reconciled (``num_batches_tracked``, a ``module.``
    prefix, ``key_map``, dtypes).  Any remaining mismatch raises :class:`striate.nn.StateDictError`
    whose message starts with the file name and lists every missing, unexpected and mis-shaped key;
    the model is left untouched.
    """
    arrays = _rename(read_torch_state_dict(path), key_map)
    own = model.state_dict()
    for key in [k for k in arrays if k.endswith("." + _NBT) or k == _NBT]:
        if key not in own:  # a counter the model does not keep
            del arrays[key]
    for key, value in own.items():
        if (key.endswith("." + _NBT) or key == _NBT) and key not in arrays:
            arrays[key] = np.array(value, copy=True)  # keep the model's count
        elif (key.endswith("." + _NBT) or key == _NBT) and np.shape(arrays[key]) != np.shape(value):
            arrays[key] = np.asarray(arrays[key]).reshape(np.shape(value))  # () vs (1,) in some exporters
    try:
        return model.load_state_dict(arrays, strict=strict)
    except StateDictError as exc:
        err = StateDictError(exc.missing, exc.unexpected, exc.mismatched)
        err.args = (f"{path}: " + err.args[0],)
        raise err from None
