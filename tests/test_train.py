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
from skengine.training import loop, report


def cfg(data_dir, out, **kw):
    base = dict(model="sknet_cifar_tiny", data_dir=data_dir, out=str(out), epochs=2, batch_size=64, lr=0.05,
                device="cpu", download=False, tta=False, label_smoothing=0.0)
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


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(data_dir, tmp_path):
    train.train(cfg(data_dir, tmp_path, epochs=1))
    before = open(tmp_path / "checkpoint.npz", "rb").read()
    with pytest.raises(SystemExit, match=r"nan.*epoch 1, step \d+.*checkpoint"):
        train.train(cfg(data_dir, tmp_path, epochs=1, lr=1e30))
    assert open(tmp_path / "checkpoint.npz", "rb").read() == before


def test_flip_tta_runs_on_the_last_epoch_only_and_keeps_the_plain_numbers(data_dir, tmp_path):
    train.train(cfg(data_dir, tmp_path, epochs=2, tta=True))
    with open(tmp_path / "metrics.csv") as f:
        history = list(csv.DictReader(f))
    assert history[0]["test_acc_tta"] == "" and history[1]["test_acc_tta"] != ""
    # the plain numbers of the TTA pass are those of a plain pass
    net = create("sknet_cifar_tiny", num_classes=10)
    net.load_state_dict(skengine.load(str(tmp_path / "checkpoint.npz"))["model"])
    (_, _), (x_test, y_test), _ = loop.load_data({**loop.DEFAULTS, **cfg(data_dir, tmp_path)})
    mean, std = CIFAR_MEAN_STD["cifar10"]
    loader = DataLoader(x_test, y_test, 50, mean=mean, std=std)
    plain, flipped = evaluate.evaluate(net, loader), evaluate.evaluate(net, loader, tta=True)
    assert flipped["plain_acc"] == plain["acc"] and flipped["plain_loss"] == pytest.approx(plain["loss"], rel=1e-6)
    assert float(history[1]["test_acc"]) == pytest.approx(plain["acc"])
    assert float(history[1]["test_acc_tta"]) == pytest.approx(flipped["acc"])


def test_missing_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        train.train(cfg(str(tmp_path / "nothing"), tmp_path / "out", epochs=1))


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
def test_two_processes_stop_together_on_nan(data_dir, tmp_path):
    train.train(cfg(data_dir, tmp_path, epochs=1, processes=2))
    before = open(tmp_path / "checkpoint.npz", "rb").read()
    with pytest.raises(SystemExit, match=r"nan.*epoch 1, step \d+.*checkpoint"):
        train.train(cfg(data_dir, tmp_path, epochs=1, lr=1e30, processes=2))
    assert open(tmp_path / "checkpoint.npz", "rb").read() == before


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
