"""The study scripts run end to end on tiny synthetic data and write what they promise."""
import argparse
import csv
import fcntl
import importlib.util
import io
import json
import os
import re
import shlex
import signal
import sys

import numpy as np
import pytest

import skengine
from fakecifar import NAMES, write_cifar
from skengine.distributed import WorkerError
from skengine.models import create
from skengine.stats import t_quantile
from skengine.training import Diverged, load_run

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


def test_gate_statistics_by_hand():
    a = np.array([[[0.97], [0.03]], [[0.5], [0.5]]])  # (images, paths, channels)
    g = sk_attention.gate_statistics(a)
    assert g["mean"] == pytest.approx([0.735, 0.265]) and g["std"] == pytest.approx([0.235, 0.235])
    assert g["dynamic"] == pytest.approx(0.235) and g["dominant"] == 0.5 and g["saturated"] == 0.5
    assert g["corr"] == pytest.approx(-1.0)
    per_channel = np.broadcast_to(np.array([[0.2, 0.7], [0.8, 0.3]]), (5, 2, 2))  # gates by channel, not image
    g = sk_attention.gate_statistics(per_channel)
    assert g["dynamic"] == 0 and g["std"] == pytest.approx([0.25, 0.25]) and g["mean"] == pytest.approx([0.45, 0.55])
    fixed = sk_attention.gate_statistics(np.full((4, 2, 3), 0.5))  # uniform: no attention at all
    assert fixed["dynamic"] == 0 and fixed["dominant"] == 0 and fixed["saturated"] == 0 and fixed["corr"] is None
    sig = sk_attention.gate_statistics(np.array([[[0.99], [0.98]], [[0.01], [0.2]]]))  # independent sigmoids
    assert sig["saturated"] == 0.75 and sig["corr"] == pytest.approx(1.0) and sig["dominant"] == 0.5


def test_blur_control_keeps_sizes_and_loses_the_detail_an_enlargement_loses():
    img = np.zeros((1, 1, 32, 32), np.uint8)
    img[0, 0, 8:24, 8:24] = 200  # a 16x16 square in the centre
    assert sk_attention.blur(img, 1.0) is img
    for s in (1.5, 2.0):  # a flat image stays flat
        np.testing.assert_array_equal(sk_attention.blur(np.full_like(img, 77), s), 77)
    # nothing grows: the square keeps its mass under the blur and gains s^2 of it under the enlargement
    assert sk_attention.blur(img, 2.0).sum() == pytest.approx(img.sum(), rel=0.02)
    assert sk_attention.enlarge(img, 2.0).sum() == pytest.approx(4 * img.sum(), rel=0.05)
    # detail finer than the H/s grid is gone: a one-pixel checker shrinks to pair averages, 100 everywhere
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 200).astype(np.uint8)[None, None]
    np.testing.assert_array_equal(sk_attention.blur(checker, 2.0), 100)
    noise = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32)).astype(np.uint8)
    for s in (1.5, 2.0):
        b = sk_attention.blur(noise, s)
        assert b.shape == noise.shape and abs(b.astype(float).mean() - noise.mean()) < 2


def test_attention_on_a_timm_checkpoint_and_a_folder_of_images(tmp_path):
    from PIL import Image
    skengine.manual_seed(0)
    net = create("skresnet18", num_classes=7)
    net.eval()
    ckpt = skengine.interop.save_timm(net, str(tmp_path / "skresnet18.npz"))
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(300, 400), (256, 256), (500, 260)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    square = np.zeros((300, 400, 3), np.uint8)  # 400 wide: resized to 341 x 256, the centre 224 kept
    square[100:200, 150:250] = 255               # 100 px -> 85.3 px, centred
    Image.fromarray(square).save(folder / "square.png")
    odd = rng.integers(0, 256, (451, 300, 3), dtype=np.uint8)  # 300 wide, 451 high
    Image.fromarray(odd).save(folder / "odd.png")
    images = sk_attention.load_images(str(folder))
    assert images.shape == (5, 3, 224, 224) and images.dtype == np.uint8
    # by hand: the shorter side 300 -> 256, the longer int(256 * 451 / 300) = int(384.85) = 384 (torchvision
    # truncates), then the centre 224: left round(32 / 2) = 16, top round(160 / 2) = 80
    ref = Image.fromarray(odd).resize((256, 384), Image.BICUBIC).crop((16, 80, 240, 304))
    np.testing.assert_array_equal(images[3], np.asarray(ref).transpose(2, 0, 1))
    white = (images[4, 0] > 128)
    assert white.sum() == pytest.approx((100 * 256 / 300) ** 2, rel=0.05)
    rows, cols = np.nonzero(white)
    assert (rows.min() + rows.max()) / 2 == pytest.approx(111.5, abs=1) and (cols.min() + cols.max()) / 2 == (
        pytest.approx(111.5, abs=1))
    result = sk_attention.main(["--timm-checkpoint", ckpt, "--model", "skresnet18", "--images", str(folder),
                                "--limit", "2", "--batch-size", "2", "--out", str(tmp_path / "att")])
    sk_layers = [n for n, m in net.named_modules() if type(m).__name__ == "SKConv"]
    assert result["layers"] == sk_layers and result["images"] == 2 and result["by_class"] == {}
    for layer in sk_layers:
        assert np.allclose(np.sum(result["mean"][layer]), 1.0)
        assert np.array(result["by_blur"][layer]).shape == (3, 2)
        assert result["by_blur"][layer][0] == result["by_scale"][layer][0]  # s = 1: the same images
    # the file holds the network's weights: the attention is that of the network itself
    again = sk_attention.attention_per_image(net, images[:2], *sk_attention.IMAGENET_MEAN_STD)
    for layer in sk_layers:
        np.testing.assert_allclose(again[layer].mean(axis=0), result["mean"][layer], rtol=1e-5)
    assert not (tmp_path / "att" / "attention_by_class.csv").exists()


