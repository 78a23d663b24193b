"""Running independent chunks of a kernel on every core.

NumPy runs elementwise work and copies on one core, and OpenBLAS parallelises a single matrix
product internally -- which pays off for big square products and poorly for the thin, short
products a chunked convolution makes.  The chunked kernels therefore split their work into
independent pieces (ranges of images, see :mod:`striate.kernels.workspace`) and hand them to
:func:`run_chunks`, which runs them on a small pool of threads:

* NumPy releases the GIL inside copies, ufunc loops and BLAS calls, so Python threads do run on
  separate cores for the heavy parts of each chunk;
* while the chunks run the BLAS library is limited to **one** thread (through ``threadpoolctl``),
  so each chunk's GEMM runs on the core of the thread that called it instead of two threads each
  asking OpenBLAS for two more -- OpenBLAS splitting a chunk's thin product over its own threads
  is several times slower -- and the previous limit is restored afterwards;
* chunks are handed out one at a time from a shared counter, so a core slowed down by another
  process simply takes fewer chunks;
* results come back in chunk order and are combined by the caller in that order, so a result
  never depends on which thread ran which chunk (gradients are bit-for-bit reproducible for a
  given thread count and memory budget).

The thread count defaults to the BLAS library's own (``OPENBLAS_NUM_THREADS`` and friends are
respected: ``OPENBLAS_NUM_THREADS=1`` makes striate single-threaded too), can be set with
:func:`set_num_threads` or the ``STRIATE_NUM_THREADS`` environment variable, and falls back to 1
(BLAS threading only) when ``threadpoolctl`` is not installed -- without it the BLAS thread count
cannot be lowered inside the pool.  A call made from inside a pool thread runs serially.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np  # loads the BLAS library that threadpoolctl then finds

__all__ = ["get_num_threads", "set_num_threads", "blas_info", "blas_threads", "run_chunks", "num_threads",
           "map_blocks", "matmul"]

_lock = threading.Lock()
_state = {"threads": None, "pool": None, "pool_size": 0, "blas": None}
_local = threading.local()


def _blas_controllers():
    """threadpoolctl controllers of the BLAS libraries loaded in this process (cached); [] if absent."""
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _state["blas"] = []
        else:
            _state["blas"] = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _state["blas"]


def blas_info() -> list[dict]:
    """Name, version, kernel architecture and thread count of each BLAS library NumPy uses."""
    return [
        {
            "internal_api": c.internal_api,
            "version": c.version,
            "architecture": getattr(c, "architecture", None),
            "threading_layer": getattr(c, "threading_layer", None),
            "num_threads": c.get_num_threads(),
            "filepath": c.filepath,
        }
        for c in _blas_controllers()
    ]


def _default_threads() -> int:
    env = os.environ.get("STRIATE_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"STRIATE_NUM_THREADS must be a positive integer, got {env!r}") from None
    ctrls = _blas_controllers()
    if not ctrls:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, min(c.get_num_threads() for c in ctrls)))


def get_num_threads() -> int:
    """Threads the chunked kernels use (see the module docstring for the default)."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


num_threads = get_num_threads


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for chunked kernels (``None``: back to the default).

    More than one thread needs ``threadpoolctl`` (``pip install threadpoolctl``) to hold the BLAS
    library to one thread inside the pool.
    """
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"set_num_threads: n must be a positive int or None, got {n!r}")
        if n > 1 and not _blas_controllers():
            raise ImportError(
                "striate: running kernels on several threads needs threadpoolctl "
                "(pip install threadpoolctl) to limit the BLAS library's own threads"
            )
    _state["threads"] = n


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit every BLAS library to ``n`` threads inside the block (process-wide), then restore."""
    ctrls = _blas_controllers()
    previous = [c.get_num_threads() for c in ctrls]
    for c in ctrls:
        c.set_num_threads(n)
    try:
        yield
    finally:
        for c, p in zip(ctrls, previous):
            c.set_num_threads(p)


@contextlib.contextmanager
def _blas_single():
    """BLAS held at one thread while any pool region runs (counted, so that regions entered from
    several user threads restore the limit only when the last one leaves)."""
    with _lock:
        if _state.setdefault("regions", 0) == 0:
            ctrls = _blas_controllers()
            _state["saved"] = [c.get_num_threads() for c in ctrls]
            for c in ctrls:
                c.set_num_threads(1)
        _state["regions"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["regions"] -= 1
            if _state["regions"] == 0:
                for c, p in zip(_blas_controllers(), _state["saved"]):
                    c.set_num_threads(p)


def _pool(size: int) -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None or _state["pool_size"] < size:
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=False)
            _state["pool"] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="striate")
            _state["pool_size"] = size
        return _state["pool"]


def in_worker() -> bool:
    """True inside a chunk run by :func:`run_chunks` (nested calls run serially)."""
    return getattr(_local, "busy", False)


