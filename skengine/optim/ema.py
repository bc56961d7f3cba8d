"""Exponential moving average of a model's parameters (for evaluation / export).

    ema = ModelEMA(model, decay=0.999)
    for batch in data:
        ...; opt.step(); ema.update(model)
    ema.copy_to(eval_model)            # or: with ema.swap(model): evaluate(model)

The model needs ``named_parameters()`` and ``named_buffers()`` (iterators of
``(name, Tensor)``).  Parameters are averaged; buffers (e.g. BatchNorm running
statistics) are copied as they are.  The averages live on the device of the
model's parameters, in their dtype.
"""
import contextlib

import numpy as np

from ..backend import device_of, get_array_module, is_array, to_device, to_numpy


def _array(t):
    """The raw array of a Tensor (or the array itself)."""
    if is_array(t):
        return t
    return t.data


def _store(t, value):
    """Write ``value`` into a Tensor's array (through ``Tensor._write_``, which bumps its version) or into
    an array."""
    if is_array(t):
        t[...] = value
    else:
        t._write_(value)


def _named(model, which):
    fn = getattr(model, which, None)
    return list(fn()) if fn is not None else []


class ModelEMA:
    r"""Keeps ``ema = decay * ema + (1 - decay) * param`` after every ``update()``.

    Args:
        model: the model whose parameters are averaged (its current values
            start the average).
        decay: the EMA decay, in [0, 1].
        warmup: if True, use ``min(decay, (1 + n) / (10 + n))`` at the n-th
            update (as TensorFlow's ``ExponentialMovingAverage(num_updates)``),
            so that the average follows the fast-moving early weights.

    Attributes:
        shadow: dict name -> array, the averaged parameters.
        buffers: dict name -> array, the copied buffers.
        num_updates: how many times ``update()`` ran.
    """

    def __init__(self, model, decay=0.999, warmup=False):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay!r}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = {}
        self.buffers = {}
        for name, p in _named(model, "named_parameters"):
            a = _array(p)
            self.shadow[name] = get_array_module(a).array(a, copy=True)
        for name, b in _named(model, "named_buffers"):
            if b is None:
                continue
            a = _array(b)
            self.buffers[name] = get_array_module(a).array(a, copy=True)

    def current_decay(self):
        """The decay the next ``update()`` will use."""
        if self.warmup:
            n = self.num_updates + 1
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    def update(self, model):
        """Fold the model's current parameters into the average; copy its buffers."""
        d = self.current_decay()
        self.num_updates += 1
        for name, p in _named(model, "named_parameters"):
            a = _array(p)
            s = self.shadow.get(name)
            if s is None or s.shape != a.shape:
                raise KeyError(f"parameter {name!r} of the model is not (with that shape) "
                               "in the EMA; was the EMA made from another model?")
            if device_of(s) != device_of(a):           # model was moved to another device
                s = self.shadow[name] = to_device(s, device_of(a))
            xp = get_array_module(a)
            # s = d*s + (1-d)*a, as s -= (1-d) * (s - a)
            tmp = xp.subtract(s, a, dtype=s.dtype)
            tmp *= 1.0 - d
            s -= tmp
        for name, b in _named(model, "named_buffers"):
            if b is None:
                continue
            a = _array(b)
            xp = get_array_module(a)
            self.buffers[name] = xp.array(a, copy=True)

    def copy_to(self, model):
        """Write the averaged parameters and the buffers into `model`, in place."""
        for name, p in _named(model, "named_parameters"):
            if name in self.shadow:
                _store(p, to_device(self.shadow[name], device_of(_array(p))))
        for name, b in _named(model, "named_buffers"):
            if b is not None and name in self.buffers:
                _store(b, to_device(self.buffers[name], device_of(_array(b))))

    @contextlib.contextmanager
    def swap(self, model):
        """Context manager: the model holds the EMA weights inside, its own after."""
        saved = {name: get_array_module(_array(t)).array(_array(t), copy=True)
                 for kind in ("named_parameters", "named_buffers")
                 for name, t in _named(model, kind) if t is not None}
        self.copy_to(model)
        try:
            yield model
        finally:
            for kind in ("named_parameters", "named_buffers"):
                for name, t in _named(model, kind):
                    if t is not None and name in saved:
                        _store(t, saved[name])

    def weights(self):
        """name -> NumPy array of the averaged parameters and the buffers
        (the same names as the model's ``state_dict()``)."""
        out = {k: to_numpy(v).copy() for k, v in self.shadow.items()}
        out.update({k: to_numpy(v).copy() for k, v in self.buffers.items()})
        return out

    def state_dict(self):
        """Everything needed to resume: NumPy arrays and Python scalars."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {k: to_numpy(v).copy() for k, v in self.shadow.items()},
                "buffers": {k: to_numpy(v).copy() for k, v in self.buffers.items()}}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``; arrays go to the device the EMA is on now."""
        self.decay = float(state_dict["decay"])
        self.warmup = bool(state_dict.get("warmup", self.warmup))
        self.num_updates = int(state_dict["num_updates"])
        for which in ("shadow", "buffers"):
            mine = getattr(self, which)
            for k, v in state_dict.get(which, {}).items():
                old = mine.get(k)
                device = device_of(old) if old is not None else "cpu"
                xp = get_array_module(old) if old is not None else np
                dtype = old.dtype if old is not None else None
                mine[k] = xp.array(to_device(to_numpy(v), device), dtype=dtype, copy=True)
