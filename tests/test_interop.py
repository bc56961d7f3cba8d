"""Tests for skengine.interop.load_timm and save_timm against timm's own numbers.

tests/fixtures/timm_refs.npz is written by tests/fixtures/make_timm_refs.py
(timm 1.0.31, torch 2.14.1; run by hand): timm SelectiveKernel modules and
reduced timm SK networks with random weights and BN statistics, their eval and
train outputs, gradients and updated running statistics, and the key/shape
lists of the full timm skresnet18, skresnet34 and skresnext50_32x4d.  That it
also checks, by hand, that timm loads what save_timm writes strictly and gives
the same logits (``make_timm_refs.py --check-save-timm``).
"""
import functools
import json
import math
import os
import sys
import types

import numpy as np
import pytest

import skengine as sk
import skengine.models as models
from skengine.interop import load_timm, read_state, save_timm, skengine_key, timm_state
from skengine.models import BasicBlock, Bottleneck, ResNet
from skengine.nn import SKConv

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "timm_refs.npz")
REFS = np.load(FIXTURE)
CONFIG = json.loads(REFS["config"].tobytes())


def unpack(name):
    """The named arrays packed by make_timm_refs.pack: a flat vector and a [key, shape] index."""
    index, flat = json.loads(REFS[name + "_index"].tobytes()), REFS[name]
    out, i = {}, 0
    for key, shape in index:
        n = math.prod(shape)
        out[key] = flat[i:i + n].reshape(shape)
        i += n
    assert i == flat.size
    return out


def assert_close(ours, ref, rtol):
    """Relative to the reference's scale: |ours - ref| <= rtol * max|ref| everywhere."""
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=rtol * np.abs(ref).max())


def net_from_config(cfg):
    kwargs = dict(cfg["skengine"])
    block = {"BasicBlock": BasicBlock, "Bottleneck": Bottleneck}[kwargs.pop("block")]
    return ResNet(block, **kwargs)


# -- one SelectiveKernel module ------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CONFIG["sk"]))
def test_sk_module_matches_timm_eval_and_train(case):
    p = f"sk/{case}"
    m = load_timm(SKConv(**CONFIG["sk"][case]["skconv"]), unpack(p + "/state"))
    m.eval()
    assert_close(m(sk.Tensor(REFS[p + "/x"])).numpy(), REFS[p + "/eval_out"], 1e-5)

    m.train()
    x = sk.Tensor(REFS[p + "/x"], requires_grad=True)
    y = m(x)
    assert_close(y.numpy(), REFS[p + "/train_out"], 1e-5)
    (y * sk.Tensor(REFS[p + "/r"])).sum().backward()
    assert_close(x.grad.numpy(), REFS[p + "/train_grad_x"], 1e-4)
    params = dict(m.named_parameters())
    for key, ref in unpack(p + "/train_grad").items():
        assert_close(params[skengine_key(key)].grad.numpy().reshape(ref.shape), ref, 1e-4)
    state = m.state_dict()
    running = unpack(p + "/running_after")
    assert len(running) == 2 * (m.num_paths + 1)
    for key, ref in running.items():
        assert_close(state[skengine_key(key)].numpy(), ref, 1e-6)


# -- reduced networks -------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CONFIG["net"]))
def test_reduced_network_logits_match_timm(case):
    p = f"net/{case}"
    net = load_timm(net_from_config(CONFIG["net"][case]), unpack(p + "/state"))
    net.eval()
    assert_close(net(sk.Tensor(REFS[p + "/x"])).numpy(), REFS[p + "/eval_out"], 1e-4)

    net.train()  # batch statistics everywhere, down to 1x1 maps of 4 images in layer4
    x = sk.Tensor(REFS[p + "/x"], requires_grad=True)
    y = net(x)
    assert_close(y.numpy(), REFS[p + "/train_out"], 1e-4)
    (y * sk.Tensor(REFS[p + "/r"])).sum().backward()
    assert_close(x.grad.numpy(), REFS[p + "/train_grad_x"], 1e-3)


# -- the full ImageNet models: every timm key maps, with its shape ----------------------------

@functools.lru_cache(maxsize=None)
def full_model(name):
    """One skengine model per full timm name, shared by the tests below (building them takes seconds)."""
    return models.create(name)


@pytest.mark.parametrize("name", CONFIG["keys"])
def test_full_timm_checkpoints_fit(name):
    shapes = json.loads(REFS[f"keys/{name}"].tobytes())
    state = {k: np.full(shape, 0.5, np.int64 if k.endswith("num_batches_tracked") else np.float32)
             for k, shape in shapes.items()}
    net = load_timm(full_model(name), state)
    own = net.state_dict()
    assert len(own) == len(shapes)  # one of ours for every timm entry, num_batches_tracked included
    assert all(np.all(t.numpy() == (0 if k.endswith("num_batches_tracked") else 0.5)) for k, t in own.items())


