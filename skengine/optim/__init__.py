"""Optimizers, learning-rate schedules and weight averaging.

    from skengine.optim import AdamW, WarmupCosineLR, param_groups_no_decay
    opt = AdamW(param_groups_no_decay(model, 0.05), lr=1e-3)
    sched = WarmupCosineLR(opt, warmup_steps=500, total_steps=20_000)

Update rules and ``state_dict()`` layout follow ``torch.optim``.
"""
from . import lr_scheduler
from .adam import Adam
from .adamw import AdamW
from .ema import ModelEMA
from .lookahead import Lookahead
from .lr_scheduler import (
                           ConstantLR,
                           CosineAnnealingLR,
                           CosineAnnealingWarmRestarts,
                           ExponentialLR,
                           LambdaLR,
                           LinearLR,
                           LRScheduler,
                           MultiStepLR,
                           OneCycleLR,
                           ReduceLROnPlateau,
                           SequentialLR,
                           StepLR,
                           WarmupCosineLR,
)
from .optimizer import Optimizer, param_groups_no_decay
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "param_groups_no_decay", "LRScheduler",
           "WarmupCosineLR", "OneCycleLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
           "ExponentialLR", "CosineAnnealingLR", "LambdaLR", "SequentialLR",
           "CosineAnnealingWarmRestarts", "ReduceLROnPlateau", "ModelEMA", "Lookahead", "lr_scheduler"]
