"""skengine/training/config.py: a run's settings resolved and checked before anything is written (the command's
mistakes are one line with exit code 2); --out, --overwrite and --resume never replace another run; a recipe's
settings yield to the ones given; a resumed run keeps its own, even from a checkpoint of an older network.  On a
few hundred CIFAR-format images (the ``data_dir`` fixture of conftest.py); the helpers are trainkit.py's."""
import csv
import os

import numpy as np
import pytest

import skengine
from skengine import evaluate, serialization
from skengine.models import create
from skengine.training import DEFAULTS, ConfigError, config
from skengine.training.config import RECIPES
from trainkit import cfg, fast_cfg, interrupt_at, run_cli, small_argv, trained, weights


def test_processes_on_a_cuda_machine_is_one_line(data_dir, tmp_path, monkeypatch, capsys):
    """--processes 2 where CUDA is found was a ValueError traceback from resolve_processes (the device mocked)."""
    monkeypatch.setattr(config, "resolve_device", lambda name: "cuda" if name in ("auto", "cuda") else name)
    code, _, stderr = run_cli(small_argv(data_dir, tmp_path / "out", "--processes", 2, "--device", "auto"), capsys)
    assert code == 2 and stderr.count("\n") == 1 and "--processes 2: data-parallel processes are for the CPU" in stderr
    assert not (tmp_path / "out").exists()
    for value, match in ((0, "positive integer"), (9, "more than half of --batch-size 8")):
        with pytest.raises(ConfigError, match=match):
            config.resolve(cfg(data_dir, tmp_path / "p", processes=value, batch_size=8, device="cpu"))


