"""DataLoader: batches from a dataset, shuffled by an explicit generator, prefetched, resumable.

One epoch is one pass over an *order*: ``arange(n)``, or ``generator.permutation(n)`` drawn when
the epoch starts.  Batch ``b`` is the samples at ``order[b*B : (b+1)*B]`` (the last one shorter
unless ``drop_last``).  For an array-backed dataset the batch is one fancy-indexing gather per
array (``dataset.get_batch(idx)``); any other dataset is read sample by sample and collated.

Exact resume.  ``state_dict()`` records the generator's state *just before it drew the current
epoch's permutation*, how many batches the consumer has received, and the generator's current
state.  ``load_state_dict()`` on a fresh loader over the same dataset rebuilds that permutation
from the recorded state, skips the delivered batches and restores the generator, so the resumed
run sees exactly the batches the interrupted one would have seen, this epoch and after.  The
state holds only ints, bools, strings and the bit generator's state dict (plain ints for the
default PCG64), so it can be stored as JSON.

Prefetch.  With ``prefetch=k > 0`` a background thread assembles up to ``k`` batches ahead into
a bounded queue.  The order is fixed before the thread starts (the thread never touches the
generator), so prefetching changes no batch.  An exception raised while building a batch is
re-raised in the consumer at that batch; abandoning an iterator (``close()``, ``break`` and
garbage collection, or the end of the epoch) stops and joins its thread.
"""

from __future__ import annotations

import copy
import queue
import threading
import weakref
from typing import Any, Callable

import numpy as np

from .dataset import collate

__all__ = ["DataLoader"]

_STATE_VERSION = 1


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _default_shuffle_generator() -> np.random.Generator:
    """A private generator seeded from striate's process-wide one (repeatable after manual_seed)."""
    try:
        from ..random import default_generator
    except ImportError:  # pragma: no cover - striate.random is part of the package
        return np.random.default_rng()
    return np.random.default_rng(int(default_generator().integers(0, 2**63)))


