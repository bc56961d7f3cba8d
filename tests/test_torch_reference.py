"""Forward and backward of the functional ops against numbers computed by PyTorch.

The reference values live in tests/fixtures/torch_refs.npz, written by
tests/fixtures/make_torch_refs.py (run by hand with PyTorch; this file does
not import torch).  Each case stores float32 inputs, a random R, PyTorch's
output and the gradients of sum(out * R) w.r.t. every input; here skengine
runs the same op in float32 and must agree within RTOL / ATOL, which is tight
enough that a flipped or transposed kernel, a wrong padding count or a
biased/unbiased variance mix-up fails.
"""
import json
import os

import numpy as np
import pytest

import skengine as sk
import skengine.functional as F
import skengine.nn as nn

REFS = np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "torch_refs.npz"))
CONFIG = json.loads(str(REFS["config"]))
CASES = CONFIG["cases"]
RTOL, ATOL = 1e-4, 1e-5


def ref(case, key):
    return REFS[f"{case}.{key}"]


def has(case, key):
    return f"{case}.{key}" in REFS.files


def cases(*ops):
    return [name for name, c in CASES.items() if c["op"] in ops]


def param(a):
    return sk.Tensor(np.array(a, dtype=np.float32), requires_grad=True)


def check(actual, expected, what, case):
    actual = actual.numpy() if isinstance(actual, sk.Tensor) else np.asarray(actual)
    assert actual.shape == expected.shape, f"{case}: {what} has shape {actual.shape}, torch {expected.shape}"
    assert actual.dtype == np.float32, f"{case}: {what} is {actual.dtype}, expected float32"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=f"{case}: {what}")


def backward(out, R):
    """Backprop sum(out * R): the gradient w.r.t. out is R."""
    out.backward(R.reshape(out.shape))


def tup(v):
    return tuple(v) if isinstance(v, list) else v


