"""A training run's settings resolved: the table's defaults (``settings.py``), then the recipe (the one tuned for
the model unless one is named), then what the user gave; the checks that span settings, run before anything is
written; and what ``resume`` keeps of the run it continues."""
import json
import multiprocessing
import os

import numpy as np

from ..backend import resolve_device
from ..distributed import launched_rank, launched_size, launcher_says, mpi_requested, world_size
from ..serialization import load
from .errors import ConfigError
from .settings import (
    BY_NAME,
    DEFAULT_RECIPE,
    DEFAULTS,
    KEPT,
    OPTIMIZER_DEFAULTS,
    RECIPE_OF_MODEL,
    RECIPES,
    TUNED_FOR_THE_OPTIMIZER,
    WHERE,
    flag,
)

CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "loader", "rng", "epoch", "history", "partial")
# every file a run writes: a folder with one holds a run (or a file of the user's that a run would replace)
RUN_FILES = ("checkpoint.npz", "best.npz", "config.json", "metrics.csv", "curves.png", "confusion.txt")


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


def validate(cfg):
    """Raise ConfigError for the first setting of ``cfg`` (all of DEFAULTS' keys) that cannot work: each
    setting's own check (the table's), then those that span settings."""
    for name, value in cfg.items():
        BY_NAME[name].check(name, value)
    if cfg["recipe"] not in (*RECIPES, None):
        raise ConfigError(f"--recipe must be one of {', '.join(RECIPES)}, none, got {cfg['recipe']!r}")
    device = cfg["device"]
    try:
        device = resolve_device(device)
    except RuntimeError as e:
        raise ConfigError(f"--device cuda: {e}") from None
    if cfg["tta_translate"] and not cfg["tta"]:
        raise ConfigError("--tta-translate adds views to --tta's: give --tta too (or drop --tta-translate)")
    if cfg["train_per_class"] and cfg["limit_train"]:
        raise ConfigError(f"--train-per-class {cfg['train_per_class']} and --limit-train {cfg['limit_train']} both "
                          f"choose the training images: give one")
    if cfg["crop_pad"] >= 32:  # CIFAR's images are 32 pixels wide
        raise ConfigError(f"--crop-pad {cfg['crop_pad']} --pad-mode {cfg['pad_mode']}: the padding must be narrower "
                          f"than the 32-pixel images (at most 31)")
    processes = cfg["processes"]
    if processes != "auto":
        n = int(processes)
        if n > 1 and n > cfg["batch_size"] // 2:
            raise ConfigError(f"--processes {n} is more than half of --batch-size {cfg['batch_size']}: "
                              f"BatchNorm needs at least 2 images per process")
        if mpi_requested(cfg["backend"]):
            if n != world_size():  # MPI's world where it is up (on rank 0)
                raise ConfigError(f"--processes {n}: under MPI the number of processes is the launcher's, and it "
                                  f"started {world_size()} ranks: leave --processes out (or give {world_size()})")
        elif n > 1 and device == "cuda":
            raise ConfigError(f"--processes {n}: data-parallel processes are for the CPU; on CUDA leave "
                              f"--processes out (or give 1), or train on the CPU with --device cpu")
        elif n > 1 and "fork" not in multiprocessing.get_all_start_methods():
            raise ConfigError(f"--processes {n}: data-parallel processes need fork(), which this system lacks")
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
    check_out(cfg)


def check_out(cfg):
    """--out must be a folder we can write, and hold no other run unless --overwrite says so."""
    out = cfg["out"]
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
        if held:  # --resume only where there is a checkpoint to continue from
            resume = f", continue it with --resume {out}" if "checkpoint.npz" in held else ""
            raise ConfigError(f"--out {out} already holds a run ({', '.join(held)}): choose another --out{resume}, "
                              f"or pass --overwrite to replace it")


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
    """The recipe a run's ``given`` settings name: the one named, else the one tuned for the model given (None if
    it has none), else DEFAULT_RECIPE; None for "none" or None."""
    if "recipe" in given:
        recipe = given["recipe"]
    else:
        recipe = RECIPE_OF_MODEL.get(given["model"]) if "model" in given else DEFAULT_RECIPE
    if recipe in ("none", None):
        return None
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe must be one of {', '.join(RECIPES)}, none, got {recipe!r}")
    return recipe


def settings_of(given):
    """A run's settings before any check: DEFAULTS, the optimizer's defaults, its recipe's (recipe_of: those
    tuned for the optimizer only where the run keeps the recipe's optimizer), then those ``given``.  --no-tta
    turns off every TTA view unless --tta-translate is given too."""
    recipe = recipe_of(given)
    tuned = dict(RECIPES.get(recipe, {}))
    optimizer = given.get("optimizer", tuned.get("optimizer", DEFAULTS["optimizer"]))
    if optimizer != tuned.get("optimizer", optimizer):  # the recipe's lr, decay, ... are its optimizer's
        tuned = {k: v for k, v in tuned.items() if k not in TUNED_FOR_THE_OPTIMIZER}
    cfg = {**DEFAULTS, **OPTIMIZER_DEFAULTS.get(optimizer, {}), **tuned, **given, "recipe": recipe}
    if not cfg["tta"] and "tta_translate" not in given:
        cfg["tta_translate"] = False
    return cfg


