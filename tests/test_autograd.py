"""The autograd tape: tensor construction, graph recording, backward order, accumulation, errors."""

from __future__ import annotations

import numpy as np
import pytest

import striate
from striate import Function, Tensor, no_grad, tensor
from harness import needs_torch, torch


def test_tensor_keeps_numpy_dtype_and_copies():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    t = tensor(a)
    assert t.dtype == np.int32 and t.shape == (2, 3)
    a[0, 0] = 99
    assert t.data[0, 0] == 0, "tensor() must copy, as torch.tensor does"
    assert tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64


def test_tensor_python_scalars_follow_torch_defaults():
    assert tensor([1.0, 2.0]).dtype == np.float32
    assert tensor([1, 2]).dtype == np.int64
    assert tensor([True, False]).dtype == np.bool_
    assert tensor([1, 2], dtype="float64").dtype == np.float64
    assert tensor(3.5).shape == ()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        tensor([1, 2], requires_grad=True)


def test_array_protocol_and_numpy_view():
    t = tensor(np.arange(4.0))
    assert np.asarray(t) is t.data
    assert t.numpy() is t.data
    assert np.array(t, dtype=np.float32).dtype == np.float32


def test_backward_through_shared_subexpression_accumulates():
    # y = x*x + x*x uses x four times: dy/dx = 4x
    x = tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    a = x * x
    y = (a + a).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.data, 4 * x.data)


def test_diamond_graph_visits_each_node_once():
    calls = []

    class Spy(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, dy):
            calls.append(1)
            return (dy * 2,)

    x = tensor(np.ones(3), requires_grad=True)
    h = Spy.apply(x)
    out = (h * 3 + h.exp()).sum()
    out.backward()
    assert len(calls) == 1, "a node must run backward once, after all its consumers"
    np.testing.assert_allclose(x.grad.data, 2 * (3 + np.exp(2.0)))


def test_gradients_accumulate_across_backward_calls():
    x = tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad.data, [8.0, 8.0])


def test_backward_on_non_scalar_needs_gradient():
    x = tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        y.backward()
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_allclose(x.grad.data, np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2).backward(np.ones(3))


def test_second_backward_through_freed_graph_raises_and_retain_graph_allows_it():
    x = tensor(np.array([2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, [8.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_no_grad_records_nothing():
    x = tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert striate.is_grad_enabled(), "grad mode must be restored after the block"

    @no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad


def test_backward_on_tensor_without_graph_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tensor(np.ones(1)).backward()


def test_retain_grad_on_intermediate():
    x = tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.data, 2 * h.data)
    np.testing.assert_allclose(x.grad.data, 18 * x.data)


def test_detach_cuts_the_graph():
    x = tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x.detach() * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.data, x.data)


def test_broadcast_gradients_sum_back_to_input_shape():
    a = tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)
    b = tensor(np.random.default_rng(1).standard_normal((3, 1)), requires_grad=True)
    (a * b).sum().backward()
    assert b.grad.shape == (3, 1)
    np.testing.assert_allclose(b.grad.data, a.data.sum(axis=(0, 2))[:, None])


def test_python_scalar_keeps_tensor_dtype():
    x = tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = 2.5 * x + 1 - x / 3.0
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_getitem_with_repeated_indices_accumulates():
    x = tensor(np.arange(4.0), requires_grad=True)
    x[np.array([0, 0, 3])].sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 0.0, 0.0, 1.0])


def test_gradcheck_passes_on_composite_expression():
    rng = np.random.default_rng(0)
    a = tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = tensor(rng.standard_normal((4, 2)), requires_grad=True)
    assert striate.gradcheck(lambda a, b: ((a @ b).exp() / (1 + (a @ b) ** 2)).mean(dim=0), [a, b])


