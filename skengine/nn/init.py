"""Weight initialisation, in place, with PyTorch's formulas and the engine's seeded RNG."""
import math

import numpy as np

from .. import random
from ..backend import to_device, to_numpy


def _fill(tensor, values):
    return tensor._write_(to_device(values.astype(tensor.dtype), tensor.device))


def _fans(tensor):
    if tensor.ndim < 2:
        raise ValueError(f"fan in/out need a tensor with at least 2 dimensions, got shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform_(tensor, a=0.0, b=1.0):
    return _fill(tensor, random.generator().uniform(a, b, tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    return _fill(tensor, random.generator().normal(mean, std, tensor.shape))


def constant_(tensor, value):
    return tensor._write_(value)


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan = _fans(tensor)[0 if mode == "fan_in" else 1]
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan = _fans(tensor)[0 if mode == "fan_in" else 1]
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


def dirac_(tensor, groups=1):
    """The identity convolution, as ``torch.nn.init.dirac_``: out channel i of each group passes in channel i
    through the kernel's centre (for i < min(out, in) per group); every other weight is 0."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only 3-, 4- and 5-D tensors are supported, got shape {tuple(tensor.shape)}")
    out_per_group = tensor.shape[0] // groups
    if tensor.shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({tensor.shape[0]}) must be divisible by groups={groups}")
    w = np.zeros(tensor.shape, np.float64)
    centre = tuple(k // 2 for k in tensor.shape[2:])
    for g in range(groups):
        for i in range(min(out_per_group, tensor.shape[1])):
            w[(g * out_per_group + i, i) + centre] = 1
    return _fill(tensor, w)


def patch_whitening_(weight, images, eps=5e-4):
    """Fill a conv weight (2k, C, kh, kw) with a whitening of the images' kh x kw patches (airbench's first
    layer): rows k and k + K are +v / sqrt(lambda + eps) and -v / sqrt(lambda + eps) for the eigenpairs
    (lambda, v) of the patches' covariance, largest first, so the layer maps a patch (its mean taken
    out by the bias, when there is one) to decorrelated coordinates of unit variance, both signs.

    ``images``: (N, C, H, W) array of the data the network sees (normalised as in training); N * (H-kh+1)
    * (W-kw+1) patches are used, in float64.
    """
    images = np.asarray(to_numpy(images), np.float64)  # the eigen-decomposition runs on the host
    two_k, C, kh, kw = weight.shape
    if images.ndim != 4 or images.shape[1] != C or images.shape[2] < kh or images.shape[3] < kw:
        raise ValueError(f"patch_whitening_: images must be (N, {C}, H >= {kh}, W >= {kw}) for a weight of "
                         f"shape {tuple(weight.shape)}, got {images.shape}")
    if two_k % 2 or two_k // 2 > C * kh * kw:
        raise ValueError(f"patch_whitening_: a weight of shape {tuple(weight.shape)} needs an even number of "
                         f"output channels, at most twice the {C * kh * kw} values of a patch")
    patches = np.lib.stride_tricks.sliding_window_view(images, (kh, kw), axis=(2, 3))  # N, C, H', W', kh, kw
    patches = patches.transpose(0, 2, 3, 1, 4, 5).reshape(-1, C * kh * kw)
    if len(patches) < 2:
        raise ValueError(f"patch_whitening_: {len(patches)} patch is too few for a covariance")
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    order = np.argsort(eigenvalues)[::-1][:two_k // 2]
    w = (eigenvectors[:, order] / np.sqrt(eigenvalues[order] + eps)).T.reshape(-1, C, kh, kw)
    return _fill(weight, np.concatenate([w, -w]))
