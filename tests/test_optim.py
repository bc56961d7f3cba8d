"""skengine.optim: the optimizers (Optimizer, SGD, Adam, AdamW) against PyTorch's numbers.

The reference numbers come from tests/fixtures/optim_refs.npz, written by
tests/fixtures/make_optim_refs.py with PyTorch (run by hand; these tests never
import torch).  The file also holds every case's hyper-parameters (``config``).
Its LR-schedule cases are tested in test_lr_scheduler.py, ModelEMA in test_ema.py.
"""
import io
import json
import math
import os

import numpy as np
import pytest

from skengine.nn import BatchNorm1d, Linear, Module, Parameter
from skengine.optim import SGD, Adam, AdamW, param_groups_no_decay

try:
    from skengine import Tensor
except ImportError:  # the package root may not re-export it
    from skengine.autograd import Tensor

REFS = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "optim_refs.npz"))
CONFIG = json.loads(str(REFS["config"]))
SHAPES = [tuple(s) for s in CONFIG["shapes"]]
SIZES = [int(np.prod(s)) for s in SHAPES]
T = REFS["grads"].shape[0]
TOL = dict(rtol=1e-10, atol=1e-12)


def split(flat):
    """A flat (…, 10) row back into the parameter shapes."""
    out, i = [], 0
    for s, n in zip(SHAPES, SIZES):
        out.append(flat[..., i:i + n].reshape(flat.shape[:-1] + s))
        i += n
    return out


def make_params():
    return [Parameter(a.copy()) for a in split(REFS["init"])]


def set_grads(params, t):
    for p, g, has in zip(params, split(REFS["grads"][t]), REFS["has_grad"][t]):
        p.grad = Tensor(g.copy()) if has else None


def build(case, params):
    kind, opts, groups = CONFIG["opt"][case]
    cls = {"SGD": SGD, "AdamW": AdamW}[kind]
    if groups is None:
        return cls(params, **opts)
    return cls([dict(g, params=[params[i] for i in idx]) for idx, g in groups], **opts)


def flat_params(params):
    return np.concatenate([p.data.ravel() for p in params])


# ----------------------------------------------------------------- vs PyTorch
@pytest.mark.parametrize("case", list(CONFIG["opt"]))
def test_optimizer_matches_torch(case):
    expected = REFS["opt_traj"][list(CONFIG["opt"]).index(case)]
    params = make_params()
    opt = build(case, params)
    data_ids = [id(p.data) for p in params]
    for t in range(T):
        set_grads(params, t)
        opt.step()
        np.testing.assert_allclose(flat_params(params), expected[t], **TOL,
                                   err_msg=f"{case}, step {t}")
    assert [id(p.data) for p in params] == data_ids        # updated in place
    assert all(p.data.dtype == np.float64 for p in params)


# ------------------------------------------------------------------ state dicts
def npz_roundtrip(tree):
    """What a trainer writing the state into an .npz gets back: arrays everywhere."""
    def enc(v):
        buf = io.BytesIO()
        np.save(buf, np.asarray(v), allow_pickle=False)
        buf.seek(0)
        return np.load(buf)
    if isinstance(tree, dict):
        return {k: npz_roundtrip(v) for k, v in tree.items()}
    if isinstance(tree, list) and tree and isinstance(tree[0], dict):
        return [npz_roundtrip(v) for v in tree]
    return enc(tree)


@pytest.mark.parametrize("case", ["sgd_momentum_dampening", "sgd_nesterov", "adamw_amsgrad",
                                  "adamw_groups", "sgd_groups"])
