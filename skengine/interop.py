"""Load timm checkpoints of the SK networks (skresnet18/34, skresnext50_32x4d) into skengine models.

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
"""
import os

import numpy as np

from .backend import to_device, to_numpy

_RENAMES = ((".attn.fc_reduce.", ".fc_reduce."), (".attn.bn.", ".bn_reduce."), (".attn.fc_select.", ".fc_select."))
_FC_FROM_CONV = (".fc_reduce.weight", ".fc_select.weight")  # stored by timm as 1x1 conv weights


def skengine_key(timm_key):
    """The skengine state-dict key for a timm key (of a whole network or of one SelectiveKernel)."""
    key = "." + timm_key
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return key[1:]


def read_state(source):
    """A dict of NumPy arrays from a mapping (arrays, or anything np.asarray takes, e.g. CPU torch
    tensors) or from a path to a ``.safetensors`` or ``.npz`` file."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(".safetensors"):
            try:
                from safetensors.numpy import load_file
            except ImportError as e:
                raise ImportError(f"reading {path} needs the safetensors package: pip install safetensors") from e
            return load_file(path)
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        raise ValueError(f"load_timm: expected a .safetensors or .npz file, got {path!r}")
    return {k: to_numpy(v) if type(v).__module__.startswith("cupy") else np.asarray(v) for k, v in source.items()}


def load_timm(model, state):
    """Copy a timm state dict (mapping or file path) into ``model`` in place; returns the model."""
    own = model.state_dict()
    mapped = {skengine_key(k): (k, v) for k, v in read_state(state).items()}
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = [timm_key for key, (timm_key, _) in mapped.items() if key not in own]
    if missing or unexpected:
        raise KeyError(f"load_timm: the checkpoint does not fit {type(model).__name__}: "
                       f"missing keys {missing}, unexpected keys {unexpected}")
    for key, (timm_key, value) in mapped.items():
        target = own[key]
        if ("." + key).endswith(_FC_FROM_CONV) and value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value.reshape(value.shape[:2])
        if tuple(value.shape) != target.shape:
            raise ValueError(f"load_timm: size mismatch for {timm_key}: checkpoint has shape "
                             f"{tuple(value.shape)}, model's {key} has shape {target.shape}")
        target.data[...] = to_device(np.asarray(value, dtype=target.dtype), target.device)
    return model


__all__ = ["load_timm", "read_state", "skengine_key"]
