"""Learning-rate schedules, stepped once per iteration (optimizer step).

They follow ``torch.optim.lr_scheduler``'s protocol: creating a scheduler sets
each param group's ``'lr'`` to the schedule's value at step 0 (and records the
group's starting lr as ``'initial_lr'``); each ``step()`` call, made after
``optimizer.step()``, advances ``last_epoch`` (here: the iteration count) by
one and writes the new lr into ``optimizer.param_groups``::

    sched = WarmupCosineLR(opt, warmup_steps=100, total_steps=10_000)
    for it in range(10_000):
        ...; opt.step(); sched.step()

Schedules are computed in closed form from ``last_epoch`` (not by chaining
multiplications on the current lr), so resuming from a ``state_dict()`` gives
the same lr sequence.  ``state_dict()`` holds only Python scalars, strings and
lists, so it can be written into an ``.npz``/JSON; ``load_state_dict()``
accepts it back (also with NumPy values) and re-applies the current lr to the
optimizer.
"""
import bisect
import copy
import math
import numbers

import numpy as np

__all__ = ["LRScheduler", "WarmupCosineLR", "OneCycleLR", "StepLR", "MultiStepLR"]


def _per_group(name, optimizer, value):
    """A value per param group: a scalar is repeated, a list must match in length."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected {n} values for {name} (one per param group), "
                             f"got {len(value)}")
        return [float(v) for v in value]
    return [float(value)] * n


def _to_python(v):
    """NumPy values (e.g. read back from an .npz) as Python scalars / lists."""
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


class LRScheduler:
    """Base class: subclasses implement ``get_lr()`` from ``self.last_epoch``."""

    def __init__(self, optimizer, last_epoch=-1):
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   "when resuming a scheduler with last_epoch >= 0")
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._last_lr = []
        self.step()

    def get_lr(self):
        """The learning rate of every param group at step ``self.last_epoch``."""
        raise NotImplementedError

    def step(self):
        """Advance one iteration and set the optimizer's lr."""
        self.last_epoch += 1
        self._apply(self.get_lr())

    def _apply(self, lrs):
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = float(lr)
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self):
        """The learning rates set by the last ``step()`` (one per param group)."""
        return list(self._last_lr)

    def state_dict(self):
        """Every attribute but the optimizer, as plain Python values."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()`` and set the optimizer's lr to its last value."""
        for k, v in state_dict.items():
            if k == "optimizer":
                continue
            setattr(self, k, copy.deepcopy(_to_python(v)))
        self.last_epoch = int(self.last_epoch)
        if isinstance(self._last_lr, (int, float)):
            self._last_lr = [self._last_lr]
        if self._last_lr:
            self._apply(self._last_lr)

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"


