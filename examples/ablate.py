"""A resumable ablation runner: the same network, recipe and budget, only one thing changes per variant.

    python examples/ablate.py --data-dir DIR --grid gates --seeds 0-9 --epochs 1 --warmup 0.2 --no-tta \
        --out runs/gates
    python examples/ablate.py --out runs/gates --report        # the table, CSV and plot again, no training
    python examples/ablate.py --out runs/gates --report --data-dir DIR --gates 1000   # and what the gates do

Every finished run is appended to OUT/results.jsonl (written whole to a temporary file, then renamed over
it by skengine.serialization.atomic_write: a kill never leaves half a line).  A restarted runner skips the
runs already there and continues an interrupted one from its checkpoint, so a grid that does not fit one
sitting goes on later; the table (ablation.md), ablation.csv and ablation.png are made from results.jsonl
alone.  Each run is tested once, after its last epoch (the trainer's --test-every 0: no weight changes).
A run is the same run when its variant, seed and every trainer setting that decides its numbers are
the same: change the budget and the runner trains anew, beside the old results, and reports each budget apart.

Grids (``--grid``; the first variant of each is the one the others are compared with):
  gates   the Select step's gate (nn/sk.py): softmax across paths (the paper), an independent sigmoid per
          path and channel, sigmoids divided by their sum, and fixed equal weights 1/M (no attention)
  blocks  the block's second layer: an SK unit, a plain conv + SE gate, a plain conv (no attention)
  paths   M = 2 vs 3 paths (3x3 and 3x3 dilated by 2, and by 3), each path on the whole input
  attention  the SK unit with either gate against no attention: a plain conv in its place (``none``; the
          grid also serves sknet_cifar_small, the paper's bottleneck), and for sknet_cifar_fast the plain network
          widened to the SK network's multiply-adds (``none_wide``: widths 74-150-150, 70.9M against 71.1M)
  tricks  the fast recipe with one trick changed at a time, off (or Lookahead on: the recipe leaves it off)

The table gives each variant's test accuracy, mean +- standard deviation over the seeds, and its
difference to the first variant with a 95% confidence interval twice: Welch's t, and a bootstrap of
the two means (10,000 resamples) as a check (both skengine.stats'); with TTA, the same for the accuracy with
TTA; then parameters, multiply-adds and
training images/s (each run records the CPU or GPU it ran on).  ``--gates N`` adds gates.md and gates.csv:
examples/sk_attention.py's analysis of every finished run's final network (rebuilt by skengine.training's
load_run) on the first N test images (kept in the run's folder), per variant and SK layer the mean over the
seeds with a 95% t interval.
"""
import argparse
import csv
import errno
import fcntl
import hashlib
import json
import math
import os
import shlex
import sys

import numpy as np

from skengine import training as trainer
from skengine.backend import resolve_device
from skengine.data import CIFAR_MEAN_STD, load_cifar
from skengine.distributed import WorkerError
from skengine.models import create
from skengine.nn import SKConv
from skengine.serialization import atomic_write
from skengine.stats import bootstrap_ci, t_half_width, welch_ci
from skengine.summary import summary
from skengine.training import load_run
from skengine.training.config import RECIPES, WHERE, resolve, settings_of
from skengine.training.errors import ConfigError, Diverged, Interrupted
from skengine.training.report import pyplot


def _net(**kw):
    return {"model_kwargs": kw}


def _sk(**kw):
    return _net(sk_kwargs=kw)


GRIDS = {
    "gates": {"softmax": _sk(attention="softmax"), "sigmoid": _sk(attention="sigmoid"),
              "sigmoid_norm": _sk(attention="sigmoid_norm"), "uniform": _sk(attention="uniform")},
    "blocks": {"sk": {}, "se": _net(attention="se"), "none": _net(attention="none")},
    "paths": {"m2": _sk(kernel_sizes=[3, 5], split_input=False), "m3": _sk(kernel_sizes=[3, 5, 7], split_input=False)},
    "attention": {"softmax": _sk(attention="softmax"), "sigmoid": _sk(attention="sigmoid"),
                  "none": _net(attention="none"), "none_wide": _net(attention="none", widths=[74, 150, 150])},
    "tricks": {"recipe": {}, "no_whitening": {"whiten": False}, "no_label_smoothing": {"label_smoothing": 0.0},
               "random_flip": {"flip": "random"}, "lookahead": {"lookahead": 5},
               "biases_at_lr": {"bias_lr_scale": 1.0}, "bn_weight_learned": _net(freeze_bn_weight=False),
               "bn_momentum_0.1": _net(bn_momentum=0.1), "logits_unscaled": _net(logit_scale=1.0)},
}
RESULTS = "results.jsonl"
MAX_SEEDS = 1000  # seeds in one range of --seeds (each is a run per variant)
BOOTSTRAP_MIN = 5  # runs per variant below which the bootstrap's few distinct resamples make no interval


