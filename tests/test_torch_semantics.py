"""PyTorch's signatures and semantics where skengine once differed: pooling (argument order, ceil_mode,
dilation, divisor_override, return_indices), conv2d padding='same' / 'valid' and padding modes,
BatchNorm momentum=None, cross_entropy / nll_loss (weight, ignore_index, probabilities, (N, C, d...)),
LeakyReLU and GELU.

References are naive loops written from PyTorch's documented rules, hand-derived values, and a few
numbers computed once with PyTorch 2.14 and pasted in (marked "torch 2.14"); torch is not imported.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import skengine as sk
import skengine.functional as F
import skengine.nn as nn
from strategies import arrays, away_from, rng_arrays, seeds, unique_arrays


def leaf(a, requires_grad=True):
    return sk.Tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


def rand(shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


# =====================================================================================================
# pooling: naive loops over PyTorch's windows
# =====================================================================================================
def ref_pool_size(n, k, s, p, d, ceil_mode):
    """PyTorch's rule: floor or ceil of the span / stride, but a last window must start inside the
    input or its left padding."""
    span = n + 2 * p - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = math.ceil(span / s) + 1
    return out - 1 if (out - 1) * s >= n + p else out


def ref_taps(o, n, k, s, p, d):
    """The input positions of output o's window that lie inside the input."""
    return [o * s - p + i * d for i in range(k) if 0 <= o * s - p + i * d < n]


def naive_max_pool2d(x, k, s, p, d, ceil_mode):
    """Values and PyTorch's flat (H, W) indices of each window's maximum."""
    N, C, H, W = x.shape
    OH, OW = (ref_pool_size(n, *a, ceil_mode) for n, a in zip((H, W), zip(k, s, p, d)))
    out, idx = np.zeros((N, C, OH, OW)), np.zeros((N, C, OH, OW), np.int64)
    for i in range(OH):
        for j in range(OW):
            rows, cols = ref_taps(i, H, k[0], s[0], p[0], d[0]), ref_taps(j, W, k[1], s[1], p[1], d[1])
            cells = [(h, w) for h in rows for w in cols]
            vals = np.stack([x[:, :, h, w] for h, w in cells], axis=-1)
            best = vals.argmax(axis=-1)
            out[:, :, i, j] = vals.max(axis=-1)
            idx[:, :, i, j] = np.array([h * W + w for h, w in cells])[best]
    return out, idx


