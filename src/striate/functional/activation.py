"""Activations and the softmax family with ``torch.nn.functional``'s names, arguments and defaults.

Every op here is element-wise (same output shape as the input) except the softmax family, which
normalises along one axis ``dim`` (same output shape too).  Float32 stays float32; integer inputs
raise TypeError (cast them first).

``inplace=True`` is accepted for source compatibility and **ignored**: the result is always a new
tensor and the input is never modified (an in-place write would corrupt arrays the autograd graph
still needs).  Code that uses the return value, ``x = F.relu(x, inplace=True)`` -- the way
PyTorch's own modules use it -- behaves identically; code relying on the side effect does not.

``dim=None`` in :func:`softmax`, :func:`softmin` and :func:`log_softmax` follows PyTorch's
deprecated implicit rule -- dim 0 for 0-, 1- and 3-D inputs, dim 1 otherwise -- and warns with
PyTorch's UserWarning.  Pass ``dim`` explicitly.

Known differences from PyTorch (all deliberate):

* ``inplace=True`` is ignored (above); the underscore variants (``relu_`` ...) do not exist.
* Invalid arguments raise ValueError where PyTorch raises RuntimeError: ``gelu(approximate=...)``
  other than 'none'/'tanh', ``celu(alpha=0)``, ``softplus(beta=0)`` (PyTorch returns inf there).
* PyTorch's float64 gradients of ``hardsigmoid`` and ``celu`` use float32-rounded constants
  (1/6 and 1/alpha; relative errors 3e-8 and 2e-7); striate's are exact.
* ``softplus`` is evaluated as (max(z, 0) + log1p(exp(-|z|))) / beta, z = beta x, so a large
  ``threshold`` never overflows (PyTorch's log1p(exp(z)) / beta gives inf once exp(z) does);
  elsewhere the two agree to rounding.
* ``gelu(approximate='tanh')`` has a finite gradient for huge |x| (PyTorch's is NaN there).
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import _as_dtype, as_array
from ..kernels import activation as K

__all__ = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "sigmoid", "tanh",
    "hardtanh", "hardsigmoid", "hardswish", "silu", "mish", "softplus", "logsigmoid",
    "threshold", "prelu", "softmax", "softmin", "log_softmax",
]


def _pointwise(name: str, forward, backward):
    """A Function for an element-wise kernel pair ``forward(x, **params) -> (y, cache)``,
    ``backward(dy, cache) -> dx``."""

    def fwd(ctx, x, **params):
        y, ctx.cache = forward(x, **params)
        return y

    def bwd(ctx, dy):
        return (backward(dy, ctx.cache),)

    return type(name, (Function,), {
        "forward": staticmethod(fwd), "backward": staticmethod(bwd),
        "__doc__": f"Function wrapping kernels.activation.{forward.__name__} / {backward.__name__}.",
    })


_ReLU = _pointwise("ReLU", K.relu_forward, K.relu_backward)
_LeakyReLU = _pointwise("LeakyReLU", K.leaky_relu_forward, K.leaky_relu_backward)
_Hardtanh = _pointwise("Hardtanh", K.hardtanh_forward, K.hardtanh_backward)
_Hardsigmoid = _pointwise("Hardsigmoid", K.hardsigmoid_forward, K.hardsigmoid_backward)
_Hardswish = _pointwise("Hardswish", K.hardswish_forward, K.hardswish_backward)
_Threshold = _pointwise("Threshold", K.threshold_forward, K.threshold_backward)
_ELU = _pointwise("ELU", K.elu_forward, K.elu_backward)
_GELU = _pointwise("GELU", K.gelu_forward, K.gelu_backward)
_Sigmoid = _pointwise("Sigmoid", K.sigmoid_forward, K.sigmoid_backward)
_Tanh = _pointwise("Tanh", K.tanh_forward, K.tanh_backward)
_SiLU = _pointwise("SiLU", K.silu_forward, K.silu_backward)
_Mish = _pointwise("Mish", K.mish_forward, K.mish_backward)
_Softplus = _pointwise("Softplus", K.softplus_forward, K.softplus_backward)
_LogSigmoid = _pointwise("LogSigmoid", K.logsigmoid_forward, K.logsigmoid_backward)


def relu(input, inplace: bool = False):
    """max(x, 0), element-wise.  ``inplace`` is ignored (see the module docstring)."""
    return _ReLU.apply(input)


def relu6(input, inplace: bool = False):
    """min(max(x, 0), 6) = hardtanh(x, 0, 6), element-wise."""
    return _Hardtanh.apply(input, min_val=0.0, max_val=6.0)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    """x for x > 0, ``negative_slope`` * x otherwise."""
    return _LeakyReLU.apply(input, negative_slope=negative_slope)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    """clip(x, min_val, max_val); ValueError if min_val > max_val.  Gradient 0 at the kinks."""
    return _Hardtanh.apply(input, min_val=min_val, max_val=max_val)


def hardsigmoid(input, inplace: bool = False):
    """clip(x + 3, 0, 6) / 6, element-wise."""
    return _Hardsigmoid.apply(input)


def hardswish(input, inplace: bool = False):
    """x clip(x + 3, 0, 6) / 6 (MobileNetV3), element-wise."""
    return _Hardswish.apply(input)


def threshold(input, threshold: float, value: float, inplace: bool = False):
    """x where x > ``threshold``, else ``value``."""
    return _Threshold.apply(input, threshold=threshold, value=value)


def elu(input, alpha: float = 1.0, inplace: bool = False):
    """x for x > 0, alpha (exp(x) - 1) otherwise."""
    return _ELU.apply(input, alpha=alpha)


def selu(input, inplace: bool = False):
    """scale (x for x > 0, alpha (exp(x) - 1) otherwise), alpha ~ 1.6733, scale ~ 1.0507."""
    return _ELU.apply(input, alpha=K.SELU_ALPHA, scale=K.SELU_SCALE)


def celu(input, alpha: float = 1.0, inplace: bool = False):
    """x for x > 0, alpha (exp(x / alpha) - 1) otherwise; ValueError for alpha = 0."""
    if float(alpha) == 0.0:
        raise ValueError("celu: alpha must be non-zero (the function divides by it)")
    return _ELU.apply(input, alpha=alpha, input_scale=1.0 / float(alpha))


def gelu(input, approximate: str = "none"):
    """x Phi(x), Phi the standard normal CDF (``approximate='none'``, via an erf implemented in
    NumPy), or its tanh approximation (``approximate='tanh'``).  Other values: ValueError."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU.apply(input, approximate=approximate)


