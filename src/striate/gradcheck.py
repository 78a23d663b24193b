"""Finite-difference gradient checking in float64.

``gradcheck(fn, inputs)`` compares the gradient striate's backward computes with central
differences ``(f(x + eps) - f(x - eps)) / (2 eps)``:

* for small problems, the **full Jacobian**: every input element is perturbed (numerical
  columns), and one backward per output element gives the analytic rows;
* for large ones, **random directional checks**: for random directions ``u`` (input space) and
  ``v`` (output space), ``v . J u`` from differences of ``f`` is compared with
  ``(J^T v) . u`` from one backward.

A mismatch raises :class:`GradcheckError` naming the input, the element (or direction), both
values and the error.  ``|analytic - numerical| <= atol + rtol * |numerical|`` passes.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .autograd import Tensor, no_grad

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def _outputs(fn, inputs) -> list[Tensor]:
    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, Tensor) and np.issubdtype(o.dtype, np.floating)]


def _flat_out(fn, inputs) -> np.ndarray:
    with no_grad():
        outs = _outputs(fn, inputs)
    return np.concatenate([o.data.astype(np.float64).ravel() for o in outs]) if outs else np.zeros(0)


def _vjp(fn, inputs, diff, v: np.ndarray) -> list[np.ndarray]:
    """Analytic J^T v for every differentiable input (fresh graph, grads reset)."""
    for i in diff:
        inputs[i].grad = None
    outs = _outputs(fn, inputs)
    total = None
    offset = 0
    for o in outs:
        n = o.data.size
        if o.requires_grad:
            piece = (o * Tensor._wrap(v[offset : offset + n].reshape(o.shape).astype(o.dtype))).sum()
            total = piece if total is None else total + piece
        offset += n
    grads = []
    if total is not None:
        total.backward()
    for i in diff:
        g = inputs[i].grad
        grads.append(np.zeros(inputs[i].shape) if g is None else g.data.astype(np.float64))
        inputs[i].grad = None
    return grads


def gradcheck(
    fn: Callable,
    inputs: Sequence,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    *,
    max_full: int = 40_000,
    n_directions: int = 4,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s analytic gradients against central differences; raise on mismatch.

    ``inputs`` is a sequence of arguments for ``fn``; those that are float64 Tensors with
    ``requires_grad=True`` are checked.  ``fn`` returns a Tensor or a tuple of Tensors (all float
    outputs are checked together).  The full Jacobian is compared when
    (input elements) x (output elements) <= ``max_full``; otherwise ``n_directions`` random
    directional derivatives per input are.
    """
    inputs = list(inputs)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input requires grad")
    for i in diff:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 inputs"
            )
    saved = [inputs[i].data.copy() for i in diff]
    y0 = _flat_out(fn, inputs)
    n_out = y0.size
    if n_out == 0:
        raise ValueError("gradcheck: fn produced no floating-point output")
    rng = np.random.default_rng(seed)
    try:
        for k, i in enumerate(diff):
            x = inputs[i].data
            if x.size * n_out <= max_full:
                _check_full(fn, inputs, diff, k, i, x, n_out, eps, atol, rtol)
            else:
                _check_directional(fn, inputs, diff, k, i, x, n_out, eps, atol, rtol, rng, n_directions)
    finally:
        for i, s in zip(diff, saved):
            inputs[i].data[...] = s
    return True


def _numerical_column(fn, inputs, x, flat_index, eps):
    flat = x.reshape(-1)
    orig = flat[flat_index]
    flat[flat_index] = orig + eps
    plus = _flat_out(fn, inputs)
    flat[flat_index] = orig - eps
    minus = _flat_out(fn, inputs)
    flat[flat_index] = orig
    return (plus - minus) / (2 * eps)


def _check_full(fn, inputs, diff, k, i, x, n_out, eps, atol, rtol):
    if not x.flags.c_contiguous:
        raise ValueError(f"gradcheck: input {i} must be C-contiguous")
    numerical = np.empty((n_out, x.size))
    for j in range(x.size):
        numerical[:, j] = _numerical_column(fn, inputs, x, j, eps)
    analytic = np.empty((n_out, x.size))
    for r in range(n_out):
        v = np.zeros(n_out)
        v[r] = 1.0
        analytic[r] = _vjp(fn, inputs, diff, v)[k].ravel()
    err = np.abs(analytic - numerical)
    bad = err > atol + rtol * np.abs(numerical)
    if bad.any():
        r, j = np.unravel_index(np.argmax(np.where(bad, err, -1)), err.shape)
        elem = np.unravel_index(j, x.shape)
        raise GradcheckError(
            f"gradcheck failed for input {i} (shape {x.shape}) at element {tuple(int(e) for e in elem)}, "
            f"output element {int(r)}: analytic {analytic[r, j]:.10g}, numerical {numerical[r, j]:.10g}, "
            f"error {err[r, j]:.3g} (atol {atol}, rtol {rtol}); {int(bad.sum())} of {bad.size} Jacobian "
            "entries disagree"
        )


def _check_directional(fn, inputs, diff, k, i, x, n_out, eps, atol, rtol, rng, n_directions):
    for d in range(n_directions):
        u = rng.standard_normal(x.shape)
        u /= np.linalg.norm(u) or 1.0
        v = rng.standard_normal(n_out)
        orig = x.copy()
        x[...] = orig + eps * u
        plus = _flat_out(fn, inputs)
        x[...] = orig - eps * u
        minus = _flat_out(fn, inputs)
        x[...] = orig
        numerical = float(v @ ((plus - minus) / (2 * eps)))
        analytic = float(np.sum(_vjp(fn, inputs, diff, v)[k] * u))
        err = abs(analytic - numerical)
        if err > atol + rtol * abs(numerical):
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {x.shape}) along random direction {d}: "
                f"analytic v.J.u {analytic:.10g}, numerical {numerical:.10g}, error {err:.3g} "
                f"(atol {atol}, rtol {rtol})"
            )
