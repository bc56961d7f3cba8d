"""Data parallelism on one machine: several processes share each batch and sum their gradients.

On a CPU this engine's elementwise passes and im2col copies run on one core
each, and a BLAS splits the small matmuls of a small network poorly, so a
second BLAS thread adds little; two processes with a one-thread BLAS each
train 1.6-1.8x faster on 2 cores than one process with two (benchmarks/RESULTS.md).
The scheme is PyTorch's DistributedDataParallel: every process holds a full
replica, computes the gradient of its shard of the batch, the gradients are
summed (each weighted by its shard's share of the batch), and every replica
takes the same optimizer step with the same summed gradient, so the
replicas stay bit-identical.  BatchNorm normalises each shard by its own
statistics (DDP without SyncBatchNorm); the running statistics are averaged.

Mechanics: ``ProcessGroup(world_size, numel)`` maps a shared float64 buffer
of one row per rank plus one for the result; ``start(fn)`` forks the
workers (ranks 1..world_size-1), each running ``fn(group)``.  ``all_reduce``
writes this rank's row, rank 0 sums the rows in a fixed order into the
result row, and a byte over a pipe per worker says "written" and "summed".
A process that dies closes its pipe, so the others get an error instead of
waiting for ever; one that is stopped or hangs is given ``timeout`` seconds
(WorkerError naming its rank), and ``close(abort=True)`` kills the workers
(SIGKILL: a stopped process ignores anything else) without waiting.
"""
import math
import mmap
import multiprocessing
import os
import signal

import numpy as np

from .autograd import Tensor
from .parallel import get_num_threads, set_num_threads


class WorkerError(RuntimeError):
    """Another process of the group failed or went away."""


