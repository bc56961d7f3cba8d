"""CPU parallelism: run independent blocks of NumPy + BLAS work on all the BLAS's threads.

NumPy's own loops (copies, elementwise ops) run on one core; only the BLAS
spreads a matmul over several.  A convolution done block by block (im2col
copy, then a small matmul) therefore leaves the other cores idle for the
copies, and a small matmul split over two threads mostly waits for the
second one.  ``run_blocks`` instead gives each worker thread whole blocks,
and the BLAS is switched to one thread while they run, so copies and
matmuls both run on every core, with no waiting inside a matmul.  NumPy
releases the GIL inside both.

The number of workers follows the BLAS: ``OPENBLAS_NUM_THREADS=1`` (or
``set_num_threads(1)``) means one worker, and everything runs in the
calling thread.  With a BLAS other than OpenBLAS there is one worker, and
``set_num_threads`` does nothing.  The BLAS setting is process-wide: a
matmul that another thread of the program runs while blocks are running
gets one thread too.
"""
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_blas = None      # OpenBLAS's (get_num_threads, set_num_threads), or () when not found
_pool = None
_lock = threading.Lock()  # one run_blocks at a time: the BLAS thread count is process-wide


def _forget_pool():
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # a forked child has the pool object but not its threads
    os.register_at_fork(after_in_child=_forget_pool)


def _openblas():
    """The thread controls of NumPy's bundled OpenBLAS, or () when there is none to control."""
    global _blas
    if _blas is None:
        _blas = ()
        root = os.path.dirname(os.path.dirname(np.__file__))
        libs = glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) + \
            glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))
        for path in libs:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                                   ("openblas", "")):
                try:
                    get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                    put = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                except AttributeError:
                    continue
                get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                _blas = (get, put)
                break
            if _blas:
                break
    return _blas


def get_num_threads():
    """How many threads the BLAS uses, and so how many workers ``run_blocks`` starts (1 if unknown)."""
    blas = _openblas()
    return max(1, blas[0]()) if blas else 1


def set_num_threads(n):
    """Set the BLAS's thread count (and so the number of workers); like ``torch.set_num_threads``."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    if _openblas():
        _openblas()[1](int(n))


def run_blocks(work, blocks, parallel=True):
    """``[work(part) for part in parts]``, where ``blocks`` is dealt round-robin into one part per worker.

    ``work`` gets a list of blocks and must only write memory no other part
    writes (it returns what needs combining, e.g. a partial sum).  With one
    worker, one block, or ``parallel=False`` (big matmuls, which the BLAS
    spreads over its threads better), it runs here as ``[work(blocks)]``.
    """
    global _pool
    if not parallel or len(blocks) < 2 or get_num_threads() < 2:
        return [work(blocks)]
    with _lock:
        threads = get_num_threads()
        n = min(threads, len(blocks))
        if _pool is None or _pool._max_workers < n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(n, thread_name_prefix="skengine")
        _openblas()[1](1)
        try:
            return list(_pool.map(work, [blocks[i::n] for i in range(n)]))
        finally:
            _openblas()[1](threads)
