"""The training command on a few hundred CIFAR-format images (the ``data_dir`` fixture of conftest.py): it
learns, resumes bit for bit, survives Ctrl-C and stops on NaN with the last checkpoint intact."""
import csv
import importlib.util
import os
import signal

import numpy as np
import pytest

import skengine
import skengine.functional as F
from skengine import evaluate, train
from skengine.data import CIFAR_MEAN_STD, DataLoader
from skengine.models import create
from skengine.nn import Parameter
from skengine.optim import SGD
from skengine.training import DEFAULTS, ConfigError, config, loop, report
from skengine.training.config import RECIPES


def cfg(data_dir, out, **kw):
    base = dict(recipe=None, model="sknet_cifar_tiny", data_dir=data_dir, out=str(out), epochs=2, batch_size=64,
                lr=0.05, device="cpu", download=False, tta=False, label_smoothing=0.0)
    return {**base, **kw}


def weights(out):
    return {k: v.numpy() for k, v in skengine.load(os.path.join(out, "checkpoint.npz"))["model"].items()}


def test_loss_falls_and_outputs_are_written(data_dir, tmp_path):
    train.train(cfg(data_dir, tmp_path, epochs=3, lr=0.1))
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


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """Two uninterrupted epochs: what every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight")
    train.train(cfg(data_dir, out))
    return weights(out)


@pytest.mark.parametrize("step,epoch,batch", [(3, 1, 3), (5, 1, 5)])  # mid-epoch, and at the epoch's end
def test_ctrl_c_checkpoints_and_resume_continues_bit_for_bit(data_dir, tmp_path, monkeypatch, straight,
                                                              step, epoch, batch):
    restore = interrupt_at(monkeypatch, step)  # 5 steps per epoch
    train.train(cfg(data_dir, tmp_path))
    restore()
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"]) == (epoch, batch)
    # the second case resumes without naming the data folder: the run's own is used
    train.train(cfg(data_dir if step == 3 else None, tmp_path, resume=str(tmp_path)))
    resumed = weights(tmp_path)
    assert resumed.keys() == straight.keys()
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


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


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(data_dir, tmp_path, monkeypatch):
    nan_in_epoch_2(monkeypatch)
    with pytest.raises(SystemExit, match=r"nan.*epoch 2, step 1; the last good checkpoint is .*checkpoint.npz"):
        train.train(cfg(data_dir, tmp_path, epochs=2))
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"], len(ckpt["history"])) == (1, 5, 1)
    with pytest.raises(SystemExit, match=r"nan.*epoch 1, step 1; no checkpoint was written yet"):
        train.train(cfg(data_dir, tmp_path / "fresh", epochs=1, lr=1e30))


def test_flip_tta_runs_on_the_last_epoch_only_and_keeps_the_plain_numbers(data_dir, tmp_path):
    train.train(cfg(data_dir, tmp_path, epochs=2, tta=True))
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


def test_missing_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(ConfigError, match="cifar-10-batches-py"):
        train.train(cfg(str(tmp_path / "nothing"), tmp_path / "out", epochs=1))
    os.mkdir(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cifar-10-batches-py"):
        train.train(cfg(str(tmp_path / "empty"), tmp_path / "out", epochs=1))
    assert not (tmp_path / "out").exists()  # nothing written


def test_metrics_csv_takes_every_column_even_one_a_resumed_run_adds(tmp_path):
    """A checkpoint from before a column existed resumes into a history whose rows differ in keys."""
    path = str(tmp_path / "metrics.csv")
    report.write_metrics(path, [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.6, "test_acc_tta": 0.7}])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"epoch": "1", "test_acc": "0.5", "test_acc_tta": ""},
                    {"epoch": "2", "test_acc": "0.6", "test_acc_tta": "0.7"}]


def test_trainer_onecycle_keeps_momentum_fixed():
    from skengine.training.loop import build_schedule
    opt = SGD([Parameter(np.zeros(1))], lr=0.2, momentum=0.9, nesterov=True)
    sched = build_schedule({"epochs": 2, "schedule": "onecycle", "lr": 0.2}, opt, 4)
    for _ in range(8):
        assert opt.param_groups[0]["momentum"] == 0.9
        sched.step()


# ---------------------------------------------------------------- data parallel (two processes)

two_processes = pytest.mark.usefixtures("deadline")  # a hung process group fails its test, not the suite


@pytest.fixture(scope="module")
def straight2(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight2")
    train.train(cfg(data_dir, out, processes=2))
    return out


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
    train.train(cfg(data_dir, tmp_path, processes=2))
    restore()
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == 4
    train.train(cfg(data_dir, tmp_path, resume=str(tmp_path)))  # processes="auto": the run's own 2
    resumed, straight = weights(tmp_path), weights(straight2)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


@two_processes
def test_two_processes_stop_together_on_nan(data_dir, tmp_path, monkeypatch):
    nan_in_epoch_2(monkeypatch)
    with pytest.raises(SystemExit, match=r"nan.*epoch 2, step 1; the last good checkpoint is .*checkpoint.npz"):
        train.train(cfg(data_dir, tmp_path, epochs=2, processes=2))
    assert skengine.load(tmp_path / "checkpoint.npz")["epoch"] == 1


@two_processes
def test_a_nan_on_the_worker_alone_stops_every_process(data_dir, tmp_path, monkeypatch):
    real, main = F.cross_entropy, os.getpid()

    def nan_in_worker(*a, **k):
        if os.getpid() != main:
            raise ValueError("cross_entropy: the loss is nan: injected")
        return real(*a, **k)

    monkeypatch.setattr(F, "cross_entropy", nan_in_worker)
    with pytest.raises(SystemExit, match=r"not finite on another process at epoch 1, step 1;"):
        train.train(cfg(data_dir, tmp_path, epochs=1, processes=2))


@two_processes
@pytest.mark.parametrize("limit,steps", [(261, 5), (259, 4)])
def test_two_processes_take_a_short_last_batch_or_drop_one_too_short(data_dir, tmp_path, limit, steps):
    """Batches of 64: 261 images end with 5 (shards of 2 and 3); 259 end with 3, which would leave one
    image for one process's BatchNorm, so that batch is dropped."""
    train.train(cfg(data_dir, tmp_path, processes=2, limit_train=limit))
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == steps