# -- strictness and file formats ------------------------------------------------------------

@pytest.fixture
def sk_state():
    return CONFIG["sk"]["split_input"]["skconv"], unpack("sk/split_input/state")


def test_missing_unexpected_and_misshapen_keys_are_errors(sk_state):
    cfg, state = sk_state
    with pytest.raises(KeyError, match=r"missing keys \['fc_select.weight'\]"):
        load_timm(SKConv(**cfg), {k: v for k, v in state.items() if k != "attn.fc_select.weight"})
    with pytest.raises(KeyError, match=r"unexpected keys \['attn.extra'\]"):
        load_timm(SKConv(**cfg), dict(state, **{"attn.extra": np.zeros(3)}))
    bad = dict(state, **{"paths.1.conv.weight": np.zeros((8, 4, 5, 5), np.float32)})
    with pytest.raises(ValueError, match=r"paths.1.conv.weight.*\(8, 4, 5, 5\).*\(8, 2, 3, 3\)"):
        load_timm(SKConv(**cfg), bad)
    with pytest.raises(ValueError, match="attn.fc_reduce.weight"):
        load_timm(SKConv(**cfg), dict(state, **{"attn.fc_reduce.weight": np.zeros((16, 8, 3, 3), np.float32)}))
    with pytest.raises(KeyError, match="missing keys"):
        load_timm(models.create("sknet_cifar_tiny"), state)


def test_load_timm_names_the_shape_the_file_holds(sk_state):
    """A (15, 64, 1, 1) entry was named as (15, 64), the shape after its 1x1 dims were dropped."""
    cfg, state = sk_state
    d, c = state["attn.fc_reduce.weight"].shape[:2]
    bad = dict(state, **{"attn.fc_reduce.weight": np.zeros((d - 1, c, 1, 1), np.float32)})
    with pytest.raises(ValueError) as e:
        load_timm(SKConv(**cfg), bad)
    assert f"checkpoint has shape {(d - 1, c, 1, 1)}," in str(e.value) and f"{(d, c, 1, 1)}" in str(e.value), e.value


def test_load_timm_refuses_weights_that_are_not_floating_point(sk_state):
    """int64 weights were cast: the gates came out exactly 0.5.  A counter may stay an integer."""
    cfg, state = sk_state
    net = SKConv(**cfg)
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    key = "paths.0.conv.weight"
    for bad in (state[key].astype(np.int64), state[key] > 0, np.full(state[key].shape, "1")):
        with pytest.raises(TypeError, match=f"{key} has dtype {bad.dtype}, .* floating-point weights are expected"):
            load_timm(net, dict(state, **{key: bad}))
    assert all(np.array_equal(v.numpy(), before[k]) for k, v in net.state_dict().items())
    counters = {k: np.asarray(7, np.int64) for k in net.state_dict() if k.endswith("num_batches_tracked")}
    assert counters and load_timm(net, dict(state, **counters)) is net
    assert all(int(v.numpy()) == 7 for k, v in net.state_dict().items() if k in counters)