def test_cli_mistakes_are_one_line_with_exit_code_2_and_write_nothing(data_dir, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    weights_only = tmp_path / "best.npz"
    skengine.save({"config": dict(DEFAULTS), "model": {}, "epoch": 1, "test_acc": 0.5}, weights_only)
    out = tmp_path / "out"
    cases = [(["--batch-size", 0], "--batch-size must be an integer >= 1, got 0"),
             (["--epochs", -1], "--epochs must be an integer >= 1, got -1"),
             (["--label-smoothing", 2], "--label-smoothing must be a finite number >= 0 and < 1, got 2.0"),
             (["--label-smoothing", 1], "--label-smoothing must be a finite number >= 0 and < 1, got 1.0"),
             (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
             (["--lr", 0], "--lr must be a finite number > 0"),
             (["--limit-train", 0], "--limit-train must be an integer >= 1, got 0"),
             (["--limit-test", -3], "--limit-test must be an integer >= 1, got -3"),
             (["--train-per-class", 0], "--train-per-class must be an integer >= 1, got 0"),
             (["--train-per-class", 4, "--limit-train", 64], "--train-per-class 4 and --limit-train 64 both choose"),
             (["--train-per-class", 10000], "--train-per-class 10000: the training set has fewer images of some "
                                            "classes (class 0: "),
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
             (["--schedule", "cosine", "--warmup", 5], "--warmup must be a finite number >= 0 and <= 1, got 5.0"),
             (["--warmup", "1e308"], "--warmup must be a finite number >= 0 and <= 1"),
             (["--out", ""], "--out must name a folder, got ''"),
             (["--crop-pad", 5000], "--crop-pad 5000 --pad-mode constant: the padding must be narrower than the "
                                    "32-pixel images (at most 31)"),
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


def test_recipe_settings_yield_to_the_ones_given(data_dir, tmp_path):
    resolved, _, _ = config.resolve(dict(recipe="fast", epochs=3, data_dir=data_dir, out=str(tmp_path / "r")))
    assert resolved["epochs"] == 3 and resolved["model"] == "sknet_cifar_fast" and resolved["bias_lr_scale"] == 64
    # the default is the airbench93_sk recipe; "none" (the command line's word) or None: the plain settings
    default = config.resolve(dict(data_dir=data_dir, out=str(tmp_path / "d")))[0]
    assert default == {**DEFAULTS, **RECIPES["airbench93_sk"], "recipe": "airbench93_sk", "data_dir": data_dir,
                       "out": str(tmp_path / "d")}
    for none in ("none", None):
        plain = config.resolve(dict(recipe=none, data_dir=data_dir, out=str(tmp_path / "d")))[0]
        assert plain == {**DEFAULTS, "recipe": None, "data_dir": data_dir, "out": str(tmp_path / "d")}
        assert plain["model"] == "sknet_cifar_small" and plain["bias_lr_scale"] == 1
    for bad, message in ((dict(recipe="slow"), "--recipe must be one of airbench93_sk, fast, airbench93, none, got "
                                               "'slow'"),
                         (dict(end_factor=1.5), "--end-factor must be a finite number >= 0 and <= 1"),
                         (dict(bias_decay="yes"), "--bias-decay must be true or false"),
                         (dict(flip="sometimes"), "--flip must be one of random, alternate"),
                         (dict(lookahead=-1), "--lookahead must be an integer >= 0"),
                         (dict(bias_lr_scale=0), "--bias-lr-scale must be a finite number > 0"),
                         (dict(tta_translate="yes"), "--tta-translate must be true or false"),
                         (dict(crop_pad=40, pad_mode="reflect"), "--crop-pad 40 --pad-mode reflect"),
                         (dict(tta=False, tta_translate=True), "--tta-translate adds views to --tta's"),
                         (dict(warmup=1.5), "--warmup must be a finite number >= 0 and <= 1")):
        with pytest.raises(ConfigError, match=message):
            config.resolve(dict(data_dir=data_dir, out=str(tmp_path / "x"), **bad))


def test_numpy_numbers_and_paths_as_settings(data_dir, tmp_path):
    """A library caller's np.int64 and pathlib.Path broke config.json's JSON midway (a truncated file)."""
    trained(cfg(data_dir, tmp_path, epochs=np.int64(1), batch_size=np.int64(64), lr=np.float32(0.8)))
    import json
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["out"]) == (1, 64, str(tmp_path))


# ---------------------------------------------------------------- --out, --overwrite and --resume

def test_resume_writes_where_its_checkpoint_lives_and_says_what_it_ignores(data_dir, tmp_path, monkeypatch, capsys):
    """--resume runs/B without --out continued in the default runs/latest, overwriting the run there."""
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "runs" / "latest"
    trained(cfg(data_dir, other, epochs=1))  # a run a user keeps in the default folder
    kept = open(other / "checkpoint.npz", "rb").read()
    restore = interrupt_at(monkeypatch, 2)
    code, stdout, stderr = run_cli(small_argv(data_dir, tmp_path / "B", "--epochs", 2), capsys)
    restore()
    continue_with = f"interrupted at epoch 1 step 2; continue with: python -m skengine.train --resume {tmp_path / 'B'}"
    assert code == 130 and continue_with in stderr and "final test accuracy" not in stdout
    code, stdout, stderr = run_cli(["--resume", tmp_path / "B", "--lr", 0.5, "--no-download"], capsys)
    assert code == 0 and "final test accuracy" in stdout
    assert "--lr 0.5 is ignored: a resumed run keeps its own (0.8)" in stderr
    # the run's own recipe (none), given again, is not "ignored"; another one is, and said in the saved spelling
    assert config.resolve({"resume": str(tmp_path / "B"), "recipe": "none"})[2] == []
    assert config.resolve({"resume": str(tmp_path / "B"), "recipe": "fast"})[2] == [
        "--resume: --recipe 'fast' is ignored: a resumed run keeps its own (None)"]
    assert skengine.load(tmp_path / "B" / "checkpoint.npz")["epoch"] == 2
    assert open(other / "checkpoint.npz", "rb").read() == kept


def test_out_holding_another_run_is_refused_unless_overwrite(data_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    trained(cfg(data_dir, a, epochs=1))
    trained(cfg(data_dir, b, epochs=1))
    kept = open(a / "checkpoint.npz", "rb").read()
    with pytest.raises(ConfigError, match="already holds a run .*--overwrite"):
        trained(cfg(data_dir, a, epochs=1, seed=1))
    with pytest.raises(ConfigError, match="already holds a run"):  # continuing b into a
        trained({"resume": str(b), "out": str(a)})
    (b / "checkpoint.npz").unlink()  # a run without a checkpoint: no --resume to suggest
    with pytest.raises(ConfigError, match=r"already holds a run \(best.npz, config.json, metrics.csv, (curves.png, )?"
                                          r"confusion.txt\): choose another --out, or pass --overwrite to replace it$"):
        trained(cfg(data_dir, b, epochs=1))
    assert open(a / "checkpoint.npz", "rb").read() == kept
    left = a / f"{serialization._TMP_PREFIX}k9x2ab7q.npz"
    left.write_bytes(b"what a kill -9 during a save leaves")
    trained(cfg(data_dir, a, epochs=1, seed=1, overwrite=True))
    assert open(a / "checkpoint.npz", "rb").read() != kept
    assert not left.exists()


@pytest.mark.parametrize("name", ["confusion.txt", "curves.png"])
def test_a_folder_holding_a_file_a_run_writes_is_refused_unless_overwrite(data_dir, tmp_path, capsys, name):
    """An --out holding only the user's own confusion.txt was taken, and the file replaced at the run's end:
    only the checkpoint, best model, config and metrics counted.  Every file a run writes counts now."""
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"the user's own")
    code, _, stderr = run_cli(small_argv(data_dir, out), capsys)
    assert code == 2 and stderr == (f"skengine-train: error: --out {out} already holds a run ({name}): choose "
                                    f"another --out, or pass --overwrite to replace it\n"), stderr
    assert os.listdir(out) == [name] and (out / name).read_bytes() == b"the user's own"
    code, _, stderr = run_cli(small_argv(data_dir, out, "--overwrite"), capsys)
    assert code == 0 and (out / "checkpoint.npz").exists(), stderr
    assert set(config.RUN_FILES) >= {f for f in os.listdir(out) if not f.startswith(".")}  # all it wrote counts


def test_resume_never_inherits_overwrite_and_only_its_own_checkpoint_resumes_in_place(data_dir, tmp_path):
    """Found by an attack: --overwrite was saved with a run and applied again by a later --resume, and
    --resume DIR/any.npz counted DIR as its own folder; either replaced an unrelated run."""
    victim, ow = tmp_path / "victim", tmp_path / "ow"
    trained(cfg(data_dir, victim, epochs=1, seed=5))
    kept = open(victim / "checkpoint.npz", "rb").read()
    ow.mkdir()
    (ow / "config.json").write_text("{}")
    trained(cfg(data_dir, ow, epochs=1, overwrite=True))
    with pytest.raises(ConfigError, match="already holds a run"):
        trained({"resume": str(ow), "out": str(victim)})
    with open(ow / "checkpoint.npz", "rb") as src, open(victim / "from_ow.npz", "wb") as dst:
        dst.write(src.read())  # another run's checkpoint copied into victim's folder
    with pytest.raises(ConfigError, match="already holds a run"):
        trained({"resume": str(victim / "from_ow.npz")})
    assert open(victim / "checkpoint.npz", "rb").read() == kept


def test_damaged_or_foreign_checkpoints_are_one_clear_error_before_anything_is_written(data_dir, tmp_path):
    run = tmp_path / "run"
    trained(cfg(data_dir, run, epochs=1))
    good = skengine.load(run / "checkpoint.npz")
    for name, state in (("no_scheduler", {k: v for k, v in good.items() if k != "scheduler"}),
                        ("wrong_model", {**good, "model": {"fc.weight": np.zeros((3, 3), np.float32)}}),
                        ("bad_config", {**good, "config": [1, 2]})):
        skengine.save(state, tmp_path / f"{name}.npz")
        config_before = open(run / "config.json").read()
        with pytest.raises(ConfigError, match=f"--resume .*{name}.npz: "):
            trained({"resume": str(tmp_path / f"{name}.npz"), "out": str(run), "overwrite": True})
        assert open(run / "config.json").read() == config_before


def test_resume_keeps_no_download_and_nested_numpy_settings(data_dir, tmp_path, monkeypatch):
    restore = interrupt_at(monkeypatch, 2)
    trained(cfg(data_dir, tmp_path, model_kwargs={"sk_kwargs": {"reduction": np.int64(8)}}))
    restore()
    resolved, _, _ = config.resolve({"resume": str(tmp_path)})
    assert resolved["download"] is False and resolved["model_kwargs"] == {"sk_kwargs": {"reduction": 8}}
    trained({"resume": str(tmp_path)})
    assert skengine.load(tmp_path / "checkpoint.npz")["epoch"] == 2


def test_resume_keeps_test_every_unless_another_is_given_even_every_epoch(data_dir, tmp_path, monkeypatch):
    """--test-every 1 given to resume a --test-every 0 run was taken for "not given" (1 was the default)."""
    restore = interrupt_at(monkeypatch, 2)
    trained(cfg(data_dir, tmp_path, test_every=0))
    restore()
    for given, kept in (({}, 0), ({"test_every": 1}, 1), ({"test_every": 2}, 2)):
        assert config.resolve({"resume": str(tmp_path), **given})[0]["test_every"] == kept, given
    trained({"resume": str(tmp_path), "test_every": 1})
    assert [h["test_acc"] is not None for h in skengine.load(tmp_path / "checkpoint.npz")["history"]] == [True, True]


def test_a_fast_checkpoint_from_before_the_full_input_sk_paths_still_resumes_and_evaluates(data_dir, tmp_path,
                                                                                            monkeypatch):
    """Until 2026-12-02 sknet_cifar_fast's SK paths took half the channels each, and its checkpoints' configs
    do not say so: resume and evaluate rebuild that network from the weights' shapes."""
    old = {"widths": [16, 32, 32], "sk_kwargs": {"split_input": True}}
    trained({**fast_cfg(data_dir, tmp_path / "straight"), "model_kwargs": old})
    restore = interrupt_at(monkeypatch, 3)
    trained({**fast_cfg(data_dir, tmp_path / "cut"), "model_kwargs": old})
    restore()
    path = tmp_path / "cut" / "checkpoint.npz"
    state = skengine.load(path)
    state["config"]["model_kwargs"] = {"widths": [16, 32, 32]}  # as such a run wrote it
    skengine.save(state, path)
    assert config.resolve({"resume": str(path)})[0]["model_kwargs"] == old
    trained({"resume": str(path)})
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