def resolved(cfg):
    """Every setting that decides a run's numbers: the defaults, the recipe, the given ones; not where it runs
    nor the data's folder.  (Keep --processes fixed within a grid: BatchNorm normalises each process's shard
    by itself, so the count changes the numbers a little, and it is not part of a run's identity.)"""
    return {k: v for k, v in sorted(settings_of(cfg).items()) if k not in WHERE and k != "data_dir"}


def _digest(d):
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_key(variant, seed, cfg, size):
    """A run's identity: its variant, seed, every setting that decides its numbers, and its network's size
    (params, multiply-adds), so that a network whose defaults changed is not taken for the one run before."""
    settings = {k: v for k, v in resolved(cfg).items() if k != "seed"}
    return f"{variant}/seed{seed}/{_digest({**settings, 'network': list(size)})}"


def budget_of(grid, config):
    """What the runs of one comparison share: the resolved settings without the seed and without every key
    some variant of the grid changes (a variant that changes the network's options: model_kwargs whole)."""
    varied = {k for overrides in GRIDS[grid].values() for k in overrides}
    return {k: v for k, v in config.items() if k != "seed" and k not in varied}


def read_results(out):
    """The runs recorded in OUT/results.jsonl, in the order they ended ([] if none), each with its resolved
    settings ("config"); a line that is not a run's record (a file edited by hand: not JSON, not an object, a
    field missing or of the wrong type, a number beyond a float, bytes that are not UTF-8) is skipped with a warning,
    and a key recorded twice counts once; a byte-order mark (an editor's "UTF-8 with BOM") is not part of a line."""
    path = os.path.join(out, RESULTS)
    if not os.path.exists(path):
        return []
    records, bad = {}, []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8-sig"))
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                why = "not JSON text"
            else:
                why = _why_not_a_record(record)
            if why:
                bad.append(f"line {n} ({why})")
            else:
                records.setdefault(record["key"], record)
    for line in bad[:5]:
        print(f"ablate: {path} {line} is not a run's record; skipped", file=sys.stderr)
    if len(bad) > 5:
        print(f"ablate: {path}: {len(bad) - 5} more lines that are not runs' records skipped", file=sys.stderr)
    return list(records.values())


def _text(v):
    """a string"""
    return isinstance(v, str)


def _int(v):
    """an integer"""
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v):
    """a finite number"""
    try:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    except OverflowError:  # an integer beyond a float (JSON's integers have no bound)
        return False


def _fraction(v):
    """a number in [0, 1]"""
    return _number(v) and 0 <= v <= 1