def test_npz_with_a_name_twice_or_a_member_that_is_no_array_is_refused(tmp_path, sk_state):
    """np.load gives the last of two members of one name: a value was lost unseen."""
    import zipfile
    cfg, state = sk_state
    path = tmp_path / "twice.npz"
    np.savez(path, **state)
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        with z.open("paths.0.conv.weight.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros_like(state["paths.0.conv.weight"]))
    with pytest.raises(ValueError, match=r"twice.npz: the name 'paths.0.conv.weight' is stored twice"):
        load_timm(SKConv(**cfg), str(path))
    other = tmp_path / "other.npz"
    np.savez(other, **state)
    with zipfile.ZipFile(other, "a") as z:
        z.writestr("notes.txt", "not an array")
    with pytest.raises(ValueError, match="entry 'notes.txt' is not an .npy array"):
        load_timm(SKConv(**cfg), str(other))


def test_load_timm_checks_every_shape_before_writing_and_bumps_versions(sk_state):
    cfg, state = sk_state
    net = SKConv(**cfg)
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    last = list(state)[-1]  # a bad shape on the last key: nothing before it may be written
    with pytest.raises(ValueError, match="size mismatch for " + last.replace(".", r"\.")):
        load_timm(net, dict(state, **{last: np.zeros((99,), np.float32)}))
    assert all(np.array_equal(v.numpy(), before[k]) for k, v in net.state_dict().items())
    loss = net(sk.Tensor(REFS["sk/split_input/x"])).sum()  # its graph keeps the FC weights
    loss.backward(retain_graph=True)
    load_timm(net, state)
    with pytest.raises(RuntimeError, match="changed in place"):  # not a silent backward with the new weights
        loss.backward()


def test_npz_and_safetensors_files(tmp_path, sk_state):
    cfg, state = sk_state
    ref = load_timm(SKConv(**cfg), state).eval()
    x = sk.Tensor(REFS["sk/split_input/x"])
    np.savez(tmp_path / "w.npz", **state)
    from_npz = load_timm(SKConv(**cfg), str(tmp_path / "w.npz")).eval()
    np.testing.assert_array_equal(from_npz(x).numpy(), ref(x).numpy())
    with pytest.raises(ValueError, match=".safetensors or .npz"):
        read_state(str(tmp_path / "w.pt"))
    safetensors = pytest.importorskip("safetensors.numpy")
    safetensors.save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    from_st = load_timm(SKConv(**cfg), tmp_path / "w.safetensors").eval()
    np.testing.assert_array_equal(from_st(x).numpy(), ref(x).numpy())


def test_safetensors_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors...` fail
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        read_state(str(tmp_path / "model.safetensors"))


# -- save_timm: back to timm's names ---------------------------------------------------------

def randomise(model, seed=0):
    """Every parameter and buffer random (BN variances positive, counters nonzero), so a round trip
    that drops, swaps or re-initialises anything shows."""
    rng = np.random.default_rng(seed)
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            t.data[...] = rng.integers(1, 10_000)
        elif key.endswith("running_var"):
            t.data[...] = rng.uniform(0.5, 2.0, t.shape)
        else:
            t.data[...] = rng.standard_normal(t.shape)
    return model


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        np.testing.assert_array_equal(sb[key].numpy(), sa[key].numpy(), err_msg=key)


def timm_index(name):
    """{key: shape} of the timm module stored under ``name``'s state index (num_batches_tracked left out)."""
    return {k: list(shape) for k, shape in json.loads(REFS[name + "_index"].tobytes())}


BUILD = {
    "skresnet_mini": lambda: net_from_config(CONFIG["net"]["skresnet_mini"]),
    "skresnext_mini": lambda: net_from_config(CONFIG["net"]["skresnext_mini"]),
    "sknet_cifar_tiny": lambda: models.create("sknet_cifar_tiny"),  # no timm twin: renaming only
    "skresnet18": lambda: models.create("skresnet18"),
}


def without_counters(keys):
    return [k for k in keys if not k.endswith("num_batches_tracked")]


@pytest.mark.parametrize("name", list(BUILD))
def test_save_timm_then_load_timm_restores_every_value(tmp_path, name):
    src = randomise(BUILD[name]())
    path = save_timm(src, tmp_path / "w.npz")
    assert path == str(tmp_path / "w.npz")
    with np.load(path, allow_pickle=False) as f:
        written = {k: f[k] for k in f.files}
    counters = [k for k in written if k.endswith("num_batches_tracked")]
    assert len(counters) == sum(k.endswith("num_batches_tracked") for k in src.state_dict())
    assert all(written[k].dtype == np.int64 and written[k].shape == () for k in counters)
    if name == "skresnet18":  # timm's own key list, in timm's order, shapes included
        assert {k: list(v.shape) for k, v in written.items()} == json.loads(REFS["keys/skresnet18"].tobytes())
    elif f"net/{name}/state_index" in REFS:
        assert {k: list(written[k].shape) for k in without_counters(written)} == timm_index(f"net/{name}/state")
    dst = load_timm(BUILD[name](), path)
    assert_same_state(src, dst)


@pytest.mark.parametrize("name", CONFIG["keys"])
def test_timm_state_keys_and_shapes_are_timms(name):
    state = timm_state(full_model(name))
    assert {k: list(v.shape) for k, v in state.items()} == json.loads(REFS[f"keys/{name}"].tobytes())
    assert all(v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float32) for k, v in state.items())
    assert all(type(v) is np.ndarray and v.flags.c_contiguous for v in state.values())


@pytest.mark.parametrize("case", sorted(CONFIG["sk"]))
def test_timm_state_of_an_sk_module_is_timms_selective_kernel(case):
    m = randomise(SKConv(**CONFIG["sk"][case]["skconv"]))
    state = timm_state(m)
    assert {k: list(state[k].shape) for k in without_counters(state)} == timm_index(f"sk/{case}/state")
    np.testing.assert_array_equal(state["attn.fc_reduce.weight"][:, :, 0, 0], m.fc_reduce.weight.numpy())
    np.testing.assert_array_equal(state["attn.fc_select.weight"][:, :, 0, 0], m.fc_select.weight.numpy())
    np.testing.assert_array_equal(state["attn.bn.running_var"], m.bn_reduce.running_var.numpy())
    before = m.fc_reduce.weight.numpy().copy()
    state["attn.fc_reduce.weight"][...] = 0  # a copy: writing to it leaves the model alone
    np.testing.assert_array_equal(m.fc_reduce.weight.numpy(), before)


def hide_safetensors(monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors...` fail
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)


