"""Averaging gradients over the ranks: bucketed in-place Allreduce, overlapped with backward.

Rank ``r`` holds a shard of ``n_r`` of the global batch's ``n`` samples and a loss that is the mean
over its shard, ``L_r = (1/n_r) sum_{i in r} l_i``.  The single-process loss of the global batch is
``L = (1/n) sum_i l_i = sum_r (n_r/n) L_r``, so its gradient is the *sum over ranks* of the
gradient of ``(n_r/n) L_r``.  Each rank therefore seeds its backward with ``n_r/n`` instead of 1
(``loss.backward(gradient=n_r/n)``) and the gradients are summed with ``MPI_Allreduce``.  Seeding,
rather than rescaling afterwards, keeps every intermediate gradient on the global scale, which is
what synchronised batch norm (whose backward sums ``dy`` over all ranks) needs when the shards
are uneven.

Buckets.  The parameters, in reverse registration order (roughly the order backward finishes
them), are packed per dtype into contiguous buffers of about ``bucket_cap_mb`` MiB; each bucket is
one in-place ``Allreduce``.  One element per parameter is appended to its bucket: 1 where this
rank produced a gradient, 0 where not; after the sum a parameter that no rank touched gets
``grad = None`` (as in a single process, so the optimizer skips it) and one that some ranks
touched gets the sum, zeros standing in for the others.

Overlap.  With ``overlap=True``, before backward the graph under the loss is walked once to count
how many gradient contributions each parameter will receive; each parameter's ``_accumulate`` (the
tape's leaf hook) is wrapped for the duration of backward, and when the last parameter of a bucket
is complete the bucket is packed and a non-blocking ``Iallreduce`` is started while backward goes
on through the earlier layers.  Buckets are always started in index order (a bucket that is ready
early waits for its predecessors), so every rank issues the collectives in the same order even if
the tape visits parameters differently.  Pending requests are poked with ``Test`` as backward
proceeds; MPICH without an asynchronous progress thread advances a collective only inside MPI
calls, so on CPU ranks the overlap is partial (see docs/distributed.md for measurements).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..autograd import Tensor
from ..autograd.function import _topological_nodes

__all__ = ["GradientReducer"]


class _Bucket:
    __slots__ = ("dtype", "members", "buffer", "flags_at", "pending", "ready", "request")

    def __init__(self, dtype, members):
        self.dtype = dtype
        self.members = members  # [(param index, offset, size)]
        total = sum(size for _, _, size in members)
        self.flags_at = total  # buffer[total + j] flags member j
        self.buffer = np.zeros(total + len(members), dtype=dtype)
        self.pending = 0
        self.ready = False
        self.request = None


class GradientReducer:
    """Sum (n_r/n)-seeded gradients over ``world``: ``reduce_stats`` then ``backward`` each step.

    Args:
        params: the parameters to synchronise (those not requiring grad are ignored).
        world: a :class:`~striate.distributed.World`.
        bucket_cap_mb: approximate bucket size in MiB (a larger parameter gets a bucket alone).
        overlap: start each bucket's reduction during backward (``Iallreduce``); False reduces all
            buckets after backward with blocking ``Allreduce``.
        buffers: arrays (e.g. unsynchronised batch-norm running statistics) to overwrite with rank
            0's after every step, as PyTorch's DDP does, so that all ranks stay identical.

    Plug into :class:`~striate.train.Trainer` as ``reduce_stats=reducer.reduce_stats,
    backward_fn=reducer.backward``.
    """

    def __init__(self, params, world, *, bucket_cap_mb: float = 1.0, overlap: bool = True, buffers=()):
        if bucket_cap_mb <= 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.world = world
        self.params = [p for p in params if p.requires_grad]
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("GradientReducer: a parameter is listed twice")
        self.overlap = bool(overlap)
        self.buffers = [b.data if isinstance(b, Tensor) else b for b in buffers if b is not None]
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self.buckets = self._make_buckets(int(bucket_cap_mb * 2**20))
        self._bucket_of = {}
        for k, bucket in enumerate(self.buckets):
            for i, _, _ in bucket.members:
                self._bucket_of[i] = k
        self._shares = None  # (n_local, n_global) of the current step
        self._remaining = None
        self._next = 0

    def _make_buckets(self, cap_bytes: int) -> list[_Bucket]:
        by_dtype: dict = defaultdict(list)
        for i in reversed(range(len(self.params))):
            by_dtype[self.params[i].data.dtype].append(i)
        buckets = []
        for dtype, indices in by_dtype.items():
            members, offset = [], 0
            for i in indices:
                size = self.params[i].data.size
                if members and (offset + size) * dtype.itemsize > cap_bytes:
                    buckets.append(_Bucket(dtype, members))
                    members, offset = [], 0
                members.append((i, offset, size))
                offset += size
            if members:
                buckets.append(_Bucket(dtype, members))
        # the order reductions are issued in: by the position of each bucket's first (latest) parameter
        buckets.sort(key=lambda b: -b.members[0][0])
        return buckets

    # ------------------------------------------------------------------ step statistics
    def reduce_stats(self, loss: float, correct: int, n: int) -> tuple[float, int, int]:
        """Global (mean loss, number correct, batch size) from this rank's; remembers the shares."""
        stats = np.array([float(loss) * n, float(correct), float(n)], dtype=np.float64)
        self.world.allreduce_(stats)
        total = int(round(stats[2]))
        self._shares = (int(n), total)
        mean = float(stats[0] / stats[2]) if total else float("nan")
        return mean, int(round(stats[1])), total

    # ------------------------------------------------------------------ backward
    def backward(self, loss: Tensor) -> None:
        """``loss.backward()`` seeded with this rank's share, then the gradients summed over ranks.

        The share is ``n_r / n`` from the last :meth:`reduce_stats`, or ``1 / world size`` (equal
        shards assumed) when it was not called this step.
        """
        if self._shares is not None and self._shares[1] > 0:
            share = self._shares[0] / self._shares[1]
        else:
            share = 1.0 / self.world.size
        self._shares = None
        seed = np.asarray(share, dtype=loss.dtype)
        if self.overlap and loss._node is not None:
            self._arm(loss)
            try:
                loss.backward(gradient=seed)
            finally:
                self._disarm()
            for bucket in self.buckets:
                bucket.ready = True
            self._launch_ready()
            self.world.MPI.Request.Waitall([b.request for b in self.buckets])
            for bucket in self.buckets:
                bucket.request = None
                self._unpack(bucket)
        else:
            loss.backward(gradient=seed)
            for bucket in self.buckets:
                self._pack(bucket)
                self.world.allreduce_(bucket.buffer)
                self._unpack(bucket)
        for array in self.buffers:
            _bcast_into(self.world, array)

    def _pack(self, bucket: _Bucket) -> None:
        buf = bucket.buffer
        for j, (i, offset, size) in enumerate(bucket.members):
            g = self.params[i].grad
            if g is None:
                buf[offset : offset + size] = 0
                buf[bucket.flags_at + j] = 0
            else:
                buf[offset : offset + size] = g.data.reshape(-1)
                buf[bucket.flags_at + j] = 1

    def _unpack(self, bucket: _Bucket) -> None:
        buf = bucket.buffer
        for j, (i, offset, size) in enumerate(bucket.members):
            p = self.params[i]
            if buf[bucket.flags_at + j] > 0:
                p.grad = Tensor._wrap(buf[offset : offset + size].reshape(p.data.shape).copy())
            else:
                p.grad = None

    # ------------------------------------------------------------------ overlap machinery
    def _arm(self, loss: Tensor) -> None:
        """Count each parameter's expected gradient contributions and hook its accumulation."""
        counts = np.zeros(len(self.params), dtype=np.int64)
        for node in _topological_nodes(loss._node):
            for t in node.inputs:
                if t is not None and t._node is None:
                    i = self._index.get(id(t))
                    if i is not None:
                        counts[i] += 1
        self._remaining = counts
        self._next = 0
        for bucket in self.buckets:
            bucket.pending = sum(1 for i, _, _ in bucket.members if counts[i] > 0)
            bucket.ready = bucket.pending == 0
            bucket.request = None
        for i, p in enumerate(self.params):
            if counts[i] > 0:
                p._accumulate = self._hook(p, i)  # an instance attribute shadows Tensor._accumulate
        self._launch_ready()

    def _hook(self, p: Tensor, i: int):
        def accumulate(g):
            Tensor._accumulate(p, g)
            self._remaining[i] -= 1
            if self._remaining[i] == 0:
                bucket = self.buckets[self._bucket_of[i]]
                bucket.pending -= 1
                if bucket.pending == 0:
                    bucket.ready = True
                    self._launch_ready()

        return accumulate

    def _disarm(self) -> None:
        for p in self.params:
            p.__dict__.pop("_accumulate", None)

    def _launch_ready(self) -> None:
        """Start, in bucket order, every bucket whose predecessors have all been started."""
        while self._next < len(self.buckets) and self.buckets[self._next].ready:
            bucket = self.buckets[self._next]
            self._pack(bucket)
            bucket.request = self.world.iallreduce_(bucket.buffer)
            self._next += 1
        for bucket in self.buckets[: self._next]:  # let MPI progress the reductions in flight
            if bucket.request is not None:
                bucket.request.Test()


def _bcast_into(world, array: np.ndarray) -> None:
    """Overwrite ``array`` with rank 0's, in place, whatever its memory layout."""
    if array.flags.c_contiguous and array.flags.writeable:
        world.bcast_(array)
    else:
        tmp = np.ascontiguousarray(array)
        world.bcast_(tmp)
        array[...] = tmp