@pytest.mark.parametrize("through_npz", [False, True])
def test_state_dict_resume_equals_uninterrupted(case, through_npz):
    k = 3
    params = make_params()
    opt = build(case, params)
    for t in range(k):
        set_grads(params, t)
        opt.step()
    sd = opt.state_dict()
    saved_params = [p.data.copy() for p in params]
    for t in range(k, T):                       # the uninterrupted run goes on...
        set_grads(params, t)
        opt.step()
    uninterrupted = flat_params(params)

    # ...the saved state must not have moved with it (copies, not views)
    params2 = [Parameter(a) for a in saved_params]
    opt2 = build(case, params2)
    opt2.load_state_dict(npz_roundtrip(sd) if through_npz else sd)
    for t in range(k, T):
        set_grads(params2, t)
        opt2.step()
    np.testing.assert_array_equal(flat_params(params2), uninterrupted)
    np.testing.assert_allclose(uninterrupted, REFS["opt_traj"][list(CONFIG["opt"]).index(case)][-1],
                               **TOL)


def test_state_dict_structure():
    a, b, c = (Parameter(np.ones((2, 2))) for _ in range(3))
    opt = AdamW([{"params": [a, b]}, {"params": [c], "lr": 0.5, "weight_decay": 0.0}],
                lr=0.1, amsgrad=True)
    for p in (a, c):                              # b never gets a gradient
        p.grad = Tensor(np.full((2, 2), 0.5))
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["lr"] == 0.1
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(sd["state"]) == {0, 2}
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"] == 1 and isinstance(sd["state"][0]["step"], int)
    for v in sd["state"][2].values():
        assert isinstance(v, (int, float, np.ndarray))
    assert sd["state"][0]["exp_avg"] is not opt.state[a]["exp_avg"]
    assert np.shares_memory(sd["state"][0]["exp_avg"], opt.state[a]["exp_avg"]) is False

    sgd = SGD([a], lr=0.1)                        # no momentum: no state
    sgd.step()
    assert sgd.state_dict()["state"] == {}


def test_load_state_dict_mismatch_raises():
    ps = [Parameter(np.zeros(3)) for _ in range(3)]
    sd = SGD([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="number of parameter groups"):
        SGD(ps, lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="size"):
        SGD([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.1).load_state_dict(sd)


def test_load_state_dict_restores_group_options_and_dtype():
    p = Parameter(np.ones(4, dtype=np.float32))
    p.grad = Tensor(np.ones(4, dtype=np.float32))
    opt = AdamW([p], lr=0.1)
    opt.step()
    sd = npz_roundtrip(opt.state_dict())
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"].astype(np.float64)
    q = Parameter(np.ones(4, dtype=np.float32))
    opt2 = AdamW([q], lr=0.7, betas=(0.5, 0.6))
    opt2.load_state_dict(sd)
    g = opt2.param_groups[0]
    assert g["lr"] == 0.1 and g["betas"] == (0.9, 0.999) and g["params"][0] is q
    assert opt2.state[q]["exp_avg"].dtype == np.float32          # cast to the param's dtype
    assert opt2.state[q]["step"] == 1


# -------------------------------------------------------------- groups and misc
def test_param_groups_use_their_own_lr():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
    opt = SGD([{"params": [a], "lr": 1.0}, {"params": [b]}], lr=0.25)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.25]
    for p in (a, b):
        p.grad = Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(a.data, [-1.0, -1.0])
    np.testing.assert_array_equal(b.data, [-0.25, -0.25])
    opt.param_groups[0]["lr"] = 0.0              # what a scheduler does
    opt.step()
    np.testing.assert_array_equal(a.data, [-1.0, -1.0])


def test_add_param_group():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
    opt = AdamW([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [a]})


def test_zero_grad():
    p = Parameter(np.zeros(3))
    opt = SGD([p], lr=0.1)
    p.grad = Tensor(np.ones(3))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.data, 0)
    opt.zero_grad()
    assert p.grad is None
    opt.step()                                    # no grad: nothing happens
    np.testing.assert_array_equal(p.data, 0)


def test_float32_stays_float32():
    p = Parameter(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
    for opt in (AdamW([p], lr=0.1, amsgrad=True), SGD([p], lr=0.1, momentum=0.9, nesterov=True,
                                                       weight_decay=1e-3)):
        p.grad = Tensor(np.full((2, 3), 0.3, dtype=np.float32))
        opt.step()
        opt.step()
        assert p.data.dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt.state[p].values() if hasattr(v, "dtype"))