def naive_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    OH, OW = (ref_pool_size(n, *a, ceil_mode) for n, a in zip((H, W), zip(k, s, p, (1, 1))))
    out = np.zeros((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            rows, cols = ref_taps(i, H, k[0], s[0], p[0], 1), ref_taps(j, W, k[1], s[1], p[1], 1)
            total = x[:, :, rows][:, :, :, cols].sum(axis=(2, 3))
            if divisor_override is not None:
                n = divisor_override
            elif count_include_pad:  # the window clipped to the padded input, not beyond it
                h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
                n = (min(h0 + k[0], H + p[0]) - h0) * (min(w0 + k[1], W + p[1]) - w0)
            else:
                n = len(rows) * len(cols)
            out[:, :, i, j] = total / n
    return out


@st.composite
def pool_cases(draw, dilation=True, every_window_in_input=False):
    """(x shape, kernel, stride, padding, dilation, ceil_mode) with at least one output position."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    sizes = [ref_pool_size(n, *a, ceil_mode) for n, a in zip((H, W), zip(k, s, p, d))]
    assume(min(sizes) >= 1)
    if every_window_in_input:  # a max over padding alone is -inf: no gradient to check
        assume(all(ref_taps(o, n, *a) for n, a, size in zip((H, W), zip(k, s, p, d), sizes) for o in range(size)))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 2)), H, W), k, s, p, d, ceil_mode


@given(case=pool_cases(every_window_in_input=True), data=st.data())
def test_max_pool2d_dilation_ceil_mode_indices_and_gradcheck(case, data):
    shape, k, s, p, d, ceil_mode = case
    x = data.draw(unique_arrays(shape))
    ref, ref_idx = naive_max_pool2d(x, k, s, p, d, ceil_mode)
    y, idx = F.max_pool2d(leaf(x), k, s, p, d, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y.numpy(), ref)
    assert idx.dtype == np.int64 and not idx.requires_grad
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    assert sk.gradcheck(lambda t: F.max_pool2d(t, k, s, p, d, ceil_mode), (leaf(x),))


@pytest.mark.parametrize("count_include_pad", [True, False])
@given(case=pool_cases(dilation=False), divisor_override=st.sampled_from([None, None, 1, 4, -3]), data=st.data())
def test_avg_pool2d_ceil_mode_divisor_override_and_gradcheck(count_include_pad, case, divisor_override, data):
    shape, k, s, p, _, ceil_mode = case
    x = data.draw(rng_arrays(shape))
    fn = lambda t: F.avg_pool2d(t, k, s, p, ceil_mode, count_include_pad, divisor_override)  # noqa: E731
    ref = naive_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override)
    np.testing.assert_allclose(fn(leaf(x)).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))


def test_avg_pool2d_positional_arguments_follow_torch():
    """nn.AvgPool2d(3, 1, 1, False): the 4th argument is ceil_mode, so padding is still counted."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y = nn.AvgPool2d(3, 1, 1, False)(leaf(x)).numpy()
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(y[0, 0, 0], [10 / 9, 18 / 9, 24 / 9, 18 / 9])  # torch 2.14: 1.111, 2, 2.667, 2
    y = F.avg_pool2d(leaf(x), 3, 1, 1, False, False).numpy()  # count_include_pad=False, 5th
    np.testing.assert_allclose(y[0, 0, 0, 0], 10 / 4)
    y = nn.AvgPool2d(3, 1, 1, False, True, 2)(leaf(x)).numpy()  # divisor_override, 6th
    np.testing.assert_allclose(y[0, 0, 0, 0], 10 / 2)


def test_avg_pool2d_ceil_mode_hand_values():
    """6x6 ones, kernel 3, stride 2, padding 1, ceil_mode: a 4th row and column of windows starting at
    the last input row.  Counting padding, such a window counts the input row and the padding row after
    it, not the row beyond the padded input: 2 of 3."""
    x = leaf(np.ones((1, 1, 6, 6)))
    y = F.avg_pool2d(x, 3, 2, 1, ceil_mode=True).numpy()[0, 0]
    edge = [2 / 3, 1, 1, 1 / 2]  # torch 2.14: [[4/9, 2/3, 2/3, 1/3], [2/3, 1, 1, 1/2], ..., [1/3, 1/2, 1/2, 1/4]]
    np.testing.assert_allclose(y, np.outer(edge, edge))
    np.testing.assert_allclose(F.avg_pool2d(x, 3, 2, 1, True, False).numpy(), 1.0)
    assert F.avg_pool2d(x, 3, 2, 1).shape == (1, 1, 3, 3)


def test_max_pool2d_dilation_ceil_mode_stored_torch_values():
    x = np.array([19, 4, 10, 11, 24, 2, 23, 6, 16, 22, 3, 21, 8, 0, 20, 12, 18, 13, 7, 5, 17, 14, 9, 1, 15],
                 np.float64).reshape(1, 1, 5, 5)
    y, idx = nn.MaxPool2d(2, 2, 0, 2, True, True)(leaf(x))
    np.testing.assert_array_equal(y.numpy()[0, 0], [[19, 24], [17, 20]])  # torch 2.14
    np.testing.assert_array_equal(idx.numpy()[0, 0], [[0, 4], [20, 14]])


def test_pool_modules_keep_torch_defaults_and_repr():
    m = nn.MaxPool2d(3, 2, 1)
    assert (m.stride, m.dilation, m.return_indices, m.ceil_mode) == (2, 1, False, False)
    assert repr(m) == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)"
    a = nn.AvgPool2d(2)
    assert (a.stride, a.ceil_mode, a.count_include_pad, a.divisor_override) == (2, False, True, None)
    assert repr(a) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"


# =====================================================================================================
# conv2d: padding 'same' / 'valid', padding modes
# =====================================================================================================
def naive_conv2d(x, w, b, stride, pads, dilation, groups=1):
    """pads = (top, bottom, left, right) zeros, then a plain correlation."""
    xp = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]))
    N, C, H, W = xp.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (dh, dw), Og = stride, dilation, O // groups
    OH, OW = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((N, O, OH, OW))
    for o in range(O):
        g = o // Og
        for i in range(OH):
            for j in range(OW):
                h0, w0 = i * sh, j * sw
                win = xp[:, g * Cg:(g + 1) * Cg, h0:h0 + dh * (kh - 1) + 1:dh, w0:w0 + dw * (kw - 1) + 1:dw]
                out[:, o, i, j] = (win * w[o]).sum(axis=(1, 2, 3)) + (0.0 if b is None else b[o])
    return out