class _Prefetcher:
    """Runs ``produce`` (an iterator of batches) in a daemon thread into a bounded queue."""

    _POLL = 0.05  # seconds between checks of the stop flag while the queue is full

    def __init__(self, produce, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(produce,), name="striate-data-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, message) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=self._POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce) -> None:
        try:
            for batch in produce:
                if not self._put(("batch", batch)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(("error", exc))

    def get(self):
        while True:
            try:
                kind, value = self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the data prefetch thread stopped without a result") from None
                continue
            if kind == "batch":
                return value
            if kind == "error":
                raise value
            raise StopIteration

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:  # unblock a producer waiting on a full queue
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def _produce_batches(fetch, order: np.ndarray, batch_size: int, start: int, stop: int):
    """The batches ``start .. stop-1`` of ``order``; runs in the prefetch thread.

    A plain function of the loader's fetch and the order (not a method of the iterator), so the
    running thread holds no reference to the iterator and an abandoned iterator can be
    garbage-collected, which stops the thread.
    """
    for b in range(start, stop):
        yield fetch(order[b * batch_size : (b + 1) * batch_size])


class _LoaderIterator:
    """One epoch's iterator: yields the batches of ``order`` from batch ``start`` on."""

    def __init__(self, loader: "DataLoader", order: np.ndarray, start: int):
        self._loader = loader
        self._order = order
        self._next = start
        self._stop_at = len(loader)
        self._closed = False
        self._prefetcher: _Prefetcher | None = None
        if loader.prefetch > 0 and start < self._stop_at:
            produce = _produce_batches(loader._fetch, order, loader.batch_size, start, self._stop_at)
            self._prefetcher = _Prefetcher(produce, loader.prefetch)

    def _indices(self, b: int) -> np.ndarray:
        bs = self._loader.batch_size
        return self._order[b * bs : (b + 1) * bs]

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        if self._next >= self._stop_at:
            self._loader._epoch_finished(self)
            self.close()
            raise StopIteration
        try:
            if self._prefetcher is not None:
                batch = self._prefetcher.get()
            else:
                batch = self._loader._fetch(self._indices(self._next))
        except StopIteration:  # pragma: no cover - the producer ends exactly at _stop_at
            self.close()
            raise RuntimeError("the prefetch thread ended early") from None
        except BaseException:
            self.close()
            raise
        self._next += 1
        self._loader._batch_delivered(self, self._next)
        return batch

    def __len__(self) -> int:
        return max(self._stop_at - self._next, 0)

    def close(self) -> None:
        """Stop the prefetch thread (if any) and end this iterator."""
        self._closed = True
        if self._prefetcher is not None:
            self._prefetcher.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images, labels)`` NumPy arrays.

    Args:
        dataset: a dataset (``__len__``/``__getitem__``); if it has ``get_batch(indices)`` (the
            array-backed datasets of :mod:`striate.data`) each batch is one vectorised gather.
        batch_size: samples per batch (>= 1).
        shuffle: draw a fresh permutation from ``generator`` at the start of every epoch.
        drop_last: drop the final batch when it is shorter than ``batch_size``.
        generator: the ``numpy.random.Generator`` (or an int seed) that shuffles.  When None and
            ``shuffle`` is set, a private generator is seeded from ``striate.random``'s default
            generator, so ``striate.random.manual_seed`` makes the order repeatable.
        prefetch: batches a background thread prepares ahead (0: no thread, build on demand).
        collate_fn: builds a batch from a list of samples; given, it replaces the vectorised path.

    ``len(loader)`` is the number of batches per epoch: ``ceil(N / B)``, or ``floor(N / B)``
    with ``drop_last``.
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: np.random.Generator | int | None = None,
        prefetch: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
    ):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.prefetch = _check_int(prefetch, "prefetch", 0)
        self.collate_fn = collate_fn
        if generator is None:
            generator = _default_shuffle_generator() if self.shuffle else None
        elif isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
            generator = np.random.default_rng(int(generator))
        elif not isinstance(generator, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator or an int seed, got {type(generator).__name__}")
        self.generator = generator
        # epoch bookkeeping (what state_dict records)
        self._epoch = 0  # epochs started
        self._in_epoch = False
        self._position = 0  # batches delivered in the current epoch
        self._perm_state: dict | None = None  # generator state before this epoch's permutation
        self._resume_pending = False
        self._active = None  # weakref to the current epoch's iterator

    # ------------------------------------------------------------------ sizes and batches

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def epoch(self) -> int:
        """How many epochs have been started (1 during the first)."""
        return self._epoch

    @property
    def position(self) -> int:
        """How many batches of the current epoch have been delivered."""
        return self._position if self._in_epoch else 0

    def _fetch(self, indices: np.ndarray):
        if self.collate_fn is not None:
            return self.collate_fn([self.dataset[int(i)] for i in indices])
        getter = getattr(self.dataset, "get_batch", None)
        if getter is not None:
            return getter(indices)
        return collate([self.dataset[int(i)] for i in indices])

    def _order(self, perm_state: dict | None, n: int) -> np.ndarray:
        """The saved epoch's order: the permutation drawn from ``perm_state`` (or ``arange``)."""
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        replay = np.random.Generator(type(self.generator.bit_generator)())
        replay.bit_generator.state = copy.deepcopy(perm_state)
        return replay.permutation(n).astype(np.int64, copy=False)

    def __iter__(self) -> _LoaderIterator:
        n = len(self.dataset)
        if self._resume_pending and self._in_epoch:
            start = self._position
            order = self._order(self._perm_state, n)
        else:
            self._epoch += 1
            start = 0
            if self.shuffle:
                self._perm_state = copy.deepcopy(self.generator.bit_generator.state)
                order = self.generator.permutation(n).astype(np.int64, copy=False)
            else:
                self._perm_state = None
                order = np.arange(n, dtype=np.int64)
        self._resume_pending = False
        self._in_epoch = True
        self._position = start
        it = _LoaderIterator(self, order, start)
        self._active = weakref.ref(it)
        return it

    def _is_active(self, it: _LoaderIterator) -> bool:
        return self._active is not None and self._active() is it

    def _batch_delivered(self, it: _LoaderIterator, position: int) -> None:
        if self._is_active(it):
            self._position = position

    def _epoch_finished(self, it: _LoaderIterator) -> None:
        if self._is_active(it):
            self._in_epoch = False
            self._position = 0
            self._active = None

    # ------------------------------------------------------------------------ resume

    def state_dict(self) -> dict:
        """Everything needed to continue this loader's sequence of batches exactly.

        Take it between batches: ``position`` counts the batches the consumer has received (not
        those a prefetch thread has built ahead).
        """
        return {
            "version": _STATE_VERSION,
            "dataset_len": len(self.dataset),
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "shuffle": self.shuffle,
            "epoch": self._epoch,
            "in_epoch": self._in_epoch,
            "position": self._position if self._in_epoch else 0,
            "perm_state": copy.deepcopy(self._perm_state) if self._in_epoch else None,
            "generator_state": copy.deepcopy(self.generator.bit_generator.state) if self.shuffle else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the next ``iter(loader)`` continues the saved epoch.

        The dataset length, batch size, ``drop_last`` and ``shuffle`` must match the saved loader,
        and a shuffling loader's generator must use the same bit generator (PCG64 by default).
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"not a DataLoader state dict (version {_STATE_VERSION}): {type(state).__name__}")
        mine = {"dataset_len": len(self.dataset), "batch_size": self.batch_size,
                "drop_last": self.drop_last, "shuffle": self.shuffle}
        wrong = [f"{k}: saved {state.get(k)!r}, this loader {v!r}" for k, v in mine.items() if state.get(k) != v]
        if wrong:
            raise ValueError("DataLoader.load_state_dict: the saved loader differs: " + "; ".join(wrong))
        in_epoch = bool(state["in_epoch"])
        position = int(state["position"])
        if in_epoch and not 0 <= position <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: position {position} outside 0..{len(self)} batches")
        if self.shuffle:
            kind = type(self.generator.bit_generator).__name__
            for key in ("generator_state",) + (("perm_state",) if in_epoch else ()):
                saved = state.get(key)
                if not isinstance(saved, dict) or saved.get("bit_generator") != kind:
                    got = saved.get("bit_generator") if isinstance(saved, dict) else saved
                    raise ValueError(f"DataLoader.load_state_dict: {key} is for bit generator {got!r}, the generator is {kind!r}")
            self.generator.bit_generator.state = copy.deepcopy(state["generator_state"])
        active = self._active() if self._active is not None else None
        if active is not None:
            active.close()
        self._active = None
        self._epoch = int(state["epoch"])
        self._in_epoch = in_epoch
        self._position = position if in_epoch else 0
        self._perm_state = copy.deepcopy(state["perm_state"]) if in_epoch and self.shuffle else None
        self._resume_pending = in_epoch

    def __repr__(self) -> str:
        return (
            f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, prefetch={self.prefetch})"
        )
