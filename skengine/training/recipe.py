"""The fast recipe's pieces the trainer calls (config.RECIPES names the settings): the optimizer's parameter
groups (BN parameters and biases at ``bias_lr_scale`` times the learning rate, a whitening layer's bias in
a group of its own, at the weights' rate and decay as in airbench, that stops after ``whiten_bias_epochs``),
the whitening layer fitted to the training images, and airbench's Lookahead schedule."""
import numpy as np

from ..nn import init
from ..optim import param_groups_no_decay

WHITEN_IMAGES = 5000  # airbench fits the whitening to the first 5,000 training images


def param_groups(model, cfg):
    """(groups for the optimizer, the index of the whitening bias's group or None).

    Weights decay with ``wd``; parameters of one dimension (BN's, biases) do not, and learn at ``lr *
    bias_lr_scale``; the bias of a ``whiten`` layer learns like the weights (airbench), in a group of its own,
    so that it can stop.  (airbench also decays BN biases, by the weights' amount a step; they do not decay
    here, as in the trainer's other runs.)"""
    whiten = getattr(model, "whiten", None)
    bias = whiten.bias if whiten is not None and cfg["whiten_bias_epochs"] is not None else None
    groups = param_groups_no_decay([(n, p) for n, p in model.named_parameters() if p is not bias], cfg["wd"])
    for g in groups:
        g["lr"] = cfg["lr"] * (cfg["bias_lr_scale"] if g["weight_decay"] == 0 else 1.0)
    if bias is None or not bias.requires_grad:
        return groups, None
    groups.append({"params": [bias], "weight_decay": cfg["wd"], "lr": cfg["lr"]})
    return groups, len(groups) - 1


def fit_whitening(model, cfg, images, mean, std):
    """Fit the model's ``whiten`` layer (if it has one) to the first training images, normalised as the
    loader does; with ``whiten`` off, train that layer's weights from their random start instead."""
    whiten = getattr(model, "whiten", None)
    if whiten is None:
        return
    if not cfg["whiten"]:
        whiten.weight.requires_grad_(True)
        return
    x = np.asarray(images[:WHITEN_IMAGES], np.float64) / 255
    x = (x - np.asarray(mean).reshape(1, -1, 1, 1)) / np.asarray(std).reshape(1, -1, 1, 1)
    init.patch_whitening_(whiten.weight, x)


def lookahead_alpha(step, total, k):
    """airbench's Lookahead: the slow weights follow the model fully at first, and ever less towards the end
    (1 - 0.95^k * progress^3)."""
    return 1.0 - 0.95 ** k * (min(step, total) / total) ** 3


__all__ = ["param_groups", "fit_whitening", "lookahead_alpha", "WHITEN_IMAGES"]