def test_save_timm_without_safetensors_writes_npz(tmp_path, monkeypatch):
    hide_safetensors(monkeypatch)
    src = randomise(BUILD["skresnet_mini"]())
    for given, expected in [(tmp_path / "a", "a.npz"), (str(tmp_path / "b.pt"), "b.pt.npz"),
                            (tmp_path / "c.npz", "c.npz")]:
        path = save_timm(src, given)
        assert path == str(tmp_path / expected)
        with open(path, "rb") as f:
            assert f.read(4) == b"PK\x03\x04"  # a zip: np.savez's container
        assert_same_state(src, load_timm(BUILD["skresnet_mini"](), path))
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    with pytest.raises(ImportError, match="pip install safetensors"):
        save_timm(src, tmp_path / "d.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.pt.npz", "c.npz"]


def test_save_timm_prefers_safetensors_when_importable(tmp_path, monkeypatch):
    """Without the real package (as in CI): a stand-in safetensors.numpy shows which writer is chosen."""
    calls = []

    def save_file(tensors, filename, metadata=None):
        calls.append((dict(tensors), filename))
        with open(filename, "wb") as f:
            f.write(b"stand-in")

    fake = types.ModuleType("safetensors.numpy")
    fake.save_file = save_file
    monkeypatch.setitem(sys.modules, "safetensors", types.ModuleType("safetensors"))
    monkeypatch.setitem(sys.modules, "safetensors.numpy", fake)
    src = randomise(BUILD["skresnet_mini"]())
    assert save_timm(src, tmp_path / "w") == str(tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").read_bytes() == b"stand-in"
    (tensors, written_to), = calls
    assert os.path.dirname(written_to) == str(tmp_path) and written_to != str(tmp_path / "w.safetensors")
    assert list(tensors) == list(timm_state(src))
    assert save_timm(src, tmp_path / "v.npz") == str(tmp_path / "v.npz") and len(calls) == 1  # .npz asked: np.savez
    assert sorted(os.listdir(tmp_path)) == ["v.npz", "w.safetensors"]


def test_save_timm_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    src = randomise(BUILD["skresnet_mini"]())
    path = save_timm(src, tmp_path / "w")
    assert path == str(tmp_path / "w.safetensors")
    assert save_timm(src, tmp_path / "x.safetensors") == str(tmp_path / "x.safetensors")
    assert save_timm(src, tmp_path / "y.npz") == str(tmp_path / "y.npz")  # asked for .npz, gets .npz
    with open(tmp_path / "y.npz", "rb") as f:
        assert f.read(4) == b"PK\x03\x04"
    for p in (path, tmp_path / "x.safetensors"):
        written = st.load_file(str(p))
        assert {k: list(written[k].shape) for k in without_counters(written)} == timm_index("net/skresnet_mini/state")
        assert written["bn1.num_batches_tracked"].dtype == np.int64 and written["bn1.num_batches_tracked"].shape == ()
        assert_same_state(src, load_timm(BUILD["skresnet_mini"](), p))


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_save_timm_failure_leaves_an_existing_file_untouched(tmp_path, monkeypatch, fmt):
    if fmt == "safetensors":
        st = pytest.importorskip("safetensors.numpy")
    src = BUILD["skresnet_mini"]()
    target = tmp_path / f"w.{fmt}"
    save_timm(randomise(src, seed=1), target)
    good = target.read_bytes()

    def fail_midway(tensors, dest, *args, **kwargs):  # writes part of a file, then dies, like a full disk
        if hasattr(dest, "write"):
            dest.write(b"half a checkpoint")
        else:
            with open(dest, "wb") as f:
                f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    if fmt == "npz":
        monkeypatch.setattr(np.lib.format, "write_array", lambda f, array, **kw: fail_midway(array, f))
    else:
        monkeypatch.setattr(st, "save_file", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        save_timm(randomise(src, seed=2), target)
    assert target.read_bytes() == good
    assert os.listdir(tmp_path) == [target.name]  # no temporary file left behind
    monkeypatch.undo()
    save_timm(src, target)  # and a save that succeeds does replace it
    assert target.read_bytes() != good
    assert_same_state(src, load_timm(BUILD["skresnet_mini"](), target))
