"""skengine.nn: Module bookkeeping, state dicts, init, BatchNorm statistics, Dropout, forward hooks."""
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import skengine as sk
import skengine.functional as F
import skengine.nn as nn
from skengine.nn import Parameter


def leaf(a, requires_grad=True):
    return sk.Tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.scale = Parameter(np.ones(1, np.float32))
        self.note = "plain attribute"
        self.count = 3

    def forward(self, x):
        return F.relu(self.bn(self.conv(x))) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Block()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.head(self.drop(self.stem(x)))


# -- registration and traversal ------------------------------------------------------------------
def test_registration_by_attribute():
    b = Block()
    assert list(b._parameters) == ["scale"]
    assert list(b._modules) == ["conv", "bn"]
    assert b.note == "plain attribute" and b.count == 3
    assert "note" not in b._parameters and "note" not in b._modules and "note" not in b._buffers
    assert isinstance(b.conv, nn.Conv2d) and b.scale.requires_grad
    b.scale = 2.0  # re-assigning a plain value unregisters the parameter
    assert "scale" not in b._parameters and b.scale == 2.0
    b.extra = nn.Linear(2, 2)
    assert list(b._modules) == ["conv", "bn", "extra"]
    del b.extra
    assert list(b._modules) == ["conv", "bn"]
    with pytest.raises(AttributeError, match="extra"):
        _ = b.extra


def test_setattr_before_super_init_raises_clearly():
    class Bad(nn.Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1, np.float32))

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_named_parameters_order_and_dotted_names():
    names = [n for n, _ in Net().named_parameters()]
    assert names == ["stem.scale", "stem.conv.weight", "stem.conv.bias", "stem.bn.weight", "stem.bn.bias",
                     "head.2.weight", "head.2.bias"]
    net = Net()
    params = list(net.parameters())
    assert [id(p) for p in params] == [id(p) for _, p in net.named_parameters()]
    assert all(isinstance(p, Parameter) and p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == 1 + (4 * 2 * 9 + 4) + 8 + (3 * 4 + 3)


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]


def test_modules_and_named_modules_depth_first():
    net = Net()
    assert [type(m).__name__ for m in net.modules()] == [
        "Net", "Block", "Conv2d", "BatchNorm2d", "Sequential", "AdaptiveAvgPool2d", "Flatten", "Linear", "Dropout"]
    assert [n for n, _ in net.named_modules()] == [
        "", "stem", "stem.conv", "stem.bn", "head", "head.0", "head.1", "head.2", "drop"]
    assert [n for n, _ in net.named_children()] == ["stem", "head", "drop"]
    assert [n for n, _ in net.named_buffers()] == [
        "stem.bn.running_mean", "stem.bn.running_var", "stem.bn.num_batches_tracked"]


def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.head.eval()
    assert not net.head[2].training and net.stem.training


def test_zero_grad():
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    net(sk.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    grads = [p.grad for p in net.parameters()]
    net.zero_grad(set_to_none=False)
    assert all(p.grad is g and not p.grad.numpy().any() for p, g in zip(net.parameters(), grads))
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_sequential_and_modulelist_containers():
    layers = [nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[1] is layers[1] and seq[-1] is layers[2] and list(seq) == layers
    od = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in od.named_parameters()] == ["fc.weight", "fc.bias"]
    ml = nn.ModuleList([nn.Linear(2, 2)]).append(nn.Linear(2, 1))
    assert len(ml) == 2 and [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    x = sk.randn(5, 3)
    ref = layers[2](layers[1](layers[0](x)))
    np.testing.assert_allclose(seq(x).numpy(), ref.numpy())


def test_repr_readable():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Sequential(nn.Flatten(), nn.Linear(8, 10)))
    text = repr(m)
    lines = text.splitlines()
    assert lines[0] == "Sequential("
    assert lines[1].startswith("  (0): Conv2d(3, 8, kernel_size=(3, 3)") and "padding=(1, 1)" in lines[1]
    assert "bias=False" in lines[1]
    assert lines[2].startswith("  (1): BatchNorm2d(8")
    assert lines[3] == "  (2): ReLU()"
    assert lines[4] == "  (3): Sequential("
    assert lines[5] == "    (0): Flatten()"
    assert lines[6] == "    (1): Linear(in_features=8, out_features=10, bias=True)"
    assert lines[-1] == ")"
    assert repr(nn.Dropout(0.3)) == "Dropout(p=0.3)"


# -- state_dict / load_state_dict ------------------------------------------------------------------
def test_state_dict_keys_follow_pytorch():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    sd = m.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                        "1.num_batches_tracked"]
    assert sd["0.weight"].shape == (4, 3, 3, 3) and sd["0.bias"].shape == (4,)
    assert sd["1.num_batches_tracked"].shape == () and sd["1.num_batches_tracked"].dtype == np.int64
    assert sd["1.running_var"].dtype == np.float32
    np.testing.assert_array_equal(sd["1.running_var"].numpy(), 1.0)
    assert list(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False)).state_dict()) == ["0.weight"]
    assert list(Net().state_dict())[:8] == [
        "stem.scale", "stem.conv.weight", "stem.conv.bias", "stem.bn.weight", "stem.bn.bias",
        "stem.bn.running_mean", "stem.bn.running_var", "stem.bn.num_batches_tracked"]


