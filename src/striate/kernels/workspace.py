"""Reusable work buffers and the chunk plan of the convolution kernels.

Two costs dominate a NumPy convolution besides the arithmetic: writing a column matrix
``C*K*K`` times larger than the input, and asking the operating system for fresh memory for it
(every new page of a large allocation is zeroed and mapped on first touch).  The chunked kernels
avoid both:

* they process a few images at a time (a *chunk*), so the column matrix of one chunk -- a few
  MiB -- stays in the cache between being written and being multiplied;
* the buffers live here, one set per thread, and are reused by every later call, so after the
  first step no large allocation happens inside a kernel at all.

:func:`plan_chunks` picks the chunk size.  Two knobs bound it:

``memory budget``
    the most the buffers may hold, all threads together (default 256 MiB, or
    ``STRIATE_WORKSPACE_MB``): a hard cap whatever the batch size.  Only when a single image needs
    more is the chunk cut into ranges of output rows.
``chunk target``
    the working set aimed at per chunk (default 4 MiB, ``STRIATE_CHUNK_MB``), the size that keeps
    a chunk's buffers in the caches.

Buffers are per thread (``threading.local``): the pool threads of
:mod:`striate.kernels.parallel` each fill their own, and a thread whose buffers would outgrow its
share of the budget lets its other buffers go first, so what stays held between calls never
exceeds the budget.  :func:`clear` frees them all.

Kernel outputs -- arrays the caller keeps -- come from :func:`output`, a caching allocator:
their memory is reused once nothing refers to them, so that a training step does not fault
fresh pages in (see the notes above :func:`output`; ``STRIATE_OUTPUT_POOL_MB`` caps it).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import weakref

import numpy as np

__all__ = [
    "get_memory_budget", "set_memory_budget", "get_chunk_target", "set_chunk_target",
    "buffer", "strided", "clear", "held_bytes", "plan_chunks", "row_chunks", "output", "pooled_bytes", "add",
]

_MiB = 1 << 20


def _env_mib(name: str, default: float) -> int:
    value = os.environ.get(name)
    if not value:
        return int(default * _MiB)
    try:
        mib = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of MiB, got {value!r}") from None
    if mib <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(mib * _MiB)


_config = {"budget": _env_mib("STRIATE_WORKSPACE_MB", 256), "target": _env_mib("STRIATE_CHUNK_MB", 4)}


def get_memory_budget() -> int:
    """Bytes the work buffers of all threads may hold together."""
    return _config["budget"]


def set_memory_budget(nbytes: int | None) -> None:
    """Cap the work buffers at ``nbytes`` (``None``: the default 256 MiB).  Frees held buffers."""
    if nbytes is None:
        nbytes = _env_mib("STRIATE_WORKSPACE_MB", 256)
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes <= 0:
        raise ValueError(f"set_memory_budget: expected a positive number of bytes, got {nbytes!r}")
    _config["budget"] = int(nbytes)
    clear()


def get_chunk_target() -> int:
    """Bytes of buffers one chunk aims at (cache-sized)."""
    return _config["target"]


def set_chunk_target(nbytes: int | None) -> None:
    """Aim chunks at ``nbytes`` of buffers (``None``: the default 4 MiB)."""
    if nbytes is None:
        nbytes = _env_mib("STRIATE_CHUNK_MB", 4)
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes <= 0:
        raise ValueError(f"set_chunk_target: expected a positive number of bytes, got {nbytes!r}")
    _config["target"] = int(nbytes)


class _Buffers(threading.local):
    def __init__(self):
        self.store: dict[str, np.ndarray] = {}
        _all.add(self)


_all: "weakref.WeakSet[_Buffers]" = weakref.WeakSet()
_local = _Buffers()


def buffer(name, shape, dtype, zero_new: bool = False) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, backed by this thread's
    reusable buffer ``name`` (a string, or any hashable key; grown when too small, never
    shrunk; 64-byte aligned).

    Valid until the same thread asks for ``name`` again: never return one to a caller.

    ``zero_new``: memory newly allocated for the buffer is zeroed, and what a caller leaves in
    it stays there until the buffer is dropped (over the budget, :func:`clear`).  A caller
    that gives a name of its own to one shape and always writes the same positions can so
    keep the others -- a padded grid's border -- at zero without writing them again.

    The store keeps each buffer as its 64-byte-aligned bytes, so a request is one ``np.ndarray``
    over them (about 1 us): the chunk loops ask for buffers hundreds of times a training step,
    holding the GIL the other thread's chunks wait for (the version that realigned on every
    request, through ``ndarray.ctypes``, took 7 us).
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    store = _local.store
    mem = store.get(name)
    if mem is None or mem.nbytes < nbytes:
        store.pop(name, None)
        share = _config["budget"] // max(1, _threads())
        if sum(m.nbytes for m in store.values()) + nbytes + 64 > share:
            # over this thread's share: let the other buffers go (a view still in use keeps
            # its memory alive until the chunk is done; later requests allocate afresh)
            store.clear()
        raw = (np.zeros if zero_new else np.empty)(max(nbytes, 1) + 64, dtype=np.uint8)
        shift = (-raw.ctypes.data) % 64
        mem = store[name] = raw[shift:shift + max(nbytes, 1)]
    return np.ndarray(shape, dtype, mem)


def strided(a: np.ndarray, shape, strides, offset: int = 0, writeable: bool = False) -> np.ndarray:
    """A view of ``a``'s memory with ``shape`` and byte ``strides``, starting ``offset`` bytes
    after ``a``'s first element (a multiple of its item size; read-only unless ``writeable``): what
    ``np.lib.stride_tricks.as_strided`` makes, in about 1 instead of 9 us when ``a`` is
    C-contiguous -- the chunk loops build such windows hundreds of times a step while holding
    the GIL.  Nothing is checked beyond what NumPy checks: the view must stay inside ``a``."""
    if a.flags.c_contiguous:
        view = np.ndarray(shape, a.dtype, a, offset, strides)
    else:
        if offset:
            a = np.lib.stride_tricks.as_strided(a, (offset // a.itemsize + 1,), (a.itemsize,))[offset // a.itemsize:]
        view = np.lib.stride_tricks.as_strided(a, shape, strides, writeable=writeable)
    if not writeable:
        view.flags.writeable = False
    return view


# ---- recycled kernel outputs
#
# A kernel's output must be a fresh array (the caller keeps it), and a fresh array of a few MiB
# is fresh memory: glibc serves sizes like these by ``mmap`` or from the top of its heap, and
# gives them back to the system when they are freed, so every step faults the pages of its
# outputs in again, each one zeroed by the kernel first -- 4 KiB and a few microseconds at a
# time on this virtual machine: 1,700 faults (a fifth of the step) in LeNet-5's ReLU and
# max-pool passes, 5,600 a step in ResNet-20.  :func:`output` is a caching allocator for
# kernel outputs of 256 KiB and more: it keeps their memory and hands it out again once
# nothing refers to it any more.  An output is a view of a pooled block, so the block's
# reference count says whether any array -- the output or a view of it -- is alive.  A
# training step asks for the same sizes in the same order every time, so after the first step
# every output finds a free block.  An output takes the smallest free block of at least its
# size and at most ``_FIT`` (2) times it; before a new block is allocated, free blocks beyond
# ``_KEEP_FREE`` (16 MiB) go back to the system -- without these two rules blocks of one size
# could not serve another, and DenseNet-BC-40 (a new size at every layer) peaked at 718 MiB
# instead of 494.
#
# Measured (AMD EPYC, two threads, separate processes alternated, six each, medians): pooling
# every size from 256 KiB (cap 1 GiB), instead of 256 KiB to 4 MiB (cap 32 MiB), with the
# autograd engine's gradient sums in pooled memory too, took ResNet-20's step from 625 to
# 600 ms (an earlier run: 692 to 651 ms) and its page faults from 5,600 to 18 a step; the peak
# RSS of one step (bench/run.py) went from 220 to 222 MiB for ResNet-20, 494 to 525 MiB for
# DenseNet-BC-40.  (A 128 MiB cap had given mixed results: ResNet-20 keeps about 210 MiB of
# outputs alive at its peak, so the pool kept dropping blocks.)

_OUT_MIN = 256 << 10
_KEEP_FREE = 16 << 20
_FIT = 2.0


def _pool_cap() -> int:
    value = os.environ.get("STRIATE_OUTPUT_POOL_MB")
    if not value:
        return 1024 * _MiB
    try:
        mib = float(value)
    except ValueError:
        raise ValueError(f"STRIATE_OUTPUT_POOL_MB must be a number of MiB (0: off), got {value!r}") from None
    if mib < 0:
        raise ValueError(f"STRIATE_OUTPUT_POOL_MB must not be negative, got {value!r}")
    return int(mib * _MiB)


# "blocks": size in bytes -> the pooled blocks of that size (uint8 arrays), oldest first
_out = {"cap": _pool_cap(), "blocks": {}}
_out_lock = threading.Lock()
# sys.getrefcount(blocks[i]) of a block nothing else refers to, measured rather than assumed
# (interpreters differ in the temporary references they count); every live output is a view
# whose .base is its block, one reference more
_probe = [np.empty(1, dtype=np.uint8)]
_FREE_REFS = sys.getrefcount(_probe[0])
del _probe


def output(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` for a kernel output, reusing the memory of earlier outputs of
    the same size that are no longer referenced (see above).  Sizes under 256 KiB, and those
    that would take the pool over its cap (``STRIATE_OUTPUT_POOL_MB``, default 1024 MiB, 0
    turns the pool off) once every free block is dropped, come from ``np.empty``.  The array is
    uninitialised, C-contiguous, and its own: nothing else writes to it while it (or a view of
    it) is alive.  :func:`clear` lets the pool's memory go."""
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _OUT_MIN or _out["cap"] <= 0:
        return np.empty(shape, dtype)
    with _out_lock:
        pool = _out["blocks"]
        # the smallest free block of at least nbytes and at most _FIT times that
        for size in sorted(sz for sz in pool if nbytes <= sz <= nbytes * _FIT):
            same = pool[size]
            for i in range(len(same)):
                if sys.getrefcount(same[i]) == _FREE_REFS:
                    return same[i][:nbytes].view(dtype).reshape(shape)
        held = pooled_bytes()
        free = sum(size for size, blocks in pool.items() for i in range(len(blocks))
                   if sys.getrefcount(blocks[i]) == _FREE_REFS)
        if held + nbytes > _out["cap"] or free > _KEEP_FREE:
            # drop unreferenced blocks, oldest size first, until the new block fits under the
            # cap and at most _KEEP_FREE bytes stay free
            for size in list(pool):
                blocks = pool[size]
                keep = []
                for i in range(len(blocks)):
                    if ((held + nbytes > _out["cap"] or free > _KEEP_FREE)
                            and sys.getrefcount(blocks[i]) == _FREE_REFS):
                        held -= size
                        free -= size
                    else:
                        keep.append(blocks[i])
                if keep:
                    blocks[:] = keep
                else:
                    del pool[size]
            if held + nbytes > _out["cap"]:
                return np.empty(shape, dtype)
        block = np.empty(nbytes, dtype=np.uint8)
        pool.setdefault(nbytes, []).append(block)
        return block.view(dtype).reshape(shape)


