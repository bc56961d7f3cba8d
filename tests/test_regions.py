"""skengine.regions, convolution rectangle by rectangle over the taps that read the image: its bands by hand, its
output equal to a naive convolution (loops over taps on a padded copy) and its weight gradient satisfying
<dW, v> = <gy, conv(x, v)> in float64 on any stride-1 geometry and any input strides; through conv2d it is taken
exactly where ``applies`` says, and float32 stays within float32's rounding of the float64 result."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skengine import regions
from test_convolution import check_kernel_in_float32, naive_conv


@pytest.mark.parametrize("size, k, padding, dilation, expected", [
    (3, 3, 1, 1, [(0, 1, 1, 3), (1, 2, 0, 3), (2, 3, 0, 2)]),   # the first row misses the tap above the image
    (3, 3, 2, 2, [(0, 1, 1, 3), (1, 2, 1, 2), (2, 3, 0, 2)]),   # dilated: the middle row reads with its centre only
    (7, 3, 2, 2, [(0, 2, 1, 3), (2, 5, 0, 3), (5, 7, 0, 2)]),
    (5, 3, 0, 1, [(0, 3, 0, 3)]),                              # no padding: one band
    (2, 3, 4, 1, [(2, 3, 2, 3), (3, 4, 1, 3), (4, 5, 0, 2), (5, 6, 0, 1)]),  # outputs 0, 1, 6, 7 read nothing
])
def test_bands_by_hand(size, k, padding, dilation, expected):
    assert regions.bands(size, k, padding, dilation) == expected


def test_useful_by_hand():
    # 3x3 dilated by 2 on a 3x3 map: 5 live (output, tap) pairs of 9 along each axis; the flat columns' rows have
    # a pitch of 3 + 2 = 5 for 3 outputs
    assert regions.useful((3, 3), (3, 3), (2, 2), (2, 2)) == pytest.approx((5 / 9) ** 2 * 3 / 5)
    assert regions.useful((8, 8), (3, 3), (0, 0), (1, 1)) == pytest.approx(6 / 8)  # no padding: pitch 8, 6 outputs


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), o=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 3), kw=st.integers(1, 3), ph=st.integers(0, 4), pw=st.integers(0, 4), dh=st.integers(1, 3),
       dw=st.integers(1, 3), chunk=st.sampled_from([1, 3000, 1 << 30]), view=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_conv_and_weight_gradient_match_naive(n, c, o, h, w, kh, kw, ph, pw, dh, dw, chunk, view, seed):
    out_h, out_w = h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)
    if out_h < 1 or out_w < 1:
        return
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw))
    if view:  # a strided view of a bigger array, channels reversed: the kernel reads strides as they are
        x = np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 2)))[:, ::-1, 1:, :w]
    ref = naive_conv(x, wt, (1, 1), (ph, pw), (dh, dw), 1)
    gy, v = rng.standard_normal(ref.shape), rng.standard_normal(wt.shape)
    original = regions.CHUNK_BYTES
    regions.CHUNK_BYTES = chunk  # hypothesis runs the examples in one test call: no fixture resets per example
    try:
        y, dwt = regions.conv(x, wt, (ph, pw), (dh, dw), other=gy)
        alone, none = regions.conv(x, wt, (ph, pw), (dh, dw))
        nothing, dw_alone = regions.conv(x, wt, (ph, pw), (dh, dw), other=gy, need_y=False)
    finally:
        regions.CHUNK_BYTES = original
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(alone, ref, rtol=1e-11, atol=1e-11)
    assert none is None and nothing is None and dwt.shape == wt.shape
    np.testing.assert_allclose(dw_alone, dwt, rtol=1e-12, atol=1e-12)
    assert np.isclose((dwt * v).sum(), (gy * naive_conv(x, v, (1, 1), (ph, pw), (dh, dw), 1)).sum(), rtol=1e-9)


@pytest.mark.parametrize("shape, stride, padding, dilation, groups, expected", [
    (((2, 128, 3, 3), (128, 128, 3, 3)), (1, 1), (1, 1), (1, 1), 1, True),    # useful 0.45
    (((2, 128, 3, 3), (128, 128, 3, 3)), (1, 1), (2, 2), (2, 2), 1, True),    # useful 0.19
    (((2, 128, 7, 7), (128, 128, 3, 3)), (1, 1), (2, 2), (2, 2), 1, True),    # useful 0.51
    (((2, 128, 7, 7), (128, 128, 3, 3)), (1, 1), (1, 1), (1, 1), 1, False),   # useful 0.72: Winograd's
    (((2, 64, 15, 15), (64, 64, 3, 3)), (1, 1), (2, 2), (2, 2), 1, False),    # useful 0.73
    (((2, 128, 3, 3), (128, 32, 3, 3)), (1, 1), (1, 1), (1, 1), 4, False),    # groups
    (((2, 128, 3, 3), (128, 128, 3, 3)), (2, 2), (1, 1), (1, 1), 1, False),   # stride
])
def test_applies_where_it_pays(shape, stride, padding, dilation, groups, expected):
    x, w = np.zeros(shape[0], np.float32), np.zeros(shape[1], np.float32)
    assert regions.applies(x, w, stride, padding, dilation, groups) is expected
    assert regions.applies(x.astype(np.float64), w, stride, padding, dilation, groups) is False  # mixed dtypes
    assert regions.applies(x.astype(np.float16), w.astype(np.float16), stride, padding, dilation, groups) is False


@pytest.mark.parametrize("size, dilation", [(3, 1), (3, 2)])
def test_conv2d_goes_through_it_and_agrees_with_im2col_in_float32(size, dilation, monkeypatch):
    """The shapes of the fast network's small SK paths: conv2d's forward and both backward products (dX through the
    transposed convolution, dW from its columns) through the rectangles agree with the flat im2col engine to
    float32's rounding, measured against float64."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 128, size, size))
    w = rng.standard_normal((128, 128, 3, 3)) * 0.05
    geometry = ((1, 1), (dilation, dilation), (dilation, dilation), 1)
    check_kernel_in_float32(monkeypatch, regions, ("USEFUL_BELOW", 0), x, w, geometry)
