"""``striate.cuda``: whether the CUDA device (CuPy and a GPU) can be used, as ``torch.cuda``."""

from __future__ import annotations

from . import backend

__all__ = ["is_available", "device_count"]


def is_available() -> bool:
    """True when CuPy is installed and sees a CUDA device (``model.to("cuda")`` will work)."""
    return backend.is_available("cuda")


def device_count() -> int:
    """Number of CUDA devices CuPy sees (0 without CuPy)."""
    if not is_available():
        return 0
    cp = backend._cupy()
    if cp is None:  # a registered stand-in module (tests)
        return 1
    return int(cp.cuda.runtime.getDeviceCount())
