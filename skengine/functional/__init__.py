"""Neural-network functions with PyTorch's names and semantics (``import skengine.functional as F``).

The heavy ones (convolution, batch norm, pooling, softmax family, losses)
are single Functions with a hand-written backward; the light ones compose
the tensor ops.  One module per family:

    activation.py     relu, sigmoid, logsigmoid, tanh, leaky_relu, gelu, softmax, log_softmax
    conv.py           conv2d (the array engine beneath it: skengine/convolution.py)
    padding.py        pad2d (zeros, reflect, replicate, circular)
    normalization.py  batch_norm
    pooling.py        max_pool2d, avg_pool2d, adaptive_avg_pool2d
    linear.py         linear
    loss.py           cross_entropy, nll_loss
    dropout.py        dropout
    args.py           the argument checks the functions and the layers share
"""
from .activation import (
                         GELU,
                         LeakyReLU,
                         LogSigmoid,
                         LogSoftmax,
                         Softmax,
                         gelu,
                         leaky_relu,
                         log_softmax,
                         logsigmoid,
                         relu,
                         sigmoid,
                         softmax,
                         tanh,
)
from .conv import Conv2d, conv2d
from .dropout import Dropout, dropout
from .linear import linear
from .loss import CrossEntropy, cross_entropy, nll_loss
from .normalization import BatchNorm, batch_norm
from .padding import pad2d
from .pooling import AvgPool2d, MaxPool2d, adaptive_avg_pool2d, avg_pool2d, max_pool2d

__all__ = ["relu", "sigmoid", "logsigmoid", "tanh", "leaky_relu", "gelu", "softmax", "log_softmax", "conv2d",
           "pad2d", "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "linear", "cross_entropy",
           "nll_loss", "dropout", "LeakyReLU", "LogSigmoid", "GELU", "Softmax", "LogSoftmax", "Conv2d", "BatchNorm",
           "MaxPool2d", "AvgPool2d", "CrossEntropy", "Dropout"]
