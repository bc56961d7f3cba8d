"""Neural-network functions with PyTorch's names and semantics (``import skengine.functional as F``).

The heavy ones (convolution, batch norm, pooling, softmax family, losses)
are single Functions with a hand-written backward; the light ones compose
the tensor ops.
"""
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


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over NCHW ``input`` with weight (out, in/groups, kh, kw)."""
    x, w = _tensor(input, "input"), _tensor(weight, "weight")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out, in/groups, kh, kw), got shape {w.shape}")
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
    OH = conv_output_size(H, kh, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, kw, stride[1], padding[1], dilation[1])
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: kernel {kh}x{kw} (dilation {dilation}) is larger than the padded input "
                         f"{H + 2 * padding[0]}x{W + 2 * padding[1]}; input shape {x.shape}")
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
            self.mean = x3.mean(axis=(0, 2), dtype=np.float64).astype(x.dtype)  # float32 sums drift
            y = x3 - self.mean[:, None]
            var = xp.einsum("ncl,ncl->c", y, y) / self.n
            for running, value in ((self.running_mean, self.mean), (self.running_var, var * (self.n / (self.n - 1)))):
                if running is not None:
                    running *= 1 - self.momentum
                    running += self.momentum * value
        else:
            self.mean, var = self.running_mean.copy(), self.running_var  # the buffers may change before backward
            y = x3 - self.mean[:, None]
        self.inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype)
        self.scale = weight * self.inv_std
        y *= self.scale[:, None]
        y += bias[:, None]
        self.x3 = x3
        return y.reshape(x.shape)

    def backward(self, gy):
        gy3 = gy.reshape(self.x3.shape)
        xp = get_array_module(gy)
        gbias = gy3.sum(axis=(0, 2))
        xc = self.x3 - self.mean[:, None]  # centred first: sum(gy * x) - mean * sum(gy) would cancel
        gweight = self.inv_std * xp.einsum("ncl,ncl->c", gy3, xc)  # = sum(gy * xhat)
        gx = gy3 * self.scale[:, None]
        if self.training:  # the statistics depend on x too
            xc *= (-self.scale * self.inv_std * gweight / self.n)[:, None]
            gx += xc
            gx -= (self.scale * gbias / self.n)[:, None]
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
def _pool_args(x, kernel_size, stride, padding, name):
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    p = _pair(padding, "padding")
    if x.ndim != 4:
        raise ValueError(f"{name}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{name}: padding {p} must be at most half the kernel size {k}")
    H, W = x.shape[2:]
    if conv_output_size(H, k[0], s[0], p[0], 1) < 1 or conv_output_size(W, k[1], s[1], p[1], 1) < 1:
        raise ValueError(f"{name}: kernel {k} is larger than the padded input; input shape {x.shape}")
    return k, s, p


class MaxPool2d(Function):
    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        xp = get_array_module(x)
        (ph, pw), (N, C, H, W) = self.padding, x.shape
        if ph or pw:  # pad with -inf so padding never wins the max
            padded = xp.full((N, C, H + 2 * ph, W + 2 * pw), -xp.inf, dtype=x.dtype)
            padded[:, :, ph:ph + H, pw:pw + W] = x
            x = padded
        col = im2col(x, self.kernel, self.stride)
        N, C, kh, kw, OH, OW = col.shape
        col = col.reshape(N, C, kh * kw, OH, OW)
        self.arg = col.argmax(axis=2)  # first maximum wins, like PyTorch
        self.padded_hw = x.shape[2:]
        self.xp_shape = (N, C, kh, kw, OH, OW)
        return xp.take_along_axis(col, self.arg[:, :, None], axis=2)[:, :, 0]

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, kh, kw, OH, OW = self.xp_shape
        taps = xp.arange(kh * kw).reshape(1, 1, -1, 1, 1)
        gcol = (taps == self.arg[:, :, None]) * gy[:, :, None]
        gx = col2im(gcol.reshape(self.xp_shape), self.padded_hw, self.stride)
        (ph, pw), (H, W) = self.padding, self.padded_hw
        return gx[:, :, ph:H - ph, pw:W - pw]


class AvgPool2d(Function):
    def __init__(self, kernel, stride, padding, count_include_pad):
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, x):
        xp = get_array_module(x)
        col = im2col(x, self.kernel, self.stride, self.padding)
        if self.count_include_pad:
            self.count = self.kernel[0] * self.kernel[1]
        else:  # how many real (unpadded) inputs each window covers
            ones = xp.ones((1, 1) + x.shape[2:], dtype=x.dtype)
            self.count = im2col(ones, self.kernel, self.stride, self.padding).sum(axis=(2, 3))
        self.col_shape, self.hw = col.shape, x.shape[2:]
        return col.sum(axis=(2, 3)) / self.count

    def backward(self, gy):
        xp = get_array_module(gy)
        g = (gy / self.count)[:, :, None, None]
        gcol = xp.broadcast_to(g, self.col_shape)
        return col2im(gcol, self.hw, self.stride, self.padding)


def max_pool2d(input, kernel_size, stride=None, padding=0):
    x = _tensor(input, "input")
    return MaxPool2d(*_pool_args(x, kernel_size, stride, padding, "max_pool2d"))(x)


def avg_pool2d(input, kernel_size, stride=None, padding=0, count_include_pad=True):
    x = _tensor(input, "input")
    return AvgPool2d(*_pool_args(x, kernel_size, stride, padding, "avg_pool2d"), count_include_pad)(x)


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows; output_size 1 is global average pooling."""
    x = _tensor(input, "input")
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: input must be 4-D (N, C, H, W), got shape {x.shape}")
    oh, ow = _pair(output_size, "output_size")
    H, W = x.shape[2:]
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
    """Mean (or sum, or per-sample) -sum(q * log_softmax(x)), q the smoothed one-hot target."""

    def __init__(self, target, label_smoothing, reduction):
        self.target, self.eps, self.reduction = target, label_smoothing, reduction

    def forward(self, x):
        xp = get_array_module(x)
        N, C = x.shape
        logp = _log_softmax(x, 1)
        picked = xp.take_along_axis(logp, self.target[:, None], axis=1)[:, 0]
        loss = -(1 - self.eps) * picked - (self.eps / C) * logp.sum(axis=1)
        self.p = xp.exp(logp)
        if self.reduction == "none":
            return loss
        return loss.sum() / (N if self.reduction == "mean" else 1)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C = self.p.shape
        g = self.p - self.eps / C
        g[xp.arange(N), self.target] -= 1 - self.eps
        if self.reduction == "none":
            return g * gy[:, None]
        return g * (gy / (N if self.reduction == "mean" else 1))


