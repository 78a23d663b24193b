"""User-facing ops on Tensors with PyTorch's names, argument names, defaults and output sizes.

``import striate.functional as F`` (or ``striate.nn.functional``) and code written for
``torch.nn.functional`` runs with an import change.  Each family lives in its own module; this
package re-exports them all.
"""

from .activation import *  # noqa: F401,F403
from .array import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
from . import activation, array, conv, loss, norm, pool, resample

__all__ = [name for m in (activation, array, conv, loss, norm, pool, resample) for name in m.__all__]
