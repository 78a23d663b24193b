"""striate: convolutional neural networks from first principles in NumPy.

Every layer has an explicit forward and backward pass (``striate.kernels``), a naive-loop
reference transcribing the math (``striate.reference``), and a small autograd tape on top
(``striate.Tensor``).  ``striate.functional`` mirrors ``torch.nn.functional``.
"""

import numpy as _np

from .autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad, tensor
from .gradcheck import GradcheckError, gradcheck
from . import backend, cuda, functional, nn, optim, random
from .random import manual_seed

float32 = _np.float32
float64 = _np.float64
int64 = _np.int64

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck",
    "GradcheckError", "functional", "nn", "optim", "random", "manual_seed", "float32", "float64", "int64",
    "backend", "cuda",
]
