"""skengine.optim: optimizers and LR schedules against PyTorch's numbers.

The reference numbers come from tests/fixtures/optim_refs.npz, written by
tests/fixtures/make_optim_refs.py with PyTorch (run by hand; these tests never
import torch).  The file also holds every case's hyper-parameters (``config``).
"""
import io
import json
import math
import os

import numpy as np
import pytest

from skengine.optim import (SGD, Adam, AdamW, ConstantLR, CosineAnnealingLR,
                            CosineAnnealingWarmRestarts, ExponentialLR, LambdaLR, LinearLR,
                            ModelEMA, MultiStepLR, OneCycleLR, Optimizer, ReduceLROnPlateau,
                            SequentialLR, StepLR, WarmupCosineLR, param_groups_no_decay)
from skengine.nn import BatchNorm1d, Linear, Module, Parameter

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


def make_sched(case, opt):
    kind, opts, _ = CONFIG["sched"][case]
    if kind == "OneCycleLR":      # the fixture ran torch with cycle_momentum=False unless given
        opts = {"cycle_momentum": False, **opts}
    return {"WarmupCosineLR": WarmupCosineLR, "OneCycleLR": OneCycleLR, "StepLR": StepLR,
            "MultiStepLR": MultiStepLR}[kind](opt, **opts)


def sched_optimizer(case):
    _, opts, _ = CONFIG["sched"][case]
    params = [Parameter(np.zeros(1)) for _ in REFS["sched_base_lrs"]]
    groups = [{"params": [p], "lr": float(lr)} for p, lr in zip(params, REFS["sched_base_lrs"])]
    if "max_momentum" in opts:                    # the case that cycles AdamW's beta1
        return AdamW(groups)
    return SGD(groups, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("case", list(CONFIG["sched"]))
def test_scheduler_matches_torch(case):
    c = list(CONFIG["sched"]).index(case)
    n = CONFIG["sched"][case][2]
    lr_ref, mom_ref = REFS["sched_lr"][c, :n], REFS["sched_momentum"][c, :n]
    opt = sched_optimizer(case)
    sched = make_sched(case, opt)
    cycles = CONFIG["sched"][case][1].get("cycle_momentum", False)
    for s in range(n):
        if s:
            opt.step()
            sched.step()
        lrs = [g["lr"] for g in opt.param_groups]
        np.testing.assert_allclose(lrs, lr_ref[s], **TOL, err_msg=f"{case}, iteration {s}")
        assert sched.get_last_lr() == lrs
        if cycles:
            moms = [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]
            np.testing.assert_allclose(moms, mom_ref[s], **TOL)


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


# ------------------------------------------------------------------ schedulers
def _sgd(lrs=(0.1, 0.02)):
    return SGD([{"params": [Parameter(np.zeros(1))], "lr": lr} for lr in lrs], lr=0.1)


@pytest.mark.parametrize("make", [
    lambda o: WarmupCosineLR(o, warmup_steps=4, total_steps=15, min_lr=[1e-3, 1e-4]),
    lambda o: OneCycleLR(o, max_lr=[0.2, 0.1], total_steps=15, three_phase=True),
    lambda o: OneCycleLR(o, max_lr=0.2, total_steps=15, cycle_momentum=True),
    lambda o: StepLR(o, step_size=4, gamma=0.5),
    lambda o: MultiStepLR(o, milestones=[3, 8], gamma=0.1),
    lambda o: OneCycleLR(o, max_lr=0.2, total_steps=15, anneal_strategy="linear"),
    lambda o: CosineAnnealingLR(o, T_max=5, eta_min=1e-3),
    lambda o: LinearLR(o, start_factor=0.1, total_iters=9),
    lambda o: ExponentialLR(o, gamma=0.8),
    lambda o: ConstantLR(o, factor=0.5, total_iters=8),
    lambda o: LambdaLR(o, [_Scaled(0.5), _Scaled(2.0)]),
    lambda o: CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=1e-3),
    lambda o: SequentialLR(o, [LinearLR(o, start_factor=0.1, total_iters=3),
                               ExponentialLR(o, gamma=0.9), CosineAnnealingLR(o, T_max=4)],
                           milestones=[4, 8]),
])
@pytest.mark.parametrize("through_npz", [False, True])
def test_scheduler_resume(make, through_npz):
    opt = _sgd()
    sched = make(opt)
    full = []
    for s in range(15):
        full.append(sched.get_last_lr())
        if s == 6:
            sd_opt, sd_sched = opt.state_dict(), sched.state_dict()
        opt.step()
        if s < 14:
            sched.step()
    opt2 = _sgd(lrs=(5.0, 5.0))          # a fresh run, built with other lrs: state must win
    sched2 = make(opt2)
    if through_npz:
        sd_opt, sd_sched = npz_roundtrip(sd_opt), npz_roundtrip(sd_sched)
    opt2.load_state_dict(sd_opt)
    sched2.load_state_dict(sd_sched)
    resumed = [sched2.get_last_lr()]
    assert [g["lr"] for g in opt2.param_groups] == resumed[0]
    for s in range(7, 15):
        sched2.step()
        resumed.append(sched2.get_last_lr())
    np.testing.assert_allclose(resumed[:-1], full[6:14], rtol=1e-15)
    assert [g["momentum"] for g in opt2.param_groups] == [g["momentum"] for g in opt.param_groups]


