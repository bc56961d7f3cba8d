"""How a run's settings become its optimizer: the parameter groups (BN parameters and biases at
``bias_lr_scale`` times the learning rate, a whitening layer's bias in a group of its own, at the weights' rate
and decay as in airbench, that learns for ``whiten_bias_epochs`` only), the learning-rate schedule of each
group, the whitening layer fitted to the training images, and airbench's Lookahead schedule."""
import math

import numpy as np

from ..nn import init
from ..optim import SGD, AdamW, LambdaLR, param_groups_no_decay
from .config import step_lr

WHITEN_IMAGES = 5000  # airbench fits the whitening to the first 5,000 training images


def param_groups(model, cfg):
    """(groups for the optimizer, the index of the whitening bias's group or None).

    Weights decay with ``wd``; parameters of one dimension (BN's, biases) learn at ``bias_lr_scale`` times the
    step's rate and do not decay, or with ``bias_decay`` decay by the weights' amount a step (airbench's: a decay
    of wd / bias_lr_scale at their rate); the bias of a ``whiten`` layer learns like the weights (airbench), in a
    group of its own, so that it can stop."""
    lr = step_lr(cfg)
    whiten = getattr(model, "whiten", None)
    bias = whiten.bias if whiten is not None and cfg["whiten_bias_epochs"] is not None else None
    groups = param_groups_no_decay([(n, p) for n, p in model.named_parameters() if p is not bias], cfg["wd"])
    for g in groups:
        one_dim = all(len(p.shape) <= 1 for p in g["params"])  # not weight_decay == 0: --wd 0 zeroes both groups
        g["lr"] = lr * (cfg["bias_lr_scale"] if one_dim else 1.0)
        if one_dim and cfg["bias_decay"]:  # the weights' decay a step, lr * wd, at their rate
            g["weight_decay"] = cfg["wd"] / cfg["bias_lr_scale"]
    if bias is None or not bias.requires_grad:
        return groups, None
    groups.append({"params": [bias], "weight_decay": cfg["wd"], "lr": lr})
    return groups, len(groups) - 1


def build_optimizer(model, cfg, steps_per_epoch):
    """(optimizer, scheduler) of a run: SGD with Nesterov momentum or AdamW over param_groups, and one
    Schedule per group (the whitening bias's stops after ``whiten_bias_epochs``)."""
    groups, whiten_group = param_groups(model, cfg)
    if cfg["optimizer"] == "sgd":
        opt = SGD(groups, lr=step_lr(cfg), momentum=cfg["momentum"], nesterov=cfg["momentum"] > 0)
    else:
        opt = AdamW(groups, lr=step_lr(cfg))
    total = cfg["epochs"] * steps_per_epoch
    schedules = [Schedule(cfg["schedule"], total, cfg["warmup"], end=cfg["end_factor"]) for _ in groups]
    if whiten_group is not None:
        schedules[whiten_group].stop = round(cfg["whiten_bias_epochs"] * steps_per_epoch)
    return opt, LambdaLR(opt, schedules)


class Schedule:
    """The learning rate's factor (of a group's peak) after ``step`` steps of ``total``, warming up over the
    fraction ``warmup`` of them; from step ``stop`` on 0.  A callable object of plain attributes, so that
    LambdaLR's state_dict keeps it.

    - linear (airbench's): from 0.2 up to 1 over the warm-up, then down to ``end`` at the end;
    - onecycle (PyTorch's OneCycleLR, momentum fixed): cosine from 1/25 up to 1 over the warm-up (at least 2
      steps), then cosine down to 1/250000, where it stays; a constant 1 for runs of under 3 steps;
    - cosine: linear from 1/warm-up steps up to 1, then cosine down to 0;
    - step: 1, then 0.1 and 0.01 at each third of the run.
    """

    def __init__(self, kind, total, warmup, stop=None, end=0.0):
        self.kind, self.total, self.warmup, self.stop, self.end = kind, int(total), float(warmup), stop, float(end)

    def __call__(self, step):
        if self.stop is not None and step >= self.stop:
            return 0.0
        return getattr(self, "_" + self.kind)(step, self.total)

    def _linear(self, step, total):
        warm = min(total, max(1, round(self.warmup * total)))
        return float(np.interp(step, [0, warm, max(total, warm + 1)], [0.2, 1.0, self.end]))

    def _onecycle(self, step, total):
        if total < 3:  # no room for a warm-up step and a decay step
            return 1.0
        # a warm-up of at least one whole step, and a decay of at least one (--warmup 1 divided by zero)
        peak = min(max(self.warmup, 2 / total) * total - 1, total - 2)
        start, end = (1 / 25, 1.0) if step <= peak else (1.0, 1 / 25 / 1e4)
        pct = step / peak if step <= peak else min(1.0, (step - peak) / (total - 1 - peak))
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    def _cosine(self, step, total):
        warm = int(self.warmup * total)
        if step < warm:
            return (step + 1) / warm
        return (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm)))) / 2.0

    def _step(self, step, total):
        return 0.1 ** (step // max(1, total // 3))


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


__all__ = ["param_groups", "build_optimizer", "Schedule", "fit_whitening", "lookahead_alpha", "WHITEN_IMAGES"]
