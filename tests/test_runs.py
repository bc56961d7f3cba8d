"""skengine.training.load_run: a run's network rebuilt from its folder, best.npz or checkpoint.npz, with the
logits of the network that was saved; every way it can fail is one ConfigError line naming the file."""
import os

import numpy as np
import pytest

import skengine as sk
from skengine.models import create
from skengine.nn import SKConv
from skengine.training import ConfigError, load_run
from skengine.training.runs import SavedRun

CONFIG = {"model": "sknet_cifar_tiny", "dataset": "cifar10", "model_kwargs": {}, "seed": 0, "epochs": 1}


def trained_looking(name="sknet_cifar_tiny", seed=0, **kwargs):
    """A network whose BatchNorm statistics are not the fresh ones, so that a rebuild that forgot them shows."""
    sk.manual_seed(seed)
    net = create(name, **kwargs)
    rng = np.random.default_rng(seed)
    for key, t in net.state_dict().items():
        if key.endswith("running_mean"):
            t.data[...] = rng.normal(0, 0.1, t.shape)
        elif key.endswith("running_var"):
            t.data[...] = rng.uniform(0.5, 2.0, t.shape)
    return net.eval()


def logits(net, x):
    with sk.no_grad():
        return net(sk.Tensor(x)).numpy()


def save_run(folder, net, config=CONFIG, best=True, checkpoint=True):
    """best.npz and checkpoint.npz as the trainer writes them (the checkpoint with its training state)."""
    os.makedirs(folder, exist_ok=True)
    if best:
        sk.save({"config": config, "model": net.state_dict(), "epoch": 1, "test_acc": 0.5},
                os.path.join(folder, "best.npz"))
    if checkpoint:
        sk.save({"config": config, "model": net.state_dict(), "optimizer": {"lr": 0.1}, "scheduler": {"step": 3},
                 "loader": {}, "rng": {}, "ema": {}, "epoch": 1, "history": [], "best_acc": 0.5, "partial": None},
                os.path.join(folder, "checkpoint.npz"))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(0, 1, (3, 3, 32, 32)).astype(np.float32)


def test_the_rebuilt_network_gives_the_saved_ones_logits(tmp_path, images):
    net = trained_looking()
    save_run(tmp_path, net)
    run = load_run(tmp_path / "best.npz")
    assert isinstance(run, SavedRun) and run.path == str(tmp_path / "best.npz")
    assert run.config == CONFIG and run.state["test_acc"] == 0.5 and set(run.state["model"]) == set(net.state_dict())
    assert not any(m.training for m in run.model.modules())  # eval mode: BatchNorm uses the saved statistics
    np.testing.assert_array_equal(logits(run.model, images), logits(net, images))
    model, config, path, state = load_run(str(tmp_path / "checkpoint.npz"))  # a plain tuple as well
    assert path == str(tmp_path / "checkpoint.npz") and state["optimizer"] == {"lr": 0.1}
    np.testing.assert_array_equal(logits(model, images), logits(net, images))


def test_a_folder_is_read_by_its_best_npz_else_its_checkpoint(tmp_path, images):
    best, last = trained_looking(seed=1), trained_looking(seed=2)
    save_run(tmp_path / "run", best, checkpoint=False)
    save_run(tmp_path / "run", last, best=False)
    run = load_run(tmp_path / "run")
    assert run.path == str(tmp_path / "run" / "best.npz")
    np.testing.assert_array_equal(logits(run.model, images), logits(best, images))
    os.remove(tmp_path / "run" / "best.npz")  # a run interrupted before its first test: no best.npz yet
    run = load_run(str(tmp_path / "run"))
    assert run.path == str(tmp_path / "run" / "checkpoint.npz")
    np.testing.assert_array_equal(logits(run.model, images), logits(last, images))


def test_the_runs_settings_decide_the_network(tmp_path, images):
    """The class count follows the dataset; model_kwargs are the network's options."""
    net = trained_looking(num_classes=100, attention="se")
    config = {**CONFIG, "dataset": "cifar100", "model_kwargs": {"attention": "se"}}
    save_run(tmp_path, net, config, checkpoint=False)
    run = load_run(tmp_path)
    assert logits(run.model, images).shape == (3, 100)
    assert not any(isinstance(m, SKConv) for m in run.model.modules())
    np.testing.assert_array_equal(logits(run.model, images), logits(net, images))


def test_an_old_fast_run_with_half_channel_paths_is_rebuilt_so(tmp_path):
    """saved_model_kwargs' rule: a sknet_cifar_fast run from before 2026-12-02 has no option that says its SK
    paths took half the channels, but its weights' shapes do."""
    net = create("sknet_cifar_fast", sk_kwargs={"split_input": True})
    save_run(tmp_path, net, {**CONFIG, "model": "sknet_cifar_fast"}, checkpoint=False)
    run = load_run(tmp_path)
    for key, t in run.model.state_dict().items():
        assert t.shape == net.state_dict()[key].shape, key
    assert run.config["model_kwargs"] == {}  # the run's settings as saved