def test_scheduler_state_dict_is_plain_python():
    sched = OneCycleLR(_sgd(), max_lr=0.1, total_steps=10)
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 0

    def plain(v):
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return isinstance(v, (int, float, str, bool))
    assert all(plain(v) for v in sd.values()), sd


def test_warmup_cosine_shape():
    opt = _sgd(lrs=(1.0,))
    sched = WarmupCosineLR(opt, warmup_steps=4, total_steps=12, min_lr=0.1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(14):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs[:4], [0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == 1.0
    assert all(a > b for a, b in zip(lrs[4:12], lrs[5:12]))
    np.testing.assert_allclose(lrs[8], 0.1 + 0.9 * 0.5)       # halfway through the cosine
    assert lrs[12:] == [0.1] * 3
    assert opt.param_groups[0]["initial_lr"] == 1.0


def test_onecycle_past_total_steps_raises():
    sched = OneCycleLR(_sgd(), max_lr=0.1, total_steps=3)
    for _ in range(3):
        sched.step()                         # last_epoch == total_steps is still allowed
    with pytest.raises(ValueError, match="Tried to step"):
        sched.step()


# ------------------------------------------------- OneCycleLR momentum (default on)
def onecycle_ref(n, max_lr, pct=0.3, anneal="cos", three_phase=False, div=25.0, final_div=1e4,
                 base_m=0.85, max_m=0.95):
    """PyTorch's OneCycleLR written out as knots (iteration, lr, momentum) joined by the
    anneal function: (lr, momentum) at iterations 0..n (n == total_steps extrapolates)."""
    def f(a, b, t):
        return b + (a - b) / 2 * (1 + math.cos(math.pi * t)) if anneal == "cos" else a + (b - a) * t
    lo = max_lr / div
    knots = [(0, lo, max_m), (pct * n - 1, max_lr, base_m)]
    if three_phase:
        knots.append((2 * pct * n - 2, lo, max_m))
    knots.append((n - 1, lo / final_div, max_m))
    out = []
    for s in range(n + 1):
        k = next((i for i in range(1, len(knots)) if s <= knots[i][0]), len(knots) - 1)
        (s0, lr0, m0), (s1, lr1, m1) = knots[k - 1], knots[k]
        t = (s - s0) / (s1 - s0)
        out.append((f(lr0, lr1, t), f(m0, m1, t)))
    return out


@pytest.mark.parametrize("opt_kind", ["SGD", "AdamW", "Adam"])
@pytest.mark.parametrize("kw", [dict(n=20), dict(n=23, anneal="linear", pct=0.35),
                                dict(n=17, three_phase=True, pct=0.25),
                                dict(n=19, three_phase=True, anneal="linear", base_m=0.8,
                                     max_m=0.9)])
def test_onecycle_cycles_momentum_by_default(opt_kind, kw):
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=0.1, momentum=0.5) if opt_kind == "SGD" else {"AdamW": AdamW, "Adam": Adam}[
        opt_kind]([p], betas=(0.5, 0.99))
    kw = dict(kw)
    n = kw.pop("n")
    args = {"pct_start": kw.get("pct", 0.3), "anneal_strategy": kw.get("anneal", "cos"),
            "three_phase": kw.get("three_phase", False)}
    if "base_m" in kw:
        args.update(base_momentum=kw["base_m"], max_momentum=kw["max_m"])
    sched = OneCycleLR(opt, max_lr=0.4, total_steps=n, **args)
    g = opt.param_groups[0]
    assert g["max_momentum"] == kw.get("max_m", 0.95)
    assert g["base_momentum"] == kw.get("base_m", 0.85)
    got = []
    for s in range(n + 1):
        if s:
            sched.step()
        got.append((g["lr"], g["momentum"] if opt_kind == "SGD" else g["betas"][0]))
        if opt_kind != "SGD":
            assert g["betas"][1] == 0.99
    np.testing.assert_allclose(got, onecycle_ref(n, 0.4, **kw), rtol=1e-12, atol=1e-15)


def test_onecycle_momentum_on_sgd_without_momentum():
    # torch sets the momentum of an SGD built with momentum=0 too: it then uses momentum
    p = Parameter(np.zeros(2))
    opt = SGD([p], lr=0.1)
    OneCycleLR(opt, max_lr=1.0, total_steps=10)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95, abs=1e-15)
    p.grad = Tensor(np.ones(2))
    opt.step()
    assert "momentum_buffer" in opt.state[p]
    # resuming needs the momentum range in the groups, as torch (KeyError)
    fresh = SGD([{"params": [Parameter(np.zeros(1))], "initial_lr": 0.1, "max_lr": 0.1,
                  "min_lr": 1e-6}], lr=0.1)
    OneCycleLR(fresh, max_lr=0.1, total_steps=10, cycle_momentum=False, last_epoch=3)
    with pytest.raises(KeyError, match="max_momentum"):
        OneCycleLR(fresh, max_lr=0.1, total_steps=10, last_epoch=3)


