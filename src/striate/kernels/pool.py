"""Pooling: max, average, adaptive average/max and max-unpooling, forward and backward.

Every kernel works on the trailing ``nd`` spatial axes of an array ``(*lead, *spatial)``: the
leading axes (``(N, C)`` or ``(C,)``) are independent maps that are never mixed, so one code path
serves 1-D ``(N, C, L)`` and 2-D ``(N, C, H, W)`` pooling, batched or not.

Window geometry (per spatial axis, 0-based).  With input length ``L``, kernel ``K``, stride
``S``, padding ``P`` and dilation ``d``, output position ``i`` reads the taps::

    p(i, k) = i * S - P + k * d,        k = 0 .. K - 1

and the number of outputs is :func:`~striate.kernels.shapes.pool_out_size` (PyTorch's rule,
including ``ceil_mode``, where the last window may hang past the padded end).

The fast paths never loop over batch, channel or pixel indices.  They loop over the ``K**nd``
kernel offsets ``k``: for a fixed offset the taps of all windows form one strided view of the
(padded) input, so a window reduction becomes ``K**nd`` whole-array NumPy operations.

* max:      ``y = max_k view_k``; ``arg`` keeps, per output, the *offset* ``k`` of the first
            maximum (a ``uint8`` when ``K**nd <= 256``); backward adds ``(arg == k) * dy`` into
            ``view_k`` of a zero gradient, so windows that overlap accumulate (when windows tile
            the input without overlap, as 2x2 with stride 2 does, each offset owns its block and
            writes it directly).  The input is first split into its stride phases
            (:class:`_Phases`) so that each view is a contiguous block rather than a strided
            one, which makes every pass several times faster -- except when the windows tile
            the input (kernel == stride, no padding or dilation: 2x2 with stride 2), where the
            taps are read straight from strided views of the input and the gradient is written
            straight into strided views of dx, with no split or merge copy at all.  The passes
            run over chunks of the leading axis on every core (``kernels/parallel.py``).
* average:  the window sum is separable, ``sum_{kh,kw} = sum_kh sum_kw``, so it costs
            ``K_h + K_w`` strided adds; backward spreads ``dy / divisor`` back the same way.
* adaptive: window ``i`` covers ``[floor(i*L/Lo), ceil((i+1)*L/Lo))``; averaging is the linear
            map ``A (Lo, L)`` per axis (``A[i, j] = 1/len_i`` inside the window), applied by GEMM,
            backward by ``A^T``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..backend import device_of, get_array_module, to_device
from . import parallel, workspace
from .shapes import ShapeError, check_float, effective_kernel, fmt_shape, pool_out_size
from .workspace import row_chunks

__all__ = [
    "PoolGeometry",
    "pool_geometry",
    "max_pool_forward",
    "max_pool_backward",
    "max_pool_indices",
    "max_pool1d_forward",
    "max_pool2d_forward",
    "avg_pool_forward",
    "avg_pool_backward",
    "avg_pool1d_forward",
    "avg_pool2d_forward",
    "adaptive_windows",
    "adaptive_output_size",
    "adaptive_avg_pool_forward",
    "adaptive_avg_pool_backward",
    "adaptive_max_pool_forward",
    "adaptive_max_pool_backward",
    "adaptive_max_pool_indices",
    "unpool_output_size",
    "max_unpool_forward",
    "max_unpool_backward",
]

_AXES = {1: "(L)", 2: "(H, W)", 3: "(D, H, W)"}


# --------------------------------------------------------------------------- argument handling
def _ints(value, nd: int, name: str, op: str, shape) -> tuple[int, ...]:
    """An int or a sequence of ``nd`` ints (a 1-sequence repeats) as an ``nd``-tuple."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be an int or a tuple of {nd} ints, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    if isinstance(value, Sequence) and not isinstance(value, str):
        vals = tuple(value)
        if len(vals) == 1:
            vals = vals * nd
        if len(vals) == nd and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
            return tuple(int(v) for v in vals)
    raise TypeError(
        f"{op}: {name} must be an int or a tuple of {nd} ints, got {value!r} (input {fmt_shape(shape)})"
    )


def _check_input(shape, nd: int, op: str) -> None:
    """Input must be ``(C, *spatial)`` or ``(N, C, *spatial)``; only the batch may be empty."""
    if len(shape) not in (nd + 1, nd + 2):
        raise ShapeError(
            f"{op}: expected a {nd + 1}-D (C, {_AXES[nd][1:-1]}) or {nd + 2}-D (N, C, {_AXES[nd][1:-1]}) "
            f"input, got shape {fmt_shape(shape)}"
        )
    if any(s == 0 for s in shape[-nd - 1:]):
        raise ShapeError(
            f"{op}: input {fmt_shape(shape)} has an empty channel or spatial axis; only the batch may be empty"
        )


@dataclass(frozen=True)
class PoolGeometry:
    """Validated sliding-window geometry over the trailing ``nd`` axes of ``shape``.

    ``pad`` is the symmetric padding of the arguments; ``pad_hi`` is how much must really be
    appended after each axis so that every strided view ``offset*d : offset*d + S*(out-1) + 1``
    lies inside the padded array (it exceeds ``pad`` when a ceil-mode window hangs past the end,
    and is smaller when the last windows stop short of the padding).
    """

    shape: tuple[int, ...]
    nd: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool
    out: tuple[int, ...]
    pad_hi: tuple[int, ...]

    @property
    def lead(self) -> tuple[int, ...]:
        return self.shape[: len(self.shape) - self.nd]

    @property
    def size(self) -> tuple[int, ...]:
        return self.shape[len(self.shape) - self.nd:]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.lead + self.out

    @property
    def padded(self) -> bool:
        return any(self.pad) or any(self.pad_hi)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return self.lead + tuple(n + lo + hi for n, lo, hi in zip(self.size, self.pad, self.pad_hi))

    def interior(self) -> tuple[slice, ...]:
        """Where the unpadded input sits inside the padded array."""
        return (Ellipsis,) + tuple(slice(lo, lo + n) for lo, n in zip(self.pad, self.size))

    def axis_view(self, a: np.ndarray, axis: int, offset: int) -> np.ndarray:
        """Along spatial ``axis`` only: the taps at ``offset`` of every window (other axes whole)."""
        index = [slice(None)] * a.ndim
        ax = a.ndim - self.nd + axis
        d, s, n = self.dilation[axis], self.stride[axis], self.out[axis]
        index[ax] = slice(offset * d, offset * d + s * (n - 1) + 1, s)
        return a[tuple(index)]


