"""Batch normalisation."""
import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from .args import check_tensor


class BatchNorm(Function):
    """Normalise over every axis but the channel axis 1: y = (x - mean) / sqrt(var + eps) * weight + bias.

    In training the statistics are the batch's (computed here, and folded
    into the ``running_mean``/``running_var`` tensors when given, in place
    through ``Tensor._write_``, which bumps their versions); in evaluation they
    are the running ones, copied, so that a later update of the buffers does
    not change this node's backward.  Per channel the whole map is
    y = x * scale + shift, so forward makes one new array and keeps nothing
    the size of x but x itself; backward is gx = a * gy + b * (x - mean) + c
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
                    running._write_((1 - self.momentum) * running.data + self.momentum * value)
        else:
            self.mean, var = self.running_mean.data.copy(), self.running_var.data  # the buffers may change
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
    x = check_tensor(input, "input")
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
    return BatchNorm(running_mean, running_var, eps, momentum, training)(x, weight, bias)
