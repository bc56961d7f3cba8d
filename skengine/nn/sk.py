"""Selective Kernel convolution (Li et al., "Selective Kernel Networks", CVPR 2019) and the SE block.

An SK convolution lets every output channel choose, per input image, how much
of each of M receptive-field sizes it uses.  It has three steps (paper, Sec. 3.1):

    Split   U_m = ReLU(BN(conv_m(X)))            m = 1..M, kernel sizes 3, 5, ...
    Fuse    U = sum_m U_m,   s = mean_{h,w} U    (N, C)      "F_gp"
            z = ReLU(BN(W s))                    (N, d)      "F_fc", W: d x C
    Select  a = softmax over m of (A_m z)        (N, M, C)   A_m: C x d
            V = sum_m a_m * U_m                  (N, C, H, W)

d = max(C / r, L) (defaults r=16, L=32).  As in the paper and timm, a k x k
path is by default a 3x3 conv dilated by (k-1)/2 (same receptive field, fewer
weights); ``keep_3x3=False`` uses real k x k kernels.

Two choices made here, both exact equivalences:

* The FCs act on the pooled vectors s and z, so they are Linear layers without
  bias on (N, C).  A 1x1 convolution on an (N, C, 1, 1) map (what timm uses)
  computes the same numbers: its weight (d, C, 1, 1) is this weight (d, C), and
  BatchNorm1d on (N, d) equals BatchNorm2d on (N, d, 1, 1).
* The paper's M select matrices A_m (C x d each) are stacked into one Linear
  d -> M*C; row block m is A_m (the layout of timm's ``fc_select``).

``split_input=True`` is timm's variant for ResNet-18/34: the input channels are
split evenly across the paths (path m sees the m-th slice), which divides the
path weights by M.  ``attention`` picks the Select step's gate, for the ablation the paper leaves open:
"softmax" across paths (the paper: the paths compete for each channel), "sigmoid" (independent SENet-style
gates: the paths no longer compete), "sigmoid_norm" (sigmoid gates divided by their sum over the paths:
a selection, as the softmax, without its exponent) and "uniform" (a_m = 1/M fixed: the paths averaged,
no Fuse or Select at all, so no attention parameters).

The SE block (Hu et al., 2018) is the one-path ancestor: squeeze s, excite with
a sigmoid gate per channel, rescale.
"""
from collections import OrderedDict
from numbers import Integral

from .. import functional as F
from ..autograd import Tensor
from ..backend import get_array_module
from ..functional.args import check_int
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Linear, ReLU
from .module import Module, ModuleList, Sequential

ATTENTIONS = ("softmax", "sigmoid", "sigmoid_norm", "uniform")


def conv_bn(in_channels, out_channels, kernel_size=3, stride=1, dilation=1, groups=1, act=True):
    """Conv (no bias) -> BatchNorm2d [-> ReLU], with named children ``conv``, ``bn``, ``act``.

    Padding is timm's symmetric rule ((stride - 1) + dilation * (kernel_size - 1)) // 2,
    which keeps the spatial size for stride 1 and halves it (rounding up) for stride 2.
    """
    padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
    layers = [("conv", Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False)),
              ("bn", BatchNorm2d(out_channels))]
    if act:
        layers.append(("act", ReLU()))
    return Sequential(OrderedDict(layers))


def make_divisible(value, divisor, min_value=None, round_limit=0.9):
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value`` or ``divisor``),
    never losing more than 10%: timm's rule for attention widths."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


