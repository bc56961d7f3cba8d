"""Residual blocks with a switchable attention unit, and the stage builder every SK model uses.

``attention`` picks what the block is, so one network definition serves the ablations:

    BasicBlock   "sk": SKConv -> conv3x3-BN          (timm's SelectiveKernelBasic, skresnet18/34)
                 "se": conv3x3-BN-ReLU -> conv3x3-BN -> SE
                 "none": conv3x3-BN-ReLU -> conv3x3-BN  (ResNet's basic block)
    Bottleneck   "sk": 1x1 -> SKConv(groups G) -> 1x1  (SKNet, timm's SelectiveKernelBottleneck)
                 "se": 1x1 -> grouped 3x3 -> 1x1 -> SE  (SE-ResNeXt)
                 "none": 1x1 -> grouped 3x3 -> 1x1      (ResNeXt)

then out = ReLU(branch(x) + shortcut(x)).  Module names follow timm (conv1,
conv2, conv3, se, downsample.0/1), so timm checkpoints map key for key.
"""
import math

from .. import functional as F
from ..nn import init
from ..nn.layers import BatchNorm2d, Conv2d
from ..nn.module import Module, Sequential
from ..nn.sk import SEBlock, SKConv, conv_bn

ATTENTIONS = ("sk", "se", "none")


def _check(attention):
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")


class BasicBlock(Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention="sk", sk_kwargs=None,
                 se_reduction=16):
        super().__init__()
        _check(attention)
        if attention == "sk":
            self.conv1 = SKConv(inplanes, planes, stride=stride, **(sk_kwargs or {}))
        else:
            self.conv1 = conv_bn(inplanes, planes, 3, stride)
        self.conv2 = conv_bn(planes, planes, 3, act=False)
        self.se = SEBlock(planes, se_reduction) if attention == "se" else None
        self.downsample = downsample

    def residual(self):
        """The BN whose output is added to the shortcut (zero it for an identity-at-init block)."""
        return self.conv2.bn

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class Bottleneck(Module):
    """ResNeXt bottleneck: width = floor(planes * base_width / 64) * cardinality, output planes * 4."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, cardinality=1, base_width=64,
                 attention="sk", sk_kwargs=None, se_reduction=16):
        super().__init__()
        _check(attention)
        width = int(math.floor(planes * base_width / 64)) * cardinality
        outplanes = planes * self.expansion
        self.conv1 = conv_bn(inplanes, width, 1)
        if attention == "sk":
            self.conv2 = SKConv(width, width, stride=stride, groups=cardinality, **(sk_kwargs or {}))
        else:
            self.conv2 = conv_bn(width, width, 3, stride, groups=cardinality)
        self.conv3 = conv_bn(width, outplanes, 1, act=False)
        self.se = SEBlock(outplanes, se_reduction) if attention == "se" else None
        self.downsample = downsample

    def residual(self):
        return self.conv3.bn

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def make_stage(block, inplanes, planes, num_blocks, stride, **block_kwargs):
    """``num_blocks`` blocks, the first one strided; a 1x1-conv + BN projection shortcut where
    the shape changes (timm's ``downsample_conv``).  Returns (Sequential, output channels)."""
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = Sequential(Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), BatchNorm2d(outplanes))
    blocks = [block(inplanes, planes, stride, downsample, **block_kwargs)]
    blocks += [block(outplanes, planes, 1, None, **block_kwargs) for _ in range(num_blocks - 1)]
    return Sequential(*blocks), outplanes


def add_stages(model, block, inplanes, channels, layers, strides, attention="sk", sk_kwargs=None,
               se_reduction=16, cardinality=1, base_width=64):
    """Attach stages ``layer1``, ``layer2``, ... to ``model`` (names in ``model.stage_names``);
    return the last stage's output channels."""
    block_kwargs = dict(attention=attention, sk_kwargs=sk_kwargs, se_reduction=se_reduction)
    if block is Bottleneck:
        block_kwargs.update(cardinality=cardinality, base_width=base_width)
    model.stage_names = []
    for i, (planes, num_blocks, stride) in enumerate(zip(channels, layers, strides)):
        stage, inplanes = make_stage(block, inplanes, planes, num_blocks, stride, **block_kwargs)
        model.add_module(f"layer{i + 1}", stage)
        model.stage_names.append(f"layer{i + 1}")
    return inplanes


def init_weights(model, zero_init_last=False):
    """Convs: He normal with fan_out (timm and torchvision's ResNet init; BN and Linear keep their
    defaults); with ``zero_init_last`` each block starts as the identity (its last BN weight is 0)."""
    for m in model.modules():
        if isinstance(m, Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    if zero_init_last:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                init.zeros_(m.residual().weight)
    return model


__all__ = ["BasicBlock", "Bottleneck", "make_stage", "add_stages", "init_weights", "ATTENTIONS"]
