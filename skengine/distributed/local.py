"""Data parallelism on one machine without a launcher: ranks forked from this process, exchanging vectors
through shared memory (the ``local`` backend, the trainer's default on one machine).

``ProcessGroup(world_size, numel)`` maps a shared float64 buffer of one row per rank plus one for the
result; ``start(fn)`` forks the workers (ranks 1..world_size-1), each running ``fn(group)``.  A collective
writes this rank's row, rank 0 combines the rows in a fixed order into the result row (a sum, or a copy of
the root's row for a broadcast), and a byte over a pipe per worker says "written" and "combined".
``broadcast_object`` broadcasts the pickle's length, then its bytes, six to a float64 (an integer below
2**48, so exact), in rounds of at most ``numel`` values.  Every rank is on this host: ``local_rank`` is
``rank`` and ``local_size`` is ``world_size``.
A process that dies closes its pipe, so the others get an error instead of waiting for ever; one that is
stopped or hangs is given ``timeout`` seconds (WorkerError naming its rank), and ``close(abort=True)``
kills the workers (SIGKILL: a stopped process ignores anything else) without waiting.
"""
import math
import mmap
import multiprocessing
import os
import pickle
import signal

import numpy as np

from ..backend import get_array_module, to_numpy
from ..parallel import get_num_threads, set_num_threads
from .group import Group


class WorkerError(RuntimeError):
    """Another process of the group failed or went away."""


class ProcessGroup(Group):
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

    @property
    def local_rank(self):
        """``rank``: every rank of this group is on this host."""
        return self.rank

    @property
    def local_size(self):
        """``world_size``: every rank of this group is on this host."""
        return self.world_size

    def start(self, fn, *, threads=None):
        """Fork the workers, each running ``fn(self)`` with its own ``rank``, and return the group; BLAS
        threads per process: ``threads`` (default: this process's count divided among the ranks, at least
        one)."""
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
        for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C and SIGTERM are rank 0's to handle (Slurm's
            signal.signal(signum, signal.SIG_IGN)  # scancel signals every process): it stops everyone after a step
        for inherited in self.pipes + [parents_end]:  # rank 0's ends: so that rank 0 going away reads as EOF
            inherited.close()
        self.rank, self.pipes, self.workers = rank, [pipe], []
        try:
            fn(self)
        except WorkerError:  # rank 0 went away or gave up: it reports why
            os._exit(1)

    def all_reduce(self, vec):
        """The sum over ranks of each rank's ``vec`` (1-D, at most ``numel`` long), identical on every rank."""
        return self._collective(vec, "all_reduce", lambda n: np.sum(self.rows[:self.world_size, :n], axis=0,
                                                                    out=self.rows[-1, :n]))

    def broadcast(self, vec, root=0):
        """Rank ``root``'s ``vec`` (at most ``numel`` long) on every rank, bit for bit."""
        self._check_root(root)

        def copy(n):
            self.rows[-1, :n] = self.rows[root, :n]
        return self._collective(vec, "broadcast", copy)

    def broadcast_object(self, obj, root=0):
        """Rank ``root``'s ``obj`` (picklable) on every rank: the root keeps ``obj`` itself, the others get
        its unpickled copy.  An object the root cannot pickle raises there, and WorkerError on the others."""
        self._check_root(root, "broadcast_object")
        if self.world_size == 1:
            return obj
        data, error = b"", None
        if self.rank == root:
            try:
                data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # the others learn of it (length -1) instead of waiting for bytes
                error = e
        size = int(self.broadcast([-1 if error is not None else len(data)], root)[0])
        if error is not None:
            raise error
        if size < 0:
            raise WorkerError(f"broadcast_object: rank {root} could not pickle its object (see its error)")
        slots = -(-size // 6)
        words = np.zeros((slots, 8), np.uint8)  # six bytes in each little-endian 64-bit integer
        if self.rank == root:
            words[:, :6] = np.frombuffer(data.ljust(6 * slots, b"\0"), np.uint8).reshape(slots, 6)
        values = words.view("<u8").ravel().astype(np.float64)
        for lo in range(0, slots, self.numel):
            values[lo:lo + self.numel] = self.broadcast(values[lo:lo + self.numel], root)
        if self.rank == root:
            return obj
        words = values.astype("<u8").view(np.uint8).reshape(slots, 8)
        return pickle.loads(words[:, :6].tobytes()[:size])

    def _collective(self, vec, name, combine):
        xp = get_array_module(vec)
        vec = to_numpy(vec).ravel()  # a CuPy vector is staged through the host
        n = len(vec)
        if n > self.numel:
            raise ValueError(f"{name}: vector of {n} values, the group was made for {self.numel}")
        self.rows[self.rank, :n] = vec
        if self.world_size == 1:
            combine(n)
        elif self.rank == 0:
            for r, pipe in enumerate(self.pipes, 1):
                self._recv(pipe, f"worker rank {r}")
            combine(n)
            for r, pipe in enumerate(self.pipes, 1):
                self._send(pipe, f"worker rank {r}")
        else:
            self._send(self.pipes[0], "rank 0")
            self._recv(self.pipes[0], "rank 0")
        out = self.rows[-1, :n].copy()
        return out if xp is np else xp.asarray(out)

    def abort(self, code=1):
        """Rank 0: kill the workers now; a worker: exit now with ``code`` (rank 0 finds its pipe closed)."""
        if self.rank == 0:
            self.close(abort=True)
        else:
            os._exit(code)

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

    def close(self, abort=False, *, timeout=30.0):
        """Rank 0: wait up to ``timeout`` s for the workers to finish (they stop when their ``fn`` returns),
        then kill what is left; with ``abort`` (an error or a second Ctrl-C on rank 0) kill them at once.
        A worker: close its end of the pipe."""
        for pipe in self.pipes:
            pipe.close()
        for proc in self.workers:
            if not abort:
                proc.join(timeout)
            if proc.is_alive():
                proc.kill()
            proc.join()
        self.workers, self.pipes = [], []


__all__ = ["ProcessGroup", "WorkerError"]
