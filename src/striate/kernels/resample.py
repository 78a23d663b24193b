"""Resampling: the lecture's downsampling (keep every S-th sample) and zero-insertion upsampling.

Downsampling by S drops S-1 of every S rows/columns; upsampling by S inserts S-1 zeros between
neighbouring samples.  Each is the other's backward: the gradient of a downsample scatters dY back
to the kept positions (zeros elsewhere, i.e. an upsample), and the gradient of an upsample keeps
only the positions that held real samples (a downsample).

These act on the trailing ``len(factor)`` axes of any array, so the same code serves 1-D (N, C, L)
and 2-D (N, C, H, W) maps.

The second half is PyTorch's ``interpolate`` ('nearest', 'nearest-exact', 'linear', 'bilinear',
'trilinear', 'bicubic', 'area') as separable per-axis matrices and gathers; the index rules are
spelled out above :data:`INTERPOLATE_MODES`.
"""

from __future__ import annotations

import numpy as np

from ..backend import device_of, get_array_module, to_device
from .shapes import ShapeError, fmt_shape

__all__ = [
    "downsample_forward", "downsample_backward", "upsample_zeros_forward", "upsample_zeros_backward",
    "INTERPOLATE_MODES", "source_scale", "source_coordinate", "nearest_indices", "linear_matrix",
    "cubic_matrix", "area_matrix", "interpolate_output_size", "interpolate_forward", "interpolate_backward",
]


def _steps(x: np.ndarray, factor: tuple[int, ...]) -> tuple[slice, ...]:
    return (slice(None),) * (x.ndim - len(factor)) + tuple(slice(None, None, f) for f in factor)


def downsample_forward(x: np.ndarray, factor: tuple[int, ...]):
    """y[..., i, j] = x[..., i*S, j*S]: keep every S-th sample of each trailing axis."""
    y = get_array_module(x).ascontiguousarray(x[_steps(x, factor)])
    return y, (x.shape, factor)


def downsample_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx is dy placed at the kept positions, zero at the dropped ones."""
    shape, factor = cache
    dx = get_array_module(dy).zeros(shape, dtype=dy.dtype)
    dx[_steps(dx, factor)] = dy
    return dx


def upsample_zeros_forward(x: np.ndarray, factor: tuple[int, ...]):
    """Insert S-1 zeros between neighbours: length L becomes (L-1)*S + 1 on each trailing axis."""
    lead = x.shape[: x.ndim - len(factor)]
    tail = x.shape[x.ndim - len(factor):]
    y = get_array_module(x).zeros(lead + tuple((n - 1) * f + 1 if n > 0 else 0 for n, f in zip(tail, factor)),
                                  dtype=x.dtype)
    y[_steps(y, factor)] = x
    return y, factor


def upsample_zeros_backward(dy: np.ndarray, cache) -> np.ndarray:
    """Only the positions that held real samples received anything: keep every S-th gradient."""
    factor = cache
    return get_array_module(dy).ascontiguousarray(dy[_steps(dy, factor)])


# ============================================================================ interpolation
#
# Every mode below is *separable*: the output is the input contracted, one spatial axis at a
# time, with a small per-axis matrix A (L_out, L_in).  For a 2-D map
#
#     Y = A_h X A_w^T,          dX = A_h^T dY A_w
#
# so forward and backward are BLAS calls and the backward is the forward with transposed
# matrices.  Nearest modes select one source sample per output sample: the forward is a gather
# along each axis and the backward a segment sum (the source indices are non-decreasing, so the
# outputs copied from one source sample are a contiguous run).
#
# Index rules (PyTorch's, 0-based).  With in/out the input/output lengths of one axis and ``s``
# the user's scale factor for that axis (None when an explicit size was given):
#
#     scale = (in - 1) / (out - 1)       align_corners=True (0 when out == 1)
#     scale = 1 / s                      align_corners=False and s given
#     scale = in / out                   align_corners=False and size given
#
#     src(i) = scale * i                 align_corners=True
#     src(i) = scale * (i + 0.5) - 0.5   align_corners=False (clamped at 0, except for cubic)
#
# nearest:        j(i) = min(floor(scale * i), in - 1)
# nearest-exact:  j(i) = min(floor(scale * (i + 0.5)), in - 1)
# linear:         j0 = min(floor(src), in - 1), j1 = min(j0 + 1, in - 1), lam = clip(src - j0, 0, 1),
#                 y = (1 - lam) x[j0] + lam x[j1]; when out == in (and not align_corners) the
#                 axis is copied unchanged, whatever the scale factor.
# cubic (Keys, a = -0.75): j = floor(src), t = src - j, taps x[clamp(j - 1 + k)] for k = 0..3 with
#                 weights W(t + 1), W(t), W(1 - t), W(2 - t).
# area:           y[i] = mean of x[floor(i * in / out) : ceil((i + 1) * in / out)]
#
# PyTorch quirks reproduced on purpose: the floor of every source coordinate is taken after
# rounding it to float32 (``floorf``), also for float64 inputs; the nearest modes compute
# their scale in float64 and round the product ``scale * i`` to float32 before the floor,
# except 2-D 'nearest', whose kernel keeps an older float32 rule with special cases for
# out == in and out == 2 in (see :func:`nearest_indices`).
#
# Deliberate deviation: every backward here is the exact adjoint (transpose) of its forward.
# PyTorch's 'nearest' backward for 1-D and 3-D inputs uses the older rule although its forward
# does not, and its 'bicubic' backward copies when the output size equals the input size
# although its forward does not; in those (rare, non-integer scale factor) cases PyTorch's
# gradient is not the gradient of its own forward, and ours is.

INTERPOLATE_MODES = {
    # mode: (allowed input ranks, layout for messages)
    "nearest": ((3, 4, 5), "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"),
    "nearest-exact": ((3, 4, 5), "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"),
    "area": ((3, 4, 5), "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"),
    "linear": ((3,), "(N, C, L)"),
    "bilinear": ((4,), "(N, C, H, W)"),
    "bicubic": ((4,), "(N, C, H, W)"),
    "trilinear": ((5,), "(N, C, D, H, W)"),
}

_CUBIC_A = -0.75


def source_scale(in_size: int, out_size: int, align_corners: bool, scale: float | None, dtype=np.float64):
    """PyTorch's ``area_pixel_compute_scale``: the step in input coordinates per output step.

    Computed in ``dtype`` (the op-math type: float32 for float32 maps) as PyTorch does.
    """
    dt = np.dtype(dtype).type
    if align_corners:
        return dt(in_size - 1) / dt(out_size - 1) if out_size > 1 else dt(0)
    if scale is not None and scale > 0:
        return dt(1.0 / scale)
    return dt(in_size) / dt(out_size)


def source_coordinate(out_size: int, ratio, align_corners: bool, cubic: bool = False) -> np.ndarray:
    """src(i) for i = 0..out-1 (``area_pixel_compute_source_index``), in ``ratio``'s dtype."""
    dt = type(ratio)
    i = np.arange(out_size).astype(dt)
    if align_corners:
        return ratio * i
    src = ratio * (i + dt(0.5)) - dt(0.5)
    return src if cubic else np.maximum(src, dt(0))


