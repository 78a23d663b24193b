"""Argument normalisation, output-size arithmetic and shape errors shared by every kernel.

All the index arithmetic of a sliding window lives here, so that the fast kernels, the naive
references and the error messages agree on one formula.  For an input of length ``L`` padded by
``p_lo`` before and ``p_hi`` after, a window of ``K`` taps spaced ``d`` apart and a stride ``S``::

    K_eff = d * (K - 1) + 1                       # the span the dilated window covers
    L_out = floor((L + p_lo + p_hi - K_eff) / S) + 1

Every function raises :class:`ShapeError` (a ``ValueError``) with a message that names the shapes
involved, *before* any array is touched.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "ShapeError",
    "as_tuple",
    "as_padding",
    "effective_kernel",
    "conv_out_size",
    "pool_out_size",
    "check_rank",
    "check_float",
    "check_same_dtype",
    "fmt_shape",
    "DimError",
    "normalize_dim",
]


class ShapeError(ValueError):
    """Raised when the shapes or size arguments handed to an op cannot work together."""


def fmt_shape(shape: Iterable[int]) -> str:
    """``(2, 3, 8, 8)`` written the way the messages quote shapes."""
    return str(tuple(int(s) for s in shape))


def as_tuple(value, n: int, name: str, *, minimum: int | None = None) -> tuple[int, ...]:
    """Turn an int or a length-``n`` sequence of ints into an ``n``-tuple, validating it.

    ``minimum`` (if given) is the smallest allowed value, e.g. 1 for strides and kernels, 0 for
    padding.  Booleans and floats are refused: ``stride=1.5`` is a mistake, not a request.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if isinstance(value, (int, np.integer)):
        out = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 1 and n > 1:
            value = tuple(value) * n
        if len(value) != n or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
        ):
            raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
        out = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if minimum is not None and any(v < minimum for v in out):
        if minimum == 1:
            raise ShapeError(f"{name} must be positive, got {value!r}")
        raise ShapeError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def effective_kernel(kernel: int, dilation: int) -> int:
    """Span of a kernel of ``kernel`` taps spaced ``dilation`` apart."""
    return dilation * (kernel - 1) + 1


def as_padding(
    padding, n: int, *, kernel: Sequence[int], dilation: Sequence[int], stride: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """Normalise a convolution's ``padding`` argument into ``n`` (before, after) pairs.

    Accepted forms:

    * an int ``p``: ``p`` on both sides of every spatial axis;
    * a tuple of ``n`` ints: symmetric per axis, PyTorch's form;
    * a tuple of ``n`` (before, after) pairs: asymmetric, e.g. ``((0, 1), (2, 0))`` for 2-D;
    * ``'valid'``: no padding;
    * ``'same'``: output size equals input size (stride must be 1); when the total padding
      ``d*(K-1)`` is odd the extra element goes after, exactly as PyTorch does.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ShapeError(f"padding='same' is not supported for strided convolutions (stride={tuple(stride)})")
            pairs = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
    if (
        isinstance(padding, Sequence)
        and len(padding) == n
        and all(isinstance(p, Sequence) and not isinstance(p, str) for p in padding)
    ):
        pairs = []
        for p in padding:
            lo, hi = as_tuple(tuple(p), 2, "padding", minimum=None)
            pairs.append((lo, hi))
        out = tuple(pairs)
    else:
        out = tuple((p, p) for p in as_tuple(padding, n, "padding"))
    if any(v < 0 for pair in out for v in pair):
        raise ShapeError(f"padding must be non-negative, got {padding!r}")
    return out


def conv_out_size(
    size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int,
) -> int:
    """Output length of a sliding window (no ceil mode); may be <= 0 when the window does not fit."""
    return (size + pad[0] + pad[1] - effective_kernel(kernel, dilation)) // stride + 1


def pool_out_size(
    size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool,
) -> int:
    """PyTorch's pooling output size, including the ceil-mode rule.

    With ``ceil_mode`` the last window may hang over the padded end, but it must *start* inside
    the input or the left padding: a window starting in the right padding is dropped.
    """
    span = size + 2 * pad - effective_kernel(kernel, dilation)
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


def check_rank(x: np.ndarray, ranks: int | tuple[int, ...], name: str, layout: str) -> None:
    """Raise if ``x.ndim`` is not one of ``ranks``; ``layout`` documents the expected axes."""
    ranks = (ranks,) if isinstance(ranks, int) else ranks
    if x.ndim not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(f"{name} must be {want} {layout}, got shape {fmt_shape(x.shape)}")


def check_float(x: np.ndarray, name: str) -> None:
    """Raise unless ``x`` holds floating-point numbers."""
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")


def check_same_dtype(**arrays: np.ndarray | None) -> None:
    """Raise if the given arrays do not all share one dtype (never cast silently)."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    first_name, first = items[0]
    for name, arr in items[1:]:
        if arr.dtype != first.dtype:
            raise TypeError(
                f"dtype mismatch: {first_name} is {first.dtype} {fmt_shape(first.shape)} but "
                f"{name} is {arr.dtype} {fmt_shape(arr.shape)}; convert one explicitly"
            )


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def prod(values: Iterable[int]) -> int:
    return math.prod(int(v) for v in values)


class DimError(ShapeError, IndexError):
    """``dim`` does not name an axis of the input (an IndexError as in PyTorch, and a ShapeError)."""


def normalize_dim(dim, shape, op: str) -> int:
    """``dim`` in ``[-n, n)`` (n = ndim, or 1 for a 0-d input) as a non-negative axis."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    n = max(len(shape), 1)
    if not -n <= dim < n:
        raise DimError(
            f"{op}: dim {dim} is out of range for an input of shape {fmt_shape(shape)} "
            f"(expected dim in [{-n}, {n - 1}])"
        )
    return int(dim) % n