def pool_geometry(
    shape, nd: int, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
    *, op: str,
) -> PoolGeometry:
    """Validate pooling arguments against an input ``shape`` and work out the output size.

    ``stride=None`` (or an empty sequence) means ``stride = kernel_size``, as in PyTorch.  The
    padding must not exceed half the kernel, ``P <= K // 2`` (PyTorch's bound, which also keeps a
    real element in every window, dilated or not).
    Raises :class:`ShapeError` naming the input shape before anything is computed.
    """
    shape = tuple(int(s) for s in shape)
    _check_input(shape, nd, op)
    kernel = _ints(kernel_size, nd, "kernel_size", op, shape)
    if stride is None or (isinstance(stride, Sequence) and not isinstance(stride, str) and len(stride) == 0):
        stride_t = kernel
    else:
        stride_t = _ints(stride, nd, "stride", op, shape)
    pad = _ints(padding, nd, "padding", op, shape)
    dil = _ints(dilation, nd, "dilation", op, shape)
    if any(k <= 0 for k in kernel):
        raise ShapeError(f"{op}: kernel_size must be positive, got {kernel} for input {fmt_shape(shape)}")
    if any(s <= 0 for s in stride_t):
        raise ShapeError(f"{op}: stride must be positive, got {stride_t} for input {fmt_shape(shape)}")
    if any(d <= 0 for d in dil):
        raise ShapeError(f"{op}: dilation must be positive, got {dil} for input {fmt_shape(shape)}")
    if any(p < 0 for p in pad):
        raise ShapeError(f"{op}: padding must be non-negative, got {pad} for input {fmt_shape(shape)}")
    for p, k, d in zip(pad, kernel, dil):
        if p > effective_kernel(k, d) // 2:
            raise ShapeError(
                f"{op}: pad should be at most half of effective kernel size, but got pad={p}, "
                f"kernel_size={k} and dilation={d} (kernel {kernel}, input {fmt_shape(shape)})"
            )
        if p > k // 2:  # PyTorch bounds the padding by the undilated kernel too
            raise ShapeError(
                f"{op}: pad should be at most half of kernel size (PyTorch does not let dilation widen "
                f"the bound), but got pad={p}, kernel_size={k} and dilation={d} "
                f"(kernel {kernel}, input {fmt_shape(shape)})"
            )
    size = shape[len(shape) - nd:]
    out = tuple(
        pool_out_size(n, k, s, p, d, bool(ceil_mode)) for n, k, s, p, d in zip(size, kernel, stride_t, pad, dil)
    )
    if any(o < 1 for o in out):
        raise ShapeError(
            f"{op}: input {fmt_shape(shape)} with kernel_size={kernel}, stride={stride_t}, padding={pad}, "
            f"dilation={dil} gives output size {fmt_shape(out)}, which is too small"
        )
    # the last view at offset K-1 ends at (out-1)*S + (K-1)*d; beyond the input (shifted by pad)
    # the array must be extended by that much (ceil-mode overhang included)
    pad_hi = tuple(
        max(0, (o - 1) * s + effective_kernel(k, d) - p - n)
        for o, s, k, d, p, n in zip(out, stride_t, kernel, dil, pad, size)
    )
    return PoolGeometry(shape, nd, kernel, stride_t, pad, dil, bool(ceil_mode), out, pad_hi)


def _pad(x: np.ndarray, g: PoolGeometry, fill: float) -> np.ndarray:
    """``x`` surrounded by ``fill`` as the geometry needs (``x`` itself when no padding is needed)."""
    if not g.padded:
        return x
    xpad = get_array_module(x).full(g.padded_shape, fill, dtype=x.dtype)
    xpad[g.interior()] = x
    return xpad


