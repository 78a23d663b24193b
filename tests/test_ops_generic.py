"""Generic checks run over every op in the registry (tests/opinfo): see its docstring."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import striate
from harness import (
    assert_close_torch, needs_torch, noncontiguous, output_grad, run_striate, run_torch, to_striate,
)
from opinfo import all_ops

OPS = all_ops()
CASES = [
    pytest.param(info, s, id=f"{info.name}-{k}")
    for info in OPS
    for k, s in enumerate(info.samples(np.random.default_rng(1234)))
]
ERROR_CASES = [
    pytest.param(info, e, id=f"{info.name}-{e.desc or k}")
    for info in OPS
    for k, e in enumerate(info.errors())
]


def _grad_rng(sample):
    """A generator seeded by the sample itself, so every run and every worker draws the same dy."""
    return np.random.default_rng(zlib.crc32(repr(sample).encode()))


def _compare(actual, expected, rtol, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if np.issubdtype(expected.dtype, np.floating):
        scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
        err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
        assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol:g} x scale {scale:.3g}"
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


@pytest.mark.parametrize("info,sample", CASES)
def test_forward_matches_reference(info, sample):
    if info.ref is None:
        pytest.skip("no naive reference")
    outs, _ = run_striate(info, sample)
    ref = info.ref(*sample.args, **sample.kwargs)
    refs = tuple(ref) if isinstance(ref, tuple) else (ref,)
    assert len(outs) == len(refs)
    for k, (a, r) in enumerate(zip(outs, refs)):
        _compare(a, r, info.fwd_rtol, f"{info.name} output {k}")


@pytest.mark.parametrize("info,sample", CASES)
def test_backward_matches_reference(info, sample):
    if info.ref_grad is None or not sample.diff_indices():
        pytest.skip("no naive reference backward")
    dy = output_grad(info, sample, _grad_rng(sample))
    _, grads = run_striate(info, sample, dy)
    ref = info.ref_grad(dy, *sample.args, **sample.kwargs)
    for i in sample.diff_indices():
        assert ref[i] is not None, f"reference gives no gradient for input {i}"
        _compare(grads[i], ref[i], info.fwd_rtol, f"{info.name} grad of input {i}")


@pytest.mark.parametrize("info,sample", CASES)
def test_gradcheck(info, sample):
    if not info.gradcheck or not sample.diff_indices():
        pytest.skip("not differentiable")
    args = to_striate([a.copy() if isinstance(a, np.ndarray) else a for a in sample.args], sample.nograd)

    def fn(*ts):
        out = info.op(*ts, **sample.kwargs)
        return out[info.output_index] if info.output_index is not None else out

    assert striate.gradcheck(fn, args, atol=info.grad_atol, rtol=info.grad_rtol)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("info,sample", CASES)
def test_matches_torch(info, sample, dtype):
    if info.torch_fn is None:
        pytest.skip("no PyTorch twin")
    s = sample.astype(dtype)
    dy = output_grad(info, s, _grad_rng(sample)) if s.diff_indices() else None
    outs, grads = run_striate(info, s, dy)
    touts, tgrads = run_torch(info, s, dy)
    for k, (a, t) in enumerate(zip(outs, touts)):
        assert_close_torch(a, t, dtype, s.fan_in, f"{info.name} output {k}")
    for i in s.diff_indices():
        assert_close_torch(grads[i], tgrads[i], dtype, s.fan_in, f"{info.name} grad of input {i}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("info,sample", CASES)
def test_contract(info, sample, dtype):
    """Shapes, dtype preserved, inputs untouched, non-contiguous inputs give the same answer."""
    s = sample.astype(dtype)
    before = [a.copy() if isinstance(a, np.ndarray) else None for a in s.args]
    dy = output_grad(info, s, _grad_rng(sample)) if s.diff_indices() else None
    outs, grads = run_striate(info, s, dy)
    for a, b in zip(s.args, before):
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg=f"{info.name} modified an input")
    main = outs[0 if info.output_index is None else info.output_index]
    assert main.dtype == dtype, f"{info.name}: output dtype {main.dtype} != input dtype {np.dtype(dtype)}"
    if grads:
        for i, g in grads.items():
            assert g.shape == s.args[i].shape, f"{info.name}: grad of input {i} has shape {g.shape}"
            assert g.dtype == s.args[i].dtype, f"{info.name}: grad of input {i} has dtype {g.dtype}"
    nc = type(s)(**{**s.__dict__, "args": tuple(noncontiguous(a) if isinstance(a, np.ndarray) else a for a in s.args)})
    outs2, grads2 = run_striate(info, nc, dy)
    for a, b in zip(outs, outs2):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=f"{info.name}: non-contiguous output differs")
    if grads:
        for i in grads:
            np.testing.assert_allclose(grads[i], grads2[i], rtol=1e-6, atol=1e-6,
                                       err_msg=f"{info.name}: non-contiguous grad differs")


@pytest.mark.parametrize("info,case", ERROR_CASES)
def test_bad_input_raises_clear_error(info, case):
    before = [a.copy() if isinstance(a, np.ndarray) else None for a in case.args]
    args = to_striate(case.args)
    with pytest.raises(case.exc, match=case.match):
        info.op(*args, **case.kwargs)
    for a, b in zip(case.args, before):
        if b is not None:
            np.testing.assert_array_equal(a, b)
    for t in args:
        if isinstance(t, striate.Tensor):
            assert t.grad is None
