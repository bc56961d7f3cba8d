"""A run of the trainer read back: ``load_run`` rebuilds its network from its best.npz or checkpoint.npz, by
the one rule that the evaluation command and the study scripts share."""
import os
from numbers import Integral
from typing import NamedTuple

import numpy as np

from ..autograd import Tensor
from ..backend import resolve_device
from ..data.cifar import LAYOUT
from ..models import create, list_models
from ..serialization import load
from .config import ConfigError, saved_model_kwargs

CLASSES = {name: spec["classes"] for name, spec in LAYOUT.items()}  # the datasets a run can name
MODEL_FILES = ("best.npz", "checkpoint.npz")  # what a run folder is read by, in this order
_NOT_A_RUN = "not a checkpoint of skengine.train that this version can read"


class SavedRun(NamedTuple):
    """What ``load_run`` gives: the network (weights loaded, in eval mode, on the device asked for), the run's
    settings (config.json's dict), the file read, and everything that file holds."""
    model: object
    config: dict
    path: str
    state: dict


def _line(e):
    """An exception as one line: its type and its message with any line breaks folded."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


# the options that size a network's weights (a width, a channel count, a kernel); the others (logit_scale,
# bn_momentum, reduction, dilation, ...) are factors and flags whose whole numbers size nothing
_SIZES = frozenset(("widths", "channels", "stem_width", "whiten_width", "in_chans", "base_width", "cardinality",
                    "groups", "kernel_sizes", "min_dim", "rd_channels"))


def _size_beyond(options, weights):
    """(name, number, largest size) for the first value of a sizing option (_SIZES) in a run's model_kwargs
    (sk_kwargs too) that can size nothing of ``weights``: it is none of their dimensions and more than their
    count (a width or a kernel is a dimension, a group count is at most the count).  None if there is none."""
    dims = {d for v in weights.values() for d in v.shape}

    def whole(value, name):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from whole(v, str(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from whole(v, name)
        elif isinstance(value, Integral) and not isinstance(value, bool) and name in _SIZES:
            yield name, int(value)

    return next(((name, n, max(dims, default=0)) for name, n in whole(options, "model_kwargs")
                 if n not in dims and n > len(weights)), None)


def run_file(path):
    """The file ``load_run`` reads for ``path``: a run folder's best.npz, else its checkpoint.npz; a file as
    given.  ConfigError if there is no such file or the folder holds neither."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = [os.path.join(path, f) for f in MODEL_FILES if os.path.isfile(os.path.join(path, f))]
        if not found:
            raise ConfigError(f"{path}: a folder without {' or '.join(MODEL_FILES)}, so not a run of "
                              f"skengine.train")
        return found[0]
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such file or folder (give a run's folder, its best.npz or its "
                          f"checkpoint.npz)")
    return path


def load_run(path, device="cpu"):
    """The network of a run of skengine.train, with its settings: ``path`` is the run's folder (its best.npz,
    else its checkpoint.npz), a best.npz or a checkpoint.npz.  The network is rebuilt as
    ``create(model, num_classes=<100 for cifar100 else 10>, **saved_model_kwargs(config, weights))`` and takes
    the saved weights; it comes back in eval mode on ``device`` ("cpu", "cuda" or "auto").  Any failure (no
    file, a foreign or damaged file, a file of weights alone, weights that do not fit the network its settings
    describe or hold NaN or inf, a device that is not there) is a ConfigError of one line naming the file and
    why.  The settings' sizes are checked against the weights' shapes before the network is built, so a
    damaged config.json cannot ask for more memory than the machine has (_size_beyond)."""
    file = run_file(path)
    try:
        state = load(file)
    except Exception as e:  # a damaged or foreign file, one that cannot be read: say which and why, in one line
        raise ConfigError(f"{file}: {_NOT_A_RUN} ({_line(e)})") from None
    cfg, weights = state.get("config"), state.get("model")
    if not isinstance(cfg, dict) or not isinstance(weights, dict):
        raise ConfigError(f"{file}: {_NOT_A_RUN} (it holds no run settings and weights, the 'config' and "
                          f"'model' entries a trainer's best.npz or checkpoint.npz has)")
    model = cfg.get("model")
    if not isinstance(model, str) or model not in list_models():
        raise ConfigError(f"{file}: {_NOT_A_RUN} (its model {model!r} is none of this version's: "
                          f"{', '.join(list_models())})")
    if cfg.get("dataset") not in CLASSES:
        raise ConfigError(f"{file}: {_NOT_A_RUN} (its settings name no dataset of {', '.join(CLASSES)}: "
                          f"{cfg.get('dataset')!r})")
    odd = next((k for k, v in weights.items() if not isinstance(v, Tensor)), None)
    if odd is not None:
        raise ConfigError(f"{file}: {_NOT_A_RUN} (its weights hold a {type(weights[odd]).__name__} at {odd!r}, "
                          f"not an array)")
    beyond = _size_beyond(cfg.get("model_kwargs"), weights)
    if beyond:  # before the network is built: such a size could ask for more memory than the machine has
        raise ConfigError(f"{file}: {_NOT_A_RUN} (its settings' model_kwargs {cfg.get('model_kwargs')!r} give "
                          f"{beyond[0]} {beyond[1]}, but no saved weight has a dimension of that size (the largest "
                          f"is {beyond[2]}), nor are there that many weights ({len(weights)}): the settings do not "
                          f"describe these weights)")
    nonfinite = next((k for k, v in weights.items() if v.dtype.kind == "f" and not np.isfinite(v.data).all()), None)
    if nonfinite is not None:
        raise ConfigError(f"{file}: its weights hold NaN or inf (the first: {nonfinite!r}), so its network "
                          f"computes nothing meaningful")
    try:
        kwargs = saved_model_kwargs(cfg, weights)
        net = create(model, num_classes=CLASSES[cfg["dataset"]], **kwargs)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise ConfigError(f"{file}: {_NOT_A_RUN} ({model} cannot be built with its settings' model_kwargs "
                          f"{cfg.get('model_kwargs')!r}: {_line(e)})") from None
    try:
        net.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ConfigError(f"{file}: {_NOT_A_RUN} (its weights do not fit {model} as its settings build it: "
                          f"{_line(e)})") from None
    try:
        net.to(resolve_device(device))
    except (RuntimeError, ValueError, TypeError) as e:  # no GPU, no CuPy, a device name that is none
        raise ConfigError(f"{file}: cannot put its network on device {device!r} ({_line(e)})") from None
    return SavedRun(net.eval(), cfg, file, state)