def test_every_failure_is_one_config_error_line_naming_the_file(tmp_path):
    net = trained_looking()
    good = {"config": CONFIG, "model": net.state_dict()}
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.npz").write_text("not a checkpoint")
    save_run(tmp_path / "real", net, checkpoint=False)
    with open(tmp_path / "real" / "best.npz", "rb") as f:
        (tmp_path / "cut.npz").write_bytes(f.read()[:5000])  # a copy that stopped midway
    cases = {
        "weights_only": net.state_dict(),
        "unknown_model": {**good, "config": {**CONFIG, "model": "nope"}},
        "no_dataset": {**good, "config": {k: v for k, v in CONFIG.items() if k != "dataset"}},
        "imagenet": {**good, "config": {**CONFIG, "dataset": "imagenet"}},
        "wrong_weights": {**good, "model": {"x": sk.zeros(2)}},
        "other_network": {**good, "model": create("sknet_cifar_tiny", attention="se").state_dict()},
        "bad_options": {**good, "config": {**CONFIG, "model_kwargs": {"no_such_option": 1}}},
        "options_not_a_dict": {**good, "config": {**CONFIG, "model_kwargs": [1, 2]}},
        "config_not_a_dict": {**good, "config": "sknet_cifar_tiny"},
    }
    for name, state in cases.items():
        sk.save(state, tmp_path / f"{name}.npz")
    expected = [(tmp_path / "missing.npz", "no such file or folder"),
                (tmp_path / "empty", "a folder without best.npz or checkpoint.npz"),
                (tmp_path / "text.npz", "not a checkpoint of skengine.train"),
                (tmp_path / "cut.npz", "not a checkpoint of skengine.train"),
                (tmp_path / "weights_only.npz", "holds no run settings and weights"),
                (tmp_path / "unknown_model.npz", "its model 'nope' is none of this version's"),
                (tmp_path / "no_dataset.npz", "name no dataset"),
                (tmp_path / "imagenet.npz", "name no dataset"),
                (tmp_path / "wrong_weights.npz", "its weights do not fit sknet_cifar_tiny"),
                (tmp_path / "other_network.npz", "its weights do not fit sknet_cifar_tiny"),
                (tmp_path / "bad_options.npz", "cannot be built with"),
                (tmp_path / "options_not_a_dict.npz", "cannot be built with")]
    for path, says in expected + [(tmp_path / "config_not_a_dict.npz", "holds no run settings")]:
        with pytest.raises(ConfigError) as e:
            load_run(path)
        message = str(e.value)
        assert says in message and str(path) in message and "\n" not in message, (path, message)
    with pytest.raises(ConfigError) as e:
        load_run(tmp_path / "real", device="tpu")
    assert "device 'tpu'" in str(e.value) and str(tmp_path / "real" / "best.npz") in str(e.value)


def test_sizes_no_saved_weight_has_are_refused_before_the_network_is_built(tmp_path, monkeypatch):
    """widths [64, 128, 2000000] in a checkpoint's settings built a 24 GB network before its weights were
    compared: the machine's memory ran out.  The settings' sizes are checked against the weights' shapes first."""
    from skengine.training import runs
    fast = {**CONFIG, "model": "sknet_cifar_fast", "model_kwargs": {"widths": [16, 32, 32]}}
    weights = create("sknet_cifar_fast", widths=[16, 32, 32]).state_dict()
    save_run(tmp_path / "ok", trained_looking("sknet_cifar_fast", widths=[16, 32, 32]), fast, checkpoint=False)
    assert load_run(tmp_path / "ok").model.blocks[2].conv.weight.shape[0] == 32  # its own sizes pass
    built = []
    monkeypatch.setattr(runs, "create", lambda *a, **k: built.append(k) or pytest.fail(f"built with {k}"))
    for name, options, says in (
            ("huge", {"widths": [16, 32, 2000000]}, "give widths 2000000, but no saved weight has a dimension of "
                                                    "that size (the largest is 64)"),  # fc_select: 2 paths x 32
            ("deep", {"widths": [16, 32, 32], "sk_kwargs": {"kernel_sizes": [3, 1001]}}, "kernel_sizes 1001")):
        sk.save({"config": {**fast, "model_kwargs": options}, "model": weights}, tmp_path / f"{name}.npz")
        with pytest.raises(ConfigError) as e:
            load_run(tmp_path / f"{name}.npz")
        assert says in str(e.value) and str(tmp_path / f"{name}.npz") in str(e.value) and "\n" not in str(e.value)
    assert built == []


