"""skengine.winograd, F(4, 3) along the width: its output equals a naive convolution (loops over taps on a padded
copy) and its weight gradient satisfies <dW, v> = <gy, conv(x, v)>, exactly in float64, for every padding and height
dilation, odd and even widths, one chunk or many; through conv2d it is taken exactly where
``applies`` says, and float32 stays within float32's rounding of the float64 result."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skengine import winograd
from test_convolution import check_kernel_in_float32, naive_conv

# (H, W, kh, padding, dilation): odd and even output widths, a padding wider than the kernel reaches, none, a kernel
# one or two rows high, a dilated height, a dilated width (phases of uneven lengths), a one-pixel row
CASES = [(6, 7, 3, (1, 1), (1, 1)), (5, 8, 3, (1, 1), (2, 1)), (7, 9, 1, (0, 1), (1, 1)), (6, 6, 3, (2, 2), (1, 1)),
         (6, 6, 3, (0, 0), (1, 1)), (5, 5, 2, (3, 3), (1, 1)), (15, 15, 3, (2, 1), (2, 1)), (6, 11, 3, (4, 3), (3, 1)),
         (1, 2, 3, (1, 1), (1, 1)), (9, 1, 3, (0, 1), (1, 1)), (15, 15, 3, (2, 2), (2, 2)), (7, 7, 3, (2, 2), (2, 2)),
         (6, 11, 3, (4, 3), (3, 2)), (5, 9, 3, (1, 4), (1, 3)), (4, 3, 3, (1, 2), (1, 2))]


@pytest.mark.parametrize("chunk_bytes", [1, 5000, 1 << 30])  # one image a chunk, an uneven last chunk, one chunk
@pytest.mark.parametrize("H, W, kh, padding, dilation", CASES)
def test_conv_and_weight_gradient_match_naive(H, W, kh, padding, dilation, chunk_bytes, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 3, H, W)), rng.standard_normal((4, 3, kh, 3))
    ref = naive_conv(x, w, (1, 1), padding, dilation, 1)
    y, none = winograd.conv(x, w, padding, dilation)
    assert none is None
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    gy, v = rng.standard_normal(ref.shape), rng.standard_normal(w.shape)
    nothing, dw = winograd.conv(x, w, padding, dilation, other=gy, need_y=False)
    assert nothing is None and dw.shape == w.shape
    assert np.isclose((dw * v).sum(), (gy * naive_conv(x, v, (1, 1), padding, dilation, 1)).sum(), rtol=1e-10)
    both = winograd.conv(x, w, padding, dilation, other=gy)
    np.testing.assert_allclose(both[0], y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(both[1], dw, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), o=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 12),
       kh=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 4), dh=st.integers(1, 3), dw=st.integers(1, 3),
       seed=st.integers(0, 2 ** 16))
def test_conv_matches_naive_on_any_geometry(n, c, o, h, w, kh, ph, pw, dh, dw, seed):
    out_h, out_w = h + 2 * ph - dh * (kh - 1), w + 2 * pw - 2 * dw
    if out_h < 1 or out_w < 1:
        return
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, 3))
    ref = naive_conv(x, wt, (1, 1), (ph, pw), (dh, dw), 1)
    gy = rng.standard_normal(ref.shape)
    y, dwt = winograd.conv(x, wt, (ph, pw), (dh, dw), other=gy)
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11)
    v = rng.standard_normal(wt.shape)
    assert np.isclose((dwt * v).sum(), (gy * naive_conv(x, v, (1, 1), (ph, pw), (dh, dw), 1)).sum(), rtol=1e-9)


@pytest.mark.parametrize("shape, stride, padding, dilation, groups, expected", [
    (((2, 64, 15, 15), (64, 64, 3, 3)), (1, 1), (1, 1), (1, 1), 1, True),
    (((2, 64, 15, 15), (64, 64, 3, 3)), (1, 1), (2, 1), (2, 1), 1, True),    # a dilated height
    (((2, 64, 15, 15), (64, 64, 3, 3)), (1, 1), (2, 2), (2, 2), 1, True),    # a dilated width: 2 phases
    (((2, 64, 15, 15), (64, 32, 3, 3)), (1, 1), (1, 1), (1, 1), 2, False),   # groups
    (((2, 64, 15, 15), (64, 64, 3, 3)), (2, 2), (1, 1), (1, 1), 1, False),   # stride
    (((2, 64, 15, 15), (64, 64, 5, 5)), (1, 1), (2, 2), (1, 1), 1, False),   # kernel width
    (((2, 24, 31, 31), (64, 24, 3, 3)), (1, 1), (1, 1), (1, 1), 1, True),    # the fast network's first block
    (((2, 8, 31, 31), (64, 8, 3, 3)), (1, 1), (1, 1), (1, 1), 1, False),     # few input channels
    (((2, 64, 31, 31), (8, 64, 3, 3)), (1, 1), (1, 1), (1, 1), 1, False),    # few output channels
    (((2, 128, 3, 3), (128, 128, 3, 3)), (1, 1), (1, 1), (1, 1), 1, False),  # a narrow output
])
def test_applies_where_it_pays(shape, stride, padding, dilation, groups, expected):
    x, w = np.zeros(shape[0], np.float32), np.zeros(shape[1], np.float32)
    assert winograd.applies(x, w, stride, padding, dilation, groups) is expected
    assert winograd.applies(x.astype(np.float64), w, stride, padding, dilation, groups) is False  # mixed dtypes
    assert winograd.applies(x.astype(np.float16), w.astype(np.float16), stride, padding, dilation, groups) is False


@pytest.mark.parametrize("dilation", [(1, 1), (2, 1), (2, 2)])
def test_conv2d_goes_through_it_and_agrees_with_im2col_in_float32(dilation, monkeypatch):
    """The shapes of the fast network's 15 px layers: conv2d's forward and both backward products (dX through the
    transposed convolution, dW from its columns) through Winograd agree with the im2col engine to float32's
    rounding, measured against float64."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 64, 15, 15))
    w = rng.standard_normal((64, 64, 3, 3)) * 0.05
    geometry = ((1, 1), dilation, dilation, 1)
    check_kernel_in_float32(monkeypatch, winograd, ("MIN_CHANNELS", 10 ** 9), x, w, geometry)
