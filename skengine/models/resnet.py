"""The ImageNet SK networks, built layer for layer like timm's ``ResNet`` so timm checkpoints load.

    stem: conv7x7/2 (64) - BN - ReLU - maxpool3x3/2
    layer1..4: residual stages (first block of layer2..4 strided), projection shortcuts
    global average pool - fc

Parameter counts (1000 classes; equal to timm 1.0.31's, asserted in tests) and
multiply-adds of the conv and linear layers for one 224x224 image (``skengine.summary``):

    skresnet18          11,958,056   1.81 GMACs   (timm's: split input, d = make_divisible(C/8, 16))
    skresnet34          22,282,376   3.66 GMACs
    skresnext50_32x4d   27,479,784   4.46 GMACs   SKNet-50  (paper: 27.5M, 4.47 GFLOPs)
    sknet101            48,736,040   8.45 GMACs   SKNet-101 (paper: 48.9M, 8.46 GFLOPs)

SKNet-50/101 are the paper's Table 1 design: ResNeXt 32x4d bottlenecks with the
grouped 3x3 replaced by SK[M=2, G=32, r=16, L=32].  timm sizes d with
make_divisible(C/16, 32), which for C = 128..1024 gives the paper's
max(C/16, 32) = 32, 32, 32, 64 exactly, so following timm loses nothing.

Gaps to the paper.  Multiply-adds: 0.16% and 0.13% low; counting also the
attention's products a_m * U_m (2*C*H*W per SK unit, 5.5M for SKNet-50 and 8.9M
for SKNet-101) would give 4.468 and 8.458 G, the paper's figures to their
rounding, so that is likely what the paper counted in addition.  Parameters:
SKNet-50 matches (27.48M); SKNet-101 is 0.16M (0.3%) below the paper's 48.9M,
and the architecture the paper describes has no room for the difference (biases
on all the SK units' FCs would add only 34k), so it must lie in how the authors
counted; timm's count, which we reproduce, is the one checkpoints need.
"""
from ..functional.args import check_int
from ..nn.layers import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU
from ..nn.module import Module
from .blocks import BasicBlock, Bottleneck, add_stages, init_weights
from .registry import register


class ResNet(Module):
    """timm's ResNet with the default (7x7) stem, switchable attention blocks and optional widths.

    ``channels`` are the stages' ``planes`` (timm's argument of the same name); the
    block's output is planes * expansion.  ``cardinality``/``base_width`` shape
    Bottleneck widths.  ``attention``, ``sk_kwargs`` and ``se_reduction`` go to
    every block (see models.blocks).
    """

    def __init__(self, block, layers, num_classes=1000, in_chans=3, channels=(64, 128, 256, 512),
                 cardinality=1, base_width=64, attention="sk", sk_kwargs=None, se_reduction=16,
                 zero_init_last=False):
        super().__init__()
        num_classes = check_int(num_classes, "ResNet: num_classes")  # before building the trunk
        self.conv1 = Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.act1 = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1)
        inplanes = add_stages(self, block, 64, channels, layers, (1,) + (2,) * (len(layers) - 1), attention,
                              sk_kwargs, se_reduction, cardinality, base_width)
        self.num_features = inplanes
        self.global_pool = AdaptiveAvgPool2d(1)
        self.fc = Linear(inplanes, num_classes)
        init_weights(self, zero_init_last)

    def forward_features(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x):
        x = self.global_pool(self.forward_features(x))
        return self.fc(x.reshape(x.shape[:2]))  # (N, C, 1, 1) -> (N, C); flatten(1) fails on an empty batch


def _sk(preset, sk_kwargs):
    return dict(preset, **(sk_kwargs or {}))


@register
def skresnet18(num_classes=1000, sk_kwargs=None, **kwargs):
    """SK-ResNet-18 (timm): basic blocks, SK paths on split input, d = make_divisible(C/8, 16)."""
    sk = _sk(dict(reduction=8, rd_divisor=16, split_input=True), sk_kwargs)
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, sk_kwargs=sk, **kwargs)


@register
def skresnet34(num_classes=1000, sk_kwargs=None, **kwargs):
    """SK-ResNet-34 (timm), the same blocks as skresnet18 in 3-4-6-3 stages."""
    sk = _sk(dict(reduction=8, rd_divisor=16, split_input=True), sk_kwargs)
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, sk_kwargs=sk, **kwargs)


@register
def skresnext50_32x4d(num_classes=1000, sk_kwargs=None, **kwargs):
    """SKNet-50: ResNeXt-50 32x4d with SK[M=2, G=32, r=16] units (timm's skresnext50_32x4d)."""
    sk = _sk(dict(reduction=16, rd_divisor=32, split_input=False), sk_kwargs)
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, cardinality=32, base_width=4, sk_kwargs=sk, **kwargs)


@register
def sknet50(num_classes=1000, **kwargs):
    """The paper's name for skresnext50_32x4d."""
    return skresnext50_32x4d(num_classes, **kwargs)


@register
def sknet101(num_classes=1000, sk_kwargs=None, **kwargs):
    """SKNet-101: SKNet-50 with 3-4-23-3 blocks."""
    sk = _sk(dict(reduction=16, rd_divisor=32, split_input=False), sk_kwargs)
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, cardinality=32, base_width=4, sk_kwargs=sk, **kwargs)


__all__ = ["ResNet", "skresnet18", "skresnet34", "skresnext50_32x4d", "sknet50", "sknet101"]
