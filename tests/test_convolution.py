"""skengine.convolution, the array engine under F.conv2d: chunked over images and groups, it equals a
naive convolution that loops over kernel taps on an explicitly padded input, and one chunk.  Gradients are
checked through the adjoint identities <dX, u> = <gy, conv(u, w)> and <dW, v> = <gy, conv(x, v)>, exact in
float64."""
import itertools
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import skengine as sk
import skengine.functional as F
from skengine import convolution
from strategies import conv_configs, seeds
from test_functional import _conv_inputs, _conv_value_and_grads, naive_conv2d
from test_im2col import GEOMETRIES


def naive_conv(x, w, stride, padding, dilation, groups):
    """Loop over taps on a padded copy of x."""
    (N, _, H, W), (O, Cg, kh, kw) = x.shape, w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((N, groups, O // groups, OH, OW), x.dtype)
    wg = w.reshape(groups, O // groups, Cg, kh, kw)
    for i, j in itertools.product(range(kh), range(kw)):
        patch = xpad[:, :, i * dh:i * dh + (OH - 1) * sh + 1:sh, j * dw:j * dw + (OW - 1) * sw + 1:sw]
        y += np.einsum("ngchw,goc->ngohw", patch.reshape(N, groups, Cg, OH, OW), wg[..., i, j])
    return y.reshape(N, O, OH, OW)


def check_kernel_in_float32(monkeypatch, kernel, switch_off, x, w, geometry):
    """conv2d's forward and both backward products go through ``kernel`` (a module with ``conv``: forward, and
    backward's one transposed convolution with dW alongside) and agree in float32 with the engine without it
    (``switch_off``: (attribute, value) that keeps the kernel out) in float64, to float32's rounding."""
    calls = []
    real = kernel.conv
    monkeypatch.setattr(kernel, "conv", lambda *a, **k: calls.append(1) or real(*a, **k))
    y32 = convolution.conv2d_forward(x.astype(np.float32), w.astype(np.float32), *geometry)
    gy = np.random.default_rng(2).standard_normal(y32.shape)
    gx32, gw32 = convolution.conv2d_backward(x.astype(np.float32), w.astype(np.float32), gy.astype(np.float32),
                                             *geometry)
    assert len(calls) == 2
    monkeypatch.setattr(kernel, *switch_off)
    y64 = convolution.conv2d_forward(x, w, *geometry)
    gx64, gw64 = convolution.conv2d_backward(x, w, gy, *geometry)
    assert len(calls) == 2
    for a32, a64 in ((y32, y64), (gx32, gx64), (gw32, gw64)):
        assert a32.dtype == np.float32
        assert np.abs(a32 - a64).max() <= 2e-6 * np.abs(a64).max() * np.sqrt(w.shape[1] * 9)


def _conv(x, w, groups, stride, padding, dilation, chunk_bytes, grad=True):
    with mock.patch.object(convolution, "CHUNK_BYTES", chunk_bytes):
        tx, tw = sk.Tensor(x, requires_grad=grad), sk.Tensor(w, requires_grad=grad)
        return tx, tw, F.conv2d(tx, tw, stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("chunk_bytes", [1, 3000, 1 << 30])  # one image per chunk, uneven chunks, one chunk
@pytest.mark.parametrize("groups, out_per_group", [(1, 2), (3, 2), (4, 1), (2, 16)])  # 16: the product transposed
@pytest.mark.parametrize("H, W, kernel, stride, padding, dilation", GEOMETRIES)
def test_conv2d_chunks_match_naive(H, W, kernel, stride, padding, dilation, groups, out_per_group, chunk_bytes):
    rng = np.random.default_rng(2)
    N, C, O = 5, 3 * groups, out_per_group * groups
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C // groups, *kernel))
    tx, tw, y = _conv(x, w, groups, stride, padding, dilation, chunk_bytes)
    ref = naive_conv(x, w, stride, padding, dilation, groups)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(ref.shape)
    y.backward(gy)
    u, v = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    assert np.isclose((tx.grad.numpy() * u).sum(), (gy * naive_conv(u, w, stride, padding, dilation, groups)).sum(),
                      rtol=1e-10)
    assert np.isclose((tw.grad.numpy() * v).sum(), (gy * naive_conv(x, v, stride, padding, dilation, groups)).sum(),
                      rtol=1e-10)


def test_conv2d_float32_chunked_equals_one_chunk():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    outs = []
    for chunk_bytes in (1, 1 << 30):
        tx, tw, y = _conv(x, w, 4, 1, 2, 2, chunk_bytes)
        y.backward(np.ones(y.shape, np.float32))
        outs.append((y.numpy(), tx.grad.numpy(), tw.grad.numpy()))
        assert y.dtype == tx.grad.dtype == tw.grad.dtype == np.float32
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("N, G, unit_bytes, M", [(5, 4, 100, 7), (5, 4, 1000, 600), (7, 6, 300, 30), (3, 32, 10**9, 9),
                                                 (64, 32, 76032, 1056), (16, 32, 64512, 56), (9, 1, 50, 1000)])
@pytest.mark.parametrize("chunk_bytes", [1, 1000, 3000, 1 << 21])
def test_chunks_tile_images_by_groups(N, G, unit_bytes, M, chunk_bytes):
    seen = np.zeros((N, G), int)
    for (n0, n1), (g0, g1) in convolution.chunks(np, N, G, unit_bytes, M, chunk_bytes):
        assert n1 > n0 and g1 > g0 and G % (g1 - g0) == 0
        seen[n0:n1, g0:g1] += 1
        if (n1 - n0) * (g1 - g0) > 1:  # more than one unit only when it fits
            assert (n1 - n0) * (g1 - g0) * unit_bytes <= chunk_bytes
    assert (seen == 1).all()


@given(cfg=conv_configs(max_batch=5), seed=seeds(), chunk_bytes=st.integers(1, 1 << 14))
def test_conv2d_batch_chunking_gives_the_same_result(cfg, seed, chunk_bytes):
    """CPU conv processes the batch in chunks (CHUNK_BYTES); any chunking must agree with one chunk."""
    x, w, b = _conv_inputs(cfg, seed)
    with mock.patch.object(convolution, "CHUNK_BYTES", 1 << 40):
        whole = _conv_value_and_grads(cfg, x, w, b)
    with mock.patch.object(convolution, "CHUNK_BYTES", chunk_bytes):
        chunked = _conv_value_and_grads(cfg, x, w, b)
    np.testing.assert_allclose(whole[0], naive_conv2d(x, w, b, **cfg.kwargs), rtol=1e-10, atol=1e-12)
    for a, c in zip(whole, chunked):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, O, kwargs, out", [
    (1, 6, {}, (7, 8)), (1, 6, dict(stride=2), (4, 4)), (1, 6, dict(groups=2), (7, 8)),  # the 1x1 path
    (1, 6, dict(padding=1), (9, 10)), (3, 6, {}, (5, 6)), (3, 6, dict(stride=2, padding=1), (4, 4)),
    (3, 6, dict(groups=2, padding=1), (7, 8)), (3, 32, {}, (5, 6)), (3, 6, dict(dilation=2, padding=2), (7, 8)),
    (3, 4, dict(groups=4, stride=(2, 1)), (3, 6)),
])
def test_conv2d_empty_batch_on_every_path(kernel, O, kwargs, out):
    """N = 0 gives torch's empty (0, O, OH, OW) output and zero gradients, forward and backward on every path
    (the 1x1 path used to fail on a reshape with -1)."""
    G = kwargs.get("groups", 1)
    x = sk.Tensor(np.zeros((0, 4, 7, 8)), requires_grad=True)
    w = sk.Tensor(np.random.default_rng(0).standard_normal((O, 4 // G, kernel, kernel)), requires_grad=True)
    b = sk.Tensor(np.ones(O), requires_grad=True)
    y = F.conv2d(x, w, b, **kwargs)
    assert y.shape == (0, O) + out
    (y * 2).sum().backward()
    assert x.grad.shape == x.shape
    for t in (w, b):
        assert t.grad.shape == t.shape and not t.grad.numpy().any()


def test_conv2d_zero_output_or_input_channels():
    """O = 0 gives an empty output and zero dX; C = 0 works with an empty batch (torch likewise)."""
    x = sk.Tensor(np.ones((2, 3, 5, 5)), requires_grad=True)
    for k, stride, out in ((3, 2, (2, 2)), (3, 1, (3, 3)), (1, 2, (3, 3))):
        w = sk.Tensor(np.zeros((0, 3, k, k)), requires_grad=True)
        y = F.conv2d(x, w, stride=stride)
        assert y.shape == (2, 0) + out
        y.sum().backward()
        assert not x.grad.numpy().any() and w.grad.shape == w.shape
        x.grad = None
    empty = F.conv2d(sk.Tensor(np.zeros((0, 0, 5, 5))), sk.Tensor(np.zeros((4, 0, 3, 3))), padding=1)
    assert empty.shape == (0, 4, 5, 5)


def test_a_frozen_conv_on_an_input_computes_only_its_bias_gradient(monkeypatch):
    """A whitening layer (the image in, its weight frozen) ran the whole convolution backward for gradients that
    nobody takes; the bias's gradient is the output gradient's sum either way."""
    import skengine.functional.conv as conv_fn

    rng = np.random.default_rng(0)
    x = sk.Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = sk.Tensor(rng.standard_normal((4, 3, 2, 2)).astype(np.float32))
    b = sk.Tensor(np.zeros(4, np.float32), requires_grad=True)
    calls = []
    real = conv_fn.conv2d_backward
    monkeypatch.setattr(conv_fn, "conv2d_backward", lambda *a, need: calls.append(need) or real(*a, need=need))
    y = F.conv2d(x, w, b)
    (y * y).sum().backward()
    assert calls in ([], [(False, False)]) and x.grad is None and w.grad is None
    np.testing.assert_allclose(b.grad.numpy(), (2 * y.data).sum(axis=(0, 2, 3)), rtol=1e-5)
    w.requires_grad_(True)
    calls.clear()
    (F.conv2d(x, w, b) ** 2).sum().backward()
    assert calls == [(False, True)] and w.grad is not None and x.grad is None


@pytest.mark.parametrize("H, W, kernel, stride, padding, dilation", GEOMETRIES)
@pytest.mark.parametrize("need", [(True, False), (False, True)])
def test_conv2d_backward_computes_only_what_is_needed(H, W, kernel, stride, padding, dilation, need):
    """The first convolution after a frozen layer needs only dW (and a frozen convolution only dX): the other
    comes back None, and the one asked for equals the full backward's on every path (1x1, stride 1, strided)."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 4, H, W)), rng.standard_normal((6, 2, *kernel))
    geometry = (stride, padding, dilation, 2)
    gy = rng.standard_normal(convolution.conv2d_forward(x, w, *geometry).shape)
    full = convolution.conv2d_backward(x, w, gy, *geometry)
    part = convolution.conv2d_backward(x, w, gy, *geometry, need=need)
    for wanted, got, ref in zip(need, part, full):
        if wanted:
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
        else:
            assert got is None

