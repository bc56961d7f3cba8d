"""Layers (``import skengine.nn as nn``), with PyTorch's names and defaults."""
from . import init
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,
                     Identity, Linear, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh)
from .module import Module, ModuleList, Parameter, Sequential
from .sk import SEBlock, SKConv

__all__ = ["init", "Module", "ModuleList", "Parameter", "Sequential", "Conv2d", "Linear", "BatchNorm1d",
           "BatchNorm2d", "ReLU", "Sigmoid", "Tanh", "Softmax", "Identity", "Flatten", "Dropout",
           "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "SKConv", "SEBlock"]
