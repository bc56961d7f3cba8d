"""skengine.serialization: save / load of state dicts and nested checkpoints (.npz without pickle, atomic writes)."""
import os

import numpy as np
import pytest

import skengine as sk
from test_nn import _model


def test_save_load_state_dict_round_trip(tmp_path):
    m = _model(0)
    m[1].running_mean.data[...] = np.arange(4)
    m[1].num_batches_tracked.data[...] = 11
    path = tmp_path / "ckpt.npz"
    sk.save(m.state_dict(), path)
    loaded = sk.load(path)
    assert list(loaded) == list(m.state_dict())
    for k, v in m.state_dict().items():
        assert isinstance(loaded[k], sk.Tensor)
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        np.testing.assert_array_equal(loaded[k].numpy(), v.numpy())
    fresh = _model(9)
    fresh.load_state_dict(loaded)
    x = sk.randn(2, 3, 3, 3)
    np.testing.assert_array_equal(fresh.eval()(x).numpy(), m.eval()(x).numpy())


def test_save_load_nested_dict_with_plain_values(tmp_path):
    obj = {
        "model": {"w": sk.Tensor(np.arange(6.0).reshape(2, 3)), "b": np.arange(3, dtype=np.int32)},
        "optimizer": {"lr": 0.1, "step": 42, "betas": [0.9, 0.999], "state": {}},
        "epoch": 7, "name": "sknet", "done": False, "best": None, "scalar": np.float32(2.5),
    }
    path = str(tmp_path / "run.npz")
    sk.save(obj, path)
    out = sk.load(path)
    assert set(out) == set(obj)
    np.testing.assert_array_equal(out["model"]["w"].numpy(), obj["model"]["w"].numpy())
    assert out["model"]["w"].dtype == np.float64
    assert out["model"]["b"].dtype == np.int32
    assert out["optimizer"] == {"lr": 0.1, "step": 42, "betas": [0.9, 0.999], "state": {}}
    assert out["epoch"] == 7 and out["name"] == "sknet" and out["done"] is False and out["best"] is None
    assert out["scalar"].dtype == np.float32 and out["scalar"].item() == 2.5


def test_saved_file_loads_without_pickle(tmp_path):
    path = tmp_path / "ckpt.npz"
    sk.save({"sd": _model(0).state_dict(), "meta": {"epoch": 1}}, path)
    with np.load(path, allow_pickle=False) as f:
        values = {k: f[k] for k in f.files}  # every entry readable without pickle
    assert "sd/0.weight" in values and values["sd/0.weight"].shape == (4, 3, 3, 3)


def test_object_arrays_are_refused_rather_than_pickled(tmp_path):
    path = tmp_path / "obj.npz"
    with pytest.raises(TypeError, match="object"):
        sk.save({"x": np.array([1, None], dtype=object)}, path)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_load_refuses_pickled_content(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([1, None], dtype=object))  # an object array is stored as a pickle
    with pytest.raises(ValueError, match="allow_pickle"):
        sk.load(path)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "ckpt.npz"
    sk.save({"a": sk.ones(3)}, path)
    sk.save({"a": sk.ones(3) * 2.0}, path)  # overwrite
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    np.testing.assert_array_equal(sk.load(path)["a"].numpy(), 2.0)


def test_failed_save_keeps_existing_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    sk.save({"a": sk.ones(3), "epoch": 1}, path)
    original = path.read_bytes()
    with pytest.raises(TypeError, match="cannot be saved"):
        sk.save({"a": sk.zeros(3), "bad": object()}, path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert sk.load(path)["epoch"] == 1


def test_save_failing_mid_write_keeps_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    sk.save({"a": sk.ones(3)}, path)
    original = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        sk.save({"a": sk.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_save_rejects_non_dict_and_bad_keys(tmp_path):
    with pytest.raises(TypeError, match="dict"):
        sk.save([1, 2], tmp_path / "x.npz")
    with pytest.raises(ValueError, match="'/'"):
        sk.save({"a/b": 1}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []
