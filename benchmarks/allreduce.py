"""All-reduce bandwidth of the two data-parallel backends (skengine.distributed), and the trainer's speed at 1
and 2 ranks under each.

    python benchmarks/allreduce.py                       # all-reduce of 1-64 MB float64 vectors, 2 ranks
    python benchmarks/allreduce.py --step --rounds 3     # also the trainer (sknet_cifar_small) at 1 and 2 ranks

All-reduce: ``local`` is a ProcessGroup of 2 forked ranks (shared memory), ``mpi`` an MPIGroup of the 2 ranks
of ``mpiexec -n 2`` (this script, relaunched with --worker).  Every size is timed as the median over
``--rounds`` rounds of the mean of ``--reps`` back-to-back all-reduces, after two warm-up calls; the rounds
alternate the backends, so that load from other jobs on the machine hits both alike.  Bytes/s is the vector's
size over the time of one all-reduce (what a step waits), not a link's bandwidth.

Trainer: ``python -m skengine.train`` on random CIFAR-format images (tests/fakecifar.py; the speed does not
depend on the pixels), one epoch of --limit-train images without TTA; the figure is metrics.csv's images/s
(the training steps alone: forward, backward, all-reduce, optimizer).  The four configurations (local 1 and 2
processes, mpi 1 and 2 ranks) run in turn, round after round.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from skengine.distributed import MPIGroup, ProcessGroup  # noqa: E402

MB = 1 << 20


def time_all_reduce(group, sizes_mb, reps):
    """{size in MB: seconds per all-reduce} on every rank (rank 0's figures are returned)."""
    out = {}
    for mb in sizes_mb:
        vec = np.full(mb * MB // 8, group.rank + 1.0)
        for _ in range(2):
            group.all_reduce(vec)
        group.barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            total = group.all_reduce(vec)
        out[mb] = (time.perf_counter() - t0) / reps
        assert total[0] == group.world_size * (group.world_size + 1) / 2
    return out


def local_round(sizes_mb, reps):
    group = ProcessGroup(2, max(sizes_mb) * MB // 8)
    try:
        group.start(lambda g: time_all_reduce(g, sizes_mb, reps))
        return time_all_reduce(group, sizes_mb, reps)
    finally:
        group.close()


def mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = here if os.access(here, os.X_OK) else shutil.which("mpiexec")
    if exe is None:
        sys.exit("mpiexec not found: pip install skengine[mpi]")
    return exe


def mpi_round(sizes_mb, reps):
    run = subprocess.run([mpiexec(), "-n", "2", sys.executable, os.path.abspath(__file__), "--worker",
                          "--sizes", *map(str, sizes_mb), "--reps", str(reps)], capture_output=True, text=True,
                         check=True)
    return {int(k): v for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}


def train_round(data_dir, model, batch, images, backend, ranks):
    """Images/s of one epoch of the trainer (metrics.csv), as launched for ``backend`` with ``ranks``."""
    out = tempfile.mkdtemp(prefix="allreduce-train-")
    args = ["-m", "skengine.train", "--recipe", "none", "--model", model, "--data-dir", data_dir, "--out", out,
            "--epochs", "1", "--batch-size", str(batch), "--limit-train", str(images), "--limit-test", "500",
            "--no-tta", "--device", "cpu", "--no-download"]
    if backend == "local":
        cmd = [sys.executable, *args, "--backend", "local", "--processes", str(ranks)]
    else:
        cmd = [mpiexec(), "-n", str(ranks), sys.executable, *args, "--backend", "mpi"]
    try:
        subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        with open(os.path.join(out, "metrics.csv")) as f:
            return float(next(csv.DictReader(f))["images_per_s"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64], help="vector sizes in MB")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--step", action="store_true", help="also time the trainer at 1 and 2 ranks")
    p.add_argument("--model", default="sknet_cifar_small")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--images", type=int, default=2048, help="training images of the timed epoch")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:  # one rank of mpi_round
        group = MPIGroup()
        result = time_all_reduce(group, a.sizes, a.reps)
        if group.rank == 0:
            print(json.dumps(result))
        return

    print(f"all-reduce of float64 vectors, 2 ranks, median of {a.rounds} alternating rounds of {a.reps} calls")
    times = {"local": [], "mpi": []}
    for _ in range(a.rounds):
        times["local"].append(local_round(a.sizes, a.reps))
        times["mpi"].append(mpi_round(a.sizes, a.reps))
    print(f"{'MB':>4} {'local ms':>9} {'local GB/s':>10} {'mpi ms':>9} {'mpi GB/s':>9}")
    for mb in a.sizes:
        med = {b: float(np.median([r[mb] for r in times[b]])) for b in times}
        print(f"{mb:>4} {1e3 * med['local']:>9.2f} {mb * MB / med['local'] / 1e9:>10.2f} "
              f"{1e3 * med['mpi']:>9.2f} {mb * MB / med['mpi'] / 1e9:>9.2f}")

    if a.step:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from pathlib import Path

        from fakecifar import write_cifar
        data = tempfile.mkdtemp(prefix="allreduce-data-")
        write_cifar(Path(data), n_train=a.images, n_test=500)
        configs = [("local", 1), ("local", 2), ("mpi", 1), ("mpi", 2)]
        speeds = {c: [] for c in configs}
        try:
            for _ in range(a.rounds):
                for c in configs:
                    speeds[c].append(train_round(data, a.model, a.batch, a.images, *c))
        finally:
            shutil.rmtree(data, ignore_errors=True)
        print(f"\ntrainer, {a.model}, batch {a.batch}, one epoch of {a.images} images: images/s "
              f"(median of {a.rounds} alternating rounds; all rounds)")
        for (backend, ranks), v in speeds.items():
            print(f"{backend:>5} x{ranks}: {np.median(v):7.1f}   {' '.join(f'{s:.1f}' for s in v)}")


if __name__ == "__main__":
    main()
