"""Helpers shared by the op tests: run an op in striate and in PyTorch, compare with tolerances."""

from __future__ import annotations

import numpy as np
import pytest

import striate
from striate import Tensor

try:  # torch is a test-only oracle
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - the test extra installs it
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed (pip install -e '.[test]')")


def as_tuple_out(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def to_striate(args, sample_nograd=(), requires_grad=True):
    out = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            rg = requires_grad and np.issubdtype(a.dtype, np.floating) and i not in sample_nograd
            out.append(Tensor._wrap(a).requires_grad_(rg) if rg else Tensor._wrap(a))
        else:
            out.append(a)
    return out


def diff_output(out, output_index):
    outs = as_tuple_out(out)
    return outs[0 if output_index is None else output_index]


def run_striate(info, sample, dy=None):
    """Forward (all outputs as arrays) and, if ``dy`` is given, the gradient of every diff input."""
    args = to_striate(sample.args, sample.nograd)
    out = info.op(*args, **sample.kwargs)
    outs = tuple(o.data if isinstance(o, Tensor) else np.asarray(o) for o in as_tuple_out(out))
    grads = None
    if dy is not None:
        y = diff_output(out, info.output_index)
        y.backward(dy)
        grads = {i: (args[i].grad.data if args[i].grad is not None else np.zeros_like(args[i].data))
                 for i in sample.diff_indices()}
    return outs, grads


def run_torch(info, sample, dy=None):
    targs = []
    for i, a in enumerate(sample.args):
        if isinstance(a, np.ndarray):
            t = torch.from_numpy(a.copy())
            if np.issubdtype(a.dtype, np.floating) and i not in sample.nograd:
                t.requires_grad_(True)
            targs.append(t)
        else:
            targs.append(a)
    kwargs = sample.torch_kwargs if sample.torch_kwargs is not None else sample.kwargs
    out = info.torch_fn(torch, *targs, **kwargs)
    outs = tuple(o.detach().numpy() for o in as_tuple_out(out))
    grads = None
    if dy is not None:
        y = diff_output(out, info.output_index)
        y.backward(torch.from_numpy(np.asarray(dy)))
        grads = {i: (targs[i].grad.numpy() if targs[i].grad is not None else np.zeros_like(sample.args[i]))
                 for i in sample.diff_indices()}
    return outs, grads


def output_grad(info, sample, rng):
    """A random d loss / d output, of the differentiable output's shape and dtype."""
    with striate.no_grad():
        out = info.op(*to_striate(sample.args, requires_grad=False), **sample.kwargs)
    y = diff_output(out, info.output_index)
    return rng.standard_normal(y.shape).astype(y.dtype)


def assert_close_torch(actual, expected, dtype, fan_in=1, what=""):
    """The acceptance tolerance: float64 max abs error <= 1e-10 x the output's scale;
    float32 rtol 1e-4 with atol 1e-5 * sqrt(fan_in) (x the scale when it exceeds 1)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch {expected.shape}"
    if not np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    if np.dtype(dtype) == np.float64:
        err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
        assert err <= 1e-10 * scale, f"{what}: float64 max abs error {err:.3g} > 1e-10 x scale {scale:.3g}"
    else:
        np.testing.assert_allclose(
            actual, expected, rtol=1e-4, atol=1e-5 * np.sqrt(fan_in) * scale, err_msg=what
        )


def noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous view (every other element of a wider buffer)."""
    if a.ndim == 0:
        return a
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    wide[..., ::2] = a
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or a.shape[-1] <= 1
    return view
