"""skengine/training/loop.py: the training run on a few hundred CIFAR-format images (the ``data_dir`` fixture of
conftest.py): it learns and writes its outputs, resumes bit for bit, survives Ctrl-C and SIGTERM and stops on NaN
with the last checkpoint intact, on one process and on two local ones (the helpers are trainkit.py's)."""
import csv
import importlib.util
import os
import signal

import numpy as np
import pytest

import skengine
import skengine.functional as F
from skengine import evaluate
from skengine.data import CIFAR_MEAN_STD, DataLoader
from skengine.models import create
from skengine.optim import SGD
from skengine.training import DEFAULTS, ConfigError, Diverged, extensions, loop
from trainkit import (
    ROOT_DIR,
    cfg,
    interrupt_at,
    nan_in_epoch_2,
    nan_weights_at,
    run_cli,
    small_argv,
    straight2_fixture,  # noqa: F401 (the fixture straight2)
    trained,
    two_processes,
    weights,
)


def test_loss_falls_and_outputs_are_written(data_dir, tmp_path):
    trained(cfg(data_dir, tmp_path, epochs=3, lr=1.6))
    rows = open(tmp_path / "metrics.csv").read().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,train_loss")
    history = skengine.load(tmp_path / "checkpoint.npz")["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.3  # 10 classes: chance is 0.1
    expected = ["checkpoint.npz", "best.npz", "config.json", "confusion.txt"]
    expected += ["curves.png"] if importlib.util.find_spec("matplotlib") else []  # an optional extra
    for name in expected:
        assert (tmp_path / name).exists(), name
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """Two uninterrupted epochs: what every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight")
    trained(cfg(data_dir, out))
    return weights(out)


@pytest.mark.parametrize("step,epoch,batch", [(3, 1, 3), (5, 1, 5)])  # mid-epoch, and at the epoch's end
def test_ctrl_c_checkpoints_and_resume_continues_bit_for_bit(data_dir, tmp_path, monkeypatch, straight,
                                                              step, epoch, batch):
    restore = interrupt_at(monkeypatch, step)  # 5 steps per epoch
    trained(cfg(data_dir, tmp_path))
    restore()
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"]) == (epoch, batch)
    # the second case resumes without naming the data folder: the run's own is used
    trained(cfg(data_dir if step == 3 else None, tmp_path, resume=str(tmp_path)))
    resumed = weights(tmp_path)
    assert resumed.keys() == straight.keys()
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(data_dir, tmp_path, monkeypatch):
    nan_in_epoch_2(monkeypatch)
    with pytest.raises(Diverged, match=r"nan.*epoch 2, step 1; the last good checkpoint is .*checkpoint.npz"):
        trained(cfg(data_dir, tmp_path, epochs=2))
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"], len(ckpt["history"])) == (1, 5, 1)
    with pytest.raises(Diverged, match=r"nan.*epoch 1, step 1; no checkpoint was written yet"):
        trained(cfg(data_dir, tmp_path / "fresh", epochs=1, lr=1e30))


@pytest.mark.usefixtures("deadline")
@pytest.mark.parametrize("processes", [1, 2])
def test_weights_made_nan_by_an_epochs_last_step_stop_in_one_line_and_leave_the_folder_to_a_rerun(
        data_dir, tmp_path, monkeypatch, capsys, processes):
    """--lr 1e8 made the weights NaN in an epoch's last step, whose loss was finite: the test pass raised a
    ValueError (a traceback on each rank, exit code 1) and left config.json alone, so that a rerun was refused and
    the --resume it suggested found no checkpoint."""
    out = tmp_path / "out"
    restore = nan_weights_at(monkeypatch, 5)  # 5 steps an epoch: epoch 1's last
    code, stdout, stderr = run_cli(small_argv(data_dir, out, "--epochs", 2, "--processes", processes), capsys)
    restore()
    assert code == 1 and "Traceback" not in stderr and "final test accuracy" not in stdout, stderr
    assert stderr.splitlines()[-1] == ("skengine-train: diverged at epoch 1 step 5 (the test pass's logits are not "
                                       "finite after this step): lower --lr; no checkpoint was written yet")
    assert not out.exists()  # as before the run: a rerun takes it
    code, stdout, stderr = run_cli(small_argv(data_dir, out, "--epochs", 2, "--processes", processes), capsys)
    assert code == 0 and "final test accuracy" in stdout, stderr
    restore = nan_weights_at(monkeypatch, 10)  # epoch 2's last: epoch 1's checkpoint stays, and the run with it
    with pytest.raises(Diverged, match=r"at epoch 2 step 5 \(the test pass's .*the last good checkpoint is"):
        trained(cfg(data_dir, out, processes=processes, overwrite=True))
    restore()
    ckpt = skengine.load(out / "checkpoint.npz")
    assert (ckpt["epoch"], len(ckpt["history"])) == (1, 1) and all(np.isfinite(w).all() for w in weights(out).values())


def test_a_second_run_into_the_same_out_is_refused_while_the_first_holds_it(data_dir, tmp_path, monkeypatch, capsys):
    """Two runs started 0.5 s apart with one --out were both accepted; the second's files replaced the first's."""
    out, real, second = tmp_path / "out", loop.load_data, []

    def load_data_as_a_second_run_starts(c):  # the first run has claimed the folder and loads its data
        if not second:
            second.append("started")
            second.append(run_cli(small_argv(data_dir, out, "--seed", 1), capsys))
        return real(c)

    monkeypatch.setattr(loop, "load_data", load_data_as_a_second_run_starts)
    trained(cfg(data_dir, out, epochs=1))
    code, _, stderr = second[1]
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"--out {out} is in use by another run (process {os.getpid()} on " in stderr
    assert skengine.load(out / "checkpoint.npz")["config"]["seed"] == 0
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # the lock went with the run


def test_a_lock_left_by_a_killed_run_is_taken_over(data_dir, tmp_path):
    """The lock is the kernel's (flock): a run killed with -9 leaves its lock file, which the next run takes."""
    import subprocess
    import sys
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'process 4242 on elsewhere')\n"
                               "print('held', flush=True); time.sleep(60)", str(out / loop.FolderClaim.LOCK)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT_DIR)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError, match=r"is in use by another run \(process 4242 on elsewhere\)"):
            trained(cfg(data_dir, out, epochs=1))
        assert os.listdir(out) == [loop.FolderClaim.LOCK]
    finally:
        holder.kill()
        holder.wait()
    trained(cfg(data_dir, out, epochs=1))
    assert (out / "checkpoint.npz").exists() and not (out / loop.FolderClaim.LOCK).exists()