class WarmupCosineLR(LRScheduler):
    r"""Linear warm-up, then cosine decay to ``min_lr``.

    With ``base`` the group's initial lr, at iteration ``s``::

        s < warmup_steps:  lr = base * (s + 1) / warmup_steps
        otherwise:         t  = min(1, (s - warmup_steps) / (total_steps - warmup_steps))
                           lr = min_lr + (base - min_lr) * (1 + cos(pi * t)) / 2

    so the first iteration already trains (lr = base / warmup_steps), the peak
    ``base`` is reached at iteration ``warmup_steps - 1``, and the lr stays at
    ``min_lr`` from ``total_steps`` on.  ``min_lr`` is an absolute lr, a float
    or one per param group.
    """

    def __init__(self, optimizer, warmup_steps, total_steps, min_lr=0.0, last_epoch=-1):
        if not isinstance(total_steps, numbers.Integral) or total_steps <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        if (not isinstance(warmup_steps, numbers.Integral) or warmup_steps < 0
                or warmup_steps > total_steps):
            raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}], "
                             f"got {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lrs = _per_group("min_lr", optimizer, min_lr)
        if any(m < 0 for m in self.min_lrs):
            raise ValueError(f"min_lr must be >= 0, got {min_lr!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        s, w, n = self.last_epoch, self.warmup_steps, self.total_steps
        lrs = []
        for base, min_lr in zip(self.base_lrs, self.min_lrs):
            if s < w:
                lrs.append(base * (s + 1) / w)
            else:
                t = min(1.0, (s - w) / max(1, n - w))
                lrs.append(min_lr + (base - min_lr) * (1.0 + math.cos(math.pi * t)) / 2.0)
        return lrs


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy, with the lr values of ``torch.optim.lr_scheduler.OneCycleLR``.

    The lr goes from ``max_lr / div_factor`` up to ``max_lr`` over the first
    ``pct_start`` of ``total_steps`` iterations, then down to
    ``max_lr / div_factor / final_div_factor`` (``three_phase``: back to the
    start lr, then down).  ``anneal_strategy`` is ``'cos'`` or ``'linear'``.
    Give ``total_steps``, or ``epochs`` and ``steps_per_epoch``.  Stepping
    past ``total_steps`` raises ValueError, as in PyTorch.

    Difference from PyTorch: ``cycle_momentum`` defaults to False here (only
    the lr is scheduled).  With ``cycle_momentum=True`` the momentum (SGD) or
    beta1 (AdamW) is cycled between ``max_momentum`` and ``base_momentum``
    inversely to the lr, exactly as PyTorch does.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=False,
                 base_momentum=0.85, max_momentum=0.95, div_factor=25.0, final_div_factor=1e4,
                 three_phase=False, last_epoch=-1):
        if total_steps is not None:
            if not isinstance(total_steps, numbers.Integral) or total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps!r}")
            self.total_steps = int(total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, numbers.Integral) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs!r}")
            if not isinstance(steps_per_epoch, numbers.Integral) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, "
                                 f"but got {steps_per_epoch!r}")
            self.total_steps = int(epochs) * int(steps_per_epoch)
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not isinstance(pct_start, numbers.Real) or not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', "
                             f"instead got {anneal_strategy!r}")
        if div_factor <= 0 or final_div_factor <= 0:
            raise ValueError("div_factor and final_div_factor must be > 0")
        self.pct_start = float(pct_start)
        self.anneal_strategy = anneal_strategy
        self.three_phase = bool(three_phase)

        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        self.initial_lrs = [m / div_factor for m in self.max_lrs]
        self.min_lrs = [i / final_div_factor for i in self.initial_lrs]
        if last_epoch == -1:
            for group, i, m, mn in zip(optimizer.param_groups, self.initial_lrs, self.max_lrs,
                                       self.min_lrs):
                group["initial_lr"] = i
                group["max_lr"] = m
                group["min_lr"] = mn

        self.cycle_momentum = bool(cycle_momentum)
        self.use_beta1 = False
        if self.cycle_momentum:
            defaults = getattr(optimizer, "defaults", {})
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError("optimizer must support momentum or beta1 with "
                                 "`cycle_momentum` option enabled")
            self.use_beta1 = "betas" in defaults
            self.max_momentums = _per_group("max_momentum", optimizer, max_momentum)
            self.base_momentums = _per_group("base_momentum", optimizer, base_momentum)
        super().__init__(optimizer, last_epoch)

    def _phases(self):
        """(end_step, start, end) of each phase, with 'i'/'M'/'m' = initial/max/min lr."""
        n, pct = self.total_steps, self.pct_start
        if self.three_phase:
            return [(float(pct * n) - 1, "i", "M"), (float(2 * pct * n) - 2, "M", "i"),
                    (n - 1, "i", "m")]
        return [(float(pct * n) - 1, "i", "M"), (n - 1, "M", "m")]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"Tried to step {step_num} times. The specified number of total "
                             f"steps is {self.total_steps}")
        phases = self._phases()
        lrs = []
        for g, group in enumerate(self.optimizer.param_groups):
            lr_of = {"i": self.initial_lrs[g], "M": self.max_lrs[g], "m": self.min_lrs[g]}
            if self.cycle_momentum:
                # momentum runs opposite to the lr: high where the lr is low
                mom_of = {"i": self.max_momentums[g], "M": self.base_momentums[g],
                          "m": self.max_momentums[g]}
            start_step = 0.0
            for k, (end_step, a, b) in enumerate(phases):
                if step_num <= end_step or k == len(phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(lr_of[a], lr_of[b], pct))
                    if self.cycle_momentum:
                        mom = self._anneal(mom_of[a], mom_of[b], pct)
                        if self.use_beta1:
                            group["betas"] = (mom, *group["betas"][1:])
                        else:
                            group["momentum"] = mom
                    break
                start_step = end_step
        return lrs


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (iteration // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not isinstance(step_size, numbers.Integral) or step_size <= 0:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        k = self.last_epoch // self.step_size
        return [base * self.gamma ** k for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr = initial_lr * gamma ** (number of milestones <= iteration)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        milestones = [int(m) for m in milestones]
        if any(m < 0 for m in milestones):
            raise ValueError(f"milestones must be >= 0, got {milestones}")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.milestones = sorted(milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        k = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base * self.gamma ** k for base in self.base_lrs]
