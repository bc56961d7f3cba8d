"""skengine.functional: forwards against naive loops and invariants, backwards against finite differences."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skengine as sk
import skengine.functional as F
from strategies import arrays, conv_configs, pool_configs, rng_arrays, seeds, shapes, small_conv_configs, unique_arrays


def leaf(a, requires_grad=True):
    return sk.Tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


def rand(shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


# =====================================================================================================
# naive reference implementations (loops over output positions; no im2col)
# =====================================================================================================
def naive_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    Og = O // groups
    out = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            g = o // Og
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0
                    for c in range(Cg):
                        for p in range(kh):
                            for q in range(kw):
                                acc += w[o, c, p, q] * xp[n, g * Cg + c, i * sh + p * dh, j * sw + q * dw]
                    out[n, o, i, j] = acc + (0.0 if b is None else b[o])
    return out


def _windows(x, kernel, stride, padding, fill):
    """Yield (i, j, window) over the pooling windows of a padded copy of x."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = x.shape
    xp = np.full((N, C, H + 2 * ph, W + 2 * pw), fill)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    for i in range(OH):
        for j in range(OW):
            yield i, j, xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]


def naive_max_pool2d(x, kernel, stride, padding):
    cells = {(i, j): win.max(axis=(2, 3)) for i, j, win in _windows(x, kernel, stride, padding, -np.inf)}
    return _assemble(cells, x.shape[:2])


def naive_avg_pool2d(x, kernel, stride, padding, count_include_pad):
    ones = np.ones((1, 1) + x.shape[2:])
    counts = {(i, j): win.sum() for i, j, win in _windows(ones, kernel, stride, padding, 0.0)}
    cells = {}
    for i, j, win in _windows(x, kernel, stride, padding, 0.0):
        n = kernel[0] * kernel[1] if count_include_pad else counts[(i, j)]
        cells[(i, j)] = win.sum(axis=(2, 3)) / n
    return _assemble(cells, x.shape[:2])


def naive_adaptive_avg_pool2d(x, out_hw):
    (oh, ow), (H, W) = out_hw, x.shape[2:]
    cells = {}
    for i in range(oh):
        for j in range(ow):
            h0, h1 = math.floor(i * H / oh), math.ceil((i + 1) * H / oh)  # PyTorch's adaptive windows
            w0, w1 = math.floor(j * W / ow), math.ceil((j + 1) * W / ow)
            cells[(i, j)] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return _assemble(cells, x.shape[:2])


def _assemble(cells, nc):
    OH, OW = max(i for i, _ in cells) + 1, max(j for _, j in cells) + 1
    out = np.zeros(tuple(nc) + (OH, OW))
    for (i, j), v in cells.items():
        out[:, :, i, j] = v
    return out


def np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# =====================================================================================================
# conv2d
# =====================================================================================================
def _conv_inputs(cfg, seed):
    x = rand(cfg.x_shape, seed)
    w = rand(cfg.w_shape, seed + 1)
    b = rand((cfg.C_out,), seed + 2) if cfg.bias else None
    return x, w, b


@given(cfg=conv_configs(), seed=seeds())
def test_conv2d_forward_matches_naive_loops(cfg, seed):
    x, w, b = _conv_inputs(cfg, seed)
    y = F.conv2d(leaf(x, False), leaf(w, False), None if b is None else leaf(b, False), **cfg.kwargs)
    assert y.shape == (cfg.N, cfg.C_out) + cfg.out_hw
    np.testing.assert_allclose(y.numpy(), naive_conv2d(x, w, b, **cfg.kwargs), rtol=1e-10, atol=1e-12)


@given(cfg=conv_configs(), seed=seeds())
def test_conv2d_float32_forward(cfg, seed):
    x, w, b = _conv_inputs(cfg, seed)
    y = F.conv2d(sk.Tensor(x.astype(np.float32)), sk.Tensor(w.astype(np.float32)),
                 None if b is None else sk.Tensor(b.astype(np.float32)), **cfg.kwargs)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), naive_conv2d(x, w, b, **cfg.kwargs), rtol=1e-4, atol=1e-5)


