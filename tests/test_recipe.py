"""skengine/training/recipe.py: the learning-rate ``Schedule`` by hand and against OneCycleLR, and the fast recipe
with every option on (parameter groups, patch whitening, Lookahead, TTA), which resumes bit for bit.  How the
recipes meet the flags a user changes is tests/test_recipes.py; the helpers are trainkit.py's."""
import shutil

import numpy as np
import pytest

import skengine
from skengine.data import CIFAR_MEAN_STD
from skengine.models import create
from skengine.nn import Parameter
from skengine.optim import SGD, LambdaLR, OneCycleLR
from skengine.training import config, loop, recipe
from trainkit import fast_cfg, interrupt_at, trained, weights


def test_schedules_by_hand():
    linear = recipe.Schedule("linear", 20, 0.2)  # 4 warm-up steps
    assert [linear(s) for s in (0, 2, 4, 12, 20)] == pytest.approx([0.2, 0.6, 1.0, 0.5, 0.0])
    cosine = recipe.Schedule("cosine", 10, 0.2)  # 2 warm-up steps, then half a cosine over 8
    assert [cosine(s) for s in (0, 1, 2, 6, 10)] == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0])
    step = recipe.Schedule("step", 9, 0.0)
    assert [step(s) for s in (0, 2, 3, 6, 8)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    for total in (3, 8):  # --warmup 1: a whole warm-up, yet a last step of decay (it divided by zero)
        onecycle = [recipe.Schedule("onecycle", total, 1.0)(s) for s in range(total + 1)]
        assert onecycle[total - 2] == pytest.approx(1.0) and onecycle[total] == pytest.approx(1 / 25 / 1e4)
    stopped = recipe.Schedule("linear", 20, 0.2, stop=3)  # the whitening bias's group: 0 from step 3 on
    assert [stopped(s) for s in (0, 2, 3, 12)] == pytest.approx([0.2, 0.6, 0.0, 0.0])


def airbench_lr(step, total, peak=0.23, end=0.07):
    """airbench's get_lr (airbench/utils.py's train), written from its text: up from 0.2 to 1 over the first
    int(23%) of the steps, then straight down to 0.07 at the last."""
    warm = int(total * peak)
    if step < warm:
        return 0.2 * (1 - step / warm) + 1.0 * step / warm
    frac = (step - warm) / (total - warm)
    return 1.0 * (1 - frac) + end * frac


@pytest.mark.parametrize("total", [528, 476])  # airbench93: 11 epochs of 48 steps; airbench94: 9.9
def test_the_airbench93_recipe_schedule_is_airbenchs(total):
    cfg = config.settings_of({"recipe": "airbench93"})
    schedule = recipe.Schedule(cfg["schedule"], total, cfg["warmup"], end=cfg["end_factor"])
    assert [schedule(s) for s in range(total + 1)] == pytest.approx([airbench_lr(s, total) for s in range(total + 1)])


@pytest.mark.parametrize("bias_decay", [True, False])
def test_bias_decay_shrinks_bn_biases_by_the_weights_amount_a_step(bias_decay):
    """airbench decays BN biases by the weights' amount a step, though they learn at 64x the rate: with zero
    gradients one Nesterov step multiplies every decayed parameter by 1 - lr * (1 + momentum) * wd."""
    cfg = config.settings_of({"recipe": "airbench93", "bias_decay": bias_decay})
    skengine.manual_seed(0)
    model = create(cfg["model"], **cfg["model_kwargs"])
    model.blocks[0].bn.bias.data[:] = 0.5
    opt, _ = recipe.build_optimizer(model, cfg, steps_per_epoch=48)
    before = {n: p.data.copy() for n, p in model.named_parameters() if p.requires_grad}
    for p in model.parameters():
        p.grad = np.zeros_like(p.data) if p.requires_grad else None
    opt.step()
    lr = config.step_lr(cfg) * 0.2  # the schedule's first factor
    shrink = 1 - lr * (1 + cfg["momentum"]) * cfg["wd"]
    conv, bias = "blocks.0.conv.weight", "blocks.0.bn.bias"
    after = dict(model.named_parameters())
    assert after[conv].data == pytest.approx(before[conv] * shrink, rel=1e-6)
    assert after[bias].data == pytest.approx(before[bias] * (shrink if bias_decay else 1.0), rel=1e-6)
    assert cfg["bias_lr_scale"] == 64 and (shrink < 1)


def test_with_wd_0_the_weights_keep_their_rate():
    """--wd 0 gave the weights' group weight_decay 0, which param_groups took for the biases' mark: 64x the rate."""
    cfg = config.settings_of({"recipe": "airbench93", "wd": 0.0})
    model = create(cfg["model"], **cfg["model_kwargs"])
    groups, _ = recipe.param_groups(model, cfg)
    conv = model.blocks[0].conv.weight
    (weights,) = [g for g in groups if any(p is conv for p in g["params"])]
    assert weights["lr"] == config.step_lr(cfg) and weights["weight_decay"] == 0.0


def test_drop_last_drops_each_epochs_short_batch(data_dir, tmp_path):
    """192 images in batches of 128: two steps an epoch, or one with --drop-last, over 4 epochs (airbench drops
    the 848 images of 50,000 that make no batch of 1024)."""
    for drop, steps in ((False, 8), (True, 4)):
        out = tmp_path / str(drop)
        trained(fast_cfg(data_dir, out, epochs=4, batch_size=128, drop_last=drop, limit_train=192))
        assert skengine.load(out / "checkpoint.npz")["scheduler"]["last_epoch"] == steps


def test_trainer_onecycle_keeps_momentum_fixed_and_follows_onecyclelr():
    """The onecycle Schedule against skengine.optim.OneCycleLR (itself checked against PyTorch's)."""
    opt = SGD([Parameter(np.zeros(1))], lr=0.2, momentum=0.9, nesterov=True)
    ref_opt = SGD([Parameter(np.zeros(1))], lr=0.2, momentum=0.9, nesterov=True)
    for total, warmup in ((8, 0.25), (40, 0.3), (3, 0.1)):
        sched = LambdaLR(opt, recipe.Schedule("onecycle", total, warmup))
        ref = OneCycleLR(ref_opt, max_lr=0.2, total_steps=total, pct_start=max(warmup, 2 / total),
                         cycle_momentum=False)
        for _ in range(total):
            assert opt.param_groups[0]["momentum"] == 0.9
            assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12)
            sched.step()
            ref.step()