def test_trainer_onecycle_keeps_momentum_fixed():
    from skengine.train import build_schedule
    opt = SGD([Parameter(np.zeros(1))], lr=0.2, momentum=0.9, nesterov=True)
    sched = build_schedule({"epochs": 2, "schedule": "onecycle", "lr": 0.2}, opt, 4)
    for _ in range(8):
        assert opt.param_groups[0]["momentum"] == 0.9
        sched.step()


# --------------------------------------------- more schedulers: closed forms
def _run(sched, opt, n, hand=None):
    """lr of every group at iterations 0..n; ``hand``: (iteration, lr) set by hand before it."""
    out = [[g["lr"] for g in opt.param_groups]]
    for s in range(1, n + 1):
        if hand and s == hand[0]:
            for g in opt.param_groups:
                g["lr"] = hand[1]
        sched.step()
        out.append([g["lr"] for g in opt.param_groups])
        assert sched.get_last_lr() == out[-1]
    return np.array(out)


def _warm_restarts_ref(s, t0, mult):
    """(T_cur, T_i) at iteration s: periods t0, t0*mult, ... laid end to end."""
    t_i = t0
    while s >= t_i:
        s, t_i = s - t_i, t_i * mult
    return s, t_i


BASE = np.array([0.1, 0.02])
CLOSED_FORMS = {    # scheduler, closed-form lr as a function of (iteration s, group base lr b)
    "cosine": (lambda o: CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
               lambda s, b: 1e-3 + (b - 1e-3) * (1 + math.cos(math.pi * s / 7)) / 2),
    "cosine_default": (lambda o: CosineAnnealingLR(o, T_max=10),
                       lambda s, b: b * (1 + math.cos(math.pi * s / 10)) / 2),
    "lambda": (lambda o: LambdaLR(o, lambda e: 0.9 ** e + 0.01 * e),
               lambda s, b: b * (0.9 ** s + 0.01 * s)),
    "lambda_list": (lambda o: LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: min(1.0, (e + 1) / 4)]),
                    lambda s, b: b * (1 / (s + 1) if b == 0.1 else min(1.0, (s + 1) / 4))),
    "linear_default": (lambda o: LinearLR(o),
                       lambda s, b: b * (1 / 3 + (2 / 3) * min(s, 5) / 5)),
    "linear_down": (lambda o: LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=7),
                    lambda s, b: b * (1 - 0.9 * min(s, 7) / 7)),
    "exponential": (lambda o: ExponentialLR(o, gamma=0.93), lambda s, b: b * 0.93 ** s),
    "constant_default": (lambda o: ConstantLR(o), lambda s, b: b / 3 if s < 5 else b),
    "constant": (lambda o: ConstantLR(o, factor=0.7, total_iters=3),
                 lambda s, b: b * 0.7 if s < 3 else b),
    "warm_restarts": (lambda o: CosineAnnealingWarmRestarts(o, T_0=4),
                      lambda s, b: b * (1 + math.cos(math.pi * (s % 4) / 4)) / 2),
    "warm_restarts_mult": (lambda o: CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-3),
                           lambda s, b: 1e-3 + (b - 1e-3) * (1 + math.cos(
                               math.pi * (lambda c, i: c / i)(*_warm_restarts_ref(s, 3, 2)))) / 2),
    # warm-up 0.2 -> 1 over iterations 0..3, x0.5 per iteration from 4, cosine over 4 from 6
    "sequential": (lambda o: SequentialLR(o, [LinearLR(o, start_factor=0.2, total_iters=3),
                                              ExponentialLR(o, gamma=0.5),
                                              CosineAnnealingLR(o, T_max=4)], milestones=[4, 6]),
                   lambda s, b: (b * (0.2 + 0.8 * min(s, 3) / 3) if s < 4 else
                                 b * 0.5 ** (s - 4) if s < 6 else
                                 b * (1 + math.cos(math.pi * (s - 6) / 4)) / 2)),
}