def _short(v):
    """``v`` as repr writes it, cut to 40 characters (an integer of 400 digits, say)."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _why_not_a_record(r):
    """What the report cannot read in ``r`` (a parsed line of results.jsonl), or None; a record written before
    "config" was kept gets it here, from its "settings"."""
    if not isinstance(r, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(r), "number")
        return f"a JSON {kind}, not an object"
    status = r.get("status", "done")
    if status not in ("done", "failed"):
        return f"status {status!r}, not done or failed"
    fields = {"key": _text, "grid": _text, "variant": _text, "seed": _int, "params": _number, "macs": _number,
              **({"test_acc": _fraction, "images_per_s": _number} if status == "done" else {})}
    for name, ok in fields.items():
        if name not in r:
            return f"no {name!r}"
        if not ok(r[name]):
            return f"{name} {_short(r[name])} is not {ok.__doc__}"
    for name, ok in (("machine", _text), ("test_acc_tta", _fraction)):
        if r.get(name) is not None and not ok(r[name]):
            return f"{name} {_short(r[name])} is not {ok.__doc__}"
    if not r.get("config"):
        if not isinstance(r.get("settings"), dict):
            return "neither a 'config' nor a 'settings' object"
        try:
            r["config"] = resolved(r["settings"])
        except (ConfigError, TypeError) as e:
            return f"its settings do not resolve: {e}"
    if not isinstance(r["config"], dict) or not _text(r["config"].get("dataset", "")):
        return "its config is not an object naming its dataset"
    return None


def append_result(out, record):
    """Add one run to results.jsonl atomically: the old lines and the new one go to a temporary file that
    replaces the old file in one rename (atomic_write), so the file always holds whole lines only.  The old
    bytes are kept as they are (a line edited by hand too), ended by a newline where a hand edit left none."""
    path = os.path.join(out, RESULTS)
    old = b""
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
    if old and not old.endswith(b"\n"):
        old += b"\n"

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(old + (json.dumps(record, sort_keys=True) + "\n").encode())

    atomic_write(path, write, ".jsonl")


def settings(args, overrides, seed):
    """The trainer settings of one run: the recipe, then the grid's budget, then the variant's change; a
    variant's network options change the recipe's one key at a time (under airbench93_sk, ``softmax`` is its
    network with softmax gates, its first block still plain)."""
    cfg = {"recipe": args.recipe, "seed": seed, "data_dir": args.data_dir, "device": args.device,
           "processes": args.processes, "download": False,
           "test_every": 0}  # tested after the last epoch only: its numbers are the ones compared, and the same
    for key in ("model", "epochs", "warmup", "whiten_bias_epochs", "batch_size", "lr", "limit_train",
                "train_per_class", "limit_test"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    if args.tta is False:  # the test set once per run, not six times: the plain accuracy is the one compared
        cfg.update(tta=False, tta_translate=False)
    if "model_kwargs" in overrides:
        overrides = {**overrides, "model_kwargs": {**settings_of(cfg)["model_kwargs"], **overrides["model_kwargs"]}}
    cfg.update(overrides)
    return cfg


class UsageError(Exception):
    """A grid that cannot run as asked: one line for the user, exit code 2."""


class Stopped(Exception):
    """The runner stopped midway (a Ctrl-C or SIGTERM, a data-parallel process that died): one line for the
    user, who continues by running the same command again; ``code``: the exit code."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def plan(args):
    """Every (variant, seed) of the grid with its settings, checked before anything trains: the settings by
    the trainer's own checks, the network by building it once per variant (for its size as well)."""
    grid, runs, sizes = GRIDS[args.grid], [], {}
    for seed in args.seeds:  # seed by seed: a grid stopped anywhere holds about as many runs of each variant
        for name in args.variants or list(grid):
            cfg = settings(args, grid[name], seed)
            try:
                full, _, _ = resolve({**cfg, "out": os.path.join(args.out, "runs", "x")})
            except ConfigError as e:
                raise UsageError(f"variant {name}: {e}") from None
            if name not in sizes:
                classes = 100 if full["dataset"] == "cifar100" else 10
                try:
                    net = create(full["model"], num_classes=classes, **full["model_kwargs"])
                except (TypeError, ValueError) as e:
                    raise UsageError(f"variant {name}: {full['model']} cannot be built with "
                                     f"{full['model_kwargs']}: {e}") from None
                info = summary(net, (3, 32, 32))
                sizes[name] = (info.total_params, info.total_macs)
            runs.append((name, seed, cfg, sizes[name]))
    return runs


def machine(device="cpu"):
    """What a run's images/s were measured on: the GPU's name on "cuda"; else the CPU as /proc/cpuinfo names
    it (with AVX-512 or not) and its core count, or the platform's own word where there is no /proc/cpuinfo."""
    import platform
    if device == "cuda":
        from skengine.backend import cupy
        name = cupy().cuda.runtime.getDeviceProperties(cupy().cuda.Device().id)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores".strip()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    avx512 = ", AVX-512" if " avx512f" in info else ""
    return f"{name}{avx512}, {os.cpu_count()} cores"


def _train_seconds(folder):
    """The run's training time over all its sittings (metrics.csv's epoch_time column)."""
    with open(os.path.join(folder, "metrics.csv")) as f:
        return sum(float(row["epoch_time"]) for row in csv.DictReader(f))


