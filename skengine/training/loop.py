"""One training run: data, model, optimizer and schedule set up from its settings, then the epochs on every
data-parallel rank: ``train_step`` (forward, loss, backward, all-reduce, optimizer step) inside a ``Trainer``
that calls the extensions around it (``extensions.py``: the divergence guard, Lookahead, EMA, the test pass,
the report, checkpoints).  The command line is ``skengine/train.py``; a run's settings are ``settings.py`` and
``config.py``; how it starts on the ranks of an MPI launcher is ``launch.py``; the optimizer and schedule are
``recipe.py``."""
import contextlib
import errno
import functools
import json
import multiprocessing
import os
import pickle
import shlex
import shutil
import signal
import socket
import sys
import time
import traceback

import numpy as np

try:
    import fcntl
except ImportError:  # no flock (Windows): --out is not claimed
    fcntl = None

from .. import functional as F
from .. import random as sk_random
from ..autograd import Tensor, no_grad
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
from ..parallel import get_num_threads, set_num_threads
from ..serialization import atomic_write, remove_stale_temporaries, save
from . import launch
from .config import RUN_FILES, check_out, checkpoint_path, resumes_in, step_lr
from .errors import ConfigError, Diverged, Interrupted, TrainingError
from .evaluation import reduce_size
from .extensions import EMA, Checkpoint, DivergenceGuard, LookaheadSync, Report, TestPass
from .recipe import build_optimizer, fit_whitening
from .report import Progress, confusion_table
from .settings import RECIPES

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
    if cfg["train_per_class"]:
        train = per_class(train, cfg["train_per_class"])
    if cfg["limit_test"]:
        test = tuple(a[:cfg["limit_test"]] for a in test)
    return train, test, class_names(root, cfg["dataset"])


def per_class(train, n):
    """The first ``n`` images of each class, in the order the files hold them (a ConfigError if a class has
    fewer)."""
    images, labels = train
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < n:
        short = ", ".join(f"class {c}: {k}" for c, k in zip(classes, counts) if k < n)
        raise ConfigError(f"--train-per-class {n}: the training set has fewer images of some classes ({short})")
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in classes]))
    return images[keep], labels[keep]


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
            for name in RUN_FILES:
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


