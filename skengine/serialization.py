"""save / load: nested dicts of tensors and plain values in one .npz, no pickle, written atomically.

Arrays are stored under their "/"-joined key path; plain values (numbers,
strings, bools, None, lists) go into one JSON entry.  The file is written to
a temporary name beside the target and renamed over it, so a crash never
leaves a half-written checkpoint where a good one was.
"""
import json
import os
import tempfile

import numpy as np

from .autograd import Tensor
from .backend import is_array, to_numpy

_JSON_KEY = "__json__"


def _flatten(obj, prefix, arrays, plain):
    if isinstance(obj, dict):
        if not obj and prefix:
            plain[prefix] = {}
        for k, v in obj.items():
            k = str(k)
            if "/" in k:
                raise ValueError(f"save: key {k!r} contains '/', which separates nesting levels")
            _flatten(v, f"{prefix}/{k}" if prefix else k, arrays, plain)
    elif isinstance(obj, Tensor) or is_array(obj) or isinstance(obj, np.generic):
        arrays[prefix] = to_numpy(obj.data if isinstance(obj, Tensor) else obj)
        if arrays[prefix].dtype.hasobject:  # np.savez would pickle it, and load() refuses pickles
            raise TypeError(f"save: array at {prefix!r} has dtype object, which cannot be saved without pickle")
    else:
        try:
            json.dumps(obj)
        except TypeError as e:
            raise TypeError(f"save: value at {prefix!r} of type {type(obj).__name__} cannot be saved") from e
        plain[prefix] = obj


def save(obj, path):
    """Write a (nested) dict of Tensors, arrays and JSON-able values to ``path`` (.npz)."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict (e.g. model.state_dict()), got {type(obj).__name__}")
    arrays, plain = {}, {}
    _flatten(obj, "", arrays, plain)
    if _JSON_KEY in arrays:
        raise ValueError(f"save: the key {_JSON_KEY!r} is reserved")
    arrays[_JSON_KEY] = np.frombuffer(json.dumps(plain).encode(), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def atomic_write(path, write, suffix=".npz"):
    """Create the file ``path`` through ``write(a temporary path)`` in the same folder, synced, then
    renamed over ``path``: an error or a kill midway leaves an existing file as it was."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0o022)  # read the umask (setting it is the only way), then restore it
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the mode of a plain open(), not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """Read what save() wrote: nested dicts with Tensors (on the CPU) and plain values."""
    with np.load(os.fspath(path), allow_pickle=False) as f:
        flat = {k: f[k] for k in f.files}
    plain = json.loads(flat.pop(_JSON_KEY).tobytes().decode()) if _JSON_KEY in flat else {}
    out = {}
    for key, value in [(k, Tensor(v)) for k, v in flat.items()] + list(plain.items()):
        node, parts = out, key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out