def run(args):
    """Train every (variant, seed) of the grid not yet in results.jsonl; one runner per folder at a time."""
    runs = plan(args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"--out {args.out}: another runner is working in this folder") from None
        done = {r["key"] for r in read_results(args.out)}
        for name, seed, cfg, (params, macs) in runs:
            key = run_key(name, seed, cfg, (params, macs))
            if key in done:
                continue
            record = {"key": key, "grid": args.grid, "variant": name, "seed": seed, "settings": cfg,
                      "config": resolved(cfg), "params": params, "macs": macs,
                      "machine": machine(resolve_device(cfg.get("device", "auto")))}
            try:
                record.update(train_one(args, name, seed, cfg, run_folder(args.out, key)))
                append_result(args.out, record)
            except OSError as e:  # a full disk (the trainer's checkpoint, results.jsonl): no mistake in the command
                raise Stopped(f"variant {name} seed {seed}: {' '.join(str(e).split())}", 1) from None
            done.add(key)


def train_one(args, name, seed, cfg, folder):
    """Train one run into ``folder`` (or continue it from its checkpoint there): its result fields for
    results.jsonl, a diverged run's as "failed"."""
    try:
        if os.path.exists(os.path.join(folder, "checkpoint.npz")):  # interrupted before: go on
            print(f"== {name} seed {seed}: continuing {folder}", file=sys.stderr)
            where = {"resume": folder, "device": args.device, "processes": args.processes}
            result = trainer.train({**where, **({"data_dir": args.data_dir} if args.data_dir else {})})
        else:
            print(f"== {name} seed {seed} -> {folder}", file=sys.stderr)
            result = trainer.train({**cfg, "out": folder, "overwrite": True})
    except ConfigError as e:  # what plan() cannot see before training: the data folder, say
        raise UsageError(f"variant {name} seed {seed}: {e}") from None
    except Diverged as e:  # the trainer's own stop (a NaN or climbing loss): recorded, not retried
        print(f"== {name} seed {seed}: failed, recorded ({e})", file=sys.stderr)
        return {"status": "failed", "reason": str(e)}
    except Interrupted as e:  # a Ctrl-C or SIGTERM: the checkpoint is written, the next start continues it
        raise Stopped(f"variant {name} seed {seed} interrupted at epoch {e.epoch} step {e.step}", 130) from None
    except WorkerError as e:  # a process died: the run's last checkpoint is kept, the next start continues it
        raise Stopped(f"variant {name} seed {seed}: training stopped: {e}", 1) from None
    return {"status": "done", "test_acc": result["test_acc"], "test_acc_tta": result.get("test_acc_tta"),
            "images_per_s": result["images_per_s"], "train_s": _train_seconds(folder)}


# -- the report -------------------------------------------------------------------------------------------

def _finished(runs):
    """The runs that ended with numbers (not recorded as failed), by seed."""
    return sorted((r for r in runs if r.get("status", "done") == "done"), key=lambda r: r["seed"])


def _groups(records):
    """{budget (JSON): {variant: [records]}}, budgets in the order first recorded; a key recorded twice counts
    once, and records of grids or variants this file no longer knows are skipped with a warning."""
    groups, seen = {}, set()
    for r in records:
        if r["key"] in seen:  # the same run recorded twice counts once
            continue
        seen.add(r["key"])
        if r["grid"] not in GRIDS or r["variant"] not in GRIDS[r["grid"]]:
            print(f"ablate: {r['key']}: grid {r['grid']!r} has no variant {r['variant']!r} now; skipped",
                  file=sys.stderr)
            continue
        budget = {"grid": r["grid"], **budget_of(r["grid"], r["config"])}
        groups.setdefault(json.dumps(budget, sort_keys=True, default=str), {}).setdefault(r["variant"], []).append(r)
    return groups


