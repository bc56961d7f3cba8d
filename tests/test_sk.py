"""Tests for skengine.nn.SKConv and SEBlock: shapes, gradients, attention, and exact equivalences.

References: output sizes from the convolution arithmetic, gradients from finite
differences, Fuse/Select re-derived in NumPy from the paper's equations, and
equalities that must hold by construction (one path, dilated 3x3 vs sparse 5x5,
split input vs block-sparse full-input weights).  The timm reference numbers
are in test_interop.py.
"""
import gc
import math
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skengine as sk
import skengine.functional as F
from skengine.nn import SEBlock, SKConv
from skengine.nn.sk import ATTENTIONS, attention_width, make_divisible

SETTINGS = dict(deadline=None, derandomize=True)


def rand(rng, *shape):
    return sk.Tensor(rng.standard_normal(shape))


def randomise_bn(module, rng):
    """Random BN affine parameters and running statistics, so eval mode is not the identity."""
    for name, t in module.state_dict().items():
        n = t.shape[0] if t.ndim else 0
        if name.endswith("bn.weight") or name.endswith("bn_reduce.weight"):
            t.data[...] = rng.uniform(0.5, 1.5, n)
        elif name.endswith(".bias") and "bn" in name:
            t.data[...] = rng.normal(0, 0.2, n)
        elif name.endswith("running_mean"):
            t.data[...] = rng.normal(0, 0.2, n)
        elif name.endswith("running_var"):
            t.data[...] = rng.uniform(0.5, 2.0, n)


@st.composite
def sk_configs(draw, small=False):
    """SKConv arguments: M = 2..4 paths of kernel 3, 5, 7, 9; ``small`` keeps gradchecks cheap."""
    M = draw(st.integers(2, 4))
    groups = draw(st.sampled_from([1, 2]))
    split_input = draw(st.booleans())
    per = groups * (M if split_input else 1)
    return dict(in_channels=per * draw(st.integers(1, 1 if small else 2)),
                out_channels=groups * draw(st.integers(1, 2 if small else 3)),
                kernel_sizes=tuple(3 + 2 * m for m in range(M)), groups=groups, split_input=split_input,
                stride=draw(st.sampled_from([1, 2])), reduction=draw(st.sampled_from([1, 2, 4, 16])),
                min_dim=draw(st.integers(1, 3 if small else 4)),
                attention=draw(st.sampled_from(ATTENTIONS)),
                keep_3x3=draw(st.booleans()) if M == 2 or not small else True)


# -- shapes, widths, parameter counts ---------------------------------------------------