class ProcessGroup:
    """Rank 0 (this process) and ``world_size - 1`` forked workers, summing vectors of up to ``numel``."""

    def __init__(self, world_size, numel, timeout=600.0):
        if not isinstance(world_size, (int, np.integer)) or world_size < 1:
            raise ValueError(f"ProcessGroup: world_size must be a positive int, got {world_size!r}")
        self.world_size, self.rank, self.numel = int(world_size), 0, int(numel)
        if not 0 < float(timeout) < math.inf:
            raise ValueError(f"ProcessGroup: timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)  # seconds one rank waits for another at an all-reduce
        self._mem = mmap.mmap(-1, 8 * (self.world_size + 1) * max(1, self.numel))  # MAP_SHARED: survives fork
        self.rows = np.frombuffer(self._mem, np.float64).reshape(self.world_size + 1, -1)
        self.workers, self.pipes = [], []

    def start(self, fn, threads=None):
        """Fork the workers, each running ``fn(self)`` with its own ``rank``; BLAS threads per process:
        ``threads`` (default: this process's count divided among the ranks, at least one)."""
        threads = threads or max(1, get_num_threads() // self.world_size)
        set_num_threads(threads)
        ctx = multiprocessing.get_context("fork")
        for rank in range(1, self.world_size):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=self._worker, args=(fn, rank, theirs, mine), daemon=True,
                               name=f"skengine-rank{rank}")
            proc.start()
            theirs.close()
            self.workers.append(proc)
            self.pipes.append(mine)
        return self

    def _worker(self, fn, rank, pipe, parents_end):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rank 0's to handle
        for inherited in self.pipes + [parents_end]:  # rank 0's ends: so that rank 0 going away reads as EOF
            inherited.close()
        self.rank, self.pipes, self.workers = rank, [pipe], []
        try:
            fn(self)
        except WorkerError:  # rank 0 went away or gave up: it reports why
            os._exit(1)

    def all_reduce(self, vec):
        """The sum over ranks of each rank's ``vec`` (1-D, at most ``numel`` long), identical on every rank."""
        n = len(vec)
        if n > self.numel:
            raise ValueError(f"all_reduce: vector of {n} values, the group was made for {self.numel}")
        self.rows[self.rank, :n] = vec
        if self.world_size == 1:
            return self.rows[0, :n].copy()
        if self.rank == 0:
            for r, pipe in enumerate(self.pipes, 1):
                self._recv(pipe, f"worker rank {r}")
            np.sum(self.rows[:self.world_size, :n], axis=0, out=self.rows[-1, :n])
            for r, pipe in enumerate(self.pipes, 1):
                self._send(pipe, f"worker rank {r}")
        else:
            self._send(self.pipes[0], "rank 0")
            self._recv(self.pipes[0], "rank 0")
        return self.rows[-1, :n].copy()

    def _send(self, pipe, who):
        try:
            pipe.send_bytes(b".")
        except (BrokenPipeError, ConnectionResetError):
            raise WorkerError(f"{who} of the process group has exited") from None

    def _recv(self, pipe, who):
        try:
            waited = 0.0
            while not pipe.poll(min(1.0, self.timeout - waited)):
                # counted in slices of at most a second of wall time: while this process itself is stopped
                # (Ctrl-Z, a whole suspended group) the clock runs on, but the others are not to blame
                waited += min(1.0, self.timeout - waited)
                if waited >= self.timeout:
                    raise WorkerError(f"{who} of the process group sent nothing for {self.timeout:g} s: it "
                                      f"is stopped or hung")
            pipe.recv_bytes()
        except (EOFError, ConnectionResetError):
            raise WorkerError(f"{who} of the process group has exited (see its error above)") from None

    def close(self, timeout=30.0, abort=False):
        """Rank 0: wait up to ``timeout`` s for the workers to finish (they stop when their ``fn`` returns),
        then kill what is left; with ``abort`` (an error or a second Ctrl-C on rank 0) kill them at once."""
        for pipe in self.pipes:
            pipe.close()
        for proc in self.workers:
            if not abort:
                proc.join(timeout)
            if proc.is_alive():
                proc.kill()
            proc.join()
        self.workers, self.pipes = [], []


def average_gradients(group, params, buffers, count, extras=()):
    """Average every parameter's gradient over the ranks, weighted by ``count`` (the samples this rank's
    gradient is the mean over), and the float ``buffers`` (BatchNorm's running statistics) likewise:
    afterwards every rank holds the same gradients and buffers.

    A parameter that has no gradient on any rank keeps ``grad = None`` (so the optimizer skips it, as
    it would in one process); one that has it on some ranks gets zeros from the others.
    ``extras`` (numbers) are summed along.  Returns (the summed count, the summed extras).
    """
    sizes = [p.data.size for p in params] + [b.data.size for b in buffers]
    vec = np.zeros(sum(sizes) + len(params) + 1 + len(extras))
    o = 0
    for p in params:
        if p.grad is not None and count:
            vec[o:o + p.data.size] = count * p.grad.data.ravel()
        o += p.data.size
    for b in buffers:
        vec[o:o + b.data.size] = count * b.data.ravel()
        o += b.data.size
    vec[o:o + len(params)] = [p.grad is not None and count > 0 for p in params]
    vec[o + len(params)] = count
    vec[o + len(params) + 1:] = extras
    total = group.all_reduce(vec)
    has_grad, n = total[o:o + len(params)], total[o + len(params)]
    scale, o = 1.0 / max(n, 1), 0
    for p, has in zip(params, has_grad):
        p.grad = Tensor((total[o:o + p.data.size] * scale).reshape(p.data.shape).astype(p.data.dtype)) if has else None
        o += p.data.size
    for b in buffers:
        if n:
            b._write_((total[o:o + b.data.size] * scale).reshape(b.data.shape))
        o += b.data.size
    return n, total[o + len(params) + 1:]


def float_buffers(model):
    """The model's floating-point buffers (BatchNorm running mean and variance), which ranks average."""
    return [b for b in model.buffers() if b.data.dtype.kind == "f"]


def vector_size(model, extras):
    """How long a vector ``average_gradients`` sends for ``model`` with ``extras`` numbers."""
    params = list(model.parameters())
    return sum(p.data.size + 1 for p in params) + sum(b.data.size for b in float_buffers(model)) + 1 + extras


__all__ = ["ProcessGroup", "WorkerError", "average_gradients", "float_buffers", "vector_size"]
