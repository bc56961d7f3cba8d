"""The standard layers, each a thin Module over a function in skengine.functional."""
import math

import numpy as np

from .. import functional as F
from ..functional.args import as_pair, check_int
from ..functional.loss import reduction_mode
from .init import kaiming_uniform_, uniform_
from .module import Module, Parameter


def _init_weight(weight):
    """torch's default kaiming_uniform_(a=sqrt(5)); like torch, a weight with no elements (a zero size,
    so fan-in 0) is left as it is."""
    if weight.data.size:
        kaiming_uniform_(weight, a=math.sqrt(5))


def _fan_in_bias(bias, fan_in):
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    uniform_(bias, -bound, bound)


class Conv2d(Module):
    """padding: an int, a pair, 'valid' or 'same' (stride 1); padding_mode 'zeros', 'reflect',
    'replicate' or 'circular', as torch.nn.Conv2d."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros"):
        super().__init__()
        in_channels = check_int(in_channels, "Conv2d: in_channels", 0)
        out_channels = check_int(out_channels, "Conv2d: out_channels", 0)
        groups = check_int(groups, "Conv2d: groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        if min(self.kernel_size) < 1:
            raise ValueError(f"Conv2d: kernel_size must be >= 1, got {kernel_size!r}")
        self.stride, self.dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: invalid padding string {padding!r}, should be one of 'valid', 'same'")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' is not supported for strided convolutions, "
                                 f"got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = as_pair(padding, "padding")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.weight = Parameter(np.empty((out_channels, in_channels // groups) + self.kernel_size, np.float32))
        _init_weight(self.weight)
        if bias:
            self.bias = Parameter(np.empty(out_channels, np.float32))
            _fan_in_bias(self.bias, math.prod(self.weight.shape[1:]))
        else:
            self.bias = None

    def _pads(self):
        """(top, bottom, left, right): what padding_mode pads before a convolution without padding."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":  # an odd total puts the extra row / column at the bottom / right
            (th, tw) = (d * (k - 1) for k, d in zip(self.kernel_size, self.dilation))
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        (ph, pw) = self.padding
        return (ph, ph, pw, pw)

    def forward(self, x):
        if self.padding_mode == "zeros":
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if x.ndim != 4:
            raise ValueError(f"Conv2d: input must be 4-D (N, C, H, W), got shape {x.shape}")
        x = F.pad2d(x, self._pads(), self.padding_mode)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        s += f", padding={self.padding}" if self.padding != (0, 0) else ""
        s += f", dilation={self.dilation}" if self.dilation != (1, 1) else ""
        s += f", groups={self.groups}" if self.groups != 1 else ""
        s += ", bias=False" if self.bias is None else ""
        return s + (f", padding_mode={self.padding_mode}" if self.padding_mode != "zeros" else "")


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = check_int(in_features, "Linear: in_features", 0)
        self.out_features = check_int(out_features, "Linear: out_features", 0)
        self.weight = Parameter(np.empty((out_features, in_features), np.float32))
        _init_weight(self.weight)
        if bias:
            self.bias = Parameter(np.empty(out_features, np.float32))
            _fan_in_bias(self.bias, in_features)
        else:
            self.bias = None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _BatchNorm(Module):
    """momentum=None: the running statistics are the cumulative average over the batches seen."""
    _ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, np.float32))
            self.register_buffer("running_var", np.ones(num_features, np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        if x.ndim not in self._ndims:
            raise ValueError(f"{type(self).__name__}: expected a {' or '.join(map(str, self._ndims))}-D input, "
                             f"got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): input has {x.shape[1]} channels, "
                             f"shape {x.shape}")
        use_batch_stats = self.training or not self.track_running_stats
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked._write_(self.num_batches_tracked.data + 1)
            if self.momentum is None:  # a cumulative moving average, as PyTorch
                factor = 1.0 / float(self.num_batches_tracked.data)
        return F.batch_norm(x, self.running_mean if self.track_running_stats else None,
                            self.running_var if self.track_running_stats else None,
                            self.weight, self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    _ndims = (4,)


class ReLU(Module):
    def __init__(self, inplace=False):  # inplace accepted for PyTorch compatibility; ops never mutate
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01, inplace=False):  # inplace accepted for PyTorch compatibility
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Softmax(Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, (stride if stride is not None else kernel_size)
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, (stride if stride is not None else kernel_size)
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class NLLLoss(Module):
    """F.nll_loss as a module, with torch.nn.NLLLoss's arguments (``weight`` is a buffer)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction_mode(reduction, size_average, reduce, type(self).__name__)

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class CrossEntropyLoss(Module):
    """F.cross_entropy as a module, with torch.nn.CrossEntropyLoss's arguments (``weight`` is a buffer)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing
        self.reduction = reduction_mode(reduction, size_average, reduce, type(self).__name__)

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


__all__ = ["Conv2d", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "GELU", "Sigmoid", "Tanh",
           "Softmax", "Identity", "Flatten", "Dropout", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "NLLLoss",
           "CrossEntropyLoss"]