def _model(seed):
    sk.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_load_state_dict_round_trip_copies_values():
    src, dst = _model(0), _model(1)
    src[1].running_mean.data[...] = 0.25
    src[1].num_batches_tracked.data[...] = 7
    assert not np.array_equal(src[0].weight.numpy(), dst[0].weight.numpy())
    sd = src.state_dict()
    result = dst.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), sd[k].numpy())
    assert dst[1].num_batches_tracked.item() == 7
    before = dst[0].weight.numpy().copy()
    src[0].weight.data[...] += 1.0  # dst holds a copy, not a reference
    np.testing.assert_array_equal(dst[0].weight.numpy(), before)
    params_before = [id(p) for p in dst.parameters()]
    dst.load_state_dict({k: v.numpy() for k, v in sd.items()})  # plain arrays work; params stay the same objects
    assert [id(p) for p in dst.parameters()] == params_before


def test_load_state_dict_strict_missing_and_unexpected():
    m = _model(0)
    sd = dict(m.state_dict())
    del sd["1.running_var"]
    with pytest.raises(RuntimeError, match=r"missing keys \[.1.running_var.\]"):
        m.load_state_dict(sd)
    sd = dict(m.state_dict())
    sd["2.bogus"] = sk.zeros(1)
    with pytest.raises(RuntimeError, match=r"unexpected keys \[.2.bogus.\]"):
        m.load_state_dict(sd)


def test_load_state_dict_non_strict_reports_and_loads_the_rest():
    src, dst = _model(0), _model(1)
    sd = dict(src.state_dict())
    del sd["0.bias"]
    sd["extra"] = sk.zeros(2)
    bias_before = dst[0].bias.numpy().copy()
    missing, unexpected = dst.load_state_dict(sd, strict=False)
    assert missing == ["0.bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(dst[0].weight.numpy(), src[0].weight.numpy())
    np.testing.assert_array_equal(dst[0].bias.numpy(), bias_before)


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    m = _model(0)
    sd = dict(m.state_dict())
    sd["3.weight"] = sk.zeros(5, 4)
    with pytest.raises(RuntimeError, match=r"3\.weight.*\(5, 4\).*\(2, 4\)"):
        m.load_state_dict(sd)


# -- initialisation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Linear(20, 7), 20),
    (lambda: nn.Conv2d(6, 5, 3), 6 * 9),
    (lambda: nn.Conv2d(6, 4, (1, 3), groups=2), 3 * 3),
])
def test_default_init_bounds(make, fan_in):
    m = make()
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(m.weight.numpy()).max() <= bound
    assert np.abs(m.bias.numpy()).max() <= bound
    assert np.abs(m.weight.numpy()).max() > 0.5 * bound  # actually spread over the range
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32


@pytest.mark.parametrize("make, fan_in", [(lambda: nn.Linear(512, 1024), 512),
                                          (lambda: nn.Conv2d(64, 256, 3), 64 * 9)])
