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

from skengine.optim import (SGD, AdamW, ModelEMA, MultiStepLR, OneCycleLR, StepLR,
                            WarmupCosineLR, param_groups_no_decay)
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
    (lambda p: SGD(p), "lr"),
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
    (lambda p: AdamW([]), "empty parameter list"),
    (lambda p: AdamW(p + p), "same parameter"),
    (lambda p: AdamW([{"params": p}, {"params": p}]), "more than one"),
])
def test_validation_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.zeros(2))])


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
])
def test_scheduler_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make(_sgd())


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
