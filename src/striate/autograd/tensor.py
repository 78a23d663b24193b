"""``striate.Tensor``: a NumPy array with a gradient and a place in the autograd graph."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..kernels import workspace
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
    elif backend.device_of(data) != "cpu":  # a device (CuPy) array: keep it on its device
        xp = backend.get_array_module(data)
        return xp.array(data, dtype=dtype, copy=True)
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
    xp = backend.get_array_module(arr)
    if dtype is not None:
        return xp.array(arr, dtype=dtype, copy=True)
    return xp.array(arr, copy=True)


def as_array(x) -> np.ndarray:
    """The array behind a Tensor (no copy), a device array as it is, or ``np.asarray`` of anything else."""
    if isinstance(x, Tensor):
        return x.data
    if backend.device_of(x) != "cpu":
        return x
    return np.asarray(x)


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
    def device(self) -> str:
        """Where the data lives: ``"cpu"`` (a NumPy array) or ``"cuda"`` (a CuPy array)."""
        return backend.device_of(self.data)

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

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
        """The data as a NumPy array, as ``torch.Tensor.numpy``: the underlying array itself
        (shared, not copied) on the CPU; a host copy of a device tensor (unlike PyTorch, which
        asks for ``.cpu()`` first)."""
        if self.requires_grad and self._node is not None:
            raise RuntimeError("call .detach().numpy() on a tensor that is part of a graph")
        return backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        data = backend.to_numpy(self.data)
        if dtype is not None and np.dtype(dtype) != data.dtype:
            return data.astype(dtype)
        return data.copy() if copy and data is self.data else data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

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

    def to(self, *args, device=None, dtype=None) -> "Tensor":
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or the keywords, as in PyTorch.

        A device is ``"cpu"`` or ``"cuda"``; moving is recorded (gradients flow back to the
        original device).  Returns ``self`` when nothing changes.
        """
        device, dtype = _split_to_args("Tensor.to", args, device, dtype)
        out = self
        if device is not None and device != self.device:
            from . import ops

            out = ops.ToDevice.apply(out, device=device)
        if dtype is not None:
            out = out.astype(dtype)
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def float(self) -> "Tensor":
        return self.astype(np.float32)

    def double(self) -> "Tensor":
        return self.astype(np.float64)

    def long(self) -> "Tensor":
        return self.astype(np.int64)

    # ----------------------------------------------------------------- autograd
    def _accumulate(self, g: np.ndarray) -> None:
        # the copy (and the running sum) of a NumPy gradient goes into recycled memory
        # (kernels.workspace.output): an input's gradient is as big as the input, and fresh
        # memory faults its pages in
        if self.grad is None:
            if type(g) is np.ndarray:
                grad = workspace.output(g.shape, self.dtype)
                np.copyto(grad, g, casting="unsafe")
            else:
                grad = backend.get_array_module(g).array(g, dtype=self.dtype, copy=True)
            self.grad = Tensor._wrap(grad)
        else:
            self.grad.data = workspace.add(self.grad.data, g)

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
            g = backend.get_array_module(self.data).ones(self.shape, dtype=self.dtype)
        else:
            g = as_array(gradient)
            backend.check_same_device("backward", self.data, g)
            g = g.astype(self.dtype, copy=False)
            if g.shape != self.shape:
                raise RuntimeError(f"gradient has shape {g.shape} but the tensor has shape {self.shape}")
        run_backward(self, g, retain_graph=retain_graph)

    def zero_(self) -> "Tensor":
        self.data[...] = 0
        return self

    # ----------------------------------------------------------------- repr
    def __repr__(self) -> str:
        body = np.array2string(backend.to_numpy(self.data), separator=", ", precision=4, threshold=50, prefix="tensor(")
        extra = ""
        if self.dtype != np.float32 and self.dtype != np.int64:
            extra += f", dtype={self.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
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
        other = as_array(other)
        backend.check_same_device(fn.__name__, self.data, other)
        return Tensor._wrap(fn(self.data, other))

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
        xp = backend.get_array_module(self.data)
        idx = xp.argmax(self.data, axis=dim, keepdims=keepdim if dim is not None else False)
        return Tensor._wrap(xp.asarray(idx, dtype=np.int64))

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


def _split_to_args(what, args, device, dtype):
    """Sort ``to()``'s positional arguments into (device, dtype): strings naming a device are
    devices, anything else a dtype."""
    if len(args) > 2:
        raise TypeError(f"{what}() takes at most a device and a dtype, got {len(args)} arguments")
    for a in args:
        if _is_device(a):
            if device is not None:
                raise TypeError(f"{what}(): device given twice")
            device = a
        else:
            if dtype is not None:
                raise TypeError(f"{what}(): dtype given twice")
            dtype = a
    if device is not None:
        device = backend.normalize_device(device)
    return device, (None if dtype is None else _as_dtype(dtype))


def _is_device(value) -> bool:
    if hasattr(value, "type") and isinstance(getattr(value, "type"), str):
        return True
    if not isinstance(value, str):
        return False
    return value.strip().lower().partition(":")[0] in backend.DEVICES


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Build a Tensor from data, copying it, with ``torch.tensor``'s dtype rules.

    A NumPy array keeps its dtype (integer arrays stay integer); Python floats become float32,
    Python ints int64, bools bool.  ``dtype`` forces a dtype (numpy dtype or name).
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