@pytest.mark.parametrize("case", list(CLOSED_FORMS))
def test_scheduler_closed_forms(case):
    make, formula = CLOSED_FORMS[case]
    opt = _sgd()
    got = _run(make(opt), opt, 30)
    want = [[formula(s, b) for b in BASE] for s in range(31)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-16)


def test_sequential_matches_torch():
    # stored reference: torch 2.14, /tmp/optim_work/torch_sched_refs.py ("SEQ"), one group lr=0.1
    opt = _sgd(lrs=(0.1,))
    got = _run(CLOSED_FORMS["sequential"][0](opt), opt, 12)[:, 0]
    torch_ref = [0.020000000000000004, 0.04666666666666667, 0.07333333333333333, 0.1, 0.1, 0.05,
                 0.1, 0.08535533905932738, 0.05, 0.014644660940672627, 0.0, 0.014644660940672622,
                 0.05000000000000001]
    np.testing.assert_allclose(got, torch_ref, rtol=1e-15, atol=1e-18)


def test_warm_restarts_fractional_epochs():
    # stored reference: torch 2.14, /tmp/optim_work/torch_sched_refs.py ("FRAC")
    opt = _sgd(lrs=(0.1,))
    sched = CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2, eta_min=0.001)
    got = [opt.param_groups[0]["lr"]]
    for e in [0.5, 1.25, 2.0, 2.75, 3.5, 6.2, 7.0, 1.0]:
        sched.step(e)
        got.append(opt.param_groups[0]["lr"])
    torch_ref = [0.1, 0.0855017856687341, 0.03155717009792806, 0.1, 0.091657745808976,
                 0.06944282990207196, 0.09984740801978985, 0.0962320368593087, 0.0505]
    np.testing.assert_allclose(got, torch_ref, rtol=1e-15)
    assert sched.last_epoch == 1 and (sched.T_cur, sched.T_i) == (1.0, 2)
    with pytest.raises(ValueError, match="non-negative epoch"):
        sched.step(-1)


