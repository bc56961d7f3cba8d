"""Load timm checkpoints of the SK networks (skresnet18/34, skresnext50_32x4d) into skengine models, and save back.

skengine's models use timm's module names except inside the SK unit, where
timm keeps the fuse/select layers in a submodule ``attn`` and writes the FCs as
1x1 convolutions.  The mapping, for every SK unit X:

    X.attn.fc_reduce.weight (d, C, 1, 1)     ->  X.fc_reduce.weight (d, C)
    X.attn.bn.*                              ->  X.bn_reduce.*
    X.attn.fc_select.weight (M*C, d, 1, 1)   ->  X.fc_select.weight (M*C, d)

Every other key is the same.  Loading is strict: a missing or unexpected key, or
a shape that differs, is an error that names the key (BN's
``num_batches_tracked`` counters may be present or absent).

    model = skengine.models.create("skresnext50_32x4d")
    skengine.interop.load_timm(model, "skresnext50_32x4d.safetensors")   # or .npz, or a dict of arrays

The way back is the same table read right to left: ``timm_state(model)`` is the
model's state dict under timm's key names, as host NumPy arrays (FC weights
as (out, in, 1, 1), BN ``num_batches_tracked`` as int64 scalars), and
``save_timm(model, path)`` writes it (``.safetensors``, or ``.npz``) so that
``timm.create_model(name, num_classes=...).load_state_dict(state, strict=True)``
takes it for skresnet18/34 and skresnext50_32x4d::

    path = skengine.interop.save_timm(model, "skresnext50_32x4d")   # -> "....safetensors" or "....npz"
    # in torch:  state = safetensors.torch.load_file(path)          (or torch.from_numpy over np.load(path))
    #            timm.create_model("skresnext50_32x4d", num_classes=1000).load_state_dict(state)

Only key names change, so any skengine model can be saved (sknet50 is
skresnext50_32x4d, and timm takes it as that): one without a timm twin
(sknet29, the CIFAR nets, sknet101) gets its SK units in timm's layout and
every other key as it is, a file that load_timm reads back into the same
skengine architecture and that no timm model is claimed to load.
"""
import os

import numpy as np

from .autograd import NUMERIC_KINDS
from .backend import to_device, to_numpy
from .serialization import atomic_write, remove_stale_temporaries, write_npz

_RENAMES = ((".attn.fc_reduce.", ".fc_reduce."), (".attn.bn.", ".bn_reduce."), (".attn.fc_select.", ".fc_select."))
_FC_FROM_CONV = (".fc_reduce.weight", ".fc_select.weight")  # stored by timm as 1x1 conv weights


def skengine_key(timm_key):
    """The skengine state-dict key for a timm key (of a whole network or of one SelectiveKernel)."""
    key = "." + timm_key
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return key[1:]


def timm_key(key):
    """The timm state-dict key for an skengine key: skengine_key read backwards (same table)."""
    key = "." + key
    for old, new in reversed(_RENAMES):
        key = key.replace(new, old)
    return key[1:]


