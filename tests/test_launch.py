"""skengine/training/launch.py: training under a launcher (mpiexec -n 2: the ``mpiexec`` fixture of conftest.py,
which skips without mpi4py and mpiexec), on a few hundred CIFAR-format images (the ``data_dir`` fixture): the
ranks train the weights of two local processes, stop together on Ctrl-C, SIGTERM or a failure and resume bit for
bit; settings and launchers that cannot work are refused in one line before anything is written.  The helpers are
trainkit.py's."""
import os

import numpy as np
import pytest

import skengine
from skengine.training import ConfigError, config
from trainkit import (
    MPI_FAULTS,
    ROOT_DIR,
    cfg,
    launcher_free_env,
    launcher_vars,
    mpi_argv,
    run_cli,
    small_argv,
    straight2_fixture,  # noqa: F401 (the fixture straight2)
    two_processes,
    weights,
)


@pytest.fixture(scope="module")
def straight_mpi(mpiexec, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight_mpi")
    run = mpiexec(2, ["-m", "skengine.train", *mpi_argv(data_dir, out)])
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run


def test_mpi_readme_command_trains_with_rank_0_alone_reporting(mpiexec, data_dir, tmp_path):
    """The README's line, on the fake CIFAR folder: both ranks train, rank 0 alone prints and writes."""
    run = mpiexec(2, ["-m", "skengine.train", "--recipe", "none", "--model", "sknet_cifar_tiny", "--limit-train", 2048,
                      "--epochs", 1, "--data-dir", data_dir, "--out", tmp_path / "run"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("final test accuracy") == 1, run.stdout
    assert run.stderr.count("2 MPI ranks") == 1 and run.stderr.count("epoch 1: train loss") == 1, run.stderr
    ckpt = skengine.load(tmp_path / "run" / "checkpoint.npz")
    assert ckpt["config"]["processes"] == 2 and ckpt["blas_threads"] >= 1 and len(ckpt["history"]) == 1
    for name in ("best.npz", "config.json", "metrics.csv", "confusion.txt"):
        assert (tmp_path / "run" / name).exists(), name


@two_processes
def test_mpi_ranks_train_the_weights_of_two_local_processes(straight_mpi, straight2):
    """The same shards, the same sums (2 ranks: IEEE addition commutes), the same one-thread BLAS on 2 cores:
    equal to float32 rounding (rtol 1e-5, atol 1e-6; bit for bit on this project's 2-core machines).  One
    process on the whole batch differs by design: BatchNorm normalises each shard by its own statistics (the
    BatchNorm-free check against one process is tests/mpi/collectives.py)."""
    out, _ = straight_mpi
    mpi, local = weights(out), weights(straight2)
    assert mpi.keys() == local.keys()
    for k in local:
        np.testing.assert_allclose(mpi[k], local[k], rtol=1e-5, atol=1e-6, err_msg=k)
    h_mpi, h_local = (skengine.load(o / "checkpoint.npz")["history"] for o in (out, straight2))
    assert [h["test_acc"] for h in h_mpi] == [h["test_acc"] for h in h_local]  # the sharded test pass adds up


def test_mpi_ctrl_c_on_one_rank_stops_all_and_resume_is_bit_for_bit(mpiexec, data_dir, tmp_path, straight_mpi):
    """Rank 1 alone gets the Ctrl-C after step 3: every rank stops after step 4, rank 0 checkpoints; resuming
    with another rank count is refused in one line naming both; with mpiexec -n 2 it ends with the weights of
    the uninterrupted MPI run, bit for bit."""
    run = mpiexec(2, [MPI_FAULTS, "interrupt", 1, 3, "--", *mpi_argv(data_dir, tmp_path)])
    assert run.returncode == 130, run.stderr[-3000:]
    assert f"continue with: mpiexec -n 2 python -m skengine.train --resume {tmp_path}" in run.stderr
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"]) == (1, 4)
    wrong = mpiexec(3, ["-m", "skengine.train", "--resume", tmp_path])
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "the run was trained on 2 processes and mpiexec started 3; resume it with mpiexec -n 2" in wrong.stderr
    resumed = mpiexec(2, ["-m", "skengine.train", "--resume", tmp_path])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = weights(straight_mpi[0])
    for k, v in weights(tmp_path).items():
        np.testing.assert_array_equal(v, straight[k], err_msg=k)


@pytest.mark.parametrize("rank", [0, 1])
def test_a_failing_mpi_rank_aborts_every_rank_within_seconds(mpiexec, data_dir, tmp_path, rank):
    """One rank raises in step 3 while the other waits in its next all-reduce: the job ends at once (MPI_Abort),
    non-zero, naming the rank, instead of hanging."""
    run = mpiexec(2, [MPI_FAULTS, "raise", rank, 3, "--", *mpi_argv(data_dir, tmp_path)], timeout=120)
    assert run.returncode != 0 and run.elapsed < 30, (run.returncode, run.elapsed)
    assert f"rank {rank} of 2 failed (RuntimeError: injected failure in step 3); aborting every rank" in run.stderr
    assert not (tmp_path / "checkpoint.npz").exists()


def test_mpi_sigterm_to_every_rank_stops_after_the_step_said_once(mpiexec, data_dir, tmp_path):
    """What Slurm's scancel or time limit (and Open MPI's mpirun on Ctrl-C) does: SIGTERM to every rank after
    step 3.  Like a Ctrl-C: every rank stops after step 4, rank 0 checkpoints and alone says so, exit 130.
    (--processes 2, mpiexec's own count, is accepted.)"""
    run = mpiexec(2, [MPI_FAULTS, "terminate", -1, 3, "--", *mpi_argv(data_dir, tmp_path, "--processes", 2)])
    assert run.returncode == 130, run.stderr[-3000:]
    assert run.stderr.count("stopping after this step") == 1 and "SIGTERM: stopping after this step" in run.stderr
    assert f"continue with: mpiexec -n 2 python -m skengine.train --resume {tmp_path}" in run.stderr
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"], ckpt["config"]["processes"]) == (1, 4, 2)


def test_mpi_argparse_mistakes_and_help_are_printed_once_and_processes_must_be_the_launchers(mpiexec, data_dir,
                                                                                             tmp_path):
    """Every rank parses the command line: --help and argparse's refusals come from rank 0 alone (exit 0 and
    2 on every rank); --processes under MPI is refused in one line naming both counts unless it is mpiexec's."""
    bad = mpiexec(2, ["-m", "skengine.train", "--epochs", "x"], timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "invalid int value: 'x'" in bad.stderr, bad.stderr
    shown = mpiexec(2, ["-m", "skengine.train", "--help"], timeout=60)
    assert shown.returncode == 0 and shown.stdout.count("usage: skengine-train") == 1, shown.stdout[:500]
    one = mpiexec(2, ["-m", "skengine.train", *small_argv(data_dir, tmp_path / "out", "--processes", 1)], timeout=60)
    assert one.returncode == 2 and one.stderr.count("\n") == 1, one.stderr
    assert "--processes 1: under MPI the number of processes is the launcher's, and it started 2 ranks" in one.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("other", ["seed", "black", "test-labels"])
def test_mpi_ranks_that_read_other_data_are_refused_naming_the_rank(mpiexec, data_dir, tmp_path, other):
    """Without --data-dir each host reads its own $SKENGINE_DATA: rank 1's holds as many images and classes, but
    other ones (another seed), one training file of black images, or the test labels turned by one class.
    Refused (exit 2) in one line from rank 1, naming what differs and both descriptions, before training."""
    import sys

    from fakecifar import edit_file, write_cifar
    other_dir = write_cifar(tmp_path / "other", seed=5 if other == "seed" else 0)  # data_dir's is seed 0
    if other == "black":
        edit_file(other_dir, "data_batch_3", lambda b: {**b, b"data": 0 * b[b"data"]})
    elif other == "test-labels":
        edit_file(other_dir, "test_batch", lambda b: {**b, b"labels": [(y + 1) % 10 for y in b[b"labels"]]})
    argv = ["-m", "skengine.train", *small_argv(data_dir, tmp_path / "out")]
    del argv[argv.index("--data-dir"):argv.index("--data-dir") + 2]
    run = mpiexec(1, [*argv, ":", "-n", 1, "-env", "SKENGINE_DATA", other_dir, sys.executable, *argv], timeout=60,
                  env={"SKENGINE_DATA": data_dir})
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr[-2000:]
    differ = {"seed": "training images, training labels, test images, test labels", "black": "training images",
              "test-labels": "test labels"}[other]
    sizes = "320 training images, 100 test images, 10 classes"
    assert (f"error: rank 1: its {differ} differ from rank 0's ({sizes}; rank 0: {sizes}): every host must hold "
            f"the same data at --data-dir") in run.stderr, run.stderr
    assert not (tmp_path / "out" / "checkpoint.npz").exists()


def test_mpi_a_label_out_of_range_is_one_line_naming_the_file(mpiexec, tmp_path):
    """Label 10 (CIFAR-10 has 0 to 9) at index 5 of a training file that every rank reads: exit 2 and one line
    from rank 0 naming the file and the index, before training (not "the loss is not finite on another
    process" in step 1)."""
    from fakecifar import edit_file, write_cifar
    root = edit_file(write_cifar(tmp_path / "data"), "data_batch_1",
                     lambda b: {**b, b"labels": b[b"labels"][:5] + [10] + b[b"labels"][6:]})
    run = mpiexec(2, ["-m", "skengine.train", *small_argv(root, tmp_path / "out")], timeout=60)
    path = root / "cifar-10-batches-py" / "data_batch_1"
    assert run.returncode == 2 and run.stderr == (f"skengine-train: error: {path}: label 10 at index 5 is out of "
                                                  f"range: labels are 0 to 9\n"), run.stderr
    assert not (tmp_path / "out" / "checkpoint.npz").exists()


class Rank1Of2:
    """What rank 1 of two sees of launch's collectives: rank 0's values, recorded by a first call as rank 0."""

    world_size = 2

    def __init__(self, sent=None):
        self.rank, self.sent = (0, []) if sent is None else (1, list(sent))

    def broadcast(self, value, root=0):
        if self.rank == 0:
            self.sent.append(value)
            return value
        return self.sent.pop(0)

    broadcast_object = broadcast


@pytest.mark.parametrize("part", ["training images", "training labels", "test images", "test labels",
                                  "class names", None])
def test_same_data_as_rank_0_compares_the_images_and_labels_of_both_splits(part):
    """Rank 1's data differs from rank 0's in one part only, at one value (a black image, a label turned by one
    class, a name): refused naming that part; the same data (None) is accepted."""
    from skengine.training import launch
    rng = np.random.default_rng(0)
    data = {"training images": rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8),
            "training labels": np.arange(6) % 10, "test images": rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8),
            "test labels": np.arange(4) % 10, "class names": [f"c{i}" for i in range(10)]}
    theirs = {k: v.copy() for k, v in data.items()}
    if part in ("training images", "test images"):
        theirs[part][2] = 0
    elif part is not None:
        theirs[part][3] = (theirs[part][3] + 1) % 10 if "labels" in part else "cat"

    def call(group, d):
        launch.same_data_as_rank_0(group, d["training images"], d["training labels"], d["test images"],
                                   d["class names"], d["test labels"])
    rank_0 = Rank1Of2()
    call(rank_0, data)
    if part is None:
        call(Rank1Of2(rank_0.sent), theirs)
        return
    with pytest.raises(ConfigError, match=f"^its {part} differ from rank 0's \\(6 training images, 4 test images, "
                                          f"10 classes; rank 0: 6 training images, 4 test images, 10 classes\\)"):
        call(Rank1Of2(rank_0.sent), theirs)


def test_a_rank_that_cannot_start_mpi_ends_the_job_within_seconds_naming_itself(mpiexec, data_dir, tmp_path):
    """Rank 1's host lacks mpi4py (an MPMD launch gives it a PYTHONPATH where importing mpi4py fails): it says
    so and ends by SIGTERM, so that mpiexec ends rank 0, which waits in MPI_Init, instead of a hang."""
    import sys
    fake = tmp_path / "nompi" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no mpi4py on this host')\n")
    argv = ["-m", "skengine.train", *small_argv(data_dir, tmp_path / "out")]
    run = mpiexec(1, [*argv, ":", "-n", 1, "-env", "PYTHONPATH", f"{tmp_path / 'nompi'}{os.pathsep}{ROOT_DIR}",
                      sys.executable, *argv], timeout=60)
    assert run.returncode != 0 and run.elapsed < 20, (run.returncode, run.elapsed, run.stderr[-2000:])
    assert "skengine-train: rank 1: --backend auto: the mpi backend needs mpi4py (no mpi4py on this host)" \
        in run.stderr, run.stderr[-2000:]


# ---------------------------------------------------------------- launchers and ranks before MPI starts

def test_a_launcher_whose_count_mpi_does_not_see_is_refused(mpiexec, data_dir, tmp_path):
    """Open MPI's mpirun starting an mpi4py built for MPICH: every process is rank 0 of an MPI world of one.
    Refused (exit 2) in one line from the launcher's rank 0, silently on the others, before anything is
    written; not two runs into one --out."""
    import subprocess
    import sys
    for rank in (0, 1):
        env = launcher_free_env(OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK=str(rank))
        argv = [str(a) for a in small_argv(data_dir, tmp_path / "out")]
        run = subprocess.run([sys.executable, "-m", "skengine.train", *argv], env=env, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
        lines = [line for line in run.stderr.splitlines() if line.startswith("skengine-train")]
        assert run.returncode == 2, run.stderr[-2000:]
        assert lines == (["skengine-train: error: mpiexec started 2 ranks (OMPI_COMM_WORLD_SIZE=2) but MPI sees 1: "
                          "mpi4py is built for a different MPI than this launcher"] if rank == 0 else []), run.stderr
    assert not (tmp_path / "out").exists()


def test_mpi_settings_that_cannot_work_are_one_line_from_the_launchers_rank_0(data_dir, tmp_path, monkeypatch,
                                                                              capsys):
    """Checked without starting MPI: --processes N with the mpi backend, and --backend local under a launcher
    (which would train N separate runs), refused before anything is written; only rank 0 says so."""
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"--processes 2: under MPI the number of processes is the launcher's"):
        config.resolve(cfg(data_dir, tmp_path / "a", processes=2, backend="mpi"))
    with pytest.raises(ConfigError, match=r"--backend must be one of auto, local, mpi, got 'nccl'"):
        config.resolve(cfg(data_dir, tmp_path / "a", backend="nccl"))
    monkeypatch.setenv("PMI_SIZE", "2")
    for rank, expected in (("0", "--backend local under an MPI launcher of 2 ranks would train 2 separate runs"),
                           ("1", None)):
        monkeypatch.setenv("PMI_RANK", rank)
        code, _, err = run_cli(small_argv(data_dir, tmp_path / "out", "--backend", "local"), capsys)
        assert code == 2 and (expected in err and err.count("\n") == 1 if expected else err == ""), err
    assert not (tmp_path / "out").exists()


def test_tasks_of_a_launcher_that_gives_the_rank_alone_refuse_to_train_apart(data_dir, tmp_path, monkeypatch,
                                                                             capsys):
    """A task with PMIX_RANK=1 and no size (some PMIx launcher) refuses --backend local and auto in one line
    naming itself; under srun (SLURM_STEP_NUM_TASKS) --backend local is refused from task 0 as under mpiexec;
    --processes under a launcher of 2 is accepted if 2.  Nothing is trained or written."""
    for name in launcher_vars():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMIX_RANK", "1")
    for backend in ("local", "auto"):
        code, _, err = run_cli(small_argv(data_dir, tmp_path / "out", "--backend", backend), capsys)
        assert code == 2 and err == (f"skengine-train: error: rank 1: --backend {backend}: this process is one of "
                                     f"several tasks of a launcher (PMIX_RANK=1) and would train a separate run: "
                                     f"use --backend mpi\n"), err
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    for rank, expected in (("0", "--backend local under an MPI launcher of 2 ranks would train 2 separate runs"),
                           ("1", None)):
        monkeypatch.setenv("PMIX_RANK", rank)
        code, _, err = run_cli(small_argv(data_dir, tmp_path / "out", "--backend", "local"), capsys)
        assert code == 2 and (expected in err and err.count("\n") == 1 if expected else err == ""), err
    assert not (tmp_path / "out").exists()
    assert config.resolve(cfg(data_dir, tmp_path / "p", processes=2))[0]["processes"] == 2  # MPI not started here
    with pytest.raises(ConfigError, match="--processes 1: under MPI the number of processes is the launcher's, and "
                                          "it started 2 ranks: leave --processes out"):
        config.resolve(cfg(data_dir, tmp_path / "p", processes=1))