def test_attention_script_refuses_a_mixed_or_half_command(tmp_path, capsys):
    skengine.save({"config": {"model": "sknet_cifar_tiny", "dataset": "cifar10", "model_kwargs": {"attention": "se"}},
                   "model": create("sknet_cifar_tiny", attention="se").state_dict()}, tmp_path / "se.npz")
    ckpt = str(tmp_path / "r18.npz")
    skengine.interop.save_timm(create("skresnet18", num_classes=3), ckpt)
    for argv, says in ((["--timm-checkpoint", "x.npz", "--images", "d"], "--timm-checkpoint needs --model"),
                       ([], "give --checkpoint"),
                       (["--checkpoint", "a.npz", "--timm-checkpoint", "b.npz"], "give --checkpoint"),
                       (["--checkpoint", str(tmp_path / "missing.npz")], "--checkpoint"),
                       (["--checkpoint", str(tmp_path / "se.npz")], "its model has no SK layer"),
                       (["--timm-checkpoint", ckpt, "--model", "skresnet34", "--images", "d"], "does not fit"),
                       (["--timm-checkpoint", ckpt, "--model", "skresnet18", "--images", str(tmp_path / "none")],
                        "--images"),
                       (["--checkpoint", "a.npz", "--batch-size", "0"], "--batch-size must be >= 1")):
        with pytest.raises(SystemExit) as e:
            sk_attention.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err, (argv, err)


def png_claiming(width, height):
    """A few bytes that say they are a width x height RGB PNG: what a decompression bomb looks like to
    Image.open, which reads the header alone."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def test_attention_script_refuses_bad_images_and_weights_in_one_line_naming_the_file(tmp_path, capsys):
    """A 20000 x 20000 PNG was a DecompressionBombError traceback, a truncated image's error did not name the
    file; int64 weights gave gates of exactly 0.5 and NaN weights a table of NaN, without a word."""
    from PIL import Image
    skengine.manual_seed(0)
    ckpt = skengine.interop.save_timm(create("skresnet18", num_classes=3), str(tmp_path / "r18.npz"))
    state = skengine.interop.read_state(ckpt)
    np.savez(tmp_path / "int.npz", **{k: v.astype(np.int64) for k, v in state.items()})
    np.savez(tmp_path / "nan.npz", **dict(state, **{"layer1.0.conv1.attn.fc_select.weight": np.full_like(
        state["layer1.0.conv1.attn.fc_select.weight"], np.nan)}))
    np.savez(tmp_path / "fc0d.npz", **dict(state, **{"fc.weight": np.float32(1.0)}))
    good = tmp_path / "good"
    good.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(good / "a.png")
    folders = {}
    for name, data in (("bomb", png_claiming(20000, 20000)), ("cut", (good / "a.png").read_bytes()[:60])):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folders[name] / "a.png")
        (folders[name] / "b.png").write_bytes(data)
    cases = [(str(tmp_path / "int.npz"), good, "has dtype int64, model's conv1.weight is float32"),
             (str(tmp_path / "nan.npz"), good, "NaN or inf (the first: 'layer1.0.conv1.attn.fc_select.weight')"),
             (str(tmp_path / "fc0d.npz"), good, "its fc.weight has shape ()"),
             (ckpt, folders["bomb"], f"{folders['bomb'] / 'b.png'}: cannot read it as an image "
                                     f"(DecompressionBombError"),
             (ckpt, folders["cut"], f"{folders['cut'] / 'b.png'}: cannot read it as an image")]
    for timm, images, says in cases:
        with pytest.raises(SystemExit) as e:
            sk_attention.main(["--timm-checkpoint", timm, "--model", "skresnet18", "--images", str(images),
                               "--out", str(tmp_path / "att")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and err.count("\n") == 1, (timm, images, err)
    assert not (tmp_path / "att").exists()


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
        assert result["gates"][layer]["corr"] == pytest.approx(-1.0)  # two paths under a softmax
    files = ["attention.json", "attention_by_class.csv", "attention_scale.csv", "gates.csv"]
    files += ["attention_layers.png", "attention_scale.png"] if HAS_MPL else []
    for name in files:
        assert (tmp_path / "att" / name).exists(), name


def save_tiny_run(path, **edits):
    """A run's best.npz of sknet_cifar_tiny (fresh weights), its weights changed as ``edits`` say."""
    skengine.manual_seed(0)
    weights = dict(create("sknet_cifar_tiny", num_classes=10).state_dict())
    weights.update({k: skengine.Tensor(v) for k, v in edits.items()})
    skengine.save({"config": {"model": "sknet_cifar_tiny", "dataset": "cifar10", "model_kwargs": {}},
                   "model": weights}, path)
    return str(path)


