"""One training run: data, model, optimizer and schedule set up from a config, the epochs on every
data-parallel rank, checkpoints and resume.  The command line is ``skengine/train.py``; what a run
reports (progress, metrics.csv, curves, confusion table) is ``report.py``; how it starts on the ranks of an
MPI launcher is ``launch.py``; the fast recipe's pieces are ``recipe.py``."""
import contextlib
import functools
import json
import multiprocessing
import os
import pickle
import shlex
import shutil
import signal
import sys
import time
import traceback

import numpy as np

from .. import functional as F
from .. import random as sk_random
from ..autograd import Tensor
from ..backend import array_module, resolve_device
from ..data import CIFAR_MEAN_STD, DataLoader, class_names, dataset_root, load_cifar
from ..distributed import (
    ProcessGroup,
    average_gradients,
    broadcast_parameters,
    float_buffers,
    launched_rank,
    launched_size,
    vector_size,
)
from ..models import create
from ..optim import SGD, AdamW, LambdaLR, Lookahead, ModelEMA, OneCycleLR, StepLR, WarmupCosineLR
from ..parallel import get_num_threads, set_num_threads
from ..serialization import atomic_write, remove_stale_temporaries, save
from . import launch
from .config import RUN_FILES, ConfigError, checkpoint_path, resumes_in
from .evaluation import evaluate, reduce_size
from .recipe import fit_whitening, lookahead_alpha, param_groups
from .report import Progress, confusion_table, write_curves, write_metrics

STEP_TOTALS = ("loss_sum", "correct", "bad", "stopping")  # what each step's all-reduce sums besides gradients


class StopRequested:
    """Turn the first Ctrl-C, or SIGTERM (what Open MPI's mpirun and Slurm send on Ctrl-C, scancel or a time
    limit), into a flag checked between steps (the second one kills); only ``rank`` 0 says so."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, rank=0):
        self.flag, self.rank = False, rank

    def __enter__(self):
        self.old = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def _handle(self, signum, _frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        if self.rank == 0:
            what = "" if signum == signal.SIGINT else f"{signal.Signals(signum).name}: "
            print(f"\n{what}stopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    def __exit__(self, *exc):
        for signum, old in self.old.items():
            signal.signal(signum, old)


def load_data(cfg):
    """(train images, labels), (test images, labels), class names; the data is downloaded if absent unless
    --no-download.  Missing data, a failed download or a damaged batch file is a ConfigError saying so."""
    try:
        root = dataset_root(cfg["data_dir"], cfg["dataset"], cfg["download"])
        train, test = (load_cifar(root, cfg["dataset"], train=split) for split in (True, False))
    except (FileNotFoundError, RuntimeError, pickle.UnpicklingError) as e:  # RuntimeError: offline download
        raise ConfigError(str(e)) from None
    if cfg["limit_train"]:
        train = tuple(a[:cfg["limit_train"]] for a in train)
    if cfg["limit_test"]:
        test = tuple(a[:cfg["limit_test"]] for a in test)
    return train, test, class_names(root, cfg["dataset"])


def build_schedule(cfg, opt, steps_per_epoch):
    total = cfg["epochs"] * steps_per_epoch
    if cfg["schedule"] == "onecycle":
        if total < 3:  # no room for a warm-up step and a decay step: a constant learning rate
            return LambdaLR(opt, lambda step: 1.0)
        # a warm-up of at least one whole step (torch's OneCycleLR divides by zero where pct_start*total is 1)
        pct_start = max(0.25, 2 / total)
        return OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=pct_start,
                          cycle_momentum=False)
    if cfg["schedule"] == "linear":  # airbench's: from 0.2 up to 1 over the warm-up, then down to 0 at the end
        warm = min(total, max(1, round(cfg["warmup_epochs"] * steps_per_epoch)))
        return LambdaLR(opt, LinearWarmupDecay(warm, total))
    if cfg["schedule"] == "cosine":
        return WarmupCosineLR(opt, warmup_steps=int(cfg["warmup_epochs"] * steps_per_epoch), total_steps=total)
    return StepLR(opt, step_size=max(1, total // 3), gamma=0.1)


class LinearWarmupDecay:
    """The factor of the "linear" schedule at a step: 0.2 -> 1 over ``warm`` steps, then 1 -> 0 at ``total``
    (a callable object, so that the scheduler's state_dict keeps it)."""

    def __init__(self, warm, total):
        self.warm, self.total = warm, total

    def __call__(self, step):
        return float(np.interp(step, [0, self.warm, max(self.total, self.warm + 1)], [0.2, 1.0, 0.0]))


def _int_keys(state):
    return {int(k): v for k, v in state.items()}


def start_folder(cfg, config):
    """Make the run's folder: remove what a kill during a save left there, and, with --overwrite, the files
    of the run it held (so that nothing of it can be mistaken for this run's); copy the best model of a run
    resumed into a new folder; write config.json."""
    out = cfg["out"]
    try:
        os.makedirs(out, exist_ok=True)
        remove_stale_temporaries(out)
        resumed_from = cfg["resume"] and os.path.dirname(os.path.abspath(checkpoint_path(cfg["resume"])))
        moved = bool(resumed_from) and not os.path.samefile(resumed_from, out)
        if cfg["overwrite"] and not resumes_in(cfg["resume"], out):  # replacing whatever run out holds
            for name in RUN_FILES + ("confusion.txt", "curves.png"):
                if os.path.isfile(os.path.join(out, name)):
                    os.remove(os.path.join(out, name))
        if moved and os.path.isfile(os.path.join(resumed_from, "best.npz")):
            shutil.copyfile(os.path.join(resumed_from, "best.npz"), os.path.join(out, "best.npz"))
        text = json.dumps(config, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v))

        def write(tmp):
            with open(tmp, "w") as f:
                f.write(text)
        atomic_write(os.path.join(out, "config.json"), write, ".json")
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write the run there ({e})") from None


