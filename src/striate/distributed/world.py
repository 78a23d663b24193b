"""The MPI world: finding out whether we were launched by ``mpiexec``, and a thin communicator wrapper.

mpi4py is imported lazily (only when a run is distributed), so ``import striate`` never needs MPI.
``launched_world_size()`` answers "are we one of several ranks?" without importing mpi4py when it
can: under ``python -m mpi4py`` the module ``mpi4py.MPI`` is already loaded and is asked directly;
otherwise the launcher's environment variables tell (MPICH's and Intel MPI's hydra set ``PMI_SIZE``,
Open MPI ``OMPI_COMM_WORLD_SIZE``, MVAPICH ``MV2_COMM_WORLD_SIZE``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["World", "mpi", "launched_world_size", "get_world", "MPI_EXTRA_HINT"]

MPI_EXTRA_HINT = ("pip install 'striate[mpi]' (mpi4py and the MPICH runtime wheel `mpich`), then launch with "
                  "mpiexec -n N python -m mpi4py -m striate train ...")

_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def mpi():
    """The ``mpi4py.MPI`` module (initialising MPI), or an ImportError naming the ``mpi`` extra."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"data-parallel training needs mpi4py and an MPI library: {MPI_EXTRA_HINT} "
                          f"({exc})") from exc
    return MPI


def launched_world_size() -> int:
    """How many ranks this process's launcher started (1 when not under mpiexec); never initialises MPI."""
    loaded = sys.modules.get("mpi4py.MPI")
    if loaded is not None and loaded.Is_initialized() and not loaded.Is_finalized():
        return loaded.COMM_WORLD.Get_size()
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return 1


class World:
    """A communicator with the few operations data-parallel training needs.

    ``rank``, ``size``, ``is_main`` (rank 0); array operations work in place on contiguous NumPy
    arrays (the buffer interface: no pickling); object operations (``bcast_object``) pickle.
    """

    def __init__(self, comm=None):
        MPI = mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def allreduce_(self, array: np.ndarray) -> np.ndarray:
        """Sum ``array`` over all ranks, in place (``MPI_IN_PLACE``); returns it."""
        _check_contiguous(array)
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def iallreduce_(self, array: np.ndarray):
        """Start an in-place sum over all ranks; returns the request to wait on."""
        _check_contiguous(array)
        return self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def bcast_(self, array: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``array`` on every rank with root's, in place; returns it."""
        _check_contiguous(array)
        self.comm.Bcast(array, root=root)
        return array

    def bcast_object(self, obj=None, root: int = 0):
        """Root's (picklable) ``obj`` on every rank."""
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"


def _check_contiguous(array) -> None:
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(f"MPI buffers must be writeable C-contiguous ndarrays, got "
                         f"{type(array).__name__} {getattr(array, 'shape', '')}")


def get_world(required: bool = False) -> World | None:
    """The MPI world if this process is one of several ranks (or ``required``), else None.

    ``required=True`` initialises MPI even for a single rank (``mpiexec -n 1`` or no launcher), so
    ``--distributed`` on one process runs the distributed code path with a world of size 1.
    """
    if not required and launched_world_size() <= 1:
        return None
    return World()