def test_resuming_a_finished_run_says_so_and_trains_nothing(data_dir, tmp_path, capsys):
    trained(cfg(data_dir, tmp_path, epochs=1))
    kept = open(tmp_path / "checkpoint.npz", "rb").read()
    code, stdout, stderr = run_cli(["--resume", tmp_path], capsys)
    assert code == 0 and "final test accuracy" in stdout, stderr
    assert f"--resume {tmp_path}: the run is already complete (epoch 1 of 1): nothing is trained" in stderr
    assert "epoch 1/1" not in stderr and "resumed from" not in stderr
    assert open(tmp_path / "checkpoint.npz", "rb").read() == kept


def test_resuming_a_finished_run_whose_weights_give_nan_is_one_line(data_dir, tmp_path, capsys):
    """A finished run whose checkpoint holds finite weights that give NaN logits (a BatchNorm variance of -1):
    --resume tested it again and failed with a TypeError traceback.  Now the line of a test pass that is not
    finite in training, exit code 1, and the checkpoint as it was."""
    trained(cfg(data_dir, tmp_path, epochs=1))
    state = skengine.load(tmp_path / "checkpoint.npz")
    negative = [k for k in state["model"] if k.endswith("running_var")]
    for k in negative:
        state["model"][k] = skengine.Tensor(-np.ones(state["model"][k].shape, np.float32))
    skengine.save(state, tmp_path / "checkpoint.npz")
    kept, table = open(tmp_path / "checkpoint.npz", "rb").read(), (tmp_path / "confusion.txt").read_text()
    code, stdout, stderr = run_cli(["--resume", tmp_path], capsys)
    assert negative and code == 1 and "Traceback" not in stderr and "final test accuracy" not in stdout, stderr
    assert stderr.splitlines()[-1] == (f"skengine-train: --resume {tmp_path}: the finished run's weights give test "
                                       f"logits that are not finite (a NaN or inf weight, or a negative BatchNorm "
                                       f"variance): it has no final model to test")
    assert open(tmp_path / "checkpoint.npz", "rb").read() == kept and (tmp_path / "confusion.txt").read_text() == table
    code, _, stderr = run_cli(["--resume", tmp_path, "--out", tmp_path / "b"], capsys)  # into a new folder
    assert code == 1 and not (tmp_path / "b").exists(), stderr  # left as before, for a rerun


