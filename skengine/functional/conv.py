"""2-D convolution: argument checks, padding modes and the autograd Function over the array engine
(``skengine/convolution.py``)."""
import numpy as np

from ..autograd import Function
from ..convolution import conv2d_backward, conv2d_forward
from ..im2col import conv_output_size
from .args import as_pair, check_tensor, unbatched
from .padding import pad2d


class Conv2d(Function):
    """Grouped, strided, dilated 2-D convolution of x (N, C, H, W) with w (O, C/groups, kh, kw), plus a bias.

    The arrays are convolved by ``skengine.convolution`` (flat im2col, one
    matmul per group, chunked for the cache); this node keeps x and w, and
    backward rebuilds what it needs from them.
    """

    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, w, b=None):
        self.x, self.w, self.has_bias = x, w, b is not None
        y = conv2d_forward(x, w, self.stride, self.padding, self.dilation, self.groups)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        # only what is needed: nothing for an input image through a frozen weight (a whitening layer), only dw
        # for the input image or what a frozen layer made of it
        gx, gw = conv2d_backward(self.x, self.w, gy, self.stride, self.padding, self.dilation, self.groups,
                                 need=tuple(self.needs_input_grad[:2]))
        return gx, gw, (gy.sum(axis=(0, 2, 3)) if self.has_bias else None)


def _conv_padding(padding, kernel, stride, dilation):
    """conv2d's padding as ((top, left), (bottom extra, right extra)).

    An int or pair pads symmetrically; 'valid' is no padding; 'same' (stride 1
    only) pads dilation*(k-1) in all, and, like PyTorch, an odd total puts the
    extra row or column at the bottom or right.
    """
    if not isinstance(padding, str):
        return as_pair(padding, "padding"), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"conv2d: padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"conv2d: padding='same' is not supported for strided convolutions, got stride {stride}")
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple(t // 2 for t in totals), tuple(t % 2 for t in totals)


@unbatched
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over NCHW ``input`` with weight (out, in/groups, kh, kw).

    padding: an int, a pair, 'valid' (none) or 'same' (stride 1; output size = input size).
    """
    x, w = check_tensor(input, "input"), check_tensor(weight, "weight")
    stride, dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
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
    if min(kh, kw) < 1:
        raise ValueError(f"conv2d: weight {w.shape} has an empty kernel; kh and kw must be >= 1")
    if C == 0 and N and O:
        raise ValueError(f"conv2d: input {x.shape} has 0 channels, which (as in PyTorch) works only for "
                         f"an empty batch or a weight with 0 output channels; weight {w.shape}")
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
        x = pad2d(x, (0, extra[0], 0, extra[1]))
    fn = Conv2d(stride, padding, dilation, int(groups))
    return fn(x, w) if bias is None else fn(x, w, bias)