# stored references: torch 2.14, /tmp/optim_work/torch_sched_refs.py (HAND_SET_REFS): one group,
# lr 0.1, set to 1.0 by hand before step 4; chainable schedules carry on from the hand-set lr
HAND_SET_REFS = {
    "StepLR(o, step_size=3)": [
        0.1, 0.1, 0.1, 0.010000000000000002, 1.0, 1.0, 0.1, 0.1, 0.1, 0.010000000000000002,
        0.010000000000000002],
    "MultiStepLR(o, milestones=[2, 5, 5, 8], gamma=0.5)": [
        0.1, 0.1, 0.05, 0.05, 1.0, 0.25, 0.25, 0.25, 0.125, 0.125, 0.125],
    "CosineAnnealingLR(o, T_max=6, eta_min=0.01)": [
        0.1, 0.09397114317029975, 0.07750000000000001, 0.055000000000000014, 0.5050000000000002,
        0.1426348502534057, 0.01, 0.01602885682970026, 0.03250000000000001, 0.05500000000000004,
        0.07750000000000007],
    "ExponentialLR(o, gamma=0.8)": [
        0.1, 0.08000000000000002, 0.06400000000000002, 0.051200000000000016, 0.8,
        0.6400000000000001, 0.5120000000000001, 0.40960000000000013, 0.32768000000000014,
        0.2621440000000001, 0.2097152000000001],
    "LinearLR(o, start_factor=0.25, total_iters=6)": [
        0.025, 0.037500000000000006, 0.05, 0.0625, 1.2, 1.4000000000000001, 1.6, 1.6, 1.6, 1.6,
        1.6],
    "ConstantLR(o, factor=0.5, total_iters=6)": [
        0.05, 0.05, 0.05, 0.05, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0],
}


@pytest.mark.parametrize("case", list(HAND_SET_REFS))
def test_chainable_schedulers_follow_a_hand_set_lr(case):
    opt = _sgd(lrs=(0.1,))
    sched = eval(case, globals(), {"o": opt})
    got = _run(sched, opt, 10, hand=(4, 1.0))[:, 0]
    np.testing.assert_allclose(got, HAND_SET_REFS[case], rtol=1e-15)


def test_steplr_resume_with_last_epoch():
    # the audit's case (torch 2.14: 0.01): lr 0.1 resumed at last_epoch=5 -> step 6 decays once
    opt = _sgd(lrs=(0.1,))
    opt.param_groups[0]["initial_lr"] = 0.1
    sched = StepLR(opt, step_size=3, last_epoch=5)
    assert sched.last_epoch == 6
    assert sched.get_last_lr() == [pytest.approx(0.01, rel=1e-15)]
    for make in (lambda o: StepLR(o, step_size=3, last_epoch=5),
                 lambda o: MultiStepLR(o, [2], last_epoch=0),
                 lambda o: CosineAnnealingLR(o, T_max=3, last_epoch=1)):
        with pytest.raises(KeyError, match="initial_lr"):
            make(_sgd())


