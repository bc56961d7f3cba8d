"""How a recipe meets the flags a user changes first (skengine/training/settings.py and config.py): the default
command with each ordinary flag changed alone trains and records what it ran; the settings that could not work
before (a recipe on a model it was not tuned for, --epochs 1, --no-tta, another batch size or optimizer, a
diverging learning rate) either train or stop in one line."""
import json
import os

import numpy as np
import pytest

import skengine
from skengine import train
from skengine.models import list_models
from skengine.training import DEFAULTS, RECIPES, Diverged, config
from skengine.training.settings import DEFAULT_RECIPE
from trainkit import run_cli

CIFAR_MODELS = [m for m in list_models() if m.startswith("sknet_cifar")]


def default_command(data_dir, out, **changed):
    """The default command (no recipe, no model named) on 192 images of the fake data (one step an epoch at
    the recipe's batch), with ``changed`` as a user would type it."""
    return {"data_dir": data_dir, "out": str(out), "download": False, "device": "cpu", "limit_train": 192,
            "limit_test": 40, **changed}


def saved_config(out):
    with open(os.path.join(out, "config.json")) as f:
        return json.load(f)


ORDINARY = [dict(), dict(epochs=1), dict(epochs=2), dict(batch_size=64), dict(no_tta=True), dict(processes=2),
            dict(optimizer="adamw"), *[dict(schedule=s) for s in ("onecycle", "cosine", "step")],
            *[dict(model=m) for m in CIFAR_MODELS if m != "sknet_cifar_fast"], dict(recipe="airbench93"),
            dict(recipe="fast"), dict(model_kwargs={"sk_kwargs": {"attention": "softmax"}})]


