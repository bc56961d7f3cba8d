"""The table of a training run's settings: each once, with its default, its type or choices, its help, its
check, and whether a resumed run may change it.  The command's options (``train.py``), ``DEFAULTS``, the checks
of ``config.validate`` and the resume rules of ``config.resolve`` are all made from ``SETTINGS``; the recipes
(named sets of tuned settings) are at the end.  A new plain setting is one row here and the line that uses it."""
import argparse
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..models import list_models
from .errors import ConfigError


def flag(name):
    return "--" + name.replace("_", "-")


# checks: each takes (name, value) and raises ConfigError naming the flag
def integer(low, optional=False):
    def check(name, v):
        if v is None and optional:
            return
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{flag(name)} must be an integer >= {low}, got {v!r}")
    return check


def real(low, high=math.inf, low_open=False, high_open=False, optional=False):
    def check(name, v):
        if v is None and optional:
            return
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        if not ok:
            lo = f"> {low}" if low_open else f">= {low}"
            bound = lo if high == math.inf else f"{lo} and {'<' if high_open else '<='} {high}"
            raise ConfigError(f"{flag(name)} must be a finite number {bound}, got {v!r}")
    return check


def boolean(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ConfigError(f"{flag(name)} must be true or false, got {v!r}")


def one_of(choices):
    def check(name, v):
        if v not in choices:
            raise ConfigError(f"{flag(name)} must be one of {', '.join(map(str, choices))}, got {v!r}")
    return check


def a_model(name, v):
    if v not in list_models():
        raise ConfigError(f"--model {v!r} is not a model; known: {', '.join(list_models())}")


def batch_size(name, v):
    integer(1)(name, v)
    if v < 2:
        raise ConfigError(f"{flag(name)} {v}: BatchNorm needs at least 2 images a batch")


def a_dict(name, v):
    if not isinstance(v, dict):
        raise ConfigError(f"{flag(name)} must be a JSON object, got {v!r}")


def processes(name, v):
    if v == "auto":
        return
    try:
        n = int(v)
        if n < 1 or str(v).strip() != str(n):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"--processes must be a positive integer or 'auto', got {v!r}") from None


def a_folder_name(name, v):
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{flag(name)} must name a folder, got {v!r}")