def _layout(a, layout):
    """The array that, after fn's view, has the original values and a non-contiguous layout."""
    if layout == "transposed":   # fn calls .transpose(2, 3)
        return np.ascontiguousarray(np.swapaxes(a, 2, 3))
    if layout == "sliced":       # fn takes [..., ::2] of a last axis twice as long
        out = np.full(a.shape[:-1] + (2 * a.shape[-1],), 7.0)
        out[..., ::2] = a
        return out
    return a


def _view(t, layout):
    if layout == "transposed":
        v = t.transpose(2, 3)
    elif layout == "sliced":
        v = t[..., ::2]
    else:
        return t
    assert not v.data.flags.c_contiguous or v.data.size <= 1 or 1 in v.shape
    return v


@pytest.mark.parametrize("x_layout, w_layout", [("contiguous", "contiguous"), ("transposed", "contiguous"),
                                                ("sliced", "transposed"), ("contiguous", "sliced")])
@given(cfg=small_conv_configs(), seed=seeds())
def test_conv2d_gradcheck(x_layout, w_layout, cfg, seed):
    x, w, b = _conv_inputs(cfg, seed)
    xs, ws = _layout(x, x_layout), _layout(w, w_layout)

    def fn(x, w, *b):
        return F.conv2d(_view(x, x_layout), _view(w, w_layout), *b, **cfg.kwargs)

    inputs = (leaf(xs), leaf(ws)) + ((leaf(b),) if b is not None else ())
    np.testing.assert_allclose(fn(*[leaf(a, False) for a in (xs, ws) + ((b,) if b is not None else ())]).numpy(),
                               naive_conv2d(x, w, b, **cfg.kwargs), rtol=1e-10, atol=1e-12)
    assert sk.gradcheck(fn, inputs)


def _conv_value_and_grads(cfg, x, w, b):
    xs, ws = leaf(x), leaf(w)
    bs = None if b is None else leaf(b)
    y = F.conv2d(xs, ws, bs, **cfg.kwargs)
    y.backward(np.cos(np.arange(y.numel())).reshape(y.shape))
    return [y.numpy(), xs.grad.numpy(), ws.grad.numpy()] + ([] if b is None else [bs.grad.numpy()])


@given(cfg=conv_configs(max_groups=4), seed=seeds())
def test_grouped_conv_equals_separate_convs_concatenated(cfg, seed):
    x, w, b = _conv_inputs(cfg, seed)
    G, Cg, Og = cfg.groups, cfg.C_in // cfg.groups, cfg.C_out // cfg.groups
    kw = dict(stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation)
    whole = F.conv2d(leaf(x, False), leaf(w, False), None if b is None else leaf(b, False), groups=G, **kw)
    parts = [F.conv2d(leaf(x[:, g * Cg:(g + 1) * Cg], False), leaf(w[g * Og:(g + 1) * Og], False),
                      None if b is None else leaf(b[g * Og:(g + 1) * Og], False), **kw) for g in range(G)]
    np.testing.assert_allclose(whole.numpy(), sk.cat(parts, dim=1).numpy(), rtol=1e-12, atol=1e-12)


def test_conv2d_hand_computed():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    y = F.conv2d(leaf(x), leaf(w), leaf([0.5]), stride=2).numpy()
    np.testing.assert_allclose(y, [[[[-4.5, -4.5], [-4.5, -4.5]]]])  # x[i,j] - x[i+1,j+1] = -5, + 0.5
    y = F.conv2d(leaf(x), leaf(np.ones((1, 1, 1, 1))), padding=1).numpy()
    assert y.shape == (1, 1, 6, 6) and y[0, 0, 0].sum() == 0 and y[0, 0, 1:5, 1:5].sum() == x.sum()


# =====================================================================================================
# batch norm
# =====================================================================================================
BN_SHAPES = [(4, 3), (5, 2), (3, 2, 2, 2), (2, 3, 2, 3)]


