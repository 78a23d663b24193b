"""Reading and writing model files: safetensors weights (never pickle).

``save_safetensors`` / ``load_safetensors`` move ``{name: ndarray}`` dicts with string metadata;
``save_state_dict`` / ``load_state_dict_file`` do it for a Module's ``state_dict``.  Needs the
optional ``safetensors`` package: ``pip install 'striate[train]'``.
"""

from .safetensors import (
    SafetensorsError,
    atomic_write_bytes,
    load_safetensors,
    load_state_dict_file,
    save_safetensors,
    save_state_dict,
    sweep_stale_temp_files,
)

__all__ = [
    "save_safetensors", "load_safetensors", "save_state_dict", "load_state_dict_file",
    "SafetensorsError", "atomic_write_bytes", "sweep_stale_temp_files",
]

from .onnx_export import OnnxExportError, export_onnx  # noqa: E402  (onnx itself is imported lazily)

__all__ += ["export_onnx", "OnnxExportError"]

from .torch_weights import load_torch_weights, read_torch_state_dict  # noqa: E402

__all__ += ["load_torch_weights", "read_torch_state_dict"]