def train(cfg):
    """Run training as configured (a dict with some of DEFAULTS' keys; the others come from the recipe, the
    fast one unless ``recipe`` is given or None, then from DEFAULTS); return the last epoch's metrics (with
    "interrupted": (epoch, step) if a Ctrl-C stopped it).  Every setting is checked
    (ConfigError) and the data and the model are set up before anything is written.

    Under an MPI launcher (or with backend "mpi") this runs on every rank: rank 0 reads the settings and the
    checkpoint and hands them to the others; a setting that fails on any rank stops every rank (only the
    lowest failing rank reports it); an error or a second Ctrl-C on one rank aborts the whole job (MPI_Abort)
    with a message naming that rank."""
    group = launch.mpi_group(cfg.get("backend", "auto"))
    if group is None:
        try:
            return _train(cfg, None)
        except ConfigError as e:  # under a launcher without MPI (--backend local, refused): its rank 0 alone
            if launched_rank() == 0:  # says so, unless the launcher does not say its size (PMIX_RANK alone)
                raise
            if launched_size() == 1:
                raise ConfigError(f"rank {launched_rank()}: {e}") from None
            raise SystemExit(2) from None
    threads = get_num_threads()
    try:
        return _train(cfg, group)
    except (ConfigError, SystemExit):  # reached on every rank together (_together, a collective NaN stop)
        raise
    except BaseException as e:  # this rank alone: the others would wait for it in their next collective
        if group.world_size == 1:
            raise
        traceback.print_exc()
        what = "was interrupted" if isinstance(e, KeyboardInterrupt) else f"failed ({type(e).__name__}: {e})"
        print(f"skengine-train: rank {group.rank} of {group.world_size} {what}; aborting every rank",
              file=sys.stderr)
        group.abort(130 if isinstance(e, KeyboardInterrupt) else 1)
    finally:
        set_num_threads(threads)