def read_state(source):
    """A dict of NumPy arrays from a mapping (arrays, or anything np.asarray takes, e.g. CPU torch
    tensors) or from a path to a ``.safetensors`` or ``.npz`` file (an .npz whose entries are not all .npy
    arrays of distinct names is a ValueError naming it)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path.endswith((".safetensors", ".npz")):
            raise ValueError(f"load_timm: expected a .safetensors or .npz file, got {path!r}")
        remove_stale_temporaries(os.path.dirname(os.path.abspath(path)))  # what a save_timm killed midway left
        if path.endswith(".safetensors"):
            try:
                from safetensors.numpy import load_file
            except ImportError as e:
                raise ImportError(f"reading {path} needs the safetensors package: pip install safetensors") from e
            try:
                return load_file(path)
            except OSError:
                raise
            except Exception as e:  # safetensors' own error type derives from Exception alone
                raise ValueError(f"load_timm: {path} is not a safetensors file it can read ({type(e).__name__}: "
                                 f"{e})") from None
        with np.load(path, allow_pickle=False) as f:
            members = f.zip.namelist()
            other = [m for m in members if not m.endswith(".npy")]
            twice = sorted({m for m in f.files if f.files.count(m) > 1})
            if other or twice:
                why = f"entry {other[0]!r} is not an .npy array" if other else f"the name {twice[0]!r} is stored twice"
                raise ValueError(f"load_timm: {path}: {why}, so it is no state dict np.savez or save_timm wrote")
            return {k: f[k] for k in f.files}
    return {k: to_numpy(v) for k, v in source.items()}


def load_timm(model, state):
    """Copy a timm state dict (mapping or file path) into ``model`` in place; returns the model.  Every
    entry is checked before anything is written: its shape, and its dtype (floating point for the model's
    floating-point tensors: an integer or bool array is refused rather than cast)."""
    own = model.state_dict()
    mapped = {skengine_key(k): (k, v) for k, v in read_state(state).items()}
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = [timm_key for key, (timm_key, _) in mapped.items() if key not in own]
    if missing or unexpected:
        raise KeyError(f"load_timm: the checkpoint does not fit {type(model).__name__}: "
                       f"missing keys {missing}, unexpected keys {unexpected}")
    values = {}
    for key, (timm_key, value) in mapped.items():
        target, shape = own[key], tuple(np.shape(value))
        value = np.asarray(value)
        kinds = "f" if target.dtype.kind == "f" else NUMERIC_KINDS
        if value.dtype.kind not in kinds:
            raise TypeError(f"load_timm: {timm_key} has dtype {value.dtype}, model's {key} is {target.dtype}: "
                            f"{'floating-point weights are' if kinds == 'f' else 'numbers are'} expected")
        fc = ("." + key).endswith(_FC_FROM_CONV)
        if fc and value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value.reshape(value.shape[:2])
        if tuple(value.shape) != target.shape:  # named as in the file, and as timm would have it
            theirs = f" (as timm's 1x1 conv weight {target.shape + (1, 1)})" if fc and len(shape) == 4 else ""
            raise ValueError(f"load_timm: size mismatch for {timm_key}: checkpoint has shape {shape}, "
                             f"model's {key} has shape {target.shape}{theirs}")
        values[key] = value
    for key, value in values.items():  # all checked first: a bad entry leaves the model as it was
        target = own[key]
        target._write_(to_device(np.asarray(value, dtype=target.dtype), target.device))
    return model


def timm_state(model):
    """``model``'s state dict under timm's key names: a new dict of host NumPy arrays (copies, so later
    training does not change it), each SK unit's FC weights as timm's 1x1 conv weights (out, in, 1, 1) and
    BN ``num_batches_tracked`` as int64 scalars.  The exact inverse of what load_timm reads: for every key
    k, ``skengine_key(timm_key(k)) == k``.  Only names and FC shapes change, so it works for any model."""
    out = {}
    for key, tensor in model.state_dict().items():
        name = timm_key(key)
        if skengine_key(name) != key:  # a name the table cannot carry there and back (so names are distinct)
            raise ValueError(f"timm_state: {type(model).__name__}'s key {key!r} has no timm name that load_timm "
                             f"maps back to it (got {name!r})")
        value = np.array(to_numpy(tensor.data), order="C")  # a C-ordered copy of its own
        if key.endswith("num_batches_tracked"):
            value = value.astype(np.int64).reshape(())
        elif ("." + key).endswith(_FC_FROM_CONV) and value.ndim == 2:
            value = value.reshape(value.shape + (1, 1))
        out[name] = value
    return out


def _safetensors_save():
    try:
        from safetensors.numpy import save_file
    except ImportError:
        return None
    return save_file


def save_timm(model, path):
    """Write ``model`` as a timm checkpoint (timm_state) and return the path written.

    ``path`` ending in ``.safetensors``: a safetensors file (ImportError, naming ``pip install safetensors``,
    if the package is missing); ending in ``.npz``: ``np.savez`` (read it in torch with
    ``{k: torch.from_numpy(v) for k, v in np.load(path).items()}``); any other path gets ``.safetensors``
    appended when the package is installed, else ``.npz`` (so ``"w.pt"`` becomes ``"w.pt.npz"``).
    The file is written under a temporary name in the same folder and renamed over ``path``, so a
    failure leaves an existing file as it was.  Works for any skengine model (see the module docstring);
    ``timm.create_model(name, num_classes=...)`` loads it strictly for the three timm-mapped families.
    """
    path = os.fspath(path)
    save_file = _safetensors_save()
    if not path.endswith((".safetensors", ".npz")):
        path += ".safetensors" if save_file is not None else ".npz"
    if path.endswith(".safetensors") and save_file is None:
        raise ImportError(f"writing {path} needs the safetensors package: pip install safetensors "
                          f"(or save to a .npz path)")
    state = timm_state(model)
    if path.endswith(".safetensors"):
        atomic_write(path, lambda tmp: save_file(state, tmp), ".safetensors")
    else:
        write_npz(path, state)
    return path


__all__ = ["load_timm", "read_state", "save_timm", "skengine_key", "timm_key", "timm_state"]
