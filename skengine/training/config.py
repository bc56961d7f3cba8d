"""A training run's settings: the defaults, the checks every setting passes before anything is written,
and what ``resume`` keeps of the run it continues."""
import math
import numbers
import os

import numpy as np

from ..backend import resolve_device
from ..distributed import launched_rank, launched_size, launcher_says, mpi_requested, world_size
from ..models import list_models
from ..serialization import load

DEFAULTS = dict(model="sknet_cifar_small", model_kwargs={}, dataset="cifar10", epochs=14, batch_size=256, lr=0.2,
                wd=5e-4, momentum=0.9, optimizer="sgd", schedule="onecycle", warmup_epochs=1.0, label_smoothing=0.1,
                cutout=0, ema=0.0, tta=True, seed=0, limit_train=None, limit_test=None, device="auto",
                processes="auto", backend="auto", data_dir=None, download=True, out="runs/latest", resume=None,
                overwrite=False, recipe=None, flip="random", crop_pad=4, pad_mode="constant", tta_translate=False,
                lookahead=0, bias_lr_scale=1.0, whiten=True, whiten_bias_epochs=None)

# named recipes: settings a run takes unless given.  A run that names none takes DEFAULT_RECIPE, the best
# measured; with --recipe none (None) it takes the plain settings above (sknet_cifar_small, one-cycle SGD: 85%).
RECIPES = {
    # airbench's tricks (Jordan, arXiv 2404.00498) on its trunk with SK units: whitened first layer whose bias
    # trains 3 epochs, BN biases at 64x the learning rate, Nesterov SGD at momentum 0.85 with a linear warm-up
    # and decay, label smoothing 0.2, alternating flips and 2-pixel reflected translations, and flip + 1-pixel
    # translation TTA; not airbench's Lookahead (--lookahead 5 cost 1.5 points at a one-epoch budget, 2 seeds:
    # benchmarks/RESULTS.md).  airbench sums its loss over a batch of 1024 at lr 11.5 / 7850 and a decay of
    # 0.0153 * 1024 / 7850 per step: for a mean loss that is lr 1.5 per 1024 images and wd 0.0153 / 11.5.
    "fast": dict(model="sknet_cifar_fast", epochs=15, batch_size=512, lr=0.75, wd=0.0153 / 11.5, momentum=0.85,
                 schedule="linear", warmup_epochs=2.0, label_smoothing=0.2, flip="alternate", crop_pad=2,
                 pad_mode="reflect", tta=True, tta_translate=True, lookahead=0, bias_lr_scale=64.0,
                 whiten_bias_epochs=3.0),
}
DEFAULT_RECIPE = "fast"

# what a resumed run may change: where it runs, where it writes, and nothing of what it computes
WHERE = ("out", "resume", "device", "data_dir", "processes", "backend", "download", "overwrite")
KEPT = ("data_dir", "processes", "download")  # of WHERE: the run's own unless given
CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "loader", "rng", "ema", "epoch", "history",
                   "best_acc", "partial")
RUN_FILES = ("checkpoint.npz", "best.npz", "config.json", "metrics.csv")  # a folder with one holds a run


class ConfigError(ValueError):
    """A setting that cannot work, named as on the command line; raised before anything is written."""