def attention_width(channels, reduction=16, min_dim=32, divisor=None):
    """d, the width of the fused descriptor z.

    The paper: d = max(C / r, L).  With ``divisor`` set, timm's
    make_divisible(C / r, divisor) instead (the SK models built to load timm
    checkpoints use it; for their widths both rules happen to agree).
    """
    if divisor is not None:
        return make_divisible(channels / reduction, divisor)
    return max(channels // reduction, min_dim)


class SKConv(Module):
    """Selective Kernel convolution: M conv paths fused by per-channel attention.

    Args:
        in_channels, out_channels: C_in and C (out_channels defaults to in_channels).
        kernel_sizes: one odd kernel size per path; M = len(kernel_sizes).
        stride, dilation: of the whole unit; path m uses dilation * (k_m - 1) / 2
            with a 3x3 kernel when ``keep_3x3``, else dilation with a k_m x k_m kernel.
        groups: G, the groups of every path's convolution (capped at C, like timm).
        reduction, min_dim: the paper's r and L in d = max(C / r, L).
        rd_channels: set d directly;  rd_divisor: use timm's make_divisible rule for d.
        split_input: path m sees only the m-th of M equal slices of the input channels (timm;
            when M does not divide C_in the first C_in % M slices get one channel more).
        attention: "softmax" across paths (the paper), "sigmoid" (independent gates), "sigmoid_norm"
            (sigmoid gates / their sum over paths) or "uniform" (a = 1/M, no Fuse/Select layers).

    After each forward, ``last_attention`` holds the gate values a as a detached
    (N, M, C) Tensor (no graph is kept alive by it).
    """

    def __init__(self, in_channels, out_channels=None, kernel_sizes=(3, 5), stride=1, dilation=1, groups=1,
                 reduction=16, min_dim=32, rd_channels=None, rd_divisor=None, keep_3x3=True, split_input=False,
                 attention="softmax"):
        super().__init__()
        in_channels = check_int(in_channels, "SKConv: in_channels")
        out_channels = check_int(out_channels or in_channels, "SKConv: out_channels")
        for name, v in (("groups", groups), ("reduction", reduction), ("min_dim", min_dim),
                        ("rd_channels", rd_channels), ("rd_divisor", rd_divisor)):
            if v is not None or not name.startswith("rd_"):  # rd_channels and rd_divisor may be None
                check_int(v, f"SKConv: {name}")
        try:
            ks = tuple(kernel_sizes)
        except TypeError:  # one int, None, ...
            ks = ()
        if not ks or any(not isinstance(k, Integral) or k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"SKConv: kernel_sizes must be a non-empty tuple of odd positive ints, got "
                             f"{kernel_sizes!r}")
        kernel_sizes = ks
        if keep_3x3 and min(kernel_sizes) < 3:
            raise ValueError(f"SKConv: keep_3x3 realises k x k as a dilated 3x3, so every k must be >= 3, "
                             f"got {kernel_sizes}")
        if attention not in ATTENTIONS:
            raise ValueError(f"SKConv: attention must be one of {', '.join(map(repr, ATTENTIONS))}, "
                             f"got {attention!r}")
        M = len(kernel_sizes)
        # split_input: slices as even as possible (equal, as in timm, when M divides in_channels)
        path_in = [in_channels // M + (m < in_channels % M) for m in range(M)] if split_input else [in_channels] * M
        groups = min(groups, out_channels)
        if min(path_in) < 1 or any(c % groups for c in path_in) or out_channels % groups:
            raise ValueError(f"SKConv: each path's input channels {path_in} must be >= 1 and, like out_channels "
                             f"({out_channels}), divisible by groups={groups} (in_channels={in_channels}, "
                             f"split_input={split_input})")
        self.in_channels, self.out_channels, self.num_paths = in_channels, out_channels, M
        self.kernel_sizes, self.split_input, self.attention = kernel_sizes, split_input, attention
        self.path_in = path_in
        # Split: a k x k path is a 3x3 with dilation (k-1)/2 (keep_3x3), or a real k x k
        self.paths = ModuleList(
            conv_bn(c, out_channels, 3, stride, dilation * (k - 1) // 2, groups) if keep_3x3 else
            conv_bn(c, out_channels, k, stride, dilation, groups)
            for c, k in zip(path_in, kernel_sizes))
        self.last_attention = None
        if attention == "uniform":  # the paths averaged: nothing to fuse or select with
            return
        # Fuse: s (N, C) -> z (N, d)
        d = rd_channels if rd_channels is not None else attention_width(out_channels, reduction, min_dim, rd_divisor)
        self.fc_reduce = Linear(out_channels, d, bias=False)
        self.bn_reduce = BatchNorm1d(d)
        # Select: z -> one logit per path and channel; rows [m*C, (m+1)*C) are the paper's A_m
        self.fc_select = Linear(d, M * out_channels, bias=False)

    def forward(self, x):
        M, C = self.num_paths, self.out_channels
        inputs = x.split(self.path_in, dim=1) if self.split_input else (x,) * M
        U = [path(xm) for path, xm in zip(self.paths, inputs)]           # Split
        if self.attention == "uniform":                                   # no attention: the paths' mean
            xp = get_array_module(U[0].data)
            self.last_attention = Tensor(xp.full((U[0].shape[0], M, C), 1 / M, U[0].dtype))
            return sum(U[1:], U[0]) * (1 / M)
        s = sum(U[1:], U[0]).mean(dim=(2, 3))                             # Fuse: F_gp(U_1 + ... + U_M)
        z = F.relu(self.bn_reduce(self.fc_reduce(s)))                     #       F_fc
        logits = self.fc_select(z).reshape(-1, M, C)                      # Select
        if self.attention == "sigmoid":
            a = F.sigmoid(logits)
        else:  # sigmoid_norm: sigmoid(l_m) / sum_k sigmoid(l_k), as the softmax of log sigmoid (never 0 / 0)
            a = F.softmax(F.logsigmoid(logits) if self.attention == "sigmoid_norm" else logits, dim=1)
        self.last_attention = a.detach()
        weighted = [a[:, m].reshape(-1, C, 1, 1) * U[m] for m in range(M)]
        return sum(weighted[1:], weighted[0])                             # V = sum_m a_m * U_m

    def extra_repr(self):
        d = f"d={self.fc_reduce.out_features}, " if self.attention != "uniform" else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}, "
                f"{d}split_input={self.split_input}, attention={self.attention!r}")


class SEBlock(Module):
    """Squeeze-and-Excitation: x * sigmoid(W2 ReLU(W1 mean_{h,w} x)), W1: C -> C/r, W2: C/r -> C (with biases)."""

    def __init__(self, channels, reduction=16, rd_channels=None):
        super().__init__()
        channels, reduction = check_int(channels, "SEBlock: channels"), check_int(reduction, "SEBlock: reduction")
        d = check_int(rd_channels, "SEBlock: rd_channels") if rd_channels is not None else max(channels // reduction, 1)
        self.fc1 = Linear(channels, d)
        self.fc2 = Linear(d, channels)
        self.last_attention = None

    def forward(self, x):
        s = x.mean(dim=(2, 3))                                            # squeeze (N, C)
        a = F.sigmoid(self.fc2(F.relu(self.fc1(s))))                      # excite  (N, C)
        self.last_attention = a.detach()
        return x * a.reshape(a.shape[0], a.shape[1], 1, 1)


def collect_attention(model):
    """{qualified name: last_attention as a NumPy array (N, M, C)} for every SKConv that has run."""
    return {name: m.last_attention.numpy() for name, m in model.named_modules()
            if isinstance(m, SKConv) and m.last_attention is not None}


__all__ = ["ATTENTIONS", "SKConv", "SEBlock", "conv_bn", "make_divisible", "attention_width", "collect_attention"]