@pytest.mark.usefixtures("deadline")
@pytest.mark.parametrize("changed", ORDINARY, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "none")
def test_the_default_command_with_one_flag_changed_trains_and_records_it(data_dir, tmp_path, changed):
    given = {("tta" if k == "no_tta" else k): (False if k == "no_tta" else v) for k, v in changed.items()}
    result = train.train(default_command(data_dir, tmp_path, **given))
    history = skengine.load(tmp_path / "checkpoint.npz")["history"]
    saved = saved_config(tmp_path)
    assert all(saved[k] == v for k, v in given.items()), (saved, given)
    expected = config.settings_of(given)
    assert saved["recipe"] == expected["recipe"] and saved["lr"] == expected["lr"]
    assert saved["resolved_step_lr"] == pytest.approx(saved["lr"] * saved["batch_size"] / 1024)
    # it trained: the training loss fell, and the test accuracy is above chance (10 classes) where the run had
    # more than a couple of steps
    steps = saved["epochs"] * -(-192 // saved["batch_size"])
    assert np.isfinite(result["train_loss"])
    if steps >= 4:
        assert history[-1]["train_loss"] < history[0]["train_loss"], history
        assert result["test_acc"] > 0.2, result
        if saved["schedule"] in ("linear", "onecycle", "cosine"):  # the schedule ran to its end, whatever --epochs
            end = saved["end_factor"] if saved["schedule"] == "linear" else 0.0
            assert history[-1]["lr"] < (end + 0.01) * saved["resolved_step_lr"] * saved["bias_lr_scale"]
    if not saved["tta"]:
        assert result["test_acc_tta"] is None and not saved["tta_translate"]


def test_a_model_takes_its_own_recipe_or_the_plain_settings():
    """`--model sknet_cifar_tiny` took the fast recipe's lr 0.75 and 64x bias rate and trained to chance."""
    tiny = config.settings_of({"model": "sknet_cifar_tiny"})
    assert tiny == {**DEFAULTS, "model": "sknet_cifar_tiny", "recipe": None}
    assert config.settings_of({"model": "sknet_cifar_fast"}) == config.settings_of({})
    assert config.settings_of({})["recipe"] == DEFAULT_RECIPE == "airbench93_sk"
    named = config.settings_of({"model": "sknet_cifar_tiny", "recipe": "fast"})  # a recipe named is taken
    assert named["bias_lr_scale"] == RECIPES["fast"]["bias_lr_scale"] and named["model"] == "sknet_cifar_tiny"
    line = config.describe(named, {"model": "sknet_cifar_tiny", "recipe": "fast"})
    assert "tuned for sknet_cifar_fast, not sknet_cifar_tiny" in line
    assert config.describe(tiny, {"model": "sknet_cifar_tiny"}).startswith(
        "the plain settings (sknet_cifar_tiny has no tuned recipe)")


def test_the_learning_rate_is_per_1024_images_and_scales_with_the_batch():
    """--batch-size 64 kept the lr tuned for 512: 8x too high per image."""
    for batch in (64, 512, 1024):
        cfg = config.settings_of({"batch_size": batch})
        assert config.step_lr(cfg) == pytest.approx(1.5 * batch / 1024)
    assert config.step_lr(config.settings_of({})) == 0.75  # the recipe as tuned: 0.75 a step of 512
    assert config.step_lr(config.settings_of({"recipe": "none"})) == 0.2  # the plain settings: 0.2 a step of 256


def test_a_batch_larger_than_the_data_takes_the_lr_of_the_images_it_has(data_dir, tmp_path):
    """--batch-size 4096 on 512 images took lr 3.2 (4096's) for steps of 512."""
    train.train(default_command(data_dir, tmp_path, batch_size=4096, epochs=1, tta=False))
    saved = saved_config(tmp_path)
    assert saved["batch_size"] == 192 and saved["resolved_step_lr"] == pytest.approx(1.5 * 192 / 1024)


def test_another_optimizer_takes_its_own_rates_not_the_recipes():
    """--optimizer adamw took SGD's lr 0.75 and 64x bias rate: the loss stuck at 2.3026."""
    adamw = config.settings_of({"optimizer": "adamw"})
    assert (adamw["lr"], adamw["wd"], adamw["bias_lr_scale"]) == (0.004, 0.05, 1.0)
    assert adamw["epochs"] == RECIPES[DEFAULT_RECIPE]["epochs"] and adamw["model"] == "sknet_cifar_fast"
    assert config.settings_of({"optimizer": "adamw", "lr": 0.01})["lr"] == 0.01  # given wins


def test_no_tta_turns_off_every_view_and_the_warmup_fits_any_run(data_dir, tmp_path):
    """--no-tta and --epochs 1 were refused under the fast recipe (its translate views, its 2-epoch warm-up)."""
    cfg, _, _ = config.resolve(default_command(data_dir, tmp_path / "a", tta=False, epochs=1))
    assert (cfg["tta"], cfg["tta_translate"], cfg["epochs"]) == (False, False, 1)
    assert config.settings_of({"tta": True, "tta_translate": False})["tta_translate"] is False
    with pytest.raises(skengine.training.ConfigError, match="--tta-translate adds views to --tta's"):
        config.resolve(default_command(data_dir, tmp_path / "b", tta=False, tta_translate=True))


@pytest.mark.parametrize("extra", [["--lr", 1000], ["--recipe", "none", "--lr", 50]])
def test_a_diverging_run_stops_in_one_line_with_exit_code_1(data_dir, tmp_path, capsys, extra):
    """--lr 1000 and --recipe none --lr 50 trained to test losses of 9e19 and 4e6 and exited 0."""
    code, stdout, stderr = run_cli(["--data-dir", data_dir, "--out", tmp_path, "--device", "cpu", "--no-download",
                                    "--limit-test", 60, "--batch-size", 64, "--epochs", 2, *extra], capsys)
    last = stderr.strip().splitlines()[-1]
    assert code == 1 and last.startswith("skengine-train: diverged at epoch 1 step ") and "lower --lr" in last, stderr
    assert "final test accuracy" not in stdout


def test_the_guard_measures_against_the_first_step_and_resumes_with_it():
    from skengine.training.extensions import DivergenceGuard

    class FakeTrainer:
        loader, epoch, rank, cfg = type("L", (), {"batch": 3})(), 2, 0, config.settings_of({})
        observation = {"bad": False, "failure": None, "loss_sum": 2.3 * 4, "n": 4}

        def kept(self):
            return "kept"

    guard, t = DivergenceGuard(4.0), FakeTrainer()
    guard(t)  # the first step: 2.3
    t.observation = {**t.observation, "loss_sum": 9.1 * 4}
    guard(t)  # 9.1 < 4 x 2.3
    again = DivergenceGuard(4.0)
    again.load_state_dict(guard.state_dict())
    t.observation = {**t.observation, "loss_sum": 9.3 * 4}
    with pytest.raises(Diverged, match=r"diverged at epoch 2 step 3 \(loss 9\.3, more than 4x the first step's 2\.3\)"
                                       r": lower --lr; kept"):
        again(t)
    t.cfg = config.settings_of({"wd": 0.5, "bias_lr_scale": 1000.0})  # what the user raised is named
    with pytest.raises(Diverged, match=r": lower --lr or --wd 0\.5 \(default 0\.00133\) or --bias-lr-scale 1000 "
                                       r"\(default 64\); kept"):
        again(t)
    DivergenceGuard(0.0)(t)  # 0: never


def test_a_short_run_warms_up_within_it_and_ends_at_zero():
    """--epochs 2 under the fast recipe: its 2-epoch warm-up was the whole run and the lr ended at its peak."""
    from skengine.models import create
    from skengine.training.recipe import build_optimizer

    cfg = config.settings_of({"recipe": "fast", "epochs": 2})
    opt, sched = build_optimizer(create("sknet_cifar_fast", widths=(8, 8, 8)), cfg, 98)  # 50,000 images / 512
    lrs = []
    for _ in range(2 * 98):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = config.step_lr(cfg)
    assert lrs[0] == pytest.approx(0.2 * peak) and max(lrs) == pytest.approx(peak)
    assert int(np.argmax(lrs)) == round(2 / 15 * 2 * 98) == 26 and opt.param_groups[0]["lr"] == 0.0
    whiten = opt.param_groups[-1]  # the whitening bias learns for 3 epochs: the whole of this run
    assert whiten["params"][0].shape == (24,) and whiten["lr"] == 0.0 and whiten["initial_lr"] == peak


@pytest.mark.parametrize("images", [1, 2, 3])
def test_a_few_images_train_in_one_process_or_stop_in_one_line(data_dir, tmp_path, capsys, images):
    """--limit-train 1, 2, 3 under the default batch of 512 started 2 processes for 1-3 images: a traceback from
    BatchNorm on a rank with one image."""
    code, _, stderr = run_cli(["--data-dir", data_dir, "--out", tmp_path, "--device", "cpu", "--no-download",
                               "--limit-train", images, "--limit-test", 20, "--epochs", 2, "--no-tta"], capsys)
    if images == 1:
        assert code == 2 and stderr.count("\n") == 1 and "BatchNorm needs a batch of at least 2" in stderr, stderr
        assert not (tmp_path / "config.json").exists()
    else:
        assert code == 0, stderr
        assert saved_config(tmp_path)["processes"] == 1 and saved_config(tmp_path)["batch_size"] == images


def test_options_that_build_a_network_that_cannot_run_are_one_line(data_dir, tmp_path, capsys):
    """--model-kwargs '{"widths": [64]}' built a network whose head does not fit, and failed in the first
    forward with a traceback, after config.json was written."""
    code, _, stderr = run_cli(["--data-dir", data_dir, "--out", tmp_path, "--device", "cpu", "--no-download",
                               "--model-kwargs", '{"widths": [64]}'], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "it cannot run an image" in stderr, stderr
    assert not tmp_path.exists() or not os.listdir(tmp_path)


@pytest.mark.parametrize("scale", ["NaN", "Infinity", "-Infinity"])
def test_options_that_make_the_outputs_not_finite_are_one_line_with_exit_code_2(data_dir, tmp_path, capsys, scale):
    """--model-kwargs '{"logit_scale": NaN}' (or Infinity) built a network that passed the forward check and
    stopped at step 1 with "the loss is nan", exit code 1, after config.json was written."""
    kwargs = f'{{"logit_scale": {scale}, "widths": [16, 32, 32]}}'
    code, _, stderr = run_cli(["--data-dir", data_dir, "--out", tmp_path / "out", "--device", "cpu", "--no-download",
                               "--model", "sknet_cifar_fast", "--model-kwargs", kwargs], capsys)
    assert code == 2 and stderr == (f"skengine-train: error: --model sknet_cifar_fast --model-kwargs {kwargs}: its "
                                    f"outputs on the first training images are not finite (NaN or inf)\n"), stderr
    assert not (tmp_path / "out").exists()


def lookahead_run(data_dir, out, capsys, *extra):
    return run_cli(["--data-dir", data_dir, "--out", out, "--device", "cpu", "--no-download", "--recipe", "none",
                    "--model", "sknet_cifar_tiny", "--limit-train", 192, "--limit-test", 40, "--no-tta",
                    "--processes", 1, *extra], capsys)


@pytest.mark.parametrize("extra,k,steps,epochs,per_epoch", [
    (["--epochs", 2, "--batch-size", 64], 6, 6, 2, 3),  # 192 images: 3 steps of 64 an epoch
    (["--epochs", 2, "--batch-size", 64], 100, 6, 2, 3),
    (["--epochs", 3, "--batch-size", 4096], 3, 3, 3, 1),  # a batch of the 192 images it has: 1 step an epoch
    (["--epochs", 1, "--batch-size", 96], 2, 2, 1, 2),
])
def test_a_lookahead_period_of_the_whole_run_is_refused_before_anything_is_written(data_dir, tmp_path, capsys, extra,
                                                                                  k, steps, epochs, per_epoch):
    """--lookahead 100 (or 8) on an 8-step run ended it below chance: no period ended before the run did, and the
    run ends on the slow weights, two-thirds its initial ones.  The run's steps are known once its data is loaded
    (its images, the batch it can take): the refusal comes then, and writes nothing; a shorter period trains."""
    out = tmp_path / "out"
    code, _, stderr = lookahead_run(data_dir, out, capsys, *extra, "--lookahead", k)
    assert code == 2 and stderr == (f"skengine-train: error: --lookahead {k}: the run takes {steps} optimizer steps "
                                    f"({epochs} epoch{'s' if epochs > 1 else ''} of {per_epoch}), and a period of the "
                                    f"whole run would end it near its initial weights: give fewer than {steps} (or 0: "
                                    f"off)\n"), stderr
    assert not out.exists()
    code, _, stderr = lookahead_run(data_dir, out, capsys, *extra, "--lookahead", steps - 1)
    assert code == 0 and skengine.load(out / "checkpoint.npz")["extensions"]["lookahead"]["num_steps"] == steps, stderr


def test_a_run_with_a_lookahead_of_the_whole_run_still_resumes(data_dir, tmp_path, capsys, monkeypatch):
    """A checkpoint of a run started before the refusal (--lookahead 10 on a 10-step run) continues: the
    refusal is for a new run, not one a user has half trained."""
    from trainkit import cfg, interrupt_at, trained
    restore = interrupt_at(monkeypatch, 2)
    trained(cfg(data_dir, tmp_path, lookahead=3))  # 2 epochs of 5 steps
    restore()
    state = skengine.load(tmp_path / "checkpoint.npz")
    state["config"]["lookahead"] = state["extensions"]["lookahead"]["k"] = 10
    skengine.save(state, tmp_path / "checkpoint.npz")
    code, _, stderr = run_cli(["--resume", tmp_path], capsys)
    assert code == 0 and "resumed from" in stderr, stderr
    ckpt = skengine.load(tmp_path / "checkpoint.npz")
    assert (ckpt["epoch"], ckpt["extensions"]["lookahead"]["k"], ckpt["extensions"]["lookahead"]["num_steps"]) == \
        (2, 10, 10)


def test_a_setting_the_run_has_no_use_for_is_named_in_a_line_of_its_own(data_dir, tmp_path):
    """--warmup under --schedule step, --momentum under adamw: the first line named the one in passing, the
    other not at all."""
    def notes(**given):
        return config.resolve(default_command(data_dir, tmp_path, **given))[2][1:]
    assert notes(schedule="step", warmup=0.5) == ["--warmup 0.5 is ignored: --schedule step has no warm-up"]
    assert notes(optimizer="adamw", momentum=0.5) == ["--momentum 0.5 is ignored: adamw keeps its betas"]
    assert notes(schedule="cosine", end_factor=0.1) == [
        "--end-factor 0.1 is ignored: --schedule cosine ends as it always does (--end-factor is the linear schedule's)"]
    assert notes(schedule="onecycle", warmup=0.5) == notes(momentum=0.5) == notes(schedule="step") == []
    assert notes(end_factor=0.1) == []  # the default recipe's schedule is linear


def test_a_diverged_run_is_told_to_lower_what_was_raised():
    """The message said "lower --lr" when --wd or --bias-lr-scale, raised far above the recipe's, diverged."""
    assert config.to_lower(config.settings_of({"lr": 50.0})) == "lower --lr"
    assert config.to_lower(config.settings_of({"recipe": None, "momentum": 0.99, "wd": 1e-4})) == \
        "lower --lr or --momentum 0.99 (default 0.9)"
    assert config.to_lower(config.settings_of({"optimizer": "adamw", "wd": 2.0})) == \
        "lower --lr or --wd 2 (default 0.05)"


def test_the_default_recipe_is_the_command_it_was_measured_as():
    """The default command is issue 31's SK recipe: airbench93's recipe with the four flags that were timed
    (benchmarks/history/2026-12-07-sk-recipe-zen4.md), and nothing else changed."""
    measured = config.settings_of({"recipe": "airbench93", "batch_size": 512, "lookahead": 10, "epochs": 10,
                                   "model_kwargs": {"attention": ["none", "sk", "sk"],
                                                    "sk_kwargs": {"attention": "sigmoid"}}})
    assert config.settings_of({}) == {**measured, "recipe": "airbench93_sk"}


def test_model_kwargs_given_replace_the_recipes_and_the_first_line_says_so():
    given = {"model_kwargs": {"sk_kwargs": {"attention": "softmax"}}}
    cfg = config.settings_of(given)
    assert cfg["model_kwargs"] == {"sk_kwargs": {"attention": "softmax"}}  # every block's SK unit, as typed
    assert ('recipe airbench93_sk (the default), whose --model-kwargs {"attention": ["none", "sk", "sk"], '
            '"sk_kwargs": {"attention": "sigmoid"}} the given ones replace;') in config.describe(cfg, given)
    assert "replace" not in config.describe(config.settings_of({}), {})
    fast = {"recipe": "fast", **given}  # a recipe without constructor options has none to replace
    assert "replace" not in config.describe(config.settings_of(fast), fast)


def test_the_recipes_lookahead_is_off_on_a_run_too_short_for_it(data_dir, tmp_path, capsys):
    """The default command on 192 images (10 steps of 192) was refused: its Lookahead period of 10 steps is the
    whole run.  A period the user gives is still refused (the test above); the recipe's is turned off, said."""
    code, _, stderr = run_cli(["--data-dir", data_dir, "--out", tmp_path, "--device", "cpu", "--no-download",
                               "--limit-train", 192, "--limit-test", 40, "--processes", 1, "--epochs", 3], capsys)
    assert code == 0, stderr
    assert ("the recipe's Lookahead every 10 steps is off: the run takes 3 optimizer steps, and a period of the "
            "whole run would end it near its initial weights") in stderr
    assert saved_config(tmp_path)["lookahead"] == 0
    assert "lookahead" not in skengine.load(tmp_path / "checkpoint.npz")["extensions"]


def test_help_names_the_recipe_a_model_takes_and_writes_its_options_as_json():
    """--help said every recipe of sknet_cifar_fast was the one it takes by default, and wrote --model-kwargs as
    a Python dict (single quotes), which --model-kwargs refuses."""
    from skengine.train import _recipes_help
    text = _recipes_help()
    assert "recipe airbench93_sk (tuned for --model sknet_cifar_fast, which takes it by default):" in text
    assert "recipe fast (tuned for --model sknet_cifar_fast):" in text
    assert '--model-kwargs {"attention": ["none", "sk", "sk"], "sk_kwargs": {"attention": "sigmoid"}},' in text
