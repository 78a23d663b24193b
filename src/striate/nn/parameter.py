"""``Parameter``: a leaf Tensor that a Module registers as learnable."""

from __future__ import annotations

import numpy as np

from .. import backend

from ..autograd import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A Tensor that requires grad by default and is collected by ``Module.parameters()``.

    As in PyTorch, wrapping an existing Tensor or float ndarray shares its memory (no copy), so an
    optimizer updating ``p.data`` in place updates the array the caller handed in.
    """

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.zeros(0, dtype=np.float32)
        if isinstance(data, Tensor):
            array = data.data
        elif isinstance(data, np.ndarray) or backend.device_of(data) != "cpu":
            array = data
        else:
            array = np.asarray(data, dtype=np.float32)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"a Parameter must hold floating-point values, got dtype {array.dtype}")
        super().__init__(0.0)
        self.data = array
        self.requires_grad = bool(requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
