"""Neural-network building blocks with PyTorch's class names, constructor arguments and state_dict keys.

``striate.nn.functional`` is ``striate.functional``.
"""

from . import functional, init  # noqa: F401
from .activation import *  # noqa: F401,F403
from .containers import ModuleDict, ModuleList, Sequential
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .linear import Flatten, Identity, Linear, Unflatten
from .loss import *  # noqa: F401,F403
from .module import Module, StateDictError
from .norm import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d
from .parameter import Parameter
from .pool import *  # noqa: F401,F403
from .resample import Downsample, Upsample
from . import activation, loss, pool

__all__ = [
    "Module", "Parameter", "StateDictError", "Sequential", "ModuleList", "ModuleDict", "Conv1d", "Conv2d",
    "ConvTranspose1d", "ConvTranspose2d", "Linear", "Flatten", "Unflatten", "Identity", "BatchNorm1d",
    "BatchNorm2d", "Dropout", "Dropout2d", "Upsample", "Downsample", "functional", "init",
    *activation.__all__, *loss.__all__, *pool.__all__,
]
