"""The ``mpi`` backend: ranks started by an MPI launcher (``mpiexec -n 4 python -m skengine.train ...``),
on one host or many, talking through mpi4py, as ChainerMN did for Chainer.

Vectors go through MPI as NumPy float64 buffers (``Allreduce``/``Bcast`` on the buffer, no pickling);
a CuPy vector is staged through the host (``cupy.asnumpy``, then ``xp.asarray``), which is the GPU path
until an NCCL backend exists.  mpi4py is imported only when a group is made: importing it initialises
MPI, which a plain run must not do.  A launcher is recognised by its environment (``launched_size``).
"""
import os
import sys
import time

import numpy as np

from ..backend import get_array_module, to_numpy
from .group import Group

ABORT_GRACE_S = 0.5  # how long MPI_Abort waits for the launcher to forward this rank's last output

# how launchers tell a process the number of ranks and its own: MPICH/Intel MPI's hydra (PMI), Open MPI,
# MVAPICH, then Slurm's srun (SLURM_STEP_NUM_TASKS and SLURM_PROCID, which srun sets in a job step whatever its
# --mpi plugin; PMIx itself puts only the rank in the environment).  The first one set wins: under mpiexec
# inside a Slurm job the launcher's own (PMI_*) come first.  A launcher not listed is used with --backend mpi.
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
INSTALL_HELP = "install mpi4py and an MPI (`pip install skengine[mpi]` brings both, mpiexec included)"


def _env_int(names):
    return _env_var(names)[1]


def _env_var(names):
    """(name, value) of the first of ``names`` set to an integer, else (None, None)."""
    for name in names:
        try:
            return name, int(os.environ[name])
        except (KeyError, ValueError):
            continue
    return None, None


def launched_size():
    """The number of ranks the MPI launcher that started this process says it started (1 if none did)."""
    return _env_int(SIZE_VARS) or 1


def launcher_says(what="size"):
    """Where launched_size() (or with "rank", launched_rank()) comes from, for messages: e.g. "PMI_SIZE=2"
    ("" without a launcher)."""
    name, value = _env_var(SIZE_VARS if what == "size" else RANK_VARS)
    return f"{name}={value}" if name else ""


def launched_rank():
    """This process's rank as its MPI launcher set it in the environment (0 if none did), without MPI."""
    return _env_int(RANK_VARS) or 0


def mpi_requested(backend):
    """Whether a run with ``--backend backend`` is to use MPI: "mpi", or "auto" under a launcher of 2+ ranks."""
    return backend == "mpi" or (backend == "auto" and launched_size() > 1)


def world_size():
    """The number of ranks in MPI's world if MPI was initialised here, else as the launcher set it (or 1)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_size()
    return launched_size()


def world_rank():
    """This process's rank in MPI's world if MPI was initialised here, else as the launcher set it (or 0)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_rank()
    return launched_rank()


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:  # also an mpi4py whose MPI library is missing
        raise RuntimeError(f"the mpi backend needs mpi4py ({e}): {INSTALL_HELP}") from None
    return MPI


class MPIGroup(Group):
    """All the ranks of ``comm`` (default: MPI's world).  ``local_rank`` and ``local_size`` are this
    rank's place among the ranks on its own host (MPI-3's shared-memory split)."""

    def __init__(self, comm=None):
        self.MPI = _mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()

    def start(self, fn):
        """Nothing to start: the launcher started every rank, each running this same program (not ``fn``,
        which is never called here).  Returns the group."""
        return self

    def all_reduce(self, vec):
        """The sum over ranks of each rank's ``vec`` (MPI_Allreduce, MPI_SUM in float64).  MPICH's and Open
        MPI's algorithms give every rank the same bits (each sum is formed once and sent, or formed in the
        same pairs: IEEE addition commutes); the tests check it."""
        host, xp = self._host(vec)
        out = np.empty_like(host)
        self.comm.Allreduce(host, out, op=self.MPI.SUM)
        return out if xp is np else xp.asarray(out)

    def broadcast(self, vec, root=0):
        """Rank ``root``'s ``vec`` on every rank, bit for bit (MPI_Bcast of the float64 buffer)."""
        self._check_root(root)
        host, xp = self._host(vec)
        self.comm.Bcast(host, root=root)
        return host if xp is np else xp.asarray(host)

    def broadcast_object(self, obj, root=0):
        """Rank ``root``'s ``obj`` (anything picklable) on every rank: the run's settings and checkpoint
        (mpi4py's pickling ``bcast``)."""
        self._check_root(root, "broadcast_object")
        return self.comm.bcast(obj, root=root)

    def barrier(self):
        """MPI_Barrier."""
        self.comm.Barrier()

    def abort(self, code=1):
        """MPI_Abort: the launcher ends every rank, on every host, with exit code ``code``."""
        sys.stdout.flush()
        sys.stderr.flush()
        # the launcher forwards a rank's output through its own pipes and stops forwarding when it ends the
        # job: without a moment to drain them, this rank's last lines (what went wrong) are lost at times
        time.sleep(ABORT_GRACE_S)
        self.comm.Abort(code)
        os._exit(code)  # MPICH's MPI_Abort can return while the launcher ends the job: never run on

    def close(self, abort=False):
        """With ``abort``, end every rank, this one too (MPI_Abort, exit code 1); otherwise nothing: mpi4py
        finalises MPI when Python exits."""
        if abort:
            self.abort()

    @staticmethod
    def _host(vec):
        xp = get_array_module(vec)
        return np.array(to_numpy(vec), np.float64).ravel(), xp  # a copy: MPI writes into it


__all__ = ["MPIGroup", "launched_rank", "launched_size", "launcher_says", "mpi_requested", "world_rank",
           "world_size"]
