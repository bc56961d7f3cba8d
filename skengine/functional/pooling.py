"""Max, average and adaptive average pooling over (N, C, H, W) maps, on the reference im2col kernels."""
import numpy as np

from .. import ops
from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..im2col import col2im, im2col
from .args import as_pair, check_tensor, unbatched


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
    k = as_pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else as_pair(stride, "stride")
    p, d = as_pair(padding, "padding"), as_pair(dilation, "dilation")
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
        self.padded_shape, self.hw = x.shape, (H, W)
        # the running maximum over strided views of the input, one per kernel tap (no columns; a NaN wins),
        # then which tap gave it, as PyTorch's kernel (`val > maxval || isnan(val)`): the first maximum,
        # so the taps are scanned backwards, but the last NaN
        views = list(self._taps(x))
        out = views[0].copy()
        for view in views[1:]:
            xp.maximum(out, view, out=out)
        # arg_k = k where tap k holds the maximum, else arg_(k+1) (arg_(T-1) = T-1); with b_k = arg_k - k:
        # b_(T-1) = 0, b_k = (view_k != max) * (b_(k+1) + 1): two small integer passes a tap, no select
        dtype = xp.min_scalar_type(len(views) - 1)
        arg = xp.zeros(out.shape, dtype)
        for tap in range(len(views) - 2, -1, -1):
            arg += 1
            arg *= views[tap] != out
        if x.dtype.kind == "f" and bool(xp.isnan(out).any()):
            for tap, view in enumerate(views):
                arg = xp.where(xp.isnan(view), arg.dtype.type(tap), arg)
        self.arg = arg
        return out

    def _taps(self, a):
        """The strided view of (padded) ``a`` that each kernel tap reads, row by row."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        OH = (a.shape[2] - dh * (kh - 1) - 1) // sh + 1
        OW = (a.shape[3] - dw * (kw - 1) - 1) // sw + 1
        for i in range(kh):
            for j in range(kw):
                yield a[:, :, i * dh:i * dh + (OH - 1) * sh + 1:sh, j * dw:j * dw + (OW - 1) * sw + 1:sw]

    def backward(self, gy):
        xp = get_array_module(gy)
        (kh, kw), stride, dilation = self.kernel, self.stride, self.dilation
        if stride == (kh, kw) and dilation == (1, 1):  # windows that tile the map: each pixel in one tap's view
            gx = xp.empty(self.padded_shape, gy.dtype)
            for tap, view in enumerate(self._taps(gx)):
                xp.multiply(gy, self.arg == tap, out=view)
            OH, OW = gy.shape[2:]
            gx[:, :, OH * kh:] = 0  # what no window reaches (floor mode's last rows and columns)
            gx[:, :, :OH * kh, OW * kw:] = 0
        else:
            gx = xp.zeros(self.padded_shape, gy.dtype)
            for tap, view in enumerate(self._taps(gx)):
                view += xp.where(self.arg == tap, gy, 0)
        (ph, pw), (H, W) = self.padding, self.hw
        return gx[:, :, ph:ph + H, pw:pw + W]

    def indices(self):
        """PyTorch's return_indices: where each maximum lies, as a flat index into its (H, W) plane."""
        xp = get_array_module(self.arg)
        kw, (sh, sw), (ph, pw), (dh, dw), W = self.kernel[1], self.stride, self.padding, self.dilation, self.hw[1]
        OH, OW = self.arg.shape[2:]
        arg = self.arg.astype(xp.int64)
        rows = xp.arange(OH).reshape(-1, 1) * sh - ph + (arg // kw) * dh
        cols = xp.arange(OW) * sw - pw + (arg % kw) * dw
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


@unbatched
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling with torch's arguments; with return_indices, also (as torch) the flat index of each
    maximum in its (H, W) plane, an int64 Tensor."""
    x = check_tensor(input, "input")
    k, s, p, d, extra = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    fn = MaxPool2d(k, s, p, d, extra)
    y = fn(x)
    return (y, Tensor(fn.indices())) if return_indices else y


@unbatched
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x = check_tensor(input, "input")
    if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer))
                                         or isinstance(divisor_override, bool) or divisor_override == 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int or None, got {divisor_override!r}")
    k, s, p, _, extra = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    return AvgPool2d(k, s, p, bool(count_include_pad), extra, divisor_override)(x)


@unbatched
def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows; output_size 1 is global average pooling."""
    x = check_tensor(input, "input")
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: input must be 4-D (N, C, H, W) or 3-D (C, H, W), "
                         f"got shape {x.shape}")
    H, W = x.shape[2:]
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:  # None keeps that side's size
        output_size = tuple(n if o is None else o for o, n in zip(output_size, (H, W)))
    oh, ow = as_pair(output_size, "output_size")
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