def run_chunks(fn: Callable, chunks: Sequence, threads: int | None = None, errstate: dict | None = None) -> list:
    """``[fn(c) for c in chunks]``, the chunks spread over ``threads`` threads (default
    :func:`get_num_threads`); results in chunk order; the first exception is re-raised.

    Every chunk runs under the caller's NumPy floating-point error state (``np.errstate`` is
    per thread), updated by ``errstate`` if given (e.g. ``{"over": "ignore"}``).
    """
    # the error state is set once per thread and call, not per chunk (a context costs ~1.5 us,
    # with the GIL held)
    state = dict(np.geterr(), **(errstate or {}))
    chunks = list(chunks)
    threads = get_num_threads() if threads is None else threads
    threads = min(threads, len(chunks))
    if in_worker():
        with np.errstate(**state):
            return [fn(c) for c in chunks]
    if threads <= 1:
        # one thread: the chunks' thin products still run best on one BLAS thread each
        with _blas_single(), np.errstate(**state):
            return [fn(c) for c in chunks]
    results = [None] * len(chunks)
    counter = itertools.count()  # next() on it is atomic under the GIL
    failed = []

    def work():
        _local.busy = True
        try:
            with np.errstate(**state):
                while not failed:
                    i = next(counter)
                    if i >= len(chunks):
                        return
                    results[i] = fn(chunks[i])
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failed.append(exc)
        finally:
            _local.busy = False

    with _blas_single():
        futures = [_pool(threads - 1).submit(work) for _ in range(threads - 1)]
        work()  # the calling thread takes chunks too
        for f in futures:
            f.result()
    if failed:
        raise failed[0]
    return results


def map_blocks(fn: Callable, out, *inputs, block_bytes: int = 2 << 20) -> None:
    """``fn(out_block, *input_blocks)`` over matching blocks of C-contiguous arrays of one shape,
    the blocks spread over the threads: an elementwise pass (``np.maximum(a, 0, out=o)``) on
    every core.  Small arrays (under two blocks) take one call on the calling thread: every
    NumPy call hands the GIL over, which costs more than it saves on small blocks (see
    :func:`striate.kernels.workspace.row_chunks`); for ReLU's forward and backward, 2 MiB
    blocks were faster than 1 or 4 MiB on every benchmark shape (2.4 to 8 MiB arrays)."""
    arrays = (out,) + inputs
    if any(a.shape != out.shape or not a.flags.c_contiguous for a in arrays):
        raise ValueError("map_blocks: arrays must be C-contiguous and of one shape, got "
                         + ", ".join(str(a.shape) for a in arrays))
    flat = [a.reshape(-1) for a in arrays]
    n = flat[0].size
    itemsize = max(a.itemsize for a in arrays)
    if n * itemsize < 2 * block_bytes or get_num_threads() == 1 or in_worker():
        fn(*arrays)
        return
    step = max(1, block_bytes // itemsize)
    blocks = [slice(i, min(i + step, n)) for i in range(0, n, step)]
    run_chunks(lambda sl: fn(*(a[sl] for a in flat)), blocks)


# products of at least this many multiply-adds are split over the pool's threads
_SPLIT_MACS = 1 << 24


def matmul(a, b):
    """``np.matmul(a, b)`` that never wakes the BLAS library's own threads.

    OpenBLAS's worker threads busy-wait for about a tenth of a second after every product they
    share (``THREAD_TIMEOUT``, 2^28 cycles).  On a machine with as many cores as threads that
    spinning worker takes a core away from the chunked kernels: in a LeNet-5 training step the
    small products of the linear layers kept it spinning for the whole step (24 ms of CPU
    time in a 25 ms step, measured from ``/proc``), and the convolutions' chunks ran late.  So
    every product runs on one BLAS thread; a 2-D product of at least ``_SPLIT_MACS``
    multiply-adds is cut into row blocks (column blocks for a short, wide one) spread over
    :func:`run_chunks`, as OpenBLAS would split it itself.  Other arrays (CuPy) pass straight to
    ``a @ b``.

    Measured (AMD EPYC, 2 threads): LeNet-5 steps, blocks of each variant after the other's
    worker had gone to sleep, 23.1 -> 21.6 ms and 21.8 -> 18.8 ms in two runs.  In isolation a
    product alone is slower this way -- (128, 400) @ (400, 120) 0.12 -> 0.23 ms,
    (4096, 256) @ (256, 64) 1.4 -> 2.0 ms; (128, 4096) @ (4096, 4096) is even -- the price of
    not leaving a worker spinning behind it.
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return a @ b
    threads = get_num_threads()
    if (a.ndim != 2 or b.ndim != 2 or threads <= 1 or in_worker() or a.shape[1] != b.shape[0]
            or a.shape[0] * a.shape[1] * b.shape[1] < _SPLIT_MACS):
        with _blas_single():
            return np.matmul(a, b)
    m, n = a.shape[0], b.shape[1]
    out = np.empty((m, n), np.result_type(a.dtype, b.dtype))
    if m >= n:
        cuts = [m * i // threads for i in range(threads + 1)]
        run_chunks(lambda i: np.matmul(a[cuts[i]:cuts[i + 1]], b, out=out[cuts[i]:cuts[i + 1]]), range(threads))
    else:
        cuts = [n * i // threads for i in range(threads + 1)]
        run_chunks(lambda i: np.matmul(a, b[:, cuts[i]:cuts[i + 1]], out=out[:, cuts[i]:cuts[i + 1]]), range(threads))
    return out
