"""An SK network shaped for a time budget on CIFAR: airbench's trunk with an SK unit in every block.

The fastest published CIFAR-10 recipes (Keller Jordan's airbench, arXiv 2404.00498, after David Page's
ResNet-9) spend their multiply-adds where they buy accuracy soonest: no residuals, a pooling right after
the first conv of every block (so BatchNorm and the second conv run at a quarter of the pixels), few
wide stages, and a first layer that whitens 2x2 patches (fitted to the training data, then frozen:
``init.patch_whitening_``).  ``sknet_cifar_fast`` keeps that trunk and makes the second conv of each
block an SK unit whose two paths, 3x3 and 3x3 dilated by 2, each convolve all the channels (timm's split
input, where each path sees half of them and the unit costs what the conv it replaces did, trained 1.2 points
worse at a one-epoch budget in the same time on 2 cores: benchmarks/history/2026-12-02-fast-recipe-15-epochs-zen4.md):

    whiten   conv 2x2, 3 -> 24 (no padding, 32 -> 31 px), GELU
    block    conv 3x3 -> max pool 2 -> BN -> GELU -> SKConv                  x 3: 31 -> 15 -> 7 -> 3 px
    head     max pool 3 -> linear (no bias) -> x logit_scale

    widths 64-128-128 (airbench93's): 917,528 params (916,232 trained), 71.1M multiply-adds per 32x32 image
    (skengine.summary); the default command's (``attention=("none", "sk", "sk")``, the first block plain):
    877,432 params, 62.8M multiply-adds

Convolutions start as airbench's do: PyTorch's default init, with the first C_in filters of each replaced by
the identity (``init.dirac_``), so that at the start every block passes its input on.  BatchNorm follows
airbench: ``bn_momentum`` 0.4 (PyTorch's convention; airbench writes 0.6 for the kept fraction) and a frozen
weight of 1 (``freeze_bn_weight``), so a BN layer learns only its bias.
"""
from collections import OrderedDict

from ..functional.args import check_int
from ..nn import init
from ..nn.layers import GELU, BatchNorm1d, BatchNorm2d, Conv2d, Linear, MaxPool2d
from ..nn.module import Module, Parameter, Sequential
from ..nn.sk import SEBlock, SKConv
from .registry import register


class FastBlock(Module):
    """conv 3x3 -> max pool 2 -> BN -> GELU -> SKConv; for the ablations, ``attention="none"`` puts a plain
    conv 3x3 -> BN -> GELU in the SK unit's place and ``attention="se"`` the same followed by an SE gate
    (reduction 8, as the SK unit's)."""

    def __init__(self, in_channels, out_channels, attention="sk", sk_kwargs=None):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = MaxPool2d(2)
        self.bn = BatchNorm2d(out_channels)
        self.act = GELU("tanh")
        if attention == "sk":
            self.sk = SKConv(out_channels, out_channels, **dict(dict(reduction=8, min_dim=16, split_input=False),
                                                                 **(sk_kwargs or {})))
        elif attention in ("none", "se"):
            layers = OrderedDict(conv=Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                 bn=BatchNorm2d(out_channels), act=GELU("tanh"))
            if attention == "se":
                layers["se"] = SEBlock(out_channels, reduction=8)
            self.sk = Sequential(layers)
        else:
            raise ValueError(f"FastBlock: attention must be 'sk', 'se' or 'none', got {attention!r}")

    def forward(self, x):
        return self.sk(self.act(self.bn(self.pool(self.conv(x)))))


class FastSKNet(Module):
    """whiten -> blocks -> max pool -> linear, for 32x32 images (see the module's text).  ``attention`` is
    FastBlock's, for every block, or a sequence of one per block: ``("none", "sk", "sk")`` keeps the first
    block plain."""

    def __init__(self, widths=(64, 128, 128), num_classes=10, in_chans=3, whiten_width=24, attention="sk",
                 sk_kwargs=None, logit_scale=1 / 9, bn_momentum=0.4, bn_eps=1e-12, freeze_bn_weight=True):
        super().__init__()
        num_classes = check_int(num_classes, "FastSKNet: num_classes")
        whiten_width = check_int(whiten_width, "FastSKNet: whiten_width")
        if whiten_width % 2 or whiten_width > 2 * in_chans * 4:
            raise ValueError(f"FastSKNet: whiten_width must be even and at most 2 * {in_chans * 4} (twice the "
                             f"values in a 2x2 patch of {in_chans} channels), got {whiten_width}")
        self.whiten = Conv2d(in_chans, whiten_width, 2, bias=True)
        self.whiten.weight.requires_grad_(False)  # fitted to the data by init.patch_whitening_, then fixed
        init.zeros_(self.whiten.bias)  # as airbench
        self.act = GELU("tanh")
        widths = tuple(widths)
        attentions = (attention,) * len(widths) if isinstance(attention, str) else tuple(attention)
        if len(attentions) != len(widths):
            raise ValueError(f"FastSKNet: attention must be one string or one per block ({len(widths)} for widths "
                             f"{widths}), got {attention!r}")
        blocks, c = [], whiten_width
        for w, a in zip(widths, attentions):
            blocks.append(FastBlock(c, check_int(w, "FastSKNet: widths"), a, sk_kwargs))
            c = w
        self.blocks = Sequential(*blocks)
        self.pool = MaxPool2d(3)
        self.fc = Linear(c, num_classes, bias=False)
        self.logit_scale = float(logit_scale)
        self.num_features = c
        for m in self.modules():
            if isinstance(m, (BatchNorm1d, BatchNorm2d)):
                m.momentum, m.eps = bn_momentum, bn_eps
                if freeze_bn_weight:
                    m.weight.requires_grad_(False)
            elif isinstance(m, Conv2d) and m is not self.whiten:  # airbench: PyTorch's default init, and the
                _dirac_first(m.weight)                                # first C_in filters pass their input on

    def forward(self, x):
        x = self.pool(self.blocks(self.act(self.whiten(x))))
        return self.fc(x.reshape(x.shape[:2])) * self.logit_scale

    def extra_repr(self):
        return f"logit_scale={self.logit_scale:g}"


def _dirac_first(weight):
    """The first C_in output filters of a conv weight (O, C_in, k, k) become the identity (airbench's
    ``dirac_(w[:w.size(1)])``); the others keep their random start."""
    cin = weight.shape[1]
    identity = Parameter(weight.data[:cin].copy())
    init.dirac_(identity)
    w = weight.data.copy()
    w[:cin] = identity.data
    weight._write_(w)


@register
def sknet_cifar_fast(num_classes=10, **kwargs):
    """airbench's trunk (widths 64-128-128) with an SK unit in each of its three blocks."""
    return FastSKNet(num_classes=num_classes, **kwargs)


__all__ = ["FastSKNet", "FastBlock", "sknet_cifar_fast"]