@pytest.mark.parametrize("shape", BN_SHAPES)
@given(seed=seeds(), affine=st.booleans())
def test_batch_norm_train_gradcheck(shape, seed, affine):
    C = shape[1]
    x = rand(shape, seed, -2, 2)
    w, b = rand((C,), seed + 1, 0.5, 1.5), rand((C,), seed + 2)
    if affine:
        assert sk.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                            (leaf(x), leaf(w), leaf(b)))
    else:
        assert sk.gradcheck(lambda x: F.batch_norm(x, None, None, training=True), (leaf(x),))


@pytest.mark.parametrize("shape", BN_SHAPES)
@given(seed=seeds())
def test_batch_norm_eval_gradcheck_and_value(shape, seed):
    C = shape[1]
    x = rand(shape, seed, -2, 2)
    w, b = rand((C,), seed + 1, 0.5, 1.5), rand((C,), seed + 2)
    rm, rv = rand((C,), seed + 3), rand((C,), seed + 4, 0.5, 2.0)
    bshape = (1, C) + (1,) * (len(shape) - 2)

    def fn(x, w, b):
        return F.batch_norm(x, leaf(rm, False), leaf(rv, False), w, b, training=False, eps=1e-5)

    ref = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) * w.reshape(bshape) + b.reshape(bshape)
    np.testing.assert_allclose(fn(leaf(x), leaf(w), leaf(b)).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x), leaf(w), leaf(b)))


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 3, 2)])
@given(seed=seeds(), scale=st.floats(0.1, 50.0), shift=st.floats(-20.0, 20.0))
def test_batch_norm_train_output_is_standardised_per_channel(shape, seed, scale, shift):
    x = rand(shape, seed) * scale + shift
    y = F.batch_norm(leaf(x, False), None, None, training=True, eps=0.0).numpy()
    axes = (0,) + tuple(range(2, len(shape)))
    np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-9)
    np.testing.assert_allclose(y.var(axis=axes), 1.0, rtol=1e-9)


@pytest.mark.parametrize("training", [True, False])
@given(seed=seeds(), offset=st.sampled_from([1e3, -1e4, 3e4]))
def test_batch_norm_float32_gradients_survive_a_large_channel_mean(training, seed, offset):
    """float32 input = offset + noise: the gradients must match the same computation in float64.

    Formulas that skip centring (sum(gy * x) - mean * sum(gy)) lose about log10(offset) digits here.
    """
    # values a float32 holds exactly, so that both computations start from the same numbers
    x, gy, w, b = (a.astype(np.float32).astype(np.float64) for a in (
        rand((64, 3, 4, 4), seed) + offset, rand((64, 3, 4, 4), seed + 1),
        rand((3,), seed + 2, 0.5, 1.5), rand((3,), seed + 3)))
    grads = {}
    for dtype in (np.float32, np.float64):
        xs, ws, bs = (sk.Tensor(a.astype(dtype), requires_grad=True) for a in (x, w, b))
        rm, rv = sk.Tensor(np.full(3, offset, dtype)), sk.Tensor(np.ones(3, dtype))
        F.batch_norm(xs, rm, rv, ws, bs, training=training).backward(gy.astype(dtype))
        grads[dtype] = [t.grad.numpy().astype(np.float64) for t in (xs, ws, bs)]
    for g32, g64 in zip(grads[np.float32], grads[np.float64]):
        np.testing.assert_allclose(g32, g64, rtol=2e-3, atol=2e-3 * np.abs(g64).max())


@given(seed=seeds(), offset=st.sampled_from([1e3, -1e4, 3e4]))
def test_batch_norm_float32_output_is_centred_despite_a_large_channel_mean(seed, offset):
    """The float32 batch mean is rounded (by up to 1e-3 at 3e4); the output must not keep that offset."""
    x = (rand((16, 3, 4, 4), seed) + offset).astype(np.float32)
    y = F.batch_norm(sk.Tensor(x), None, None, training=True).numpy().astype(np.float64)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-4)