def sigmoid(input):
    """1 / (1 + exp(-x)), computed without overflow for any x."""
    return _Sigmoid.apply(input)


def tanh(input):
    """tanh(x), element-wise."""
    return _Tanh.apply(input)


def silu(input, inplace: bool = False):
    """x sigmoid(x) (a.k.a. swish), element-wise."""
    return _SiLU.apply(input)


def mish(input, inplace: bool = False):
    """x tanh(softplus(x)), element-wise."""
    return _Mish.apply(input)


def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > ``threshold``.

    Computed as (max(z, 0) + log1p(exp(-|z|))) / beta, z = beta x, which never overflows.
    ValueError for beta = 0.
    """
    return _Softplus.apply(input, beta=beta, threshold=threshold)


def logsigmoid(input):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), element-wise."""
    return _LogSigmoid.apply(input)


class _PReLU(Function):
    @staticmethod
    def forward(ctx, x, weight):
        y, ctx.cache = K.prelu_forward(x, weight)
        return y

    @staticmethod
    def backward(ctx, dy):
        return K.prelu_backward(dy, ctx.cache, ctx.needs_input_grad)


def prelu(input, weight):
    """x for x > 0, weight[c] x otherwise, c the channel (axis 1).

    Shapes: input (N, C, *) -- or any shape when ``weight`` has one element --, weight (C,) or
    (1,).  Both input and weight get gradients.
    """
    return _PReLU.apply(input, weight)


