"""The evaluation command (skengine.evaluate) reads the checkpoint that the training command wrote."""
import pytest

from skengine import evaluate, train
from trainkit import cfg


def test_evaluate_reads_the_checkpoint(data_dir, tmp_path, capsys):
    last = train.train(cfg(data_dir, tmp_path, epochs=1))
    result = evaluate.main(["--checkpoint", str(tmp_path / "checkpoint.npz"), "--data-dir", data_dir,
                            "--device", "cpu"])
    assert result["acc"] == pytest.approx(last["test_acc"])
    assert result["confusion"].sum() == 100
    assert "test accuracy" in capsys.readouterr().out


def test_evaluate_mistakes_are_one_line_with_exit_code_2(data_dir, tmp_path, capsys):
    """A missing or foreign checkpoint and missing data are one line, and no flag the command lacks is
    suggested (the data error said --download, which evaluate did not have)."""
    train.train(cfg(data_dir, tmp_path / "run", epochs=1))
    ckpt = str(tmp_path / "run" / "best.npz")
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.npz").write_text("not a checkpoint")
    cases = [(["--checkpoint", str(tmp_path / "nope.npz")], "--checkpoint"),
             (["--checkpoint", str(tmp_path / "text.npz")], "not a checkpoint of skengine.train"),
             (["--checkpoint", ckpt, "--data-dir", str(tmp_path / "missing")], "is not a folder"),
             (["--checkpoint", ckpt, "--data-dir", str(tmp_path / "empty"), "--no-download"],
              "cifar-10-batches-py"),
             (["--checkpoint", ckpt, "--batch-size", "0"], "--batch-size must be an integer >= 1")]
    capsys.readouterr()
    parser_flags = set(evaluate.build_parser()._option_string_actions)
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            evaluate.main(argv + ["--device", "cpu"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and message in err, (argv, err)
        for flag in (w.strip("().,'") for w in err.split() if w.startswith("--")):
            assert flag in parser_flags, (flag, err)



def test_evaluate_takes_a_run_folder_and_refuses_a_damaged_checkpoint(data_dir, tmp_path, capsys):
    import skengine
    train.train(cfg(data_dir, tmp_path / "run", epochs=1))
    result = evaluate.main(["--checkpoint", str(tmp_path / "run"), "--data-dir", data_dir, "--device", "cpu"])
    assert "best.npz" in capsys.readouterr().out and result["confusion"].sum() == 100
    best = skengine.load(tmp_path / "run" / "best.npz")
    for name, state in (("unknown_model", {**best, "config": {**best["config"], "model": "nope"}}),
                        ("wrong_weights", {**best, "model": {"x": skengine.zeros(2)}}),
                        ("no_dataset", {**best, "config": {"model": best["config"]["model"]}})):
        skengine.save(state, tmp_path / f"{name}.npz")
        with pytest.raises(SystemExit) as e:
            evaluate.main(["--checkpoint", str(tmp_path / f"{name}.npz"), "--data-dir", data_dir])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "not a checkpoint of skengine.train" in err, err


def test_evaluate_refuses_nan_weights_and_sizes_its_weights_lack_in_one_line(data_dir, tmp_path, capsys):
    """NaN weights gave a chance-level accuracy; widths [16, 32, 2000000] in the settings built a huge network
    (24 GB at [64, 128, 2000000]) and the kernel killed the command; a weight that is a string, an
    AttributeError."""
    import numpy as np

    import skengine
    from skengine.models import create
    config = {"model": "sknet_cifar_fast", "dataset": "cifar10", "model_kwargs": {"widths": [16, 32, 32]}}
    weights = create("sknet_cifar_fast", widths=[16, 32, 32]).state_dict()
    nan = dict(weights, **{"fc.weight": skengine.Tensor(np.full(weights["fc.weight"].shape, np.nan, np.float32))})
    cases = {"nan": ({"config": config, "model": nan}, "its weights hold NaN or inf (the first: 'fc.weight')"),
             "huge": ({"config": {**config, "model_kwargs": {"widths": [16, 32, 2000000]}}, "model": weights},
                      "widths 2000000, but no saved weight has a dimension of that size"),
             "string": ({"config": config, "model": {**weights, "blocks.0.conv.weight": "abc"}},
                        "its weights hold a str at 'blocks.0.conv.weight'")}
    for name, (state, says) in cases.items():
        skengine.save(state, tmp_path / f"{name}.npz")
        with pytest.raises(SystemExit) as e:
            evaluate.main(["--checkpoint", str(tmp_path / f"{name}.npz"), "--data-dir", data_dir, "--device", "cpu"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and says in err and f"{name}.npz" in err, err


def test_evaluate_refuses_a_network_whose_logits_are_not_finite_in_one_line(data_dir, tmp_path, capsys):
    """Finite weights can compute NaN (a BatchNorm running_var below zero: the square root of a negative) or inf
    (weights too large for float32): a cross_entropy ValueError traceback, with NumPy's RuntimeWarnings."""
    import numpy as np

    import skengine
    from skengine.models import create
    config = {"model": "sknet_cifar_tiny", "dataset": "cifar10", "model_kwargs": {}}
    weights = create("sknet_cifar_tiny").state_dict()
    negative = {**weights, "stem.bn.running_var": skengine.Tensor(-np.ones(weights["stem.bn.running_var"].shape,
                                                                          np.float32))}
    huge = {**weights, "fc.weight": skengine.Tensor(np.full(weights["fc.weight"].shape, 3e38, np.float32))}
    for name, model in (("negative", negative), ("huge", huge)):
        skengine.save({"config": config, "model": model}, tmp_path / f"{name}.npz")
        for tta in ([], ["--tta", "--tta-translate"]):
            with pytest.raises(SystemExit) as e:
                evaluate.main(["--checkpoint", str(tmp_path / f"{name}.npz"), "--data-dir", data_dir,
                               "--device", "cpu", *tta])
            err = capsys.readouterr().err
            assert e.value.code == 2 and err.count("\n") == 1, err
            assert f"--checkpoint {tmp_path / name}.npz: its network's logits are NaN or inf on the test" in err, err


def test_flip_and_translate_tta_averages_the_six_views_by_hand():
    """evaluate(tta=True, translate=True) against the views built with NumPy: the image and its mirror (1/2),
    the image moved one pixel down-right and up-left with reflected borders, each with its mirror (1/4)."""
    import numpy as np

    import skengine as sk
    from skengine import nn
    from skengine.data import DataLoader
    from skengine.training.evaluation import evaluate as evaluate_fn
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (12, 3, 8, 8), dtype=np.uint8), np.arange(12) % 5
    sk.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    W, b = model[1].weight.numpy().astype(np.float64), model[1].bias.numpy().astype(np.float64)
    x = images / 255.0
    logit = lambda v: v.reshape(len(v), -1) @ W.T + b  # noqa: E731
    mirror = lambda v: 0.5 * (logit(v) + logit(v[..., ::-1]))  # noqa: E731
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    expected = 0.5 * mirror(x) + 0.25 * (mirror(padded[:, :, :8, :8]) + mirror(padded[:, :, 2:, 2:]))
    log_p = expected - expected.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    loader = DataLoader(images, labels, 5)
    got = evaluate_fn(model, loader, tta=True, translate=True)
    assert got["loss"] == pytest.approx(-log_p[np.arange(12), labels].mean(), rel=1e-5)
    assert got["acc"] == pytest.approx(np.mean(expected.argmax(1) == labels))
    plain = evaluate_fn(model, loader)
    assert got["plain_loss"] == pytest.approx(plain["loss"], rel=1e-6)  # the plain numbers stay the plain ones
    flip_only = evaluate_fn(model, loader, tta=True)
    assert abs(flip_only["loss"] - got["loss"]) > 1e-4  # the translations count


def test_evaluate_gives_the_fast_recipes_tta_number(data_dir, tmp_path, capsys):
    from trainkit import fast_cfg
    last = train.train(fast_cfg(data_dir, tmp_path, epochs=1))
    argv = ["--checkpoint", str(tmp_path / "checkpoint.npz"), "--data-dir", data_dir, "--device", "cpu", "--tta"]
    assert evaluate.main(argv + ["--tta-translate"])["acc"] == pytest.approx(last["test_acc_tta"])
    with pytest.raises(SystemExit) as e:
        evaluate.main(argv[:-1] + ["--tta-translate"])
    assert e.value.code == 2 and "--tta-translate adds views to --tta's" in capsys.readouterr().err


def test_evaluate_limits_the_test_set_and_ctrl_c_is_one_line(data_dir, tmp_path, capsys, monkeypatch):
    """evaluate had no --limit-test (a TTA pass over 10,000 images on a CPU takes minutes), and Ctrl-C there was
    a KeyboardInterrupt traceback."""
    train.train(cfg(data_dir, tmp_path, epochs=1))
    result = evaluate.main(["--checkpoint", str(tmp_path), "--data-dir", data_dir, "--device", "cpu",
                            "--limit-test", "30"])
    assert result["confusion"].sum() == 30 and "on 30 images" in capsys.readouterr().out

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(evaluate, "evaluate", interrupted)
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--checkpoint", str(tmp_path), "--data-dir", data_dir, "--device", "cpu"])
    err = capsys.readouterr().err
    assert e.value.code == 130 and err == "skengine-evaluate: interrupted\n"