def test_grad_not_modified():
    p = Parameter(np.ones(3))
    g = np.array([0.1, 0.2, 0.3])
    p.grad = Tensor(g.copy())
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)
    opt.step()
    opt.step()
    AdamW([p]).step()
    np.testing.assert_array_equal(p.grad.data, g)


@pytest.mark.parametrize("make, match", [
    (lambda p: SGD(p, lr=-0.1), "learning rate"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda p: SGD(p, lr=0.1, dampening=-1), "dampening"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "Nesterov"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (lambda p: SGD([{"params": p, "lr": -1}], lr=0.1), "learning rate"),
    (lambda p: AdamW(p, lr=-1e-3), "learning rate"),
    (lambda p: AdamW(p, eps=-1e-8), "epsilon"),
    (lambda p: AdamW(p, betas=(1.0, 0.999)), "beta parameter at index 0"),
    (lambda p: AdamW(p, betas=(0.9, -0.1)), "beta parameter at index 1"),
    (lambda p: AdamW(p, weight_decay=-0.1), "weight_decay"),
    (lambda p: AdamW([{"params": p, "betas": (0.9, 1.5)}]), "beta parameter"),
    (lambda p: Adam(p, lr=-1e-3), "learning rate"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), "beta parameter at index 1"),
    (lambda p: Adam(p, weight_decay=-0.1), "weight_decay"),
    (lambda p: AdamW([]), "empty parameter list"),
    (lambda p: AdamW(p + p), "same parameter"),
    (lambda p: AdamW([{"params": p}, {"params": p}]), "more than one"),
])
def test_validation_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.zeros(2))])


# ------------------------------------------------- Adam, maximize, SGD's default lr
# stored references: torch 2.14 (/tmp/optim_work/torch_opt_refs.py), the parameters after all T
# steps on the fixture's init and gradients (one group of both parameters)
EXTRA_OPT_REFS = {
    "sgd_maximize": (SGD, {"lr": 0.1, "momentum": 0.8, "weight_decay": 0.01, "maximize": True}, [
        -0.9647744723382303, -0.6468822884402559, 0.8078504146555441, -1.7356148240892053,
        -0.7138432498879872, -2.4437704362581405, -2.0463197126732866, -1.4627327050962788,
        -1.9584298482772093, 0.29078651982181253]),
    "sgd_default_lr": (SGD, {"momentum": 0.9, "nesterov": True}, [
        -0.19977228156605606, -0.5158918181052216, 0.14048341742138626, -1.7909106910664752,
        0.2992375070424368, -0.29135187456410316, -0.7065369827038921, 0.11980713733098704,
        -1.9500493998118789, -0.16502764647990573]),
    "adam_default": (Adam, {}, [
        -0.20779957392440337, -0.5195838653719315, 0.14637203255154127, -1.7887484752226128,
        0.28772387642102837, -0.316366266934907, -0.7225211314965387, 0.10011145976457847,
        -1.9492504095394234, -0.162397390423257]),
    "adam_l2": (Adam, {"lr": 0.02, "betas": (0.8, 0.99), "weight_decay": 0.1}, [
        -0.14918218740184624, -0.5404636091985839, 0.09225999188315986, -1.7425243787195202,
        0.3451673025307563, -0.2183045224075144, -0.6560331750991792, 0.12957134343534152,
        -1.9046142837330433, -0.22953261850529244]),
    "adam_l2_amsgrad_maximize": (Adam, {"lr": 0.03, "betas": (0.4, 0.9), "eps": 1e-6,
                                        "weight_decay": 0.05, "amsgrad": True,
                                        "maximize": True}, [
        -0.267355235702468, -0.5055160098855513, 0.18719275498742005, -1.7523171037769072,
        0.19447575075641635, -0.4467359817379662, -0.8092461691895064, 0.06169503184983316,
        -1.990277132345349, -0.0719665869005392]),
    "adam_decoupled": (Adam, {"lr": 0.01, "weight_decay": 0.05, "decoupled_weight_decay": True}, [
        -0.17663027416348565, -0.5343651241093218, 0.11690979924110055, -1.772195776389255,
        0.31611915635313587, -0.2673674550729802, -0.6886399861739738, 0.11398065542084382,
        -1.9234443034419757, -0.19772445782699347]),
    "adamw_maximize": (AdamW, {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True,
                               "maximize": True}, [
        -0.2754450720340065, -0.4740146596371098, 0.21139242663850977, -1.787652214646062,
        0.21550630406638105, -0.4230768176704712, -0.7875075540622198, 0.06590815012047306,
        -1.972221932064216, -0.0773049761730761]),
}


