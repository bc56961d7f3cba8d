"""skengine.serialization: save / load of state dicts and nested checkpoints (.npz without pickle, atomic writes)."""
import errno
import io
import os
import pickle
import re
import signal
import subprocess
import sys
import zipfile

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

    def broken_write_array(f, array, **kwargs):
        f.write(b"\x93NUMPY half an array")
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken_write_array)
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


# ---------------------------------------------------------------- hostile or foreign files


def _zip(path, entries, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def _npy_header(shape, descr="|u1"):
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return f.getvalue()


def test_load_refuses_npy_header_larger_than_its_entry(tmp_path):
    """A 200-byte file whose .npy header declares a terabyte: refused before numpy allocates it."""
    path = _zip(tmp_path / "lie.npz", {"w.npy": _npy_header((2 ** 40,)) + b"abc"})
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*'w\.npy' is \d+ bytes, its \.npy header declares"):
        sk.load(path)


def test_load_refuses_zip_bomb(tmp_path):
    """8 MB of zeros compressed to a few dozen bytes (bzip2): an absurd ratio, refused before decompressing."""
    path = _zip(tmp_path / "bomb.npz", {"z.npy": _npy_header((8 << 20,)) + bytes(8 << 20)}, zipfile.ZIP_BZIP2)
    assert path.stat().st_size < 2000
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*'z\.npy' expands \d+ bytes to \d+.*zip bomb"):
        sk.load(path)


def test_load_refuses_more_than_memory(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    sk.save({"w": np.zeros(1000)}, path)
    monkeypatch.setattr(sk.serialization, "_memory_bytes", lambda: 4000)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r" declares \d+ bytes.*memory \(4000 bytes\)"):
        sk.load(path)
    monkeypatch.undo()
    assert sk.load(path)["w"].shape == (1000,)


def _written(path, data):
    path.write_bytes(data)
    return path


def _truncated(path):
    sk.save({"w": np.arange(100.0)}, path)
    return _written(path, path.read_bytes()[:900])


@pytest.mark.parametrize("make", [
    lambda p: _written(p, b"epoch 3, loss 0.12\n"),
    lambda p: _written(p, pickle.dumps({"w": [1.0, 2.0]})),  # an old-style .pt: a plain pickle
    lambda p: _zip(p, {"archive/data.pkl": pickle.dumps({"w": 1}), "archive/data/0": bytes(16)}),  # torch.save's zip
    _truncated,
    lambda p: _zip(p, {"w.npy": b"not an array at all"}),
], ids=["text", "pickle", "torch-zip", "truncated", "not-npy-data"])
def test_load_of_a_foreign_file_says_so(tmp_path, make):
    path = make(tmp_path / "model.pt")
    with pytest.raises(ValueError, match=re.escape(f"skengine.load: {path} is not an .npz file written by skengine.")):
        sk.load(path)


def test_load_refuses_pickled_content_naming_the_file(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([1, None], dtype=object))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": entry 'x\.npy' holds Python objects"):
        sk.load(path)


@pytest.mark.parametrize("obj,first,second,stored", [
    ({1: sk.ones(2), "1": sk.zeros(2)}, "[1]", "['1']", "'1'"),
    ({"m": {True: 1, "True": 2}}, "['m'][True]", "['m']['True']", "'m/True'"),
    ({"opt": {0.5: [1], "0.5": sk.ones(1)}}, "['opt'][0.5]", "['opt']['0.5']", "'opt/0.5'"),
])
def test_save_refuses_keys_that_collide(tmp_path, obj, first, second, stored):
    path = tmp_path / "x.npz"
    with pytest.raises(ValueError, match=re.escape(f"the keys {first} and {second} would both be stored as {stored}")):
        sk.save(obj, path)
    assert os.listdir(tmp_path) == []


def test_save_round_trips_empty_and_argument_like_keys(tmp_path):
    """An empty-string key nests like any other; keys named like np.savez's own arguments are kept."""
    obj = {"": {"x": sk.ones(2), "n": 1}, "x": sk.zeros(3), "n": 2, "file": sk.ones(1), "allow_pickle": sk.ones(4)}
    path = tmp_path / "k.npz"
    sk.save(obj, path)
    out = sk.load(path)
    assert sorted(out) == sorted(obj) and sorted(out[""]) == ["n", "x"] and out[""]["n"] == 1 and out["n"] == 2
    assert out[""]["x"].shape == (2,) and out["x"].shape == (3,) and out["allow_pickle"].shape == (4,)
    assert out["file"].shape == (1,)


