"""Neural-network building blocks.  ``striate.nn.functional`` is ``striate.functional``."""

from . import functional  # noqa: F401
from .parameter import Parameter

__all__ = ["Parameter", "functional"]
