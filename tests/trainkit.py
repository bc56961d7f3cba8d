"""What the training tests share (test_loop.py, test_config.py, test_recipe.py, test_launch.py): the settings of
a small run on a few hundred CIFAR-format images (the ``data_dir`` fixture of conftest.py) and running it, its
weights, a Ctrl-C or a NaN injected at a given step, the two-process run every resume must reproduce, the command
line of the same run (``skengine-train`` and under mpiexec), and the launchers' variables.  Its fixtures work where
a test module imports them."""
import os
import signal

import pytest

import skengine
import skengine.functional as F
from skengine import train
from skengine.optim import SGD
from skengine.training import Interrupted


def cfg(data_dir, out, **kw):
    base = dict(recipe=None, model="sknet_cifar_tiny", data_dir=data_dir, out=str(out), epochs=2, batch_size=64,
                lr=0.8, device="cpu", download=False, tta=False, label_smoothing=0.0)  # lr 0.05 a step of 64
    return {**base, **kw}


def trained(c):
    """train.train(c); a run stopped by Ctrl-C or SIGTERM (Interrupted) gives its last epoch's metrics and where
    it stopped."""
    try:
        return train.train(c)
    except Interrupted as e:
        return {**e.result, "interrupted": {"epoch": e.epoch, "step": e.step}}


def weights(out):
    return {k: v.numpy() for k, v in skengine.load(os.path.join(out, "checkpoint.npz"))["model"].items()}


def interrupt_at(monkeypatch, step):
    """Send ourselves Ctrl-C right after optimizer step number ``step``."""
    real_step, calls = SGD.step, []

    def step_then_interrupt(self, *a):
        real_step(self, *a)
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(SGD, "step", step_then_interrupt)
    return lambda: monkeypatch.setattr(SGD, "step", real_step)


def nan_in_epoch_2(monkeypatch):
    """Make the loss fail as a NaN does (cross_entropy raises) from the first step of epoch 2 (5 steps an
    epoch), in every process."""
    real, calls = F.cross_entropy, []

    def cross_entropy(*a, **k):
        calls.append("label_smoothing" in k)  # the training step's call, not the test pass's
        if sum(calls) > 5 and calls[-1]:
            raise ValueError("cross_entropy: the loss is nan: the logits contain NaN or inf")
        return real(*a, **k)

    monkeypatch.setattr(F, "cross_entropy", cross_entropy)


def nan_weights_at(monkeypatch, step):
    """Make every weight NaN in optimizer step number ``step`` (after the step's loss, which was finite: what
    --lr 1e8 does in an epoch's last step), in every process (each counts its own steps)."""
    real_step, calls = SGD.step, []

    def step_then_nan(self, *a):
        real_step(self, *a)
        calls.append(1)
        if len(calls) == step:
            for group in self.param_groups:
                for p in group["params"]:
                    p.data[...] = float("nan")

    monkeypatch.setattr(SGD, "step", step_then_nan)
    return lambda: monkeypatch.setattr(SGD, "step", real_step)


def fast_cfg(data_dir, out, **kw):
    """The fast recipe with every option on, on the small fake data: a narrow net, 5 steps an epoch."""
    return cfg(data_dir, out, recipe="fast", model="sknet_cifar_fast", model_kwargs={"widths": [16, 32, 32]},
               lr=1.6, warmup=0.25, whiten_bias_epochs=1.0, lookahead=3, tta=True, tta_translate=True,
               label_smoothing=0.2, **kw)


# ---------------------------------------------------------------- data parallel (two processes)

two_processes = pytest.mark.usefixtures("deadline")  # a hung process group fails its test, not the suite


@pytest.fixture(scope="module", name="straight2")
def straight2_fixture(data_dir, tmp_path_factory):
    """Two uninterrupted epochs on two local processes: what their resumed run, and MPI's ranks, reproduce.
    A test module imports it as straight2_fixture: an import named straight2 would be shadowed by the argument of
    each test that takes it (ruff F811)."""
    out = tmp_path_factory.mktemp("straight2")
    trained(cfg(data_dir, out, processes=2))
    return out


# ---------------------------------------------------------------- the command

def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of ``skengine-train ARGV``."""
    try:
        train.main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def small_argv(data_dir, out, *extra):
    return ["--recipe", "none", "--model", "sknet_cifar_tiny", "--data-dir", data_dir, "--out", out, "--epochs", 1,
            "--batch-size", 64, "--lr", 0.8, "--device", "cpu", "--no-download", "--no-tta", *extra]


# ---------------------------------------------------------------- MPI: mpiexec -n 2 (the mpiexec fixture, conftest.py)

MPI_FAULTS = os.path.join(os.path.dirname(__file__), "mpi", "train_faults.py")


def mpi_argv(data_dir, out, *extra):
    """The command line of cfg(data_dir, out): the settings of the straight2 run."""
    return ["--recipe", "none", "--model", "sknet_cifar_tiny", "--data-dir", data_dir, "--out", out, "--epochs", 2,
            "--batch-size", 64, "--lr", 0.8, "--device", "cpu", "--no-download", "--no-tta", "--label-smoothing", 0,
            *extra]


def launcher_vars():
    """The launchers' variables: the ones skengine reads, and srun's."""
    from skengine.distributed.mpi import RANK_VARS, SIZE_VARS
    return set(SIZE_VARS + RANK_VARS + ("PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID"))


def launcher_free_env(**extra):
    """This environment without any launcher's variables, with the checkout importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in launcher_vars()}
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), ROOT_DIR) if p), **extra}


ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
