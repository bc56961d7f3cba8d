"""The evaluation command (skengine.evaluate) reads the checkpoint that the training command wrote."""
import pytest

from skengine import evaluate, train
from test_train import cfg


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