@two_processes
@pytest.mark.parametrize("processes", [1, 2])
def test_ctrl_c_during_the_test_pass_stops_after_that_epoch(data_dir, tmp_path, monkeypatch, processes):
    real, main = loop.evaluate, os.getpid()

    def evaluate_then_interrupt(*a, **k):
        result = real(*a, **k)
        if os.getpid() == main:
            os.kill(main, signal.SIGINT)
        return result

    monkeypatch.setattr(loop, "evaluate", evaluate_then_interrupt)
    train.train(cfg(data_dir, tmp_path, processes=processes))
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["loader"]["batch"], len(ckpt["history"])) == (1, 5, 1)
    assert not (tmp_path / "confusion.txt").exists()  # interrupted: no final report


def test_process_count(monkeypatch):
    monkeypatch.setattr(loop, "get_num_threads", lambda: 2)
    assert [loop.resolve_processes("auto", "cpu", b) for b in (32, 64, 128, 512)] == [1, 1, 2, 2]
    assert loop.resolve_processes("auto", "cuda", 512) == 1 and loop.resolve_processes("3", "cpu", 8) == 3
    for value, device, match in ((0, "cpu", "positive int"), (2, "cuda", "for the CPU"), (9, "cpu", "batch-size 8")):
        with pytest.raises(ValueError, match=match):
            loop.resolve_processes(value, device, 8)


# -- the command: settings checked before anything is written, resume in place, Ctrl-C, short runs ----------
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
            "--batch-size", 64, "--lr", 0.05, "--device", "cpu", "--no-download", "--no-tta", *extra]


