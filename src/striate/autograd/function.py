"""Reverse-mode automatic differentiation: ``Function``, the graph node, and the backward engine.

A :class:`Function` is a pair of static methods around a kernel pair::

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):            # arrays in, array(s) out
            y = np.exp(x)
            ctx.save(y)
            return y

        @staticmethod
        def backward(ctx, dy):          # one gradient per output in, one per input out
            (y,) = ctx.saved
            return dy * y,

``Function.apply`` unwraps :class:`~striate.Tensor` arguments to their arrays, runs ``forward``,
wraps the outputs, and -- when gradients are enabled and some input requires them -- records a
:class:`Node` that remembers the inputs and the context.  ``backward`` on a scalar walks the
nodes in reverse topological order, calling each ``Function.backward`` once with the summed
gradients of its outputs.
"""

from __future__ import annotations

import contextlib
import threading
import weakref

import numpy as np

from .. import backend
from ..kernels import workspace

__all__ = ["Function", "Context", "Node", "no_grad", "enable_grad", "is_grad_enabled", "run_backward"]

#: Callables ``observer(fn, args, kwargs, result)`` notified after every ``Function.apply`` with
#: the Function class, its arguments as given (Tensors or arrays), its keyword arguments and what
#: ``apply`` returns.  Empty (and then free) except while a tracer such as
#: :func:`striate.io.export_onnx` records a forward pass; add and remove observers in try/finally.
observers: list = []


class _GradMode(threading.local):
    enabled = True


_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _mode.enabled