def test_settings_the_model_has_no_use_for_are_named(data_dir, tmp_path, capsys):
    """--no-whiten and --whiten-bias-epochs on a model without a whitening layer were ignored without a word."""
    code, _, stderr = run_cli(small_argv(data_dir, tmp_path, "--no-whiten", "--whiten-bias-epochs", 1), capsys)
    assert code == 0, stderr
    assert "--no-whiten is ignored: sknet_cifar_tiny has no whitening layer" in stderr
    assert "--whiten-bias-epochs 1.0 is ignored: sknet_cifar_tiny has no whitening layer" in stderr
    code, _, stderr = run_cli(small_argv(data_dir, tmp_path / "b"), capsys)
    assert code == 0 and "is ignored" not in stderr, stderr


def test_flip_tta_runs_on_the_last_epoch_only_and_keeps_the_plain_numbers(data_dir, tmp_path):
    trained(cfg(data_dir, tmp_path, epochs=2, tta=True))
    with open(tmp_path / "metrics.csv") as f:
        history = list(csv.DictReader(f))
    assert history[0]["test_acc_tta"] == "" and history[1]["test_acc_tta"] != ""
    # the plain numbers of the TTA pass are those of a plain pass
    net = create("sknet_cifar_tiny", num_classes=10)
    net.load_state_dict(skengine.load(str(tmp_path / "checkpoint.npz"))["model"])
    (_, _), (x_test, y_test), _ = loop.load_data({**DEFAULTS, **cfg(data_dir, tmp_path)})
    mean, std = CIFAR_MEAN_STD["cifar10"]
    loader = DataLoader(x_test, y_test, 50, mean=mean, std=std)
    plain, flipped = evaluate.evaluate(net, loader), evaluate.evaluate(net, loader, tta=True)
    assert flipped["plain_acc"] == plain["acc"] and flipped["plain_loss"] == pytest.approx(plain["loss"], rel=1e-6)
    assert float(history[1]["test_acc"]) == pytest.approx(plain["acc"])
    assert float(history[1]["test_acc_tta"]) == pytest.approx(flipped["acc"])


@pytest.mark.parametrize("processes", [1, 2])
def test_weights_made_nan_in_an_untested_epoch_stop_the_run_before_its_checkpoint(data_dir, tmp_path, monkeypatch,
                                                                                  processes):
    """With --test-every 0 no test pass saw epoch 1's NaN weights: they were checkpointed as the last good ones, and
    --resume failed on them at once."""
    restore = nan_weights_at(monkeypatch, 5)  # 5 steps an epoch: epoch 1's last
    with pytest.raises(Diverged, match=r"at epoch 1 step 5 \(the weights are not finite after this step\)"):
        trained(cfg(data_dir, tmp_path, epochs=3, test_every=0, processes=processes))
    restore()
    assert not (tmp_path / "checkpoint.npz").exists()


