"""Data-parallel training over MPI (mpi4py): ``mpiexec -n N python -m mpi4py -m striate train ...``.

Each of the N ranks holds a full copy of the model.  Every global batch (``--batch-size``, the
batch a single process would train on) is split into N contiguous shards; rank r computes the
forward and backward of its shard, the gradients are summed over the ranks with in-place
``Allreduce`` in contiguous buckets (started during backward), and every rank applies the same
optimizer step -- so after any number of steps all ranks hold the weights a single process would
hold after training on the combined batches (up to summation order).  See docs/distributed.md.

* :class:`World`, :func:`get_world`, :func:`launched_world_size` -- the communicator (``world``).
* :class:`ShardedDataLoader`, :class:`ShardedAugment`, :func:`shard_bounds` -- global batches, sharded.
* :class:`GradientReducer` -- share-seeded backward and bucketed, overlapped gradient allreduce.
* :class:`SyncBatchNorm`, :func:`convert_sync_batchnorm` -- batch norm over the global batch.
* :func:`broadcast_module`, :func:`sync_trainer`, :class:`DistributedRun` -- rank 0's state everywhere,
  and the glue ``striate train`` uses.

Nothing here imports mpi4py until a :class:`World` is created; install it with the ``mpi`` extra
(``pip install 'striate[mpi]'``: mpi4py and the ``mpich`` runtime wheel).
"""

from .data import ShardedAugment, ShardedDataLoader, shard_bounds
from .reducer import GradientReducer
from .run import DistributedRun, broadcast_module, sync_trainer, world_for_run
from .sync_bn import SyncBatchNorm, convert_sync_batchnorm, sync_batch_norm
from .world import World, get_world, launched_world_size

__all__ = [
    "World", "get_world", "launched_world_size",
    "ShardedDataLoader", "ShardedAugment", "shard_bounds",
    "GradientReducer", "SyncBatchNorm", "convert_sync_batchnorm", "sync_batch_norm",
    "broadcast_module", "sync_trainer", "DistributedRun", "world_for_run",
]