def _class_targets(x, target, name):
    """Validated integer class indices (N,) for (N, C) scores, as an array beside x."""
    t = target.data if isinstance(target, Tensor) else target
    xp = get_array_module(x.data)
    t = xp.asarray(t)
    if x.ndim != 2:
        raise ValueError(f"{name}: input must be of shape (N, C), got {x.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"{name}: target must have shape ({x.shape[0]},) for input {x.shape}, got {t.shape}")
    if t.size and (int(t.min()) < 0 or int(t.max()) >= x.shape[1]):
        raise ValueError(f"{name}: target values must lie in [0, {x.shape[1]}), "
                         f"got min {int(t.min())} and max {int(t.max())}")
    return t


def _check_reduction(reduction, name):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(input, target, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy of logits (N, C) against integer class targets (N,)."""
    x = _tensor(input, "input")
    xp = get_array_module(x.data)
    t = _class_targets(x, target, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    _check_reduction(reduction, "cross_entropy")
    loss = CrossEntropy(t.astype(xp.int64, copy=False), float(label_smoothing), reduction)(x)
    if reduction != "none" and not bool(xp.isfinite(loss.data)):
        raise ValueError(f"cross_entropy: the loss is {float(loss.data)}: the logits contain NaN or inf")
    return loss


def nll_loss(input, target, reduction="mean"):
    """Negative log-likelihood of log-probabilities (N, C) at integer targets (N,)."""
    x = _tensor(input, "input")
    t = _class_targets(x, target, "nll_loss")
    _check_reduction(reduction, "nll_loss")
    picked = ops.take_along_dim(x, t[:, None], 1)[:, 0]
    return -(picked.mean() if reduction == "mean" else picked.sum() if reduction == "sum" else picked)


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