class FolderClaim:
    """--out held by one run (rank 0) from before its data loads to its end: an exclusive flock on the folder's
    lock file, which names the process holding it; the kernel drops the lock when that process ends, so a killed
    run's is taken over.  A second run into the folder is a ConfigError.  ``release`` removes the lock file, the
    files of a run that failed before it wrote a checkpoint (``written``: it diverged in its first epoch, say) and
    the folders the claim made, if empty: the folder is left as before, for a rerun."""

    LOCK = ".skengine-train.lock"

    def __init__(self, cfg):
        self.out, self.fd, self.written = cfg["out"], None, False
        self.path, self.made, parent = os.path.join(self.out, self.LOCK), [], os.path.abspath(self.out)
        while not os.path.exists(parent):
            self.made.append(parent)
            parent = os.path.dirname(parent)
        try:
            os.makedirs(self.out, exist_ok=True)
            while fcntl is not None and self.fd is None:
                self.fd = self._lock()
            if self.fd is not None:
                os.ftruncate(self.fd, 0)
                os.write(self.fd, f"process {os.getpid()} on {socket.gethostname()}".encode())
            check_out(cfg)  # again, now that no other run can write there: one may have ended since the first check
        except BaseException as e:
            self.release()
            if isinstance(e, OSError):
                raise ConfigError(f"--out {self.out}: cannot write the run there ({e})") from None
            raise

    def _lock(self):
        """The lock file's descriptor, locked; None if the file was removed before it was locked (its holder
        released it: try the next one)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "a process starting"
            os.close(fd)
            raise ConfigError(f"--out {self.out} is in use by another run ({holder}): wait for it to end, or "
                              f"choose another --out") from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
        return None

    def __enter__(self):
        return self

    def __exit__(self, failure, *_):
        self.release(failure is not None)

    def release(self, failed=True):
        if failed and self.written and not os.path.exists(os.path.join(self.out, "checkpoint.npz")):
            for name in RUN_FILES:  # this run's: check_out refused a folder holding one, --overwrite removed them
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.out, name))
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            os.close(self.fd)
            self.fd = None
        for folder in self.made:  # the innermost first
            try:
                os.rmdir(folder)
            except OSError:  # not empty
                break


def train(cfg):
    """Run training as configured (a dict with some of DEFAULTS' keys; the others come from the recipe, the
    one tuned for the model, or the default one if no model is given, unless ``recipe`` is given or None, then
    from DEFAULTS); return the last epoch's metrics.  Every setting is checked and the data and the model are
    set up before anything is written (but the claim of --out: FolderClaim).  Raises ConfigError (a setting that
    cannot work, an --out that another run holds), Diverged (a NaN/inf or climbing loss, or weights that give NaN/inf
    in the test pass), Interrupted (Ctrl-C or SIGTERM, after a checkpoint).

    Under an MPI launcher (or with backend "mpi") this runs on every rank: rank 0 reads the settings and the
    checkpoint and hands them to the others; a setting that fails on any rank stops every rank (only the
    lowest failing rank reports it, the others raise it ``silent``); an error or a second Ctrl-C on one rank
    aborts the whole job (MPI_Abort) with a message naming that rank."""
    group = launch.mpi_group(cfg.get("backend", "auto"))
    if group is None:
        try:
            return _train(cfg, None)
        except ConfigError as e:  # under a launcher without MPI (--backend local, refused): its rank 0 alone
            if launched_rank() == 0:  # says so, unless the launcher does not say its size (PMIX_RANK alone)
                raise
            raise ConfigError(f"rank {launched_rank()}: {e}", silent=launched_size() > 1) from None
    threads = get_num_threads()
    try:
        return _train(cfg, group)
    except TrainingError:  # reached on every rank together (launch.together, a collective stop)
        raise
    except BaseException as e:  # this rank alone: the others would wait for it in their next collective
        if group.world_size == 1:
            raise
        if not (isinstance(e, OSError) and e.errno == errno.ENOSPC):  # a full disk is its one line below
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
    claim = launch.together(mpi, lambda: FolderClaim(cfg) if rank == 0 else None)  # before the data loads
    with claim or contextlib.nullcontext():
        return _run(cfg, resume, notes, mpi, rank, claim)


def _run(cfg, resume, notes, mpi, rank, claim):
    say = functools.partial(print, file=sys.stderr) if rank == 0 else lambda *a, **k: None
    device = resolve_device(cfg["device"])
    if mpi:  # ranks sharing a host share its cores: a one-thread BLAS each on 2 ranks of 2 cores
        set_num_threads(max(1, get_num_threads() // mpi.local_size))
        if device == "cuda":
            launch.use_gpu(mpi.local_rank)

    def setup():
        sk_random.manual_seed(cfg["seed"])
        data = _load_data_in_turn(cfg, mpi)
        images = len(data[0][0])
        if cfg["batch_size"] > images:  # a step of fewer images must not take the lr of a full batch
            if images < 2:
                raise ConfigError(f"{images} training image{'s' if images != 1 else ''}: BatchNorm needs a batch of "
                                  f"at least 2 (give --limit-train 2 or more)")
            notes.append(f"--batch-size {cfg['batch_size']} is more than the {images} training images: batches of "
                         f"{images}, at lr {step_lr({**cfg, 'batch_size': images}):.4g} a step (not "
                         f"{step_lr(cfg):.4g})")  # said with the others once every check has passed
            cfg["batch_size"] = images
        if mpi:
            world = cfg["processes"] = launch.mpi_world(mpi, cfg, resume)
        else:
            world = cfg["processes"] = resolve_processes(cfg["processes"], device, cfg["batch_size"])
        return (world,) + data

    world, (x_train, y_train), (x_test, y_test), names = launch.together(mpi, setup)
    if mpi and mpi.world_size > 1:  # each host reads its own --data-dir or cache: the same data on every rank?
        launch.together(mpi, lambda: launch.same_data_as_rank_0(mpi, x_train, y_train, x_test, names, y_test))
    xp = array_module(device)
    mean, std = CIFAR_MEAN_STD[cfg["dataset"]]
    # BatchNorm needs two images per process: a last batch with fewer is dropped
    short = 0 < len(x_train) % cfg["batch_size"] < 2 * world
    if short:
        say(f"the last batch of each epoch ({len(x_train) % cfg['batch_size']} images) is dropped: "
            f"BatchNorm needs at least 2 per process")
    loader = DataLoader(x_train, y_train, cfg["batch_size"], shuffle=True, augment=True, seed=cfg["seed"],
                        drop_last=short or cfg["drop_last"], mean=mean, std=std, cutout=cfg["cutout"], xp=xp,
                        pad=cfg["crop_pad"], flip=cfg["flip"], pad_mode=cfg["pad_mode"])
    test_loader = DataLoader(x_test, y_test, 500, mean=mean, std=std, xp=xp)

    def build():
        if len(loader) == 0:
            raise ConfigError(f"no training step: {len(x_train)} training images make no batch of --batch-size "
                              f"{cfg['batch_size']} with at least 2 images per process")
        steps = cfg["epochs"] * len(loader)
        whole_run = "a period of the whole run would end it near its initial weights"
        if resume is None and cfg["lookahead"] >= steps:  # a resumed run was started as it is: it goes on
            # the recipe's period on a run too short for it (the default command on a few images): off, said
            if cfg["lookahead"] == RECIPES.get(cfg["recipe"], {}).get("lookahead"):
                notes.append(f"the recipe's Lookahead every {cfg['lookahead']} steps is off: the run takes {steps} "
                             f"optimizer steps, and {whole_run}")
                cfg["lookahead"] = 0
            else:
                raise ConfigError(f"--lookahead {cfg['lookahead']}: the run takes {steps} optimizer steps "
                                  f"({cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''} of {len(loader)}), and "
                                  f"{whole_run}: give fewer than {steps} (or 0: off)")
        given = f"--model {cfg['model']} --model-kwargs {json.dumps(cfg['model_kwargs'], default=str)}"
        try:
            model = create(cfg["model"], num_classes=len(names), **cfg["model_kwargs"]).to(device)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{given}: {e}") from None
        try:  # a network its options cannot run (widths that do not fit its head, say): before anything is written
            with no_grad(), np.errstate(over="ignore", invalid="ignore"):  # what overflows is said below
                probe = model.eval()(Tensor(xp.asarray(x_train[:2]).astype(np.float32) * loader.scale + loader.shift))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{given}: it cannot run an image ({e})") from None
        if not bool(xp.isfinite(probe.data).all()):  # a NaN or infinite option ("logit_scale": NaN, say)
            raise ConfigError(f"{given}: its outputs on the first training images are not finite (NaN or inf)")
        model.train()
        if getattr(model, "whiten", None) is None:  # what only a whitening layer uses
            unused = {"--no-whiten": not cfg["whiten"], f"--whiten-bias-epochs {cfg['whiten_bias_epochs']!r}":
                      cfg["whiten_bias_epochs"] is not None}
            notes.extend(f"{k} is ignored: {cfg['model']} has no whitening layer" for k, on in unused.items() if on)
        fit_whitening(model, cfg, x_train, mean, std)
        return model

    model = launch.together(mpi, build)
    if mpi:  # replicas built apart (other hosts, other library versions) start from rank 0's weights
        broadcast_parameters(mpi, list(model.parameters()) + float_buffers(model))
    opt, sched = build_optimizer(model, cfg, len(loader))
    trainer = Trainer(cfg, model, opt, sched, loader, blas_threads=get_num_threads() if mpi else None)
    for extension in extensions_for(cfg, model, trainer.total_steps, test_loader, len(names)):
        trainer.extend(extension)
    if resume is not None:
        def restore():
            try:
                trainer.load_state_dict(resume)
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise ConfigError(f"--resume {cfg['resume']}: the checkpoint does not fit this run ({e})") from None
        launch.together(mpi, restore)
        if trainer.start_epoch > cfg["epochs"]:
            say(f"--resume {cfg['resume']}: the run is already complete (epoch {cfg['epochs']} of "
                f"{cfg['epochs']}): nothing is trained, its final model is tested again")
        else:
            say(f"resumed from {cfg['resume']} at epoch {trainer.start_epoch}")
        saved_threads = resume.get("blas_threads")
        if saved_threads is not None and saved_threads != trainer.blas_threads:
            say(f"warning: the run was checkpointed with {saved_threads} BLAS threads and continues with "
                f"{trainer.blas_threads}: it will not continue bit for bit (OPENBLAS_NUM_THREADS={saved_threads} "
                f"restores that)")

    out = cfg["out"]
    written = {**cfg, "resolved_device": device, "resolved_step_lr": step_lr(cfg)}
    launch.together(mpi, lambda: rank == 0 and start_folder(cfg, written))
    if claim:
        claim.written = True
    for note in notes:  # every check passed: the recipe taken, or what a resume ignores
        say(note)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{cfg['model']}: {n_params:,} parameters, {len(x_train)} training images, device {device}"
        + (f", {world} MPI ranks" if mpi and world > 1 else f", {world} data-parallel processes" if world > 1 else ""))

    if trainer.start_epoch > cfg["epochs"]:  # nothing left to train: report the finished run
        result = trainer.history[-1] if trainer.history else {}
        final = trainer.test_pass(mpi, cfg["tta"])
        if final is None:  # on every rank together (TestPass.run)
            raise Diverged(f"--resume {cfg['resume']}: the finished run's weights give test logits that are not "
                           f"finite (a NaN or inf weight, or a negative BatchNorm variance): it has no final model "
                           f"to test", rank != 0)
    else:
        group = mpi or (ProcessGroup(world, max(vector_size(model, len(STEP_TOTALS)), reduce_size(len(names))))
                        if world > 1 else None)
        threads, failed = get_num_threads(), True
        try:
            with StopRequested(rank) as stop:
                if group:
                    group.start(trainer.worker)  # the local backend forks its ranks here; MPI's are running
                result, final = trainer.fit(group, stop)
            failed = False
        except Interrupted as e:
            failed = False
            launcher = f"mpiexec -n {world} " if mpi else ""
            raise Interrupted(f"interrupted at epoch {e.epoch} step {e.step}; continue with: {launcher}python -m "
                              f"skengine.train --resume {shlex.quote(out)}", e.epoch, e.step, e.result,
                              e.silent) from None
        except TrainingError:  # every rank stops together
            failed = False
            raise
        finally:
            if group and (group is not mpi or not failed):  # a failing MPI rank aborts the job in train()
                group.close(abort=failed)  # after an error or a second Ctrl-C the workers are killed, not waited for
                set_num_threads(threads)
    if rank == 0:
        table = confusion_table(final["confusion"], names)
        with open(os.path.join(out, "confusion.txt"), "w") as f:
            f.write(table + "\n")
        say(table)
    return result


def extensions_for(cfg, model, total_steps, test_loader, num_classes):
    """The extensions a run's settings install, in the order they run."""
    ema = EMA(model, cfg["ema"]) if cfg["ema"] else None
    return [DivergenceGuard(cfg["diverge"]),
            *([LookaheadSync(model, cfg["lookahead"], total_steps)] if cfg["lookahead"] else []),
            *([ema] if ema else []),
            TestPass(test_loader, num_classes, cfg["tta"], cfg["tta_translate"], ema, cfg["test_every"]),
            Report(),
            Checkpoint(ema)]


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
    """The number of data-parallel processes (config.validate has checked a number given): "auto" is, on
    the CPU, one per BLAS thread (one per core unless OPENBLAS_NUM_THREADS or set_num_threads says
    otherwise), with at least 64 images per process in a batch for BatchNorm's statistics; on CUDA one."""
    if value != "auto":
        return int(value)
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    return 1 if device == "cuda" or not can_fork else max(1, min(get_num_threads(), batch_size // 64))


def train_step(model, opt, x, y, label_smoothing, group=None, params=(), buffers=(), stopping=False):
    """One step on this rank's shard ``x, y`` of a batch: forward, loss, backward, the all-reduce of the
    gradients (and BatchNorm buffers, and the batch's totals and flags: STEP_TOTALS) over ``group``, the
    optimizer's step.  Returns the batch's totals: loss_sum, correct, n, bad (the loss failed on some rank),
    failure (this rank's error), stopping (some rank was asked to stop)."""
    opt.zero_grad()
    loss_sum, correct, failure = 0.0, 0, None
    if len(y):  # a shard of a short last batch may be empty
        logits = model(Tensor(x))
        try:
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        except ValueError as e:  # a NaN or inf loss
            failure = e
        else:
            loss.backward()
            loss_sum = loss.item() * len(y)
            correct = int((logits.data.argmax(axis=1) == y).sum())
    n, bad = len(y), failure is not None
    if group:
        n, (loss_sum, correct, bad, stopping) = average_gradients(group, params, buffers, n,
                                                                  (loss_sum, correct, bad, stopping))
    opt.step()
    return {"loss_sum": float(loss_sum), "correct": int(correct), "n": int(n), "bad": bool(bad),
            "failure": failure, "stopping": bool(stopping)}


class Trainer:
    """One run's state on one rank and its epochs: ``train_step`` on every batch, the scheduler, and the
    extensions after each step and each epoch.  Every rank runs ``fit`` over its shard of every batch with an
    identical replica (skengine.distributed); the extensions marked ``rank0`` (files) run on rank 0 alone."""

    def __init__(self, cfg, model, opt, sched, loader, blas_threads=None):
        self.cfg, self.model, self.opt, self.sched, self.loader = cfg, model, opt, sched, loader
        self.total_steps = cfg["epochs"] * len(loader)
        self.out = cfg["out"]
        self.checkpoint_path = os.path.join(self.out, "checkpoint.npz")
        self.extensions, self.group, self.rank = [], None, 0
        self.start_epoch, self.epoch, self.history, self.partial = 1, 0, [], None
        self.observation, self.row, self.last_test = {}, {}, None
        # BLAS threads of each process while it computes: bit-exact resume needs the same (forked ranks run
        # one each; MPI ranks what train set)
        self.blas_threads = blas_threads or (1 if cfg["processes"] > 1 else get_num_threads())

    def extend(self, extension):
        self.extensions.append(extension)

    @property
    def steps(self):
        """Optimizer steps taken in the run so far."""
        return self.sched.last_epoch

    def kept(self):
        return (f"the last good checkpoint is {self.checkpoint_path}" if os.path.exists(self.checkpoint_path)
                else "no checkpoint was written yet")

    def state_dict(self, partial=None):
        """All that --resume needs to continue bit for bit (``partial``: the sums of an unfinished epoch)."""
        return {"config": self.cfg, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "loader": self.loader.state_dict(),
                "rng": sk_random.get_state(), "epoch": self.epoch, "history": self.history,
                "partial": partial or {}, "blas_threads": self.blas_threads,
                "extensions": {e.name: e.state_dict() for e in self.extensions if e.name}}

    def load_state_dict(self, state):
        """Continue from a checkpoint (what ``state_dict`` wrote; one of before 2026-12-07 kept the EMA,
        Lookahead and best accuracy at its top level)."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict({"state": _int_keys(state["optimizer"]["state"]),
                                  "param_groups": state["optimizer"]["param_groups"]})
        self.sched.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        sk_random.set_state(state["rng"])
        saved = state.get("extensions") or {"ema": state.get("ema"), "lookahead": state.get("lookahead"),
                                            "checkpoint": {"best_acc": state.get("best_acc", -1.0)}}
        for e in self.extensions:
            if e.name and saved.get(e.name):
                e.load_state_dict(saved[e.name])
        self.history, self.partial = list(state["history"]), (state["partial"] or None)
        self.start_epoch = int(state["epoch"]) + (0 if self.partial else 1)

    def worker(self, group):
        """A forked rank's run: its errors are rank 0's to report (they reach it through the group)."""
        try:
            self.fit(group, stop=None)
        except TrainingError:
            pass

    def test_pass(self, group, tta):
        test = next(e for e in self.extensions if isinstance(e, TestPass))
        return test.run(self.model, group, tta)

    def freeze_stopped(self):
        """A parameter whose group's schedule has stopped (the whitening bias after ``whiten_bias_epochs``) learns
        nothing for the rest of the run: from that step on it takes no gradient, so nothing is computed for it,
        nor for the layers before it (the first convolution's dX, the whitening output's GELU).  The run's
        weights are the same, bit for bit."""
        for group, schedule in zip(self.opt.param_groups, self.sched.lr_lambdas):
            if getattr(schedule, "stop", None) is not None and self.steps >= schedule.stop:
                for p in group["params"]:
                    p.requires_grad_(False)

    def _run(self, unit):
        for e in self.extensions:
            interval, on = e.trigger
            count = self.steps if on == "step" else self.epoch
            if on == unit and count % interval == 0 and (self.rank == 0 or not e.rank0):
                e(self)

    def fit(self, group, stop):
        """Train the remaining epochs; return (last epoch's metrics, its test result).  Raises Interrupted
        after a Ctrl-C (with the checkpoint written), Diverged from the guard."""
        cfg, model, sched, loader = self.cfg, self.model, self.sched, self.loader
        self.group, self.rank = group, (group.rank if group else 0)
        world = group.world_size if group else 1
        loader.set_shard(self.rank, world)
        params, buffers = list(model.parameters()), float_buffers(model)
        result = self.history[-1] if self.history else {}
        for epoch in range(self.start_epoch, cfg["epochs"] + 1):
            self.epoch = epoch
            model.train()
            sums = self.partial or {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
            self.partial = None
            bar, seen_now = Progress(len(loader), f"epoch {epoch}/{cfg['epochs']}") if self.rank == 0 else None, 0
            t0, stopping = time.perf_counter() - sums["time"], False
            for x, y in loader:
                self.freeze_stopped()
                stats = self.observation = train_step(model, self.opt, x, y, cfg["label_smoothing"], group, params,
                                                      buffers, _stop_requested(stop))
                sched.step()
                self._run("step")
                sums["loss"] += stats["loss_sum"]
                sums["correct"] += stats["correct"]
                sums["seen"] += stats["n"]
                seen_now += stats["n"]
                if bar:
                    bar.update(loader.batch, seen_now, loss=sums["loss"] / sums["seen"],
                               acc=sums["correct"] / sums["seen"], lr=sched.get_last_lr()[0])
                stopping = stats["stopping"] if group else _stop_requested(stop)  # alone: a Ctrl-C in this step
                if stopping:
                    break
            sums["time"] = time.perf_counter() - t0
            if stopping and loader.batch < len(loader):
                if self.rank == 0:
                    save(self.state_dict(sums), self.checkpoint_path)
                raise Interrupted("interrupted", epoch, loader.batch, result, silent=self.rank != 0)
            result = self.row = {"epoch": epoch, "train_loss": sums["loss"] / sums["seen"],
                                 "train_acc": sums["correct"] / sums["seen"], "test_loss": None, "test_acc": None,
                                 "test_acc_tta": None, "epoch_time": sums["time"],
                                 "images_per_s": sums["seen"] / max(sums["time"], 1e-9), "lr": sched.get_last_lr()[0]}
            self.history.append(result)
            self._run("epoch")
            stopping = _stop_requested(stop)  # a Ctrl-C during the test pass or the checkpoint stops here
            if group:  # the other ranks wait here for rank 0's word anyway
                stopping = group.all_reduce([stopping])[0] > 0
            if stopping and epoch < cfg["epochs"]:  # after the last epoch the run is complete anyway
                raise Interrupted("interrupted", epoch, loader.batch, result, silent=self.rank != 0)
        return result, self.last_test


def _stop_requested(stop):
    return bool(stop and stop.flag)  # workers have no StopRequested: rank 0 speaks for them
