"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``.

Both act in place on the ``.grad`` arrays of the given parameters (those with ``grad is None``
are skipped).  ``striate.optim`` re-exports them.
"""

from __future__ import annotations

import math
import types
import warnings

import numpy as np

from ..autograd import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]


def _as_list(parameters) -> list:
    if isinstance(parameters, Tensor):
        return [parameters]
    is_generator = isinstance(parameters, types.GeneratorType)
    parameters = list(parameters)
    if is_generator and len(parameters) == 0:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=3)
    return parameters


def _grad_arrays(parameters) -> list[np.ndarray]:
    return [p.grad.data if isinstance(p.grad, Tensor) else np.asarray(p.grad)
            for p in parameters if p.grad is not None]


def _vector_norm(x: np.ndarray, norm_type: float) -> np.ndarray:
    """``torch.linalg.vector_norm(x, norm_type)`` of the flattened array, in x's dtype."""
    dt = x.dtype.type
    a = np.abs(x.ravel())
    with np.errstate(over="ignore", invalid="ignore"):
        if norm_type == math.inf:
            out = a.max(initial=dt(0))
        elif norm_type == -math.inf:
            out = a.min() if a.size else dt(math.inf)
        elif norm_type == 0:
            out = np.count_nonzero(a)
        elif norm_type == 1:
            out = a.sum()
        elif norm_type == 2:
            out = np.sqrt(np.dot(a, a) if a.size else dt(0))
        else:
            out = np.sum(a ** dt(norm_type)) ** dt(1.0 / norm_type)
    return np.asarray(out, dtype=x.dtype)


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach=None) -> Tensor:
    """The p-norm of all the given arrays/Tensors viewed as one vector, as a 0-d Tensor.

    Computed as PyTorch does: the norm of the vector of per-tensor norms (so ``norm_type`` may be
    ``inf``, ``-inf``, 0 or any positive p).  The result has the promoted dtype of the inputs
    (float32 when there are none).
    """
    arrays = [t.data if isinstance(t, Tensor) else np.asarray(t) for t in _as_list(tensors)]
    norm_type = float(norm_type)
    if not arrays:
        return Tensor._wrap(np.asarray(0.0, dtype=np.float32))
    dtype = np.result_type(*arrays)
    norms = np.stack([_vector_norm(a, norm_type).astype(dtype) for a in arrays])
    total = _vector_norm(norms, norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite "
            f"({float(total)}), so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    return Tensor._wrap(total)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """Scale gradients in place so that their total ``norm_type``-norm is at most ``max_norm``.

    ``grad <- grad * min(max_norm / (total_norm + 1e-6), 1)``; the norm is taken over all
    gradients together, as if concatenated into one vector.  Returns the total norm before
    clipping (a 0-d Tensor).  ``error_if_nonfinite=True`` raises RuntimeError when that norm is
    nan or inf; otherwise the gradients are scaled by the non-finite coefficient, as in PyTorch.
    """
    parameters = _as_list(parameters)
    grads = _grad_arrays(parameters)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    if grads:
        total_norm = total.data
        dt = total_norm.dtype.type
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            coef = np.minimum(dt(float(max_norm)) / (total_norm + dt(1e-6)), dt(1.0))
            for g in grads:
                g *= coef.astype(g.dtype)
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element in place to ``[-clip_value, clip_value]``."""
    clip_value = float(clip_value)
    for g in _grad_arrays(_as_list(parameters)):
        dt = g.dtype.type
        np.clip(g, dt(-clip_value), dt(clip_value), out=g)
