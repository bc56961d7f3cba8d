"""Tests for skengine.interop.load_timm against timm's own numbers.

tests/fixtures/timm_refs.npz is written by tests/fixtures/make_timm_refs.py
(timm 1.0.31, torch 2.14.1; run by hand): timm SelectiveKernel modules and
reduced timm SK networks with random weights and BN statistics, their eval and
train outputs, gradients and updated running statistics, and the key/shape
lists of the full timm skresnet18, skresnet34 and skresnext50_32x4d.
"""
import json
import math
import os
import sys

import numpy as np
import pytest

import skengine as sk
import skengine.models as models
from skengine.interop import load_timm, read_state, skengine_key
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

@pytest.mark.parametrize("name", CONFIG["keys"])
def test_full_timm_checkpoints_fit(name):
    shapes = json.loads(REFS[f"keys/{name}"].tobytes())
    state = {k: np.full(shape, 0.5, np.int64 if k.endswith("num_batches_tracked") else np.float32)
             for k, shape in shapes.items()}
    net = load_timm(models.create(name), state)
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
