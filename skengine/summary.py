"""``summary(model, input_shape)``: per-layer output shapes, parameters and multiply-adds, like torchinfo.

It runs one forward pass (eval mode, no graph) on a zero batch with a forward
hook on every module.  Multiply-adds are counted where the arithmetic is:

    Conv2d   N * C_out * H_out * W_out * (C_in / groups) * kh * kw
    Linear   (number of output values) * in_features

which is how the paper (and most papers) count "FLOPs".  BN, activations,
pooling and additions are not counted.  A container's row sums its subtree.
"""
from collections import namedtuple

import numpy as np

from .autograd import Tensor, no_grad
from .backend import to_device
from .nn.layers import Conv2d, Linear

LayerInfo = namedtuple("LayerInfo", ["name", "kind", "depth", "output_shape", "params", "macs"])


def _macs(module, output):
    if isinstance(module, Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, Linear):
        return output.numel() * module.in_features
    return 0


def _shape(output):
    if isinstance(output, Tensor):
        return list(output.shape)
    return [_shape(o) for o in output]


class Summary:
    """The result: ``layers`` (every module, a LayerInfo each, in definition order), ``total_params``,
    ``trainable_params``, ``total_macs`` (for one forward of the given input); str() is the table."""

    def __init__(self, model, input_shape, layers, depth, total_macs):
        self.model_name, self.input_shape, self.layers, self.depth = type(model).__name__, input_shape, layers, depth
        self.total_params = sum(p.numel() for p in model.parameters())
        self.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.total_macs = total_macs

    def __str__(self):
        head = f"{'Layer (type)':<48}{'Output Shape':<22}{'Param #':>13}{'Mult-Adds':>17}"
        rule = "=" * len(head)
        lines = [f"{self.model_name}, input {list(self.input_shape)}", rule, head, rule]
        for layer in self.layers:
            if layer.depth <= self.depth:
                label = "  " * (layer.depth - 1) + f"{layer.name.rsplit('.', 1)[-1]} ({layer.kind})"
                shape = str(layer.output_shape) if layer.output_shape is not None else "--"
                lines.append(f"{label:<48}{shape:<22}{layer.params:>13,}{layer.macs:>17,}")
        lines += [rule, f"Total params: {self.total_params:,}", f"Trainable params: {self.trainable_params:,}",
                  f"Mult-adds: {self.total_macs:,} ({self.total_macs / 1e9:.2f} G)", rule]
        return "\n".join(lines)

    __repr__ = __str__


def summary(model, input_shape, batch_size=1, depth=3, dtype=np.float32, device="cpu"):
    """Summarise ``model`` on an input of shape (batch_size, *input_shape); rows down to ``depth``
    are printed (all are kept in ``.layers``)."""
    named = list(model.named_modules())
    seen = {id(m): {"shape": None, "macs": 0} for _, m in named}

    def record(module, args, output):
        seen[id(module)]["shape"] = _shape(output)
        seen[id(module)]["macs"] += _macs(module, output)

    handles = [m.register_forward_hook(record) for _, m in named[1:]]
    modes = [(m, m.training) for _, m in named]
    try:
        model.eval()
        with no_grad():
            model(Tensor(to_device(np.zeros((batch_size,) + tuple(input_shape), dtype), device)))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode

    total = {name: seen[id(m)]["macs"] for name, m in named}
    for name, _ in reversed(named[1:]):  # children follow their parent: add each subtree upwards
        total[name.rpartition(".")[0]] += total[name]
    layers = [LayerInfo(name, type(m).__name__, name.count(".") + 1, seen[id(m)]["shape"],
                        sum(p.numel() for p in m.parameters()), total[name]) for name, m in named[1:]]
    return Summary(model, input_shape, layers, depth, total[""])


__all__ = ["summary", "Summary", "LayerInfo"]
