"""Argument checks shared by the functions and the layers: tensors, int-or-pair sizes, and one
unbatched (C, H, W) image taken as a batch of one, as torch does."""
import functools

import numpy as np

from ..autograd import Tensor


def as_pair(v, name):
    try:
        t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    except TypeError:  # not iterable (a float, None, ...)
        t = ()
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) for i in t):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(int(i) for i in t)


def check_int(v, name, minimum=1):
    """``v`` as an int >= ``minimum``, else a ValueError naming ``name`` (layer sizes and hyperparameters)."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be {'a positive int' if minimum == 1 else f'an int >= {minimum}'}, got {v!r}")
    return int(v)


def check_tensor(x, name):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a skengine.Tensor, got {type(x).__name__}")
    return x


def unbatched(fn):
    """Let ``fn`` (which takes an (N, C, H, W) input first) also take one (C, H, W) image, as torch does."""
    @functools.wraps(fn)
    def wrapper(input, *args, **kwargs):
        if isinstance(input, Tensor) and input.ndim == 3:
            out = fn(input.unsqueeze(0), *args, **kwargs)
            return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
        return fn(input, *args, **kwargs)
    return wrapper