def test_fixture_metadata():
    assert str(REFS["torch_version"]) == CONFIG["torch"]
    assert len(CASES) >= 50
    ops = {c["op"] for c in CASES.values()}
    assert ops == {"conv2d", "linear", "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                   "softmax", "log_softmax", "cross_entropy", "nll_loss"}
    for name, c in CASES.items():  # every stored input is float32, as the tests assume
        if "x" in c:
            key = "x" if c["op"] != "batch_norm" else "eval_x"
            assert ref(name, key).dtype == np.float32


@pytest.mark.parametrize("case", cases("conv2d"))
def test_conv2d(case):
    c = CASES[case]
    x, w = param(ref(case, "x")), param(ref(case, "w"))
    b = param(ref(case, "b")) if c["bias"] else None
    out = F.conv2d(x, w, b, tup(c["stride"]), tup(c["padding"]), tup(c["dilation"]), c["groups"])
    check(out, ref(case, "out"), "output", case)
    backward(out, ref(case, "R"))
    check(x.grad, ref(case, "grad_x"), "grad input", case)
    check(w.grad, ref(case, "grad_w"), "grad weight", case)
    if c["bias"]:
        check(b.grad, ref(case, "grad_b"), "grad bias", case)


@pytest.mark.parametrize("case", cases("conv2d"))
def test_conv2d_module(case):
    """nn.Conv2d with torch's weights gives torch's output (forward only; the grads are covered above)."""
    c = CASES[case]
    O, Cg, kh, kw = ref(case, "w").shape
    m = nn.Conv2d(Cg * c["groups"], O, (kh, kw), tup(c["stride"]), tup(c["padding"]), tup(c["dilation"]),
                  c["groups"], bias=c["bias"])
    m.weight.data[...] = ref(case, "w")
    if c["bias"]:
        m.bias.data[...] = ref(case, "b")
    with sk.no_grad():
        check(m(sk.Tensor(ref(case, "x"))), ref(case, "out"), "output", case)


@pytest.mark.parametrize("case", cases("linear"))
def test_linear(case):
    c = CASES[case]
    x, w = param(ref(case, "x")), param(ref(case, "w"))
    b = param(ref(case, "b")) if c["bias"] else None
    out = F.linear(x, w, b)
    check(out, ref(case, "out"), "output", case)
    backward(out, ref(case, "R"))
    check(x.grad, ref(case, "grad_x"), "grad input", case)
    check(w.grad, ref(case, "grad_w"), "grad weight", case)
    if c["bias"]:
        check(b.grad, ref(case, "grad_b"), "grad bias", case)


@pytest.mark.parametrize("case", cases("batch_norm"))
def test_batch_norm(case):
    """Training steps (batch statistics, running-stat updates), then evaluation with the running stats."""
    c = CASES[case]
    affine = c["affine"]
    running_mean = sk.Tensor(ref(case, "running_mean0").copy())
    running_var = sk.Tensor(ref(case, "running_var0").copy())
    for t in range(c["steps"]):
        x = param(ref(case, "x")[t])
        w, b = (param(ref(case, "w")), param(ref(case, "b"))) if affine else (None, None)
        out = F.batch_norm(x, running_mean, running_var, w, b, True, c["momentum"], c["eps"])
        check(out, ref(case, "out")[t], f"step {t} output", case)
        check(running_mean, ref(case, "running_mean")[t], f"running_mean after step {t}", case)
        check(running_var, ref(case, "running_var")[t], f"running_var after step {t}", case)
        backward(out, ref(case, "R")[t])
        check(x.grad, ref(case, "grad_x")[t], f"step {t} grad input", case)
        if affine:
            check(w.grad, ref(case, "grad_w")[t], f"step {t} grad weight", case)
            check(b.grad, ref(case, "grad_b")[t], f"step {t} grad bias", case)
    x = param(ref(case, "eval_x"))
    w, b = (param(ref(case, "w")), param(ref(case, "b"))) if affine else (None, None)
    out = F.batch_norm(x, running_mean, running_var, w, b, False, c["momentum"], c["eps"])
    check(out, ref(case, "eval_out"), "eval output", case)
    backward(out, ref(case, "eval_R"))
    check(x.grad, ref(case, "eval_grad_x"), "eval grad input", case)
    if affine:
        check(w.grad, ref(case, "eval_grad_w"), "eval grad weight", case)
        check(b.grad, ref(case, "eval_grad_b"), "eval grad bias", case)
    check(running_mean, ref(case, "running_mean")[-1], "running_mean after eval", case)
    check(running_var, ref(case, "running_var")[-1], "running_var after eval", case)


@pytest.mark.parametrize("case", [n for n in cases("batch_norm") if CASES[n]["affine"]])
def test_batch_norm_module(case):
    """nn.BatchNorm1d/2d: train() steps update the buffers like torch, eval() uses them."""
    c = CASES[case]
    C = ref(case, "w").shape[0]
    m = (nn.BatchNorm2d if len(c["x"]) == 4 else nn.BatchNorm1d)(C, eps=c["eps"], momentum=c["momentum"])
    m.weight.data[...] = ref(case, "w")
    m.bias.data[...] = ref(case, "b")
    m.running_mean.data[...] = ref(case, "running_mean0")
    m.running_var.data[...] = ref(case, "running_var0")
    m.train()
    for t in range(c["steps"]):
        x = param(ref(case, "x")[t])
        out = m(x)
        check(out, ref(case, "out")[t], f"step {t} output", case)
        backward(out, ref(case, "R")[t])
        check(x.grad, ref(case, "grad_x")[t], f"step {t} grad input", case)
        check(m.weight.grad, ref(case, "grad_w")[t], f"step {t} grad weight", case)
        m.weight.grad = m.bias.grad = None
    check(m.running_mean, ref(case, "running_mean")[-1], "running_mean", case)
    check(m.running_var, ref(case, "running_var")[-1], "running_var", case)
    assert int(m.num_batches_tracked.data) == c["steps"]
    m.eval()
    x = param(ref(case, "eval_x"))
    out = m(x)
    check(out, ref(case, "eval_out"), "eval output", case)
    backward(out, ref(case, "eval_R"))
    check(x.grad, ref(case, "eval_grad_x"), "eval grad input", case)


def pool(c, x):
    if c["op"] == "max_pool2d":
        return F.max_pool2d(x, tup(c["kernel_size"]), tup(c["stride"]), tup(c["padding"]))
    if c["op"] == "avg_pool2d":
        return F.avg_pool2d(x, tup(c["kernel_size"]), tup(c["stride"]), tup(c["padding"]),
                            count_include_pad=c["count_include_pad"])
    return F.adaptive_avg_pool2d(x, tup(c["output_size"]))


@pytest.mark.parametrize("case", cases("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"))
def test_pooling(case):
    x = param(ref(case, "x"))
    out = pool(CASES[case], x)
    check(out, ref(case, "out"), "output", case)
    backward(out, ref(case, "R"))
    check(x.grad, ref(case, "grad_x"), "grad input", case)


@pytest.mark.parametrize("case", cases("softmax", "log_softmax"))
def test_softmax(case):
    c = CASES[case]
    x = param(ref(case, "x"))
    out = (F.softmax if c["op"] == "softmax" else F.log_softmax)(x, c["dim"])
    check(out, ref(case, "out"), "output", case)
    backward(out, ref(case, "R"))
    check(x.grad, ref(case, "grad_x"), "grad input", case)


@pytest.mark.parametrize("case", cases("cross_entropy", "nll_loss"))
def test_losses(case):
    c = CASES[case]
    x, target = param(ref(case, "x")), ref(case, "target")
    if c["op"] == "cross_entropy":
        out = F.cross_entropy(x, target, label_smoothing=c["label_smoothing"], reduction=c["reduction"])
    else:
        out = F.nll_loss(x, target, reduction=c["reduction"])
    check(out, ref(case, "out"), "output", case)
    backward(out, ref(case, "R"))
    check(x.grad, ref(case, "grad_x"), "grad input", case)