def _plain(value):
    """A setting as the JSON of config.json holds it: NumPy scalars as Python numbers, paths as str, also
    inside dicts and lists (model_kwargs)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _flag(key):
    return "--" + key.replace("_", "-")


def _int(cfg, key, low, allow_none=False):
    v = cfg[key]
    if v is None and allow_none:
        return
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
        raise ConfigError(f"{_flag(key)} must be an integer >= {low}, got {v!r}")


def _real(cfg, key, low, high=math.inf, low_open=False, high_open=False):
    v = cfg[key]
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo = f"> {low}" if low_open else f">= {low}"
        bound = lo if high == math.inf else f"{lo} and {'<' if high_open else '<='} {high}"
        raise ConfigError(f"{_flag(key)} must be a finite number {bound}, got {v!r}")


def _bool(cfg, key):
    if not isinstance(cfg[key], (bool, np.bool_)):
        raise ConfigError(f"{_flag(key)} must be true or false, got {cfg[key]!r}")


def validate(cfg):
    """Raise ConfigError for the first setting of ``cfg`` (all of DEFAULTS' keys) that cannot work."""
    if cfg["model"] not in list_models():
        raise ConfigError(f"--model {cfg['model']!r} is not a model; known: {', '.join(list_models())}")
    if not isinstance(cfg["model_kwargs"], dict):
        raise ConfigError(f"--model-kwargs must be a JSON object, got {cfg['model_kwargs']!r}")
    for key, choices in (("dataset", ("cifar10", "cifar100")), ("optimizer", ("sgd", "adamw")),
                         ("schedule", ("onecycle", "cosine", "step", "linear")), ("device", ("auto", "cpu", "cuda")),
                         ("backend", ("auto", "local", "mpi")), ("flip", ("random", "alternate")),
                         ("pad_mode", ("constant", "reflect")), ("recipe", (*RECIPES, None))):
        if cfg[key] not in choices:
            raise ConfigError(f"{_flag(key)} must be one of {', '.join(map(str, choices))}, got {cfg[key]!r}")
    if cfg["device"] == "cuda":
        try:
            resolve_device("cuda")
        except RuntimeError as e:
            raise ConfigError(f"--device cuda: {e}") from None
    _int(cfg, "epochs", 1)
    _int(cfg, "batch_size", 1)
    _int(cfg, "cutout", 0)
    _int(cfg, "seed", 0)
    _int(cfg, "limit_train", 1, allow_none=True)
    _int(cfg, "limit_test", 1, allow_none=True)
    _real(cfg, "lr", 0, low_open=True)
    _real(cfg, "wd", 0)
    _real(cfg, "momentum", 0, 1, high_open=True)
    _real(cfg, "warmup_epochs", 0)
    _real(cfg, "label_smoothing", 0, 1)
    _real(cfg, "ema", 0, 1, high_open=True)
    _int(cfg, "crop_pad", 0)
    _int(cfg, "lookahead", 0)
    _real(cfg, "bias_lr_scale", 0, low_open=True)
    if cfg["whiten_bias_epochs"] is not None:
        _real(cfg, "whiten_bias_epochs", 0)
    for key in ("tta", "tta_translate", "whiten", "download", "overwrite"):
        _bool(cfg, key)
    if cfg["tta_translate"] and not cfg["tta"]:
        raise ConfigError("--tta-translate adds views to --tta's: give --tta too (or drop --tta-translate)")
    if cfg["pad_mode"] == "reflect" and cfg["crop_pad"] >= 32:
        raise ConfigError(f"--crop-pad {cfg['crop_pad']} --pad-mode reflect: a reflection must be narrower than "
                          f"the 32-pixel images")
    if cfg["batch_size"] < 2:
        raise ConfigError(f"--batch-size {cfg['batch_size']}: BatchNorm needs at least 2 images a batch")
    if cfg["schedule"] in ("cosine", "linear") and cfg["warmup_epochs"] > cfg["epochs"]:
        raise ConfigError(f"--warmup-epochs {cfg['warmup_epochs']} is longer than the run (--epochs {cfg['epochs']})"
                          + (f"; --recipe {cfg['recipe']} sets it: give a shorter --warmup-epochs (or --recipe "
                             f"none)" if cfg["recipe"] else ""))
    processes = cfg["processes"]
    if processes != "auto":
        try:
            n = int(processes)
            if n < 1 or str(processes).strip() != str(n):
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"--processes must be a positive integer or 'auto', got {processes!r}") from None
        if n > 1 and n > cfg["batch_size"] // 2:
            raise ConfigError(f"--processes {n} is more than half of --batch-size {cfg['batch_size']}: "
                              f"BatchNorm needs at least 2 images per process")
        if mpi_requested(cfg["backend"]) and n != world_size():  # MPI's world where it is up (on rank 0)
            raise ConfigError(f"--processes {n}: under MPI the number of processes is the launcher's, and it "
                              f"started {world_size()} ranks: leave --processes out (or give {world_size()})")
    if cfg["backend"] == "local" and launched_size() > 1:
        raise ConfigError(f"--backend local under an MPI launcher of {launched_size()} ranks would train "
                          f"{launched_size()} separate runs: use --backend mpi (or auto), or run without mpiexec")
    if launched_rank() > 0 and not mpi_requested(cfg["backend"]):  # a launcher that says the rank alone
        raise ConfigError(f"--backend {cfg['backend']}: this process is one of several tasks of a launcher "
                          f"({launcher_says('rank')}) and would train a separate run: use --backend mpi")
    if cfg["data_dir"] is not None and not os.path.isdir(cfg["data_dir"]):
        folder = "cifar-10-batches-py" if cfg["dataset"] == "cifar10" else "cifar-100-python"
        raise ConfigError(f"--data-dir {cfg['data_dir']} is not a folder (it should hold {folder}/; leave "
                          f"--data-dir out to use the cache, where the data is downloaded if absent)")
    _check_out(cfg)


