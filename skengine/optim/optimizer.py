"""Optimizer base class: parameter groups, per-parameter state, state_dict.

Mirrors ``torch.optim.Optimizer``:

* ``params`` is an iterable of Parameters, or of dicts (parameter groups) each
  with a ``'params'`` entry and optional per-group options that override the
  optimizer's defaults;
* ``param_groups`` is a list of dicts (``'params'``, ``'lr'``, ...) that LR
  schedulers read and write;
* ``state[p]`` is a dict of per-parameter state (momentum buffers, moments...);
* ``state_dict()`` returns ``{'state': {idx: {...}}, 'param_groups': [{...,
  'params': [idx, ...]}]}`` with parameters numbered in group order, exactly as
  PyTorch does.  Array state is returned as (copied) NumPy arrays and scalar
  state as Python scalars, so it can go straight into an ``.npz``;
  ``load_state_dict()`` moves arrays back to each parameter's device and dtype.

Optimizers update ``p.data`` (a NumPy or CuPy array) in place, bumping p's
version (see ``_params_with_grad``); all math goes through the array module of
the data (``get_array_module``), never NumPy directly, so the same code runs
on CPU and GPU.
"""
import copy
import numbers

import numpy as np

from ..backend import device_of, get_array_module, is_array, to_device, to_numpy


class _Required:
    """Marker for a hyper-parameter with no default (must be given)."""

    def __repr__(self):
        return "<required parameter>"


required = _Required()


def grad_array(p):
    """The raw gradient array of parameter `p`, or None."""
    g = p.grad
    if g is None:
        return None
    return g if is_array(g) else g.data


class _ParamState:
    """``state[p]`` -> dict, keyed by parameter identity.

    Tensors may define an elementwise ``__eq__`` (and so be unhashable), so the
    state is kept by ``id(p)``; entries are created on first access, like the
    ``defaultdict(dict)`` PyTorch uses.
    """

    def __init__(self):
        self._d = {}  # id(p) -> (p, state dict)

    def __getitem__(self, p):
        """p's state; arrays left on another device (the model was moved after some steps) follow p."""
        entry = self._d.get(id(p))
        if entry is None:
            entry = (p, {})
            self._d[id(p)] = entry
        state = entry[1]
        if state:
            device = device_of(p.data)
            for k, v in state.items():
                if is_array(v) and device_of(v) != device:
                    state[k] = to_device(v, device)
        return state

    def __setitem__(self, p, value):
        if not isinstance(value, dict):
            raise TypeError("optimizer state of a parameter must be a dict")
        self._d[id(p)] = (p, value)

    def __delitem__(self, p):
        del self._d[id(p)]

    def __contains__(self, p):
        return id(p) in self._d

    def get(self, p, default=None):
        entry = self._d.get(id(p))
        return default if entry is None else entry[1]

    def __len__(self):
        return len(self._d)

    def __iter__(self):
        return (p for p, _ in self._d.values())

    def keys(self):
        return list(iter(self))

    def values(self):
        return [s for _, s in self._d.values()]

    def items(self):
        return list(self._d.values())

    def clear(self):
        self._d.clear()

    def __repr__(self):
        return f"<optimizer state for {len(self)} parameters>"


