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