def test_gradcheck_reports_input_element_and_values_on_a_wrong_gradient():
    class Wrong(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save(x)
            return x ** 3

        @staticmethod
        def backward(ctx, dy):
            (x,) = ctx.saved
            g = 3 * x ** 2
            g.reshape(-1)[1] += 0.5  # a deliberate bug in one element
            return (dy * g,)

    x = tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    with pytest.raises(striate.GradcheckError, match=r"input 0 .*element \(1,\).*analytic.*numerical"):
        striate.gradcheck(lambda t: Wrong.apply(t), [x])


def test_gradcheck_directional_mode_catches_wrong_gradient():
    class Wrong(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, dy):
            return (dy * 2.2,)

    x = tensor(np.random.default_rng(0).standard_normal(300), requires_grad=True)
    with pytest.raises(striate.GradcheckError, match="random direction"):
        striate.gradcheck(lambda t: Wrong.apply(t), [x], max_full=100)
    assert striate.gradcheck(lambda t: t * 2, [x], max_full=100)


def test_gradcheck_requires_float64():
    x = tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        striate.gradcheck(lambda t: t * 2, [x])


def test_gradcheck_leaves_inputs_unchanged():
    data = np.random.default_rng(3).standard_normal(5)
    x = tensor(data.copy(), requires_grad=True)
    striate.gradcheck(lambda t: (t * t).sum(), [x])
    np.testing.assert_array_equal(x.data, data)
    assert x.grad is None


@needs_torch
def test_composite_expression_matches_torch():
    rng = np.random.default_rng(5)
    a_np, b_np = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    a, b = tensor(a_np, requires_grad=True), tensor(b_np, requires_grad=True)
    ((a * b - b / (a * a + 1)).exp().mean(dim=1) ** 2).sum().backward()
    ta = torch.tensor(a_np, requires_grad=True)
    tb = torch.tensor(b_np, requires_grad=True)
    ((ta * tb - tb / (ta * ta + 1)).exp().mean(dim=1) ** 2).sum().backward()
    np.testing.assert_allclose(a.grad.data, ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad.data, tb.grad.numpy(), rtol=1e-12)


def test_multi_output_function_gives_zero_grad_to_unused_output():
    class SplitTwo(Function):
        @staticmethod
        def forward(ctx, x):
            return x[:2].copy(), x[2:].copy()

        @staticmethod
        def backward(ctx, d1, d2):
            return (np.concatenate([d1, d2]),)

    x = tensor(np.arange(5.0), requires_grad=True)
    first, _ = SplitTwo.apply(x)
    (first * 2).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2, 2, 0, 0, 0])


def test_tensor_repr_and_item():
    t = tensor(np.array([1.5]), requires_grad=True)
    assert "requires_grad=True" in repr(t)
    assert (t * 2).item() == 3.0
    assert isinstance(t, Tensor)


def test_activation_methods_match_functional():
    import striate.functional as F

    x = tensor(np.random.default_rng(0).standard_normal((3, 4)))
    for name in ("relu", "sigmoid", "tanh"):
        np.testing.assert_array_equal(getattr(x, name)().numpy(), getattr(F, name)(x).numpy())
    np.testing.assert_array_equal(x.softmax(1).numpy(), F.softmax(x, dim=1).numpy())
    np.testing.assert_array_equal(x.log_softmax(0).numpy(), F.log_softmax(x, dim=0).numpy())


def test_reduction_dim_out_of_range_names_the_shape():
    with pytest.raises(IndexError, match=r"dim 3 .*\(2, 3\)"):
        tensor(np.ones((2, 3))).sum(dim=3)


def test_getitem_basic_index_gradient():
    x = tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    x[:, 1:, ::2].sum().backward()
    expected = np.zeros((2, 3, 4))
    expected[:, 1:, ::2] = 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    assert striate.gradcheck(lambda t: t[1, ..., None, 1:3] * 2, [tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)])


def test_graph_does_not_keep_dropped_intermediate_tensors_alive():
    """Nodes reference non-leaf inputs weakly: what backward needs is saved in each Function's
    context, so a dropped intermediate Tensor is freed before backward runs."""
    import gc
    import weakref

    x = tensor(np.random.default_rng(0).standard_normal(1000), requires_grad=True)
    h = x * 2.0  # Mul saves its operands; the output Tensor h itself is not needed by backward
    ref = weakref.ref(h)
    loss = (h + 1.0).sum()
    del h
    gc.collect()
    assert ref() is None
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_pooled_gradients_never_alias_live_arrays():
    # gradients of 1 MiB live in recycled memory (kernels.workspace.output): a gradient the
    # user kept must never be handed out again or written to
    x = Tensor(np.ones((64, 32, 32, 4), np.float32), requires_grad=True)
    (x * 2.0).sum().backward()
    first = x.grad.data
    (x * 3.0).sum().backward()  # accumulates into a new array
    assert np.all(first == 2) and np.all(x.grad.data == 5) and not np.shares_memory(first, x.grad.data)
    kept = x.grad
    x.grad = None
    (x * 4.0).sum().backward()
    assert np.all(kept.data == 5) and np.all(x.grad.data == 4) and not np.shares_memory(kept.data, x.grad.data)
    # a tensor used twice: the engine sums its two gradients into recycled memory
    y = Tensor(np.ones((64, 32, 32, 4), np.float32), requires_grad=True)
    z = y * 2.0
    (z * z + z).sum().backward()  # d/dz = 2z + 1 = 5, d/dy = 10
    assert np.all(y.grad.data == 10) and not np.shares_memory(y.grad.data, x.grad.data)