def summarise(records):
    """One row per (budget, variant), budgets in the order first recorded and variants in the grid's order:
    the accuracies, their difference to the grid's first variant (its reference) with 95% intervals, and the
    network's size and speed.  Failed runs are counted apart; records of grids or variants this file no
    longer knows are skipped with a warning."""
    rows = []
    for number, (bkey, variants) in enumerate(_groups(records).items(), 1):
        grid = json.loads(bkey)["grid"]
        reference = next(iter(GRIDS[grid]))
        ref_runs = _finished(variants.get(reference, []))
        base, base_tta = [100 * r["test_acc"] for r in ref_runs], _tta(ref_runs)
        for name in (v for v in GRIDS[grid] if v in variants):
            runs = sorted(variants[name], key=lambda r: r["seed"])
            good = _finished(runs)
            accs = [100 * r["test_acc"] for r in good]
            tta = _tta(good)
            row = {"budget_no": number, "budget": bkey, "grid": grid, "variant": name, "reference": reference,
                   "runs": len(accs), "failed": len(runs) - len(good), "seeds": [r["seed"] for r in good],
                   "acc_mean": float(np.mean(accs)) if accs else None,
                   "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None, "accs": accs,
                   "tta_mean": float(np.mean(tta)) if tta else None,
                   "tta_std": float(np.std(tta, ddof=1)) if len(tta) > 1 else None, "tta_accs": tta,
                   "params": runs[0]["params"], "macs": runs[0]["macs"],
                   "images_per_s": float(np.mean([r["images_per_s"] for r in good])) if good else None,
                   "machines": sorted({r.get("machine", "?") for r in good}),
                   "diff": None, "welch": None, "bootstrap": None,
                   "tta_diff": None, "tta_welch": None, "tta_bootstrap": None}
            if name != reference:
                for prefix, ref, these in (("", base, accs), ("tta_", base_tta, tta)):
                    if len(these) > 1 and len(ref) > 1:
                        diff, half, _ = welch_ci(ref, these)
                        row.update({f"{prefix}diff": diff, f"{prefix}welch": (diff - half, diff + half)})
                        if min(len(ref), len(these)) >= BOOTSTRAP_MIN:  # fewer: too few distinct resamples
                            row[f"{prefix}bootstrap"] = bootstrap_ci(ref, these)
            rows.append(row)
    return rows


def _tta(runs):
    """The runs' accuracies with TTA (%), or [] unless every run has one (a budget without TTA)."""
    tta = [100 * r["test_acc_tta"] for r in runs if r.get("test_acc_tta") is not None]
    return tta if len(tta) == len(runs) else []


GATE_STATS = (("weight on the smallest kernel", "small"), ("weight on the largest kernel", "large"),
              ("dynamic", "dynamic"), ("dominant", "dominant"), ("saturated", "saturated"),
              ("corr(path 1, path 2)", "corr"), ("size effect", "size_effect"))


def run_folder(out, key):
    return os.path.join(out, "runs", key.replace("/", "-"))


def gate_statistics(out, record, images, limit):
    """sk_attention's analysis of one finished run's final network on ``images`` (its first ``limit`` test
    images), per SK layer: the mean weight on the first path (the smallest kernel) and on the last (the
    largest; with two paths, each path: sigmoid gates need not sum to 1), the gate statistics, and
    the size effect (the shift of that weight from s=1 to s=2 by enlargement minus the shift by blur alone).
    Kept in the run's folder (attention_LIMIT.json): a second report reads it instead of computing it again
    (unless it is not what this writes: then it is made again).
    None (kept as well) where the run's network has no SK layer (the blocks grid's se and none).  A ValueError
    (load_run's ConfigError among them) where the network cannot be read or computes NaN or inf."""
    import sk_attention
    folder = run_folder(out, record["key"])
    cached = os.path.join(folder, f"attention_{limit}.json")
    if os.path.exists(cached):
        with open(cached, "rb") as f:
            try:
                kept = json.loads(f.read().decode("utf-8"))
            except (ValueError, RecursionError):
                kept = False
        if kept is None or _gate_table(kept):  # else a damaged answer (a hand edit, say): made again
            return kept
    model, cfg, _, _ = load_run(os.path.join(folder, "checkpoint.npz"))
    stats = None
    if any(isinstance(m, SKConv) for m in model.modules()):
        result = sk_attention.analyse(model, images, None, [], *CIFAR_MEAN_STD[cfg["dataset"]])
        stats = {}
        for layer in result["layers"]:
            big, blurred = (np.asarray(result[k][layer])[:, -1] for k in ("by_scale", "by_blur"))
            g = result["gates"][layer]
            stats[layer] = {"small": g["mean"][0], "large": g["mean"][-1], "dynamic": g["dynamic"],
                            "dominant": g["dominant"], "saturated": g["saturated"], "corr": g["corr"],
                            "size_effect": float((big[-1] - big[0]) - (blurred[-1] - blurred[0]))}
        if not _gate_table(stats):  # finite weights whose network computes NaN or inf: nothing to keep
            raise ValueError("its gate statistics hold NaN or inf")

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(stats, f)

    atomic_write(cached, write, ".json")
    return stats


def _gate_table(kept):
    """Whether ``kept`` is a table gate_statistics writes: {SK layer: {statistic: a number or None}}."""
    return isinstance(kept, dict) and bool(kept) and all(
        isinstance(st, dict) and all(k in st and (st[k] is None or _number(st[k])) for _, k in GATE_STATS)
        for st in kept.values())