# ---------------------------------------------------------------------------------------------
# softmax family


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    """PyTorch's legacy choice when ``dim`` is None: 0 for 0-, 1- and 3-D inputs, else 1."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        UserWarning, stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _resolve_dtype(dtype):
    """A NumPy dtype from np.float32, 'float64', striate.float32 or a torch dtype (by name)."""
    if isinstance(dtype, str):
        return _as_dtype(dtype)  # PyTorch's names: 'float' is float32
    try:
        return np.dtype(dtype)
    except TypeError:
        return _as_dtype(str(dtype))  # a torch dtype, e.g. torch.float64 -> 'torch.float64'


class _SoftmaxBase(Function):
    """softmax / softmin / log_softmax along ``dim``, optionally after casting to ``dtype``.

    With ``dtype`` the input is converted first (as PyTorch does) and the gradient is converted
    back to the input's dtype.
    """

    kernel_forward = staticmethod(K.softmax_forward)
    kernel_backward = staticmethod(K.softmax_backward)
    negate = False

    @classmethod
    def _forward(cls, ctx, x, dim, dtype):
        x = backend.asarray(x)
        ctx.in_dtype = x.dtype
        if dtype is not None:
            x = x.astype(_resolve_dtype(dtype))
        if cls.negate:
            K._check_input(x, "softmin")
            x = -x
        y, ctx.cache = cls.kernel_forward(x, dim)
        return y

    @classmethod
    def _backward(cls, ctx, dy):
        dx = cls.kernel_backward(dy, ctx.cache)
        if cls.negate:
            dx = -dx
        return (dx.astype(ctx.in_dtype, copy=False),)


class _Softmax(_SoftmaxBase):
    @staticmethod
    def forward(ctx, x, *, dim, dtype=None):
        return _Softmax._forward(ctx, x, dim, dtype)

    @staticmethod
    def backward(ctx, dy):
        return _Softmax._backward(ctx, dy)


class _Softmin(_SoftmaxBase):
    negate = True

    @staticmethod
    def forward(ctx, x, *, dim, dtype=None):
        return _Softmin._forward(ctx, x, dim, dtype)

    @staticmethod
    def backward(ctx, dy):
        return _Softmin._backward(ctx, dy)


class _LogSoftmax(_SoftmaxBase):
    kernel_forward = staticmethod(K.log_softmax_forward)
    kernel_backward = staticmethod(K.log_softmax_backward)

    @staticmethod
    def forward(ctx, x, *, dim, dtype=None):
        return _LogSoftmax._forward(ctx, x, dim, dtype)

    @staticmethod
    def backward(ctx, dy):
        return _LogSoftmax._backward(ctx, dy)


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    """exp(x_i) / sum_j exp(x_j) along ``dim`` (computed as exp(x_i - max) / sum exp(x_j - max)).

    Shape: any; the output has the input's shape and sums to 1 along ``dim``.  ``dtype`` casts
    the input first.  ``dim=None`` uses PyTorch's legacy rule with a warning (module docstring).
    A dim outside [-ndim, ndim) raises an IndexError (a ShapeError too) naming the shape.
    """
    if dim is None:
        dim = _implicit_dim("softmax", as_array(input).ndim, _stacklevel)
    return _Softmax.apply(input, dim=dim, dtype=dtype)


def softmin(input, dim=None, _stacklevel: int = 3, dtype=None):
    """softmax(-x) along ``dim``; arguments as :func:`softmax`."""
    if dim is None:
        dim = _implicit_dim("softmin", as_array(input).ndim, _stacklevel)
    return _Softmin.apply(input, dim=dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    """log(softmax(x)) along ``dim``, computed stably as (x_i - max) - log sum_j exp(x_j - max).

    Arguments as :func:`softmax`.
    """
    if dim is None:
        dim = _implicit_dim("log_softmax", as_array(input).ndim, _stacklevel)
    return _LogSoftmax.apply(input, dim=dim, dtype=dtype)