@pytest.mark.parametrize("every,epochs,tested", [(0, 2, [2]), (2, 3, [2, 3])])
def test_test_every_tests_those_epochs_and_the_last_and_changes_no_weight(data_dir, tmp_path, straight, capsys,
                                                                           every, epochs, tested):
    trained(cfg(data_dir, tmp_path, epochs=epochs, test_every=every))
    with open(tmp_path / "metrics.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(h["epoch"]) for h in history if h["test_acc"] != ""] == tested
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch 1:")]
    assert len(lines) == 1 and "test" not in lines[0] and " img/s" in lines[0]
    assert (tmp_path / "best.npz").exists()
    if epochs == 2:  # the same two epochs as the straight run's, tested after each: the same weights
        got = weights(tmp_path)
        for k in straight:
            np.testing.assert_array_equal(got[k], straight[k], err_msg=k)


def test_missing_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(ConfigError, match="cifar-10-batches-py"):
        trained(cfg(str(tmp_path / "nothing"), tmp_path / "out", epochs=1))
    os.mkdir(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cifar-10-batches-py"):
        trained(cfg(str(tmp_path / "empty"), tmp_path / "out", epochs=1))
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_offline_download_failure_is_one_line(data_dir, tmp_path, monkeypatch, capsys):
    def offline(dataset, root=None):
        raise RuntimeError(f"could not download {dataset} from https://example.invalid: no network. Without "
                           f"network access, fetch the archive elsewhere and put it at {root}, then run again.")

    monkeypatch.setattr(skengine.data.download, "download_and_extract", offline)
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli(small_argv(str(tmp_path / "empty"), tmp_path / "out", "--download"), capsys)
    assert code == 2 and stderr.count("\n") == 1 and "could not download cifar10" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("images", [64, 128, 192, 256])  # 1, 2, 3 and 4 steps (4 crashed OneCycleLR)
def test_short_runs_train(data_dir, tmp_path, images):
    result = trained(cfg(data_dir, tmp_path, epochs=1, limit_train=images, limit_test=100))
    assert np.isfinite(result["train_loss"])
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == images // 64


def test_train_per_class_keeps_the_first_n_of_each_class_in_the_files_order(data_dir):
    full, _, _ = loop.load_data({**DEFAULTS, "data_dir": data_dir, "download": False})
    (images, labels), _, _ = loop.load_data({**DEFAULTS, "data_dir": data_dir, "download": False,
                                            "train_per_class": 3})
    assert np.array_equal(np.bincount(labels, minlength=10), [3] * 10)
    expected = [i for i, y in enumerate(full[1]) if list(full[1][:i]).count(y) < 3]  # by hand, image by image
    assert np.array_equal(labels, full[1][expected]) and np.array_equal(images, full[0][expected])


def test_resume_warns_when_the_blas_thread_count_differs(data_dir, tmp_path, monkeypatch, capsys):
    restore = interrupt_at(monkeypatch, 2)
    trained(cfg(data_dir, tmp_path))
    restore()
    saved = skengine.load(tmp_path / "checkpoint.npz")["blas_threads"]
    monkeypatch.setattr(loop, "get_num_threads", lambda: saved + 1)
    capsys.readouterr()
    trained({"resume": str(tmp_path), "epochs": 1})
    assert f"checkpointed with {saved} BLAS threads and continues with {saved + 1}" in capsys.readouterr().err


def test_overwrite_replaces_the_old_runs_files(data_dir, tmp_path, monkeypatch):
    """A new run that stopped early beside the old run's checkpoint, best and metrics made a folder that
    mixed two runs (and --resume quietly continued the old one)."""
    trained(cfg(data_dir, tmp_path, epochs=1))
    restore = interrupt_at(monkeypatch, 2)
    result = trained(cfg(data_dir, tmp_path, epochs=1, seed=3, overwrite=True))
    restore()
    assert result["interrupted"] == {"epoch": 1, "step": 2}
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json"]
    assert skengine.load(tmp_path / "checkpoint.npz")["config"]["seed"] == 3


def test_ctrl_c_in_the_last_step_of_the_last_epoch_completes_the_run(data_dir, tmp_path, monkeypatch, capsys):
    restore = interrupt_at(monkeypatch, 5)  # 5 steps: the run's last
    code, stdout, _ = run_cli(small_argv(data_dir, tmp_path / "out"), capsys)
    restore()
    assert code == 0 and "final test accuracy" in stdout and (tmp_path / "out" / "confusion.txt").exists()


def test_the_final_line_leads_with_the_tta_number_and_gives_the_plain_one(data_dir, tmp_path, capsys):
    """With --tta the run's final test is TTA's (as timm's and airbench's): the line leads with it, from
    metrics.csv's last row, and names the plain number beside it; without, the plain number alone."""
    for tta in ("--tta", "--no-tta"):
        code, stdout, _ = run_cli(small_argv(data_dir, tmp_path / tta, tta), capsys)
        with open(tmp_path / tta / "metrics.csv") as f:
            last = list(csv.DictReader(f))[-1]
        plain = f"{100 * float(last['test_acc']):.2f}%"
        expected = (f"final test accuracy: {100 * float(last['test_acc_tta']):.2f}% with TTA ({plain} without)"
                    if tta == "--tta" else f"final test accuracy: {plain}")
        assert code == 0 and stdout.splitlines()[-1] == expected, stdout


def test_best_npz_of_an_ema_run_holds_the_weights_it_was_tested_with(data_dir, tmp_path):
    """best.npz held the raw weights but the EMA weights' accuracy."""
    trained(cfg(data_dir, tmp_path, epochs=1, ema=0.9))
    best = skengine.load(tmp_path / "best.npz")
    net = create("sknet_cifar_tiny", num_classes=10)
    net.load_state_dict(best["model"])
    (_, _), (x_test, y_test), _ = loop.load_data({**DEFAULTS, **cfg(data_dir, tmp_path)})
    mean, std = CIFAR_MEAN_STD["cifar10"]
    acc = evaluate.evaluate(net, DataLoader(x_test, y_test, 50, mean=mean, std=std))["acc"]
    assert acc == pytest.approx(float(best["test_acc"]))


def test_a_run_resumed_into_a_new_folder_takes_its_best_model_along(data_dir, tmp_path, monkeypatch):
    restore = interrupt_at(monkeypatch, 7)  # in epoch 2, after epoch 1 wrote best.npz
    trained(cfg(data_dir, tmp_path / "a"))
    restore()
    trained({"resume": str(tmp_path / "a"), "out": str(tmp_path / "b")})
    assert (tmp_path / "b" / "best.npz").exists()


def test_overwrite_with_a_foreign_checkpoint_inside_out_replaces_outs_run(data_dir, tmp_path, monkeypatch):
    """--resume A/b_copy.npz --out A --overwrite wrote run B's config beside run A's best.npz and metrics."""
    a, b = tmp_path / "a", tmp_path / "b"
    trained(cfg(data_dir, a, epochs=1, seed=1))
    restore = interrupt_at(monkeypatch, 2)  # run B stops in its first epoch
    trained(cfg(data_dir, b, epochs=2, seed=2))
    restore()
    with open(b / "checkpoint.npz", "rb") as src, open(a / "b_copy.npz", "wb") as dst:
        dst.write(src.read())
    restore = interrupt_at(monkeypatch, 1)  # and again right away, before it writes best.npz or metrics.csv
    trained({"resume": str(a / "b_copy.npz"), "out": str(a), "overwrite": True})
    restore()
    assert skengine.load(a / "checkpoint.npz")["config"]["seed"] == 2
    assert sorted(f for f in os.listdir(a) if f != "b_copy.npz") == ["checkpoint.npz", "config.json"]


@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_stops_after_the_step_with_a_checkpoint(data_dir, tmp_path, monkeypatch, capsys, deadline,
                                                        processes):
    """SIGTERM (Slurm's scancel or time limit, `kill`) is a first Ctrl-C: the run stops after the step and
    checkpoints; a forked worker, which gets it too, ignores it."""
    def unhandled(*_):
        raise RuntimeError("SIGTERM reached the process's own handler")
    old = signal.signal(signal.SIGTERM, unhandled)  # not the default action: that would end pytest
    try:
        real_step, calls = SGD.step, []

        def step_then_terminate(self, *a):
            real_step(self, *a)
            calls.append(1)
            if len(calls) == 3:  # on every rank: each forked worker counts its own steps
                os.kill(os.getpid(), signal.SIGTERM)

        monkeypatch.setattr(SGD, "step", step_then_terminate)
        result = trained(cfg(data_dir, tmp_path, processes=processes))
    finally:
        signal.signal(signal.SIGTERM, old)
    step = 3 if processes == 1 else 4  # rank 0's word reaches the workers in the next step's all-reduce
    assert result["interrupted"] == {"epoch": 1, "step": step}
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == step
    assert capsys.readouterr().err.count("SIGTERM: stopping after this step") == 1


# ---------------------------------------------------------------- data parallel (two local processes)

def test_process_count(monkeypatch):
    monkeypatch.setattr(loop, "get_num_threads", lambda: 2)
    assert [loop.resolve_processes("auto", "cpu", b) for b in (32, 64, 128, 512)] == [1, 1, 2, 2]
    assert loop.resolve_processes("auto", "cuda", 512) == 1 and loop.resolve_processes("3", "cpu", 8) == 3


@two_processes
def test_two_processes_learn(straight2):
    history = skengine.load(straight2 / "checkpoint.npz")["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"] and history[-1]["test_acc"] > 0.3
    assert [h["epoch"] for h in history] == [1, 2]
    assert (straight2 / "confusion.txt").exists() and (straight2 / "best.npz").exists()


@two_processes
def test_two_processes_resume_bit_for_bit(data_dir, tmp_path, monkeypatch, straight2):
    """Ctrl-C reaches rank 0 during step 3; the ranks agree on it at the next step's reduce.
    The resumed run keeps its 2 processes without being told."""
    restore = interrupt_at(monkeypatch, 3)
    trained(cfg(data_dir, tmp_path, processes=2))
    restore()
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == 4
    trained(cfg(data_dir, tmp_path, resume=str(tmp_path)))  # processes="auto": the run's own 2
    resumed, straight = weights(tmp_path), weights(straight2)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


@two_processes
def test_two_processes_stop_together_on_nan(data_dir, tmp_path, monkeypatch):
    nan_in_epoch_2(monkeypatch)
    with pytest.raises(Diverged, match=r"nan.*epoch 2, step 1; the last good checkpoint is .*checkpoint.npz"):
        trained(cfg(data_dir, tmp_path, epochs=2, processes=2))
    assert skengine.load(tmp_path / "checkpoint.npz")["epoch"] == 1


@two_processes
def test_a_nan_on_the_worker_alone_stops_every_process(data_dir, tmp_path, monkeypatch):
    real, main = F.cross_entropy, os.getpid()

    def nan_in_worker(*a, **k):
        if os.getpid() != main:
            raise ValueError("cross_entropy: the loss is nan: injected")
        return real(*a, **k)

    monkeypatch.setattr(F, "cross_entropy", nan_in_worker)
    with pytest.raises(Diverged, match=r"not finite on another process at epoch 1, step 1;"):
        trained(cfg(data_dir, tmp_path, epochs=1, processes=2))


@two_processes
@pytest.mark.parametrize("limit,steps", [(261, 5), (259, 4)])
def test_two_processes_take_a_short_last_batch_or_drop_one_too_short(data_dir, tmp_path, limit, steps):
    """Batches of 64: 261 images end with 5 (shards of 2 and 3); 259 end with 3, which would leave one
    image for one process's BatchNorm, so that batch is dropped."""
    trained(cfg(data_dir, tmp_path, processes=2, limit_train=limit))
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == steps


@two_processes
@pytest.mark.parametrize("processes", [1, 2])
def test_ctrl_c_during_the_test_pass_stops_after_that_epoch(data_dir, tmp_path, monkeypatch, processes):
    real, main = extensions.evaluate, os.getpid()

    def evaluate_then_interrupt(*a, **k):
        result = real(*a, **k)
        if os.getpid() == main:
            os.kill(main, signal.SIGINT)
        return result

    monkeypatch.setattr(extensions, "evaluate", evaluate_then_interrupt)
    trained(cfg(data_dir, tmp_path, processes=processes))
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"], len(ckpt["history"])) == (1, 5, 1)
    assert not (tmp_path / "confusion.txt").exists()  # interrupted: no final report


@two_processes
def test_ctrl_c_twice_while_a_worker_is_stopped_aborts_and_leaves_no_worker(data_dir, tmp_path, monkeypatch, capsys):
    """A worker stopped with SIGSTOP made rank 0 wait, and two Ctrl-C's then hung in the group's close()
    (SIGTERM stays pending on a stopped process); now the second Ctrl-C kills the workers at once."""
    import multiprocessing
    import threading
    import time

    real_step, calls = SGD.step, []

    def step_then_stop_the_worker(self, *a):
        real_step(self, *a)
        calls.append(1)
        if len(calls) == 2:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGSTOP)
            for delay in (0.5, 1.0):  # two Ctrl-C's while rank 0 waits for the stopped worker
                threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()

    monkeypatch.setattr(SGD, "step", step_then_stop_the_worker)
    t0 = time.monotonic()
    try:
        code, _, stderr = run_cli(small_argv(data_dir, tmp_path / "out", "--processes", 2), capsys)
    finally:
        for child in multiprocessing.active_children():  # what the old close() left behind
            os.kill(child.pid, signal.SIGKILL)
    assert code == 130 and "aborted" in stderr and time.monotonic() - t0 < 60
    assert multiprocessing.active_children() == []


def test_the_whitening_bias_takes_no_gradient_once_it_stops_and_the_weights_are_the_same(data_dir, tmp_path,
                                                                                         monkeypatch):
    """After whiten_bias_epochs the bias's learning rate is 0 for good: from then on no gradient is computed for it,
    so the first convolution needs only its dW (no dX, no GELU backward on the whitening output), and the run ends
    on the same weights, bit for bit, as one that goes on computing the bias's gradient."""
    import skengine.functional.conv as conv_fn
    from skengine.training import loop
    from trainkit import fast_cfg

    needs, real = [], conv_fn.conv2d_backward
    monkeypatch.setattr(conv_fn, "conv2d_backward", lambda *a, need: needs.append(need) or real(*a, need=need))
    trained(fast_cfg(data_dir, tmp_path / "frozen"))
    frozen, only_dw = weights(tmp_path / "frozen"), needs.count((False, True))
    needs.clear()
    monkeypatch.setattr(loop.Trainer, "freeze_stopped", lambda self: None)
    trained(fast_cfg(data_dir, tmp_path / "computed"))
    assert only_dw == 5 and needs.count((False, True)) == 0  # epoch 2's 5 steps, where the bias has stopped
    computed = weights(tmp_path / "computed")
    assert frozen.keys() == computed.keys()
    for k in frozen:
        np.testing.assert_array_equal(frozen[k], computed[k], err_msg=k)
