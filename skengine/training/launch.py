"""How a run starts on the ranks of an MPI launcher: the group (refused where the launcher's rank count is not
MPI's, or where MPI cannot start on a rank), the settings read on rank 0 and handed to all, and the set-up
steps every rank takes together, so that a setting that fails on one rank stops them all with one line."""
import hashlib
import signal
import sys

import numpy as np

from ..backend import array_module
from ..distributed import MPIGroup, launched_rank, launched_size, launcher_says, mpi_requested
from .config import resolve
from .errors import ConfigError


def mpi_group(backend):
    """An MPIGroup when MPI is asked for (--backend mpi, or auto under a launcher of 2+ ranks), else None.
    Refused (the launcher's rank 0 says why) when MPI's world is not the launcher's count: an mpi4py built
    for another MPI comes up as N worlds of one rank, which would train N runs into one --out."""
    if not mpi_requested(backend):
        return None
    size = launched_size()
    try:
        group = MPIGroup()
    except RuntimeError as e:  # no mpi4py (or no MPI library), perhaps on this rank's host alone
        if size == 1:
            raise ConfigError(f"--backend {backend}: {e}") from None
        end_before_mpi(f"--backend {backend}: {e}")
    if size > 1 and group.world_size != size:
        if launched_rank() != 0:
            raise ConfigError("", silent=True)
        says = launcher_says()
        launcher = "srun" if says.startswith("SLURM") else "mpiexec"
        raise ConfigError(f"{launcher} started {size} ranks ({says}) but MPI sees {group.world_size}: mpi4py is "
                          f"built for a different MPI than this launcher"
                          + (" (or srun needs --mpi=pmix or --mpi=pmi2)" if launcher == "srun" else ""))
    return group


def end_before_mpi(message):
    """End this rank of a launched job before MPI_Init, with one line naming it.  The other ranks would wait
    in MPI_Init for ever after a plain exit; a rank killed by a signal makes the launcher (hydra, Open MPI's
    mpirun, srun) end the whole job at once."""
    print(f"skengine-train: rank {launched_rank()}: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)
    raise ConfigError(message, silent=True)  # only if SIGTERM is blocked


def together(group, fn):
    """``fn()``; under MPI every rank learns whether it raised ConfigError on any rank, and then all stop:
    the lowest failing rank raises its error (named by rank), the others raise theirs ``silent``."""
    error = value = None
    try:
        value = fn()
    except ConfigError as e:
        error = e
    if group is None:
        if error is not None:
            raise error
        return value
    failed = np.zeros(group.world_size)
    failed[group.rank] = error is not None
    failed = np.flatnonzero(group.all_reduce(failed))
    if len(failed):
        message = str(error) if group.rank == 0 else f"rank {group.rank}: {error}"
        raise ConfigError(message, silent=group.rank != failed[0])
    return value


def resolve_on_rank_0(cfg, group):
    """config.resolve on rank 0, its result (or its error) handed to every rank."""
    if group is None:
        return resolve(cfg)
    result = None
    if group.rank == 0:
        try:
            result = resolve(cfg)
        except ConfigError as e:
            result = e
    result = group.broadcast_object(result)
    if isinstance(result, ConfigError):
        raise ConfigError(str(result), silent=group.rank != 0)
    return result


def mpi_world(mpi, cfg, resume):
    """The launcher's rank count, checked against the batch and, on resume, against the run's own count."""
    world = mpi.world_size
    if world > cfg["batch_size"] // 2 and world > 1:
        raise ConfigError(f"mpiexec started {world} ranks, more than half of --batch-size {cfg['batch_size']}: "
                          f"BatchNorm needs at least 2 images per process")
    saved = resume and resume["config"].get("processes", 1)
    if resume and saved != world:
        raise ConfigError(f"--resume {cfg['resume']}: the run was trained on {saved} processes and mpiexec "
                          f"started {world}; resume it with mpiexec -n {saved}")
    return world


def same_data_as_rank_0(mpi, x_train, y_train, x_test, names, y_test=None):
    """ConfigError on a rank whose data is not rank 0's: its numbers of images and classes and a SHA-256 of each
    of its training images, training labels, test images, test labels (given ``y_test``) and class names,
    against rank 0's (a collective: every rank calls it, once, after loading; 0.1 s for CIFAR's 60,000 images)."""
    parts = {"training images": x_train, "training labels": y_train, "test images": x_test, "test labels": y_test,
             "class names": np.array(names, dtype=str)}
    mine = {what: digest(a) for what, a in parts.items() if a is not None}
    mine["sizes"] = (len(x_train), len(x_test), len(names))
    ours = mpi.broadcast_object(mine)
    differ = [what for what in parts if what in mine and mine[what] != ours[what]]
    if differ:
        def describe(d):
            return "{} training images, {} test images, {} classes".format(*d["sizes"])
        raise ConfigError(f"its {', '.join(differ)} differ from rank 0's ({describe(mine)}; rank 0: "
                          f"{describe(ours)}): every host must hold the same data at --data-dir (or in its "
                          f"$SKENGINE_DATA or ~/.cache/skengine)")


def digest(a):
    """SHA-256 (hex) of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str} {a.shape}".encode())
    h.update(a)
    return h.hexdigest()


def use_gpu(local_rank):
    """One GPU per rank on a host with several (rank i of a host on GPU i mod count); with one, they share it."""
    cp = array_module("cuda")
    count = cp.cuda.runtime.getDeviceCount()
    if count > 1:
        cp.cuda.Device(local_rank % count).use()


__all__ = ["mpi_group", "end_before_mpi", "together", "resolve_on_rank_0", "mpi_world", "same_data_as_rank_0",
           "use_gpu"]
