"""The autograd tape: Tensor, Function, no_grad and the backward engine."""

from .function import Context, Function, enable_grad, is_grad_enabled, no_grad
from .tensor import Tensor, as_array, tensor

__all__ = ["Tensor", "tensor", "as_array", "Function", "Context", "no_grad", "enable_grad", "is_grad_enabled"]