@contextlib.contextmanager
def _set_grad(enabled: bool):
    previous = _mode.enabled
    _mode.enabled = enabled
    try:
        yield
    finally:
        _mode.enabled = previous


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) in which no graph is recorded, as ``torch.no_grad``."""

    def __enter__(self):
        self._prev = _mode.enabled
        _mode.enabled = False
        return self

    def __exit__(self, *exc):
        _mode.enabled = self._prev
        return False


class enable_grad(contextlib.ContextDecorator):
    """Re-enable graph recording inside a ``no_grad`` block."""

    def __enter__(self):
        self._prev = _mode.enabled
        _mode.enabled = True
        return self

    def __exit__(self, *exc):
        _mode.enabled = self._prev
        return False


class Context:
    """Scratch space a Function's forward leaves for its backward.

    ``needs_input_grad[i]`` tells backward whether input ``i`` wants a gradient, so it can skip
    work (e.g. a convolution whose input is data, not a parameter, needs no dX).
    """

    __slots__ = ("saved", "needs_input_grad", "non_differentiable", "__dict__")

    def __init__(self, needs_input_grad):
        self.saved = ()
        self.needs_input_grad = needs_input_grad
        self.non_differentiable = ()

    def save(self, *values) -> None:
        self.saved = values

    def mark_non_differentiable(self, *output_indices: int) -> None:
        """Outputs at these indices (e.g. argmax indices) never carry gradient."""
        self.non_differentiable = output_indices


class Edge:
    """A graph reference to a non-leaf input: its producer (``_node``, ``_output_nr``), shape and
    dtype -- but not its array.  Holding the Tensor itself would keep every intermediate
    activation alive until the graph is freed, whether or not any backward needs it; what a
    backward needs is saved in its Function's context.  ``tensor`` is the Tensor while the user
    still holds it (for ``retain_grad``)."""

    __slots__ = ("_node", "_output_nr", "shape", "dtype", "_ref")

    def __init__(self, t):
        self._node, self._output_nr = t._node, t._output_nr
        self.shape, self.dtype = t.shape, t.dtype
        self._ref = weakref.ref(t)

    @property
    def tensor(self):
        return self._ref()

    @property
    def _retain_grad(self) -> bool:
        t = self._ref()
        return t is not None and t._retain_grad

    def _accumulate(self, g) -> None:
        t = self._ref()
        if t is not None:
            t._accumulate(g)


class Node:
    """One recorded application of a Function: what to call and whom to pass gradients to."""

    __slots__ = ("fn", "ctx", "inputs", "out_meta", "name")

    def __init__(self, fn, ctx, inputs, out_meta):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs  # leaf Tensor, Edge to a non-leaf Tensor, or None, per forward argument
        self.out_meta = out_meta  # (shape, dtype) per output, to build zero gradients
        self.name = fn.__name__

    def __repr__(self):
        return f"<{self.name}Backward>"


def _check_devices(cls, arrays) -> None:
    """Refuse arrays of different devices in one op (fast for the all-NumPy case)."""
    for a in arrays:
        if a is not None and type(a) is not np.ndarray and hasattr(a, "shape") and not isinstance(a, np.generic):
            backend.check_same_device(cls.__name__, *arrays)
            return


def _zeros_like_grads(grads, shape, dtype):
    """Zeros for an output that received no gradient, on the device of the others."""
    xp = backend.get_array_module(*[g for g in grads if g is not None])
    return xp.zeros(shape, dtype=dtype)


class Function:
    """Base class: subclasses define static ``forward(ctx, *args, **kw)`` and ``backward(ctx, *dys)``.

    Arrays may be NumPy or device (CuPy) arrays; all array arguments of one call must be on one
    device (``crosses_devices = True`` exempts ops that move data, such as ``ToDevice``).
    """

    crosses_devices = False

    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        from .tensor import Tensor

        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        if not cls.crosses_devices:
            _check_devices(cls, arrays)
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = _mode.enabled and any(needs)
        ctx = Context(needs)
        with _set_grad(False):
            out = cls.forward(ctx, *arrays, **kwargs)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        outs = tuple(o if isinstance(o, np.ndarray) or backend.device_of(o) != "cpu" else np.asarray(o)
                     for o in outs)
        tensors = [Tensor._wrap(o) for o in outs]
        if record:
            inputs = tuple(
                (a if a._node is None else Edge(a)) if (isinstance(a, Tensor) and a.requires_grad) else None
                for a in args
            )
            node = Node(cls, ctx, inputs, tuple((o.shape, o.dtype) for o in outs))
            for i, t in enumerate(tensors):
                if i in ctx.non_differentiable or not np.issubdtype(t.dtype, np.floating):
                    continue
                t._node = node
                t._output_nr = i
                t.requires_grad = True
        result = tensors[0] if single else tuple(tensors)
        if observers:
            for observer in tuple(observers):
                observer(cls, args, kwargs, result)
        return result


def _topological_nodes(root_node: Node) -> list[Node]:
    """Nodes reachable from ``root_node``, each after every node that consumes its outputs."""
    order: list[Node] = []
    seen: set[int] = set()
    stack = [(root_node, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t is not None and t._node is not None and id(t._node) not in seen:
                stack.append((t._node, False))
    order.reverse()  # consumers first
    return order


def run_backward(root, gradient: np.ndarray, retain_graph: bool = False) -> None:
    """Propagate ``gradient`` (d loss / d root) to every leaf that requires grad."""
    if root._node is None:
        root._accumulate(gradient)
        return
    pending: dict[int, list] = {id(root._node): [None] * len(root._node.out_meta)}
    pending[id(root._node)][root._output_nr] = gradient
    for node in _topological_nodes(root._node):
        grads = pending.pop(id(node), None)
        if grads is None:
            continue
        if node.ctx is None:
            raise RuntimeError(
                f"trying to backward through the graph a second time (through {node.name}); its "
                "saved arrays were freed after the first backward. Pass retain_graph=True to the "
                "first backward() if you need to backward twice."
            )
        grads = [
            g if g is not None else _zeros_like_grads(grads, shape, dtype)
            for g, (shape, dtype) in zip(grads, node.out_meta)
        ]
        input_grads = node.fn.backward(node.ctx, *grads)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) < len(node.inputs):
            input_grads = input_grads + (None,) * (len(node.inputs) - len(input_grads))
        for t, g in zip(node.inputs, input_grads):
            if t is None or g is None:
                continue
            if not hasattr(g, "shape"):
                g = np.asarray(g)
            if g.shape != t.shape:
                raise RuntimeError(
                    f"{node.name}.backward returned a gradient of shape {g.shape} for an input of "
                    f"shape {t.shape}"
                )
            if g.dtype != t.dtype:
                g = g.astype(t.dtype)
            if t._retain_grad or t._node is None:
                t._accumulate(g)
            if t._node is not None:
                slot = pending.setdefault(id(t._node), [None] * len(t._node.out_meta))
                prev = slot[t._output_nr]
                # two gradients of one tensor (a residual block's input): summed into recycled memory
                slot[t._output_nr] = g if prev is None else workspace.add(prev, g)
        if not retain_graph:
            node.ctx = None
