"""SK network definitions: the timm-compatible ImageNet family, the CIFAR family, and a registry.

    import skengine.models as models
    net = models.create("sknet_cifar_small", num_classes=10)            # SK units
    ref = models.create("sknet_cifar_small", attention="none")          # the same net without attention
    sig = models.create("sknet_cifar_small", sk_kwargs=dict(attention="sigmoid", kernel_sizes=(3, 5, 7)))
    net(x); models.collect_attention(net)                               # {layer: (N, M, C) gates}
"""
from ..nn.sk import collect_attention
from .blocks import BasicBlock, Bottleneck, init_weights, make_stage
from .cifar import CifarSKNet, sknet29, sknet_cifar_small, sknet_cifar_tiny
from .fast import FastSKNet, sknet_cifar_fast
from .registry import create, list_models, register
from .resnet import ResNet, sknet50, sknet101, skresnet18, skresnet34, skresnext50_32x4d

__all__ = ["create", "list_models", "register", "collect_attention", "ResNet", "CifarSKNet", "BasicBlock",
           "Bottleneck", "make_stage", "init_weights", "skresnet18", "skresnet34", "skresnext50_32x4d",
           "sknet50", "sknet101", "sknet29", "sknet_cifar_tiny", "sknet_cifar_small", "FastSKNet",
           "sknet_cifar_fast"]