def test_reduce_lr_on_plateau():
    # hand-derived (and the same as torch 2.14, /tmp/optim_work/torch_sched_refs.py "plateau"):
    # patience 1 -> the 2nd bad value in a row reduces (x0.5); cooldown 1 ignores the next one;
    # the lr stops at min_lr=0.02
    opt = _sgd(lrs=(0.1,))
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=0.02)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.9, 0.91, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    want = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02]
    got = []
    for m in metrics:
        sched.step(Tensor(np.array(m)) if m == 0.5 else m)     # a 0-d tensor works too
        got.append(opt.param_groups[0]["lr"])
        assert sched.get_last_lr() == [got[-1]]
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert sched.last_epoch == len(metrics) and sched.best == 0.5

    # mode max, absolute threshold 0.1, patience 0: every value not above best + 0.1 reduces
    opt = _sgd(lrs=(0.1, 0.02))
    sched = ReduceLROnPlateau(opt, mode="max", threshold_mode="abs", threshold=0.1, patience=0,
                              min_lr=[0.0, 0.01])
    got = []
    for m in [1.0, 1.05, 1.2, 1.25, 1.31, 1.0]:
        sched.step(m)
        got.append([g["lr"] for g in opt.param_groups])
    np.testing.assert_allclose(got, [[0.1, 0.02], [0.01, 0.01], [0.01, 0.01], [1e-3, 0.01],
                                     [1e-3, 0.01], [1e-4, 0.01]], rtol=1e-15)


def test_reduce_lr_on_plateau_resume():
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.85, 0.9, 0.9, 0.9, 0.9]
    opt = _sgd()
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1)
    full = []
    for k, m in enumerate(metrics):
        if k == 5:
            sd_opt, sd_sched = opt.state_dict(), npz_roundtrip(sched.state_dict())
        sched.step(m)
        full.append(sched.get_last_lr())
    opt2 = _sgd(lrs=(5.0, 5.0))
    sched2 = ReduceLROnPlateau(opt2, mode="max", factor=0.9, patience=7)
    opt2.load_state_dict(sd_opt)
    sched2.load_state_dict(sd_sched)
    assert (sched2.mode, sched2.mode_worse, sched2.patience) == ("min", math.inf, 1)
    resumed = []
    for m in metrics[5:]:
        sched2.step(m)
        resumed.append(sched2.get_last_lr())
    assert resumed == full[5:]


class _Scaled:
    """An lr_lambda with state: LambdaLR saves its ``__dict__`` (a plain function: None)."""

    def __init__(self, scale):
        self.scale = scale

    def __call__(self, epoch):
        return self.scale * 0.9 ** epoch


def test_lambda_lr_state_dict():
    opt = _sgd()
    sched = LambdaLR(opt, [_Scaled(0.5), lambda e: 1.0])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"scale": 0.5}, None] and "optimizer" not in sd
    sched.lr_lambdas[0].scale = 3.0
    sched.load_state_dict(sd)
    assert sched.lr_lambdas[0].scale == 0.5


def test_sequential_state_dict_holds_the_schedulers():
    opt = _sgd()
    sched = CLOSED_FORMS["sequential"][0](opt)
    sd = sched.state_dict()
    assert [s["last_epoch"] for s in sd["_schedulers"]] == [0, -1, -1]
    assert sd["_milestones"] == [4, 6] and "optimizer" not in sd