def test_factors_in_the_settings_are_not_taken_for_sizes(tmp_path, images):
    """logit_scale 100 (a whole number in config.json) was read as a size that no weight has, and a valid run
    was refused by evaluate, sk_attention and ablate --gates; bn_eps, bn_momentum and dilation are no sizes either."""
    options = {"widths": [16, 32, 32], "logit_scale": 100, "bn_eps": 100, "bn_momentum": 1,
               "sk_kwargs": {"dilation": 90}}
    net = trained_looking("sknet_cifar_fast", **options)
    save_run(tmp_path, net, {**CONFIG, "model": "sknet_cifar_fast", "model_kwargs": options}, checkpoint=False)
    run = load_run(tmp_path)
    assert run.model.logit_scale == 100 and run.model.blocks[0].sk.paths[0].conv.dilation == (90, 90)
    np.testing.assert_array_equal(logits(run.model, images), logits(net, images))


def test_weights_that_are_not_arrays_or_not_finite_are_one_line(tmp_path):
    """A weight that is a string gave an AttributeError (read for its shape), then blamed on the settings'
    model_kwargs; NaN weights gave a table of NaN in sk_attention and a chance-level accuracy in evaluate."""
    net = trained_looking()
    weights = dict(net.state_dict())
    nan = {k: sk.Tensor(np.where(np.arange(v.numel()).reshape(v.shape) == 1, np.nan, v.numpy()))
           if k == "layer2.0.conv1.fc_select.weight" else v for k, v in weights.items()}
    cases = {"string": ({**weights, "stem.conv.weight": "abc"}, "its weights hold a str at 'stem.conv.weight'"),
             "fast_string": ({"blocks.0.sk.paths.0.conv.weight": "abc", "blocks.0.conv.weight": 1.5},
                             "its weights hold a str at 'blocks.0.sk.paths.0.conv.weight'"),
             "nan": (nan, "its weights hold NaN or inf (the first: 'layer2.0.conv1.fc_select.weight')"),
             "integers": ({k: sk.Tensor(v.numpy().astype(np.int64)) for k, v in weights.items()},
                          "expected floating-point values")}
    for name, (model, says) in cases.items():
        config = {**CONFIG, "model": "sknet_cifar_fast"} if name == "fast_string" else CONFIG
        sk.save({"config": config, "model": model}, tmp_path / f"{name}.npz")
        with pytest.raises(ConfigError) as e:
            load_run(tmp_path / f"{name}.npz")
        assert says in str(e.value) and str(tmp_path / f"{name}.npz") in str(e.value), str(e.value)
        assert "\n" not in str(e.value)


def test_a_full_disk_stops_the_trainer_in_one_line_and_keeps_the_last_checkpoint(data_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    """The disk filled up during epoch 2's checkpoint: three chained tracebacks (the write, then zipfile's
    closing writes, failing again).  One line naming the folder and the space needed; epoch 1's checkpoint stays."""
    from skengine.training import extensions
    from test_serialization import full_disk
    from trainkit import run_cli, small_argv
    out, real_save = tmp_path / "run", extensions.save

    def save_then_fill_the_disk(obj, path):
        real_save(obj, path)
        if os.path.basename(path) == "checkpoint.npz":  # epoch 1's is written: from now on the disk is full
            full_disk(monkeypatch, out, room=20_000)  # room for metrics.csv, not for a checkpoint (1.3 MB)

    monkeypatch.setattr(extensions, "save", save_then_fill_the_disk)
    code, _, err = run_cli(small_argv(data_dir, out, "--epochs", 2), capsys)
    monkeypatch.undo()
    full = [line for line in err.splitlines() if "No space left on device" in line]
    assert code == 1 and "Traceback" not in err and len(full) == 1, err
    assert full[0].startswith("skengine-train: training stopped: [Errno 28] No space left on device: writing ")
    assert f"in {out}, which has " in full[0] and " MB free" in full[0] and "needs about 1." in full[0], full[0]
    assert sk.load(out / "checkpoint.npz")["epoch"] == 1
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_no_gpu_is_a_config_error(tmp_path):
    if sk.cuda_available():
        pytest.skip("a GPU is here")
    save_run(tmp_path, trained_looking(), checkpoint=False)
    with pytest.raises(ConfigError) as e:
        load_run(tmp_path, device="cuda")
    assert "device 'cuda'" in str(e.value) and "\n" not in str(e.value)
    assert load_run(tmp_path, device="auto").model is not None  # auto: the CPU here


@pytest.mark.gpu
def test_load_run_onto_the_gpu_gives_the_cpus_logits(tmp_path, images):
    net = trained_looking()
    save_run(tmp_path, net, checkpoint=False)
    run = load_run(tmp_path, device="cuda")
    assert all(p.device == "cuda" for p in run.model.parameters())
    x = sk.Tensor(images).to("cuda")
    with sk.no_grad():
        out = run.model(x).numpy()
    np.testing.assert_allclose(out, logits(net, images), rtol=1e-4, atol=1e-4)
