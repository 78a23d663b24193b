"""Alias of :mod:`striate.functional`, so ``import striate.nn.functional as F`` works as in PyTorch."""

from ..functional import *  # noqa: F401,F403
from ..functional import __all__  # noqa: F401