def _has_network(out, record, limit):
    """Whether a finished run's final network (or its kept gate analysis) is in its folder under ``out``."""
    folder = run_folder(out, record["key"])
    return any(os.path.exists(os.path.join(folder, f)) for f in (f"attention_{limit}.json", "checkpoint.npz"))


def gate_report(args, records):
    """What the gates of every finished run do, per variant and SK layer: the mean over the seeds of each
    statistic of gate_statistics with its 95% t interval (half-width), on the first ``args.gates`` test images
    (all of them where there are fewer); gates.md and gates.csv in --out.  Runs whose folder is not here (a
    results file copied without its runs/) are named in gates.md and left out; so are runs whose network cannot
    be read or computes NaN or inf, each named with why in a warning."""
    lines, table, test_images, gone, broken = [], [], {}, [], []
    for number, (bkey, variants) in enumerate(_groups(records).items(), 1):
        head = False
        for name in (v for v in GRIDS[json.loads(bkey)["grid"]] if v in variants):
            if args.variants and name not in args.variants:
                continue
            good = _finished(variants[name])
            if not good:
                continue
            dataset = good[0]["config"].get("dataset", "cifar10")
            if dataset not in test_images:  # once per dataset, not per variant and budget
                test_images[dataset] = load_cifar(args.data_dir, dataset, train=False)[0][:args.gates]
            images = test_images[dataset]
            here = [r for r in good if _has_network(args.out, r, len(images))]
            if len(here) < len(good):
                seeds = ", ".join(str(r["seed"]) for r in good if r not in here)
                gone.append(f"{name} of budget {number} (seeds {seeds})")
            per_run, failed = [], []
            for r in here:
                try:
                    per_run.append((r["seed"], gate_statistics(args.out, r, images, len(images))))
                except ValueError as e:  # one broken run does not take the others' gates with it
                    failed.append(str(r["seed"]))
                    print(f"ablate: --gates: {name} seed {r['seed']} of budget {number} "
                          f"({run_folder(args.out, r['key'])}) left out: {e}", file=sys.stderr)
            if failed:
                broken.append(f"{name} of budget {number} (seeds {', '.join(failed)})")
            per_run = [(seed, st) for seed, st in per_run if st]
            if not per_run:
                continue
            if not head:
                lines += [f"Budget {number}: gates on the first {len(images)} test images of each run's final "
                          "network; mean over seeds +- the half-width of its 95% t interval", "",
                          "| variant | SK layer | seeds | " + " | ".join(t for t, _ in GATE_STATS) + " |",
                          "| --- | --- | ---: |" + " ---: |" * len(GATE_STATS)]
                head = True
            for layer in per_run[0][1]:
                cells, row = [], {"budget_no": number, "variant": name, "layer": layer, "seeds": len(per_run)}
                for _, k in GATE_STATS:
                    v = [st[layer][k] for _, st in per_run if st[layer][k] is not None]
                    mean = float(np.mean(v)) if v else None
                    half = t_half_width(v)
                    row.update({k: mean, f"{k}_ci": half})
                    cells.append(_fmt(mean, ".3f") + (f" +- {half:.3f}" if half is not None else ""))
                table.append(row)
                lines.append(f"| {name} | {layer} | {len(per_run)} | " + " | ".join(cells) + " |")
        lines.append("")
    csv_path = os.path.join(args.out, "gates.csv")
    if table:
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    else:  # nothing to show: no gates.csv of an earlier report is left beside it
        lines = ["No finished run" + (f" of {', '.join(args.variants)}" if args.variants else "")
                 + (" here" if gone or broken else "") + " has an SK layer: no gates to show.", ""]
        if os.path.exists(csv_path):
            os.remove(csv_path)
    if gone:  # a results file copied without its run folders: the runs still count in the accuracy table
        lines.append(f"Left out, their networks are not in {os.path.join(args.out, 'runs')}: {', '.join(gone)}.")
        lines.append("")
    if broken:
        lines += [f"Left out, their networks cannot be read or compute NaN or inf: {', '.join(broken)}.", ""]
    text = "\n".join(lines)
    with open(os.path.join(args.out, "gates.md"), "w") as f:
        f.write(text)
    return table


def _fmt(value, spec):
    return "" if value is None else format(value + 0.0, spec)  # + 0.0: -0.0 shows as 0.00