def describe(cfg, given):
    """The line that starts a run: which recipe it takes and why, and the learning rate a step takes."""
    recipe = cfg["recipe"]
    if recipe is None:
        why = "--recipe none" if "recipe" in given else f"{cfg['model']} has no tuned recipe"
        what = f"the plain settings ({why})"
    else:
        tuned = RECIPES[recipe]
        why = "named" if "recipe" in given else (f"tuned for {tuned['model']}" if "model" in given else "the default")
        what = f"recipe {recipe} ({why})"
        if cfg["model"] != tuned["model"]:
            what += f", tuned for {tuned['model']}, not {cfg['model']}"
        if "model_kwargs" in given and "model_kwargs" in tuned:  # given options replace the recipe's, all of them
            what += f", whose --model-kwargs {json.dumps(tuned['model_kwargs'])} the given ones replace"
        if cfg["optimizer"] != tuned["optimizer"]:
            what += f", with {cfg['optimizer']}'s own lr, wd and bias rate (the recipe's are {tuned['optimizer']}'s)"
    changed = [flag(k) for k in given if k not in WHERE and k != "recipe"]
    return (f"{what}; {cfg['optimizer']} at lr {step_lr(cfg):.4g} a step of {cfg['batch_size']} images "
            f"({cfg['lr']:.4g} per 1024)" + (f"; given: {' '.join(changed)}" if changed else ""))


def ignored(cfg, given):
    """A line for each setting ``given`` that the run has no use for (those the model decides: loop.build)."""
    unused = {"warmup": cfg["schedule"] == "step" and "--schedule step has no warm-up",
              "end_factor": cfg["schedule"] != "linear" and f"--schedule {cfg['schedule']} ends as it always does "
                            f"(--end-factor is the linear schedule's)",
              "momentum": cfg["optimizer"] == "adamw" and "adamw keeps its betas"}
    return [f"{flag(k)} {given[k]!r} is ignored: {why}" for k, why in unused.items() if k in given and why]


def to_lower(cfg):
    """What a diverged run should lower: --lr, or a setting that makes steps larger than the run's default (its
    recipe's for its optimizer, or the plain settings') does, named with both values."""
    base = settings_of({"recipe": cfg["recipe"], "optimizer": cfg["optimizer"]})
    raised = [f"{flag(k)} {cfg[k]:.4g} (default {base[k]:.4g})" for k in ("wd", "bias_lr_scale", "momentum")
              if cfg[k] > base[k]]
    return " or ".join(["lower --lr", *raised])


def step_lr(cfg):
    """The peak learning rate of a step: --lr is per 1,024 images."""
    return cfg["lr"] * cfg["batch_size"] / 1024


def upgrade(saved):
    """A saved run's settings as this version names them: before 2026-12-07 --lr was a step's (not per 1,024
    images) and the warm-up was --warmup-epochs (not a fraction of the run)."""
    saved = dict(saved)
    if "warmup_epochs" in saved:
        epochs = saved.get("epochs") or 1
        saved["warmup"] = min(1.0, float(saved.pop("warmup_epochs")) / epochs)
        if "lr" in saved and saved.get("batch_size"):
            saved["lr"] = saved["lr"] * 1024 / saved["batch_size"]
    saved.pop("best_acc", None)
    return saved


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


def _on_cuda(device):
    try:
        return resolve_device(device) == "cuda"
    except RuntimeError:  # --device cuda without a GPU: validate says so
        return False


def resolve(given):
    """The settings of a run from those ``given`` (a dict of some of DEFAULTS' keys), checked, with the
    checkpoint to continue from (or None) and notes for the user (the recipe taken, settings a resumed run
    ignores).

    A resumed run keeps its own settings except where it runs (WHERE); it writes where its checkpoint
    lives unless ``out`` is given; its data folder, process count, --download and --test-every stay unless given
    (KEPT).
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
        return cfg, None, [describe(cfg, given), *ignored(cfg, given)]
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
    # of where it ran, the data folder, the process count, --download and --test-every stay the run's own (KEPT);
    # the device is chosen anew (auto), and --overwrite never comes from a saved run
    saved = {**DEFAULTS, "processes": 1,
             **{k: v for k, v in upgrade(state["config"]).items()
                if k in DEFAULTS and (k not in WHERE or k in KEPT)}}
    if isinstance(state.get("model"), dict):
        saved["model_kwargs"] = saved_model_kwargs(saved, state["model"])
    notes = [f"--resume: {flag(k)} {given[k]!r} is ignored: a resumed run keeps its own ({saved[k]!r})"
             for k in sorted(given) if k not in WHERE and given[k] != saved[k]]
    # KEPT settings stay the run's own unless another is given (their defaults mean "not given")
    where = {k: given[k] for k in WHERE if k in given and not (k in KEPT and given[k] == DEFAULTS[k])}
    cfg = {**saved, **where, "resume": cfg["resume"]}
    if "out" not in given:
        cfg["out"] = os.path.dirname(path) or "."
    if "processes" not in where and mpi_requested(cfg["backend"]):
        cfg["processes"] = "auto"  # the launcher's count, which the trainer checks against the run's own
    if "processes" not in where and _on_cuda(cfg["device"]):
        cfg["processes"] = "auto"  # CUDA runs one process
    validate(cfg)
    return cfg, state, notes