def _floorf(src: np.ndarray) -> np.ndarray:
    """floor after rounding to float32, as C's ``floorf`` applied to a double does."""
    return np.floor(src.astype(np.float32)).astype(np.intp)


def nearest_indices(
    in_size: int, out_size: int, scale: float | None, exact: bool = False, legacy: bool = False,
) -> np.ndarray:
    """Source index of every output sample for mode 'nearest' (or 'nearest-exact' when ``exact``).

    ``j(i) = min(floor(r * i), in - 1)`` ('nearest') or ``min(floor(r * (i + 0.5)), in - 1)``
    ('nearest-exact'), with ``r = 1/scale`` when a scale factor was given, else ``in/out``.
    ``r`` and the product are float64, rounded to float32 before the floor (PyTorch's rule).

    ``legacy`` selects PyTorch's older rule, which its 2-D 'nearest' kernel still uses: an axis
    whose length is unchanged is copied (j = i), one whose length doubles takes j = i // 2, and
    otherwise ``r`` and the product are float32.  The two rules differ only for scale factors
    such as 1.1 on a short axis (out == in although the factor is not 1) or by float rounding.
    The result is non-decreasing in ``i``.
    """
    if legacy:
        if out_size == in_size:
            return np.arange(out_size)
        if out_size == 2 * in_size:
            return np.arange(out_size) >> 1
        if scale is not None and scale > 0:
            r32 = np.float32(1.0 / scale)
        else:
            r32 = np.float32(in_size) / np.float32(out_size)
        src32 = np.arange(out_size).astype(np.float32) * r32
        return np.minimum(np.floor(src32).astype(np.intp), in_size - 1)
    r = 1.0 / scale if scale is not None and scale > 0 else in_size / out_size
    i = np.arange(out_size, dtype=np.float64)
    src = (i + 0.5) * r if exact else i * r
    return np.minimum(_floorf(src), in_size - 1)


