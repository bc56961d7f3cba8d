"""Learning-rate schedules, stepped once per iteration (optimizer step).

They follow ``torch.optim.lr_scheduler``'s protocol and values: creating a
scheduler sets each param group's ``'lr'`` to the schedule's value at step 0
(and records the group's starting lr as ``'initial_lr'``); each ``step()``
call, made after ``optimizer.step()``, advances ``last_epoch`` (here: the
iteration count) by one and writes the new lr into
``optimizer.param_groups``::

    sched = WarmupCosineLR(opt, warmup_steps=100, total_steps=10_000)
    for it in range(10_000):
        ...; opt.step(); sched.step()

As in PyTorch, ``StepLR``, ``MultiStepLR``, ``ConstantLR``, ``LinearLR``,
``ExponentialLR`` and ``CosineAnnealingLR`` are "chainable": each step
rescales the group's *current* lr, so an lr changed by hand (or by another
scheduler) carries on from there.  ``LambdaLR``, ``OneCycleLR``,
``CosineAnnealingWarmRestarts`` and ``WarmupCosineLR`` are closed-form in
``last_epoch``.  To resume, load the optimizer's ``state_dict()`` and then the
scheduler's.

Differences from PyTorch:

* ``step()`` takes no ``epoch`` argument (deprecated in PyTorch), except in
  ``CosineAnnealingWarmRestarts`` (fractional epochs) and
  ``ReduceLROnPlateau.step(metrics)``; no call-order warnings are given;
* ``state_dict()`` holds only Python scalars, strings, lists and dicts, so it
  can be written into an ``.npz``/JSON (``MultiStepLR`` keeps its milestones
  as a sorted list with repeats, not a ``Counter``; ``OneCycleLR`` keeps
  ``pct_start``/``three_phase``/``anneal_strategy`` rather than its phase
  table); ``load_state_dict()`` accepts it back (also with NumPy values) and
  re-applies the last lr to the optimizer.
"""
import bisect
import copy
import math
import numbers
import types

import numpy as np

__all__ = ["LRScheduler", "WarmupCosineLR", "OneCycleLR", "StepLR", "MultiStepLR", "ConstantLR",
           "LinearLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR", "SequentialLR",
           "CosineAnnealingWarmRestarts", "ReduceLROnPlateau"]


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


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_optimizer(optimizer):
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")


