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
