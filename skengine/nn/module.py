"""Module, Parameter and the containers: the PyTorch-shaped skeleton of every model."""
import collections
from collections import OrderedDict

import numpy as np

from ..autograd import NUMERIC_KINDS, Tensor
from ..backend import check_device, is_array, to_device, to_numpy


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable (requires_grad=True)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


_IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _HookHandle:
    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


class Module:
    """Base class: parameters, buffers and submodules register by attribute assignment."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor, persistent=True):
        """A non-learnable tensor that is part of the state (e.g. BN running stats);
        ``persistent=False`` keeps it out of state_dict()."""
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor if tensor is None or isinstance(tensor, Tensor) else Tensor(tensor)

    def add_module(self, name, module):
        self._modules[name] = module

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self.__dict__.get("_forward_hooks", {}).values()):
            result = hook(self, args, out)
            out = out if result is None else result
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, args, output)`` after every forward (a non-None return replaces
        the output), like PyTorch; returns a handle whose ``remove()`` unregisters it."""
        hooks = self.__dict__.setdefault("_forward_hooks", OrderedDict())
        key = object()
        hooks[key] = hook
        return _HookHandle(hooks, key)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # -- traversal -----------------------------------------------------------
    def named_modules(self, prefix="", remove_duplicate=True, memo=None):
        """(name, module) for this module and every submodule; a module reached under two names
        comes once (under its first) unless ``remove_duplicate=False``, as in torch."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name, remove_duplicate, memo)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return iter(m for m in self._modules.values() if m is not None)

    def named_children(self):
        return iter((n, m) for n, m in self._modules.items() if m is not None)

    def _named(self, table, prefix, recurse):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in modules:
            for name, t in getattr(m, table).items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield (f"{mprefix}.{name}" if mprefix else name), t

    def named_parameters(self, prefix="", recurse=True):
        return self._named("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix="", recurse=True):
        return self._named("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    def requires_grad_(self, requires_grad=True):
        """Switch gradients of every parameter on or off (e.g. to freeze a backbone)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # -- modes and devices -----------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def to(self, device=None, dtype=None):
        """Move (and/or cast floating-point) parameters and buffers in place; ``model.to(sk.float64)``
        casts, as torch's ``model.to(torch.float64)``."""
        if device is not None and not isinstance(device, str):  # a dtype given positionally
            device, dtype = None, device
        device = check_device(device) if device is not None else None
        for t in list(self.parameters()) + list(self.buffers()):
            data = t.data if device is None else to_device(t.data, device)
            if dtype is not None and data.dtype.kind == "f":
                data = data.astype(dtype)
            t.data = data
            if t.grad is not None and device is not None:
                t.grad = Tensor(to_device(t.grad.data, device))
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    def apply(self, fn):
        for m in self.modules():
            fn(m)
        return self

    # -- state -------------------------------------------------------------------
    def state_dict(self):
        """Parameters then buffers of each module, depth first, with PyTorch's dotted keys."""
        out = OrderedDict()
        for prefix, m in self.named_modules(remove_duplicate=False):  # tied modules under each name, as torch
            skip = m.__dict__.get("_non_persistent", ())
            for table in (m._parameters, m._buffers):
                for name, t in table.items():
                    if t is not None and not (table is m._buffers and name in skip):
                        out[f"{prefix}.{name}" if prefix else name] = t
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values in place, cast to each tensor's dtype (like torch's copy_).

        With ``strict``, keys must match exactly.  Values must be tensors or arrays of numbers
        (torch refuses a float or a list too), floating-point ones for a floating-point tensor (an integer
        or bool array there is refused, not cast), and shapes must always match.  Every entry is checked
        before anything is written, and all problems are reported together in one RuntimeError, as
        torch does, naming the keys and, for a size mismatch, both shapes.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = [f"missing keys {missing}, unexpected keys {unexpected}"] if strict and (missing or unexpected) else []
        values = {}
        for k, v in state_dict.items():
            if k not in own:
                continue
            v = v.data if isinstance(v, Tensor) else v
            v = v if is_array(v) or not hasattr(v, "__array__") else np.asarray(v)  # NumPy scalars, torch tensors
            if not is_array(v) or v.dtype.kind not in NUMERIC_KINDS:
                errors.append(f"{k}: expected a tensor or an array of numbers, got {type(v).__name__}"
                              + (f" of dtype {v.dtype}" if is_array(v) else ""))
            elif own[k].dtype.kind == "f" and v.dtype.kind != "f":  # int weights: a net of zeros and ones
                errors.append(f"{k}: expected floating-point values for the model's {own[k].dtype} tensor, got "
                              f"dtype {v.dtype}")
            elif tuple(v.shape) != own[k].shape:
                errors.append(f"size mismatch for {k}: checkpoint has shape {tuple(v.shape)}, "
                              f"model has shape {own[k].shape}")
            else:
                values[k] = v
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}: " + "; ".join(errors))
        for k, v in values.items():
            t = own[k]
            t._write_(to_device(to_numpy(v), t.device).astype(t.dtype, copy=False))
        return _IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class _Container(Module):
    """Children in order, indexable and iterable."""

    def __getitem__(self, i):
        if isinstance(i, slice):  # a container of the same kind, like torch
            return type(self)(OrderedDict(list(self._modules.items())[i])) if isinstance(self, Sequential) \
                else type(self)(list(self._modules.values())[i])
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(_Container):
    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            modules = modules[0].items()
        else:
            modules = ((str(i), m) for i, m in enumerate(modules))
        for name, m in modules:
            self.add_module(name, m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(_Container):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self
