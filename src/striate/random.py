"""striate's default random-number generator (the counterpart of ``torch.manual_seed`` & co).

Ops that draw random numbers (``F.dropout``, ``F.dropout2d``) take an optional ``generator``, a
:class:`numpy.random.Generator`.  When it is None they draw from one process-wide generator kept
here, so that a single call ::

    striate.random.manual_seed(0)

makes a whole training run repeatable.  The generator is a PCG64 ``numpy.random.Generator``;
``manual_seed(k)`` puts it in exactly the state of ``numpy.random.default_rng(k)``, so the draws
after ``manual_seed(k)`` are those of a fresh ``default_rng(k)``.

Exact resume: :func:`get_rng_state` returns the bit generator's state dict (plain ints and
strings, a deep copy) which a checkpoint can store; :func:`set_rng_state` puts it back, after
which the generator continues the sequence exactly where it was when the state was taken.

Like PyTorch, the generator starts from a fixed seed (:data:`DEFAULT_SEED`), so a program that
never seeds is still repeatable run to run; call :func:`seed` for a non-deterministic seed.
"""

from __future__ import annotations

import copy
import secrets

import numpy as np

__all__ = [
    "DEFAULT_SEED", "manual_seed", "seed", "initial_seed", "default_generator",
    "get_rng_state", "set_rng_state",
]

#: The seed the default generator starts from (PyTorch's default seed, for familiarity).
DEFAULT_SEED = 67280421310721

_initial_seed = DEFAULT_SEED
_generator = np.random.default_rng(DEFAULT_SEED)


def _check_seed(value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < 0:
        raise ValueError(f"seed must be non-negative, got {value}")
    return value


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator (in place) and return it.

    The generator object stays the same, so references taken earlier with
    :func:`default_generator` see the new sequence; its state becomes that of
    ``numpy.random.default_rng(seed)``.
    """
    global _initial_seed
    seed = _check_seed(seed)
    _generator.bit_generator.state = np.random.PCG64(seed).state
    _initial_seed = seed
    return _generator


def seed() -> int:
    """Reseed the default generator from the operating system's entropy; return the seed used."""
    value = secrets.randbits(63)
    manual_seed(value)
    return value


def initial_seed() -> int:
    """The seed last given to :func:`manual_seed` (or :data:`DEFAULT_SEED`)."""
    return _initial_seed


def default_generator() -> np.random.Generator:
    """The process-wide generator used when an op's ``generator`` argument is None."""
    return _generator


def get_rng_state() -> dict:
    """A deep copy of the default generator's ``bit_generator.state`` dict (store it to resume)."""
    return copy.deepcopy(_generator.bit_generator.state)


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state`; the sequence continues from there.

    The dict must come from the same kind of bit generator (PCG64); it is copied, so later
    changes to ``state`` do not affect the generator.
    """
    if not isinstance(state, dict):
        raise TypeError(f"set_rng_state expects the dict returned by get_rng_state(), got {type(state).__name__}")
    kind = type(_generator.bit_generator).__name__
    if state.get("bit_generator") != kind:
        raise ValueError(
            f"set_rng_state: state is for bit generator {state.get('bit_generator')!r}, "
            f"the default generator is {kind!r}"
        )
    _generator.bit_generator.state = copy.deepcopy(state)
