"""Glue between ``striate train`` (:func:`striate.train.run.train_run`) and the MPI world.

``train_run`` asks :func:`world_for_run` whether the run is data-parallel; if so it calls
:meth:`DistributedRun.from_main` for anything only rank 0 may read (the saved run config),
:meth:`DistributedRun.prepare` after building model, loader and optimizer, and
:meth:`DistributedRun.sync` once the trainer exists (after rank 0 alone has loaded a checkpoint).
"""

from __future__ import annotations

import sys

from .. import random as _random
from .data import ShardedAugment, ShardedDataLoader
from .reducer import GradientReducer, _bcast_into
from .sync_bn import convert_sync_batchnorm
from .world import World, get_world

__all__ = ["DistributedRun", "world_for_run", "broadcast_module", "sync_trainer"]


class RemoteError(ValueError):
    """An error raised on rank 0 while it alone was reading, reported on the other ranks."""


def world_for_run(distributed=None) -> "DistributedRun | None":
    """A :class:`DistributedRun` when ``distributed`` is True, or None (auto) and we are one of several ranks."""
    if distributed is False:
        return None
    world = get_world(required=bool(distributed))
    return None if world is None else DistributedRun(world)


def broadcast_module(module, world: World, root: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with root's, in place (``MPI_Bcast``)."""
    for _, t in list(module.named_parameters()) + list(module.named_buffers()):
        _bcast_into(world, t.data)


def sync_trainer(trainer, world: World, root: int = 0) -> None:
    """Make every rank's trainer a copy of root's: weights, optimizer, scheduler, loader, counters, RNG.

    Arrays of the model go by ``Bcast`` into the existing buffers; the rest (optimizer and
    scheduler state dicts, the loader's position, history, callback states, the RNG state) is one
    pickled ``bcast``.  Called at the start of every data-parallel run, fresh or resumed (rank 0
    alone reads the checkpoint), so all ranks start identical.
    """
    broadcast_module(trainer.model, world, root)
    state = None
    if world.rank == root:
        state = {
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
            "loader": trainer.train_loader.state_dict() if hasattr(trainer.train_loader, "state_dict") else None,
            "epoch": trainer.epoch, "step": trainer.step, "history": trainer.history,
            "partial": trainer._partial, "callbacks": [cb.state_dict() for cb in trainer.callbacks],
            "rng": _random.get_rng_state(),
        }
    state = world.bcast_object(state, root)
    if world.rank == root:
        return
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    if state["loader"] is not None:
        trainer.train_loader.load_state_dict(state["loader"])
    trainer.epoch, trainer.step = state["epoch"], state["step"]
    trainer.history, trainer._partial = list(state["history"]), dict(state["partial"])
    for cb, s in zip(trainer.callbacks, state["callbacks"]):
        cb.load_state_dict(s)
    _random.set_rng_state(state["rng"])


class DistributedRun:
    """The data-parallel side of one ``striate train`` run on ``world``.

    Run-config keys it reads (all optional): ``sync_bn`` (default True: batch norm over the global
    batch), ``bucket_cap_mb`` (default 1.0), ``overlap`` (default True).  It records
    ``cfg["distributed"] = {"world_size": N, ...}`` in the run config saved with checkpoints.
    """

    def __init__(self, world: World):
        self.world = world
        self.reducer: GradientReducer | None = None
        self.notes: list[str] = []
        self.batch_norm = ""

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def from_main(self, fn, *args, share: bool = True, **kwargs):
        """``fn(*args, **kwargs)`` evaluated on rank 0 and (``share``) broadcast; its error is raised everywhere."""
        result, error = None, None
        if self.world.is_main:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # re-raised below, after the other ranks were told
                error = exc
        message = self.world.bcast_object(None if error is None else f"{error}")
        if error is not None:
            raise error
        if message is not None:
            raise RemoteError(message)
        return self.world.bcast_object(result) if share else result

    def prepare(self, cfg: dict, model, loader, trainer_kwargs: dict):
        """Shard the loader, synchronise batch norm, hook the trainer; returns (loader, trainer kwargs)."""
        size = self.world.size
        saved = cfg.get("distributed") or {}
        sync_bn = bool(cfg.get("sync_bn", saved.get("sync_bn", True)))
        overlap = bool(cfg.get("overlap", saved.get("overlap", True)))
        cap = float(cfg.get("bucket_cap_mb", saved.get("bucket_cap_mb", 1.0)))
        cfg["distributed"] = {"world_size": size, "sync_bn": sync_bn, "overlap": overlap, "bucket_cap_mb": cap}
        from ..nn.norm import _BatchNorm

        norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        if saved.get("world_size", size) != size:
            same = "the same up to rounding" if sync_bn or not norms else "different: batch norm is per rank"
            self.notes.append(f"note: this run was started on {saved['world_size']} ranks and continues on {size}; "
                              f"the global batches are unchanged, so the training is {same}")
        self.batch_norm = "no batch norm" if not norms else f"batch norm {'synchronised' if sync_bn else 'per rank'}"
        if sync_bn:
            convert_sync_batchnorm(model, self.world)
            buffers = ()
        else:
            buffers = [b for m in norms for b in (m.running_mean, m.running_var) if b is not None]
        self.reducer = GradientReducer(model.parameters(), self.world, bucket_cap_mb=cap, overlap=overlap,
                                       buffers=buffers)
        sharded = ShardedDataLoader.from_loader(loader, self.world.rank, size)
        kwargs = dict(trainer_kwargs)
        if kwargs.get("augment") is not None:
            kwargs["augment"] = ShardedAugment(kwargs["augment"], sharded)
        kwargs.update(backward_fn=self.reducer.backward, reduce_stats=self.reducer.reduce_stats,
                      is_main=self.world.is_main)
        if not self.world.is_main:
            kwargs["progress"] = False
        return sharded, kwargs

    def sync(self, trainer) -> None:
        """Copy rank 0's trainer state to every rank, then log the layout once."""
        sync_trainer(trainer, self.world)
        if "mpi4py.run" not in sys.modules:
            self.notes.append("warning: not started through `python -m mpi4py`, so an error on one rank may leave the "
                              "others waiting; launch as mpiexec -n N python -m mpi4py -m striate train ...")
        for note in self.notes:
            trainer.log(note)
        r = self.reducer
        k = len(r.buckets)
        trainer.log(f"data-parallel over {self.world.size} MPI ranks: global batch {trainer.train_loader.batch_size}, "
                    f"{k} gradient bucket{'' if k == 1 else 's'}, {'overlapped' if r.overlap else 'blocking'} "
                    f"allreduce, {self.batch_norm}")
