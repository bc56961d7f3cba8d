"""Neural-network functions with PyTorch's names and semantics (``import skengine.functional as F``).

The heavy ones (convolution, batch norm, pooling, softmax family, losses)
are single Functions with a hand-written backward; the light ones compose
the tensor ops.
"""
import functools
import math

import numpy as np

from . import ops, random
from .autograd import Function, Tensor
from .backend import get_array_module
from .parallel import run_blocks
from .im2col import (col2im, col2im_flat, conv_output_size, flat_geometry, im2col, im2col_flat,
                     pad_phases, unpad_phases)

relu, sigmoid, tanh = ops.relu, ops.sigmoid, ops.tanh


def _pair(v, name):
    try:
        t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    except TypeError:  # not iterable (a float, None, ...)
        t = ()
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) for i in t):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(int(i) for i in t)


def _tensor(x, name):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a skengine.Tensor, got {type(x).__name__}")
    return x


# -- activations ----------------------------------------------------------------
class LeakyReLU(Function):
    """x for x > 0, negative_slope * x otherwise (the slope's gradient at 0, as PyTorch)."""

    def __init__(self, negative_slope):
        self.slope = negative_slope

    def forward(self, x):
        self.positive = x > 0
        return get_array_module(x).where(self.positive, x, x * self.slope)

    def backward(self, gy):
        return get_array_module(gy).where(self.positive, gy, gy * self.slope)


def leaky_relu(input, negative_slope=0.01, inplace=False):  # inplace accepted for PyTorch compatibility
    x = _tensor(input, "input")
    return LeakyReLU(float(negative_slope))(x)


# W. J. Cody's rational approximations of erf (Math. Comp. 23, 1969; netlib specfun calerf)
_ERF_A = (3.16112374387056560e0, 1.13864154151050156e2, 3.77485237685302021e2, 3.20937758913846947e3,
          1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e0, 6.61191906371416295e1, 2.98635138197400131e2,
          8.81952221241769090e2, 1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3,
          2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2, 1.62138957456669019e3,
          3.29079923573345963e3, 4.36261909014324716e3, 3.43936767414372164e3, 1.23033935480374942e3)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
          6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1, 6.05183413124413191e-2,
          2.33520497626869185e-3)


def _cody(coef_num, coef_den, t):
    """Cody's ratio (((c[-1] t + c[0]) t + c[1]) t ...) + c[n-1]) / (((t + d[0]) t + d[1]) ...) + d[n-1])."""
    num, den = coef_num[-1] * t, t
    for c, d in zip(coef_num[:-2], coef_den[:-1]):
        num, den = (num + c) * t, (den + d) * t
    return (num + coef_num[-2]) / (den + coef_den[-1])


def _erf(x):
    """The error function of an array, elementwise (NumPy has none), to about 1e-16 in float64.

    |x| <= 0.46875: erf directly; beyond, erfc(|x|) = exp(-x^2) R(|x|), R a rational in |x| up
    to 4 and in 1/x^2 after.
    """
    xp = get_array_module(x)
    y = xp.abs(x)
    near = x * _cody(_ERF_A, _ERF_B, xp.minimum(y, 0.46875) ** 2)
    mid = _cody(_ERF_C, _ERF_D, xp.clip(y, 0.46875, 4.0))
    far_y = xp.maximum(y, 4.0)
    far = (0.5641895835477562869 - _cody(_ERF_P, _ERF_Q, 1 / far_y ** 2) / far_y ** 2) / far_y
    erfc = xp.exp(-y * y) * xp.where(y <= 4.0, mid, far)
    return xp.where(y <= 0.46875, near, xp.sign(x) * (1 - erfc))


class GELU(Function):
    """x * Phi(x), Phi the standard normal CDF; approximate='tanh' uses
    Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, as PyTorch."""
    k = math.sqrt(2 / math.pi)

    def __init__(self, approximate):
        self.approximate = approximate

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        if self.approximate == "tanh":
            self.t = xp.tanh(self.k * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1 + self.t)
        self.cdf = 0.5 * (1 + _erf(x * math.sqrt(0.5)))
        return x * self.cdf

    def backward(self, gy):
        xp = get_array_module(gy)
        x = self.x
        if self.approximate == "tanh":
            inner = self.k * (1 + 3 * 0.044715 * x * x)
            return gy * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * inner)
        return gy * (self.cdf + x * xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi)))


def gelu(input, approximate="none"):
    x = _tensor(input, "input")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU(approximate)(x)


