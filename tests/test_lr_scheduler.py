"""skengine.optim.lr_scheduler: the LR schedules against PyTorch's numbers (the cases of
tests/fixtures/optim_refs.npz, see test_optim.py, and values computed once with torch 2.14),
closed forms, resuming from state dicts, and argument checks.
"""
import math

import numpy as np
import pytest

from skengine.autograd import Tensor
from skengine.nn import Parameter
from skengine.optim import (
    SGD,
    Adam,
    AdamW,
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiStepLR,
    OneCycleLR,
    Optimizer,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
    WarmupCosineLR,
)
from test_optim import CONFIG, REFS, TOL, npz_roundtrip


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
    for _ in range(7, 15):
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