def write(rows, out):
    """ablation.md (the table), ablation.csv and ablation.png (with matplotlib) in ``out``; returns the table."""
    intervals = ("welch", "bootstrap", "tta_welch", "tta_bootstrap")
    keys = ["budget_no", "grid", "variant", "reference", "runs", "failed", "acc_mean", "acc_std", "tta_mean",
            "tta_std", "diff", "welch_lo", "welch_hi", "bootstrap_lo", "bootstrap_hi", "tta_diff", "tta_welch_lo",
            "tta_welch_hi", "tta_bootstrap_lo", "tta_bootstrap_hi", "params", "macs", "images_per_s", "seeds", "accs",
            "tta_accs", "budget"]
    with open(os.path.join(out, "ablation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            ci = {f"{name}_{end}": float(r[name][i]) if r[name] else None
                  for name in intervals for i, end in enumerate(("lo", "hi"))}
            w.writerow({**{k: r[k] for k in keys if k in r}, **ci, "seeds": " ".join(map(str, r["seeds"])),
                        "accs": " ".join(f"{a:.2f}" for a in r["accs"]),
                        "tta_accs": " ".join(f"{a:.2f}" for a in r["tta_accs"])})
    lines = []
    for number in dict.fromkeys(r["budget_no"] for r in rows):
        these = [r for r in rows if r["budget_no"] == number]
        ref = these[0]["reference"]
        lines += [f"Budget {number}: {these[0]['budget']}", "",
                  f"| variant | runs | test acc % (mean +- std) | diff to {ref} | 95% CI (Welch t) | "
                  f"95% CI (bootstrap, >= {BOOTSTRAP_MIN} runs each) | with TTA | TTA: diff, 95% CI (Welch t; "
                  f"bootstrap) | params | MACs / image | train img/s |",
                  "| --- | ---: | --- | ---: | --- | --- | --- | --- | ---: | ---: | ---: |"]
        for r in these:
            ci = (lambda c: f"[{c[0]:+.2f}, {c[1]:+.2f}]" if c else "")  # noqa: E731
            runs = f"{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
            acc, tta = (_fmt(r[f"{p}mean"], ".2f") + (f" +- {r[f'{p}std']:.2f}" if r[f"{p}std"] is not None else "")
                        for p in ("acc_", "tta_"))
            tta_diff = " ".join(x for x in (_fmt(r["tta_diff"], "+.2f"), ci(r["tta_welch"])) if x) + (
                f"; {ci(r['tta_bootstrap'])}" if r["tta_bootstrap"] else "")
            lines.append(f"| {r['variant']} | {runs} | {acc} | {_fmt(r['diff'], '+.2f')} | {ci(r['welch'])} | "
                         f"{ci(r['bootstrap'])} | {tta} | {tta_diff} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | "
                         f"{_fmt(r['images_per_s'], '.0f')} |")
        machines = sorted({m for r in these for m in r["machines"]})
        lines += ["", f"Training img/s measured on: {'; '.join(machines)}" + (" (compare them within one machine)"
                                                                              if len(machines) > 1 else ""), ""
                  ] if machines else [""]
    table = "\n".join(lines)
    with open(os.path.join(out, "ablation.md"), "w") as f:
        f.write(table)
    plt = pyplot("ablation.png")
    shown = [r for r in rows if r["runs"]]
    if plt is not None and shown:
        several = len({r["budget_no"] for r in shown}) > 1
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(shown)), 4))
        for i, r in enumerate(shown):
            n = r["runs"]
            ax.errorbar(i, r["acc_mean"], yerr=t_half_width(r["accs"]) or 0.0, fmt="o", capsize=5,
                        color=f"C{(r['budget_no'] - 1) % 10}")
            ax.plot([i] * n, r["accs"], ".", color="0.5", alpha=0.6)
        labels = [(f"{r['budget_no']}: " if several else "") + r["variant"] for r in shown]
        ax.set_xticks(range(len(shown)), labels, rotation=20)
        ax.set(ylabel="test accuracy (%)", title="mean with its 95% interval (t); dots: one seed each"
               + ("; numbers: budgets" if several else ""))
        fig.tight_layout()
        fig.savefig(os.path.join(out, "ablation.png"), dpi=100)
        plt.close(fig)
    return table