def _crop(dxp: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """Drop the gradient that fell on padding (it belongs to no input element)."""
    return get_array_module(dxp).ascontiguousarray(dxp[g.interior()]) if g.padded else dxp


def _offset_dtype(count: int):
    """Smallest unsigned type that numbers ``count`` kernel offsets (uint8 for up to 256)."""
    return np.min_scalar_type(max(count - 1, 0))


# --------------------------------------------------------------------------------- max pooling
class _Phases:
    """The (padded) input split into stride phases, so every kernel offset reads a contiguous block.

    Along an axis of stride ``S`` the padded positions ``a, a+S, a+2S, ...`` form phase ``a``.
    The tap at offset ``k`` of window ``i`` sits at padded position ``i*S + k*d``, i.e. in phase
    ``(k*d) % S`` at index ``i + (k*d) // S``: the taps of all windows at one offset are the
    slice ``[q, q + out)`` of one phase array, contiguous along the last axis (unlike the strided
    view of the padded input, which makes every elementwise pass several times slower).
    Building the phases is one copy of the input; with stride 1 and no padding it is the input.
    Only the phases some offset reads are built.
    """

    def __init__(self, g: PoolGeometry, dtype, fill: float):
        self.g = g
        plans = []
        for n, k, s, d, lo, hi in zip(g.size, g.kernel, g.stride, g.dilation, g.pad, g.pad_hi):
            total = lo + n + hi
            per = {}
            for a in sorted({(t * d) % s for t in range(k)}):
                length = -(-(total - a) // s)  # len(range(a, total, s))
                j0 = max(0, -(-(lo - a) // s))  # first phase index on a real element
                j1 = min(length, -(-(lo + n - a) // s))  # one past the last
                if j1 > j0:
                    first = a + j0 * s - lo
                    per[a] = (length, slice(j0, j1), slice(first, first + (j1 - j0 - 1) * s + 1, s))
                else:  # this phase only ever reads padding
                    per[a] = (length, slice(0, 0), None)
            plans.append(per)
        self.keys = list(itertools.product(*(sorted(per) for per in plans)))
        self.plans = plans
        self.dtype, self.fill = dtype, fill
        # offset number -> (phase key, start index per axis), in row-major offset order
        self.offsets = [
            (tuple((t * d) % s for t, d, s in zip(off, g.dilation, g.stride)),
             tuple((t * d) // s for t, d, s in zip(off, g.dilation, g.stride)))
            for off in itertools.product(*(range(k) for k in g.kernel))
        ]
        # every phase read by exactly one offset, whole (non-overlapping windows tiling the
        # input, e.g. 2x2 with stride 2): the backward can write phases instead of adding
        keys = [key for key, _ in self.offsets]
        self.disjoint = (
            len(set(keys)) == len(keys) == len(self.keys)
            and all(q == (0,) * g.nd for _, q in self.offsets)
            and all(self._parts(key)[0] == g.out for key in self.keys)
        )
        # ... and covering every input element: dX needs no zero fill either
        self.covers = self.disjoint and not g.padded and all(
            n == o * s and len(per) == s for n, o, s, per in zip(g.size, g.out, g.stride, plans))

    def _parts(self, key):
        lengths, dest, src = [], [], []
        for per, a in zip(self.plans, key):
            length, d, sl = per[a]
            lengths.append(length)
            dest.append(d)
            src.append(sl)
        return tuple(lengths), dest, src

    def split(self, x: np.ndarray) -> dict:
        """Phase arrays of ``x`` (padding filled with ``fill``)."""
        lead = x.shape[: x.ndim - self.g.nd]
        out = {}
        for key in self.keys:
            lengths, dest, src = self._parts(key)
            if all(d.start == 0 and d.stop == n for d, n in zip(dest, lengths)):
                part = x[(Ellipsis, *src)]  # no padding in this phase
                out[key] = part if all(s == 1 for s in self.g.stride) else np.ascontiguousarray(part)
                continue
            arr = np.full(lead + lengths, self.fill, dtype=self.dtype)
            if all(sl is not None for sl in src):
                arr[(Ellipsis, *dest)] = x[(Ellipsis, *src)]
            out[key] = arr
        return out

    def zeros(self, lead) -> dict:
        return {key: np.zeros(lead + self._parts(key)[0], dtype=self.dtype) for key in self.keys}

    def merge(self, parts: dict, shape, dx=None, rows=slice(None)) -> np.ndarray:
        """Inverse of :meth:`split` for gradients: phase values back at their input positions
        (each input element lies in exactly one phase; what fell on padding is dropped).
        With ``dx`` given, only its leading-axis ``rows`` are written (``dx`` must hold zeros
        where no phase lands)."""
        if dx is None:
            dx = np.zeros(shape, dtype=self.dtype)
        for key, arr in parts.items():
            _, dest, src = self._parts(key)
            if all(sl is not None for sl in src):
                dx[rows][(Ellipsis, *src)] = arr[rows][(Ellipsis, *dest)]
        return dx

    def view(self, parts: dict, k: int) -> np.ndarray:
        """Taps at offset number ``k`` of every window: (*lead, *out)."""
        key, q = self.offsets[k]
        return parts[key][(Ellipsis, *(slice(b, b + o) for b, o in zip(q, self.g.out)))]


def max_pool_forward(
    x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
    *, nd: int = 2, need_argmax: bool = True, op: str | None = None,
):
    """Max pooling over the trailing ``nd`` axes.

    ``x (*lead, *spatial) -> y (*lead, *out)`` with ``y[i] = max_k x[p(i, k)]`` (padding counts
    as ``-inf``).  The cache keeps ``arg``, the kernel offset of each window's first maximum in
    row-major offset order (PyTorch's tie rule), as compact unsigned integers; pass it to
    :func:`max_pool_indices` for PyTorch's flat indices and to :func:`max_pool_backward`.
    With ``need_argmax=False`` (inference, no indices) only the maximum is computed.
    """
    op = op or f"max_pool{nd}d"
    g = pool_geometry(x.shape, nd, kernel_size, stride, padding, dilation, ceil_mode, op=op)
    check_float(x, "input")
    if get_array_module(x) is not np:
        return _max_pool_device(x, g, need_argmax)
    if _tiles(g) and x.size:
        tiled = _max_pool_tiled_forward(x, g, need_argmax)
        if tiled is not None:
            return tiled
    ph = _Phases(g, x.dtype, -np.inf)
    parts = ph.split(x)
    count = len(ph.offsets)
    y = workspace.output(g.out_shape, x.dtype)
    if y.size == 0:
        return y, (g, ph, None if not need_argmax else np.zeros(y.shape, _offset_dtype(count)))
    chunks = row_chunks(y.shape[0], y[:1].nbytes, 4 << 20)  # the mask and arg passes are 1 byte wide
    if not need_argmax:
        def plain(sl):
            ys = y[sl]
            np.copyto(ys, ph.view(parts, 0)[sl])
            for k in range(1, count):
                np.maximum(ys, ph.view(parts, k)[sl], out=ys)

        parallel.run_chunks(plain, chunks)
        return y, (g, ph, None)
    arg = np.empty(y.shape, dtype=_offset_dtype(count))
    first_tap = _first_tap(g) if any(g.pad) else None
    # PyTorch replaces the running max when ``v > max or isnan(v)`` (np.maximum propagates NaN
    # alike); the NaN test costs a pass, so it is only made when the input holds a NaN at all
    has_nan = x.size > 0 and bool(np.isnan(np.min(x)))

    def work(sl):
        ys, args = y[sl], arg[sl]
        first = 1
        if first_tap is not None:
            # PyTorch starts each window at its first tap outside the left padding, with the
            # running max at -inf, and keeps that tap's index when no real element beats -inf (a
            # window of -inf values, or one that holds only padding): reproduce exactly that
            ys.fill(-np.inf)
            args[...] = first_tap
            first = 0
        else:
            np.copyto(ys, ph.view(parts, 0)[sl])
            args.fill(0)
        mask = workspace.buffer("pool_mask", ys.shape, bool)
        step = workspace.buffer("pool_step", ys.shape, args.dtype)
        for k in range(first, count):
            v = ph.view(parts, k)[sl]
            np.greater(v, ys, out=mask)
            if has_nan:
                mask |= np.isnan(v)
            # offsets only grow, and a window's first maximum is never before its first tap, so
            # "arg = k where mask" is arg = max(arg, mask * k): two cheap integer passes
            np.multiply(mask, args.dtype.type(k), out=step)
            np.maximum(args, step, out=args)
            np.maximum(ys, v, out=ys)

    parallel.run_chunks(work, chunks)
    return y, (g, ph, arg)


def _tap_view(a, g: PoolGeometry, off) -> np.ndarray:
    """The taps at kernel offset ``off`` (one per axis) of every window of the padded ``a``:
    a strided view (*lead, *out)."""
    index = (Ellipsis,) + tuple(
        slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in zip(off, g.dilation, g.stride, g.out))
    return a[index]


def _max_pool_device(x, g: PoolGeometry, need_argmax: bool):
    """Max pooling for device (CuPy) arrays: the whole batch at once, one vectorised pass per
    kernel offset over strided views of the ``-inf``-padded input; the same arithmetic (and
    tie, NaN and padding rules) as the NumPy path.  The cache is ``(g, None, arg)``."""
    xp = get_array_module(x)
    s = _pad(x, g, -np.inf)
    offsets = list(itertools.product(*(range(k) for k in g.kernel)))
    count = len(offsets)
    if math.prod(g.out_shape) == 0:
        y = xp.empty(g.out_shape, dtype=x.dtype)
        return y, (g, None, None if not need_argmax else xp.zeros(y.shape, _offset_dtype(count)))
    if not need_argmax:
        y = _tap_view(s, g, offsets[0]).copy()
        for off in offsets[1:]:
            xp.maximum(y, _tap_view(s, g, off), out=y)
        return y, (g, None, None)
    adt = _offset_dtype(count)
    if any(g.pad):  # as the NumPy path: start at -inf on each window's first real tap
        y = xp.full(g.out_shape, -np.inf, dtype=x.dtype)
        arg = xp.empty(g.out_shape, dtype=adt)
        arg[...] = to_device(_first_tap(g).astype(adt), device_of(x))
        first = 0
    else:
        y = _tap_view(s, g, offsets[0]).copy()
        arg = xp.zeros(g.out_shape, dtype=adt)
        first = 1
    has_nan = x.size > 0 and bool(xp.isnan(xp.min(x)))
    for k in range(first, count):
        v = _tap_view(s, g, offsets[k])
        mask = v > y
        if has_nan:
            mask |= xp.isnan(v)
        arg = xp.maximum(arg, mask.astype(adt) * adt.type(k))
        xp.maximum(y, v, out=y)
    return y, (g, None, arg)


def _max_pool_device_backward(dy, g: PoolGeometry, arg):
    """dX of :func:`_max_pool_device`: per kernel offset, ``(arg == k) * dy`` added into the
    strided view of the padded gradient that offset read; then the padding is cropped."""
    xp = get_array_module(dy, arg)
    dxp = xp.zeros(g.padded_shape, dtype=dy.dtype)
    for k, off in enumerate(itertools.product(*(range(n) for n in g.kernel))):
        view = _tap_view(dxp, g, off)
        view += dy * (arg == k)
    return _crop(dxp, g)


# ---- windows that tile the input (kernel == stride, no padding, no dilation: 2x2 stride 2)


def _tiles(g: PoolGeometry) -> bool:
    """True when the windows tile the input without overlap or padding, as 2x2 with stride 2
    does: every input element belongs to at most one window, and the taps of offset ``k`` are a
    plain strided view of the input itself -- no phase split, no merge."""
    return (g.kernel == g.stride and not any(g.pad) and all(d == 1 for d in g.dilation)
            and all(o * k <= n for o, k, n in zip(g.out, g.kernel, g.size)))


def _tile_view(a: np.ndarray, g: PoolGeometry, writeable: bool = False) -> np.ndarray:
    """``a`` (*lead, *spatial) seen as (*lead, o_1, k_1, o_2, k_2, ...): element
    ``[..., i, u, j, v]`` is ``a[..., i*K_1 + u, j*K_2 + v]`` (the windows that fit)."""
    lead = a.ndim - g.nd
    shape, strides = list(a.shape[:lead]), list(a.strides[:lead])
    for o, k, st in zip(g.out, g.kernel, a.strides[lead:]):
        shape += [o, k]
        strides += [st * k, st]
    return workspace.strided(a, shape, strides, writeable=writeable)


def _tile_taps(g: PoolGeometry):
    """Index tuples of the ``prod(K)`` tap views of :func:`_tile_view`, in row-major offset order."""
    return [(Ellipsis,) + tuple(v for u in offs for v in (slice(None), u))
            for offs in itertools.product(*(range(k) for k in g.kernel))]


def _max_pool_tiled_forward(x, g, need_argmax):
    """Max pooling of tiling windows straight from strided views of ``x``:
    ``y = max_k x_k`` and ``arg = k`` wherever tap ``k`` beats the running maximum (strictly, so
    the first maximum wins, PyTorch's tie rule).  Returns None when the output holds a NaN: the
    general path reproduces PyTorch's NaN routing, which this one skips to save a pass."""
    y = workspace.output(g.out_shape, x.dtype)
    arg = np.zeros(y.shape, dtype=_offset_dtype(math.prod(g.kernel))) if need_argmax else None
    xv = _tile_view(x, g)
    taps = _tile_taps(g)
    chunks = row_chunks(y.shape[0], y[:1].nbytes, 1 << 20)
    nan = [False] * len(chunks)

    def work(i):
        sl = chunks[i]
        ys, xs = y[sl], xv[sl]
        np.copyto(ys, xs[taps[0]])
        if need_argmax:
            args = arg[sl]
            mask = workspace.buffer("pool_mask", ys.shape, bool)
            step = workspace.buffer("pool_step", ys.shape, args.dtype)
        for k in range(1, len(taps)):
            v = xs[taps[k]]
            if need_argmax:
                # arg = k where tap k beats the running max; offsets only grow, so this is
                # arg = max(arg, mask * k): two cheap integer passes (np.copyto with where= is
                # several times slower)
                np.greater(v, ys, out=mask)
                np.multiply(mask, args.dtype.type(k), out=step)
                np.maximum(args, step, out=args)
            np.maximum(ys, v, out=ys)
        nan[i] = bool(np.isnan(ys.min())) if ys.size else False

    parallel.run_chunks(work, range(len(chunks)))
    if any(nan):
        return None
    return y, (g, None, arg)


def _max_pool_tiled_backward(dy, g, arg):
    """``dx_k = (arg == k) * dy`` written straight into the tap views of dx (zeros on the rows
    and columns no window reached)."""
    covered = all(o * k == n for o, k, n in zip(g.out, g.kernel, g.size))
    dx = workspace.output(g.shape, dy.dtype) if covered else np.zeros(g.shape, dtype=dy.dtype)
    dxv = _tile_view(dx, g, writeable=True)
    taps = _tile_taps(g)

    def work(sl):
        args, dys, dst = arg[sl], dy[sl], dxv[sl]
        mask = workspace.buffer("pool_mask", args.shape, bool)
        for k, tap in enumerate(taps):
            np.equal(args, k, out=mask)
            np.multiply(dys, mask, out=dst[tap])

    parallel.run_chunks(work, row_chunks(dy.shape[0], dy[:1].nbytes, 1 << 20))
    return dx


def _first_tap(g: PoolGeometry) -> np.ndarray:
    """Per output position (*out), the row-major offset index of the window's first tap that
    is not in the left padding: per axis ``ceil(max(0, P - i*S) / d)``."""
    k0 = []
    for ax in range(g.nd):
        start = np.arange(g.out[ax], dtype=np.int64) * g.stride[ax] - g.pad[ax]
        k = (np.maximum(0, -start) + g.dilation[ax] - 1) // g.dilation[ax]
        k0.append(k.reshape((-1,) + (1,) * (g.nd - 1 - ax)))
    return np.ravel_multi_index(tuple(np.broadcast_arrays(*k0)), g.kernel)


def max_pool_indices(cache) -> np.ndarray:
    """PyTorch's indices: for each output, the flat position of its maximum in the unpadded
    plane of its map, ``h * W + w`` (2-D) or ``l`` (1-D), as int64."""
    g, _, arg = cache
    if arg is None:
        raise ValueError("max_pool_indices: the forward ran with need_argmax=False")
    xp = get_array_module(arg)
    dev = (lambda a: a) if xp is np else (lambda a: to_device(a, device_of(arg)))
    offs = np.unravel_index(np.arange(math.prod(g.kernel)), g.kernel)
    flat = xp.zeros(arg.shape, dtype=np.int64)
    plane = 1
    for ax in reversed(range(g.nd)):
        # position along this axis: i*S - P + k_ax*d, broadcast along output axis ax
        base = np.arange(g.out[ax], dtype=np.int64) * g.stride[ax] - g.pad[ax]
        base = dev(base.reshape((-1,) + (1,) * (g.nd - 1 - ax)))
        pos = base + dev(offs[ax].astype(np.int64))[arg] * g.dilation[ax]
        flat += pos * plane
        plane *= g.size[ax]
    return flat


def max_pool_backward(dy: np.ndarray, cache) -> np.ndarray:
    """``dx[p(i, arg_i)] += dy[i]``: each output's gradient goes to its window's maximum; an
    element that is the maximum of several overlapping windows collects all their gradients.

    Per kernel offset ``k``: ``(arg == k) * dy`` is added into the block of the gradient phase
    that offset read in the forward; the phases are then put back in place.
    """
    g, ph, arg = cache
    if arg is None:
        raise ValueError("max_pool_backward: the forward ran with need_argmax=False")
    if get_array_module(dy, arg) is not np:  # the forward ran on a device (see _max_pool_device)
        return _max_pool_device_backward(dy, g, arg)
    if dy.size == 0:
        return np.zeros(g.shape, dtype=dy.dtype)
    if ph is None:  # the forward took the tiled path
        return _max_pool_tiled_backward(dy, g, arg)
    if ph.disjoint:
        # each phase block is read by one offset only: write (arg == k) * dy straight into it
        parts = {key: np.empty(g.lead + ph._parts(key)[0], dtype=dy.dtype) for key in ph.keys}
    else:
        parts = ph.zeros(g.lead)
    dx = workspace.output(g.shape, dy.dtype) if ph.covers else np.zeros(g.shape, dtype=dy.dtype)

    def work(sl):
        args, dys = arg[sl], dy[sl]
        mask = workspace.buffer("pool_mask", args.shape, bool)
        routed = None if ph.disjoint else workspace.buffer("pool_routed", dys.shape, dy.dtype)
        for k in range(len(ph.offsets)):
            np.equal(args, k, out=mask)
            view = ph.view(parts, k)[sl]
            if ph.disjoint:
                np.multiply(dys, mask, out=view)
            else:
                np.multiply(dys, mask, out=routed)
                view += routed
        ph.merge(parts, g.shape, dx, sl)

    parallel.run_chunks(work, row_chunks(dy.shape[0], dy[:1].nbytes, 4 << 20))
    return dx


def max_pool1d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, need_argmax=True):
    """``x (N, C, L) -> y (N, C, Lo)``: see :func:`max_pool_forward`."""
    return max_pool_forward(x, kernel_size, stride, padding, dilation, ceil_mode, nd=1, need_argmax=need_argmax)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, need_argmax=True):
    """``x (N, C, H, W) -> y (N, C, Ho, Wo)``: see :func:`max_pool_forward`."""
    return max_pool_forward(x, kernel_size, stride, padding, dilation, ceil_mode, nd=2, need_argmax=need_argmax)


# ----------------------------------------------------------------------------- average pooling
def _avg_divisors(g: PoolGeometry, count_include_pad: bool) -> list[np.ndarray]:
    """Per axis, the divisor factor of each output position (PyTorch's rule, separable).

    A window starts at ``a = i*S - P`` and is cut at the padded end: ``b = min(a + K, L + P)``.
    With ``count_include_pad`` it counts ``b - a`` (padding included, a ceil-mode overhang past
    the padding excluded), otherwise only the real elements ``min(b, L) - max(a, 0)``.
    The divisor of a 2-D window is the product of its two factors.
    """
    factors = []
    for n, k, s, p, o in zip(g.size, g.kernel, g.stride, g.pad, g.out):
        a = np.arange(o, dtype=np.int64) * s - p
        b = np.minimum(a + k, n + p)
        if count_include_pad:
            f = b - a
        else:
            f = np.minimum(b, n) - np.maximum(a, 0)
        factors.append(np.maximum(f, 1))  # an all-padding window sums to 0; avoid 0/0
    return factors


def _divisor(g: PoolGeometry, count_include_pad: bool, divisor_override, dtype) -> np.ndarray | float:
    if divisor_override is not None:
        return float(divisor_override)
    div = np.ones((1,) * g.nd, dtype=np.int64)
    for ax, f in enumerate(_avg_divisors(g, count_include_pad)):
        div = div * f.reshape((-1,) + (1,) * (g.nd - 1 - ax))
    return div.astype(dtype)


def avg_pool_forward(
    x: np.ndarray, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
    count_include_pad: bool = True, divisor_override=None, *, nd: int = 2, op: str | None = None,
):
    """Average pooling over the trailing ``nd`` axes.

    ``y[i] = (sum_k x[p(i, k)]) / divisor_i`` with zero padding; the divisor is the window size
    (see :func:`_avg_divisors` for padding and ceil-mode windows) or ``divisor_override``.
    The window sum is separable: one axis at a time, ``K`` strided adds each.
    """
    op = op or f"avg_pool{nd}d"
    g = pool_geometry(x.shape, nd, kernel_size, stride, padding, 1, ceil_mode, op=op)
    check_float(x, "input")
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"{op}: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ShapeError(f"{op}: divisor_override must be non-zero (input {fmt_shape(x.shape)})")
    s = _pad(x, g, 0.0)
    for ax in reversed(range(nd)):  # reduce the last axis first: the array shrinks fastest
        acc = g.axis_view(s, ax, 0).astype(x.dtype, order="C", copy=True)
        for k in range(1, g.kernel[ax]):
            acc += g.axis_view(s, ax, k)
        s = acc
    div = _divisor(g, count_include_pad, divisor_override, x.dtype)
    if not isinstance(div, float):
        div = to_device(div, device_of(x))
    s /= div
    return s, (g, div)


def avg_pool_backward(dy: np.ndarray, cache) -> np.ndarray:
    """``dx[p(i, k)] += dy[i] / divisor_i`` for every tap ``k`` of every window (overlaps add)."""
    g, div = cache
    t = dy / div
    for ax in range(g.nd):  # undo the forward's axis reductions in reverse order
        full = list(t.shape)
        full[t.ndim - g.nd + ax] = g.padded_shape[len(g.lead) + ax]
        spread = get_array_module(dy).zeros(full, dtype=dy.dtype)
        for k in range(g.kernel[ax]):
            view = g.axis_view(spread, ax, k)
            view += t
        t = spread
    return _crop(t, g)


def avg_pool1d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """``x (N, C, L) -> y (N, C, Lo)``: see :func:`avg_pool_forward`."""
    return avg_pool_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad, nd=1)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                       divisor_override=None):
    """``x (N, C, H, W) -> y (N, C, Ho, Wo)``: see :func:`avg_pool_forward`."""
    return avg_pool_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd=2)


# ---------------------------------------------------------------------------- adaptive pooling
def adaptive_output_size(shape, nd: int, output_size, op: str) -> tuple[int, ...]:
    """``output_size`` (an int, or ``nd`` entries each an int or None = keep the input size)
    resolved against ``shape``; validates the input rank and sizes."""
    shape = tuple(int(s) for s in shape)
    _check_input(shape, nd, op)
    size = shape[len(shape) - nd:]
    if isinstance(output_size, (bool, np.bool_)):
        raise TypeError(f"{op}: output_size must be an int or a tuple of {nd} ints/None, got {output_size!r}")
    if output_size is None or isinstance(output_size, (int, np.integer)):
        entries = (output_size,) * nd
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        entries = tuple(output_size)
        if len(entries) == 1:
            entries = entries * nd
    else:
        entries = ()
    if len(entries) != nd or not all(
        e is None or (isinstance(e, (int, np.integer)) and not isinstance(e, bool)) for e in entries
    ):
        raise TypeError(
            f"{op}: output_size must be an int or a tuple of {nd} ints/None, got {output_size!r} "
            f"(input {fmt_shape(shape)})"
        )
    out = tuple(n if e is None else int(e) for n, e in zip(size, entries))
    if any(o < 0 for o in out):
        raise ShapeError(f"{op}: output_size must be non-negative, got {output_size!r} for input {fmt_shape(shape)}")
    return out


def adaptive_windows(n: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """Window ``i`` of ``o`` over a length ``n``: ``[floor(i*n/o), ceil((i+1)*n/o))`` as (start, end)."""
    i = np.arange(o, dtype=np.int64)
    start = (i * n) // o
    end = -((-(i + 1) * n) // o)
    return start, end


def _averaging_matrix(n: int, o: int, dtype) -> np.ndarray:
    """``A (o, n)`` with ``A[i, j] = 1/len_i`` for ``j`` in window ``i``: ``y = A x`` averages."""
    start, end = adaptive_windows(n, o)
    j = np.arange(n)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _apply_axis(a: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    """Contract axis ``axis`` (negative) of ``a`` with the columns of ``m`` (rows replace it).

    One GEMM for the last axis; for an earlier axis a batched product ``m @ a[b]`` per leading
    block.  The operands are made contiguous: a transposed operand sends NumPy's matmul off
    BLAS onto a loop that is twenty times slower.
    """
    if axis == -1:
        lead = a.shape[:-1]
        mt = get_array_module(m).ascontiguousarray(m.T)
        return (a.reshape(-1, a.shape[-1]) @ mt).reshape(lead + (m.shape[0],))
    # (B, n, R) -> (B, o, R) via a batched product with m (o, n)
    lead = a.shape[: a.ndim + axis]
    rest = a.shape[a.ndim + axis + 1:]
    xp = get_array_module(a, m)
    b = xp.ascontiguousarray(a).reshape((-1, a.shape[axis], math.prod(rest)))
    return xp.matmul(xp.ascontiguousarray(m), b).reshape(lead + (m.shape[0],) + rest)


def adaptive_avg_pool_forward(x: np.ndarray, output_size, *, nd: int = 2, op: str | None = None):
    """Adaptive average pooling: ``y[i, j] = mean of x over window_i (rows) x window_j (cols)``.

    Shapes ``(*lead, *spatial) -> (*lead, *output_size)``.  The separable averaging matrices
    are applied by GEMM, ``y = A_h x A_w^T``; global pooling (every output size 1) is a plain
    mean over the flattened plane.
    """
    op = op or f"adaptive_avg_pool{nd}d"
    out = adaptive_output_size(x.shape, nd, output_size, op)
    check_float(x, "input")
    size = x.shape[x.ndim - nd:]
    lead = x.shape[: x.ndim - nd]
    if any(o == 0 for o in out):  # an empty output (PyTorch allows it): nothing flows back
        return get_array_module(x).zeros(lead + out, dtype=x.dtype), (x.shape, out, "empty")
    if all(o == 1 for o in out):
        y = x.reshape(lead + (-1,)).mean(axis=-1, dtype=x.dtype)
        return y.reshape(lead + out), (x.shape, out, None)
    mats = [to_device(_averaging_matrix(n, o, x.dtype), device_of(x)) for n, o in zip(size, out)]
    y = x
    for ax in reversed(range(nd)):
        y = _apply_axis(y, mats[ax], ax - nd)
    return y, (x.shape, out, mats)


def adaptive_avg_pool_backward(dy: np.ndarray, cache) -> np.ndarray:
    """``dx = A_h^T dy A_w``: each input element gets ``dy / window size`` from every window
    containing it (adaptive windows may overlap by one element)."""
    shape, out, mats = cache
    nd = len(out)
    xp = get_array_module(dy)
    if isinstance(mats, str):
        return xp.zeros(shape, dtype=dy.dtype)
    if mats is None:  # global pooling: dy / (H W) everywhere in the plane
        size = shape[len(shape) - nd:]
        scaled = dy / dy.dtype.type(math.prod(size))
        return xp.broadcast_to(scaled, shape).copy()
    dx = dy
    for ax in range(nd):
        dx = _apply_axis(dx, mats[ax].T, ax - nd)
    return xp.ascontiguousarray(dx)


def _adaptive_taps(n: int, o: int):
    """Per window: start, length, and the tap positions ``start + min(t, len-1)`` for
    ``t < max len`` (a short window repeats its last element, harmless under max)."""
    start, end = adaptive_windows(n, o)
    length = end - start
    longest = int(length.max()) if o else 0
    t = np.arange(longest)
    taps = start[None, :] + np.minimum(t[:, None], length[None, :] - 1)  # (longest, o)
    return taps


def adaptive_max_pool_forward(x: np.ndarray, output_size, *, nd: int = 2, op: str | None = None):
    """Adaptive max pooling: ``y[i, j] = max of x over window_i x window_j`` (windows as in
    :func:`adaptive_windows`).  Loops over the offsets inside the longest window, gathering one
    tap of every window per offset; the cache keeps the offset of each first maximum."""
    op = op or f"adaptive_max_pool{nd}d"
    out = adaptive_output_size(x.shape, nd, output_size, op)
    check_float(x, "input")
    size = x.shape[x.ndim - nd:]
    xp = get_array_module(x)
    taps = [to_device(_adaptive_taps(n, o), device_of(x)) for n, o in zip(size, out)]
    offsets = list(itertools.product(*(range(t.shape[0]) for t in taps)))
    lead = x.shape[: x.ndim - nd]

    def gather(off):
        index = tuple(
            taps[ax][off[ax]].reshape((-1,) + (1,) * (nd - 1 - ax)) for ax in range(nd)
        )
        return x[(Ellipsis,) + index]

    if not offsets or any(o == 0 for o in out):
        empty = xp.zeros(lead + out, dtype=x.dtype)
        return empty, (x.shape, out, taps, xp.zeros(empty.shape, dtype=np.uint8))
    y = xp.ascontiguousarray(gather(offsets[0]))
    arg = xp.zeros(y.shape, dtype=_offset_dtype(len(offsets)))
    step = xp.empty(y.shape, dtype=arg.dtype)
    mask = xp.empty(y.shape, dtype=bool)
    has_nan = bool(xp.isnan(xp.min(x))) if x.size else False
    for k, off in enumerate(offsets[1:], start=1):
        v = gather(off)
        np.greater(v, y, out=mask)
        if has_nan:
            mask |= np.isnan(v)
        np.multiply(mask, arg.dtype.type(k), out=step)  # arg = k where mask (k only grows)
        np.maximum(arg, step, out=arg)
        np.maximum(y, v, out=y)
    return y, (x.shape, out, taps, arg)


def _adaptive_positions(cache):
    """Per axis, the input position of each output's maximum, broadcastable to the output."""
    shape, out, taps, arg = cache
    nd = len(out)
    counts = tuple(t.shape[0] for t in taps)
    offs = np.unravel_index(arg.astype(np.int64), counts) if arg.size else [arg.astype(np.int64)] * nd
    pos = []
    for ax in range(nd):
        col = get_array_module(arg).arange(out[ax]).reshape((-1,) + (1,) * (nd - 1 - ax))
        pos.append(taps[ax][offs[ax], col])
    return pos


def adaptive_max_pool_indices(cache) -> np.ndarray:
    """Flat index ``h * W + w`` (or ``l``) of each output's maximum in its map, as int64."""
    shape, out, taps, arg = cache
    nd = len(out)
    size = shape[len(shape) - nd:]
    flat = get_array_module(arg).zeros(arg.shape, dtype=np.int64)
    plane = 1
    pos = _adaptive_positions(cache)
    for ax in reversed(range(nd)):
        flat += pos[ax] * plane
        plane *= size[ax]
    return flat


def adaptive_max_pool_backward(dy: np.ndarray, cache) -> np.ndarray:
    """``dx[argmax_i] += dy[i]`` (adaptive windows may share their maximum)."""
    shape, out, taps, arg = cache
    nd = len(out)
    xp = get_array_module(dy)
    if dy.size == 0:
        return xp.zeros(shape, dtype=dy.dtype)
    size = shape[len(shape) - nd:]
    flat = adaptive_max_pool_indices(cache)
    plane = math.prod(size)
    rows = dy.reshape(-1, math.prod(out))
    idx = flat.reshape(rows.shape)
    # scatter-add each map's gradients into its plane; offset each map to a row of its own
    base = (xp.arange(rows.shape[0], dtype=np.int64) * plane)[:, None]
    dx = xp.bincount((idx + base).ravel(), weights=rows.ravel(), minlength=rows.shape[0] * plane)
    return dx.astype(dy.dtype, copy=False).reshape(shape)


# --------------------------------------------------------------------------------- unpooling
def unpool_output_size(shape, nd: int, kernel_size, stride=None, padding=0, output_size=None,
                       *, op: str) -> tuple[int, ...]:
    """PyTorch's unpooling size: ``(L - 1) * S - 2P + K`` per axis unless ``output_size`` is
    given (``nd`` spatial sizes, or ``nd + 2`` with N and C), which must lie strictly within
    ``stride`` of that default."""
    shape = tuple(int(s) for s in shape)
    _check_input(shape, nd, op)
    kernel = _ints(kernel_size, nd, "kernel_size", op, shape)
    stride_t = kernel if stride is None else _ints(stride, nd, "stride", op, shape)
    pad = _ints(padding, nd, "padding", op, shape)
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride_t) or any(p < 0 for p in pad):
        raise ShapeError(
            f"{op}: kernel_size {kernel} and stride {stride_t} must be positive and padding {pad} "
            f"non-negative (input {fmt_shape(shape)})"
        )
    size = shape[len(shape) - nd:]
    default = tuple((n - 1) * s + k - 2 * p for n, s, k, p in zip(size, stride_t, kernel, pad))
    if output_size is None:
        out = default
    else:
        sizes = tuple(output_size)
        if len(sizes) == nd + 2:
            sizes = sizes[2:]
        if len(sizes) != nd or not all(isinstance(v, (int, np.integer)) for v in sizes):
            raise ShapeError(
                f"{op}: output_size should be a sequence of {nd} or {nd + 2} ints, got {output_size!r} "
                f"(input {fmt_shape(shape)})"
            )
        for ax, (o, dft, s) in enumerate(zip(sizes, default, stride_t)):
            if not (dft - s < o < dft + s):
                raise ShapeError(
                    f"{op}: invalid output_size {tuple(sizes)} for input {fmt_shape(shape)} "
                    f"(dim {ax} must be between {dft - s} and {dft + s}, exclusive)"
                )
        out = tuple(int(v) for v in sizes)
    if any(o <= 0 for o in out):
        raise ShapeError(f"{op}: output size {fmt_shape(out)} for input {fmt_shape(shape)} must be positive")
    return out


def max_unpool_forward(x: np.ndarray, indices: np.ndarray, out: tuple[int, ...], *, op: str = "max_unpool2d"):
    """Partial inverse of max pooling: ``y`` of spatial size ``out`` is zero except
    ``y.flat_plane[indices[i]] = x[i]`` in each map.  ``x``, ``indices`` (*lead, *spatial)."""
    check_float(x, "input")
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"{op}: indices must be an integer array, got dtype {indices.dtype}")
    if indices.shape != x.shape:
        raise ShapeError(
            f"{op}: indices {fmt_shape(indices.shape)} must have the shape of the input {fmt_shape(x.shape)}"
        )
    nd = len(out)
    lead = x.shape[: x.ndim - nd]
    plane = math.prod(out)
    if indices.size and (indices.min() < 0 or indices.max() >= plane):
        bad = int(indices.min()) if indices.min() < 0 else int(indices.max())
        raise ShapeError(
            f"{op}: found an invalid max index {bad} for output size {fmt_shape(out)} "
            f"(input {fmt_shape(x.shape)}, indices {fmt_shape(indices.shape)})"
        )
    rows = math.prod(lead)
    per_map = math.prod(x.shape[x.ndim - nd:])
    idx = indices.reshape(rows, per_map).astype(np.int64, copy=False)
    xp = get_array_module(x, indices)
    y = xp.zeros((rows, plane), dtype=x.dtype)
    if xp is np:
        np.put_along_axis(y, idx, x.reshape(rows, per_map), axis=1)
    else:  # y[r, idx[r, j]] = x[r, j] as one fancy-index assignment
        y[xp.arange(rows)[:, None], idx] = x.reshape(rows, per_map)
    return y.reshape(lead + out), (x.shape, idx, plane)


def max_unpool_backward(dy: np.ndarray, cache) -> np.ndarray:
    """``dx[i] = dy.flat_plane[indices[i]]``: a gather at the indices."""
    shape, idx, plane = cache
    rows = dy.reshape(idx.shape[0], plane)
    return get_array_module(dy).take_along_axis(rows, idx, axis=1).reshape(shape)
