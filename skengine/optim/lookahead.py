"""Lookahead (Zhang et al., 2019): slow weights that every k steps move part of the way to the fast ones,
which then restart from them.

    la = Lookahead(model, k=5, alpha=0.5)
    for batch in data:
        ...; opt.step(); la.step(model)        # every 5th call: slow += alpha (fast - slow); fast = slow
    la.finish(model)                            # the model ends on the slow weights

Unlike timm's ``Lookahead``, which wraps an optimizer, this one follows the model (as ``ModelEMA`` does),
so that it works with any optimizer and ``alpha`` can follow a schedule: airbench lets the slow weights
trail further behind as training ends (alpha = 1 - 0.95**5 * progress**3, via ``step(model, alpha=...)``).
The optimizer's own state (momentum) is kept across a sync, as in timm and airbench.  As in airbench, the
floating-point buffers (BatchNorm's running statistics) are slow and synced too, so that the model never
holds slow weights with the fast trajectory's statistics.
"""
from ..backend import device_of, to_device, to_numpy
from .ema import _array, _named


class Lookahead:
    def __init__(self, model, k=5, alpha=0.5):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"Lookahead: k must be a positive int, got {k!r}")
        self.k, self.alpha, self.num_steps = k, self._check_alpha(alpha), 0
        self.slow = {name: _array(t).copy() for name, t in _tensors(model)}

    @staticmethod
    def _check_alpha(alpha):
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"Lookahead: alpha must be in [0, 1], got {alpha!r}")
        return float(alpha)

    def step(self, model, alpha=None):
        """Count an optimizer step; every k-th: slow += alpha (fast - slow) and the model takes the slow
        weights.  ``alpha`` (default: the one given at construction) is this sync's.  Returns whether it
        synced."""
        self.num_steps += 1
        if self.num_steps % self.k:
            return False
        self.sync(model, alpha)
        return True

    def sync(self, model, alpha=None):
        """Sync now, whatever the count: slow += alpha (fast - slow), and the model takes the slow weights."""
        alpha = self.alpha if alpha is None else self._check_alpha(alpha)
        for name, t in _tensors(model):
            s = self._slow(name, t)
            s += alpha * (_array(t) - s)
            t._write_(s.copy())

    def finish(self, model):
        """The model takes the slow weights (the steps since the last sync are dropped, as in airbench)."""
        for name, t in _tensors(model):
            t._write_(self._slow(name, t).copy())

    def _slow(self, name, p):
        s = self.slow.get(name)
        if s is None or s.shape != p.shape:
            raise KeyError(f"Lookahead: {name!r} of the model is not (with that shape) among the "
                           "slow weights; were they made from another model?")
        if device_of(s) != device_of(_array(p)):  # the model moved
            s = self.slow[name] = to_device(s, device_of(_array(p)))
        return s

    def state_dict(self):
        return {"k": self.k, "alpha": self.alpha, "num_steps": self.num_steps,
                "slow": {name: to_numpy(s).copy() for name, s in self.slow.items()}}

    def load_state_dict(self, state):
        self.k, self.alpha, self.num_steps = int(state["k"]), float(state["alpha"]), int(state["num_steps"])
        for name, value in state["slow"].items():
            old = self.slow.get(name)
            if old is None or old.shape != tuple(value.shape):
                raise KeyError(f"Lookahead.load_state_dict: {name!r} with shape {tuple(value.shape)} does not "
                               "match the model's slow weights")
            self.slow[name] = to_device(to_numpy(value).astype(old.dtype), device_of(old))


def _tensors(model):
    """The model's parameters and floating-point buffers, by name."""
    return [(n, p) for n, p in _named(model, "named_parameters")] + \
        [(n, b) for n, b in _named(model, "named_buffers") if b is not None and _array(b).dtype.kind == "f"]


__all__ = ["Lookahead"]
