"""Padding the last two axes with zeros or with the input's own values (reflect, replicate, circular)."""
import numpy as np

from .. import ops
from ..autograd import Tensor
from ..backend import get_array_module

_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}  # torch's name: np.pad's


def pad2d(x, pads, mode="zeros"):
    """Pad the last two axes of x by pads = (top, bottom, left, right), as torch's F.pad with that mode
    ('zeros'; 'reflect', 'replicate' and 'circular' gather the input's own values)."""
    top, bottom, left, right = pads
    H, W = x.shape[-2:]
    xp = get_array_module(x.data)
    if mode == "zeros":
        for axis, before, after in ((x.ndim - 2, top, bottom), (x.ndim - 1, left, right)):
            zeros = [Tensor(xp.zeros(x.shape[:axis] + (n,) + x.shape[axis + 1:], x.dtype)) for n in (before, after)]
            parts = ([zeros[0]] if before else []) + [x] + ([zeros[1]] if after else [])
            x = ops.cat(parts, dim=axis) if len(parts) > 1 else x
        return x
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got {mode!r}")
    limit = {"reflect": (H - 1, W - 1), "circular": (H, W)}.get(mode)
    if limit and (max(top, bottom) > limit[0] or max(left, right) > limit[1]):
        raise ValueError(f"pad: {mode} padding {pads} (top, bottom, left, right) must be at most "
                         f"{limit[0]} rows and {limit[1]} columns for input of shape {x.shape}")
    rows = xp.asarray(np.pad(np.arange(H), (top, bottom), mode=_PAD_MODES[mode]))
    cols = xp.asarray(np.pad(np.arange(W), (left, right), mode=_PAD_MODES[mode]))
    return x[..., rows[:, None], cols]