def _seeds(text):
    """'0-9' or '3' -> a list of ints."""
    lo, _, hi = text.partition("-")
    try:
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are ints >= 0 or ranges like 0-9, got {text!r}") from None
    if hi < lo:
        raise argparse.ArgumentTypeError(f"a range of seeds runs upward (like 0-9), got {text!r}")
    if hi - lo >= MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS:,} seeds a range, got {text!r} ({hi - lo + 1:,})")
    return list(range(lo, hi + 1))


def _processes(text):
    """'auto' or a number of processes (the trainer checks it)."""
    try:
        return text if text == "auto" else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'auto' or a number of processes, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a user's mistake: one line on stderr, exit code 2 (as skengine-train's)
        self.exit(2, f"{self.prog}: error: {message}\n")

    def os_error(self, what, e):  # one line too; a full disk is no mistake in the command: exit code 1
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            self.exit(1, f"{self.prog}: {what}: {' '.join(str(e).split())}\n")
        self.error(f"{what}: {e}")


def main(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--grid", choices=list(GRIDS), default="gates")
    p.add_argument("--variants", nargs="+", help="a subset of the grid's variants (default: all)")
    p.add_argument("--seeds", nargs="+", type=_seeds, default=[[0, 1, 2, 3, 4]], help="ints or ranges (default 0-4)")
    p.add_argument("--recipe", default="fast", choices=[*RECIPES, "none"], help="none: the trainer's plain settings "
                   "(sknet_cifar_small, one-cycle SGD)")
    p.add_argument("--model", help="another network than the recipe's")
    p.add_argument("--epochs", type=int)
    p.add_argument("--warmup", type=float, help="fraction of the run's steps the schedule warms up over")
    p.add_argument("--whiten-bias-epochs", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate per 1,024 images")
    p.add_argument("--limit-train", type=int)
    p.add_argument("--train-per-class", type=int, help="train on the first N images of each class (a fixed "
                   "class-balanced subset)")
    p.add_argument("--limit-test", type=int)
    p.add_argument("--no-tta", dest="tta", action="store_false", default=None,
                   help="no test-time augmentation at the end of each run (its six passes over the test set)")
    p.add_argument("--device", default="auto")
    p.add_argument("--processes", default="auto", type=_processes)
    p.add_argument("--out", default="runs/ablate")
    p.add_argument("--report", action="store_true", help="only remake the table, CSV and plot from results.jsonl")
    p.add_argument("--gates", type=int, metavar="N", help="also what the gates of every finished run (of --variants)"
                   " do, on the first N test images: gates.md and gates.csv (sk_attention's analysis, kept per run)")
    args = p.parse_args(argv)
    args.seeds = sorted({s for group in args.seeds for s in group})
    args.recipe = None if args.recipe == "none" else args.recipe
    unknown = [v for v in args.variants or [] if v not in GRIDS[args.grid]]
    if unknown:
        p.error(f"--variants: {', '.join(unknown)} not in grid {args.grid} ({', '.join(GRIDS[args.grid])})")
    if args.gates is not None and args.gates < 1:
        p.error(f"--gates must be >= 1 images, got {args.gates}")
    path = os.path.join(args.out, RESULTS)
    command = shlex.join(["python", os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)])
    kept = f"the runs recorded in {path} and the checkpoints written are kept; continue with: {command}"
    try:
        if not args.report:
            run(args)
        elif not os.path.exists(path):
            raise UsageError(f"--report: no {RESULTS} in {args.out}")
        records = read_results(args.out)
        rows = summarise(records)
        if not rows:
            raise UsageError(f"--report: no runs in {path}")
        print(write(rows, args.out))
    except UsageError as e:
        p.error(str(e))
    except OSError as e:  # --out not a folder one can write, results.jsonl a folder, a full disk
        p.os_error(f"--out {args.out}", e)
    except Stopped as e:
        print(f"{p.prog}: {e}; {kept}", file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:  # a second Ctrl-C (the trainer's handler takes the first), or one before training
        print(f"{p.prog}: aborted; {kept}", file=sys.stderr)
        sys.exit(130)
    if args.gates:
        try:
            gate_report(args, records)
        except OSError as e:  # no data folder, a full disk
            p.os_error("--gates", e)
        except (ValueError, KeyError) as e:  # data that is not CIFAR's
            p.error(f"--gates: {e!r}" if isinstance(e, KeyError) else f"--gates: {e}")
        with open(os.path.join(args.out, "gates.md")) as f:
            print(f.read())
    return rows


if __name__ == "__main__":
    main()