def json_value(text):
    """--model-kwargs' type: JSON, or argparse's one-line error saying why not."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from None


def anything(name, v):
    pass


@dataclass(frozen=True)
class Setting:
    """One setting: ``kind`` is the command-line form ("value" with ``type``, "bool" for --x/--no-x, "store"
    for a flag that only switches on); ``where``: a resumed run may change it (where it runs and writes, never
    what it computes); ``kept``: of those, a resumed run keeps its own unless one is given."""
    name: str
    default: Any
    help: str
    check: Callable = anything
    type: Callable = None
    choices: tuple = None
    kind: str = "value"
    metavar: str = None
    where: bool = False
    kept: bool = False

    def add_to(self, parser):
        """This setting's option on an argparse parser (its default comes from the parser's own defaults)."""
        if self.kind == "bool":
            parser.add_argument(flag(self.name), action=argparse.BooleanOptionalAction, help=self.help)
        elif self.kind == "store":
            parser.add_argument(flag(self.name), action="store_true", help=self.help)
        else:
            parser.add_argument(flag(self.name), type=self.type, choices=self.choices, metavar=self.metavar,
                                help=self.help)


# named recipes: settings a run takes unless given; each was tuned for its "model", which takes it by default.
# airbench93 (github.com/KellerJordan/cifar10-airbench, airbench/lib_airbench93.py) on its own trunk, as
# airbench sets it: batches of 1024 (the last partial one of an epoch dropped), 11 epochs, lr and decay as
# the fast recipe's (airbench's decoupled 11.5 and 0.0153 in this trainer's terms), a warm-up over 23% of the
# steps from 0.2x up to 1x then down to 0.07x, Lookahead every 5 steps, BN biases decayed by the weights'
# amount a step, the whitening bias trained for 3 epochs, flip + translate TTA.  The reference that
# benchmarks/airbench_torch.py runs in PyTorch.
AIRBENCH93 = dict(model="sknet_cifar_fast", model_kwargs={"attention": "none"}, optimizer="sgd", epochs=11,
                  batch_size=1024, drop_last=True, lr=1.5, wd=0.0153 / 11.5, momentum=0.85, schedule="linear",
                  warmup=0.23, end_factor=0.07, label_smoothing=0.2, flip="alternate", crop_pad=2,
                  pad_mode="reflect", tta=True, tta_translate=True, lookahead=5, bias_lr_scale=64.0,
                  bias_decay=True, whiten_bias_epochs=3.0)

RECIPES = {
    # the default: airbench93's recipe on the SK network, sigmoid gates in the SK units of blocks 2 and 3 (the
    # first block keeps its plain conv: its SK unit cost a tenth of a step and bought nothing measurable),
    # batches of 512 with Lookahead every 10 steps (airbench's 5,120 images a sync), 10 epochs.  On the 2-core
    # Zen 4 VM: PyTorch airbench93's accuracy, with TTA and without, in 1.34x its time (2 seeds each,
    # benchmarks/history/2026-12-07-sk-recipe-zen4.md).
    "airbench93_sk": {**AIRBENCH93, "model_kwargs": {"attention": ["none", "sk", "sk"],
                                                     "sk_kwargs": {"attention": "sigmoid"}},
                      "epochs": 10, "batch_size": 512, "lookahead": 10},
    # the hour's recipe, more accurate (90.1% with TTA in 43 min here): airbench's tricks (Jordan, arXiv
    # 2404.00498) on its trunk with SK units: whitened first layer whose bias trains 3 epochs, BN biases at 64x
    # the learning rate, Nesterov SGD at momentum 0.85 with a linear warm-up over 2/15 of the run and decay,
    # label smoothing 0.2, alternating flips and 2-pixel reflected translations, and flip + 1-pixel translation
    # TTA; not airbench's Lookahead (--lookahead 5 cost 1.5 points at a one-epoch budget, 2 seeds:
    # benchmarks/RESULTS.md).  airbench sums its loss over a batch of 1024 at lr 11.5 / 7850 and a decay of
    # 0.0153 * 1024 / 7850 per step: for a mean loss that is lr 1.5 per 1024 images and wd 0.0153 / 11.5.  Tuned
    # at batch 512 (lr 0.75 a step).
    "fast": dict(model="sknet_cifar_fast", optimizer="sgd", epochs=15, batch_size=512, lr=1.5, wd=0.0153 / 11.5,
                 momentum=0.85, schedule="linear", warmup=2 / 15, label_smoothing=0.2, flip="alternate",
                 crop_pad=2, pad_mode="reflect", tta=True, tta_translate=True, lookahead=0, bias_lr_scale=64.0,
                 whiten_bias_epochs=3.0),
    "airbench93": AIRBENCH93,
}
DEFAULT_RECIPE = "airbench93_sk"  # a run that names neither a model nor a recipe
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "linear")
SETTINGS = (
    Setting("model", "sknet_cifar_small", "any name of skengine.models.list_models(); without --recipe it takes "
            "the recipe tuned for it, or the plain settings", a_model),
    Setting("model_kwargs", {}, 'constructor options, e.g. \'{"attention": "se"}\' or '
            '\'{"sk_kwargs": {"attention": "sigmoid"}}\'', a_dict, type=json_value, metavar="JSON"),
    Setting("dataset", "cifar10", "the data set", one_of(("cifar10", "cifar100")), choices=("cifar10", "cifar100")),
    Setting("epochs", 14, "passes over the training images", integer(1), type=int),
    Setting("batch_size", 256, "images a step (over all processes)", batch_size, type=int),
    Setting("lr", 0.8, "peak learning rate per 1,024 images: a step of --batch-size B takes lr * B / 1024",
            real(0, low_open=True), type=float),
    Setting("wd", 5e-4, "weight decay as PyTorch's (it multiplies the learning rate, and so scales with "
            "--batch-size too); not applied to BN parameters and biases", real(0), type=float),
    Setting("momentum", 0.9, "SGD's momentum (Nesterov); AdamW keeps its betas", real(0, 1, high_open=True),
            type=float),
    Setting("optimizer", "sgd", "a recipe's learning rate, decay, momentum and bias rate are tuned for its own "
            "optimizer: another takes its own defaults", one_of(OPTIMIZERS), choices=OPTIMIZERS),
    Setting("schedule", "onecycle", "learning-rate schedule; linear: from 0.2x up over the warm-up, then straight "
            "down to --end-factor", one_of(SCHEDULES), choices=SCHEDULES),
    Setting("end_factor", 0.0, "the linear schedule's factor of the peak learning rate at the run's end (as "
            "PyTorch's LinearLR's end_factor)", real(0, 1), type=float),
    Setting("warmup", 0.25, "fraction of the run's steps the onecycle, cosine and linear schedules warm up over",
            real(0, 1), type=float),
    Setting("label_smoothing", 0.1, "label smoothing of the training loss (1 would leave no label to learn)",
            real(0, 1, high_open=True), type=float),
    Setting("cutout", 0, "cutout square size (0: off)", integer(0), type=int),
    Setting("ema", 0.0, "EMA decay of the weights used for testing (0: off)", real(0, 1, high_open=True),
            type=float),
    Setting("tta", True, "test-time augmentation of the final test: each image and its mirror (--no-tta: none)",
            boolean, kind="bool"),
    Setting("tta_translate", False, "with --tta, also 1-pixel translations of each image and its mirror (6 "
            "passes)", boolean, kind="bool"),
    Setting("recipe", None, "a named recipe: its settings unless given; none: the plain settings (default: the one "
            "tuned for --model, %(default)s without --model)", choices=(*RECIPES, "none")),
    Setting("flip", "random", "alternate: each image mirrored every other epoch", one_of(("random", "alternate")),
            choices=("random", "alternate")),
    Setting("crop_pad", 4, "random crops from the image padded by this many pixels", integer(0), type=int),
    Setting("pad_mode", "constant", "the crops' padding: zeros or mirrored", one_of(("constant", "reflect")),
            choices=("constant", "reflect")),
    Setting("lookahead", 0, "Lookahead every K steps, with airbench's schedule (0: off)", integer(0), type=int),
    Setting("bias_lr_scale", 1.0, "learning-rate factor of BN parameters and biases", real(0, low_open=True),
            type=float),
    Setting("bias_decay", False, "decay BN parameters and biases too, by the weights' amount a step as airbench "
            "does (wd / --bias-lr-scale at their rate); --no-bias-decay: not at all", boolean, kind="bool"),
    Setting("drop_last", False, "drop the last batch of each epoch when it is short of --batch-size (always when "
            "it leaves a process fewer than 2 images)", boolean, kind="bool"),
    Setting("whiten", True, "fit a model's whitening layer to the training images (off: train it from random)",
            boolean, kind="bool"),
    Setting("whiten_bias_epochs", None, "epochs the whitening layer's bias learns (unset: as long as the rest)",
            real(0, optional=True), type=float),
    Setting("diverge", 4.0, "stop when a step's training loss exceeds this many times the run's first (0: never)",
            real(0), type=float),
    Setting("seed", 0, "seed of the weights, the data order and the augmentation", integer(0), type=int),
    Setting("limit_train", None, "train on the first N images only", integer(1, optional=True), type=int),
    Setting("train_per_class", None, "train on the first N images of each class only (a fixed class-balanced "
            "subset, in the files' order)", integer(1, optional=True), type=int),
    Setting("limit_test", None, "test on the first N images only", integer(1, optional=True), type=int),
    Setting("test_every", None, "test after every N epochs, and always after the last (0: after the last only; "
            "unset: every epoch); a test pass changes no weight, so the run trains the same (best.npz is the best "
            "of the epochs tested)", integer(0, optional=True), type=int, where=True, kept=True),
    Setting("device", "auto", "auto: CUDA where CuPy finds a GPU, else the CPU", one_of(("auto", "cpu", "cuda")),
            choices=("auto", "cpu", "cuda"), where=True),
    Setting("processes", "auto", "data-parallel processes, each training on its shard of every batch (auto: on "
            "the CPU one per BLAS thread, at most one per 64 images; with --resume: the run's own count; under "
            "mpiexec: its -n)", processes, where=True, kept=True),
    Setting("backend", "auto", "how processes talk: local (forked on this machine, --processes), mpi (ranks "
            "started by mpiexec, on any number of hosts), auto (mpi under mpiexec, else local)",
            one_of(("auto", "local", "mpi")), choices=("auto", "local", "mpi"), where=True),
    Setting("data_dir", None, "folder holding cifar-10-batches-py/ (default: $SKENGINE_DATA or ~/.cache/skengine)",
            where=True, kept=True),
    Setting("download", True, "download the official archive if the data is absent", boolean, kind="bool",
            where=True, kept=True),
    Setting("out", "runs/latest", "output folder (with --resume: the run's own folder unless given)",
            a_folder_name, where=True),
    Setting("resume", None, "checkpoint.npz (or its folder) to continue from", where=True),
    Setting("overwrite", False, "replace a run that --out already holds", boolean, kind="store", where=True),
)
BY_NAME = {s.name: s for s in SETTINGS}
DEFAULTS = {s.name: s.default for s in SETTINGS}  # the plain settings (--recipe none)
WHERE = tuple(s.name for s in SETTINGS if s.where)  # what a resumed run may change
KEPT = tuple(s.name for s in SETTINGS if s.kept)

# what an optimizer takes where a recipe tuned for another is used (the recipe's lr, wd, momentum and bias rate
# are its optimizer's).  AdamW: PyTorch's decoupled decay; at lr 0.004 per 1024 the fast recipe's trunk reached
# 30.2% with TTA after 2 epochs on 2,048 images (1,000 test images), SGD's recipe 27.4% (the recipe's SGD lr for
# AdamW stuck at chance: 2.3026, 8%)
OPTIMIZER_DEFAULTS = {"sgd": {"lr": 0.8, "wd": 5e-4, "momentum": 0.9, "bias_lr_scale": 1.0},
                      "adamw": {"lr": 0.004, "wd": 0.05, "momentum": 0.9, "bias_lr_scale": 1.0}}
TUNED_FOR_THE_OPTIMIZER = tuple(OPTIMIZER_DEFAULTS["sgd"])

RECIPE_OF_MODEL = {r["model"]: name for name, r in reversed(RECIPES.items())}  # the first tuned for a model

__all__ = ["Setting", "SETTINGS", "DEFAULTS", "WHERE", "KEPT", "RECIPES", "DEFAULT_RECIPE", "RECIPE_OF_MODEL",
           "OPTIMIZER_DEFAULTS", "flag"]