def _train(cfg, mpi):
    cfg, resume, notes = launch.resolve_on_rank_0(cfg, mpi)
    rank = mpi.rank if mpi else 0
    say = functools.partial(print, file=sys.stderr) if rank == 0 else lambda *a, **k: None
    for note in notes:
        say(f"--resume: {note}")
    device = resolve_device(cfg["device"])
    if mpi:  # ranks sharing a host share its cores: a one-thread BLAS each on 2 ranks of 2 cores
        set_num_threads(max(1, get_num_threads() // mpi.local_size))
        if device == "cuda":
            launch.use_gpu(mpi.local_rank)

    def setup():
        if mpi:
            world = cfg["processes"] = launch.mpi_world(mpi, cfg, resume)
        else:
            world = cfg["processes"] = resolve_processes(cfg["processes"], device, cfg["batch_size"])
        sk_random.manual_seed(cfg["seed"])
        data = _load_data_in_turn(cfg, mpi)
        return (world,) + data

    world, (x_train, y_train), (x_test, y_test), names = launch.together(mpi, setup)
    if mpi and mpi.world_size > 1:  # each host reads its own --data-dir or cache: the same data on every rank?
        launch.together(mpi, lambda: launch.same_data_as_rank_0(mpi, x_train, y_train, x_test, names))
    xp = array_module(device)
    mean, std = CIFAR_MEAN_STD[cfg["dataset"]]
    # BatchNorm needs two images per process: a last batch with fewer is dropped
    short = 0 < len(x_train) % cfg["batch_size"] < 2 * world
    if short:
        say(f"the last batch of each epoch ({len(x_train) % cfg['batch_size']} images) is dropped: "
            f"BatchNorm needs at least 2 per process")
    loader = DataLoader(x_train, y_train, cfg["batch_size"], shuffle=True, augment=True, seed=cfg["seed"],
                        drop_last=short, mean=mean, std=std, cutout=cfg["cutout"], xp=xp, pad=cfg["crop_pad"],
                        flip=cfg["flip"], pad_mode=cfg["pad_mode"])
    test_loader = DataLoader(x_test, y_test, 500, mean=mean, std=std, xp=xp)

    def build():
        if len(loader) == 0:
            raise ConfigError(f"no training step: {len(x_train)} training images make no batch of --batch-size "
                              f"{cfg['batch_size']} with at least 2 images per process")
        try:
            model = create(cfg["model"], num_classes=len(names), **cfg["model_kwargs"]).to(device)
        except (TypeError, ValueError) as e:
            kwargs = json.dumps(cfg["model_kwargs"], default=str)
            raise ConfigError(f"--model {cfg['model']} --model-kwargs {kwargs}: {e}") from None
        fit_whitening(model, cfg, x_train, mean, std)
        return model

    model = launch.together(mpi, build)
    if mpi:  # replicas built apart (other hosts, other library versions) start from rank 0's weights
        broadcast_parameters(mpi, list(model.parameters()) + float_buffers(model))
    groups, whiten_group = param_groups(model, cfg)
    if cfg["optimizer"] == "sgd":
        opt = SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["momentum"] > 0)
    else:
        opt = AdamW(groups, lr=cfg["lr"])
    sched = build_schedule(cfg, opt, len(loader))
    ema = ModelEMA(model, decay=cfg["ema"]) if cfg["ema"] else None

    run = Run(cfg, model, opt, sched, loader, test_loader, ema, len(names),
              blas_threads=get_num_threads() if mpi else None, whiten_group=whiten_group)
    if resume is not None:
        def restore():
            try:
                run.restore(resume)
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise ConfigError(f"--resume {cfg['resume']}: the checkpoint does not fit this run ({e})") from None
        launch.together(mpi, restore)
        say(f"resumed from {cfg['resume']} at epoch {run.start_epoch}")
        saved_threads = resume.get("blas_threads")
        if saved_threads is not None and saved_threads != run.blas_threads:
            say(f"warning: the run was checkpointed with {saved_threads} BLAS threads and continues with "
                f"{run.blas_threads}: it will not continue bit for bit (OPENBLAS_NUM_THREADS={saved_threads} "
                f"restores that)")

    out = cfg["out"]
    launch.together(mpi, lambda: rank == 0 and start_folder(cfg, {**cfg, "resolved_device": device}))
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{cfg['model']}: {n_params:,} parameters, {len(x_train)} training images, device {device}"
        + (f", {world} MPI ranks" if mpi and world > 1 else f", {world} data-parallel processes" if world > 1 else ""))

    if run.start_epoch > cfg["epochs"]:  # nothing left to train: report the finished run
        result = run.history[-1] if run.history else {}
        if mpi:
            test_loader.set_shard(mpi.rank, mpi.world_size)
        final = _test(model, ema, test_loader, cfg, cfg["tta"], mpi, len(names))
    elif mpi:
        with StopRequested(mpi.rank) as stop:  # the launcher passes a Ctrl-C (or SIGTERM) to every rank
            result, final = run.fit(mpi, stop)
    else:
        size = max(vector_size(model, len(STEP_TOTALS)), reduce_size(len(names)))  # a step's or a test's
        group = ProcessGroup(world, size) if world > 1 else None
        threads = get_num_threads()
        failed = True
        try:
            with StopRequested() as stop:
                if group:
                    group.start(run.worker)
                result, final = run.fit(group, stop)
            failed = False
        finally:
            if group:  # after an error or a second Ctrl-C the workers are killed, not waited for
                group.close(abort=failed)
                set_num_threads(threads)
    if final is None:  # interrupted, with the checkpoint written
        launcher = f"mpiexec -n {world} " if mpi else ""
        say(f"interrupted at epoch {run.interrupted['epoch']} step {run.interrupted['step']}; continue "
            f"with: {launcher}python -m skengine.train --resume {shlex.quote(out)}")
        return {**result, "interrupted": run.interrupted}
    if rank == 0:
        table = confusion_table(final["confusion"], names)
        with open(os.path.join(out, "confusion.txt"), "w") as f:
            f.write(table + "\n")
        say(table)
    return result


