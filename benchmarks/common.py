"""Shared helpers for the hand-run benchmarks: machine description, thread
control, alternating timing, peak memory.

Candidates are always timed *alternately* (one call of each, round after
round) so that background load hits them all alike; each call is preceded by
a short pause, because OpenBLAS' and OpenMP's worker threads spin for a while
after a call and would otherwise steal cores from the next candidate (that
of the other library, when skengine and PyTorch run in one process).
"""
import contextlib
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

try:
    import threadpoolctl
except ImportError:  # optional: only to read / limit the BLAS thread count
    threadpoolctl = None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info():
    """[(library, version, threads, file)] of the loaded BLAS / OpenMP pools, if threadpoolctl is here."""
    if threadpoolctl is None:
        return []
    return [(d.get("internal_api"), d.get("version"), d.get("num_threads"), os.path.basename(d.get("filepath", "")))
            for d in threadpoolctl.threadpool_info()]


def blas_threads():
    """How many threads NumPy's BLAS uses."""
    if threadpoolctl is not None:
        for d in threadpoolctl.threadpool_info():
            if d.get("user_api") == "blas":
                return int(d["num_threads"])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


@contextlib.contextmanager
def limit_threads(n):
    """Limit every BLAS/OpenMP pool to n threads (a no-op, with a warning, without threadpoolctl)."""
    if n is None:
        yield
    elif threadpoolctl is None:
        if n != blas_threads():
            print(f"(threadpoolctl not installed: cannot limit the BLAS to {n} threads)", file=sys.stderr)
        yield
    else:
        with threadpoolctl.threadpool_limits(n):
            yield


def machine_report(extra=()):
    """Lines describing the machine and libraries, for RESULTS.md."""
    lines = [f"CPU: {cpu_model()}, {os.cpu_count()} logical cores",
             f"Python {platform.python_version()}, NumPy {np.__version__}"]
    for lib, version, threads, path in blas_info():
        lines.append(f"{lib} {version}: {threads} threads ({path})")
    if not blas_info():
        try:
            cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            lines.append(f"BLAS: {cfg.get('name')} {cfg.get('version')} (threadpoolctl not installed)")
        except Exception:
            lines.append("BLAS: unknown (see numpy.show_config())")
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO"))}
    lines.append(f"environment: {env if env else 'no OPENBLAS_/OMP_/MKL_ variables set'}")
    try:
        with open("/proc/loadavg") as f:
            lines.append(f"load average at start: {' '.join(f.read().split()[:3])}")
    except OSError:
        pass
    return lines + list(extra)


def time_alternately(candidates, repeats=5, warmup=1, pause=0.1):
    """Seconds per call of each candidate {name: fn}, measured round-robin.

    Returns {name: [seconds, ...]} with ``repeats`` samples each.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs):
    return float(np.median(xs))


def paired_ratio(num, den):
    """Median over rounds of num[i] / den[i] (both from one time_alternately run)."""
    return float(np.median(np.asarray(num) / np.asarray(den)))


def peak_memory(fn):
    """Peak bytes allocated through Python's allocators (NumPy's included) while fn runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def table(rows, headers):
    """A GitHub-markdown table of rows (lists of already formatted cells)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    fmt = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    out = [fmt.format(*headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(out)