class LRScheduler:
    """Base class: subclasses implement ``get_lr()`` for iteration ``self.last_epoch``.

    As in PyTorch, ``_step_count`` counts ``step()`` calls (the one made by the
    constructor included) and ``_is_initial`` is True during that first call;
    chainable schedules read the groups' current lr (``_group_lrs()``), and a
    schedule may define ``_get_closed_form_lr()`` (used by ``SequentialLR``
    when it switches to it).
    """

    def __init__(self, optimizer, last_epoch=-1):
        _check_optimizer(optimizer)
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
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        """The learning rate of every param group at step ``self.last_epoch``."""
        raise NotImplementedError

    def _group_lrs(self):
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def step(self):
        """Advance one iteration and set the optimizer's lr."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch=None):
        """Advance one iteration, or jump to ``epoch`` (closed form where there is one)."""
        if epoch is None:
            self.last_epoch += 1
            lrs = self.get_lr()
        else:
            self.last_epoch = int(epoch)
            closed_form = getattr(self, "_get_closed_form_lr", None)
            lrs = closed_form() if closed_form is not None else self.get_lr()
        self._apply(lrs)

    def _apply(self, lrs):
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = float(lr)
        self._last_lr = self._group_lrs()

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
    r"""Linear warm-up, then cosine decay to ``min_lr`` (skengine's own; no PyTorch twin).

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
    r"""The 1cycle policy, with the lr and momentum values of PyTorch's ``OneCycleLR``.

    The lr goes from ``max_lr / div_factor`` up to ``max_lr`` over the first
    ``pct_start`` of ``total_steps`` iterations, then down to
    ``max_lr / div_factor / final_div_factor`` (``three_phase``: back to the
    start lr, then down).  ``anneal_strategy`` is ``'cos'`` or ``'linear'``.
    Give ``total_steps``, or ``epochs`` and ``steps_per_epoch``.  Stepping
    past ``total_steps`` raises ValueError.

    With ``cycle_momentum`` (the default, as in PyTorch) the momentum (SGD) or
    beta1 (Adam/AdamW) is cycled inversely to the lr, between
    ``max_momentum`` (where the lr is lowest) and ``base_momentum`` (at
    ``max_lr``), with the same phases and anneal function.  The constructor
    sets it to ``max_momentum`` -- also for an SGD built with momentum 0,
    which therefore starts using momentum, as in PyTorch.  Pass
    ``cycle_momentum=False`` to schedule the lr only.

    Like PyTorch, the constructor writes ``'initial_lr'``, ``'max_lr'``,
    ``'min_lr'`` (and ``'max_momentum'``, ``'base_momentum'``) into the param
    groups, and the schedule reads them from there; resuming with
    ``last_epoch >= 0`` needs them in the groups (KeyError otherwise).
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True,
                 base_momentum=0.85, max_momentum=0.95, div_factor=25.0, final_div_factor=1e4,
                 three_phase=False, last_epoch=-1):
        _check_optimizer(optimizer)
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

        groups = optimizer.param_groups
        keys = ["initial_lr", "max_lr", "min_lr"]
        if last_epoch == -1:
            for group, m in zip(groups, _per_group("max_lr", optimizer, max_lr)):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor

        self.cycle_momentum = bool(cycle_momentum)
        self.use_beta1 = False
        if self.cycle_momentum:
            defaults = getattr(optimizer, "defaults", {})
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError("optimizer must support momentum or beta1 with "
                                 "`cycle_momentum` option enabled")
            self.use_beta1 = "betas" in defaults
            keys += ["max_momentum", "base_momentum"]
            if last_epoch == -1:
                for group, m_mom, b_mom in zip(
                        groups, _per_group("max_momentum", optimizer, max_momentum),
                        _per_group("base_momentum", optimizer, base_momentum)):
                    if self.use_beta1:
                        group["betas"] = (m_mom, *group["betas"][1:])
                    else:
                        group["momentum"] = m_mom
                    group["max_momentum"] = m_mom
                    group["base_momentum"] = b_mom
        for i, group in enumerate(groups):
            for key in keys:
                if key not in group:
                    raise KeyError(f"param {key!r} is not specified in param_groups[{i}] "
                                   "when resuming OneCycleLR with last_epoch >= 0")
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
        for group in self.optimizer.param_groups:
            lr_of = {"i": group["initial_lr"], "M": group["max_lr"], "m": group["min_lr"]}
            if self.cycle_momentum:
                # momentum runs opposite to the lr: high where the lr is low
                mom_of = {"i": group["max_momentum"], "M": group["base_momentum"],
                          "m": group["max_momentum"]}
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


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(iteration), one function or one per param group.

    As in PyTorch, ``state_dict()`` saves a callable object's ``__dict__`` but
    None for a plain function or lambda (which cannot be saved).
    """

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        _check_optimizer(optimizer)
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"Expected {n} lr_lambdas (one per param group), "
                                 f"but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        for f in self.lr_lambdas:
            if not callable(f):
                raise TypeError(f"lr_lambda must be a function or a list of functions, "
                                f"got {type(f).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        sd = {k: copy.deepcopy(v) for k, v in self.__dict__.items()
              if k not in ("optimizer", "lr_lambdas")}
        sd["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else f.__dict__.copy()
                            for f in self.lr_lambdas]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("lr_lambdas", None) or []
        super().load_state_dict(state_dict)
        for f, d in zip(self.lr_lambdas, saved):
            if d is not None:
                f.__dict__.update({k: _to_python(v) for k, v in d.items()})


class StepLR(LRScheduler):
    """Multiplies the lr by ``gamma`` every ``step_size`` iterations.

    Chainable, as in PyTorch: at every non-zero multiple of ``step_size`` the
    group's current lr is multiplied by ``gamma``; from a fresh start that is
    lr = initial_lr * gamma ** (iteration // step_size).
    """

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not _is_int(step_size) or step_size <= 0:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        if not _is_real(gamma) or not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = self._group_lrs()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]

    def _get_closed_form_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiplies the lr by ``gamma`` at each milestone (by ``gamma**k`` if repeated k times).

    Chainable, as in PyTorch: from a fresh start, lr = initial_lr * gamma **
    (number of milestones <= iteration).  ``milestones`` is kept as a sorted
    list (PyTorch keeps a ``Counter``).
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        milestones = [int(m) for m in milestones]
        if any(m < 0 for m in milestones):
            raise ValueError(f"milestones must be >= 0, got {milestones}")
        if not _is_real(gamma) or not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.milestones = sorted(milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = self._group_lrs()
        k = self.milestones.count(self.last_epoch)
        if k == 0:
            return lrs
        return [lr * self.gamma ** k for lr in lrs]

    def _get_closed_form_lr(self):
        k = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base * self.gamma ** k for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """lr = initial_lr * factor for the first ``total_iters`` iterations, then initial_lr.

    Chainable, as in PyTorch: the current lr is multiplied by ``factor`` at
    iteration 0 and divided by it at iteration ``total_iters``.
    """

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5, last_epoch=-1):
        if not _is_real(factor) or not 0.0 <= factor <= 1.0:
            raise ValueError(f"factor must be between 0 and 1, got {factor!r}")
        if not _is_int(total_iters) or total_iters < 0:
            raise ValueError(f"total_iters must be a non-negative integer, got {total_iters!r}")
        self.factor = float(factor)
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = self._group_lrs()
        if self.last_epoch == 0:
            return [lr * self.factor for lr in lrs]
        if self.last_epoch != self.total_iters:
            return lrs
        return [lr * (1.0 / self.factor) for lr in lrs]

    def _get_closed_form_lr(self):
        return [base * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
                for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Factor going linearly from ``start_factor`` to ``end_factor`` over ``total_iters``.

    lr = initial_lr * (start_factor + (end_factor - start_factor) *
    min(iteration, total_iters) / total_iters), computed chainably from the
    current lr with PyTorch's recursion (so the values are PyTorch's, bit for
    bit, and a hand-set lr carries through).
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        if not _is_real(start_factor) or not 0.0 < start_factor <= 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        if not _is_real(end_factor) or not 0.0 <= end_factor <= 1.0:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor!r}")
        if not _is_int(total_iters) or total_iters < 0:
            raise ValueError(f"total_iters must be a non-negative integer, got {total_iters!r}")
        self.start_factor = float(start_factor)
        self.end_factor = float(end_factor)
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = self._group_lrs()
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in lrs]
        if self._is_initial or self.last_epoch > self.total_iters:
            return lrs
        d = self.end_factor - self.start_factor
        return [lr * (1.0 + d / (self.total_iters * self.start_factor + (self.last_epoch - 1) * d))
                for lr in lrs]

    def _get_closed_form_lr(self):
        return [base * (self.start_factor + (self.end_factor - self.start_factor)
                        * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiplies the lr by ``gamma`` every iteration (chainable, as in PyTorch)."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        if not _is_real(gamma) or not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = self._group_lrs()
        if self._is_initial:
            return lrs
        return [lr * self.gamma for lr in lrs]

    def _get_closed_form_lr(self):
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the initial lr down to ``eta_min`` over ``T_max`` iterations.

    From a fresh start, lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi *
    iteration / T_max)) / 2, and past ``T_max`` the cosine goes on (back up,
    period ``2 * T_max``).  Computed with PyTorch's recursion on the current
    lr, so after a hand-set lr the values are PyTorch's (they then differ
    from the closed form).
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if not _is_real(T_max) or not T_max > 0:
            raise ValueError(f"T_max must be a positive number, got {T_max!r}")
        if not _is_real(eta_min):
            raise ValueError(f"eta_min must be a number, got {eta_min!r}")
        self.T_max = T_max
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = self._group_lrs()
        e, t_max, eta = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return lrs
        if self._step_count == 1 and e > 0:
            return [eta + (base - eta) * (1 + math.cos(e * math.pi / t_max)) / 2
                    for base in self.base_lrs]
        if (e - 1 - t_max) % (2 * t_max) == 0:
            return [lr + (base - eta) * (1 - math.cos(math.pi / t_max)) / 2
                    for lr, base in zip(lrs, self.base_lrs)]
        return [(1 + math.cos(math.pi * e / t_max)) / (1 + math.cos(math.pi * (e - 1) / t_max))
                * (lr - eta) + eta for lr in lrs]

    def _get_closed_form_lr(self):
        return [self.eta_min + (base - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR), as PyTorch computes it.

    lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2,
    where ``T_cur`` counts iterations since the last restart and the period
    ``T_i`` starts at ``T_0`` and is multiplied by ``T_mult`` at each restart.
    ``step(epoch)`` (a possibly fractional epoch) jumps there, as in PyTorch.
    """

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        if not _is_int(T_0) or T_0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {T_0!r}")
        if not _is_int(T_mult) or T_mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult!r}")
        if not _is_real(eta_min):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min!r}")
        self.T_0 = int(T_0)
        self.T_i = int(T_0)
        self.T_mult = int(T_mult)
        self.eta_min = float(eta_min)
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cos = math.cos(math.pi * self.T_cur / self.T_i)
        return [self.eta_min + (base - self.eta_min) * (1 + cos) / 2 for base in self.base_lrs]

    def step(self, epoch=None):
        """Advance one iteration, or go to ``epoch`` (a float: a fraction of the way into it)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._apply(self.get_lr())


class SequentialLR(LRScheduler):
    """Runs ``schedulers`` one after the other, switching at ``milestones``.

    As in PyTorch: the constructor resets the lr to ``'initial_lr'`` and
    undoes the construction step of every scheduler but the first; at a
    milestone the next scheduler restarts from iteration 0 (its closed form
    where it has one).  ``state_dict()`` holds the schedulers' states.
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        _check_optimizer(optimizer)
        schedulers = list(schedulers)
        if len(schedulers) < 1:
            raise ValueError("SequentialLR expects at least one scheduler, but got no scheduler")
        for i, s in enumerate(schedulers):
            if not hasattr(s, "optimizer"):
                raise TypeError(f"SequentialLR: schedulers[{i}] should have `optimizer` "
                                "as its attribute")
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError("SequentialLR does not support ReduceLROnPlateau (its step() "
                                 f"needs a metric), but got one at schedulers[{i}]")
            if s.optimizer is not optimizer:
                raise ValueError(f"SequentialLR expects all schedulers to belong to the same "
                                 f"optimizer, but schedulers[{i}] ({type(s).__name__}) has another")
        milestones = list(milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("SequentialLR expects one more scheduler than milestones, but got "
                             f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        if not all(_is_int(m) for m in milestones) or milestones != sorted(milestones):
            raise ValueError(f"milestones must be increasing integers, got {milestones!r}")
        self._schedulers = schedulers
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = int(last_epoch) + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:          # back to the initial lr...
            group["lr"] = group["initial_lr"]
        self.recursive_undo()                         # ...and the schedulers' first step undone
        idx = bisect.bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def recursive_undo(self, sched=None):
        """Undo the construction step of every (nested) scheduler."""
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for s in scheds._schedulers:
                self.recursive_undo(s)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self):
        """Advance one iteration with the scheduler in charge of it."""
        self.last_epoch += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self):
        sd = {k: copy.deepcopy(v) for k, v in self.__dict__.items()
              if k not in ("optimizer", "_schedulers")}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        for s, sd in zip(self._schedulers, state_dict.pop("_schedulers")):
            s.load_state_dict(sd)
        super().load_state_dict(state_dict)           # the lr in charge is applied last


class ReduceLROnPlateau(LRScheduler):
    """Multiplies the lr by ``factor`` when a metric has stopped improving.

    Call ``step(metric)`` once per evaluation.  After more than ``patience``
    evaluations without improvement (better than the best by ``threshold``,
    relative or absolute), the lr becomes ``max(lr * factor, min_lr)`` unless
    that changes it by ``eps`` or less; then ``cooldown`` evaluations are
    ignored.  The same rules and state as PyTorch's.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        _check_optimizer(optimizer)
        if not _is_real(factor) or not factor < 1.0:
            raise ValueError(f"factor should be < 1.0, got {factor!r}")
        if not _is_int(patience) or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        if not _is_int(cooldown) or cooldown < 0:
            raise ValueError(f"cooldown must be a non-negative integer, got {cooldown!r}")
        self.factor = float(factor)
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"expected {n} min_lrs (one per param group), got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = [float(m) for m in min_lr]
        else:
            self.default_min_lr = float(min_lr)
            self.min_lrs = [float(min_lr)] * n
        self.patience = int(patience)
        self.cooldown = int(cooldown)
        self.eps = float(eps)
        self.last_epoch = 0
        self._last_lr = self._group_lrs()
        self._init_is_better(mode=mode, threshold=threshold, threshold_mode=threshold_mode)
        self._reset()

    def _reset(self):
        """Reset the bad-epoch and cooldown counters."""
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metrics):
        """Record one value of the monitored metric (a number or a 0-d tensor)."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0           # bad epochs in cooldown don't count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._group_lrs()

    def _reduce_lr(self):
        if len(self.optimizer.param_groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"The number of param groups in the optimizer "
                    f"({len(self.optimizer.param_groups)}) differs from when ReduceLROnPlateau "
                    f"was initialized ({len(self.min_lrs)}); set `min_lrs` to match")
            self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
        for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min" and self.threshold_mode == "abs":
            return a < best - self.threshold
        if self.mode == "max" and self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._init_is_better(mode=self.mode, threshold=self.threshold,
                             threshold_mode=self.threshold_mode)