def _check_out(cfg):
    """--out must be a folder we can write, and hold no other run unless --overwrite says so."""
    out = cfg["out"]
    if not isinstance(out, str) or not out:
        raise ConfigError(f"--out must name a folder, got {out!r}")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file (or a broken link), not a folder")
    existing = out
    while not os.path.exists(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write into {existing}")
    own = os.path.isdir(out) and resumes_in(cfg["resume"], out)
    if os.path.isdir(out) and not own and not cfg["overwrite"]:
        held = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
        if held:
            raise ConfigError(f"--out {out} already holds a run ({', '.join(held)}): choose another --out, "
                              f"continue it with --resume {out}, or pass --overwrite to replace it")


def resumes_in(resume, folder):
    """Whether ``resume`` is the run that ``folder`` holds: the folder itself or its checkpoint.npz (another
    file there, a copy of some other run's checkpoint, is not)."""
    if not resume:
        return False
    path = checkpoint_path(resume)
    return os.path.basename(path) == "checkpoint.npz" and os.path.samefile(os.path.dirname(os.path.abspath(path)),
                                                                              folder)


def checkpoint_path(path):
    """checkpoint.npz in a run folder, or the file given."""
    return os.path.join(path, "checkpoint.npz") if os.path.isdir(path) else path


def recipe_of(given):
    """The recipe a run's ``given`` settings name: DEFAULT_RECIPE if they name none, None for "none" or None."""
    recipe = given.get("recipe", DEFAULT_RECIPE)
    if recipe in ("none", None):
        return None
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe must be one of {', '.join(RECIPES)}, none, got {recipe!r}")
    return recipe


def settings_of(given):
    """A run's settings before any check: DEFAULTS, then its recipe's (recipe_of), then those ``given``."""
    recipe = recipe_of(given)
    return {**DEFAULTS, **RECIPES.get(recipe, {}), **given, "recipe": recipe}


def saved_model_kwargs(cfg, weights):
    """The network options of a saved run (its config and model weights).  Until 2026-12-02 sknet_cifar_fast's
    SK paths each took half the channels (``split_input=True``); a checkpoint of then has no option that says
    so, but its weights' shapes do (a path's conv sees half the block's channels), and it is rebuilt so."""
    kwargs = dict(cfg.get("model_kwargs") or {})
    sk = dict(kwargs.get("sk_kwargs") or {})
    path, conv = weights.get("blocks.0.sk.paths.0.conv.weight"), weights.get("blocks.0.conv.weight")
    if (cfg.get("model") == "sknet_cifar_fast" and "split_input" not in sk and "groups" not in sk
            and path is not None and conv is not None and 2 * path.shape[1] == conv.shape[0]):
        kwargs["sk_kwargs"] = {**sk, "split_input": True}
    return kwargs


def resolve(given):
    """The settings of a run from those ``given`` (a dict of some of DEFAULTS' keys), checked, with the
    checkpoint to continue from (or None) and notes for the user (settings a resumed run ignores).

    A resumed run keeps its own settings except where it runs (WHERE); it writes where its checkpoint
    lives unless ``out`` is given; its data folder, process count and --download stay unless given.
    """
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown settings {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    given = {k: _plain(v) for k, v in given.items()}
    if given.get("recipe") == "none":  # the command's word for no recipe, as a saved run writes it
        given["recipe"] = None
    cfg = settings_of(given)
    if cfg["resume"] is None:
        validate(cfg)
        return cfg, None, []
    path = checkpoint_path(cfg["resume"])
    if not os.path.isfile(path):
        raise ConfigError(f"--resume {cfg['resume']}: no checkpoint there (expected a run folder or its "
                          f"checkpoint.npz)")
    try:
        state = load(path)
    except Exception as e:  # a damaged or foreign file: say which and why, in one line
        raise ConfigError(f"--resume {path}: cannot read it as a checkpoint ({e})") from None
    if not isinstance(state, dict) or "optimizer" not in state or "config" not in state:
        raise ConfigError(f"--resume {path}: this file holds model weights only (best.npz does); resume "
                          f"from the run's checkpoint.npz or its folder")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing or not isinstance(state["config"], dict):
        raise ConfigError(f"--resume {path}: a damaged checkpoint (missing {', '.join(missing) or 'its config'})")
    # of where it ran, the data folder, the process count and --download stay the run's own (KEPT); the device
    # is chosen anew (auto), and --overwrite never comes from a saved run
    saved = {**DEFAULTS, "processes": 1,
             **{k: v for k, v in state["config"].items() if k in DEFAULTS and (k not in WHERE or k in KEPT)}}
    if isinstance(state.get("model"), dict):
        saved["model_kwargs"] = saved_model_kwargs(saved, state["model"])
    notes = [f"{_flag(k)} {given[k]!r} is ignored: a resumed run keeps its own ({saved[k]!r})"
             for k in sorted(given) if k not in WHERE and given[k] != saved[k]]
    # KEPT settings stay the run's own unless another is given (their defaults mean "not given")
    where = {k: given[k] for k in WHERE if k in given and not (k in KEPT and given[k] == DEFAULTS[k])}
    cfg = {**saved, **where, "resume": cfg["resume"]}
    if "out" not in given:
        cfg["out"] = os.path.dirname(path) or "."
    if "processes" not in where and mpi_requested(cfg["backend"]):
        cfg["processes"] = "auto"  # the launcher's count, which loop.train checks against the run's own
    validate(cfg)
    if "processes" not in where and resolve_device(cfg["device"]) == "cuda":
        cfg["processes"] = "auto"  # CUDA runs one process
    return cfg, state, notes