@pytest.mark.parametrize("case", list(EXTRA_OPT_REFS))
def test_adam_and_maximize_match_torch(case):
    cls, opts, expected = EXTRA_OPT_REFS[case]
    params = make_params()
    opt = cls(params, **opts)
    for t in range(T):
        set_grads(params, t)
        opt.step()
    np.testing.assert_allclose(flat_params(params), expected, **TOL)


def test_maximize_is_descent_on_the_negated_gradient():
    for cls, opts in [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                      (Adam, dict(lr=0.1, weight_decay=0.1)), (AdamW, dict(lr=0.1))]:
        a, b = Parameter(np.array([1.0, -2.0])), Parameter(np.array([1.0, -2.0]))
        opt_a, opt_b = cls([a], maximize=True, **opts), cls([b], **opts)
        for g in ([0.3, -0.2], [0.5, 0.1]):
            a.grad, b.grad = Tensor(np.array(g)), Tensor(-np.array(g))
            opt_a.step()
            opt_b.step()
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.grad.data, [0.5, 0.1])        # p.grad left alone


def test_sgd_default_lr_and_adam_defaults():
    p = Parameter(np.zeros(2))
    sgd = SGD([p])
    assert sgd.defaults["lr"] == 1e-3 and sgd.param_groups[0]["maximize"] is False
    p.grad = Tensor(np.ones(2))
    sgd.step()
    np.testing.assert_array_equal(p.data, [-1e-3, -1e-3])
    adam = Adam([p])
    g = adam.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"], g["amsgrad"], g["maximize"],
            g["decoupled_weight_decay"]) == (1e-3, (0.9, 0.999), 1e-8, 0.0, False, False, False)
    assert issubclass(AdamW, Adam) and AdamW([p]).param_groups[0]["decoupled_weight_decay"] is True


def test_load_state_dict_fills_options_missing_from_an_old_state():
    p = Parameter(np.ones(2))
    old = {"state": {}, "param_groups": [{"lr": 0.5, "momentum": 0.9, "dampening": 0.0,
                                          "weight_decay": 0.0, "nesterov": False, "params": [0]}]}
    opt = SGD([p], lr=0.1, maximize=True)
    opt.load_state_dict(old)
    assert opt.param_groups[0]["maximize"] is True and opt.param_groups[0]["lr"] == 0.5
    p.grad = Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(p.data, [1.5, 1.5])
    # AdamW stays decoupled even when given an Adam state (torch's AdamW.__setstate__)
    sd = Adam([p]).state_dict()
    adamw = AdamW([p])
    adamw.load_state_dict(sd)
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True


def test_single_parameter_is_a_type_error():
    with pytest.raises(TypeError):
        SGD(Parameter(np.zeros(2)), lr=0.1)


# ------------------------------------------------------------- decay grouping
class _Net(Module):
    def __init__(self):
        super().__init__()
        self.fc1 = Linear(3, 4)
        self.bn = BatchNorm1d(4)
        self.fc2 = Linear(4, 2, bias=False)


