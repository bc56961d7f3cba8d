"""Hypothesis strategies shared by the tests: shapes, float64 arrays (also as non-contiguous views), conv and pool
configurations.

Everything here is kept tiny on purpose: ``skengine.gradcheck`` runs two
forwards per input element, so a few dozen elements per input is the budget.
"""
import math
from dataclasses import dataclass

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


# -- shapes -------------------------------------------------------------------------
def shapes(min_dims=1, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcast_pairs(min_dims=0, max_dims=3, max_side=4):
    """(shape_a, shape_b) that broadcast together, both ways round (size-1 axes, missing leading axes)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=min_dims, max_dims=max_dims,
                                             max_side=max_side).map(lambda s: s.input_shapes)


# -- arrays -------------------------------------------------------------------------
def arrays(shape, lo=-2.0, hi=2.0):
    """float64 arrays of ``shape`` with finite values in [lo, hi]."""
    return hnp.arrays(np.float64, shape,
                      elements=st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64))


def arrays_of_shapes(shape_strategy, lo=-2.0, hi=2.0):
    return shape_strategy.flatmap(lambda s: arrays(s, lo, hi))


def away_from(a, kinks=(0.0,), margin=0.1):
    """Shift every value at least ``margin`` away from each kink (abs/relu at 0, ...), keeping its side."""
    a = np.array(a, dtype=np.float64, copy=True)
    for k in kinks:
        d = a - k
        a = k + np.where(d >= 0, 1.0, -1.0) * (np.abs(d) + margin)
    return a


def nonzero_arrays(shape, lo=-2.0, hi=2.0, margin=0.3):
    """Arrays with |value| >= margin (safe divisors, abs/relu away from their kink)."""
    return arrays(shape, lo, hi).map(lambda a: away_from(a, (0.0,), margin))


def positive_arrays(shape, lo=0.2, hi=3.0):
    """Strictly positive arrays (log, sqrt, fractional powers)."""
    return arrays(shape, lo, hi)


@st.composite
def unique_arrays(draw, shape, scale=0.1):
    """Arrays whose values are pairwise at least ``0.6 * scale`` apart (no ties for max / max-pool / argmax).

    A random permutation of an evenly spaced grid plus a per-element jitter
    below 0.4 * scale, so finite differences (eps=1e-6) never change which
    element is the maximum.
    """
    n = math.prod(shape)
    perm = np.array(draw(st.permutations(range(n))), dtype=np.float64)
    jitter = np.random.default_rng(draw(seeds())).uniform(0.0, 0.4 * scale, n)
    return ((perm - n / 2) * scale + jitter).reshape(shape)


def seeds():
    return st.integers(0, 2 ** 32 - 1)


def rng_arrays(shape, lo=-2.0, hi=2.0):
    """Dense random float64 arrays from a drawn seed (quicker than element-wise draws for bigger inputs)."""
    return seeds().map(lambda s: np.random.default_rng(s).uniform(lo, hi, shape))


@st.composite
def strided(draw, array_strategy, fill=np.nan):
    """The arrays of ``array_strategy``, values unchanged, as non-contiguous views of a bigger array.

    Each draw permutes the axes (a transpose / swapaxes of the stored array), steps every axis by
    1, 2, -1 or -2 (step and reversed slices) from an offset of 0 or 1, and fills the elements the
    view skips with ``fill`` (NaN: an op that reads past its view gets NaN, which gradcheck fails).
    Arrays of more than one element are never C-contiguous; a 0-d array comes back as it was.
    """
    a = np.asarray(draw(array_strategy))
    if a.ndim == 0:
        return a
    perm = draw(st.permutations(range(a.ndim)))
    stored = [a.shape[perm.index(k)] for k in range(a.ndim)]  # view = stored_view.transpose(perm)
    steps = [draw(st.sampled_from((1, 2, -1, -2))) for _ in stored]
    offsets = [draw(st.integers(0, 1)) for _ in stored]
    view = _strided_view(a, perm, stored, steps, offsets, fill)
    if a.size > 1 and view.flags.c_contiguous:  # identity perm, unit steps: stride the last long axis
        last = max(k for k, n in enumerate(stored) if n > 1)
        steps[last] = 2
        view = _strided_view(a, perm, stored, steps, offsets, fill)
    assert view.shape == a.shape and not (a.size > 1 and view.flags.c_contiguous)
    return view


def _strided_view(a, perm, stored, steps, offsets, fill):
    fill = fill if a.dtype.kind in "fc" else 0
    base = np.full([o + abs(s) * (n - 1) + 1 for n, s, o in zip(stored, steps, offsets)], fill, dtype=a.dtype)
    index = tuple(slice(o, None, s) if s > 0 else slice(m - 1 - o, None, s)
                  for s, o, m in zip(steps, offsets, base.shape))
    view = base[index].transpose(perm)
    view[...] = a
    return view


def strided_arrays(shape, lo=-2.0, hi=2.0):
    """``arrays(shape, lo, hi)`` as non-contiguous views (see ``strided``)."""
    return strided(arrays(shape, lo, hi))


# -- convolution configurations ----------------------------------------------------------
@dataclass(frozen=True)
class ConvConfig:
    N: int
    C_in: int
    C_out: int
    groups: int
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    H: int
    W: int
    bias: bool

    @property
    def x_shape(self):
        return (self.N, self.C_in, self.H, self.W)

    @property
    def w_shape(self):
        return (self.C_out, self.C_in // self.groups) + tuple(self.kernel)

    @property
    def out_hw(self):
        return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                     for size, k, s, p, d in zip((self.H, self.W), self.kernel, self.stride, self.padding,
                                                 self.dilation))

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    @property
    def col_kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)


def _min_size(k, p, d):
    """Smallest input side that leaves at least one output position."""
    return max(1, d * (k - 1) + 1 - 2 * p)


@st.composite
def conv_configs(draw, max_groups=3, max_per_group=2, max_kernel=3, max_stride=3, max_padding=2,
                 max_dilation=2, max_extra=4, max_batch=2, max_x_numel=None):
    """Valid conv2d configurations: groups divide C_in and C_out, non-square kernels, strides,
    paddings and dilations, and an input just large enough (plus a little) for them."""
    groups = draw(st.integers(1, max_groups))
    C_in = groups * draw(st.integers(1, max_per_group))
    C_out = groups * draw(st.integers(1, max_per_group))
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    padding = (draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding)))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    H = _min_size(kernel[0], padding[0], dilation[0]) + draw(st.integers(0, max_extra))
    W = _min_size(kernel[1], padding[1], dilation[1]) + draw(st.integers(0, max_extra))
    N = draw(st.integers(1, max_batch))
    cfg = ConvConfig(N, C_in, C_out, groups, kernel, stride, padding, dilation, H, W, draw(st.booleans()))
    if max_x_numel is not None:
        assume(math.prod(cfg.x_shape) <= max_x_numel)
    assert min(cfg.out_hw) >= 1
    return cfg


def small_conv_configs():
    """Conv configs small enough for gradcheck (x and w a few dozen to a few hundred elements)."""
    return conv_configs(max_groups=2, max_per_group=2, max_extra=2, max_batch=2, max_x_numel=160)


# -- pooling configurations ---------------------------------------------------------------
@dataclass(frozen=True)
class PoolConfig:
    N: int
    C: int
    H: int
    W: int
    kernel: tuple
    stride: tuple
    padding: tuple

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def out_hw(self):
        return tuple((size + 2 * p - k) // s + 1
                     for size, k, s, p in zip((self.H, self.W), self.kernel, self.stride, self.padding))

    @property
    def kwargs(self):
        return dict(kernel_size=self.kernel, stride=self.stride, padding=self.padding)


@st.composite
def pool_configs(draw, max_kernel=3, max_stride=3, with_padding=True, max_extra=3, max_batch=2, max_channels=2):
    """Valid pooling configurations: padding at most half the kernel, input at least one window."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    if with_padding:
        padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    else:
        padding = (0, 0)
    H = max(1, kernel[0] - 2 * padding[0]) + draw(st.integers(0, max_extra))
    W = max(1, kernel[1] - 2 * padding[1]) + draw(st.integers(0, max_extra))
    cfg = PoolConfig(draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), H, W,
                     kernel, stride, padding)
    assert min(cfg.out_hw) >= 1
    return cfg
