"""Sharding every global batch over the ranks, and augmentation that matches the unsharded batch.

With ``--batch-size B`` on ``N`` ranks, the global batch ``b`` is exactly the batch a single
process would draw -- ``order[b*B : (b+1)*B]`` of the same shuffled permutation (every rank owns
an identical generator seeded by the run's seed) -- and rank ``r`` takes the contiguous slice
``shard_bounds(len(batch), r, N)`` of it (sizes differ by at most one, the first ranks taking
the extra samples).  Concatenating the shards in rank order gives back the global batch, so the
training step over all ranks is the single-process step on the combined batch.

The loader's ``state_dict`` is the global one (same dataset length, global batch size, position
in batches), identical on every rank; a checkpoint of it resumes on any number of ranks.
"""

from __future__ import annotations

import numpy as np

from ..data import DataLoader

__all__ = ["shard_bounds", "ShardedDataLoader", "ShardedAugment"]


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """``(lo, hi)``: the slice of an ``n``-sample batch that ``rank`` of ``size`` takes.

    ``np.array_split``'s rule: ``n // size`` each, plus one for the first ``n % size`` ranks.
    """
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} outside a world of {size}")
    q, extra = divmod(int(n), size)
    lo = rank * q + min(rank, extra)
    return lo, lo + q + (1 if rank < extra else 0)


class ShardedDataLoader(DataLoader):
    """A :class:`~striate.data.DataLoader` over *global* batches that yields this rank's shard.

    ``batch_size`` is the global batch (all ranks together) and must be at least ``world_size``.
    ``len()`` counts global batches; a final batch with fewer samples than ranks (which would
    leave a rank without data) is dropped.  Everything else -- shuffling, prefetch, the
    resumable ``state_dict`` -- is the DataLoader's, over global batches.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 generator=None, prefetch: int = 0, collate_fn=None, *, rank: int, world_size: int):
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                         generator=generator, prefetch=prefetch, collate_fn=collate_fn)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        if self.batch_size < world_size:
            raise ValueError(f"the global batch size {self.batch_size} is smaller than the {world_size} ranks: "
                             f"every rank needs at least one sample (use --batch-size >= {world_size})")
        self.rank, self.world_size = int(rank), int(world_size)

    @classmethod
    def from_loader(cls, loader: DataLoader, rank: int, world_size: int) -> "ShardedDataLoader":
        """The sharded twin of ``loader`` (sharing its dataset and generator, continuing its state)."""
        new = cls(loader.dataset, batch_size=loader.batch_size, shuffle=loader.shuffle, drop_last=loader.drop_last,
                  generator=loader.generator, prefetch=loader.prefetch, collate_fn=loader.collate_fn,
                  rank=rank, world_size=world_size)
        if loader.epoch > 0:
            new.load_state_dict(loader.state_dict())
        return new

    def __len__(self) -> int:
        n_batches = super().__len__()
        tail = len(self.dataset) - (n_batches - 1) * self.batch_size
        if n_batches and 0 < tail < self.world_size:
            return n_batches - 1
        return n_batches

    def global_batch_size(self, b: int) -> int:
        """Samples in global batch ``b`` (0-based) of an epoch."""
        return min(self.batch_size, len(self.dataset) - b * self.batch_size)

    def shard_of(self, b: int) -> tuple[int, int, int]:
        """``(lo, hi, global size)`` of this rank's part of global batch ``b``."""
        n = self.global_batch_size(b)
        return (*shard_bounds(n, self.rank, self.world_size), n)

    def _fetch(self, indices: np.ndarray):
        lo, hi = shard_bounds(len(indices), self.rank, self.world_size)
        return super()._fetch(indices[lo:hi])

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", rank={self.rank}, world_size={self.world_size})"


class ShardedAugment:
    """Wrap a batch augmentation ``f(images, rng)`` so that a shard is transformed as in the global batch.

    Augmentations draw their random parameters per image for a whole batch (``rng.integers(...,
    size=N)`` ...).  To draw exactly what a single process would draw for the global batch, the
    shard is placed at its rows of a zero batch of the global size, the whole batch is
    transformed, and the shard's rows are taken back.  The batch being trained on is the one the
    loader delivered last, ``loader.position - 1``.
    """

    def __init__(self, augment, loader: ShardedDataLoader):
        self.augment, self.loader = augment, loader

    def __call__(self, images, rng):
        images = np.asarray(images)
        b = self.loader.position - 1
        if b < 0:
            raise RuntimeError("ShardedAugment: the loader has not delivered a batch in this epoch")
        lo, hi, n = self.loader.shard_of(b)
        if len(images) != hi - lo:
            raise ValueError(f"ShardedAugment: got {len(images)} images but rank {self.loader.rank}'s shard of "
                             f"batch {b} holds {hi - lo}")
        full = np.zeros((n,) + images.shape[1:], dtype=images.dtype)
        full[lo:hi] = images
        return np.asarray(self.augment(full, rng))[lo:hi]