def test_cli_mistakes_are_one_line_with_exit_code_2_and_write_nothing(data_dir, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    weights_only = tmp_path / "best.npz"
    skengine.save({"config": dict(DEFAULTS), "model": {}, "epoch": 1, "test_acc": 0.5}, weights_only)
    out = tmp_path / "out"
    cases = [(["--batch-size", 0], "--batch-size must be an integer >= 1, got 0"),
             (["--epochs", -1], "--epochs must be an integer >= 1, got -1"),
             (["--label-smoothing", 2], "--label-smoothing must be a finite number >= 0 and <= 1, got 2.0"),
             (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
             (["--lr", 0], "--lr must be a finite number > 0"),
             (["--limit-train", 0], "--limit-train must be an integer >= 1, got 0"),
             (["--limit-test", -3], "--limit-test must be an integer >= 1, got -3"),
             (["--processes", 33], "--processes 33 is more than half of --batch-size 64"),
             (["--processes", "two"], "--processes must be a positive integer or 'auto'"),
             (["--model", "sknet_nope"], "--model 'sknet_nope' is not a model; known: "),
             (["--model-kwargs", '{"no_such_option": 1}'], "no_such_option"),
             (["--model-kwargs", "[1]"], "--model-kwargs must be a JSON object"),
             (["--data-dir", tmp_path / "missing"], "is not a folder (it should hold cifar-10-batches-py/"),
             (["--out", a_file], f"--out {a_file} is a file (or a broken link), not a folder"),
             (["--resume", weights_only], "holds model weights only (best.npz does)"),
             (["--resume", tmp_path / "nowhere"], "no checkpoint there"),
             (["--resume", a_file], "cannot read it as a checkpoint"),
             (["--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
             (["--batch-size", 1], "--batch-size 1: BatchNorm needs at least 2 images a batch"),
             (["--schedule", "cosine", "--warmup-epochs", 5], "--warmup-epochs 5.0 is longer than the run"),
             (["--schedule", "cosine", "--warmup-epochs", "1e308"], "is longer than the run"),
             (["--out", ""], "--out must name a folder, got ''"),
             (["--out", tmp_path / "dangling"], "is a file (or a broken link), not a folder")]
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    for extra, message in cases:
        code, stdout, stderr = run_cli(small_argv(data_dir, out, *extra), capsys)
        assert code == 2, (extra, code, stderr)
        assert stderr.count("\n") == 1 and stderr.startswith("skengine-train: error: ") and message in stderr, \
            (extra, stderr)
        assert not out.exists(), extra


@pytest.mark.skipif(skengine.cuda_available(), reason="the message for a machine without CUDA")
def test_cli_cuda_without_a_gpu_is_one_line(data_dir, tmp_path, capsys):
    code, _, stderr = run_cli(small_argv(data_dir, tmp_path / "out", "--device", "cuda"), capsys)
    assert code == 2 and stderr.count("\n") == 1 and "pip install skengine[cuda12]" in stderr
    assert not (tmp_path / "out").exists()


def test_resume_writes_where_its_checkpoint_lives_and_says_what_it_ignores(data_dir, tmp_path, monkeypatch, capsys):
    """--resume runs/B without --out continued in the default runs/latest, overwriting the run there."""
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "runs" / "latest"
    train.train(cfg(data_dir, other, epochs=1))  # a run a user keeps in the default folder
    kept = open(other / "checkpoint.npz", "rb").read()
    restore = interrupt_at(monkeypatch, 2)
    code, stdout, stderr = run_cli(small_argv(data_dir, tmp_path / "B", "--epochs", 2), capsys)
    restore()
    continue_with = f"interrupted at epoch 1 step 2; continue with: python -m skengine.train --resume {tmp_path / 'B'}"
    assert code == 130 and continue_with in stderr and "final test accuracy" not in stdout
    code, stdout, stderr = run_cli(["--resume", tmp_path / "B", "--lr", 0.5, "--no-download"], capsys)
    assert code == 0 and "final test accuracy" in stdout
    assert "--lr 0.5 is ignored: a resumed run keeps its own (0.05)" in stderr
    # the run's own recipe (none), given again, is not "ignored"; another one is, and said in the saved spelling
    assert config.resolve({"resume": str(tmp_path / "B"), "recipe": "none"})[2] == []
    assert config.resolve({"resume": str(tmp_path / "B"), "recipe": "fast"})[2] == [
        "--recipe 'fast' is ignored: a resumed run keeps its own (None)"]
    assert skengine.load(tmp_path / "B" / "checkpoint.npz")["epoch"] == 2
    assert open(other / "checkpoint.npz", "rb").read() == kept


def test_out_holding_another_run_is_refused_unless_overwrite(data_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train.train(cfg(data_dir, a, epochs=1))
    train.train(cfg(data_dir, b, epochs=1))
    kept = open(a / "checkpoint.npz", "rb").read()
    with pytest.raises(ConfigError, match="already holds a run .*--overwrite"):
        train.train(cfg(data_dir, a, epochs=1, seed=1))
    with pytest.raises(ConfigError, match="already holds a run"):  # continuing b into a
        train.train({"resume": str(b), "out": str(a)})
    assert open(a / "checkpoint.npz", "rb").read() == kept
    (a / ".tmp-k9x2ab7q.npz").write_bytes(b"what a kill -9 during a save leaves")
    train.train(cfg(data_dir, a, epochs=1, seed=1, overwrite=True))
    assert open(a / "checkpoint.npz", "rb").read() != kept
    assert not (a / ".tmp-k9x2ab7q.npz").exists()


@pytest.mark.parametrize("images", [64, 128, 192, 256])  # 1, 2, 3 and 4 steps (4 crashed OneCycleLR)
def test_short_runs_train(data_dir, tmp_path, images):
    result = train.train(cfg(data_dir, tmp_path, epochs=1, limit_train=images, limit_test=100))
    assert np.isfinite(result["train_loss"])
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == images // 64


def test_resume_warns_when_the_blas_thread_count_differs(data_dir, tmp_path, monkeypatch, capsys):
    restore = interrupt_at(monkeypatch, 2)
    train.train(cfg(data_dir, tmp_path))
    restore()
    saved = skengine.load(tmp_path / "checkpoint.npz")["blas_threads"]
    monkeypatch.setattr(loop, "get_num_threads", lambda: saved + 1)
    capsys.readouterr()
    train.train({"resume": str(tmp_path), "epochs": 1})
    assert f"checkpointed with {saved} BLAS threads and continues with {saved + 1}" in capsys.readouterr().err


def test_an_offline_download_failure_is_one_line(data_dir, tmp_path, monkeypatch, capsys):
    def offline(dataset, root=None):
        raise RuntimeError(f"could not download {dataset} from https://example.invalid: no network. Without "
                           f"network access, fetch the archive elsewhere and put it at {root}, then run again.")

    monkeypatch.setattr(skengine.data.download, "download_and_extract", offline)
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli(small_argv(str(tmp_path / "empty"), tmp_path / "out", "--download"), capsys)
    assert code == 2 and stderr.count("\n") == 1 and "could not download cifar10" in stderr
    assert not (tmp_path / "out").exists()


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


def test_resume_never_inherits_overwrite_and_only_its_own_checkpoint_resumes_in_place(data_dir, tmp_path):
    """Found by an attack: --overwrite was saved with a run and applied again by a later --resume, and
    --resume DIR/any.npz counted DIR as its own folder; either replaced an unrelated run."""
    victim, ow = tmp_path / "victim", tmp_path / "ow"
    train.train(cfg(data_dir, victim, epochs=1, seed=5))
    kept = open(victim / "checkpoint.npz", "rb").read()
    ow.mkdir()
    (ow / "config.json").write_text("{}")
    train.train(cfg(data_dir, ow, epochs=1, overwrite=True))
    with pytest.raises(ConfigError, match="already holds a run"):
        train.train({"resume": str(ow), "out": str(victim)})
    with open(ow / "checkpoint.npz", "rb") as src, open(victim / "from_ow.npz", "wb") as dst:
        dst.write(src.read())  # another run's checkpoint copied into victim's folder
    with pytest.raises(ConfigError, match="already holds a run"):
        train.train({"resume": str(victim / "from_ow.npz")})
    assert open(victim / "checkpoint.npz", "rb").read() == kept


def test_overwrite_replaces_the_old_runs_files(data_dir, tmp_path, monkeypatch):
    """A new run that stopped early beside the old run's checkpoint, best and metrics made a folder that
    mixed two runs (and --resume quietly continued the old one)."""
    train.train(cfg(data_dir, tmp_path, epochs=1))
    restore = interrupt_at(monkeypatch, 2)
    result = train.train(cfg(data_dir, tmp_path, epochs=1, seed=3, overwrite=True))
    restore()
    assert result["interrupted"] == {"epoch": 1, "step": 2}
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json"]
    assert skengine.load(tmp_path / "checkpoint.npz")["config"]["seed"] == 3


def test_damaged_or_foreign_checkpoints_are_one_clear_error_before_anything_is_written(data_dir, tmp_path):
    run = tmp_path / "run"
    train.train(cfg(data_dir, run, epochs=1))
    good = skengine.load(run / "checkpoint.npz")
    for name, state in (("no_scheduler", {k: v for k, v in good.items() if k != "scheduler"}),
                        ("wrong_model", {**good, "model": {"fc.weight": np.zeros((3, 3), np.float32)}}),
                        ("bad_config", {**good, "config": [1, 2]})):
        skengine.save(state, tmp_path / f"{name}.npz")
        config_before = open(run / "config.json").read()
        with pytest.raises(ConfigError, match=f"--resume .*{name}.npz: "):
            train.train({"resume": str(tmp_path / f"{name}.npz"), "out": str(run), "overwrite": True})
        assert open(run / "config.json").read() == config_before


def test_numpy_numbers_and_paths_as_settings(data_dir, tmp_path):
    """A library caller's np.int64 and pathlib.Path broke config.json's JSON midway (a truncated file)."""
    train.train(cfg(data_dir, tmp_path, epochs=np.int64(1), batch_size=np.int64(64), lr=np.float32(0.05)))
    import json
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["out"]) == (1, 64, str(tmp_path))


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
    train.train(cfg(data_dir, tmp_path, epochs=1, ema=0.9))
    best = skengine.load(tmp_path / "best.npz")
    net = create("sknet_cifar_tiny", num_classes=10)
    net.load_state_dict(best["model"])
    (_, _), (x_test, y_test), _ = loop.load_data({**DEFAULTS, **cfg(data_dir, tmp_path)})
    mean, std = CIFAR_MEAN_STD["cifar10"]
    acc = evaluate.evaluate(net, DataLoader(x_test, y_test, 50, mean=mean, std=std))["acc"]
    assert acc == pytest.approx(float(best["test_acc"]))


def test_a_run_resumed_into_a_new_folder_takes_its_best_model_along(data_dir, tmp_path, monkeypatch):
    restore = interrupt_at(monkeypatch, 7)  # in epoch 2, after epoch 1 wrote best.npz
    train.train(cfg(data_dir, tmp_path / "a"))
    restore()
    train.train({"resume": str(tmp_path / "a"), "out": str(tmp_path / "b")})
    assert (tmp_path / "b" / "best.npz").exists()


def test_overwrite_with_a_foreign_checkpoint_inside_out_replaces_outs_run(data_dir, tmp_path, monkeypatch):
    """--resume A/b_copy.npz --out A --overwrite wrote run B's config beside run A's best.npz and metrics."""
    a, b = tmp_path / "a", tmp_path / "b"
    train.train(cfg(data_dir, a, epochs=1, seed=1))
    restore = interrupt_at(monkeypatch, 2)  # run B stops in its first epoch
    train.train(cfg(data_dir, b, epochs=2, seed=2))
    restore()
    with open(b / "checkpoint.npz", "rb") as src, open(a / "b_copy.npz", "wb") as dst:
        dst.write(src.read())
    restore = interrupt_at(monkeypatch, 1)  # and again right away, before it writes best.npz or metrics.csv
    train.train({"resume": str(a / "b_copy.npz"), "out": str(a), "overwrite": True})
    restore()
    assert skengine.load(a / "checkpoint.npz")["config"]["seed"] == 2
    assert sorted(f for f in os.listdir(a) if f != "b_copy.npz") == ["checkpoint.npz", "config.json"]


def test_resume_keeps_no_download_and_nested_numpy_settings(data_dir, tmp_path, monkeypatch):
    restore = interrupt_at(monkeypatch, 2)
    train.train(cfg(data_dir, tmp_path, model_kwargs={"sk_kwargs": {"reduction": np.int64(8)}}))
    restore()
    resolved, _, _ = config.resolve({"resume": str(tmp_path)})
    assert resolved["download"] is False and resolved["model_kwargs"] == {"sk_kwargs": {"reduction": 8}}
    train.train({"resume": str(tmp_path)})
    assert skengine.load(tmp_path / "checkpoint.npz")["epoch"] == 2


# ---------------------------------------------------------------- MPI: mpiexec -n 2 (the mpiexec fixture, conftest.py)

MPI_FAULTS = os.path.join(os.path.dirname(__file__), "mpi", "train_faults.py")


def mpi_argv(data_dir, out, *extra):
    """The command line of cfg(data_dir, out): the settings of the straight2 run."""
    return ["--recipe", "none", "--model", "sknet_cifar_tiny", "--data-dir", data_dir, "--out", out, "--epochs", 2,
            "--batch-size", 64, "--lr", 0.05, "--device", "cpu", "--no-download", "--no-tta", "--label-smoothing", 0,
            *extra]


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


def fast_cfg(data_dir, out, **kw):
    """The fast recipe with every option on, on the small fake data: a narrow net, 5 steps an epoch."""
    return cfg(data_dir, out, recipe="fast", model="sknet_cifar_fast", model_kwargs={"widths": [16, 32, 32]},
               lr=0.1, warmup_epochs=0.5, whiten_bias_epochs=1.0, lookahead=3, tta=True, tta_translate=True,
               label_smoothing=0.2, **kw)


def test_fast_recipe_with_every_option_resumes_bit_for_bit(data_dir, tmp_path, monkeypatch):
    straight_out = tmp_path / "straight"
    result = train.train(fast_cfg(data_dir, straight_out))
    assert result["test_acc_tta"] is not None and result["epoch"] == 2
    ckpt = skengine.load(straight_out / "checkpoint.npz")
    conf = ckpt["config"]
    assert (conf["flip"], conf["crop_pad"], conf["pad_mode"], conf["schedule"], conf["momentum"],
            conf["bias_lr_scale"], conf["batch_size"]) == ("alternate", 2, "reflect", "linear", 0.85, 64.0, 64)
    # the slow weights are in the checkpoint, and the run ended on them
    slow = ckpt["lookahead"]["slow"]
    net = create("sknet_cifar_fast", widths=(16, 32, 32))
    assert ckpt["lookahead"]["num_steps"] == 10 and set(slow) == {n for n, _ in net.named_parameters()} | {
        n for n, b in net.named_buffers() if b.dtype.kind == "f"}
    for k, v in slow.items():
        np.testing.assert_array_equal(v.numpy() if hasattr(v, "numpy") else v, ckpt["model"][k].numpy(), err_msg=k)
    # the whitening layer: fitted to the training images, normalised as the loader does, and frozen
    (x, _), _, _ = loop.load_data(config.resolve(fast_cfg(data_dir, straight_out, overwrite=True))[0])
    mean, std = CIFAR_MEAN_STD["cifar10"]
    fitted = Parameter(np.zeros((24, 3, 2, 2), np.float32))
    skengine.nn.init.patch_whitening_(fitted, (x / 255 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None])
    np.testing.assert_allclose(ckpt["model"]["whiten.weight"].numpy(), fitted.numpy(), rtol=1e-6)
    # the whitening bias's group stopped learning after one epoch; BN biases learn at 64x
    groups = ckpt["optimizer"]["param_groups"]
    assert groups[-1]["lr"] == 0.0 and groups[1]["initial_lr"] == pytest.approx(64 * groups[0]["initial_lr"])
    # ... it learned at the weights' rate and decay (airbench), from zero
    assert groups[-1]["initial_lr"] == groups[0]["initial_lr"] and groups[-1]["weight_decay"] == conf["wd"]
    assert not np.array_equal(ckpt["model"]["whiten.bias"].numpy(), 0) and (create("sknet_cifar_fast").whiten.bias
                                                                          .numpy() == 0).all()
    # interrupted mid-epoch 1 (step 2: between Lookahead syncs) and after the whitening bias stopped (step 7),
    # then resumed: the same weights, bit for bit
    for step in (2, 7):
        restore = interrupt_at(monkeypatch, step)
        train.train(fast_cfg(data_dir, tmp_path / f"cut{step}"))
        restore()
        train.train(fast_cfg(data_dir, tmp_path / f"cut{step}", resume=str(tmp_path / f"cut{step}")))
        resumed, straight = weights(tmp_path / f"cut{step}"), weights(straight_out)
        for k in straight:
            np.testing.assert_array_equal(resumed[k], straight[k], err_msg=(step, k))


def test_a_fast_checkpoint_from_before_the_full_input_sk_paths_still_resumes_and_evaluates(data_dir, tmp_path,
                                                                                            monkeypatch):
    """Until 2026-12-02 sknet_cifar_fast's SK paths took half the channels each, and its checkpoints' configs
    do not say so: resume and evaluate rebuild that network from the weights' shapes."""
    old = {"widths": [16, 32, 32], "sk_kwargs": {"split_input": True}}
    train.train({**fast_cfg(data_dir, tmp_path / "straight"), "model_kwargs": old})
    restore = interrupt_at(monkeypatch, 3)
    train.train({**fast_cfg(data_dir, tmp_path / "cut"), "model_kwargs": old})
    restore()
    path = tmp_path / "cut" / "checkpoint.npz"
    state = skengine.load(path)
    state["config"]["model_kwargs"] = {"widths": [16, 32, 32]}  # as such a run wrote it
    skengine.save(state, path)
    assert config.resolve({"resume": str(path)})[0]["model_kwargs"] == old
    train.train({"resume": str(path)})
    resumed, straight = weights(tmp_path / "cut"), weights(tmp_path / "straight")
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    state = skengine.load(path)
    state["config"]["model_kwargs"] = {"widths": [16, 32, 32]}
    skengine.save(state, path)
    result = evaluate.main(["--checkpoint", str(path), "--data-dir", data_dir, "--device", "cpu", "--tta",
                            "--tta-translate"])
    with open(tmp_path / "straight" / "metrics.csv") as f:
        assert result["acc"] == pytest.approx(float(list(csv.DictReader(f))[-1]["test_acc_tta"]))
    # a network of today's options is left as it is
    now = {"model": "sknet_cifar_fast", "model_kwargs": {"widths": [16, 32, 32]}}
    assert config.saved_model_kwargs(now, create("sknet_cifar_fast", widths=(16, 32, 32)).state_dict()) == \
        {"widths": [16, 32, 32]}


def test_recipe_settings_yield_to_the_ones_given(data_dir, tmp_path):
    resolved, _, _ = config.resolve(dict(recipe="fast", epochs=3, data_dir=data_dir, out=str(tmp_path / "r")))
    assert resolved["epochs"] == 3 and resolved["model"] == "sknet_cifar_fast" and resolved["bias_lr_scale"] == 64
    # the default is the fast recipe; "none" (the command line's word) or None: the plain settings
    fast = config.resolve(dict(data_dir=data_dir, out=str(tmp_path / "d")))[0]
    assert fast == {**DEFAULTS, **RECIPES["fast"], "recipe": "fast", "data_dir": data_dir, "out": str(tmp_path / "d")}
    for none in ("none", None):
        plain = config.resolve(dict(recipe=none, data_dir=data_dir, out=str(tmp_path / "d")))[0]
        assert plain == {**DEFAULTS, "recipe": None, "data_dir": data_dir, "out": str(tmp_path / "d")}
        assert plain["model"] == "sknet_cifar_small" and plain["bias_lr_scale"] == 1
    for bad, message in ((dict(recipe="slow"), "--recipe must be one of fast, none, got 'slow'"),
                         (dict(flip="sometimes"), "--flip must be one of random, alternate"),
                         (dict(lookahead=-1), "--lookahead must be an integer >= 0"),
                         (dict(bias_lr_scale=0), "--bias-lr-scale must be a finite number > 0"),
                         (dict(tta_translate="yes"), "--tta-translate must be true or false"),
                         (dict(crop_pad=40, pad_mode="reflect"), "--crop-pad 40 --pad-mode reflect"),
                         (dict(tta=False, tta_translate=True), "--tta-translate adds views to --tta's"),
                         (dict(recipe="fast", epochs=1), r"--recipe fast sets it: give a shorter --warmup-epochs")):
        with pytest.raises(ConfigError, match=message):
            config.resolve(dict(data_dir=data_dir, out=str(tmp_path / "x"), **bad))


def test_linear_schedule_warms_up_from_a_fifth_then_falls_to_zero():
    f = loop.LinearWarmupDecay(4, 20)
    assert [f(s) for s in (0, 2, 4, 12, 20)] == pytest.approx([0.2, 0.6, 1.0, 0.5, 0.0])


# ---------------------------------------------------------------- launchers, ranks before MPI, and SIGTERM

def launcher_vars():
    """The launchers' variables: the ones skengine reads, and srun's."""
    from skengine.distributed.mpi import RANK_VARS, SIZE_VARS
    return set(SIZE_VARS + RANK_VARS + ("PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID"))


def launcher_free_env(**extra):
    """This environment without any launcher's variables, with the checkout importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in launcher_vars()}
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), ROOT_DIR) if p), **extra}


ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_mpi_ranks_that_read_other_data_are_refused_naming_the_rank(mpiexec, data_dir, tmp_path):
    """Without --data-dir each host reads its own $SKENGINE_DATA: rank 1's holds as many images, with other
    labels.  Refused (exit 2) in one line from rank 1, naming both descriptions, before training."""
    import re
    import sys

    from fakecifar import write_cifar
    other = str(write_cifar(tmp_path / "other", seed=5))
    argv = ["-m", "skengine.train", *small_argv(data_dir, tmp_path / "out")]
    del argv[argv.index("--data-dir"):argv.index("--data-dir") + 2]
    run = mpiexec(1, [*argv, ":", "-n", 1, "-env", "SKENGINE_DATA", other, sys.executable, *argv], timeout=60,
                  env={"SKENGINE_DATA": data_dir})
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr[-2000:]
    assert re.search(r"error: rank 1: its data \(320 training images, 100 test images, 10 classes, labels CRC-32 "
                     r"[0-9a-f]{8}\) differs from rank 0's \(320 training images, 100 test images, 10 classes, "
                     r"labels CRC-32 [0-9a-f]{8}\)", run.stderr), run.stderr
    assert not (tmp_path / "out" / "checkpoint.npz").exists()


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
        result = train.train(cfg(data_dir, tmp_path, processes=processes))
    finally:
        signal.signal(signal.SIGTERM, old)
    step = 3 if processes == 1 else 4  # rank 0's word reaches the workers in the next step's all-reduce
    assert result["interrupted"] == {"epoch": 1, "step": step}
    assert skengine.load(tmp_path / "checkpoint.npz")["loader"]["batch"] == step
    assert capsys.readouterr().err.count("SIGTERM: stopping after this step") == 1


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