def add(a, b):
    """``np.add(a, b)``; two NumPy arrays of one shape (a residual sum, two gradients of one
    tensor) are summed into a recycled :func:`output` instead of fresh memory."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.shape == b.shape:
        return np.add(a, b, out=output(a.shape, np.result_type(a, b)))
    return np.add(a, b)


def pooled_bytes() -> int:
    """Bytes held by the pool of recycled kernel outputs (free or in use)."""
    return sum(size * len(blocks) for size, blocks in _out["blocks"].items())


def _threads() -> int:
    from . import parallel

    return parallel.get_num_threads()


def held_bytes() -> int:
    """Bytes held by the buffers of every thread."""
    return sum(mem.nbytes for bufs in list(_all) for mem in bufs.store.values())


def clear() -> None:
    """Free every thread's buffers (they are rebuilt on demand) and let go of the recycled
    output blocks (outputs still alive keep their own memory)."""
    for bufs in list(_all):
        bufs.store.clear()
    with _out_lock:
        _out["blocks"].clear()


def plan_chunks(n: int, rows: int, bytes_per_row: int, threads: int) -> list[tuple[int, int, int, int]]:
    """Split ``n`` images of ``rows`` output rows into chunks ``(n0, n1, r0, r1)``.

    ``bytes_per_row`` is the buffer space one output row of one image needs.  A chunk holds whole
    images when one image fits the per-thread share of the budget: as many as the chunk target
    allows, but at least two chunks per thread when there are enough images (so a busy core can
    hand work to the other).  Otherwise each image is cut into ranges of rows.
    """
    per_image = max(1, rows * bytes_per_row)
    share = max(1, get_memory_budget() // max(1, threads))
    if per_image <= share:
        nb = max(1, min(get_chunk_target() // per_image, share // per_image, n))
        if threads > 1:
            nb = min(nb, max(1, -(-n // (2 * threads))))
        count = -(-n // nb)
        if threads > 1 and count > threads:
            # a multiple of the thread count, sizes differing by at most one image: the last
            # round of chunks then keeps every core busy (11 chunks on 2 threads left one core
            # idle for a twelfth of ResNet's 32-channel layers)
            count = min(n, -(-count // threads) * threads)
        base, extra = divmod(n, count)
        bounds = [0]
        for k in range(count):
            bounds.append(bounds[-1] + base + (k < extra))
        return [(bounds[k], bounds[k + 1], 0, rows) for k in range(count)]
    rb = max(1, share // max(1, bytes_per_row))
    return [(i, i + 1, r, min(r + rb, rows)) for i in range(n) for r in range(0, rows, rb)]


def row_chunks(n: int, bytes_per_row: int, chunk_bytes: int = 1 << 20) -> list[slice]:
    """Slices of a leading axis of ``n`` rows for elementwise passes, about ``chunk_bytes`` of
    data each, at least two per thread when there is enough data; one slice (no thread
    hand-off) for less than two chunks' worth.

    A chunk must not be small: every NumPy call hands the GIL over, and on a virtual machine a
    hand-off costs tens of microseconds, so two threads run calls on 256 KiB blocks no faster
    than one and calls on 64 KiB blocks slower (measured here); from about 1 MiB they scale.
    """
    from . import parallel

    if n <= 0:
        return [slice(0, 0)]
    per = max(1, bytes_per_row)
    if n * per < 2 * chunk_bytes:
        return [slice(0, n)]
    nb = max(1, min(n, chunk_bytes // per))
    threads = parallel.get_num_threads()
    if threads > 1:
        nb = min(nb, max(1, -(-n // (2 * threads))))
    return [slice(i, min(i + nb, n)) for i in range(0, n, nb)]