@pytest.mark.parametrize("make, match", [
    (lambda o: WarmupCosineLR(o, warmup_steps=5, total_steps=0), "total_steps"),
    (lambda o: WarmupCosineLR(o, warmup_steps=-1, total_steps=10), "warmup_steps"),
    (lambda o: WarmupCosineLR(o, warmup_steps=11, total_steps=10), "warmup_steps"),
    (lambda o: WarmupCosineLR(o, warmup_steps=1, total_steps=10, min_lr=[0.1]), "one per"),
    (lambda o: OneCycleLR(o, max_lr=0.1), "total_steps"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), "pct_start"),
    (lambda o: OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), "anneal"),
    (lambda o: StepLR(o, step_size=0), "step_size"),
    (lambda o: MultiStepLR(o, milestones=[-1]), "milestones"),
    (lambda o: StepLR(o, step_size=2, gamma=0.0), "gamma"),
    (lambda o: OneCycleLR(Optimizer([Parameter(np.zeros(1))], {"lr": 0.1}), max_lr=0.1,
                          total_steps=10), "momentum or beta1"),
    (lambda o: CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: LambdaLR(o, [lambda e: 1.0]), "lr_lambdas"),
    (lambda o: LinearLR(o, start_factor=0.0), "start_factor"),
    (lambda o: LinearLR(o, end_factor=1.5), "end_factor"),
    (lambda o: LinearLR(o, total_iters=-1), "total_iters"),
    (lambda o: ExponentialLR(o, gamma=-0.5), "gamma"),
    (lambda o: ConstantLR(o, factor=1.5), "factor"),
    (lambda o: ConstantLR(o, total_iters=2.5), "total_iters"),
    (lambda o: SequentialLR(o, [], milestones=[]), "at least one scheduler"),
    (lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(o, 3)], milestones=[]), "milestones"),
    (lambda o: SequentialLR(o, [StepLR(o, 2)] * 3, milestones=[5, 2]), "milestones"),
    (lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(_sgd(), 3)], milestones=[2]),
     "same optimizer"),
    (lambda o: SequentialLR(o, [StepLR(o, 2), ReduceLROnPlateau(o)], milestones=[2]),
     "ReduceLROnPlateau"),
    (lambda o: CosineAnnealingWarmRestarts(o, T_0=0), "T_0"),
    (lambda o: CosineAnnealingWarmRestarts(o, T_0=2.5), "T_0"),
    (lambda o: CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0), "T_mult"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: ReduceLROnPlateau(o, mode="avg"), "mode"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode"),
    (lambda o: ReduceLROnPlateau(o, patience=-1), "patience"),
    (lambda o: ReduceLROnPlateau(o, min_lr=[0.1]), "min_lrs"),
])
def test_scheduler_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make(_sgd())


def test_lambda_lr_needs_callables():
    with pytest.raises(TypeError, match="lr_lambda"):
        LambdaLR(_sgd(), 0.5)


# ------------------------------------------------------------------------ EMA
class _Tiny(Module):
    def __init__(self):
        super().__init__()
        self.fc = Linear(2, 2)
        self.bn = BatchNorm1d(2)


def test_model_ema():
    net = _Tiny().double()
    w0 = net.fc.weight.data.copy()
    ema = ModelEMA(net, decay=0.9)
    expected = w0.copy()
    for k in range(3):
        net.fc.weight.data += 1.0 + k                       # "training" moves the weights
        net.bn.running_mean.data[...] = k
        ema.update(net)
        expected = 0.9 * expected + 0.1 * net.fc.weight.data
    np.testing.assert_allclose(ema.shadow["fc.weight"], expected, rtol=1e-14)
    np.testing.assert_array_equal(ema.buffers["bn.running_mean"], 2)
    assert ema.num_updates == 3

    trained = net.fc.weight.data.copy()
    with ema.swap(net):
        np.testing.assert_allclose(net.fc.weight.data, expected, rtol=1e-14)
    np.testing.assert_array_equal(net.fc.weight.data, trained)

    # resume: the state (through an .npz) continues the same average
    ema2 = ModelEMA(_Tiny().double(), decay=0.5)
    sd = ema.state_dict()
    ema2.load_state_dict({k: (npz_roundtrip(v) if isinstance(v, dict) else np.asarray(v))
                          for k, v in sd.items()})
    assert ema2.decay == 0.9 and ema2.num_updates == 3
    ema.update(net)
    ema2.update(net)
    np.testing.assert_array_equal(ema2.shadow["fc.weight"], ema.shadow["fc.weight"])

    other = _Tiny().double()
    ema.copy_to(other)
    for name, value in ema.weights().items():
        np.testing.assert_array_equal(other.state_dict()[name].data, value)


def test_model_ema_warmup_decay():
    ema = ModelEMA(_Tiny(), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(2 / 11)
    with pytest.raises(ValueError):
        ModelEMA(_Tiny(), decay=1.5)


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