# -- convolution ----------------------------------------------------------------
class Conv2d(Function):
    """Grouped, strided, dilated 2-D convolution: flat im2col + one matmul per group, chunk by chunk.

    The batch goes through in blocks of images x groups small enough that a
    block's column buffer (C/G*kh*kw*OH*P values per image and group) stays
    in cache (``chunk_bytes``); on the GPU the whole batch is one block.
    Nothing bigger than the input is kept for backward: the columns are
    rebuilt.

    Backward of a stride-1 convolution is itself a stride-1 convolution: dX is
    gy, padded by d*(k-1) - p, correlated with the flipped, transposed
    weights; and the columns of that padded gy also give dW, as cols @ x^T.
    So backward builds one column buffer, like forward.  Other strides take
    the columns of x for dW and scatter the column gradient back (col2im).
    A 1x1 convolution without padding needs no columns at all.
    """
    chunk_bytes = 2 << 20  # the CPU column buffer per chunk; see benchmarks/RESULTS.md
    min_width = 512        # a chunk of fewer groups spans images until its matmul is this wide
    transpose_from = 16    # from this many outputs per group on, the matmul is formed transposed
    parallel_below = 8192  # per-group matmuls with fewer weights (O/G * C/G*kh*kw) run one block per core

    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, w, b=None):
        self.x, self.w, self.has_bias = x, w, b is not None
        if self._is_1x1():
            y = self._forward_1x1()
        else:
            y = self._flat_conv(x, w, self.stride, self.padding)[0]
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        (kh, kw), (ph, pw), (dh, dw) = self.w.shape[2:], self.padding, self.dilation
        if self._is_1x1():
            gx, gw = self._backward_1x1(gy)
        elif self.stride == (1, 1) and ph <= dh * (kh - 1) and pw <= dw * (kw - 1):
            gx, gw = self._backward_transposed(gy)
        else:
            gx, gw = self._backward_col2im(gy)
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias else None
        return gx, gw.reshape(self.w.shape), gb

    # -- 1x1, no padding: the (strided) input is the column matrix ------------
    def _is_1x1(self):
        return self.w.shape[2:] == (1, 1) and self.padding == (0, 0)

    def _strided_input(self):
        (sh, sw), x = self.stride, self.x
        xs = x if (sh, sw) == (1, 1) else x[:, :, ::sh, ::sw]
        N, C, OH, OW = xs.shape
        return xs.reshape(N, self.groups, C // self.groups, OH * OW), (OH, OW)

    def _forward_1x1(self):
        xs, (OH, OW) = self._strided_input()
        G, Cg = self.groups, xs.shape[2]
        return (self.w.reshape(G, -1, Cg) @ xs).reshape(xs.shape[0], -1, OH, OW)

    def _backward_1x1(self, gy):
        xp = get_array_module(gy)
        xs, (OH, OW) = self._strided_input()
        (N, C), G = self.x.shape[:2], self.groups
        gy = gy.reshape(N, G, -1, OH * OW)
        gw = (gy @ xs.swapaxes(2, 3)).sum(axis=0)
        gxs = (self.w.reshape(G, -1, C // G).swapaxes(1, 2) @ gy).reshape(N, C, OH, OW)
        if self.stride == (1, 1):
            return gxs, gw
        gx = xp.zeros_like(self.x)
        gx[:, :, ::self.stride[0], ::self.stride[1]] = gxs
        return gx, gw

    # -- the flat-column convolution, chunk by chunk --------------------------
    def _small(self, rows, cols):
        """Whether a (rows x cols) weight matrix per group makes matmuls too small to split over threads."""
        return rows * cols < self.parallel_below

    def _chunks(self, xp, N, G, unit_bytes, M):
        """((n0, n1), (g0, g1)) blocks of images x groups whose columns take about chunk_bytes.

        unit_bytes: the columns of one group of one image; M: their row length.
        Enough images for each matmul to be ``min_width`` wide, then as many
        groups as fit (a divisor of G), then, with all groups in, more images.
        """
        if N == 0 or xp is not np:
            return [((0, N), (0, G))] if N else []
        units = max(1, self.chunk_bytes // unit_bytes)  # (image, group) pairs per chunk
        nb = min(N, units, -(-self.min_width // M))
        gb = max(d for d in range(1, G + 1) if G % d == 0 and d * nb <= units)
        if gb == G:
            nb = max(nb, min(N, units // G))
        return [((n0, min(N, n0 + nb)), (g0, g0 + gb)) for n0 in range(0, N, nb) for g0 in range(0, G, gb)]

    def _flat_conv(self, x, w, stride, padding, other=None):
        """y = conv(x, w), and, given ``other`` shaped like y, also cols @ other^T per group.

        Returns (y, that product (G, C/G*kh*kw, O/G) or None).  Work buffers
        are zeroed once per chunk shape: pad_phases and im2col_flat never write
        the padding or the columns' tail, so those stay zero, and the garbage
        columns of ``other``'s wide copy stay zero too.
        """
        xp = get_array_module(x)
        (N, C), (O, _, kh, kw), G = x.shape[:2], w.shape, self.groups
        Cg, Og, Ob = C // G, O // G, (0 if other is None else other.shape[1] // G)
        g = flat_geometry(x.shape[2:], (kh, kw), stride, padding, self.dilation)
        (OH, OW), P, T, S = g.out_size, g.pitch, kh * kw, stride[0] * stride[1]
        M = OH * P  # a column row: the output grid including its garbage columns
        wg = w.reshape(G, Og, -1)
        # BLAS runs faster with the short side of the product last: with many
        # outputs per group, form it transposed, (groups, m*M, O/G)
        transposed = Og >= self.transpose_from
        y = xp.empty((N, O, OH, OW), x.dtype)

        def work(blocks):  # one worker's blocks, with its own buffers and its own part of prod
            prod = None if other is None else xp.zeros((G, Cg * T, Ob), x.dtype)
            bufs = {}
            for (n0, n1), (g0, g1) in blocks:
                m, gb = n1 - n0, g1 - g0
                if (m, gb) not in bufs:
                    bufs[m, gb] = (xp.zeros((m, gb * Cg, S, g.phase_len), x.dtype),
                                   xp.zeros((gb * Cg, T, m, M), x.dtype),
                                   xp.empty((gb, m * M, Og) if transposed else (gb, Og, m * M), x.dtype),
                                   None if other is None else xp.zeros((gb * Ob, m, OH, P), x.dtype))
                xph, col, yw, ow = bufs[m, gb]
                cols = im2col_flat(pad_phases(x[n0:n1, g0 * Cg:g1 * Cg], g, xph), g, col).reshape(gb, -1, m * M)
                if transposed:
                    xp.matmul(cols.swapaxes(1, 2), wg[g0:g1].swapaxes(1, 2), out=yw)
                    yw = yw.reshape(gb, m, OH, P, Og).transpose(1, 0, 4, 2, 3)
                else:
                    xp.matmul(wg[g0:g1], cols, out=yw)
                    yw = yw.reshape(gb, Og, m, OH, P).transpose(2, 0, 1, 3, 4)
                y[n0:n1, g0 * Og:g1 * Og].reshape(m, gb, Og, OH, OW)[...] = yw[..., :OW]
                if other is not None:
                    ow[..., :OW] = other[n0:n1, g0 * Ob:g1 * Ob].swapaxes(0, 1)
                    prod[g0:g1] += cols @ ow.reshape(gb, Ob, m * M).swapaxes(1, 2)
            return prod

        prods = run_blocks(work, self._chunks(xp, N, G, Cg * T * M * x.itemsize, M), self._small(Og, Cg * T))
        return y, (None if other is None else sum(prods[1:], prods[0]))

    def _backward_transposed(self, gy):
        """Stride 1: dX = conv(gy, flipped w^T, padding d*(k-1) - p); dW from the same columns."""
        (O, Cg, kh, kw), G, C = self.w.shape, self.groups, self.x.shape[1]
        T, Og = kh * kw, O // G
        (ph, pw), (dh, dw) = self.padding, self.dilation
        # wt[g*Cg + c, o, tap] = w[g*Og + o, c, T-1-tap]
        wt = self.w.reshape(G, Og, Cg, T)[..., ::-1].swapaxes(1, 2).reshape(C, Og, kh, kw)
        gx, gwt = self._flat_conv(gy, wt, (1, 1), (dh * (kh - 1) - ph, dw * (kw - 1) - pw), other=self.x)
        # gwt[g, o*T + tap, c] = dW[g*Og + o, c, T-1-tap]
        return gx, gwt.reshape(G, Og, T, Cg)[:, :, ::-1].swapaxes(2, 3)

    def _backward_col2im(self, gy):
        """Any stride: dW from the columns of x, dX by scattering the column gradient back."""
        x, w, G = self.x, self.w, self.groups
        xp = get_array_module(gy)
        (N, C), O, T = x.shape[:2], w.shape[0], w.shape[2] * w.shape[3]
        Cg, Og = C // G, O // G
        g = flat_geometry(x.shape[2:], w.shape[2:], self.stride, self.padding, self.dilation)
        (OH, OW), P = g.out_size, g.pitch
        M, S, Q = OH * P, self.stride[0] * self.stride[1], g.phase_len
        wg = w.reshape(G, Og, -1)
        gx = xp.empty_like(x)

        def work(blocks):  # one worker's blocks, with its own buffers and its own part of dW
            gwt, bufs = xp.zeros((G, Cg * T, Og), wg.dtype), {}
            for (n0, n1), (g0, g1) in blocks:
                m, gb = n1 - n0, g1 - g0
                if (m, gb) not in bufs:
                    bufs[m, gb] = (xp.zeros((m, gb * Cg, S, Q), x.dtype), xp.zeros((gb * Cg, T, m, M), x.dtype),
                                   xp.zeros((gb * Og, m, OH, P), x.dtype), xp.zeros((m, gb * Cg, S, Q), x.dtype))
                xph, col, gyw, gxph = bufs[m, gb]
                cols = im2col_flat(pad_phases(x[n0:n1, g0 * Cg:g1 * Cg], g, xph), g, col).reshape(gb, -1, m * M)
                gyw[..., :OW] = gy[n0:n1, g0 * Og:g1 * Og].swapaxes(0, 1)  # garbage columns stay zero
                gyg = gyw.reshape(gb, Og, m * M)
                gwt[g0:g1] += cols @ gyg.swapaxes(1, 2)
                # the column gradient overwrites the columns; its tail is zero like theirs
                xp.matmul(wg[g0:g1].swapaxes(1, 2), gyg, out=cols)
                unpad_phases(col2im_flat(col, g, gxph), g, gx[n0:n1, g0 * Cg:g1 * Cg])
            return gwt

        gwts = run_blocks(work, self._chunks(xp, N, G, Cg * T * M * x.itemsize, M), self._small(Og, Cg * T))
        return gx, sum(gwts[1:], gwts[0]).swapaxes(1, 2)


def _conv_padding(padding, kernel, stride, dilation):
    """conv2d's padding as ((top, left), (bottom extra, right extra)).

    An int or pair pads symmetrically; 'valid' is no padding; 'same' (stride 1
    only) pads dilation*(k-1) in all, and, like PyTorch, an odd total puts the
    extra row or column at the bottom or right.
    """
    if not isinstance(padding, str):
        return _pair(padding, "padding"), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"conv2d: padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"conv2d: padding='same' is not supported for strided convolutions, got stride {stride}")
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple(t // 2 for t in totals), tuple(t % 2 for t in totals)


_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}  # torch's name: np.pad's


def _pad2d(x, pads, mode="zeros"):
    """Pad the last two axes of x by pads = (top, bottom, left, right), as torch's F.pad with that mode
    ('zeros'; 'reflect', 'replicate' and 'circular' gather the input's own values)."""
    top, bottom, left, right = pads
    H, W = x.shape[-2:]
    xp = get_array_module(x.data)
    if mode == "zeros":
        for axis, before, after in ((x.ndim - 2, top, bottom), (x.ndim - 1, left, right)):
            zeros = [Tensor(xp.zeros(x.shape[:axis] + (n,) + x.shape[axis + 1:], x.dtype)) for n in (before, after)]
            parts = ([zeros[0]] if before else []) + [x] + ([zeros[1]] if after else [])
            x = ops.cat(parts, dim=axis) if len(parts) > 1 else x
        return x
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got {mode!r}")
    limit = {"reflect": (H - 1, W - 1), "circular": (H, W)}.get(mode)
    if limit and (max(top, bottom) > limit[0] or max(left, right) > limit[1]):
        raise ValueError(f"pad: {mode} padding {pads} (top, bottom, left, right) must be at most "
                         f"{limit[0]} rows and {limit[1]} columns for input of shape {x.shape}")
    rows = xp.asarray(np.pad(np.arange(H), (top, bottom), mode=_PAD_MODES[mode]))
    cols = xp.asarray(np.pad(np.arange(W), (left, right), mode=_PAD_MODES[mode]))
    return x[..., rows[:, None], cols]


def _unbatched(fn):
    """Let ``fn`` (which takes an (N, C, H, W) input first) also take one (C, H, W) image, as torch does."""
    @functools.wraps(fn)
    def wrapper(input, *args, **kwargs):
        if isinstance(input, Tensor) and input.ndim == 3:
            out = fn(input.unsqueeze(0), *args, **kwargs)
            return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
        return fn(input, *args, **kwargs)
    return wrapper


@_unbatched
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over NCHW ``input`` with weight (out, in/groups, kh, kw).

    padding: an int, a pair, 'valid' (none) or 'same' (stride 1; output size = input size).
    """
    x, w = _tensor(input, "input"), _tensor(weight, "weight")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out, in/groups, kh, kw), got shape {w.shape}")
    padding, extra = _conv_padding(padding, w.shape[2:], stride, dilation)
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be >= 1, padding {padding} >= 0")
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    if C % groups or O % groups:
        raise ValueError(f"conv2d: groups={groups} must divide both input channels ({C}) and "
                         f"output channels ({O}); input {x.shape}, weight {w.shape}")
    if Cg * groups != C:
        raise ValueError(f"conv2d: input has {C} channels but weight {w.shape} with groups={groups} "
                         f"expects {Cg * groups}; input shape {x.shape}")
    if bias is not None and tuple(bias.shape) != (O,):
        raise ValueError(f"conv2d: bias must have shape ({O},), got {tuple(bias.shape)}")
    if x.dtype != w.dtype:
        raise TypeError(f"conv2d: input dtype {x.dtype} and weight dtype {w.dtype} differ")
    OH = conv_output_size(H + extra[0], kh, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W + extra[1], kw, stride[1], padding[1], dilation[1])
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: kernel {kh}x{kw} (dilation {dilation}) is larger than the padded input "
                         f"{H + 2 * padding[0]}x{W + 2 * padding[1]}; input shape {x.shape}")
    if extra != (0, 0):  # 'same' with an odd total padding: the extra row / column, bottom and right
        x = _pad2d(x, (0, extra[0], 0, extra[1]))
    fn = Conv2d(stride, padding, dilation, int(groups))
    return fn(x, w) if bias is None else fn(x, w, bias)


# -- normalisation --------------------------------------------------------------
class BatchNorm(Function):
    """Normalise over every axis but the channel axis 1: y = (x - mean) / sqrt(var + eps) * weight + bias.

    In training the statistics are the batch's (computed here, and folded
    into ``running_mean``/``running_var`` when given); in evaluation they are
    the running ones.  Per channel the whole map is y = x * scale + shift, so
    forward makes one new array and keeps nothing the size of x (the input
    is kept by the graph anyway); backward is gx = a * gy + b * (x - mean) + c
    per channel, from two channel sums.
    """

    def __init__(self, running_mean, running_var, eps, momentum, training):
        self.running_mean, self.running_var = running_mean, running_var
        self.eps, self.momentum, self.training = eps, momentum, training

    def forward(self, x, weight, bias):
        xp = get_array_module(x)
        C = x.shape[1]
        self.n = x.size // max(C, 1)
        x3 = x.reshape(x.shape[0], C, int(np.prod(x.shape[2:])))
        if self.training:
            mean = x3.mean(axis=(0, 2), dtype=np.float64)  # float32 sums drift
            # rounding the mean to float32 leaves r = mean(x - self.mean) != 0 (about 1e-3 at a channel
            # mean of 3e4): it is taken out of the shift, the variance and backward's sums
            self.mean = mean.astype(x.dtype)
            self.r = (mean - self.mean).astype(x.dtype)
            y = x3 - self.mean[:, None]
            var = xp.einsum("ncl,ncl->c", y, y) / self.n - self.r * self.r
            for running, value in ((self.running_mean, self.mean), (self.running_var, var * (self.n / (self.n - 1)))):
                if running is not None:
                    running *= 1 - self.momentum
                    running += self.momentum * value
        else:
            self.mean, var = self.running_mean.copy(), self.running_var  # the buffers may change before backward
            self.r = 0
            y = x3 - self.mean[:, None]
        self.inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype)
        self.scale = weight * self.inv_std
        y *= self.scale[:, None]
        y += (bias - self.r * self.scale)[:, None]
        self.x3 = x3
        return y.reshape(x.shape)

    def backward(self, gy):
        gy3 = gy.reshape(self.x3.shape)
        xp = get_array_module(gy)
        gbias = gy3.sum(axis=(0, 2))
        xc = self.x3 - self.mean[:, None]  # centred first: sum(gy * x) - mean * sum(gy) would cancel
        r = self.r  # xc's own mean (see forward), so that sum(gy * xc) does not carry r * sum(gy)
        gweight = self.inv_std * (xp.einsum("ncl,ncl->c", gy3, xc) - r * gbias)  # = sum(gy * xhat)
        gx = gy3 * self.scale[:, None]
        if self.training:  # the statistics depend on x too: gx -= k * (xc - r) + scale * mean(gy)
            k = self.scale * self.inv_std * gweight / self.n
            xc *= -k[:, None]
            gx += xc
            gx -= (self.scale * gbias / self.n - k * r)[:, None]
        return gx.reshape(gy.shape), gweight, gbias


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch norm over (N, C) or (N, C, ...) input, like torch.nn.functional.batch_norm.

    Training uses the batch statistics and updates ``running_mean`` /
    ``running_var`` in place (unbiased variance in the running update);
    evaluation uses the running statistics.
    """
    x = _tensor(input, "input")
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, ...), got shape {x.shape}")
    C = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"batch_norm: {name} must have shape ({C},) for input {x.shape}, got {tuple(t.shape)}")
    xp = get_array_module(x.data)
    if training and x.data.size // max(C, 1) < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got input {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
    weight = weight if weight is not None else Tensor(xp.ones(C, x.dtype))
    bias = bias if bias is not None else Tensor(xp.zeros(C, x.dtype))
    stats = [None if t is None else t.data for t in (running_mean, running_var)]
    return BatchNorm(*stats, eps, momentum, training)(x, weight, bias)


# -- pooling --------------------------------------------------------------------
def _pool_output_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size; with ceil_mode the last window must still start inside the input
    or its left padding."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, name):
    """(kernel, stride, padding, dilation, extra): extra = the rows and columns that ceil_mode's
    last windows reach beyond the padded input, at the bottom and right."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if x.ndim != 4:
        raise ValueError(f"{name}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{name}: kernel_size {k}, stride {s} and dilation {d} must be >= 1, padding {p} >= 0")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:  # of the kernel, not the dilated reach: torch 2.14's rule
        raise ValueError(f"{name}: padding {p} must be at most half the kernel size {k}")
    H, W = x.shape[2:]
    out = tuple(_pool_output_size(n, *a, ceil_mode) for n, a in zip((H, W), zip(k, s, p, d)))
    if min(out) < 1:
        raise ValueError(f"{name}: kernel {k} is larger than the padded input "
                         f"{H + 2 * p[0]}x{W + 2 * p[1]} (dilation {d}); input shape {x.shape}")
    extra = tuple(max(0, (o - 1) * si + di * (ki - 1) + 1 - (n + 2 * pi))
                  for o, n, ki, si, pi, di in zip(out, (H, W), k, s, p, d))
    return k, s, p, d, extra


class MaxPool2d(Function):
    """Max over each window; padding (and what ceil_mode's windows reach beyond it) is -inf, never the max."""

    def __init__(self, kernel, stride, padding, dilation=(1, 1), extra=(0, 0)):
        self.kernel, self.stride, self.padding, self.dilation, self.extra = kernel, stride, padding, dilation, extra

    def forward(self, x):
        xp = get_array_module(x)
        (ph, pw), (eh, ew), (N, C, H, W) = self.padding, self.extra, x.shape
        if ph or pw or eh or ew:
            padded = xp.full((N, C, H + 2 * ph + eh, W + 2 * pw + ew), -xp.inf, dtype=x.dtype)
            padded[:, :, ph:ph + H, pw:pw + W] = x
            x = padded
        col = im2col(x, self.kernel, self.stride, dilation=self.dilation)
        N, C, kh, kw, OH, OW = col.shape
        col = col.reshape(N, C, kh * kw, OH, OW)
        self.arg = col.argmax(axis=2)  # first maximum wins, like PyTorch
        self.padded_hw, self.hw = x.shape[2:], (H, W)
        self.xp_shape = (N, C, kh, kw, OH, OW)
        return xp.take_along_axis(col, self.arg[:, :, None], axis=2)[:, :, 0]

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, kh, kw, OH, OW = self.xp_shape
        taps = xp.arange(kh * kw).reshape(1, 1, -1, 1, 1)
        gcol = (taps == self.arg[:, :, None]) * gy[:, :, None]
        gx = col2im(gcol.reshape(self.xp_shape), self.padded_hw, self.stride, dilation=self.dilation)
        (ph, pw), (H, W) = self.padding, self.hw
        return gx[:, :, ph:ph + H, pw:pw + W]

    def indices(self):
        """PyTorch's return_indices: where each maximum lies, as a flat index into its (H, W) plane."""
        xp = get_array_module(self.arg)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (H, W) = (self.xp_shape[2:4], self.stride, self.padding,
                                                          self.dilation, self.hw)
        OH, OW = self.arg.shape[2:]
        rows = xp.arange(OH).reshape(-1, 1) * sh - ph + (self.arg // kw) * dh
        cols = xp.arange(OW) * sw - pw + (self.arg % kw) * dw
        return (rows * W + cols).astype(xp.int64)


class AvgPool2d(Function):
    """Mean over each window.  The divisor is divisor_override, or the window's size clipped to the
    padded input (count_include_pad) or to the input itself; ceil_mode's windows may reach beyond."""

    def __init__(self, kernel, stride, padding, count_include_pad, extra=(0, 0), divisor_override=None):
        self.kernel, self.stride, self.padding, self.extra = kernel, stride, padding, extra
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x):
        xp = get_array_module(x)
        (eh, ew), (N, C, H, W) = self.extra, x.shape
        if eh or ew:  # ceil_mode: zeros beyond the input, counted or not by self.count
            x = xp.concatenate([x, xp.zeros((N, C, eh, W), x.dtype)], axis=2)
            x = xp.concatenate([x, xp.zeros((N, C, H + eh, ew), x.dtype)], axis=3)
        col = im2col(x, self.kernel, self.stride, self.padding)
        self.count = self._count(xp, x.dtype, H, W)
        self.col_shape, self.hw, self.ext_hw = col.shape, (H, W), x.shape[2:]
        return col.sum(axis=(2, 3)) / self.count

    def _count(self, xp, dtype, H, W):
        """The divisor: a number, or one per output position (1, 1, OH, OW)."""
        (kh, kw), (ph, pw), (eh, ew) = self.kernel, self.padding, self.extra
        if self.divisor_override is not None:
            return self.divisor_override
        if self.count_include_pad and not (eh or ew):
            return kh * kw
        # count what each window covers of the padded input, or of the input alone
        mask = xp.zeros((1, 1, H + 2 * ph + eh, W + 2 * pw + ew), dtype)
        if self.count_include_pad:
            mask[..., :H + 2 * ph, :W + 2 * pw] = 1
        else:
            mask[..., ph:ph + H, pw:pw + W] = 1
        return im2col(mask, self.kernel, self.stride).sum(axis=(2, 3))

    def backward(self, gy):
        xp = get_array_module(gy)
        g = (gy / self.count)[:, :, None, None]
        gcol = xp.broadcast_to(g, self.col_shape)
        H, W = self.hw
        return col2im(gcol, self.ext_hw, self.stride, self.padding)[:, :, :H, :W]


@_unbatched
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling with torch's arguments; with return_indices, also (as torch) the flat index of each
    maximum in its (H, W) plane, an int64 Tensor."""
    x = _tensor(input, "input")
    k, s, p, d, extra = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    fn = MaxPool2d(k, s, p, d, extra)
    y = fn(x)
    return (y, Tensor(fn.indices())) if return_indices else y


@_unbatched
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x = _tensor(input, "input")
    if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer))
                                         or isinstance(divisor_override, bool) or divisor_override == 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int or None, got {divisor_override!r}")
    k, s, p, _, extra = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    return AvgPool2d(k, s, p, bool(count_include_pad), extra, divisor_override)(x)


@_unbatched
def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows; output_size 1 is global average pooling."""
    x = _tensor(input, "input")
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: input must be 4-D (N, C, H, W) or 3-D (C, H, W), "
                         f"got shape {x.shape}")
    H, W = x.shape[2:]
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:  # None keeps that side's size
        output_size = tuple(n if o is None else o for o, n in zip(output_size, (H, W)))
    oh, ow = _pair(output_size, "output_size")
    if (oh, ow) == (1, 1):
        return x.mean(dim=(2, 3), keepdim=True)
    if H % oh == 0 and W % ow == 0:
        return avg_pool2d(x, (H // oh, W // ow))
    rows = []
    for i in range(oh):
        h0, h1 = (i * H) // oh, -(-((i + 1) * H) // oh)
        cells = [x[:, :, h0:h1, (j * W) // ow:-(-((j + 1) * W) // ow)].mean(dim=(2, 3)) for j in range(ow)]
        rows.append(ops.stack(cells, dim=-1))
    return ops.stack(rows, dim=-2)


# -- linear -------------------------------------------------------------------
def linear(input, weight, bias=None):
    """input @ weight.T + bias, with weight shaped (out_features, in_features)."""
    x, w = _tensor(input, "input"), _tensor(weight, "weight")
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input {x.shape} does not match weight {w.shape} "
                         f"(expected input (..., {w.shape[1] if w.ndim == 2 else '?'}))")
    if bias is not None and tuple(bias.shape) != (w.shape[0],):
        raise ValueError(f"linear: bias must have shape ({w.shape[0]},) for weight {w.shape}, got {tuple(bias.shape)}")
    y = ops.matmul(x, ops.transpose(w, 0, 1))
    return y if bias is None else y + bias


# -- softmax family and losses ------------------------------------------------
class Softmax(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.dim, keepdims=True))
        self.y = e / e.sum(axis=self.dim, keepdims=True)
        return self.y

    def backward(self, gy):
        return self.y * (gy - (gy * self.y).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        self.y = _log_softmax(x, self.dim)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.dim, keepdims=True)


def _log_softmax(x, dim):
    xp = get_array_module(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))


def _dim(x, dim, name):
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"{name}: dim {dim} is out of range for input of shape {x.shape}")
    return dim % x.ndim


def softmax(input, dim):
    x = _tensor(input, "input")
    return Softmax(_dim(x, dim, "softmax"))(x)


def log_softmax(input, dim):
    x = _tensor(input, "input")
    return LogSoftmax(_dim(x, dim, "log_softmax"))(x)


class CrossEntropy(Function):
    """-sum_c q_c * w_c * log_softmax(x)_c for each row of (M, C) logits, q the smoothed one-hot target.

    Plain (weight and valid None): every w_c = 1, no row ignored, and 'mean'
    divides by M.  Otherwise ``weight`` (C,) weighs the classes, ``valid``
    (M,) marks the rows not ignored (their target is a valid index; the others
    hold 0) and 'mean' divides by the summed weight of the valid rows' targets,
    as PyTorch.  With W = sum_c w_c, the gradient of a row is
    p * ((1-eps) w_t + eps/C W) - eps/C w - (1-eps) w_t onehot(t).
    """

    def __init__(self, target, label_smoothing, reduction, weight=None, valid=None):
        self.target, self.eps, self.reduction = target, label_smoothing, reduction
        self.weight, self.valid = weight, valid

    def forward(self, x):
        xp = get_array_module(x)
        N, C = x.shape
        logp = _log_softmax(x, 1)
        picked = xp.take_along_axis(logp, self.target[:, None], axis=1)[:, 0]
        self.p = xp.exp(logp)
        if self.weight is None and self.valid is None:
            loss = -(1 - self.eps) * picked - (self.eps / C) * logp.sum(axis=1)
            self.total = N
        else:
            w = xp.ones(C, x.dtype) if self.weight is None else self.weight.astype(x.dtype, copy=False)
            valid = xp.ones(N, bool) if self.valid is None else self.valid
            self.w, self.wt = w, xp.where(valid, w[self.target], 0).astype(x.dtype)  # each row's target weight
            loss = -(1 - self.eps) * self.wt * picked
            if self.eps:
                loss -= (self.eps / C) * (logp @ w)
            loss = xp.where(valid, loss, 0)  # ignored rows count 0, even with non-finite logits
            self.total = self.wt.sum()
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / self.total if self.total else xp.full((), xp.nan, x.dtype)  # all ignored: nan

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C = self.p.shape
        rows = xp.arange(N)
        if self.weight is None and self.valid is None:
            g = self.p - self.eps / C
            g[rows, self.target] -= 1 - self.eps
        else:
            valid = xp.ones(N, bool) if self.valid is None else self.valid
            g = self.p * ((1 - self.eps) * self.wt + valid * (self.eps / C * self.w.sum()))[:, None]
            if self.eps:
                g -= (self.eps / C) * valid[:, None] * self.w
            g[rows, self.target] -= (1 - self.eps) * self.wt
        if self.reduction == "none":
            return g * gy[:, None]
        if self.reduction == "sum":
            return g * gy
        return g * (gy / self.total) if self.total else xp.zeros_like(g)  # all ignored: no gradient, as PyTorch


def _reduction(reduction, size_average, reduce, name):
    """The reduction, from PyTorch's deprecated size_average / reduce when either is given."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else "mean" if size_average else "sum"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _check_reduction(reduction, name):
    _reduction(reduction, None, None, name)


def _rows(x):
    """(N, C) or (C,) or (N, C, d1, ...) scores as (M, C) rows, class axis last, and the per-row shape."""
    if x.ndim == 1:
        return x.reshape(1, -1), ()
    if x.ndim == 2:
        return x, x.shape[:1]
    C = x.shape[1]
    return x.permute(0, *range(2, x.ndim), 1).reshape(-1, C), (x.shape[0],) + x.shape[2:]


def _class_targets(x, target, ignore_index, name, probabilities_allowed=False):
    """Validated integer class indices for scores x, as an array beside x, flattened to (M,),
    with the mask of rows that are not ignore_index (None when none is)."""
    xp = get_array_module(x.data)
    t = xp.asarray(target.data if isinstance(target, Tensor) else target)
    if x.ndim == 0:
        raise ValueError(f"{name}: input must have shape (C,), (N, C) or (N, C, d1, ...), got {x.shape}")
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    expected = () if x.ndim == 1 else x.shape[:1] + x.shape[2:]
    if probabilities_allowed and t.shape == x.shape and t.shape != expected:
        raise TypeError(f"{name}: a target shaped like the input {x.shape} holds class probabilities and must "
                        f"be floating point, got dtype {t.dtype}")
    if t.dtype.kind not in "iu":
        also = f" or class probabilities shaped like the input {x.shape}" if probabilities_allowed else ""
        raise TypeError(f"{name}: target must hold integer class indices{also}, got dtype {t.dtype} "
                        f"and shape {t.shape}")
    if t.shape != expected:
        raise ValueError(f"{name}: target must have shape {expected} for input {x.shape}, got {t.shape}")
    t = t.reshape(-1)
    ignored = t == ignore_index
    valid = None if not bool(ignored.any()) else ~ignored
    kept = t if valid is None else t[valid]
    if kept.size and (int(kept.min()) < 0 or int(kept.max()) >= C):
        raise ValueError(f"{name}: target values must lie in [0, {C}), got min {int(kept.min())} "
                         f"and max {int(kept.max())} (ignore_index={ignore_index} aside)")
    if valid is not None:
        t = xp.where(valid, t, 0)
    return t.astype(xp.int64, copy=False), valid


def _class_weight(x, weight, name):
    """The class weights (C,) as an array beside x, or None."""
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else get_array_module(x.data).asarray(weight)
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    if w.shape != (C,):
        raise ValueError(f"{name}: weight must have shape ({C},), one per class, for input {x.shape}, got {w.shape}")
    return w


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy of logits against class indices or class probabilities, as torch.nn.functional.cross_entropy.

    input (C,), (N, C) or (N, C, d1, ...); target the class indices (), (N,)
    or (N, d1, ...) (ignore_index: rows that count for nothing), or
    probabilities of the input's shape.  weight (C,) weighs the classes; with
    indices 'mean' divides by the summed weight of the counted targets, with
    probabilities by the number of rows.  label_smoothing mixes the target
    with the uniform distribution.
    """
    x = _tensor(input, "input")
    xp = get_array_module(x.data)
    reduction = _reduction(reduction, size_average, reduce, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    w = _class_weight(x, weight, "cross_entropy")
    raw = target.data if isinstance(target, Tensor) else xp.asarray(target)
    if raw.dtype.kind == "f" and x.ndim > 0 and raw.shape == x.shape:
        loss = _cross_entropy_probabilities(x, target, w, ignore_index, reduction, float(label_smoothing))
    else:
        t, valid = _class_targets(x, target, ignore_index, "cross_entropy", probabilities_allowed=True)
        rows, shape = _rows(x)
        loss = CrossEntropy(t, float(label_smoothing), reduction, w, valid)(rows)
        loss = loss.reshape(shape) if reduction == "none" else loss
    if reduction != "none" and not bool(xp.isfinite(loss.data)) and not bool(xp.isfinite(x.data).all()):
        raise ValueError(f"cross_entropy: the loss is {float(loss.data)}: the logits contain NaN or inf")
    return loss


def _cross_entropy_probabilities(x, target, weight, ignore_index, reduction, label_smoothing):
    """-sum_c w_c q_c log_softmax(x)_c, q the (smoothed) target probabilities; differentiable in x and target."""
    if ignore_index != -100:
        raise ValueError(f"cross_entropy: ignore_index is not supported for class-probability targets "
                         f"(target {tuple(target.shape)} shaped like the input), got ignore_index={ignore_index}")
    if not isinstance(target, Tensor) or (not target.requires_grad and target.dtype != x.dtype):
        target = Tensor(getattr(target, "data", target), dtype=x.dtype)
    rows, shape = _rows(x)
    q, _ = _rows(target)
    C = rows.shape[1]
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / C
    if weight is not None:
        q = q * Tensor(weight.astype(x.dtype, copy=False))
    loss = -(log_softmax(rows, 1) * q).sum(dim=1)
    if reduction == "none":
        return loss.reshape(shape)
    return loss.mean() if reduction == "mean" else loss.sum()


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities at integer targets, as torch.nn.functional.nll_loss.

    input (C,), (N, C) or (N, C, d1, ...) with target (), (N,) or (N, d1, ...);
    weight and ignore_index as in cross_entropy.
    """
    x = _tensor(input, "input")
    xp = get_array_module(x.data)
    reduction = _reduction(reduction, size_average, reduce, "nll_loss")
    w = _class_weight(x, weight, "nll_loss")
    t, valid = _class_targets(x, target, ignore_index, "nll_loss")
    rows, shape = _rows(x)
    picked = ops.take_along_dim(rows, t[:, None], 1)[:, 0]
    if w is None and valid is None:
        loss = -picked
        total = loss.shape[0]
    else:
        wt = xp.ones(t.shape, x.dtype) if w is None else w.astype(x.dtype, copy=False)[t]
        wt = wt if valid is None else xp.where(valid, wt, 0).astype(x.dtype)
        loss, total = -picked * Tensor(wt), wt.sum()
    if reduction == "none":
        return loss.reshape(shape)
    if reduction == "sum":
        return loss.sum()
    if not total:  # every target ignored: nan with no gradient, as PyTorch
        return loss.sum() * 0 + math.nan
    return loss.sum() / total


# -- dropout ------------------------------------------------------------------
class Dropout(Function):
    def __init__(self, p):
        self.p = p

    def forward(self, x):
        xp = get_array_module(x)
        self.mask = (random.uniform(xp, x.shape, x.dtype) >= self.p) * x.dtype.type(1 / (1 - self.p))
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def dropout(input, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    x = _tensor(input, "input")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return Dropout(p)(x)
