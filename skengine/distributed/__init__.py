"""Data parallelism: several processes share each batch and average their gradients.

The scheme is PyTorch's DistributedDataParallel (and ChainerMN's): every process holds a full replica,
computes the gradient of its shard of the batch, the gradients are summed (each weighted by its shard's
share of the batch), and every replica takes the same optimizer step with the same summed gradient, so
the replicas stay bit-identical.  BatchNorm normalises each shard by its own statistics (DDP without
SyncBatchNorm); the running statistics are averaged.

One communicator interface, ``group.Group``, which the trainer uses whole and both backends implement with
the same signatures (tests/test_group.py checks every member the trainer touches):

- ``rank``, ``world_size``, ``local_rank``, ``local_size`` (the last two among the ranks on this host);
- ``start(fn)``: the start-up hook, ``fn(group)`` on every rank but this one (``ProcessGroup`` forks them;
  under MPI the launcher already started them, and it does nothing); returns the group;
- ``all_reduce(vec)`` of a flat float64 vector, ``broadcast(vec, root=0)``, ``barrier()``;
- ``broadcast_object(obj, root=0)``: rank ``root``'s picklable object (settings, a checkpoint) on every rank;
- ``close(abort=False)``: release the group (with ``abort``, end the other ranks at once); ``abort(code=1)``.

Two backends:

- ``local`` (``ProcessGroup``, local.py): ranks forked from this process on one machine, summing
  through shared memory; no launcher needed.  On a CPU this engine's elementwise passes and im2col copies
  run on one core each, so two processes with a one-thread BLAS each train 1.6-1.8x faster on 2 cores
  than one process with two BLAS threads (benchmarks/RESULTS.md).
- ``mpi`` (``MPIGroup``, mpi.py): ranks started by ``mpiexec`` on one host or many, through mpi4py
  (imported only when such a group is made); CuPy vectors are staged through the host.

``gradients.py`` holds what training exchanges over either: ``average_gradients`` (one vector a step)
and ``broadcast_parameters`` (rank 0's weights to every rank before the first step).
"""
from .gradients import average_gradients, broadcast_parameters, float_buffers, vector_size
from .group import Group
from .local import ProcessGroup, WorkerError
from .mpi import MPIGroup, launched_rank, launched_size, launcher_says, mpi_requested, world_rank, world_size

__all__ = ["Group", "MPIGroup", "ProcessGroup", "WorkerError", "average_gradients", "broadcast_parameters",
           "float_buffers", "launched_rank", "launched_size", "launcher_says", "mpi_requested", "vector_size",
           "world_rank", "world_size"]
