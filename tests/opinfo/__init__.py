"""One registry of ops driving the generic tests (in the spirit of PyTorch's OpInfo).

Each family module (``tests/opinfo/<family>.py``) appends :class:`OpInfo` entries to
``REGISTRY``.  An entry says how to call the striate op, the naive reference, and the PyTorch
twin, gives sample inputs and inputs that must be refused.  ``tests/test_ops_generic.py`` runs
every check of the testing convention over every entry:

1. forward == reference (float64, tight);
2. backward == reference backward (float64), where the reference has one;
3. float64 finite-difference gradcheck of every differentiable input;
4. PyTorch parity of forward and every gradient in float32 and float64;
5. contract: output shape, dtype preserved, gradient shapes, inputs not mutated,
   non-contiguous inputs give the same result;
6. errors: a clear exception whose message names the shapes, inputs unchanged.

Conventions for a :class:`Sample`:

* ``args`` are positional arguments; every ``np.ndarray`` among them becomes a striate Tensor
  (and a torch tensor for the torch twin); other values pass through unchanged.
* floating arrays require grad unless their index is listed in ``nograd``.
* ``kwargs`` pass to the striate op and the reference unchanged; ``torch_kwargs`` (when given)
  replace them for the torch twin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["OpInfo", "Sample", "ErrorCase", "REGISTRY", "register", "all_ops"]


@dataclass
class Sample:
    args: tuple
    kwargs: dict = field(default_factory=dict)
    nograd: tuple[int, ...] = ()
    torch_kwargs: dict | None = None
    desc: str = ""
    fan_in: int = 1  # for the float32 torch tolerance atol 1e-5 * sqrt(fan_in)

    def diff_indices(self) -> list[int]:
        return [
            i for i, a in enumerate(self.args)
            if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating) and i not in self.nograd
        ]

    def astype(self, dtype) -> "Sample":
        """The same sample with its floating arrays converted to ``dtype``."""
        args = tuple(
            a.astype(dtype) if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating) else a
            for a in self.args
        )
        return dataclasses.replace(self, args=args)

    def __repr__(self) -> str:
        shapes = ",".join(str(a.shape) if isinstance(a, np.ndarray) else repr(a) for a in self.args)
        return f"Sample({self.desc or shapes} {self.kwargs})"


@dataclass
class ErrorCase:
    args: tuple
    kwargs: dict
    exc: type | tuple[type, ...]
    match: str  # regular expression the message must contain (name the shapes)
    desc: str = ""


@dataclass
class OpInfo:
    name: str
    op: Callable[..., Any]  # striate functional op
    samples: Callable[[np.random.Generator], list[Sample]]  # float64 samples
    ref: Callable[..., Any] | None = None  # naive forward: ndarrays -> ndarray
    ref_grad: Callable[..., Any] | None = None  # naive backward: (dy, *args, **kw) -> grads per diff arg
    torch_fn: Callable[..., Any] | None = None  # (torch module, *torch args, **kw) -> torch tensor
    errors: Callable[[], list[ErrorCase]] = lambda: []
    family: str = ""
    output_index: int | None = None  # when the op returns a tuple: the differentiable output
    gradcheck: bool = True
    random_output_grad: bool = True  # False for ops whose output must be reduced differently
    fwd_rtol: float = 1e-10
    grad_atol: float = 1e-5
    grad_rtol: float = 1e-3

    def __repr__(self) -> str:
        return self.name


REGISTRY: list[OpInfo] = []


def register(*infos: OpInfo) -> None:
    REGISTRY.extend(infos)


def all_ops() -> list[OpInfo]:
    """Import every family module (which registers its ops) and return the registry."""
    import importlib
    import pkgutil

    if not REGISTRY:
        for m in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{m.name}")
    return REGISTRY
