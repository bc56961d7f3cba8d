"""Layers (``import skengine.nn as nn``), with PyTorch's names and defaults."""
from . import init
from .layers import (
                     GELU,
                     AdaptiveAvgPool2d,
                     AvgPool2d,
                     BatchNorm1d,
                     BatchNorm2d,
                     Conv2d,
                     CrossEntropyLoss,
                     Dropout,
                     Flatten,
                     Identity,
                     LeakyReLU,
                     Linear,
                     MaxPool2d,
                     NLLLoss,
                     ReLU,
                     Sigmoid,
                     Softmax,
                     Tanh,
)
from .module import Module, ModuleList, Parameter, Sequential
from .sk import SEBlock, SKConv

__all__ = ["init", "Module", "ModuleList", "Parameter", "Sequential", "Conv2d", "Linear", "BatchNorm1d",
           "BatchNorm2d", "ReLU", "LeakyReLU", "GELU", "Sigmoid", "Tanh", "Softmax", "Identity", "Flatten", "Dropout",
           "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "NLLLoss", "CrossEntropyLoss", "SKConv", "SEBlock"]