def killed_writer(folder, suffix=".npz"):
    """What kill -9 during a save leaves: a process that dies in atomic_write's write, and its temporary."""
    before = set(os.listdir(folder))
    code = ("import os, signal, sys\nfrom skengine.serialization import atomic_write\n"
            "def write(tmp):\n    open(tmp, 'wb').write(b'half a checkpoint')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "atomic_write(sys.argv[1], write, sys.argv[2])")
    done = subprocess.run([sys.executable, "-c", code, str(folder / "ckpt.npz"), suffix], env=_env(), timeout=60)
    assert done.returncode == -signal.SIGKILL
    (left,) = set(os.listdir(folder)) - before
    return left


def _env():
    return {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(sk.__file__)))}


def test_a_save_or_load_clears_what_a_killed_writer_left_and_nothing_else(tmp_path):
    """kill -9 during sk.save or save_timm left a hidden temporary for ever; and the trainer's cleanup took a
    user's .tmp-notes123.txt for one (.tmp- and 8 characters), then .tmp-skengine-notes123.txt (any suffix, or
    none).  Only atomic_write's own names (its prefix, 8 characters of mkstemp's, one of its callers' suffixes)
    whose writer is dead are removed: a writer at work in another process keeps its file, and ends well."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.npz").write_bytes(b"precious")
    run = tmp_path / "run"
    run.mkdir()
    users = [".tmp-notes123.txt", ".tmp-abcd1234.npz", "x.tmp-skengine-abcd1234.npz", ".tmp-skengine-abcd1234.npz.bak",
             ".tmp-skengine-notes123.txt", ".tmp-skengine-abcd1234", ".tmp-skengine-abcd1234.bin", "ckpt.npz"]
    for name in users:
        (run / name).write_bytes(b"keep")
    (run / ".tmp-skengine-lnk00000.npz").symlink_to(outside / "keep.npz")  # a link with the pattern: the link stays
    (run / ".tmp-skengine-dir00000.npz").mkdir()
    code = ("import sys\nfrom skengine.serialization import atomic_write\n"
            "def write(tmp):\n    print(tmp, flush=True)\n    sys.stdin.readline()\n"
            "    open(tmp, 'wb').write(b'done')\n"
            "atomic_write(sys.argv[1], write, '.json')")
    live = subprocess.Popen([sys.executable, "-c", code, str(run / "live.json")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env())
    try:
        live_tmp = live.stdout.readline().strip()
        dead = killed_writer(run)
        sk.save({"a": sk.ones(1)}, run / "last.npz")  # the next save clears it
        assert not (run / dead).exists() and os.path.exists(live_tmp)
        assert dead.startswith(".tmp-skengine-") and dead.endswith(".npz")
        dead = killed_writer(run, ".safetensors")
        assert sk.load(run / "last.npz")["a"].shape == (1,)  # and so does the next load
        assert not (run / dead).exists() and os.path.exists(live_tmp)
        from skengine.serialization import remove_stale_temporaries
        assert remove_stale_temporaries(run) == []
    finally:
        live.communicate("\n", timeout=60)
    assert live.returncode == 0 and (run / "live.json").read_bytes() == b"done"  # the live writer was not harmed
    assert sorted(os.listdir(run)) == sorted(users + [".tmp-skengine-lnk00000.npz", ".tmp-skengine-dir00000.npz",
                                                      "last.npz", "live.json"])
    assert (outside / "keep.npz").read_bytes() == b"precious"
    with open(os.path.join(run, ".tmp-skengine-held0000.npz"), "wb") as f:  # held by this process: alive
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        sk.save({"a": sk.ones(1)}, run / "last.npz")
        assert (run / ".tmp-skengine-held0000.npz").exists()
    from skengine.serialization import atomic_write
    with pytest.raises(ValueError, match=r"suffix '\.txt' is not one of \.npz, "):  # no cleanup would know its name
        atomic_write(run / "notes.txt", lambda tmp: open(tmp, "w").close(), ".txt")
    assert not (run / "notes.txt").exists()


def full_disk(monkeypatch, folder, room=0):
    """Files opened for writing in ``folder`` take ``room`` bytes each, then every write fails as on a full
    disk (ENOSPC), also the ones zipfile makes again while it closes."""
    real = io.open

    class Full:
        def __init__(self, f):
            self.f, self.left = f, room

        def write(self, b):
            if len(b) > self.left:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= len(b)
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def opener(file, mode="r", *args, **kwargs):
        f = real(file, mode, *args, **kwargs)
        inside = isinstance(file, (str, os.PathLike)) and os.path.dirname(os.path.abspath(file)) == str(folder)
        return Full(f) if inside and ("w" in mode or "+" in mode) else f

    monkeypatch.setattr(io, "open", opener)


def test_a_full_disk_is_one_error_naming_the_folder_and_the_space_needed(tmp_path, monkeypatch):
    """It was three chained tracebacks (the write, then zipfile's closing writes, failing again)."""
    path = tmp_path / "ckpt.npz"
    sk.save({"a": sk.ones(3)}, path)
    good = path.read_bytes()
    full_disk(monkeypatch, tmp_path, room=1000)
    with pytest.raises(OSError) as e:
        sk.save({"w": np.zeros(1_000_000, np.float32)}, path)  # 4,000,000 bytes of array
    monkeypatch.undo()
    message = str(e.value)
    assert e.value.errno == errno.ENOSPC and "\n" not in message and str(tmp_path) in message, message
    assert "about 4.0 MB" in message and "MB free" in message and str(path) in message, message
    assert e.value.__cause__ is None and e.value.__suppress_context__  # one error, not a chain
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["ckpt.npz"]
    assert sk.load(path)["a"].shape == (3,)


def test_save_into_a_missing_folder_names_the_file_asked_for(tmp_path):
    target = tmp_path / "no" / "such" / "ckpt.npz"
    with pytest.raises(FileNotFoundError) as e:
        sk.save({"a": sk.ones(1)}, target)
    assert e.value.filename == str(target) and ".tmp" not in str(e.value), str(e.value)


def test_load_refuses_an_npz_holding_a_name_twice(tmp_path):
    """zipfile reads the last of two entries of one name: one of the values was lost unseen."""
    path = tmp_path / "twice.npz"
    sk.save({"w": sk.ones(2)}, path)
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.full(2, 7.0))
        z.writestr("w.npy", buf.getvalue())
    with pytest.raises(ValueError, match=r"entry 'w.npy' is stored 2 times") as e:
        sk.load(path)
    assert str(path) in str(e.value)
    json_twice = tmp_path / "json.npz"
    with zipfile.ZipFile(json_twice, "w") as z:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(b'{"epoch": 1, "epoch": 2}', np.uint8))
        z.writestr("__json__.npy", buf.getvalue())
    with pytest.raises(ValueError, match="the key 'epoch' is stored twice"):
        sk.load(json_twice)


