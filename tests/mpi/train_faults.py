"""Run under mpiexec by tests/test_launch.py (not collected by pytest): ``python -m skengine.train`` with a
fault injected on one rank after its optimizer step number N, then the training command's own handling.

    mpiexec -n 2 python tests/mpi/train_faults.py {interrupt,raise} RANK STEP -- TRAIN_ARGS...

interrupt: that rank alone gets a Ctrl-C (SIGINT) right after step N; terminate: a SIGTERM instead (what
Slurm's scancel and Open MPI's mpirun send); raise: that rank's step N raises.  RANK -1: every rank.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from skengine.distributed import launched_rank  # noqa: E402
from skengine.optim import SGD  # noqa: E402
from skengine.train import main  # noqa: E402

fault, rank, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
real_step, steps = SGD.step, []


def faulty_step(self, *a):
    steps.append(1)
    if len(steps) == step and fault == "raise":
        raise RuntimeError(f"injected failure in step {step}")
    real_step(self, *a)
    if len(steps) == step and fault in ("interrupt", "terminate"):
        os.kill(os.getpid(), signal.SIGINT if fault == "interrupt" else signal.SIGTERM)


if launched_rank() == rank or rank == -1:
    SGD.step = faulty_step
main(sys.argv[sys.argv.index("--") + 1:])
