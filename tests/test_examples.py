"""The study scripts run end to end on tiny synthetic data and write what they promise."""
import importlib.util
import io
import os
import sys

import numpy as np
import pytest

import skengine
from fakecifar import NAMES, write_cifar
from skengine.models import create

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)
import ablate  # noqa: E402
import sk_attention  # noqa: E402
import sk_walkthrough  # noqa: E402

HAS_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_cifar(tmp_path_factory.mktemp("cifar"), n_train=160, n_test=60))


def test_walkthrough_prints_every_stage_and_passes_gradcheck():
    out = io.StringIO()
    result = sk_walkthrough.walkthrough(batch=4, channels=8, out=out)
    text = out.getvalue()
    assert result["same"] and result["gradcheck"]
    assert result["attention_sum"] == pytest.approx((1.0, 1.0), abs=1e-6)
    for stage in ("U_1", "U_2", "s = GAP(U)", "z (d = ", "a = attention", "b = attention", "V = a * U_1"):
        assert stage in text, stage
    assert "skengine/functional/conv.py" in text and "skengine/nn/sk.py" in text


def test_enlarge_zooms_into_the_centre():
    img = np.zeros((1, 1, 32, 32), np.uint8)
    img[0, 0, 12:20, 12:20] = 200  # an 8x8 square in the centre
    big = sk_attention.enlarge(img, 2.0)
    assert sk_attention.enlarge(img, 1.0) is img
    assert (big[0, 0] > 100).sum() == pytest.approx(16 * 16, rel=0.15)  # twice the side
    assert big[0, 0, 16, 16] == 200 and big[0, 0, 2, 2] == 0


def test_attention_collector_shapes_and_sums(tmp_path, data_dir):
    skengine.manual_seed(0)
    model = create("sknet_cifar_tiny", num_classes=10)
    skengine.save({"config": {"model": "sknet_cifar_tiny", "dataset": "cifar10", "model_kwargs": {}},
                   "model": model.state_dict()}, tmp_path / "best.npz")
    result = sk_attention.main(["--checkpoint", str(tmp_path / "best.npz"), "--data-dir", data_dir,
                                "--out", str(tmp_path / "att")])
    sk_layers = [n for n, m in model.named_modules() if type(m).__name__ == "SKConv"]
    assert result["layers"] == sk_layers and result["paths"] == 2 and result["images"] == 60
    for layer in sk_layers:
        assert np.allclose(np.sum(result["mean"][layer]), 1.0)           # softmax across paths
        by_class = np.array(result["by_class"][layer])
        assert by_class.shape == (len(NAMES), 2) and np.allclose(by_class.sum(axis=1), 1.0)
        assert np.array(result["by_scale"][layer]).shape == (3, 2)
    files = ["attention.json", "attention_by_class.csv", "attention_scale.csv"]
    files += ["attention_layers.png", "attention_scale.png"] if HAS_MPL else []
    for name in files:
        assert (tmp_path / "att" / name).exists(), name


def test_ablation_runs_every_variant_and_writes_the_table(tmp_path, data_dir):
    rows = ablate.main(["--data-dir", data_dir, "--epochs", "1", "--seeds", "0", "--batch-size", "64",
                        "--limit-train", "64", "--limit-test", "60", "--device", "cpu", "--out", str(tmp_path)])
    assert [r["variant"] for r in rows] == list(ablate.VARIANTS)
    by = {r["variant"]: r for r in rows}
    assert by["sk_m3"]["params"] > by["sk_m2"]["params"] and by["sk_m3"]["macs"] > by["sk_m2"]["macs"]
    assert by["none"]["params"] < by["se"]["params"] < by["sk_softmax"]["params"]
    assert all(0.0 <= r["acc_mean"] <= 100.0 and r["images_per_s"] > 0 for r in rows)
    table = open(tmp_path / "ablation.md").read()
    assert all(f"| {v} |" in table for v in ablate.VARIANTS)
    assert (tmp_path / "ablation.csv").exists() and ((tmp_path / "ablation.png").exists() or not HAS_MPL)
