"""``striate.Tensor``: a NumPy array with a gradient and a place in the autograd graph."""

from __future__ import annotations

import numpy as np

from .function import is_grad_enabled, run_backward

__all__ = ["Tensor", "tensor", "as_array"]

_DTYPE_NAMES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "uint8": np.uint8, "bool": np.bool_, "int8": np.int8,
    "int16": np.int16,
}


def _as_dtype(dtype):
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype.removeprefix("striate.").removeprefix("torch.")
        if name not in _DTYPE_NAMES:
            raise TypeError(f"unknown dtype {dtype!r}")
        return np.dtype(_DTYPE_NAMES[name])
    return np.dtype(dtype)


def _default_array(data, dtype) -> np.ndarray:
    """Convert ``data`` like ``torch.tensor``: arrays keep their dtype, Python floats become float32."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, np.generic):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif arr.dtype == object:
            raise TypeError(f"cannot build a tensor from {type(data).__name__} holding mixed objects")
    if dtype is not None:
        return np.array(arr, dtype=dtype, copy=True)
    return np.array(arr, copy=True)


def as_array(x) -> np.ndarray:
    """The ndarray behind a Tensor (no copy), or ``np.asarray`` of anything else."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    ``data`` is the underlying ``numpy.ndarray``; ``grad`` (a Tensor, or None) accumulates
    d loss / d self over calls to :meth:`backward`; ``requires_grad`` says whether operations on
    this tensor are recorded.  Layout conventions follow PyTorch: activations NCHW, weights OIHW.
    """

    __array_priority__ = 1000  # make ndarray (op) Tensor defer to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _default_array(data, _as_dtype(dtype))
        self.grad: Tensor | None = None
        self._node = None
        self._output_nr = 0
        self._retain_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array: np.ndarray) -> "Tensor":
        """Wrap an array without copying it (for op outputs)."""
        t = cls.__new__(cls)
        t.data = array
        t.grad = None
        t._node = None
        t._output_nr = 0
        t._retain_grad = False
        t.requires_grad = False
        return t

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    @property
    def T(self) -> "Tensor":
        return self.permute(*reversed(range(self.ndim)))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied), as ``torch.Tensor.numpy``."""
        if self.requires_grad and self._node is not None:
            raise RuntimeError("call .detach().numpy() on a tensor that is part of a graph")
        return self.data

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.data.tolist()

    def detach(self) -> "Tensor":
        return Tensor._wrap(self.data)

    def clone(self) -> "Tensor":
        from . import ops

        return ops.Clone.apply(self)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        if not requires_grad and self._node is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on a non-leaf tensor too."""
        self._retain_grad = True

    def astype(self, dtype) -> "Tensor":
        from . import ops

        dtype = _as_dtype(dtype)
        if dtype == self.dtype:
            return self
        return ops.Cast.apply(self, dtype=dtype)

    def to(self, dtype=None) -> "Tensor":
        if dtype is None or (isinstance(dtype, str) and dtype == "cpu"):
            return self
        return self.astype(dtype)

    def float(self) -> "Tensor":
        return self.astype(np.float32)

    def double(self) -> "Tensor":
        return self.astype(np.float64)

    def long(self) -> "Tensor":
        return self.astype(np.int64)

    # ----------------------------------------------------------------- autograd
    def _accumulate(self, g: np.ndarray) -> None:
        if self.grad is None:
            self.grad = Tensor._wrap(np.array(g, dtype=self.dtype, copy=True))
        else:
            self.grad.data = self.grad.data + g

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d self / d leaf into every leaf's ``.grad``.

        ``gradient`` is d loss / d self; it may be omitted only when ``self`` has one element.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad and has no graph")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a scalar output, got shape {self.shape}; "
                    "pass gradient= with the same shape"
                )
            g = np.ones(self.shape, dtype=self.dtype)
        else:
            g = np.asarray(as_array(gradient), dtype=self.dtype)
            if g.shape != self.shape:
                raise RuntimeError(f"gradient has shape {g.shape} but the tensor has shape {self.shape}")
        run_backward(self, g, retain_graph=retain_graph)

    def zero_(self) -> "Tensor":
        self.data[...] = 0
        return self

    # ----------------------------------------------------------------- repr
    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", precision=4, threshold=50, prefix="tensor(")
        extra = ""
        if self.dtype != np.float32 and self.dtype != np.int64:
            extra += f", dtype={self.dtype}"
        if self._node is not None:
            extra += f", grad_fn={self._node!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ----------------------------------------------------------------- math (defined in ops)
    def __add__(self, other):
        from . import ops
        return ops.add(self, other)

    def __radd__(self, other):
        from . import ops
        return ops.add(other, self)

    def __sub__(self, other):
        from . import ops
        return ops.sub(self, other)

    def __rsub__(self, other):
        from . import ops
        return ops.sub(other, self)

    def __mul__(self, other):
        from . import ops
        return ops.mul(self, other)

    def __rmul__(self, other):
        from . import ops
        return ops.mul(other, self)

    def __truediv__(self, other):
        from . import ops
        return ops.div(self, other)

    def __rtruediv__(self, other):
        from . import ops
        return ops.div(other, self)

    def __neg__(self):
        from . import ops
        return ops.neg(self)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        from . import ops
        return ops.pow(self, exponent)

    def __matmul__(self, other):
        from . import ops
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        from . import ops
        return ops.matmul(other, self)

    def __getitem__(self, index):
        from . import ops
        return ops.getitem(self, index)

    def _compare(self, other, fn):
        return Tensor._wrap(fn(self.data, as_array(other)))

    def __eq__(self, other):  # elementwise, as in torch/numpy
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    __hash__ = object.__hash__

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def sum(self, dim=None, keepdim: bool = False):
        from . import ops
        return ops.sum(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        from . import ops
        return ops.mean(self, dim=dim, keepdim=keepdim)

    def reshape(self, *shape):
        from . import ops
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        from . import ops
        return ops.flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        from . import ops
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return ops.permute(self, dims)

    def transpose(self, dim0: int, dim1: int):
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(*dims)

    def exp(self):
        from . import ops
        return ops.exp(self)

    def log(self):
        from . import ops
        return ops.log(self)

    def sqrt(self):
        from . import ops
        return ops.sqrt(self)

    def abs(self):
        from . import ops
        return ops.abs(self)

    def max(self, dim=None, keepdim: bool = False):
        from . import ops
        return ops.amax(self, dim=dim, keepdim=keepdim)

    def argmax(self, dim=None, keepdim: bool = False):
        idx = np.argmax(self.data, axis=dim, keepdims=keepdim if dim is not None else False)
        return Tensor._wrap(np.asarray(idx, dtype=np.int64))

    # activations as methods, as on torch.Tensor (the functional ops do the work)
    def relu(self):
        from .. import functional as F
        return F.relu(self)

    def sigmoid(self):
        from .. import functional as F
        return F.sigmoid(self)

    def tanh(self):
        from .. import functional as F
        return F.tanh(self)

    def softmax(self, dim: int):
        from .. import functional as F
        return F.softmax(self, dim=dim)

    def log_softmax(self, dim: int):
        from .. import functional as F
        return F.log_softmax(self, dim=dim)

    def unsqueeze(self, dim: int):
        shape = list(self.shape)
        dim = dim if dim >= 0 else dim + self.ndim + 1
        shape.insert(dim, 1)
        return self.reshape(tuple(shape))

    def squeeze(self, dim: int | None = None):
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dim = dim if dim >= 0 else dim + self.ndim
        if self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1 :])


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Build a Tensor from data, copying it, with ``torch.tensor``'s dtype rules.

    A NumPy array keeps its dtype (integer arrays stay integer); Python floats become float32,
    Python ints int64, bools bool.  ``dtype`` forces a dtype (numpy dtype or name).
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
