"""The flat im2col kernels and the chunked Conv2d against simple references.

References: the tap-loop ``im2col`` / ``col2im`` (layout (N, C, kh, kw, OH, OW))
and a naive convolution that loops over kernel taps on an explicitly padded
input.  Gradients are checked through the adjoint identities
<dX, u> = <gy, conv(u, w)> and <dW, v> = <gy, conv(x, v)>, exact in float64.
"""
import itertools

import numpy as np
import pytest

import skengine as sk
import skengine.functional as F
from skengine.im2col import (col2im, col2im_flat, flat_geometry, im2col, im2col_flat, pad_phases,
                             unpad_phases)

# (H, W, kernel, stride, padding, dilation)
GEOMETRIES = [
    (7, 7, (3, 3), (1, 1), (1, 1), (1, 1)),
    (8, 6, (3, 3), (1, 1), (2, 2), (2, 2)),
    (9, 7, (3, 3), (2, 2), (1, 1), (1, 1)),
    (10, 9, (3, 3), (2, 2), (2, 2), (2, 2)),
    (8, 11, (2, 4), (3, 2), (1, 2), (1, 2)),
    (5, 6, (3, 2), (1, 2), (0, 3), (2, 1)),
    (6, 6, (1, 1), (2, 2), (1, 1), (1, 1)),
    (7, 6, (1, 1), (2, 2), (0, 0), (1, 1)),  # 1x1 without padding: no columns
    (5, 4, (1, 1), (1, 1), (0, 0), (1, 1)),
    (4, 5, (3, 3), (1, 1), (3, 3), (1, 1)),  # padding beyond the kernel's reach
    (5, 5, (5, 5), (1, 1), (0, 0), (1, 1)),
]


def naive_conv(x, w, stride, padding, dilation, groups):
    """Loop over taps on a padded copy of x."""
    (N, C, H, W), (O, Cg, kh, kw) = x.shape, w.shape
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


def flat_columns(x, g, kernel):
    """The flat columns of x in the reference layout (N, C, kh, kw, OH, OW), garbage dropped."""
    N, C = x.shape[:2]
    (OH, OW), P, S = g.out_size, g.pitch, g.stride[0] * g.stride[1]
    xph = pad_phases(x, g, np.zeros((N, C, S, g.phase_len)))
    col = im2col_flat(xph, g, np.zeros((C, len(g.taps), N, OH * P)))
    col = col.reshape(C, *kernel, N, OH, P)[..., :OW]
    return col.transpose(3, 0, 1, 2, 4, 5)


@pytest.mark.parametrize("H, W, kernel, stride, padding, dilation", GEOMETRIES)
def test_flat_im2col_equals_reference(H, W, kernel, stride, padding, dilation):
    x = np.random.default_rng(0).standard_normal((2, 3, H, W))
    g = flat_geometry((H, W), kernel, stride, padding, dilation)
    ref = im2col(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(flat_columns(x, g, kernel), ref)


@pytest.mark.parametrize("H, W, kernel, stride, padding, dilation", GEOMETRIES)
def test_flat_kernels_are_adjoint(H, W, kernel, stride, padding, dilation):
    rng = np.random.default_rng(1)
    N, C = 2, 3
    g = flat_geometry((H, W), kernel, stride, padding, dilation)
    (OH, OW), P, S, T = g.out_size, g.pitch, stride[0] * stride[1], len(g.taps)
    x = rng.standard_normal((N, C, H, W))
    c = np.zeros((C, T, N, OH, P))
    c[..., :OW] = rng.standard_normal((C, T, N, OH, OW))  # garbage columns zero
    c = c.reshape(C, T, N, OH * P)
    col = im2col_flat(pad_phases(x, g, np.zeros((N, C, S, g.phase_len))), g, np.zeros_like(c))
    back = unpad_phases(col2im_flat(c, g, np.full((N, C, S, g.phase_len), 7.0)), g, np.full_like(x, 7.0))
    assert np.isclose((col * c).sum(), (x * back).sum(), rtol=1e-12)
    # and the flat col2im equals the reference col2im
    ref = col2im(c.reshape(C, *kernel, N, OH, P)[..., :OW].transpose(3, 0, 1, 2, 4, 5), (H, W),
                 stride, padding, dilation)
    np.testing.assert_allclose(back, ref, rtol=1e-12, atol=1e-12)


def _conv(x, w, groups, stride, padding, dilation, chunk_bytes, grad=True):
    old = F.Conv2d.chunk_bytes
    F.Conv2d.chunk_bytes = chunk_bytes
    try:
        tx, tw = sk.Tensor(x, requires_grad=grad), sk.Tensor(w, requires_grad=grad)
        return tx, tw, F.conv2d(tx, tw, stride=stride, padding=padding, dilation=dilation, groups=groups)
    finally:
        F.Conv2d.chunk_bytes = old


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
    fn = F.Conv2d((1, 1), (0, 0), (1, 1), G)
    fn.chunk_bytes = chunk_bytes
    seen = np.zeros((N, G), int)
    for (n0, n1), (g0, g1) in fn._chunks(np, N, G, unit_bytes, M):
        assert n1 > n0 and g1 > g0 and G % (g1 - g0) == 0
        seen[n0:n1, g0:g1] += 1
        if (n1 - n0) * (g1 - g0) > 1:  # more than one unit only when it fits
            assert (n1 - n0) * (g1 - g0) * unit_bytes <= chunk_bytes
    assert (seen == 1).all()