def test_batch_norm_functional_updates_running_stats():
    x = rand((6, 2, 3, 3), 5, -3, 3)
    rm, rv = sk.Tensor(np.zeros(2)), sk.Tensor(np.ones(2))
    F.batch_norm(leaf(x), rm, rv, training=True, momentum=0.3)
    n = x.size // 2
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3)) * n / (n - 1)
    np.testing.assert_allclose(rm.numpy(), 0.3 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.7 + 0.3 * var, rtol=1e-12)


# =====================================================================================================
# pooling
# =====================================================================================================
@pytest.mark.parametrize("with_padding", [False, True])
@given(data=st.data())
def test_max_pool2d_forward_and_gradcheck(with_padding, data):
    cfg = data.draw(pool_configs(with_padding=with_padding))
    x = data.draw(unique_arrays(cfg.x_shape))
    fn = lambda t: F.max_pool2d(t, **cfg.kwargs)  # noqa: E731
    np.testing.assert_array_equal(fn(leaf(x)).numpy(), naive_max_pool2d(x, cfg.kernel, cfg.stride, cfg.padding))
    assert sk.gradcheck(fn, (leaf(x),))


@given(cfg=pool_configs(with_padding=True, max_kernel=3), seed=seeds(), nans=st.integers(0, 2))
def test_max_pool2d_ties_and_nan_follow_torch(cfg, seed, nans):
    """With ties the first maximum of a window (row by row) wins, and a NaN is the maximum of any window
    it is in, the last NaN's index, as PyTorch's kernel (`val > maxval || isnan(val)`): values, indices and the
    routed gradient, against a loop that is that rule."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 2, cfg.x_shape).astype(np.float64)  # many ties
    for _ in range(nans):
        x[tuple(rng.integers(0, n) for n in cfg.x_shape)] = np.nan
    xt = leaf(x)
    y, idx = F.max_pool2d(xt, **cfg.kwargs, return_indices=True)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    (kh, kw), (sh, sw), (ph, pw) = cfg.kernel, cfg.stride, cfg.padding
    want_y, want_idx, want_gx = np.empty(y.shape), np.empty(y.shape, np.int64), np.zeros(x.shape)
    for n, c, i, j in np.ndindex(*y.shape):
        best = None
        for a in range(kh):
            for b in range(kw):
                r, q = i * sh - ph + a, j * sw - pw + b
                if 0 <= r < cfg.H and 0 <= q < cfg.W:
                    v = x[n, c, r, q]
                    if best is None or v > best[0] or np.isnan(v):
                        best = (v, r, q)
        want_y[n, c, i, j], want_idx[n, c, i, j] = best[0], best[1] * cfg.W + best[2]
        want_gx[n, c, best[1], best[2]] += gy[n, c, i, j]
    np.testing.assert_array_equal(y.numpy(), want_y)
    np.testing.assert_array_equal(idx.numpy(), want_idx)
    np.testing.assert_allclose(xt.grad.numpy(), want_gx, rtol=1e-12, atol=1e-12)


def test_max_pool2d_default_stride_is_kernel_and_hand_value():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    t = leaf(x)
    y = F.max_pool2d(t, 2)
    np.testing.assert_array_equal(y.numpy(), [[[[5, 7], [13, 15]]]])
    y.sum().backward()
    g = np.zeros((4, 4))
    g[1::2, 1::2] = 1
    np.testing.assert_array_equal(t.grad.numpy()[0, 0], g)


def test_max_pool2d_padding_never_wins_for_negative_inputs():
    x = -1.0 - np.arange(9.0).reshape(1, 1, 3, 3)
    y = F.max_pool2d(leaf(x), 3, stride=1, padding=1).numpy()
    assert np.all(y < 0)
    np.testing.assert_array_equal(y, naive_max_pool2d(x, (3, 3), (1, 1), (1, 1)))


@pytest.mark.parametrize("count_include_pad", [True, False])
@given(data=st.data())
def test_avg_pool2d_forward_and_gradcheck(count_include_pad, data):
    cfg = data.draw(pool_configs(with_padding=True))
    x = data.draw(rng_arrays(cfg.x_shape))
    fn = lambda t: F.avg_pool2d(t, count_include_pad=count_include_pad, **cfg.kwargs)  # noqa: E731
    ref = naive_avg_pool2d(x, cfg.kernel, cfg.stride, cfg.padding, count_include_pad)
    np.testing.assert_allclose(fn(leaf(x)).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))


@given(cfg=pool_configs(with_padding=True), value=st.floats(-5, 5))
def test_avg_pool_of_constant_is_constant_without_pad_counting(cfg, value):
    x = np.full(cfg.x_shape, value)
    y = F.avg_pool2d(leaf(x), count_include_pad=False, **cfg.kwargs).numpy()
    np.testing.assert_allclose(y, value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hw, out", [((4, 4), 1), ((5, 7), 1), ((5, 4), (3, 3)), ((4, 6), (2, 3)),
                                     ((3, 5), (2, 4)), ((7, 3), (4, 2)), ((2, 2), (3, 3)), ((4, 5), (2, 3)),
                                     ((6, 5), (4, 3))])
@settings(max_examples=4)
@given(seed=seeds())
def test_adaptive_avg_pool2d_forward_and_gradcheck(hw, out, seed):
    x = rand((2, 2) + hw, seed)
    o = (out, out) if isinstance(out, int) else out
    fn = lambda t: F.adaptive_avg_pool2d(t, out)  # noqa: E731
    np.testing.assert_allclose(fn(leaf(x)).numpy(), naive_adaptive_avg_pool2d(x, o), rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))


# =====================================================================================================
# linear
# =====================================================================================================
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
@given(seed=seeds(), k=st.integers(1, 4), m=st.integers(1, 4))
def test_linear_forward_and_gradcheck(lead, bias, seed, k, m):
    x, w, b = rand(lead + (k,), seed), rand((m, k), seed + 1), rand((m,), seed + 2)
    ref = x @ w.T + (b if bias else 0.0)
    if bias:
        fn, inputs = (lambda x, w, b: F.linear(x, w, b)), (x, w, b)
    else:
        fn, inputs = (lambda x, w: F.linear(x, w)), (x, w)
    np.testing.assert_allclose(fn(*[leaf(a) for a in inputs]).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, tuple(leaf(a) for a in inputs))


# =====================================================================================================
# softmax family
# =====================================================================================================
@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_softmax_and_log_softmax(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(arrays(shape, -4, 4))
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    ref = e / e.sum(axis=dim, keepdims=True)
    s = F.softmax(leaf(x), dim).numpy()
    np.testing.assert_allclose(s, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.sum(axis=dim), 1.0, rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(leaf(x), dim).numpy(), np_log_softmax(x, dim), rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(lambda t: F.softmax(t, dim), (leaf(x),))
    assert sk.gradcheck(lambda t: F.log_softmax(t, dim), (leaf(x),))


def test_log_softmax_and_softmax_do_not_overflow():
    x = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, 0.0]])
    for dtype in (np.float32, np.float64):
        with np.errstate(over="raise", invalid="raise"):
            ls = F.log_softmax(sk.Tensor(x.astype(dtype)), 1).numpy()
            s = F.softmax(sk.Tensor(x.astype(dtype)), 1).numpy()
        assert np.all(np.isfinite(ls)) and np.all(np.isfinite(s))
        np.testing.assert_allclose(ls[0], [0.0, -1e4, -2e4], rtol=1e-6)
        np.testing.assert_allclose(ls[1], [-math.log(3)] * 3, rtol=1e-6)
        np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-6)


def test_logsigmoid_values_gradient_and_float32_tails():
    x = np.array([-800.0, -40.0, -1.5, 0.0, 0.7, 40.0, 800.0])
    # log(1 / (1 + e^-x)) by hand: -log1p(e^-x) for x >= 0, x - log1p(e^x) for x < 0
    ref = np.where(x >= 0, -np.log1p(np.exp(-np.abs(x))), x - np.log1p(np.exp(-np.abs(x))))
    np.testing.assert_allclose(F.logsigmoid(leaf(x)).numpy(), ref, rtol=1e-15, atol=0)
    assert F.logsigmoid(leaf(np.array([0.0]))).numpy()[0] == -math.log(2)
    assert sk.gradcheck(F.logsigmoid, (leaf(np.array([-3.0, -0.2, 0.0, 0.4, 5.0])),))
    x0 = leaf(np.array([0.0]))
    F.logsigmoid(x0).backward(sk.Tensor(np.array([1.0])))
    assert x0.grad.numpy()[0] == 0.5  # d/dx log sigmoid(x) = 1 - sigmoid(x): 1/2 at 0 (no kink there)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y32 = F.logsigmoid(sk.Tensor(np.array([-100.0, -30.0, 30.0], np.float32))).numpy()
    assert y32.dtype == np.float32 and np.allclose(y32, [-100.0, -30.0, -9.357623e-14], rtol=1e-6)


# =====================================================================================================
# losses
# =====================================================================================================
@st.composite
def logits_and_targets(draw, max_n=4, max_c=5):
    n, c = draw(st.integers(1, max_n)), draw(st.integers(1, max_c))
    x = draw(arrays((n, c), -3, 3))
    t = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), dtype=np.int64)
    return x, t


def ce_reference(x, t, eps, reduction):
    n, c = x.shape
    logp = np_log_softmax(x, 1)
    loss = -(1 - eps) * logp[np.arange(n), t] - eps / c * logp.sum(axis=1)
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35, 1.0])
@given(xt=logits_and_targets())
def test_cross_entropy_forward_and_gradcheck(reduction, label_smoothing, xt):
    x, t = xt
    fn = lambda s: F.cross_entropy(s, t, label_smoothing=label_smoothing, reduction=reduction)  # noqa: E731
    np.testing.assert_allclose(fn(leaf(x)).numpy(), ce_reference(x, t, label_smoothing, reduction),
                               rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))


@given(xt=logits_and_targets())
def test_cross_entropy_equals_mean_negative_log_softmax_at_target(xt):
    x, t = xt
    ls = F.log_softmax(leaf(x), 1)
    ref = -ls[np.arange(len(t)), t].mean()
    assert F.cross_entropy(leaf(x), t).item() == pytest.approx(ref.item(), rel=1e-12, abs=1e-12)
    assert F.cross_entropy(leaf(x), sk.Tensor(t)).item() == pytest.approx(ref.item(), rel=1e-12, abs=1e-12)
    assert F.nll_loss(ls, t).item() == pytest.approx(ref.item(), rel=1e-12, abs=1e-12)


def test_cross_entropy_hand_value():
    x = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = [.5,.5], [.75,.25]
    t = np.array([0, 1])
    assert F.cross_entropy(leaf(x), t).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert F.cross_entropy(leaf(x), t, reduction="sum").item() == pytest.approx(math.log(2) + math.log(4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(xt=logits_and_targets())
def test_nll_loss_forward_and_gradcheck(reduction, xt):
    x, t = xt
    fn = lambda s: F.nll_loss(s, t, reduction=reduction)  # noqa: E731
    picked = -x[np.arange(len(t)), t]
    ref = {"none": picked, "sum": picked.sum(), "mean": picked.mean()}[reduction]
    np.testing.assert_allclose(fn(leaf(x)).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))


# =====================================================================================================
# dropout
# =====================================================================================================
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds(), data=st.data())
def test_dropout_gradcheck_with_fixed_seed(p, shape, seed, data):
    x = data.draw(arrays(shape))

    def fn(t):
        sk.manual_seed(seed)  # the same mask on every call
        return F.dropout(t, p, training=True)

    y = fn(leaf(x)).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-12)
    assert sk.gradcheck(fn, (leaf(x),))


def test_dropout_same_seed_same_mask_different_seed_different_mask():
    x = leaf(np.ones(200))
    sk.manual_seed(3)
    a = F.dropout(x, 0.5).numpy()
    sk.manual_seed(3)
    b = F.dropout(x, 0.5).numpy()
    sk.manual_seed(4)
    c = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_edge_probabilities_and_eval():
    x = leaf(rand((3, 4), 1))
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.7, training=False) is x
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.numpy(), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)