@st.composite
def same_conv_cases(draw):
    groups = draw(st.integers(1, 2))
    C, O = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H, W = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return (draw(st.integers(1, 2)), C, H, W), (O, C // groups) + k, d, groups


@given(case=same_conv_cases(), seed=seeds(), bias=st.booleans())
def test_conv2d_padding_same_puts_the_odd_row_bottom_right(case, seed, bias):
    x_shape, w_shape, d, groups = case
    x, w, b = rand(x_shape, seed), rand(w_shape, seed + 1), (rand((w_shape[0],), seed + 2) if bias else None)
    (th, tw) = (di * (k - 1) for di, k in zip(d, w_shape[2:]))
    ref = naive_conv2d(x, w, b, (1, 1), (th // 2, th - th // 2, tw // 2, tw - tw // 2), d, groups)

    def fn(x, w, *b):
        return F.conv2d(x, w, *b, stride=1, padding="same", dilation=d, groups=groups)

    inputs = (leaf(x), leaf(w)) + ((leaf(b),) if bias else ())
    y = fn(*inputs)
    assert y.shape == x_shape[:1] + w_shape[:1] + x_shape[2:]
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, inputs)


@given(case=same_conv_cases(), seed=seeds(), stride=st.integers(1, 2))
def test_conv2d_padding_valid_is_no_padding(case, seed, stride):
    x_shape, w_shape, d, groups = case
    x_shape = x_shape[:2] + tuple(n + di * (k - 1) for n, di, k in zip(x_shape[2:], d, w_shape[2:]))
    x, w = rand(x_shape, seed), rand(w_shape, seed + 1)
    y = F.conv2d(leaf(x), leaf(w), stride=stride, padding="valid", dilation=d, groups=groups)
    np.testing.assert_allclose(y.numpy(), naive_conv2d(x, w, None, (stride, stride), (0, 0, 0, 0), d, groups),
                               rtol=1e-12, atol=1e-12)


def test_conv2d_same_even_kernel_hand_value():
    """A 2x2 box filter with 'same': torch pads the one extra row and column at the bottom and right."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y = F.conv2d(leaf(x), leaf(np.ones((1, 1, 2, 2))), padding="same").numpy()
    np.testing.assert_array_equal(y[0, 0], [[8, 12, 7], [20, 24, 13], [13, 15, 8]])  # torch 2.14 agrees
    m = nn.Conv2d(1, 1, 2, padding="same", bias=False).double()
    m.weight.data[...] = 1.0
    np.testing.assert_array_equal(m(leaf(x)).numpy(), y)
    assert repr(m) == "Conv2d(1, 1, kernel_size=(2, 2), stride=(1, 1), padding=same, bias=False)"


# with a single 1 at tap (0, 0) and padding 1, output (i, j) is the padded input at (i - 1, j - 1)
PADDING_MODE_VALUES = {  # for x = arange(9).reshape(3, 3); torch 2.14 gives the same
    "zeros": [[0, 0, 0], [0, 0, 1], [0, 3, 4]],
    "reflect": [[4, 3, 4], [1, 0, 1], [4, 3, 4]],
    "replicate": [[0, 0, 1], [0, 0, 1], [3, 3, 4]],
    "circular": [[8, 6, 7], [2, 0, 1], [5, 3, 4]],
}


@pytest.mark.parametrize("mode", list(PADDING_MODE_VALUES))
def test_conv2d_padding_modes_hand_values(mode):
    m = nn.Conv2d(1, 1, 3, padding=1, padding_mode=mode, bias=False).double()
    m.weight.data[...] = 0.0
    m.weight.data[0, 0, 0, 0] = 1.0
    y = m(leaf(np.arange(9.0).reshape(1, 1, 3, 3))).numpy()
    np.testing.assert_array_equal(y[0, 0], PADDING_MODE_VALUES[mode])
    assert ("padding_mode" in repr(m)) == (mode != "zeros")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding, stride", [(1, 1), ((2, 1), 2), ("same", 1), ("valid", 1)])
@given(seed=seeds())
def test_conv2d_padding_modes_gradcheck(mode, padding, stride, seed):
    sk.manual_seed(seed % 1000)
    m = nn.Conv2d(2, 2, (3, 2), stride=stride, padding=padding, padding_mode=mode)
    assert sk.gradcheck_module(m, leaf(rand((1, 2, 4, 3), seed)))  # input and parameters, in float64


# =====================================================================================================
# BatchNorm momentum=None
# =====================================================================================================
def test_batchnorm_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [np.array(b, np.float32) for b in ([[1, 2], [3, 6]], [[0, 0], [2, -2]], [[5, 1], [5, 3]])]
    for b in batches:
        bn(sk.Tensor(b))
    means = [b.mean(axis=0) for b in batches]
    variances = [b.var(axis=0, ddof=1) for b in batches]  # unbiased, as in the running update
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean(means, axis=0), rtol=1e-6)  # [8/3, 5/3]
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean(variances, axis=0), rtol=1e-6)  # [4/3, 4]
    assert bn.num_batches_tracked.item() == 3
    assert "momentum=None" in repr(bn)


# =====================================================================================================
# cross_entropy / nll_loss
# =====================================================================================================
def np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _as_rows(a):
    """(C,) -> (1, C); (N, C, d...) -> (N*d..., C)."""
    return a[None] if a.ndim == 1 else np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def ref_class_loss(x, t, weight, ignore_index, reduction, eps, log_probs=False):
    """PyTorch's loss per target, looped: (1-eps) * w[t] * -logp[t] + eps/C * sum_c w_c * -logp[c];
    ignored targets count 0, 'mean' divides by the summed w[t] of the others."""
    rows, targets = _as_rows(x), t.reshape(-1)
    C = rows.shape[1]
    logp = rows if log_probs else np_log_softmax(rows, 1)
    w = np.ones(C) if weight is None else weight
    losses, total = [], 0.0
    for r, c in enumerate(targets):
        if c == ignore_index:
            losses.append(0.0)
            continue
        losses.append((1 - eps) * w[c] * -logp[r, c] + eps / C * (w * -logp[r]).sum())
        total += w[c]
    losses = np.array(losses)
    if reduction == "none":
        return losses.reshape(t.shape)
    return losses.sum() if reduction == "sum" else losses.sum() / total


def ref_probability_loss(x, q, weight, reduction, eps):
    rows, qs = _as_rows(x), _as_rows(q)
    C = rows.shape[1]
    qs = (1 - eps) * qs + eps / C
    w = np.ones(C) if weight is None else weight
    losses = -(w * qs * np_log_softmax(rows, 1)).sum(axis=1)
    if reduction == "none":
        return losses.reshape(x.shape[:1] + x.shape[2:] if x.ndim > 1 else ())
    return losses.sum() if reduction == "sum" else losses.mean()


@st.composite
def class_problems(draw, any_counted=True):
    """(logits, targets, weight, ignore_index): unbatched, (N, C) or (N, C, d...), some targets ignored."""
    C = draw(st.integers(1, 4))
    lead = draw(st.sampled_from([(), (3,), (2, 2), (2, 1, 2)]))
    shape = (C,) if lead == () else (lead[0], C) + lead[1:]
    x = draw(arrays(shape, -3, 3))
    t = np.array(draw(st.lists(st.integers(0, C - 1), min_size=math.prod(lead), max_size=math.prod(lead))),
                 np.int64).reshape(lead)
    ignore_index = draw(st.sampled_from([-100, 0, 3]))
    ignored = np.array(draw(st.lists(st.booleans(), min_size=t.size, max_size=t.size)), bool).reshape(lead)
    t = np.where(ignored, ignore_index, t)
    if any_counted:
        assume((t != ignore_index).any())
    weight = draw(st.one_of(st.none(), arrays((C,), 0.2, 2.0)))
    return x, t, weight, ignore_index


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@given(problem=class_problems())
def test_cross_entropy_weight_ignore_index_and_shapes(reduction, label_smoothing, problem):
    x, t, weight, ignore_index = problem
    w = None if weight is None else sk.Tensor(weight)

    def fn(s):
        return F.cross_entropy(s, t, w, ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=label_smoothing)

    ref = ref_class_loss(x, t, weight, ignore_index, reduction, label_smoothing)
    np.testing.assert_allclose(fn(leaf(x)).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))
    module = nn.CrossEntropyLoss(w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    np.testing.assert_allclose(module(leaf(x), t).numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(problem=class_problems())
def test_nll_loss_weight_ignore_index_and_shapes(reduction, problem):
    x, t, weight, ignore_index = problem
    w = None if weight is None else sk.Tensor(weight)

    def fn(s):
        return F.nll_loss(s, t, w, ignore_index=ignore_index, reduction=reduction)

    ref = ref_class_loss(x, t, weight, ignore_index, reduction, 0.0, log_probs=True)
    np.testing.assert_allclose(fn(leaf(x)).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))
    module = nn.NLLLoss(w, ignore_index=ignore_index, reduction=reduction)
    np.testing.assert_allclose(module(leaf(x), t).numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@given(problem=class_problems(any_counted=False), seed=seeds())
def test_cross_entropy_class_probabilities_gradcheck_in_input_and_target(reduction, label_smoothing, problem, seed):
    x, _, weight, _ = problem
    q = np.random.default_rng(seed).uniform(0.0, 1.0, x.shape)
    q /= q.sum(axis=0 if x.ndim == 1 else 1, keepdims=True)

    def fn(s, target):
        return F.cross_entropy(s, target, weight, reduction=reduction, label_smoothing=label_smoothing)

    ref = ref_probability_loss(x, q, weight, reduction, label_smoothing)
    np.testing.assert_allclose(fn(leaf(x), leaf(q, False)).numpy(), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fn(leaf(x), q).numpy(), ref, rtol=1e-12, atol=1e-12)  # a plain array works too
    assert sk.gradcheck(fn, (leaf(x), leaf(q)))


def test_losses_stored_torch_values():
    x = np.array([[[-2.0, -1.6363636363636362], [0.6363636363636364, 0.4545454545454546],
                   [-1.0909090909090908, -0.3636363636363633]],
                  [[0.18181818181818166, 0.5454545454545454], [-0.4545454545454546, -0.6363636363636365],
                   [3.2727272727272734, 4.0]]])
    t = np.array([[0, -100], [2, 1]])
    w = sk.Tensor(np.array([0.5, 2.0, 1.0]))
    # torch 2.14: F.cross_entropy(x, t, w, label_smoothing=0.2, reduction=...), F.nll_loss(x, t, w, reduction=...)
    assert F.cross_entropy(leaf(x), t, w, label_smoothing=0.2).item() == pytest.approx(2.941068708000487, rel=1e-12)
    np.testing.assert_allclose(F.cross_entropy(leaf(x), t, w, label_smoothing=0.2, reduction="none").numpy(),
                               [[1.3985907684726162, 0.0], [0.6694492842103684, 8.22570042531872]], rtol=1e-12)
    assert F.nll_loss(leaf(x), t, w).item() == pytest.approx(-0.28571428571428586, rel=1e-12)
    np.testing.assert_allclose(F.nll_loss(leaf(x), t, w, reduction="none").numpy(),
                               [[1.0, 0.0], [-3.2727272727272734, 1.272727272727273]], rtol=1e-12)
    q = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    logits = leaf([[1.0, -1.0, 0.5], [0.0, 2.0, -2.0]])
    assert F.cross_entropy(logits, q, w, label_smoothing=0.1).item() == pytest.approx(1.6333798516607627, rel=1e-12)
    np.testing.assert_allclose(F.cross_entropy(logits, q, reduction="none").numpy(),
                               [1.4049569196419909, 2.1429316284998996], rtol=1e-12)


@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
def test_all_targets_ignored_gives_nan_mean_and_zero_gradient(loss):
    x = leaf(rand((3, 4)))
    t = np.full(3, -100)
    y = loss(x, t)
    assert math.isnan(y.item())
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)
    assert loss(leaf(rand((3, 4))), t, reduction="sum").item() == 0.0


def test_unbatched_losses_and_legacy_reduction_arguments():
    x = rand(4, 3)
    logp = np_log_softmax(x, 0)
    assert F.cross_entropy(leaf(x), np.array(2)).item() == pytest.approx(-logp[2], rel=1e-12)
    assert F.cross_entropy(leaf(x), np.array(2), reduction="none").shape == ()
    assert F.nll_loss(leaf(x), np.array(1)).item() == pytest.approx(-x[1], rel=1e-12)
    x2, t2 = rand((3, 4), 5), np.array([0, 3, 1])
    per = F.cross_entropy(leaf(x2), t2, reduction="none").numpy()
    assert F.cross_entropy(leaf(x2), t2, size_average=False).item() == pytest.approx(per.sum(), rel=1e-12)
    np.testing.assert_allclose(F.cross_entropy(leaf(x2), t2, reduce=False).numpy(), per)
    assert nn.CrossEntropyLoss(size_average=False).reduction == "sum"
    assert nn.NLLLoss(reduce=False).reduction == "none"


def test_loss_module_weight_is_a_buffer():
    m = nn.CrossEntropyLoss(weight=sk.Tensor(np.array([1.0, 2.0, 3.0], np.float32)), label_smoothing=0.1)
    assert list(m.state_dict()) == ["weight"] and list(nn.NLLLoss().state_dict()) == []
    assert repr(m) == "CrossEntropyLoss()"
    m.double()
    assert m.weight.dtype == np.float64


# =====================================================================================================
# LeakyReLU, GELU
# =====================================================================================================
@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5, 1.5])
@given(x=arrays((3, 4), -3, 3))
def test_leaky_relu_forward_and_gradcheck(slope, x):
    x = away_from(x, (0.0,), 0.05)
    fn = lambda t: F.leaky_relu(t, slope)  # noqa: E731
    np.testing.assert_allclose(fn(leaf(x)).numpy(), np.where(x > 0, x, slope * x), rtol=1e-15)
    np.testing.assert_allclose(nn.LeakyReLU(slope)(leaf(x)).numpy(), np.where(x > 0, x, slope * x), rtol=1e-15)
    assert sk.gradcheck(fn, (leaf(x),))


def test_leaky_relu_gradient_at_zero_is_the_slope_and_repr():
    x = leaf([0.0, -1.0, 2.0])
    F.leaky_relu(x, 0.1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.1, 0.1, 1.0])  # torch: x > 0 ? 1 : slope
    assert repr(nn.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"


def gelu_reference(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(x=arrays((3, 4), -6, 6))
def test_gelu_forward_and_gradcheck(approximate, x):
    fn = lambda t: F.gelu(t, approximate=approximate)  # noqa: E731
    np.testing.assert_allclose(fn(leaf(x)).numpy(), gelu_reference(x, approximate), rtol=1e-14, atol=2e-15)
    np.testing.assert_allclose(nn.GELU(approximate)(leaf(x)).numpy(), gelu_reference(x, approximate),
                               rtol=1e-14, atol=2e-15)
    assert sk.gradcheck(fn, (leaf(x),))


def test_gelu_stored_torch_values_and_tails():
    x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(F.gelu(leaf(x)).numpy(), [  # torch 2.14
        -0.00404969409489031, -0.15865525393145702, -0.15426876936299344, 0.0, 0.34573123063700656,
        0.841344746068543, 2.99595030590511], rtol=1e-14, atol=1e-17)
    np.testing.assert_allclose(F.gelu(leaf(x), approximate="tanh").numpy(), [  # torch 2.14
        -0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0.0, 0.34571400982514394,
        0.8411919906082768, 2.996362607918227], rtol=1e-14, atol=1e-17)
    wide = np.linspace(-40, 40, 801)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = F.gelu(leaf(wide, False)).numpy()
    np.testing.assert_allclose(y, gelu_reference(wide, "none"), rtol=1e-14, atol=1e-15)  # 1 + erf cancels
    with np.errstate(invalid="ignore"):
        y = F.gelu(leaf([np.inf, -np.inf], False)).numpy()
    assert y[0] == np.inf and np.isnan(y[1])  # -inf * 0, as torch 2.14
    y32 = F.gelu(sk.Tensor(np.linspace(-8, 8, 161).astype(np.float32)))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), gelu_reference(np.linspace(-8, 8, 161), "none"), rtol=2e-6, atol=1e-7)
    assert repr(nn.GELU()) == "GELU(approximate='none')" and repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"


def test_one_unbatched_image_gives_the_batch_of_one_result():
    """(C, H, W) input, as torch allows: the same numbers and gradients as the (1, C, H, W) batch."""
    x, w = sk.randn(3, 7, 6), sk.randn(4, 3, 3, 3)
    cases = [lambda t: F.conv2d(t, w, padding="same"), lambda t: F.max_pool2d(t, 2, ceil_mode=True),
             lambda t: F.avg_pool2d(t, 3, 2, 1), lambda t: F.adaptive_avg_pool2d(t, (None, 4)),
             lambda t: F.max_pool2d(t, 2, return_indices=True)[1]]
    for fn in cases:
        single, batch = fn(x), fn(x.unsqueeze(0))
        assert single.shape == batch.shape[1:]
        np.testing.assert_array_equal(single.numpy(), batch.numpy()[0])
    a = sk.Tensor(x.numpy(), requires_grad=True)
    b = sk.Tensor(x.numpy()[None], requires_grad=True)
    (F.conv2d(a, w, padding=1) ** 2).sum().backward()
    (F.conv2d(b, w, padding=1) ** 2).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy()[0], rtol=1e-6)
    assert F.adaptive_avg_pool2d(x.unsqueeze(0), (None, 4)).shape == (1, 3, 7, 4)


@pytest.mark.parametrize("data, dtype", [(["a"], None), (np.array(["1.5", "2"]), None), ([1, 2], str),
                                         (np.array([1, None], dtype=object), None), (None, None),
                                         ([1 + 2j], None), (np.zeros(2, np.complex64), None),
                                         (np.array(["2024-01-01"], dtype="datetime64[D]"), None)])
def test_a_tensor_refuses_strings_objects_and_complex_numbers(data, dtype):
    """torch.tensor(["a"]) is a TypeError; skengine has no complex ops, so complex is refused alike."""
    with pytest.raises(TypeError, match="a tensor holds bool, integer or floating-point numbers, got dtype"):
        sk.Tensor(data, dtype=dtype)
    with pytest.raises(TypeError, match="got dtype"):
        sk.tensor(data, dtype=dtype)


def test_a_tensor_holds_bool_integer_and_floating_point_numbers():
    for data in ([True], [1], np.array([1], np.uint8), np.array([1], np.int16), [1.5], np.array([1], np.float16)):
        assert sk.Tensor(data).numel() == 1
    assert (sk.Tensor([1, 2]) + 1).tolist() == [2, 3]


def test_gelu_of_integers_and_float16():
    """Integers give float64 as before the float32 path (int16/int32 crashed in it); float16 goes through float32
    (within half an ulp of float16 at x = -4.07, where float16 arithmetic was 1.3% off)."""
    for dtype in (np.int16, np.int32, np.int64):
        y = F.gelu(sk.Tensor(np.array([-2, 0, 3], dtype)))
        np.testing.assert_allclose(y.numpy(), gelu_reference(np.array([-2.0, 0, 3]), "none"), rtol=1e-14)
    x16 = np.array([-4.07, -3.684, -1.0, 0.5, 2.0], np.float16)
    y16 = F.gelu(sk.Tensor(x16)).numpy()
    ref = gelu_reference(x16.astype(np.float64), "none")
    assert y16.dtype == np.float16
    np.testing.assert_array_less(np.abs(y16 - ref), np.abs(np.spacing(ref.astype(np.float16)).astype(np.float64)))
