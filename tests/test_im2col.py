"""The flat im2col kernels against the tap-loop ``im2col`` / ``col2im`` (layout (N, C, kh, kw, OH, OW)),
and those against their definition and against each other (<im2col(x), c> = <x, col2im(c)>)."""
import numpy as np
import pytest
from hypothesis import given

from skengine.im2col import col2im, col2im_flat, flat_geometry, im2col, im2col_flat, pad_phases, unpad_phases
from strategies import conv_configs, seeds
from test_functional import rand

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
    (1, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # only the centre tap reads the image: a 1x1 conv
    (2, 2, (3, 3), (1, 1), (2, 2), (2, 2)),  # likewise, dilated
    (1, 3, (3, 3), (2, 2), (1, 1), (1, 1)),  # one live tap in rows, three in columns
    (2, 1, (3, 1), (2, 1), (1, 0), (1, 1)),
]


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


# -- the tap-loop im2col / col2im -----------------------------------------------------------------------
@given(cfg=conv_configs(max_kernel=4, max_extra=5), seed=seeds())
def test_im2col_matches_definition(cfg, seed):
    x = rand(cfg.x_shape, seed)
    col = im2col(x, cfg.kernel, **cfg.col_kwargs)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cfg.kernel, cfg.stride, cfg.padding, cfg.dilation
    OH, OW = cfg.out_hw
    assert col.shape == (cfg.N, cfg.C_in, kh, kw, OH, OW)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for i in range(kh):
        for j in range(kw):
            ref = xp[:, :, i * dh:i * dh + (OH - 1) * sh + 1:sh, j * dw:j * dw + (OW - 1) * sw + 1:sw]
            np.testing.assert_array_equal(col[:, :, i, j], ref)


@given(cfg=conv_configs(max_kernel=4, max_extra=5), seed=seeds())
def test_im2col_col2im_adjoint(cfg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg.x_shape)
    OH, OW = cfg.out_hw
    c = rng.standard_normal((cfg.N, cfg.C_in) + tuple(cfg.kernel) + (OH, OW))
    lhs = float((im2col(x, cfg.kernel, **cfg.col_kwargs) * c).sum())
    back = col2im(c, (cfg.H, cfg.W), **cfg.col_kwargs)
    assert back.shape == cfg.x_shape
    rhs = float((x * back).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)