def test_attention_script_refuses_a_network_whose_gates_are_not_finite(tmp_path, data_dir, capsys):
    """Finite weights whose gates come out NaN (a BatchNorm running_var below zero: the square root of a
    negative) gave a table of NaN and exit code 0, in both forms of the command."""
    from PIL import Image
    ckpt = save_tiny_run(tmp_path / "negative.npz", **{"stem.bn.running_var": -np.ones(16, np.float32)})
    skengine.manual_seed(0)
    timm = skengine.interop.save_timm(create("skresnet18", num_classes=3), str(tmp_path / "r18.npz"))
    state = skengine.interop.read_state(timm)
    np.savez(tmp_path / "r18neg.npz", **dict(state, **{"bn1.running_var": -np.ones(64, np.float32)}))
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    for argv, file, layer, n in (
            (["--checkpoint", ckpt, "--data-dir", data_dir, "--limit", "7"], ckpt, "layer1.0.conv1", 7),
            (["--timm-checkpoint", str(tmp_path / "r18neg.npz"), "--model", "skresnet18", "--images",
              str(tmp_path / "images")], str(tmp_path / "r18neg.npz"), "layer1.0.conv1", 1)):
        with pytest.raises(SystemExit) as e:
            sk_attention.main(argv + ["--out", str(tmp_path / "att")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1, err
        assert f"{file}: its network's attention in SK layer {layer} is NaN or inf on {n} of the {n} images" in err
    assert not (tmp_path / "att").exists()


def test_attention_script_checks_out_first_and_names_the_data_for_its_errors(tmp_path, data_dir, capsys,
                                                                            monkeypatch):
    """--out a file, or a path under one, was a traceback after the whole analysis; a bad batches.meta was
    blamed on --checkpoint."""
    from fakecifar import edit_file
    ckpt = save_tiny_run(tmp_path / "best.npz")
    eleven = edit_file(write_cifar(tmp_path / "eleven", n_train=10, n_test=10), "batches.meta",
                       lambda meta: {b"label_names": [f"c{i}".encode() for i in range(11)]})
    monkeypatch.setattr(sk_attention, "analyse", lambda *a: pytest.fail("analysed before --out was checked"))
    for argv, says in ((["--out", ckpt], f"--out {ckpt}: is a file"),
                       (["--out", ckpt + "/x"], f"--out {ckpt}/x: cannot write into {ckpt}"),
                       (["--data-dir", str(eleven), "--out", str(tmp_path / "att")],
                        f"--data-dir {eleven}: {eleven / 'cifar-10-batches-py' / 'batches.meta'}: 11 class names")):
        with pytest.raises(SystemExit) as e:
            sk_attention.main(["--checkpoint", ckpt, "--data-dir", data_dir, *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and says in err, (argv, err)


def test_attention_script_on_a_full_disk_is_one_line_and_keeps_the_files_it_wrote_before(tmp_path, data_dir,
                                                                                           capsys, monkeypatch):
    """A full disk was an OSError traceback and left a partial attention.json."""
    from test_serialization import full_disk
    ckpt, out = save_tiny_run(tmp_path / "best.npz"), tmp_path / "att"
    argv = ["--checkpoint", ckpt, "--data-dir", data_dir, "--out", str(out)]
    sk_attention.main(argv + ["--limit", "20"])
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert json.loads(before["attention.json"])["images"] == 20
    capsys.readouterr()
    full_disk(monkeypatch, out, room=100)
    monkeypatch.setattr(sk_attention, "open", io.open, raising=False)  # the script's own open() fills it too
    with pytest.raises(SystemExit) as e:
        sk_attention.main(argv + ["--limit", "10"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f": cannot write --out {out}: [Errno 28] No space left on device: writing {out / 'attention.json'}" in err
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before  # whole files, no temporary


def test_attention_script_refuses_an_image_whose_resized_whole_is_too_large(tmp_path, capsys, monkeypatch):
    """A 1 x 30000 PNG (90 KB) was resized whole to 7,680,000 x 256 (6 GB) before its centre was cropped: a
    MemoryError traceback, or the process killed.  Pillow's limit for an image bounds the resized one too;
    a thin image within it is what torchvision's Resize(256) and CenterCrop(224) make of it."""
    from PIL import Image
    rng = np.random.default_rng(1)
    thin = rng.integers(0, 256, (300, 2, 3), dtype=np.uint8)  # 2 wide: resized to 256 x 38400
    (tmp_path / "thin").mkdir()
    Image.fromarray(thin).save(tmp_path / "thin" / "a.png")
    ref = Image.fromarray(thin).resize((256, 38400), Image.BICUBIC).crop((16, 19088, 240, 19312))
    np.testing.assert_array_equal(sk_attention.load_images(str(tmp_path / "thin"))[0],
                                  np.asarray(ref).transpose(2, 0, 1))
    (tmp_path / "long").mkdir()
    Image.fromarray(rng.integers(0, 256, (1, 30000, 3), dtype=np.uint8)).save(tmp_path / "long" / "a.png")
    ckpt = skengine.interop.save_timm(create("skresnet18", num_classes=3), str(tmp_path / "r18.npz"))
    for folder, limit, says in (("thin", 9_000_000, "2 x 300 pixels, resized to 256 x 38400 before its centre is "
                                                    "cropped: more than the 9000000 pixels Pillow allows an image"),
                                ("long", Image.MAX_IMAGE_PIXELS, "30000 x 1 pixels, resized to 7680000 x 256")):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(SystemExit) as e:
            sk_attention.main(["--timm-checkpoint", ckpt, "--model", "skresnet18", "--images",
                               str(tmp_path / folder), "--out", str(tmp_path / "att")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1, err
        assert f"--images {tmp_path / folder}: {tmp_path / folder / 'a.png'}: {says}" in err, err
    assert not (tmp_path / "att").exists()


def runner_args(data_dir, out, *more):
    """A grid small enough for a test: 64 training images, batch 32, so a run of 2 epochs is 4 SGD steps."""
    return ["--data-dir", data_dir, "--grid", "gates", "--variants", "softmax", "sigmoid", "--seeds", "0-1",
            "--epochs", "2", "--warmup", "0.25", "--batch-size", "32", "--limit-train", "64",
            "--limit-test", "60", "--device", "cpu", "--processes", "1", "--out", str(out), *more]


def without_speed(table):
    """The table without its last column (training images/s, which no two runs share)."""
    return [line.rsplit("|", 2)[0] for line in table.splitlines()]


def test_ablation_runner_killed_mid_grid_continues_to_the_same_table(tmp_path, data_dir, monkeypatch):
    from skengine.optim import SGD
    straight = ablate.main(runner_args(data_dir, tmp_path / "straight"))
    assert [(r["variant"], r["runs"], r["seeds"]) for r in straight] == [("softmax", 2, [0, 1]), ("sigmoid", 2, [0, 1])]
    assert straight[0]["diff"] is None and straight[1]["diff"] == pytest.approx(
        straight[1]["acc_mean"] - straight[0]["acc_mean"])
    assert straight[1]["welch"] is not None and straight[1]["bootstrap"] is None  # 2 runs: no bootstrap
    # Ctrl-C after the third run's first step (seed by seed: softmax, seed 1): the runner stops with that run's
    # checkpoint
    real_step, steps = SGD.step, []

    def step_then_interrupt(self, *a):
        real_step(self, *a)
        steps.append(1)
        if len(steps) == 9:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(SGD, "step", step_then_interrupt)
    out = tmp_path / "killed"
    with pytest.raises(SystemExit) as stopped:
        ablate.main(runner_args(data_dir, out))
    assert stopped.value.code == 130
    monkeypatch.setattr(SGD, "step", real_step)
    assert [(r["variant"], r["seed"]) for r in ablate.read_results(str(out))] == [("softmax", 0), ("sigmoid", 0)]
    calls = []
    real_train = ablate.trainer.train
    monkeypatch.setattr(ablate.trainer, "train", lambda cfg: calls.append(cfg) or real_train(cfg))
    resumed = ablate.main(runner_args(data_dir, out))
    assert [("resume" in c) for c in calls] == [True, False]  # the killed run continued, the last one anew
    assert [r["accs"] for r in resumed] == [r["accs"] for r in straight]  # bit for bit: same seeds, same steps
    assert without_speed((out / "ablation.md").read_text()) == without_speed(
        (tmp_path / "straight" / "ablation.md").read_text())
    # the table comes from results.jsonl alone; a finished grid trains nothing more
    calls.clear()
    again = ablate.main(runner_args(data_dir, out, "--report"))
    assert calls == [] and [r["accs"] for r in again] == [r["accs"] for r in straight]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 and not [f for f in os.listdir(out) if f.startswith(".tmp")]  # atomic_write's own
    # another budget is trained anew beside the old runs, and reported apart
    other = ablate.main(runner_args(data_dir, out, "--seeds", "0", "--variants", "softmax", "--epochs", "1"))
    assert len(calls) == 1 and len(other) == 3 and (out / "ablation.md").read_text().count("Budget ") == 2
    with open(out / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["budget_no"] for r in rows] == ["1", "1", "2"]
    assert float(rows[1]["welch_lo"]) < float(rows[1]["diff"]) < float(rows[1]["welch_hi"])
    assert [float(a) for a in rows[0]["accs"].split()] == pytest.approx(straight[0]["accs"], abs=0.005)
    assert (out / "ablation.png").exists() or not HAS_MPL
    # what the gates do, per variant and layer over the seeds; the analysis is kept in each run's folder
    ablate.main(["--out", str(out), "--report", "--data-dir", data_dir, "--gates", "20"])
    table = ablate.gate_report(argparse.Namespace(variants=None, out=str(out), data_dir=data_dir, gates=20),
                               ablate.read_results(str(out)))
    images, _ = skengine.data.load_cifar(data_dir, "cifar10", train=False)
    first = {r["layer"]: r for r in table if (r["budget_no"], r["variant"]) == (1, "softmax")}
    assert set(first) and {r["seeds"] for r in table} == {2, 1}
    path = {(v, layer, m): [] for v in ("softmax", "sigmoid") for layer in first for m in (0, -1)}
    for record in ablate.read_results(str(out))[:4]:
        model = load_run(os.path.join(ablate.run_folder(str(out), record["key"]), "checkpoint.npz")).model
        gates = sk_attention.attention_per_image(model, images[:20], *skengine.data.CIFAR_MEAN_STD["cifar10"])
        for layer, a in gates.items():
            for m in (0, -1):
                path[record["variant"], layer, m].append(a[:, m].mean())
    for row in (r for r in table if r["budget_no"] == 1):
        for m, k in ((0, "small"), (-1, "large")):
            w = path[row["variant"], row["layer"], m]
            assert row[k] == pytest.approx(np.mean(w), abs=1e-6)
            assert row[f"{k}_ci"] == pytest.approx(t_quantile(0.975, 1) * np.std(w, ddof=1) / np.sqrt(2), abs=1e-6)
    for row in first.values():
        assert row["small"] + row["large"] == pytest.approx(1.0)  # two paths under a softmax
        assert row["corr"] == pytest.approx(-1.0) and row["dominant"] <= 1
    sig = [r for r in table if r["variant"] == "sigmoid"]
    assert all(r["corr"] > -0.999 for r in sig)
    assert any(abs(r["small"] + r["large"] - 1) > 5e-3 for r in sig)  # independent gates need not sum to 1
    monkeypatch.setattr(sk_attention, "analyse", lambda *a: pytest.fail("a kept analysis was made again"))
    again = ablate.main(["--out", str(out), "--report", "--data-dir", data_dir, "--gates", "20"])
    assert [r["accs"] for r in again] == [r["accs"] for r in other]
    assert "| softmax | " in (out / "gates.md").read_text() and (out / "gates.csv").exists()


def fake_record(variant, seed, acc, **settings):
    cfg = {"recipe": "fast", "seed": seed, **settings}
    return {"key": ablate.run_key(variant, seed, cfg, (1, 1)), "grid": "gates", "variant": variant, "seed": seed,
            "settings": cfg, "config": ablate.resolved(cfg), "status": "done", "test_acc": acc,
            "test_acc_tta": None, "images_per_s": 100.0, "params": 1, "macs": 1}


def test_a_variants_network_options_change_the_recipes_one_key_at_a_time():
    """Under airbench93_sk (the default recipe: sigmoid gates, the first block plain) the gates grid's softmax
    replaced its network options whole: all three blocks SK, not the recipe's network with the other gate."""
    args = argparse.Namespace(recipe="airbench93_sk", data_dir=None, device="cpu", processes=1, tta=None,
                              **dict.fromkeys(("model", "epochs", "warmup", "whiten_bias_epochs", "batch_size", "lr",
                                               "limit_train", "train_per_class", "limit_test")))
    cfg = ablate.settings(args, ablate.GRIDS["gates"]["softmax"], 0)
    assert cfg["model_kwargs"] == {"attention": ["none", "sk", "sk"], "sk_kwargs": {"attention": "softmax"}}
    wide = ablate.settings(args, ablate.GRIDS["attention"]["none_wide"], 0)["model_kwargs"]
    assert wide["attention"] == "none" and wide["widths"] == [74, 150, 150]
    fast = ablate.settings(argparse.Namespace(**{**vars(args), "recipe": "fast"}), ablate.GRIDS["gates"]["softmax"], 0)
    assert fast["model_kwargs"] == {"sk_kwargs": {"attention": "softmax"}}  # a recipe without options: as recorded


def test_a_run_of_another_network_is_another_run():
    """The same settings on a network whose defaults changed (sknet_cifar_fast's SK paths, 2026-12-02) are not
    the run made before: the key holds the network's size."""
    cfg = {"recipe": "fast", "seed": 0}
    assert ablate.run_key("softmax", 0, cfg, (585_752, 54)) != ablate.run_key("softmax", 0, cfg, (917_528, 71))
    assert ablate.run_key("softmax", 0, cfg, (1, 2)) == ablate.run_key("softmax", 0, dict(cfg), (1, 2))


def test_ablation_report_keeps_budgets_apart_by_what_the_runs_were_not_by_what_was_typed(monkeypatch):
    monkeypatch.setitem(ablate.RECIPES["fast"], "epochs", 13)
    old = [fake_record("softmax", s, 0.80 + s / 100) for s in (0, 1)]  # the recipe said 13 epochs then
    monkeypatch.setitem(ablate.RECIPES["fast"], "epochs", 15)
    new = [fake_record("softmax", s, 0.85) for s in (2, 3)] + [fake_record("sigmoid", 2, 0.86, epochs=15)]
    rows = ablate.summarise(old + new)
    assert [(r["budget_no"], r["variant"], r["runs"]) for r in rows] == [(1, "softmax", 2), (2, "softmax", 2),
                                                                          (2, "sigmoid", 1)]
    # the same record twice counts once, and a failed run is counted apart from the accuracies
    failed = {**fake_record("sigmoid", 3, 0.0), "status": "failed", "reason": "training stopped: nan"}
    rows = ablate.summarise(new + new[:1] + [failed])
    assert [(r["variant"], r["runs"], r["failed"]) for r in rows] == [("softmax", 2, 0), ("sigmoid", 1, 1)]


def test_the_tta_accuracy_gets_its_own_difference_and_intervals(tmp_path):
    """Every run's TTA accuracy one point above its plain one: the TTA difference and its intervals are the plain
    ones (a shift of both samples changes neither); a budget where some run lacks TTA shows none."""
    plain = {"softmax": [0.80, 0.81, 0.82, 0.80, 0.83], "sigmoid": [0.82, 0.84, 0.83, 0.85, 0.83]}
    records = [{**fake_record(v, s, a), "test_acc_tta": a + 0.01} for v, accs in plain.items()
               for s, a in enumerate(accs)]
    softmax, sigmoid = ablate.summarise(records)
    assert sigmoid["diff"] == pytest.approx(100 * (0.834 - 0.812)) == pytest.approx(sigmoid["tta_diff"])
    assert sigmoid["tta_mean"] == pytest.approx(84.4) and softmax["tta_std"] == pytest.approx(softmax["acc_std"])
    for name in ("welch", "bootstrap"):
        assert sigmoid[f"tta_{name}"] == pytest.approx(sigmoid[name])
    assert softmax["tta_diff"] is None and softmax["tta_welch"] is None
    ablate.write([softmax, sigmoid], str(tmp_path))
    row = next(line for line in (tmp_path / "ablation.md").read_text().splitlines() if line.startswith("| sigmoid"))
    lo, hi = sigmoid["welch"]
    blo, bhi = sigmoid["bootstrap"]
    assert f"| 84.40 +- 1.14 | +2.20 [{lo:+.2f}, {hi:+.2f}]; [{blo:+.2f}, {bhi:+.2f}] |" in row
    records[-1] = {**records[-1], "test_acc_tta": None}  # one run without: no TTA numbers for its variant
    assert [r["tta_mean"] for r in ablate.summarise(records)] == [pytest.approx(82.2), None]


def test_no_tta_runs_are_another_budget_and_record_their_machine(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_train(cfg):  # what the trainer returns without TTA, and the metrics file the runner reads
        seen.append(cfg)
        os.makedirs(cfg["out"])
        with open(os.path.join(cfg["out"], "metrics.csv"), "w") as f:
            f.write("epoch,epoch_time\n1,30.5\n2,29.5\n")
        return {"test_acc": 0.5 + 0.1 * len(seen), "images_per_s": 100.0}

    monkeypatch.setattr(ablate.trainer, "train", fake_train)
    argv = ["--grid", "gates", "--variants", "softmax", "--seeds", "0", "--epochs", "2", "--warmup", "0.25",
            "--out", str(tmp_path)]
    ablate.main(argv + ["--no-tta"])
    ablate.main(argv)
    assert (seen[0]["tta"], seen[0]["tta_translate"]) == (False, False) and "tta" not in seen[1]
    # tested after the last epoch only, and that is no part of a run's identity: earlier records keep their keys
    assert seen[0]["test_every"] == 0
    plain = {k: v for k, v in seen[0].items() if k not in ("test_every", "out", "overwrite")}
    assert ablate.run_key("softmax", 0, plain, (1, 2)) == ablate.run_key("softmax", 0, seen[0], (1, 2))
    first, second = ablate.read_results(str(tmp_path))
    assert first["config"]["tta"] is False and second["config"]["tta"] is True and first["key"] != second["key"]
    assert first["train_s"] == 60.0 and first["test_acc_tta"] is None
    table = (tmp_path / "ablation.md").read_text()
    assert table.count("Budget ") == 2 and table.count(f"Training img/s measured on: {ablate.machine()}\n") == 2
    assert ablate.machine().endswith(f", {os.cpu_count()} cores")
    ablate.main(argv + ["--no-tta"])  # done: nothing trains again
    assert len(seen) == 2


def test_ablation_runner_records_a_diverged_run_and_goes_on(tmp_path, data_dir, monkeypatch, capsys):
    real_train = ablate.trainer.train

    def diverge_sigmoid(cfg):
        if cfg.get("model_kwargs", {}).get("sk_kwargs", {}).get("attention") == "sigmoid":
            raise Diverged("training stopped: the loss is not finite at epoch 1, step 1")
        return real_train(cfg)

    monkeypatch.setattr(ablate.trainer, "train", diverge_sigmoid)
    args = runner_args(data_dir, tmp_path, "--seeds", "0", "--epochs", "1", "--variants", "softmax", "sigmoid",
                       "uniform")
    rows = ablate.main(args)
    assert [(r["variant"], r["runs"], r["failed"]) for r in rows] == [("softmax", 1, 0), ("sigmoid", 0, 1),
                                                                      ("uniform", 1, 0)]
    assert "| sigmoid | 0 (1 failed) |" in (tmp_path / "ablation.md").read_text()
    monkeypatch.setattr(ablate.trainer, "train", lambda cfg: pytest.fail("a recorded run was trained again"))
    assert ablate.main(args) == rows


@pytest.mark.parametrize("more, says", [
    (["--epochs", "0"], "variant softmax: --epochs must be"),
    (["--seeds", "3-1"], "a range of seeds runs upward"),
    (["--grid", "tricks", "--variants", "bn_weight_learned", "--recipe", "none"], "cannot be built with"),
    (["--seeds", "0-100000000000"], "at most 1,000 seeds a range"),
    (["--processes", "two"], "--processes: 'auto' or a number of processes, got 'two'"),
])
def test_ablation_runner_refuses_a_grid_that_cannot_run_before_training(tmp_path, data_dir, more, says, capsys):
    argv = runner_args(data_dir, tmp_path, *more)
    if "--grid" in more:  # runner_args names the gates grid's variants; drop them
        i = argv.index("--variants")
        del argv[i:i + 3]
    with pytest.raises(SystemExit) as e:
        ablate.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1  # one line, not argparse's usage text
    assert not (tmp_path / "results.jsonl").exists()


def test_ablation_runner_refuses_a_second_runner_in_the_same_folder(tmp_path, data_dir, capsys):
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SystemExit) as e:
            ablate.main(runner_args(data_dir, tmp_path))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "another runner is working in this folder" in err
    assert len(err.strip().splitlines()) == 1  # one line, not the whole usage text


def test_ablation_runner_refuses_a_variant_of_another_grid(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ablate.main(["--grid", "gates", "--variants", "se", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "--variants: se not in grid gates (softmax, sigmoid, sigmoid_norm, uniform)" in capsys.readouterr().err


def test_the_cost_matched_plain_network_costs_what_the_sk_network_does():
    """The attention grid's none_wide: the plain network widened to the SK network's multiply-adds (within 1%)."""
    from skengine.summary import summary

    def macs(variant):
        return summary(create("sknet_cifar_fast", **ablate.GRIDS["attention"][variant]["model_kwargs"]),
                       (3, 32, 32)).total_macs

    sk, plain, wide = macs("softmax"), macs("none"), macs("none_wide")
    assert plain < 0.8 * sk and abs(wide - sk) < 0.01 * sk


def test_a_grid_on_a_class_balanced_subset_passes_it_to_every_run(tmp_path, data_dir):
    rows = ablate.main(["--data-dir", data_dir, "--grid", "attention", "--variants", "softmax", "none",
                        "--seeds", "0", "--epochs", "1", "--batch-size", "16", "--train-per-class", "2",
                        "--limit-test", "20", "--no-tta", "--processes", "1", "--out", str(tmp_path)])
    assert [r["variant"] for r in rows] == ["softmax", "none"]
    for record in ablate.read_results(str(tmp_path)):
        assert record["config"]["train_per_class"] == 2
        history = skengine.load(os.path.join(ablate.run_folder(str(tmp_path), record["key"]), "checkpoint.npz"))
        assert history["loader"]["batch"] == 2  # 20 images, 2 of each class, at 16 a step


def test_a_results_file_without_its_last_newline_keeps_every_record(tmp_path):
    """A hand edit that drops the last newline: the next record goes on a line of its own, not glued to the last
    one (which lost both from the report), and the bytes already there are kept as they were."""
    first, second = fake_record("softmax", 0, 0.8), fake_record("sigmoid", 0, 0.7)
    old = json.dumps(first).encode()
    (tmp_path / "results.jsonl").write_bytes(old)
    ablate.append_result(str(tmp_path), second)
    assert [r["key"] for r in ablate.read_results(str(tmp_path))] == [first["key"], second["key"]]
    assert (tmp_path / "results.jsonl").read_bytes().startswith(old + b"\n")


def test_report_skips_every_kind_of_bad_line_with_a_warning(tmp_path, capsys):
    """The docstring's promise for every kind of bad line: not JSON, not UTF-8, not an object, a field missing or
    of the wrong type.  Each (its own seed, so it would count if taken) is named and skipped; the good ones stay."""
    good = [fake_record("softmax", 0, 0.8), fake_record("sigmoid", 0, 0.7)]
    bad = [{"key": "x"}, [1, 2], "a string", None, {**fake_record("softmax", 1, 0.8), "seed": "1"},
           {**fake_record("softmax", 2, 0.8), "test_acc": "0.8"}, {**fake_record("softmax", 3, 0.8), "status": "ok"},
           {**fake_record("softmax", 4, float("nan"))}, {**fake_record("softmax", 5, 0.8), "machine": ["cpu"]},
           {**fake_record("softmax", 6, 0.8), "config": None, "settings": "fast"},
           {**fake_record("softmax", 7, 0.8), "config": None, "settings": {"recipe": [1]}}]
    lines = [json.dumps(good[0]).encode(), b"{not json", b"\xff\xfe\x00binary \x80",
             *(json.dumps(r).encode() for r in bad), json.dumps(good[1]).encode()]
    (tmp_path / "results.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert [r["key"] for r in ablate.read_results(str(tmp_path))] == [r["key"] for r in good]
    err = capsys.readouterr().err
    named = [int(n) for n in re.findall(r"line (\d+) \(", err)]
    assert named[:5] == [2, 3, 4, 5, 6] and f"{len(lines) - 2 - 5} more lines" in err
    rows = ablate.main(["--out", str(tmp_path), "--report"])
    assert [(r["variant"], r["runs"], r["seeds"]) for r in rows] == [("softmax", 1, [0]), ("sigmoid", 1, [0])]
    assert "Traceback" not in capsys.readouterr().err
    old = (tmp_path / "results.jsonl").read_bytes()  # a runner appending to it keeps what it cannot read
    ablate.append_result(str(tmp_path), fake_record("uniform", 0, 0.6))
    assert (tmp_path / "results.jsonl").read_bytes().startswith(old)
    assert len(ablate.read_results(str(tmp_path))) == 3


@pytest.mark.parametrize("results, says", [(b"", "--report: no runs in"), (b"\n{oops\n", "--report: no runs in"),
                                           (None, "Is a directory")])
def test_a_report_of_no_runs_is_one_line(tmp_path, capsys, results, says):
    if results is None:
        (tmp_path / "results.jsonl").mkdir()
    else:
        (tmp_path / "results.jsonl").write_bytes(results)
    with pytest.raises(SystemExit) as e:
        ablate.main(["--out", str(tmp_path), "--report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and says in err[-1] and not any("error" in line for line in err[:-1])
    assert "usage" not in "".join(err) and not (tmp_path / "ablation.md").exists()


def test_ablation_runner_stopped_by_sigterm_names_the_command_that_continues(tmp_path, data_dir, monkeypatch,
                                                                             capsys):
    """SIGTERM (what a scheduler sends) stops after the step with the checkpoint written: the runner names its
    own command to continue (not the trainer's --resume), and that command continues the run."""
    from skengine.optim import SGD
    real_step = SGD.step

    def step_then_terminate(self, *a):
        real_step(self, *a)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(SGD, "step", step_then_terminate)
    argv = runner_args(data_dir, tmp_path, "--seeds", "0", "--variants", "softmax", "--epochs", "1")
    with pytest.raises(SystemExit) as e:
        ablate.main(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 130 and "skengine.train" not in last
    assert "variant softmax seed 0 interrupted at epoch 1 step 1" in last
    assert last.endswith("continue with: " + shlex.join(["python", os.path.relpath(ablate.__file__), *argv]))
    monkeypatch.setattr(SGD, "step", real_step)
    calls = []
    real_train = ablate.trainer.train
    monkeypatch.setattr(ablate.trainer, "train", lambda cfg: calls.append(cfg) or real_train(cfg))
    assert [r["runs"] for r in ablate.main(argv)] == [1] and "resume" in calls[0]


@pytest.mark.parametrize("error, code", [(WorkerError("process 1 died"), 1), (KeyboardInterrupt(), 130)])
def test_ablation_runner_stopped_by_a_dead_process_or_a_second_ctrl_c_says_so_in_one_line(tmp_path, data_dir,
                                                                                          monkeypatch, capsys,
                                                                                          error, code):
    def fail(cfg):
        raise error

    monkeypatch.setattr(ablate.trainer, "train", fail)
    try:
        with pytest.raises(SystemExit) as e:
            ablate.main(runner_args(data_dir, tmp_path))
    except KeyboardInterrupt:
        pytest.fail("a second Ctrl-C ends in a traceback")
    err = capsys.readouterr().err
    assert e.value.code == code and "Traceback" not in err
    assert "continue with: python " in err.strip().splitlines()[-1]


def test_gate_report_of_runs_without_sk_layers_says_so_once(tmp_path, data_dir, monkeypatch):
    """The blocks grid's se and none have no gates: the report says so, keeps no gates.csv of an earlier report
    beside it, and a second report does not build the networks again (the answer is kept per run)."""
    records = []
    for seed in (0, 1):
        cfg = {"recipe": None, "seed": seed, "model": "sknet_cifar_tiny"}
        record = {**fake_record("none", seed, 0.5), "grid": "blocks", "settings": cfg, "config": ablate.resolved(cfg)}
        record["key"] = ablate.run_key("none", seed, cfg, (1, 1))
        model = create("sknet_cifar_tiny", num_classes=10, attention="none")
        folder = ablate.run_folder(str(tmp_path), record["key"])
        os.makedirs(folder)
        skengine.save({"config": {**record["config"], "model_kwargs": {"attention": "none"}},
                       "model": model.state_dict()}, os.path.join(folder, "checkpoint.npz"))
        records.append(record)
    (tmp_path / "gates.csv").write_text("from an earlier report\n")
    args = argparse.Namespace(variants=None, out=str(tmp_path), data_dir=data_dir, gates=5)
    assert ablate.gate_report(args, records) == []
    assert "has an SK layer" in (tmp_path / "gates.md").read_text() and not (tmp_path / "gates.csv").exists()
    monkeypatch.setattr(ablate, "load_run", lambda *a: pytest.fail("a kept answer was worked out again"))
    assert ablate.gate_report(args, records) == []


def test_gate_report_leaves_out_runs_whose_networks_are_not_here_and_names_them(tmp_path, data_dir):
    """A results file copied without its runs/ (as the history keeps it): the gates of the runs whose networks
    are here, the others named in gates.md, not a FileNotFoundError that shows nothing."""
    records = []
    for seed in (0, 1, 2):
        cfg = {"recipe": None, "seed": seed, "model": "sknet_cifar_tiny"}
        record = {**fake_record("softmax", seed, 0.5), "settings": cfg, "config": ablate.resolved(cfg)}
        record["key"] = ablate.run_key("softmax", seed, cfg, (1, 1))
        records.append(record)
        if seed:  # seed 0's folder is not here
            folder = ablate.run_folder(str(tmp_path), record["key"])
            os.makedirs(folder)
            skengine.manual_seed(seed)
            model = create("sknet_cifar_tiny", num_classes=10)
            skengine.save({"config": record["config"], "model": model.state_dict()},
                          os.path.join(folder, "checkpoint.npz"))
    args = argparse.Namespace(variants=None, out=str(tmp_path), data_dir=data_dir, gates=5)
    table = ablate.gate_report(args, records)
    assert table and {row["seeds"] for row in table} == {2}
    assert all(row["corr"] == pytest.approx(-1.0) for row in table)  # the two paths of a softmax
    text = (tmp_path / "gates.md").read_text()
    assert "| softmax | " in text and "not in" in text and "softmax of budget 1 (seeds 0)" in text
    assert ablate.gate_report(args, records[:1]) == []  # none here: said so, and which
    text = (tmp_path / "gates.md").read_text()
    assert "No finished run here" in text and "(seeds 0)" in text and not (tmp_path / "gates.csv").exists()


@pytest.mark.parametrize("damaged", [b"{not json", b"\xff\xfe", b"[1]", b'"x"', b"{}", b'{"blocks.0.sk": 1}',
                                     b'{"blocks.0.sk": {"large": "0.5"}}'])
def test_gate_report_makes_a_damaged_kept_answer_again(tmp_path, data_dir, damaged):
    """A run's kept gate analysis (attention_N.json) that is not what gate_statistics writes is worked out again,
    not an IndexError or TypeError deep in the table."""
    cfg = {"recipe": None, "seed": 0, "model": "sknet_cifar_tiny"}
    record = {**fake_record("softmax", 0, 0.5), "settings": cfg, "config": ablate.resolved(cfg)}
    folder = ablate.run_folder(str(tmp_path), record["key"])
    os.makedirs(folder)
    skengine.manual_seed(0)
    skengine.save({"config": record["config"], "model": create("sknet_cifar_tiny", num_classes=10).state_dict()},
                  os.path.join(folder, "checkpoint.npz"))
    args = argparse.Namespace(variants=None, out=str(tmp_path), data_dir=data_dir, gates=5)
    table = ablate.gate_report(args, [record])
    assert table and all(row["corr"] == pytest.approx(-1.0) for row in table)  # the two paths of a softmax
    with open(os.path.join(folder, "attention_5.json"), "wb") as f:
        f.write(damaged)
    assert ablate.gate_report(args, [record]) == table


def test_a_run_on_the_gpu_records_the_gpu(monkeypatch):
    class Runtime:
        @staticmethod
        def getDeviceProperties(i):
            return {"name": b"NVIDIA H200"}

    class FakeCupy:
        cuda = argparse.Namespace(runtime=Runtime, Device=lambda: argparse.Namespace(id=0))

    monkeypatch.setattr(skengine.backend, "cupy", lambda: FakeCupy)
    assert ablate.machine("cuda") == "NVIDIA H200"
    assert "cores" in ablate.machine("cpu")


def _saved_runs(tmp_path, seeds, broken=()):
    """Records of softmax runs of sknet_cifar_tiny with their checkpoints; the seeds in ``broken`` with a BatchNorm
    running variance of -1: finite weights whose network computes NaN (the square root of a negative variance)."""
    records = []
    for seed in seeds:
        cfg = {"recipe": None, "seed": seed, "model": "sknet_cifar_tiny"}
        record = {**fake_record("softmax", seed, 0.5), "settings": cfg, "config": ablate.resolved(cfg)}
        record["key"] = ablate.run_key("softmax", seed, cfg, (1, 1))
        folder = ablate.run_folder(str(tmp_path), record["key"])
        os.makedirs(folder)
        skengine.manual_seed(seed)
        state = create("sknet_cifar_tiny", num_classes=10).state_dict()
        if seed in broken:
            state["stem.bn.running_var"] = skengine.Tensor(-np.ones(state["stem.bn.running_var"].shape, np.float32))
        skengine.save({"config": record["config"], "model": state}, os.path.join(folder, "checkpoint.npz"))
        records.append(record)
    return records


@pytest.mark.parametrize("where", ["network", "statistics"])
def test_gate_report_leaves_out_a_run_whose_gates_are_nan_and_names_it(tmp_path, data_dir, capsys, monkeypatch,
                                                                        where):
    """A run whose finite weights give NaN gates (a negative running variance) is left out of the gates table with a
    warning naming it, and named in gates.md; the other runs' gates are those of a report without it.  The same where
    the analysis lets a NaN through to the statistics (the runner's own check, not sk_attention's)."""
    records = _saved_runs(tmp_path, (0, 1, 2), broken=(1,) if where == "network" else ())
    if where == "statistics":
        real, calls = sk_attention.analyse, []

        def nan_in_the_second(*a):
            result = real(*a)
            calls.append(1)
            if len(calls) in (2, 4):  # seed 1's, the only one the command below analyses again (none is kept)
                layer = result["layers"][0]
                result["gates"][layer]["mean"][-1] = float("nan")
            return result

        monkeypatch.setattr(sk_attention, "analyse", nan_in_the_second)
    args = argparse.Namespace(variants=None, out=str(tmp_path), data_dir=data_dir, gates=5)
    table = ablate.gate_report(args, records)
    err = capsys.readouterr().err
    folder = ablate.run_folder(str(tmp_path), records[1]["key"])
    assert "softmax seed 1" in err and folder in err and "NaN" in err and "Traceback" not in err
    assert {row["seeds"] for row in table} == {2} and all(np.isfinite(row["large"]) for row in table)
    assert "softmax of budget 1 (seeds 1)" in (tmp_path / "gates.md").read_text()
    without = ablate.gate_report(args, records[::2])
    assert table == without
    # through the command: the accuracy table and the gates of the others, exit 0
    for record in records:
        ablate.append_result(str(tmp_path), record)
    ablate.main(["--out", str(tmp_path), "--report", "--data-dir", data_dir, "--gates", "5"])
    captured = capsys.readouterr()
    assert "| softmax | " in captured.out and "softmax seed 1" in captured.err


def test_gate_report_counts_the_test_images_there_are(tmp_path, data_dir):
    """--gates beyond the test set's size (60 here) analyses the 60 images and says 60, keeping the analysis under
    that count: not an attention_<400 digits>.json that no file system takes, after the whole analysis."""
    records = _saved_runs(tmp_path, (0,))
    huge = 10 ** 400
    table = ablate.gate_report(argparse.Namespace(variants=None, out=str(tmp_path), data_dir=data_dir, gates=huge),
                               records)
    assert table and "on the first 60 test images" in (tmp_path / "gates.md").read_text()
    folder = ablate.run_folder(str(tmp_path), records[0]["key"])
    assert sorted(os.listdir(folder)) == ["attention_60.json", "checkpoint.npz"]
    assert ablate.gate_report(argparse.Namespace(variants=None, out=str(tmp_path), data_dir=data_dir, gates=60),
                              records) == table


def test_report_reads_numbers_json_cannot_hold_as_floats_as_bad_lines(tmp_path, capsys):
    """A number beyond a float (an integer of 400 digits, 1e400 which JSON reads as inf) is a bad line, skipped with a
    warning, not an OverflowError; -0 is a number like any other; a byte-order mark before the first line is not
    part of the record (an editor's UTF-8 with BOM)."""
    good = [fake_record("softmax", 0, 0.8), fake_record("sigmoid", 0, 0.7), fake_record("uniform", 0, -0.0)]
    lines = [b"\xef\xbb\xbf" + json.dumps(good[0]).encode(),
             json.dumps(fake_record("softmax", 1, 0.8))[:-1].encode() + b', "params": 1' + b"0" * 400 + b"}",
             json.dumps(fake_record("softmax", 2, 0.8)).replace('"macs": 1', '"macs": 1e400').encode(),
             json.dumps(fake_record("softmax", 3, 0.8)).replace('"images_per_s": 100.0',
                                                                '"images_per_s": -1' + "0" * 400).encode(),
             *(json.dumps(r).encode() for r in good[1:])]
    assert b"1e400" in lines[2] and b"-1000" in lines[3]
    (tmp_path / "results.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert [r["key"] for r in ablate.read_results(str(tmp_path))] == [r["key"] for r in good]
    err = capsys.readouterr().err
    assert [int(n) for n in re.findall(r"line (\d+) \(", err)] == [2, 3, 4]
    assert "params 1000" in err and "macs inf" in err
    rows = ablate.main(["--out", str(tmp_path), "--report"])
    assert [(r["variant"], r["runs"]) for r in rows] == [("softmax", 1), ("sigmoid", 1), ("uniform", 1)]
    assert "| uniform | 1 | 0.00 |" in (tmp_path / "ablation.md").read_text()  # not -0.00
    assert "Traceback" not in capsys.readouterr().err


def test_ablation_runner_on_a_full_disk_stops_with_the_command_that_continues(tmp_path, data_dir, monkeypatch,
                                                                             capsys):
    """A full disk while a run trains (the trainer's checkpoint) or is recorded is no mistake in the command: exit 1,
    one line with the error and the command that continues, as for SIGTERM; the runs recorded before are kept."""
    import errno
    real_train, calls = ablate.trainer.train, []

    def full_on_the_second_run(cfg):
        calls.append(cfg)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device: writing x needs more space")
        return real_train(cfg)

    monkeypatch.setattr(ablate.trainer, "train", full_on_the_second_run)
    argv = runner_args(data_dir, tmp_path, "--seeds", "0", "--epochs", "1")
    with pytest.raises(SystemExit) as e:
        ablate.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and "Traceback" not in "".join(err)
    assert "variant sigmoid seed 0" in err[-1] and "No space left on device" in err[-1]
    assert err[-1].endswith("continue with: " + shlex.join(["python", os.path.relpath(ablate.__file__), *argv]))
    assert [r["variant"] for r in ablate.read_results(str(tmp_path))] == ["softmax"]

    def full_append(out, record):
        raise OSError(errno.ENOSPC, "No space left on device: writing results.jsonl")

    monkeypatch.setattr(ablate, "append_result", full_append)
    with pytest.raises(SystemExit) as e:
        ablate.main(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 1 and "variant sigmoid seed 0" in last and "continue with: " in last


@pytest.mark.parametrize("err, code", [("ENOSPC", 1), ("EACCES", 2)])
def test_a_report_on_a_full_disk_is_one_line_with_exit_code_1(tmp_path, monkeypatch, capsys, err, code):
    """A full disk while the report writes its table is no mistake in the command (exit code 2 says that): exit
    code 1 and one line naming the folder; another OSError (a folder that cannot be written) stays a usage error."""
    import errno
    ablate.append_result(str(tmp_path), fake_record("softmax", 0, 0.8))

    def fail(rows, out):
        raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)))

    monkeypatch.setattr(ablate, "write", fail)
    with pytest.raises(SystemExit) as e:
        ablate.main(["--out", str(tmp_path), "--report"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == code and len(lines) == 1 and f"--out {tmp_path}: " in lines[0]