def _load_data_in_turn(cfg, mpi):
    """load_data; under MPI the first rank of each host first (it downloads the data if absent), then the
    others, so that ranks sharing a disk do not download it side by side."""
    if mpi is None or mpi.world_size == 1:
        return load_data(cfg)
    data, error = None, None
    if mpi.local_rank == 0:
        try:
            data = load_data(cfg)
        except ConfigError as e:
            error = e
    mpi.barrier()
    if error is not None:
        raise error
    return data if data is not None else load_data(cfg)


def resolve_processes(value, device, batch_size):
    """The number of data-parallel processes: an int, or "auto": on the CPU one per BLAS thread (one per
    core unless OPENBLAS_NUM_THREADS or set_num_threads says otherwise), with at least 64 images per
    process in a batch for BatchNorm's statistics; on CUDA one."""
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    if value == "auto":
        return 1 if device == "cuda" or not can_fork else max(1, min(get_num_threads(), batch_size // 64))
    n = int(value)
    if n < 1:
        raise ValueError(f"--processes must be a positive int or 'auto', got {value!r}")
    if n > 1 and device == "cuda":
        raise ValueError(f"--processes {n}: data-parallel processes are for the CPU; on CUDA use 1")
    if n > 1 and not can_fork:
        raise ValueError(f"--processes {n}: data-parallel processes need fork(), which this system lacks")
    if n > batch_size:
        raise ValueError(f"--processes {n} cannot share batches of --batch-size {batch_size}")
    return n


class Run:
    """The state of one training run, and its epochs on each rank of a data-parallel group.

    Every rank runs ``fit`` over its shard of every batch with an identical replica
    (skengine.distributed); rank 0 alone prints, writes metrics, checkpoints and plots.
    """

    def __init__(self, cfg, model, opt, sched, loader, test_loader, ema, num_classes, blas_threads=None,
                 whiten_group=None):
        self.cfg, self.model, self.opt, self.sched, self.ema = cfg, model, opt, sched, ema
        self.lookahead = Lookahead(model, k=cfg["lookahead"]) if cfg["lookahead"] else None
        self.total_steps = cfg["epochs"] * len(loader)
        # the whitening layer's bias learns for the first whiten_bias_epochs, then its group's lr stays 0
        self.whiten_group, self.whiten_steps = whiten_group, (
            None if whiten_group is None else round(cfg["whiten_bias_epochs"] * len(loader)))
        self._stop_whiten_bias()  # --whiten-bias-epochs 0: not even the first step
        self.loader, self.test_loader, self.num_classes = loader, test_loader, num_classes
        self.start_epoch, self.history, self.best_acc, self.partial = 1, [], -1.0, None
        self.interrupted = None  # {"epoch", "step"} where a Ctrl-C stopped fit
        # BLAS threads of each process while it computes: bit-exact resume needs the same (forked ranks run
        # one each; MPI ranks what train set)
        self.blas_threads = blas_threads or (1 if cfg["processes"] > 1 else get_num_threads())

    def restore(self, state):
        """Continue from a checkpoint (what ``checkpoint`` wrote)."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict({"state": _int_keys(state["optimizer"]["state"]),
                                  "param_groups": state["optimizer"]["param_groups"]})
        self.sched.load_state_dict(state["scheduler"])
        self._stop_whiten_bias()
        self.loader.load_state_dict(state["loader"])
        sk_random.set_state(state["rng"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead:
            self.lookahead.load_state_dict(state["lookahead"])
        self.history, self.best_acc, self.partial = list(state["history"]), float(state["best_acc"]), \
            (state["partial"] or None)
        self.start_epoch = int(state["epoch"]) + (0 if self.partial else 1)

    def checkpoint(self, epoch, partial):
        """All that --resume needs to continue bit for bit (``partial``: the sums of an unfinished epoch)."""
        return {"config": self.cfg, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "loader": self.loader.state_dict(),
                "rng": sk_random.get_state(), "ema": self.ema.state_dict() if self.ema else {}, "epoch": epoch,
                "history": self.history, "best_acc": self.best_acc, "partial": partial,
                "blas_threads": self.blas_threads,
                "lookahead": self.lookahead.state_dict() if self.lookahead else {}}

    def worker(self, group):
        try:
            self.fit(group, stop=None)
        except SystemExit:  # a collective stop (NaN loss): rank 0 reports it
            pass

    def fit(self, group, stop):
        """Train the remaining epochs; return (last epoch's metrics, its test result or None if interrupted)."""
        cfg, model, opt, sched, ema, loader = self.cfg, self.model, self.opt, self.sched, self.ema, self.loader
        rank, world = (group.rank, group.world_size) if group else (0, 1)
        loader.set_shard(rank, world)
        self.test_loader.set_shard(rank, world)
        params, buffers = list(model.parameters()), float_buffers(model)
        out = cfg["out"]
        ckpt_path = os.path.join(out, "checkpoint.npz")
        result, stopping = (self.history[-1] if self.history else {}), False
        for epoch in range(self.start_epoch, cfg["epochs"] + 1):
            model.train()
            sums = self.partial or {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
            self.partial = None
            bar, seen_now = Progress(len(loader), f"epoch {epoch}/{cfg['epochs']}") if rank == 0 else None, 0
            t0 = time.perf_counter() - sums["time"]
            for x, y in loader:
                opt.zero_grad()
                loss_sum, correct, failure = 0.0, 0, None
                if len(y):  # a shard of a short last batch may be empty
                    logits = model(Tensor(x))
                    try:
                        loss = F.cross_entropy(logits, y, label_smoothing=cfg["label_smoothing"])
                    except ValueError as e:
                        failure = e
                    else:
                        loss.backward()
                        loss_sum = loss.item() * len(y)
                        correct = int((logits.data.argmax(axis=1) == y).sum())
                n, bad = len(y), failure is not None
                if group:  # the batch's mean gradient on every rank, and the batch's totals and flags (STEP_TOTALS)
                    n, (loss_sum, correct, bad, stopping) = average_gradients(
                        group, params, buffers, n, (loss_sum, correct, bad, _stop_requested(stop)))
                if bad:
                    kept = (f"the last good checkpoint is {ckpt_path}" if os.path.exists(ckpt_path) else
                            "no checkpoint was written yet")
                    why = failure or "the loss is not finite on another process"
                    raise SystemExit(1 if rank else f"training stopped: {why} at epoch {epoch}, step {loader.batch}; "
                                                    f"{kept}")
                opt.step()
                sched.step()
                self._after_step()
                if ema:
                    ema.update(model)
                sums["loss"] += float(loss_sum)
                sums["correct"] += int(correct)
                sums["seen"] += int(n)
                seen_now += int(n)
                if bar:
                    bar.update(loader.batch, seen_now, loss=sums["loss"] / sums["seen"],
                               acc=sums["correct"] / sums["seen"], lr=sched.get_last_lr()[0])
                if group is None:  # alone, a Ctrl-C during this step stops right after it
                    stopping = _stop_requested(stop)
                if stopping:
                    break
            if self.lookahead and epoch == cfg["epochs"] and loader.batch == len(loader):
                self.lookahead.finish(model)  # the run ends on the slow weights
            sums["time"] = time.perf_counter() - t0
            if stopping and loader.batch < len(loader):
                if rank == 0:
                    save(self.checkpoint(epoch, sums), ckpt_path)
                self.interrupted = {"epoch": epoch, "step": loader.batch}
                return result, None
            # flip TTA costs a second pass: only for the final result, beside the plain numbers of every epoch
            tta = cfg["tta"] and epoch == cfg["epochs"]
            test = _test(model, ema, self.test_loader, cfg, tta, group, self.num_classes)
            plain = {"loss": test["plain_loss"], "acc": test["plain_acc"]} if tta else test
            result = {"epoch": epoch, "train_loss": sums["loss"] / sums["seen"],
                      "train_acc": sums["correct"] / sums["seen"], "test_loss": plain["loss"],
                      "test_acc": plain["acc"], "test_acc_tta": test["acc"] if tta else None,
                      "epoch_time": sums["time"], "images_per_s": sums["seen"] / max(sums["time"], 1e-9),
                      "lr": sched.get_last_lr()[0]}
            if rank == 0:
                self._end_epoch(epoch, result, test, tta, sums)
            stopping = _stop_requested(stop)  # a Ctrl-C during the test pass or the checkpoint stops here
            if group:  # the workers wait here for rank 0's word anyway
                stopping = group.all_reduce([stopping])[0] > 0
            if stopping and epoch < cfg["epochs"]:  # after the last epoch the run is complete anyway
                self.interrupted = {"epoch": epoch, "step": loader.batch}
                return result, None
        return result, test

    def _after_step(self):
        """The fast recipe's per-step work: a Lookahead sync every k steps, and the end of the whitening
        bias's learning."""
        step = self.sched.last_epoch  # steps taken so far
        if self.lookahead:
            self.lookahead.step(self.model, alpha=lookahead_alpha(step, self.total_steps, self.lookahead.k))
        self._stop_whiten_bias()

    def _stop_whiten_bias(self):
        """The whitening bias's group learns for its first whiten_steps steps, then at lr 0 (after every step,
        at the start, and after a restore: the scheduler writes its own lr into every group)."""
        if self.whiten_group is not None and self.sched.last_epoch >= self.whiten_steps:
            self.opt.param_groups[self.whiten_group]["lr"] = 0.0

    def _end_epoch(self, epoch, result, test, tta, sums):
        """Rank 0: report the epoch, append it to metrics.csv, write best.npz, the checkpoint and curves."""
        cfg, out = self.cfg, self.cfg["out"]
        self.history.append(result)
        print(f"epoch {epoch}: train loss {result['train_loss']:.4f} acc {100 * result['train_acc']:.2f}% | "
              f"test loss {result['test_loss']:.4f} acc {100 * result['test_acc']:.2f}%"
              + (f", with {tta_name(cfg)} TTA {100 * test['acc']:.2f}%" if tta else "")
              + f" | {sums['time']:.1f} s, {result['images_per_s']:.0f} img/s", file=sys.stderr)
        write_metrics(os.path.join(out, "metrics.csv"), self.history)
        if result["test_acc"] > self.best_acc:  # the weights that were tested: the EMA's, with --ema
            self.best_acc = result["test_acc"]
            with self.ema.swap(self.model) if self.ema else contextlib.nullcontext():
                save({"config": cfg, "model": self.model.state_dict(), "epoch": epoch,
                      "test_acc": result["test_acc"]}, os.path.join(out, "best.npz"))
        save(self.checkpoint(epoch, {}), os.path.join(out, "checkpoint.npz"))
        write_curves(self.history, os.path.join(out, "curves.png"))


def _stop_requested(stop):
    return bool(stop and stop.flag)  # workers have no StopRequested: rank 0 speaks for them


def tta_name(cfg):
    return "flip + translate" if cfg["tta_translate"] else "flip"


def _test(model, ema, loader, cfg, tta, group=None, num_classes=None):
    kwargs = dict(tta=tta, translate=tta and cfg["tta_translate"], all_reduce=group.all_reduce if group else None,
                  num_classes=num_classes)
    if ema is None:
        return evaluate(model, loader, **kwargs)
    with ema.swap(model):
        return evaluate(model, loader, **kwargs)