def test_save_refuses_what_load_could_not_give_back(tmp_path):
    """Arrays of strings, complex numbers or dates, and keys with NUL, were saved, then refused by load()
    (a Tensor holds numbers only; a zip name ends at NUL)."""
    for bad in (np.array(["cat", "dog"]), np.array([1 + 2j]), np.array(["2026-12-02"], dtype="datetime64[D]")):
        with pytest.raises(TypeError, match=re.escape(f"has dtype {bad.dtype};")):
            sk.save({"x": bad}, tmp_path / "a.npz")
    with pytest.raises(ValueError, match="contains '/' or NUL"):
        sk.save({"a\0b": np.zeros(2)}, tmp_path / "a.npz")
    assert not (tmp_path / "a.npz").exists()


def test_load_of_a_device_file_is_refused_not_read_for_ever():
    with pytest.raises(ValueError, match="not a regular file"):
        sk.load("/dev/zero")


def test_save_timm_npz_keeps_keys_named_like_savez_arguments(tmp_path):
    from skengine.interop import read_state, save_timm

    class Odd(sk.nn.Module):
        def __init__(self):
            super().__init__()
            self.file = sk.nn.Linear(2, 2)
            self.allow_pickle = sk.nn.Linear(2, 2)

    path = save_timm(Odd(), tmp_path / "odd.npz")
    assert sorted(read_state(path)) == ["allow_pickle.bias", "allow_pickle.weight", "file.bias", "file.weight"]
