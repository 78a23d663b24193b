"""Neural-network building blocks.  ``striate.nn.functional`` is ``striate.functional``."""

from . import functional  # noqa: F401