def linear_matrix(in_size: int, out_size: int, align_corners: bool, scale: float | None, dtype=np.float64) -> np.ndarray:
    """A (out, in) with y = A x the 1-D linear interpolation; two taps per row summing to 1."""
    A = np.zeros((out_size, in_size), dtype=dtype)
    rows = np.arange(out_size)
    if out_size == in_size and not align_corners:
        A[rows, rows] = 1  # PyTorch copies an axis whose length does not change
        return A
    ratio = source_scale(in_size, out_size, align_corners, scale, dtype)
    src = source_coordinate(out_size, ratio, align_corners)
    j0 = np.minimum(_floorf(src), in_size - 1)
    lam = np.clip(src - j0.astype(src.dtype), 0, 1)
    j1 = j0 + (j0 < in_size - 1)
    # each statement writes every row once, so plain fancy assignment cannot lose an update
    A[rows, j0] = 1 - lam
    A[rows, j1] += lam
    return A


def _cubic_weights(t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keys cubic convolution weights of the taps at offsets -1, 0, 1, 2 from floor(src)."""
    a = t.dtype.type(_CUBIC_A)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def cubic_matrix(in_size: int, out_size: int, align_corners: bool, scale: float | None, dtype=np.float64) -> np.ndarray:
    """A (out, in) for bicubic interpolation along one axis (taps clamped to the border)."""
    A = np.zeros((out_size, in_size), dtype=dtype)
    rows = np.arange(out_size)
    ratio = source_scale(in_size, out_size, align_corners, scale, dtype)
    src = source_coordinate(out_size, ratio, align_corners, cubic=True)
    j = np.minimum(_floorf(src), in_size - 1)
    t = np.clip(src - j.astype(src.dtype), 0, 1)
    for k, w in enumerate(_cubic_weights(t)):
        # clamped taps may coincide, so accumulate with add.at (out x 4 updates: tiny)
        np.add.at(A, (rows, np.clip(j - 1 + k, 0, in_size - 1)), w)
    return A


def area_matrix(in_size: int, out_size: int, dtype=np.float64) -> np.ndarray:
    """A (out, in): row i averages x[floor(i*in/out) : ceil((i+1)*in/out)] (adaptive average)."""
    i = np.arange(out_size)
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    cols = np.arange(in_size)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def interpolate_output_size(
    spatial: tuple[int, ...], size=None, scale_factor=None, recompute_scale_factor=None,
) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """Output lengths and the scale factors the kernels see, by PyTorch's rules.

    ``size`` given: out = size, scales None.  ``scale_factor`` given: out = floor(in * s); the
    scales are passed on to the index rules unless ``recompute_scale_factor`` is true (then the
    kernels use in/out as with an explicit size).  Arguments are assumed validated.
    """
    if size is not None:
        return tuple(int(s) for s in size), None
    out = tuple(int(np.floor(float(n) * float(s))) for n, s in zip(spatial, scale_factor))
    if recompute_scale_factor:
        return out, None
    return out, tuple(float(s) for s in scale_factor)


def _contract(x: np.ndarray, A: np.ndarray, axis: int) -> np.ndarray:
    """y[..., o, ...] = sum_i A[o, i] x[..., i, ...] along ``axis``: one GEMM (or a batch of them)."""
    shape = x.shape
    P = int(np.prod(shape[:axis], dtype=np.int64))
    L = shape[axis]
    Q = int(np.prod(shape[axis + 1:], dtype=np.int64))
    if Q == 1:
        y = x.reshape(P, L) @ A.T
    else:
        y = get_array_module(x, A).matmul(A, x.reshape(P, L, Q))
    return y.reshape(shape[:axis] + (A.shape[0],) + shape[axis + 1:])


def _axis_order(in_sizes, out_sizes):
    """Contract the axes that shrink the data most first (fewer flops for the later GEMMs)."""
    return sorted(range(len(in_sizes)), key=lambda k: out_sizes[k] / max(in_sizes[k], 1))


def _segment_sum(dy: np.ndarray, idx: np.ndarray, in_size: int, axis: int) -> np.ndarray:
    """dx[..., j, ...] = sum of dy[..., i, ...] over the i with idx[i] == j (idx non-decreasing).

    The outputs copied from one source form a run ``starts[j] .. starts[j] + len[j] - 1``; the
    sum adds the r-th member of every run for r = 0, 1, ... (a loop over the run length, like
    a loop over kernel taps), so each step is one vectorised gather-and-add.
    """
    n_out = len(idx)
    xp = get_array_module(dy)
    dev = (lambda a: a) if xp is np else (lambda a: to_device(a, device_of(dy)))  # host index -> dy's device
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    lengths = np.diff(np.r_[starts, n_out])
    targets = idx[starts]
    full = len(starts) == in_size  # every source sample was used at least once
    pre = (slice(None),) * axis
    if full and np.all(lengths == lengths[0]):
        # integer up-scaling: output i*k + r comes from input i; view the axis as (in, k)
        k = int(lengths[0])
        runs = dy.reshape(dy.shape[:axis] + (in_size, k) + dy.shape[axis + 1:])
        acc = runs[pre + (slice(None), 0)].copy()
        for r in range(1, k):
            acc += runs[pre + (slice(None), r)]
        return acc
    acc = xp.take(dy, dev(starts), axis=axis)
    for r in range(1, int(lengths.max())):
        longer = np.flatnonzero(lengths > r)
        if len(longer) == len(starts):
            acc += xp.take(dy, dev(starts + r), axis=axis)
        else:
            acc[pre + (dev(longer),)] += xp.take(dy, dev(starts[longer] + r), axis=axis)
    if full:
        return acc
    dx = xp.zeros(dy.shape[:axis] + (in_size,) + dy.shape[axis + 1:], dtype=dy.dtype)
    dx[pre + (dev(targets),)] = acc
    return dx


def interpolate_forward(
    x: np.ndarray, out_size: tuple[int, ...], *, mode: str = "nearest",
    align_corners: bool = False, scales: tuple[float, ...] | None = None,
):
    """x (N, C, *S) -> y (N, C, *S_out) resampled along every spatial axis.

    ``mode`` in 'nearest', 'nearest-exact' (gathers) or 'linear', 'bilinear', 'trilinear',
    'bicubic', 'area' (separable matrices, see the module comment for the formulas).
    ``out_size`` (one length per spatial axis, >= 1) and ``scales`` (per-axis scale factors or
    None) come from :func:`interpolate_output_size`.  Returns ``(y, cache)``.
    """
    nsp = len(out_size)
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"interpolate: unknown mode {mode!r}")
    if nsp > x.ndim - 2 or any(int(o) < 1 for o in out_size) or any(n < 1 for n in x.shape[x.ndim - nsp:]):
        raise ShapeError(
            f"interpolate: cannot resize input {fmt_shape(x.shape)} to spatial size {fmt_shape(out_size)}")
    axes = tuple(range(x.ndim - nsp, x.ndim))
    in_size = x.shape[x.ndim - nsp:]
    sc = scales if scales is not None else (None,) * nsp
    if mode in ("nearest", "nearest-exact"):
        exact, legacy = mode == "nearest-exact", mode == "nearest" and nsp == 2
        idx = [nearest_indices(n, o, s, exact=exact, legacy=legacy) for n, o, s in zip(in_size, out_size, sc)]
        y = x
        xp = get_array_module(x)
        for k in _axis_order(in_size, out_size):
            if not (len(idx[k]) == in_size[k] and np.array_equal(idx[k], np.arange(in_size[k]))):
                y = xp.take(y, to_device(idx[k], device_of(x)), axis=axes[k])
        y = xp.ascontiguousarray(y)
        return (y if y is not x else x.copy()), ("gather", x.shape, axes, idx)
    # coordinates and weights in PyTorch's op-math type: float64 for float64 maps, else float32
    dt = np.float64 if x.dtype == np.float64 else np.float32
    if mode in ("linear", "bilinear", "trilinear"):
        mats = [linear_matrix(n, o, align_corners, s, dt) for n, o, s in zip(in_size, out_size, sc)]
    elif mode == "bicubic":
        mats = [cubic_matrix(n, o, align_corners, s, dt) for n, o, s in zip(in_size, out_size, sc)]
    else:  # area
        mats = [area_matrix(n, o, dt) for n, o in zip(in_size, out_size)]
    # an identity matrix (an axis copied unchanged) is skipped: None in the cache
    mats = [None if A.shape[0] == A.shape[1] and np.array_equal(A, np.eye(len(A)))
            else to_device(A.astype(x.dtype, copy=False), device_of(x)) for A in mats]
    y = x
    for k in _axis_order(in_size, out_size):
        if mats[k] is not None:
            y = _contract(y, mats[k], axes[k])
    y = get_array_module(y).ascontiguousarray(y)
    return (y if y is not x else x.copy()), ("matrix", x.shape, axes, mats)


def interpolate_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx = dy contracted with the transposed per-axis matrices (or segment sums for nearest)."""
    kind, in_shape, axes, ops = cache
    dx = dy
    if kind == "gather":
        for k in range(len(axes)):
            n = in_shape[axes[k]]
            if not (len(ops[k]) == n and np.array_equal(ops[k], np.arange(n))):
                dx = _segment_sum(dx, ops[k], n, axes[k])
    else:
        for k in range(len(axes)):
            if ops[k] is not None:
                dx = _contract(dx, ops[k].T, axes[k])
    dx = get_array_module(dx).ascontiguousarray(dx)
    return dx if dx is not dy else dy.copy()