@settings(max_examples=25, **SETTINGS)
@given(cfg=sk_configs(), n=st.integers(2, 3), h=st.integers(3, 7), w=st.integers(3, 7))
def test_output_shape_width_and_param_count(cfg, n, h, w):
    m = SKConv(**cfg)
    C, M, G, s = cfg["out_channels"], len(cfg["kernel_sizes"]), cfg["groups"], cfg["stride"]
    y = m(sk.randn(n, cfg["in_channels"], h, w))
    # a 'same'-padded stride-s convolution of an odd effective kernel gives ceil(H / s)
    assert y.shape == (n, C, math.ceil(h / s), math.ceil(w / s))
    path_in = cfg["in_channels"] // M if cfg["split_input"] else cfg["in_channels"]
    kernels = [9] * M if cfg["keep_3x3"] else [k * k for k in cfg["kernel_sizes"]]
    expected = sum(C * path_in // G * k + 2 * C for k in kernels)  # the paths: conv + BN
    if cfg["attention"] == "uniform":  # no Fuse, no Select
        assert not hasattr(m, "fc_reduce") and not hasattr(m, "fc_select")
    else:
        d = max(C // cfg["reduction"], cfg["min_dim"])  # the paper: d = max(C / r, L)
        assert m.fc_reduce.out_features == d
        expected += C * d + 2 * d + d * M * C
    assert sum(p.numel() for p in m.parameters()) == expected
    assert m.last_attention.shape == (n, M, C)


def test_make_divisible_and_widths():
    # values from timm 1.0.31's timm.layers.helpers.make_divisible
    assert [make_divisible(v, 8) for v in (1, 4, 8, 11, 12, 20, 100)] == [8, 8, 8, 16, 16, 24, 104]
    assert [make_divisible(v, 16) for v in (27, 17, 8, 25, 4.5)] == [32, 16, 16, 32, 16]
    assert attention_width(64) == 32 and attention_width(1024) == 64 and attention_width(1024, 32, 16) == 32
    assert attention_width(64, 8, divisor=16) == 16 and attention_width(200, 8, divisor=16) == 32


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        SKConv(8, kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match="keep_3x3"):
        SKConv(8, kernel_sizes=(1, 3))
    with pytest.raises(ValueError, match=r"\[3, 3, 3\] must be >= 1 and.*divisible by groups=2"):
        SKConv(9, kernel_sizes=(3, 5, 7), groups=2, split_input=True)  # slices of 3 channels
    with pytest.raises(ValueError, match="'softmax', 'sigmoid', 'sigmoid_norm', 'uniform', got 'relu'"):
        SKConv(8, attention="relu")


# -- gradients ------------------------------------------------------------------------

def bind(module, names, tensors):
    """Use ``tensors`` in place of the named parameters (so gradcheck can perturb them)."""
    for name, t in zip(names, tensors):
        *path, attr = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, attr, t)


@settings(max_examples=5, **SETTINGS)
@given(cfg=sk_configs(small=True), seed=st.integers(0, 2 ** 16))
def test_gradcheck_whole_layer_train_mode(cfg, seed):
    """Input and every parameter, BN on batch statistics."""
    rng = np.random.default_rng(seed)
    m = SKConv(**cfg).double()
    names = [n for n, _ in m.named_parameters()]
    params = [sk.Tensor(p.data.copy(), requires_grad=True) for p in m.parameters()]
    for p in params:  # away from zero so BN's scale and the FCs matter
        p.data += 0.3 * rng.standard_normal(p.shape)
    x = rand(rng, 3, cfg["in_channels"], 3, 4).requires_grad_()

    def f(x, *ps):
        bind(m, names, ps)
        return m(x)

    assert sk.gradcheck(f, (x, *params), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_gradcheck_every_gate(attention):
    """Each gate at least once, whatever hypothesis draws above."""
    rng = np.random.default_rng(3)
    m = SKConv(4, 4, kernel_sizes=(3, 5, 7), reduction=2, min_dim=2, attention=attention).double()
    names = [n for n, _ in m.named_parameters()]
    params = [sk.Tensor(p.data + 0.3 * rng.standard_normal(p.shape), requires_grad=True) for p in m.parameters()]

    def f(x, *ps):
        bind(m, names, ps)
        return m(x)

    assert sk.gradcheck(f, (rand(rng, 3, 4, 3, 3).requires_grad_(), *params), rtol=1e-3, atol=1e-6)


def test_sigmoid_norm_stays_exact_where_float32_sigmoids_vanish():
    """Logits of -16..-40: float32 sigmoids round to a few steps of 3e-8 or to 0 (0 / 0 in a plain ratio);
    the gate is sigmoid(l_m) / sum_k sigmoid(l_k), computed here in float64 by hand."""
    m = SKConv(2, 2, reduction=1, min_dim=1, attention="sigmoid_norm").eval()
    logits = np.array([[[-16.5, -40.0], [-17.5, -41.0]]], np.float32)  # (N, M, C)
    x = sk.Tensor(logits)
    a = F.softmax(F.logsigmoid(x), dim=1).numpy()
    g = 1 / (1 + np.exp(-logits.astype(np.float64)))
    np.testing.assert_allclose(a, g / g.sum(axis=1, keepdims=True), rtol=1e-5)
    m.fc_reduce.weight.data[...] = 10.0   # z = ReLU(BN(10 * sum s)) >> 1 for a positive input
    m.fc_select.weight.data[...] = -40.0  # every logit -40 * sum z: far below float32 sigmoid's range
    y = m(sk.randn(2, 2, 4, 4).abs())
    assert np.isfinite(y.numpy()).all() and np.allclose(m.last_attention.numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_gradcheck_se_block():
    rng = np.random.default_rng(0)
    m = SEBlock(6, reduction=2).double()
    names = [n for n, _ in m.named_parameters()]
    params = [sk.Tensor(p.data.copy(), requires_grad=True) for p in m.parameters()]

    def f(x, *ps):
        bind(m, names, ps)
        return m(x)

    assert sk.gradcheck(f, (rand(rng, 2, 6, 3, 3).requires_grad_(), *params))


# -- attention ----------------------------------------------------------------------------

def numpy_fuse_select(m, U):
    """Fuse and Select from the paper's equations, in NumPy, for eval mode:
    s = mean_hw(sum_m U_m); z = ReLU(BN(W s)); a = softmax_m(A_m z) (or sigmoid, or sigmoid / its sum
    over m; or 1/M without any of it)."""
    if m.attention == "uniform":
        return np.full((U[0].shape[0], len(U), U[0].shape[1]), 1 / len(U))
    s = sum(U).mean(axis=(2, 3))
    bn = m.bn_reduce
    z = s @ m.fc_reduce.weight.numpy().T
    z = (z - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps) * bn.weight.numpy() + bn.bias.numpy()
    logits = np.maximum(z, 0) @ m.fc_select.weight.numpy().T
    A = np.stack(np.split(logits, len(U), axis=1), axis=1)  # row block m of fc_select is A_m
    if m.attention == "sigmoid":
        return 1 / (1 + np.exp(-A))
    if m.attention == "sigmoid_norm":
        g = 1 / (1 + np.exp(-A))
        return g / g.sum(axis=1, keepdims=True)
    e = np.exp(A - A.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@settings(max_examples=15, **SETTINGS)
@given(cfg=sk_configs(), seed=st.integers(0, 2 ** 16))
def test_attention_matches_paper_equations(cfg, seed):
    rng = np.random.default_rng(seed)
    m = SKConv(**cfg).double().eval()
    randomise_bn(m, rng)
    x = rand(rng, 2, cfg["in_channels"], 5, 5)
    y = m(x)
    M = len(cfg["kernel_sizes"])
    xs = np.split(x.numpy(), M, axis=1) if cfg["split_input"] else [x.numpy()] * M
    U = [path(sk.Tensor(xm)).numpy() for path, xm in zip(m.paths, xs)]
    a = numpy_fuse_select(m, U)
    np.testing.assert_allclose(m.last_attention.numpy(), a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), sum(a[:, i, :, None, None] * U[i] for i in range(M)), rtol=1e-10,
                               atol=1e-12)
    if cfg["attention"] != "sigmoid":  # the paths compete (or share equally): weights sum to one per channel
        np.testing.assert_allclose(m.last_attention.numpy().sum(axis=1), 1.0, rtol=1e-12)
    assert ((a > 0) & (a < 1)).all()


def test_last_attention_is_detached_and_keeps_no_graph():
    m = SKConv(8, 8, kernel_sizes=(3, 5, 7), min_dim=4)
    x = sk.randn(2, 8, 6, 6, requires_grad=True)
    y = m(x)
    att = m.last_attention
    assert isinstance(att, sk.Tensor) and not att.requires_grad and att.creator is None
    assert att.shape == (2, 3, 8)
    graph = weakref.ref(y.creator)
    del y
    gc.collect()
    assert graph() is None  # nothing but the output held the graph


def test_collect_attention_names_every_sk_layer():
    from skengine.models import collect_attention
    net = sk.nn.Sequential(SKConv(4, 8, min_dim=4), sk.nn.ReLU(), SKConv(8, 8, kernel_sizes=(3, 5, 7), min_dim=4))
    assert collect_attention(net) == {}
    net(sk.randn(3, 4, 5, 5))
    att = collect_attention(net)
    assert list(att) == ["0", "2"]
    assert att["0"].shape == (3, 2, 8) and att["2"].shape == (3, 3, 8) and isinstance(att["2"], np.ndarray)


# -- equivalences -----------------------------------------------------------------------

@pytest.mark.parametrize("train", [True, False])
def test_one_path_softmax_is_the_plain_conv_bn_relu(train):
    rng = np.random.default_rng(1)
    m = SKConv(6, 8, kernel_sizes=(3,), stride=2, groups=2, min_dim=4).double()
    randomise_bn(m, rng)
    m.train(train)
    x = rand(rng, 3, 6, 7, 7)
    path = m.paths[0]
    rm, rv = path.bn.running_mean.data.copy(), path.bn.running_var.data.copy()
    y = m(x)
    # the path by hand: conv (padding 1) -> batch norm -> ReLU
    conv = F.conv2d(x, path.conv.weight, stride=2, padding=1, groups=2)
    bn = F.batch_norm(conv, sk.Tensor(rm), sk.Tensor(rv), path.bn.weight, path.bn.bias, training=train)
    np.testing.assert_array_equal(y.numpy(), F.relu(bn).numpy())
    np.testing.assert_array_equal(m.last_attention.numpy(), 1.0)


def test_dilated_3x3_equals_sparse_5x5():
    """keep_3x3: the 5x5 path is a 3x3 dilated by 2 = a 5x5 kernel with the 3x3 taps spread out."""
    rng = np.random.default_rng(2)
    dil = SKConv(4, 6, kernel_sizes=(3, 5), stride=2, min_dim=4).double().eval()
    full = SKConv(4, 6, kernel_sizes=(3, 5), stride=2, min_dim=4, keep_3x3=False).double().eval()
    randomise_bn(dil, rng)
    state = {k: v.numpy() for k, v in dil.state_dict().items()}
    w5 = np.zeros((6, 4, 5, 5))
    w5[:, :, ::2, ::2] = state["paths.1.conv.weight"]
    full.load_state_dict(dict(state, **{"paths.1.conv.weight": w5}))
    x = rand(rng, 2, 4, 9, 9)
    np.testing.assert_allclose(full(x).numpy(), dil(x).numpy(), rtol=1e-12, atol=1e-12)


def test_split_input_equals_block_sparse_weights():
    """Path m reading channel slice m = a full-input path whose weights are zero off that slice.
    7 channels over 3 paths: slices of 3, 2, 2."""
    rng = np.random.default_rng(3)
    split = SKConv(7, 4, kernel_sizes=(3, 5, 7), split_input=True, min_dim=4).double().eval()
    full = SKConv(7, 4, kernel_sizes=(3, 5, 7), split_input=False, min_dim=4).double().eval()
    randomise_bn(split, rng)
    state = {k: v.numpy() for k, v in split.state_dict().items()}
    for i, (lo, hi) in enumerate([(0, 3), (3, 5), (5, 7)]):
        assert state[f"paths.{i}.conv.weight"].shape == (4, hi - lo, 3, 3)
        w = np.zeros((4, 7, 3, 3))
        w[:, lo:hi] = state[f"paths.{i}.conv.weight"]
        state[f"paths.{i}.conv.weight"] = w
    full.load_state_dict(state)
    x = rand(rng, 2, 7, 5, 5)
    np.testing.assert_allclose(full(x).numpy(), split(x).numpy(), rtol=1e-12, atol=1e-12)


def test_se_block_matches_numpy():
    rng = np.random.default_rng(4)
    m = SEBlock(32, reduction=4).double()
    assert m.fc1.out_features == 8
    x = rand(rng, 2, 32, 3, 3)
    s = x.numpy().mean(axis=(2, 3))
    h = np.maximum(s @ m.fc1.weight.numpy().T + m.fc1.bias.numpy(), 0)
    a = 1 / (1 + np.exp(-(h @ m.fc2.weight.numpy().T + m.fc2.bias.numpy())))
    np.testing.assert_allclose(m(x).numpy(), x.numpy() * a[:, :, None, None], rtol=1e-12)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(reduction=0), r"SKConv: reduction must be a positive int, got 0"),
    (dict(reduction=-2), r"SKConv: reduction must be a positive int, got -2"),
    (dict(min_dim=0), r"SKConv: min_dim must be a positive int, got 0"),
    (dict(min_dim=-1, rd_divisor=8), r"SKConv: min_dim must be a positive int, got -1"),
    (dict(groups=0), r"SKConv: groups must be a positive int, got 0"),
    (dict(rd_channels=0), r"SKConv: rd_channels must be a positive int, got 0"),
    (dict(rd_divisor=0), r"SKConv: rd_divisor must be a positive int, got 0"),
    (dict(in_channels=0), r"SKConv: in_channels must be a positive int, got 0"),
    (dict(out_channels=-8), r"SKConv: out_channels must be a positive int, got -8"),
    (dict(kernel_sizes=()), r"SKConv: kernel_sizes must be a non-empty tuple of odd positive ints, got \(\)"),
    (dict(kernel_sizes=(3, 6)), r"kernel_sizes must be .* odd positive ints, got \(3, 6\)"),
    (dict(kernel_sizes=(3, 5.0)), r"kernel_sizes must be .* odd positive ints, got \(3, 5.0\)"),
    (dict(kernel_sizes=5), r"kernel_sizes must be a non-empty tuple .*, got 5"),
    (dict(groups=3), r"divisible by groups=3"),
])
def test_bad_sizes_name_the_argument(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SKConv(**{"in_channels": 8, **kwargs})


def test_se_block_bad_sizes():
    with pytest.raises(ValueError, match=r"SEBlock: reduction must be a positive int, got 0"):
        SEBlock(8, reduction=0)
    with pytest.raises(ValueError, match=r"SEBlock: channels must be a positive int, got 0"):
        SEBlock(0)