class Optimizer:
    """Base class for optimizers.  Subclasses implement ``step()``.

    Args:
        params: iterable of Parameters, or of dicts defining parameter groups.
        defaults: dict of default hyper-parameters for every group.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = _ParamState()
        self.param_groups = []

        if is_array(params) or hasattr(params, "grad"):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Parameters or dicts, but got {type(params).__name__}")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Add a parameter group (a dict with 'params' and optional options)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("a parameter group needs a 'params' entry")
        if hasattr(params, "grad") or is_array(params):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of a set changes between runs; use a list instead")
        else:
            params = list(params)
        for p in params:
            if not hasattr(p, "data") or not hasattr(p, "grad"):
                raise TypeError(f"optimizer can only optimize Parameters, but one of the params "
                                f"is {type(p).__name__}")
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError("a parameter group contains the same parameter more than once")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen.intersection(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params

        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        self._validate_group(group)
        self.param_groups.append(group)

    def _validate_group(self, group):
        """Check a group's hyper-parameters; subclasses raise ValueError."""

    @staticmethod
    def _check_lr_and_weight_decay(group):
        """The checks SGD and Adam share: a learning rate and a weight decay >= 0 (torch's messages)."""
        lr = group["lr"]
        if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr!r} (must be a number >= 0)")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']} (must be >= 0)")

    # ------------------------------------------------------------------- steps
    @staticmethod
    def _params_with_grad(group):
        """(p, its array, its gradient array) for each parameter of ``group`` that has a gradient;
        with the group's ``maximize`` the gradient is negated (a new array: p.grad is never touched).
        The step updates that array in place, so p's version is bumped here (``Tensor._write_``): a
        graph kept with retain_graph that saved the old weights then refuses to backward, as in torch."""
        maximize = bool(group.get("maximize", False))
        for p in group["params"]:
            g = grad_array(p)
            if g is not None:
                p._write_()
                yield p, p.data, (-g if maximize else g)

    def zero_grad(self, set_to_none=True):
        """Reset gradients: to None (default) or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    grad_array(p).fill(0)

    def step(self, closure=None):
        raise NotImplementedError

    # -------------------------------------------------------------- state dict
    def state_dict(self):
        """``{'state': {idx: {...}}, 'param_groups': [{..., 'params': [idx...]}]}``.

        Arrays are returned as NumPy copies (never views of live buffers), and
        0-d values as Python scalars.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                i = index.setdefault(id(p), len(index))
                packed["params"].append(i)
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) not in index or not s:
                continue
            state[index[id(p)]] = {k: _to_saved(v) for k, v in s.items()}
        state = dict(sorted(state.items()))
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a state produced by ``state_dict()`` (possibly of another device).

        A saved group lacking an option of this optimizer (a state saved by an
        older version, e.g. without ``'maximize'``) gets the default, as
        PyTorch's ``__setstate__`` does.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimizer ({len(self.param_groups)})")
        for g, sg in zip(self.param_groups, saved_groups):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 "the size of optimizer's group")
        id_map = {}
        for g, sg in zip(self.param_groups, saved_groups):
            for i, p in zip(sg["params"], g["params"]):
                id_map[int(i)] = p

        new_state = _ParamState()
        for k, s in state_dict["state"].items():
            p = id_map.get(int(k))
            if p is None:
                continue  # torch also silently drops state for unknown indices
            new_state[p] = {key: self._load_value(key, v, p) for key, v in s.items()}

        new_groups = []
        for g, sg in zip(self.param_groups, saved_groups):
            ng = {k: _from_saved_option(v) for k, v in sg.items() if k != "params"}
            for k, v in self.defaults.items():     # options added since the state was saved
                if k not in ng and v is not required:
                    ng[k] = copy.deepcopy(v)
            ng["params"] = g["params"]
            new_groups.append(ng)
        self.state = new_state
        self.param_groups = new_groups

    @staticmethod
    def _load_value(key, value, p):
        if value is None:
            return None
        if key == "step":
            return int(to_numpy(value)) if not isinstance(value, (int, float)) else int(value)
        if is_array(value) or hasattr(value, "__array__"):
            arr = to_numpy(value) if not is_array(value) else value
            dtype = p.data.dtype if np.issubdtype(arr.dtype, np.floating) else arr.dtype
            xp = get_array_module(p.data)
            out = to_device(arr, device_of(p.data))
            return xp.array(out, dtype=dtype, copy=True)
        return copy.deepcopy(value)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


def _to_saved(v):
    """State value as NumPy array / Python scalar (copied)."""
    if v is None or isinstance(v, (bool, int, float)):
        return v
    if is_array(v):
        a = np.array(to_numpy(v), copy=True)
        return a
    return copy.deepcopy(v)


def _from_saved_option(v):
    """Group options come back from an .npz as arrays; turn them into Python values."""
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return v.item()
        return tuple(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return tuple(v) if all(isinstance(x, (int, float)) for x in v) else v
    return copy.deepcopy(v)


def param_groups_no_decay(model, weight_decay, no_decay_names=()):
    """Split a model's trainable parameters into decay / no-decay groups.

    Parameters with ``ndim <= 1`` (biases, norm-layer scales and shifts) and
    any whose name contains one of ``no_decay_names`` get ``weight_decay=0``;
    the others get ``weight_decay``.  Returns a list of param-group dicts ready
    for an optimizer, leaving out an empty group.

    `model` is anything with ``named_parameters()``, or an iterable of
    ``(name, parameter)`` pairs.
    """
    named = model.named_parameters() if hasattr(model, "named_parameters") else model
    decay, no_decay = [], []
    for name, p in named:
        if getattr(p, "requires_grad", True) is False:
            continue
        ndim = len(p.shape)
        if ndim <= 1 or any(s in name for s in no_decay_names):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