def test_large_layer_init_matches_kaiming_uniform_a_sqrt5(make, fan_in):
    w = make().weight.numpy().ravel().astype(np.float64)
    gain = math.sqrt(2.0 / (1 + 5))  # leaky_relu gain with a = sqrt(5)
    bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
    assert bound == pytest.approx(1 / math.sqrt(fan_in))
    assert np.abs(w).max() <= bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert abs(w.mean()) < 0.02 * bound
    hist, _ = np.histogram(w, bins=10, range=(-bound, bound))
    np.testing.assert_allclose(hist / w.size, 0.1, atol=0.01)  # roughly uniform


def test_batchnorm_init():
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.numpy(), 1.0)
    np.testing.assert_array_equal(bn.bias.numpy(), 0.0)
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.running_var.numpy(), 1.0)
    assert bn.num_batches_tracked.item() == 0


def test_manual_seed_makes_init_reproducible():
    a, b, c = _model(3), _model(3), _model(4)
    np.testing.assert_array_equal(a[0].weight.numpy(), b[0].weight.numpy())
    assert not np.array_equal(a[0].weight.numpy(), c[0].weight.numpy())


# -- BatchNorm statistics ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm2d, (4, 3, 2, 3)), (nn.BatchNorm1d, (6, 3)),
                                        (nn.BatchNorm1d, (3, 3, 4))])
def test_batchnorm_running_stats_and_eval(cls, shape):
    rng = np.random.default_rng(0)
    bn = cls(3)
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, -1.0, 3.0]
    axes = (0,) + tuple(range(2, len(shape)))
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(4):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        y = bn(sk.Tensor(x)).numpy()
        n = x.size // 3
        mean, var = x.mean(axis=axes, dtype=np.float64), x.var(axis=axes, dtype=np.float64)
        rm = 0.9 * rm + 0.1 * mean
        rv = 0.9 * rv + 0.1 * var * n / (n - 1)  # unbiased variance in the running update
        bshape = (1, 3) + (1,) * (len(shape) - 2)
        ref = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * bn.weight.numpy().reshape(bshape) \
            + bn.bias.numpy().reshape(bshape)  # training normalises with the biased batch variance
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-5, atol=1e-6)
    assert bn.num_batches_tracked.item() == 4

    bn.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    y = bn(sk.Tensor(x)).numpy()
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    ref = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) * bn.weight.numpy().reshape(bshape) \
        + bn.bias.numpy().reshape(bshape)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-5, atol=1e-6)  # eval does not update
    assert bn.num_batches_tracked.item() == 4


def test_batchnorm_custom_momentum_and_no_running_stats():
    bn = nn.BatchNorm1d(2, momentum=0.5)
    x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    bn(sk.Tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(bn.running_var.numpy(), [0.5 + 0.5 * 2.0, 0.5 + 0.5 * 8.0])
    free = nn.BatchNorm1d(2, track_running_stats=False).eval()  # always batch statistics
    y = free(sk.Tensor(x)).numpy()
    np.testing.assert_allclose(y, [[-1, -1], [1, 1]], atol=1e-4)
    assert list(free.state_dict()) == ["weight", "bias"]


def test_batchnorm_gradients_flow_to_affine_parameters():
    bn = nn.BatchNorm2d(2).double()
    x = leaf(np.random.default_rng(1).standard_normal((3, 2, 2, 2)))
    (bn(x) * leaf(np.arange(24.0).reshape(3, 2, 2, 2), False)).sum().backward()
    assert bn.weight.grad.shape == (2,) and bn.bias.grad.shape == (2,)
    np.testing.assert_allclose(bn.bias.grad.numpy(), np.arange(24.0).reshape(3, 2, 2, 2).sum(axis=(0, 2, 3)))


# -- Dropout -----------------------------------------------------------------------------------------------
def test_dropout_module_eval_is_identity():
    d = nn.Dropout(0.5).eval()
    x = sk.randn(10, 10)
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())


@pytest.mark.parametrize("p", [0.1, 0.5, 0.75])
def test_dropout_module_train_statistics(p):
    sk.manual_seed(0)
    d = nn.Dropout(p)
    x = sk.ones(200_000)
    y = d(x).numpy()
    zeroed = (y == 0).mean()
    assert zeroed == pytest.approx(p, abs=0.01)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-6)
    assert y.mean() == pytest.approx(1.0, abs=0.02)  # expectation preserved