def test_param_groups_no_decay():
    net = _Net()
    groups = param_groups_no_decay(net, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    decay_ids = {id(p) for p in groups[0]["params"]}
    no_decay_ids = {id(p) for p in groups[1]["params"]}
    assert decay_ids == {id(net.fc1.weight), id(net.fc2.weight)}
    assert no_decay_ids == {id(net.fc1.bias), id(net.bn.weight), id(net.bn.bias)}
    opt = AdamW(groups, lr=1e-3, weight_decay=0.5)       # group values win over the default
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]

    named = [("a", Parameter(np.ones((2, 2)))), ("pos_embed", Parameter(np.ones((2, 2))))]
    groups = param_groups_no_decay(named, 0.1, no_decay_names=("pos_embed",))
    assert [len(g["params"]) for g in groups] == [1, 1]
    only_bias = param_groups_no_decay([("b", Parameter(np.ones(2)))], 0.1)
    assert len(only_bias) == 1 and only_bias[0]["weight_decay"] == 0.0


def test_fixture_is_small_and_has_all_cases():
    assert os.path.getsize(os.path.join(os.path.dirname(__file__), "fixtures",
                                        "optim_refs.npz")) < 20_000
    assert REFS["opt_traj"].shape[0] == len(CONFIG["opt"])
    assert not math.isnan(REFS["sched_lr"][0, 0, 0])


# ------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("case", ["sgd_nesterov", "sgd_groups", "adamw_amsgrad", "adamw_groups"])
def test_optimizer_on_gpu_matches_torch_and_resumes(case):
    from skengine import backend
    if not backend.cuda_available():
        pytest.skip("needs CuPy and an NVIDIA GPU")
    cp = backend.cupy()
    expected = REFS["opt_traj"][list(CONFIG["opt"]).index(case)]

    def gpu_params(arrays):
        return [Parameter(cp.asarray(a)) for a in arrays]

    def gpu_grads(params, t):
        for p, g, has in zip(params, split(REFS["grads"][t]), REFS["has_grad"][t]):
            p.grad = Tensor(cp.asarray(g)) if has else None

    params = gpu_params(split(REFS["init"]))
    opt = build(case, params)
    for t in range(3):
        gpu_grads(params, t)
        opt.step()
    sd = opt.state_dict()
    assert all(isinstance(v, (int, float, np.ndarray)) for s in sd["state"].values()
               for v in s.values())
    params2 = gpu_params([cp.asnumpy(p.data) for p in params])
    opt2 = build(case, params2)
    opt2.load_state_dict(sd)
    assert all(isinstance(v, cp.ndarray) for s in opt2.state.values() for v in s.values()
               if not isinstance(v, int))
    for t in range(3, T):
        gpu_grads(params2, t)
        opt2.step()
    flat = np.concatenate([cp.asnumpy(p.data).ravel() for p in params2])
    np.testing.assert_allclose(flat, expected[-1], **TOL)


# ------------------------------------------------ steps bump the weights' versions
def _retained_loss():
    """A two-layer net and its loss, backpropagated once with the graph kept: MatMul kept fc2's weight."""
    net = _Net()
    x = Tensor(np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3))
    loss = net.fc2(net.fc1(x).tanh()).sum()
    loss.backward(retain_graph=True)
    return net, loss


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1), lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: Adam(ps, lr=0.1), lambda ps: AdamW(ps, lr=0.1)],
                         ids=["sgd", "sgd-momentum", "adam", "adamw"])
def test_a_retained_graph_refuses_a_second_backward_after_a_step_like_torch(make):
    net, loss = _retained_loss()
    loss.backward(retain_graph=True)  # the weights are unchanged: a second backward works
    make(net.parameters()).step()  # writes the weights in place
    with pytest.raises(RuntimeError, match="MatMul.backward: an input it saved .* was changed in place"):
        loss.backward()  # would silently use the new weights


def test_ema_writes_into_the_model_bump_its_versions():
    from skengine.optim import ModelEMA
    net, loss = _retained_loss()
    ema = ModelEMA(net)
    with ema.swap(net):
        pass
    with pytest.raises(RuntimeError, match="changed in place"):
        loss.backward()
    net, loss = _retained_loss()
    ModelEMA(net).copy_to(net)
    with pytest.raises(RuntimeError, match="changed in place"):
        loss.backward()