def test_fast_recipe_with_every_option_resumes_bit_for_bit(data_dir, tmp_path, monkeypatch):
    straight_out = tmp_path / "straight"
    result = trained(fast_cfg(data_dir, straight_out))
    assert result["test_acc_tta"] is not None and result["epoch"] == 2
    ckpt = skengine.load(straight_out / "checkpoint.npz")
    conf = ckpt["config"]
    assert (conf["flip"], conf["crop_pad"], conf["pad_mode"], conf["schedule"], conf["momentum"],
            conf["bias_lr_scale"], conf["batch_size"]) == ("alternate", 2, "reflect", "linear", 0.85, 64.0, 64)
    # the slow weights are in the checkpoint, and the run ended on them
    lookahead = ckpt["extensions"]["lookahead"]
    slow = lookahead["slow"]
    net = create("sknet_cifar_fast", widths=(16, 32, 32))
    assert lookahead["num_steps"] == 10 and set(slow) == {n for n, _ in net.named_parameters()} | {
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
        trained(fast_cfg(data_dir, tmp_path / f"cut{step}"))
        restore()
        if step == 7:  # also as a checkpoint of before 2026-12-07 would hold it (the code of then resumed so)
            shutil.copytree(tmp_path / "cut7", tmp_path / "old7")
            old_format(tmp_path / "old7" / "checkpoint.npz")
            resumed_cfg = config.resolve({"resume": str(tmp_path / "old7")})[0]
            assert (resumed_cfg["lr"], resumed_cfg["warmup"]) == (1.6, 0.25)  # per 1024 images; a fraction
            trained({"resume": str(tmp_path / "old7")})
            for k, v in weights(straight_out).items():
                np.testing.assert_array_equal(weights(tmp_path / "old7")[k], v, err_msg=("old", k))
        trained(fast_cfg(data_dir, tmp_path / f"cut{step}", resume=str(tmp_path / f"cut{step}")))
        resumed, straight = weights(tmp_path / f"cut{step}"), weights(straight_out)
        for k in straight:
            np.testing.assert_array_equal(resumed[k], straight[k], err_msg=(step, k))


def old_format(path):
    """Rewrite a checkpoint as the trainer wrote it before the settings table: --lr a step's, --warmup-epochs,
    and the EMA, Lookahead and best accuracy at the top level instead of per extension."""
    state = skengine.load(path)
    cfg = state["config"]
    cfg["lr"] = cfg["lr"] * cfg["batch_size"] / 1024
    cfg["warmup_epochs"] = cfg.pop("warmup") * cfg["epochs"]
    for k in ("diverge",):
        cfg.pop(k)
    total = state["scheduler"]["lr_lambdas"][0]["total"]  # one LinearWarmupDecay(warm, total) for every group
    state["scheduler"]["lr_lambdas"] = [{"warm": round(cfg["warmup_epochs"] / cfg["epochs"] * total), "total": total}
                                        for _ in state["scheduler"]["lr_lambdas"]]
    ext = state.pop("extensions")
    state.update(ema=ext.get("ema", {}), lookahead=ext["lookahead"], best_acc=ext["checkpoint"]["best_acc"])
    skengine.save(state, path)