# -- dtype / misc -----------------------------------------------------------------------------------------
def test_module_double_and_float():
    m = _model(0).double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[1].num_batches_tracked.dtype == np.int64  # integer buffers are not cast
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())


@given(seed=st.integers(0, 1000))
def test_linear_module_matches_functional(seed):
    sk.manual_seed(seed)
    lin = nn.Linear(4, 3)
    x = sk.randn(2, 4)
    ref = x.numpy() @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(lin(x).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_parameter_repr_and_flags():
    p = Parameter(np.zeros(2, np.float32))
    assert p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:")


# -- Module traversal and state, as in torch -------------------------------------------------------
def test_shared_submodule_is_listed_once_and_recurse_false_lists_own_parameters():
    shared = nn.Linear(2, 2)
    m = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in m.named_modules()] == ["", "0", "1"]
    assert len(list(m.parameters())) == 2
    assert list(m.parameters(recurse=False)) == [] and len(list(shared.parameters(recurse=False))) == 2
    assert [n for n, _ in m.named_parameters(prefix="net")] == ["net.0.weight", "net.0.bias"]


def test_sequential_slices_and_appends_like_torch():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    head = m[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is m[0]
    x = sk.randn(5, 3)
    np.testing.assert_array_equal(head(x).numpy(), m[1](m[0](x)).numpy())
    m.append(nn.ReLU())
    assert len(m) == 4 and list(m.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    lst = nn.ModuleList([nn.ReLU(), nn.Tanh(), nn.Sigmoid()])[1:]
    assert isinstance(lst, nn.ModuleList) and [type(x).__name__ for x in lst] == ["Tanh", "Sigmoid"]


def test_requires_grad_freezes_parameters():
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    m[0].requires_grad_(False)
    m(sk.randn(2, 3)).sum().backward()
    assert m[0].weight.grad is None and m[1].weight.grad is not None


def test_load_state_dict_casts_like_copy_and_reports_every_problem():
    src, dst = _model(0), _model(1)
    sd = {k: v.numpy().astype(np.float64) if v.dtype == np.float32 else v for k, v in src.state_dict().items()}
    dst.load_state_dict(sd)  # float64 values into float32 parameters: cast, as torch does
    assert dst[0].weight.dtype == np.float32
    np.testing.assert_array_equal(dst[0].weight.numpy(), src[0].weight.numpy())
    sd["0.weight"] = np.zeros((7, 7))
    sd["extra"] = np.zeros(1)
    with pytest.raises(RuntimeError, match=r"unexpected keys \['extra'\].*size mismatch for 0.weight: checkpoint "
                                           r"has shape \(7, 7\)"):
        dst.load_state_dict(sd)
    with pytest.raises(RuntimeError, match="size mismatch"):  # shapes are checked even when not strict
        dst.load_state_dict(sd, strict=False)
    np.testing.assert_array_equal(dst[0].weight.numpy(), src[0].weight.numpy())  # nothing half-loaded


def test_load_state_dict_checks_every_value_before_writing_any():
    src, dst = _model(0), _model(1)
    before = {k: v.numpy().copy() for k, v in dst.state_dict().items()}
    sd = dict(src.state_dict())
    sd["3.bias"] = np.array(["a", "b"])  # the right shape, but no numbers: its cast fails
    with pytest.raises(RuntimeError, match=r"3\.bias: expected a tensor or an array of numbers, got ndarray of "
                                           r"dtype <U1"):
        dst.load_state_dict(sd)
    sd["3.bias"], sd["1.weight"], sd["0.bias"] = 1.0, [[0.5] * 4], sk.zeros(3)  # what torch refuses too
    with pytest.raises(RuntimeError, match=r"size mismatch for 0\.bias.*; 1\.weight: expected a tensor or an array "
                                           r"of numbers, got list; 3\.bias: expected a tensor or an array of "
                                           r"numbers, got float"):  # one error listing every problem
        dst.load_state_dict(sd)
    for k, v in dst.state_dict().items():  # nothing half-loaded
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_load_state_dict_refuses_integer_values_for_floating_point_tensors():
    """int64 weights were cast into the float parameters (a network of whole numbers, silently); a counter
    (an integer buffer) still takes an integer or a float, as torch's copy_ casts it."""
    src, dst = _model(0), _model(1)
    before = {k: v.numpy().copy() for k, v in dst.state_dict().items()}
    sd = dict(src.state_dict())
    sd["0.weight"] = src[0].weight.numpy().astype(np.int64)
    sd["1.bias"] = np.ones(src[1].bias.shape, bool)
    with pytest.raises(RuntimeError, match=r"0\.weight: expected floating-point values for the model's float32 "
                                           r"tensor, got dtype int64; 1\.bias: .* got dtype bool"):
        dst.load_state_dict(sd)
    for k, v in dst.state_dict().items():  # nothing half-loaded
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    counter = dict(src.state_dict(), **{"1.num_batches_tracked": np.float64(5.0)})
    dst.load_state_dict(counter)
    assert dst[1].num_batches_tracked.dtype == np.int64 and int(dst[1].num_batches_tracked.numpy()) == 5


def test_load_state_dict_and_init_bump_versions_so_a_retained_graph_refuses():
    def retained():
        m = _model(0)
        loss = m(sk.randn(2, 3, 3, 3)).sum()  # the Linear's MatMul keeps its weight for the input's gradient
        loss.backward(retain_graph=True)
        return m, loss

    m, loss = retained()
    m.load_state_dict(_model(1).state_dict())
    with pytest.raises(RuntimeError, match="MatMul.backward: an input it saved .* was changed in place"):
        loss.backward()  # would silently use the loaded weights
    for init in (nn.init.zeros_, nn.init.kaiming_uniform_, lambda w: nn.init.normal_(w, 0.0, 0.1)):
        m, loss = retained()
        init(m[3].weight)
        with pytest.raises(RuntimeError, match="MatMul.backward"):
            loss.backward()


def test_running_statistics_updates_bump_the_buffers_versions_without_breaking_training():
    bn = nn.BatchNorm1d(3)
    w = leaf([1.0, 2.0, 3.0])
    y = (w * bn.running_var).sum()  # Mul keeps the buffer's array for w's gradient
    bn(sk.randn(8, 3))  # training: the running statistics change in place
    with pytest.raises(RuntimeError, match="Mul.backward"):
        y.backward()  # would silently use the new running_var
    # two training forwards through one BatchNorm, then one backward through both, as torch allows
    lin, x = nn.Linear(3, 3), sk.randn(8, 3)
    (F.relu(bn(lin(x))).sum() + bn(lin(x * 2.0)).sum()).backward()
    assert lin.weight.grad is not None
    # an evaluation-mode graph keeps a copy of the running statistics: later training leaves it valid
    bn.eval()
    xe = sk.Tensor(np.linspace(-1.0, 1.0, 24).reshape(8, 3), requires_grad=True)
    ye = (bn(xe) * sk.Tensor(np.arange(24.0).reshape(8, 3))).sum()
    ye.backward(retain_graph=True)
    expected = xe.grad.numpy().copy()
    bn.train()
    bn(sk.randn(8, 3))
    xe.grad = None
    ye.backward()
    np.testing.assert_array_equal(xe.grad.numpy(), expected)


def test_a_node_keeps_no_input_tensors_so_an_unneeded_activation_is_freed():
    # conv -> BN -> ReLU: ReLU's backward needs only its output, so BN's output (ReLU's input) is garbage
    # once the caller drops it; a node that kept its inputs held it (about a third of the activations)
    import gc
    import weakref
    conv, bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
    h = bn(conv(sk.randn(2, 3, 8, 8)))
    h_tensor, h_array = weakref.ref(h), weakref.ref(h.data)
    y = F.relu(h)
    del h
    gc.collect()
    assert h_tensor() is None and h_array() is None
    y.sum().backward()  # the graph still differentiates
    assert conv.weight.grad is not None and bn.weight.grad is not None


def test_non_persistent_buffer_stays_out_of_the_state_dict():
    m = nn.Linear(2, 2)
    m.register_buffer("scratch", sk.zeros(3), persistent=False)
    m.register_buffer("kept", sk.zeros(1))
    assert "scratch" not in m.state_dict() and "kept" in m.state_dict()
    assert any(n == "scratch" for n, _ in m.named_buffers())


def test_state_dict_lists_a_tied_module_under_each_name_like_torch():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = self.a
    m = Tied()
    assert list(m.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert len(list(m.parameters())) == 2 and [n for n, _ in m.named_modules()] == ["", "a"]
    m.load_state_dict({k: v.numpy() for k, v in m.state_dict().items()})  # a torch state dict of it loads


# -- forward hooks ----------------------------------------------------------------------------------
def test_forward_hook_semantics():
    lin = nn.Linear(2, 2)
    seen = []
    h1 = lin.register_forward_hook(lambda m, args, out: seen.append((m, args[0].shape, out.shape)))
    h2 = lin.register_forward_hook(lambda m, args, out: out * 0)
    y = lin(sk.ones(3, 2))
    assert seen == [(lin, (3, 2), (3, 2))] and float(np.abs(y.numpy()).sum()) == 0.0
    h2.remove()
    h2.remove()  # idempotent
    assert float(np.abs(lin(sk.ones(3, 2)).numpy()).sum()) > 0
    h1.remove()
    lin(sk.ones(1, 2))
    assert len(seen) == 2


def test_module_to_takes_a_dtype_positionally_as_torch():
    """model.to(torch.float64) casts in torch; model.to(sk.float64) must too (it raised before)."""
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    before = [p.numpy().copy() for p in m.parameters()]
    assert m.to(sk.float64) is m
    assert {t.dtype for t in list(m.parameters()) + list(m.buffers()) if t.dtype.kind == "f"} == {np.dtype(np.float64)}
    assert m[1].num_batches_tracked.dtype == np.int64  # integer buffers are not cast, as in torch
    for p, b in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)
    m.to("cpu", sk.float32)
    assert m[0].weight.dtype == np.float32


def test_patch_whitening_decorrelates_the_patches_with_both_signs():
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((3, 3))
    images = np.einsum("dc,nchw->ndhw", mix, rng.standard_normal((40, 3, 12, 12))) + 5.0  # correlated channels
    images[:, :, :, 1:] += 0.8 * images[:, :, :, :-1]  # and correlated neighbours
    conv = nn.Conv2d(3, 24, 2)
    nn.init.patch_whitening_(conv.weight, images, eps=0.0)
    w = conv.weight.numpy().astype(np.float64)
    np.testing.assert_array_equal(w[12:], -w[:12])
    out = np.einsum("kchw,nchw->nk", w[:12], np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(2, 3))
                    .transpose(0, 2, 3, 1, 4, 5).reshape(-1, 3, 2, 2))
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.eye(12), atol=2e-5)  # unit variance, uncorrelated
    half = nn.Conv2d(3, 8, 2)
    nn.init.patch_whitening_(half.weight, images, eps=0.0)  # the 4 strongest directions
    np.testing.assert_allclose(np.abs(half.weight.numpy()[:4]), np.abs(w[:4]), rtol=1e-4, atol=1e-5)
    for bad, match in ((images[:, :2], r"images must be \(N, 3, H >= 2, W >= 2\)"),
                       (images[:, :, :1], r"images must be \(N, 3, H >= 2, W >= 2\)")):
        with pytest.raises(ValueError, match=match):
            nn.init.patch_whitening_(conv.weight, bad)
    with pytest.raises(ValueError, match="even number of output channels, at most twice the 12"):
        nn.init.patch_whitening_(nn.Conv2d(3, 26, 2).weight, images)


def test_dirac_is_the_identity_convolution_like_torch():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    nn.init.dirac_(conv.weight)
    x = sk.randn(2, 3, 6, 6)
    y = conv(x).numpy()
    np.testing.assert_array_equal(y[:, :3], x.numpy())  # out channel i = in channel i
    assert (y[:, 3:] == 0).all() and conv.weight.numpy().sum() == 3
    grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False)  # weight (4, 2, 3, 3): 2 outputs per group
    nn.init.dirac_(grouped.weight, groups=2)
    w = grouped.weight.numpy()
    assert [tuple(i) for i in np.argwhere(w)] == [(0, 0, 1, 1), (1, 1, 1, 1), (2, 0, 1, 1), (3, 1, 1, 1)]
    with pytest.raises(ValueError, match="only 3-, 4- and 5-D"):
        nn.init.dirac_(Parameter(np.zeros((2, 2), np.float32)))
