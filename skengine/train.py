"""Train an SK model on CIFAR-10/100: ``python -m skengine.train`` (or ``skengine-train``).

With no arguments: the fast recipe (``sknet_cifar_fast`` with airbench's
tricks, 15 epochs; ``--recipe none`` for the plain settings) on CIFAR-10
(downloaded into the cache if absent), on CUDA if available, else the CPU.
Every epoch ends with a test pass, a row in ``metrics.csv`` and an atomic
``checkpoint.npz`` (model, optimizer, schedule, data order and RNG state,
so ``--resume`` continues bit for bit); Ctrl-C finishes the current step,
checkpoints and exits; a NaN/inf loss stops the run and leaves the last
good checkpoint.
"""
import argparse
import json
import sys

from .distributed import WorkerError, launched_rank, world_rank
from .training.config import RECIPES, ConfigError, settings_of

# what scripts imported from this module before it became the command alone stays importable from here
from .training.evaluation import evaluate  # noqa: F401
from .training.loop import Run, StopRequested, build_schedule, load_data, resolve_processes, train  # noqa: F401
from .training.report import Progress, confusion_table, pyplot, write_curves  # noqa: F401


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a user's mistake: one line on stderr, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")

    def _print_message(self, message, file=None):  # under mpiexec every rank parses the same command line:
        if launched_rank() == 0:  # --help and argparse's refusals are printed once, by the launcher's rank 0
            super()._print_message(message, file)


def _exit(code, message):
    """Exit with ``code`` after ``message`` on stderr, on whichever rank got here (train chose the rank)."""
    sys.stderr.write(f"skengine-train: {message}\n")
    sys.exit(code)


def build_parser(defaults=True):
    """The command's parser; with ``defaults=False`` an option not given is absent from the result (what a
    resumed run must know: which settings the user asked for)."""
    p = _Parser(prog="skengine-train", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                argument_default=None if defaults else argparse.SUPPRESS)
    p.add_argument("--model", help="any name from skengine.models.list_models()")
    p.add_argument("--model-kwargs", type=json.loads, metavar="JSON",
                   help='constructor options, e.g. \'{"attention": "se"}\' or '
                        '\'{"sk_kwargs": {"attention": "sigmoid"}}\'')
    p.add_argument("--dataset", choices=["cifar10", "cifar100"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--wd", type=float, help="weight decay (not applied to BN parameters and biases)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--schedule", choices=["onecycle", "cosine", "step", "linear"],
                   help="linear: from 0.2x up over the warm-up, then straight down to 0")
    p.add_argument("--warmup-epochs", type=float, help="warm-up of the cosine and linear schedules")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--cutout", type=int, help="cutout square size (0: off)")
    p.add_argument("--ema", type=float, help="EMA decay of the weights used for testing (0: off)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, help="flip test-time augmentation")
    p.add_argument("--tta-translate", action=argparse.BooleanOptionalAction,
                   help="with --tta, also 1-pixel translations of each image and its mirror (6 passes)")
    p.add_argument("--recipe", choices=[*RECIPES, "none"], help="a named recipe: its settings unless given "
                   "(fast: sknet_cifar_fast with airbench's tricks, see README; none: the plain settings, "
                   "sknet_cifar_small with one-cycle SGD for 14 epochs; the defaults shown are the fast recipe's)")
    p.add_argument("--flip", choices=["random", "alternate"], help="alternate: each image mirrored every "
                   "other epoch")
    p.add_argument("--crop-pad", type=int, help="random crops from the image padded by this many pixels")
    p.add_argument("--pad-mode", choices=["constant", "reflect"], help="the crops' padding: zeros or mirrored")
    p.add_argument("--lookahead", type=int, help="Lookahead every K steps, with airbench's schedule (0: off)")
    p.add_argument("--bias-lr-scale", type=float, help="learning-rate factor of BN parameters and biases")
    p.add_argument("--whiten", action=argparse.BooleanOptionalAction,
                   help="fit a model's whitening layer to the training images (off: train it from random)")
    p.add_argument("--whiten-bias-epochs", type=float, help="epochs the whitening layer's bias learns")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit-train", type=int, help="train on the first N images only")
    p.add_argument("--limit-test", type=int, help="test on the first N images only")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--processes", help="data-parallel processes, each training on its shard of every batch "
                                       "(auto: on the CPU one per BLAS thread, at most one per 64 images; "
                                       "with --resume: the run's own count; under mpiexec: its -n)")
    p.add_argument("--backend", choices=["auto", "local", "mpi"],
                   help="how processes talk: local (forked on this machine, --processes), mpi (ranks started "
                        "by mpiexec, on any number of hosts), auto (mpi under mpiexec, else local)")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (default: $SKENGINE_DATA "
                                      "or ~/.cache/skengine)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction,
                   help="download the official archive if the data is absent")
    p.add_argument("--out", help="output folder (with --resume: the run's own folder unless given)")
    p.add_argument("--resume", help="checkpoint.npz (or its folder) to continue from")
    p.add_argument("--overwrite", action="store_true", help="replace a run that --out already holds")
    if defaults:
        p.set_defaults(**settings_of({}))  # what a run takes when nothing is given: the default recipe's
    return p


def main(argv=None):
    """The command: exit code 0 when the run ends, 2 for a setting that cannot work (one line on stderr,
    before anything is written), 130 after a Ctrl-C (with the command that continues the run), 1 when a
    data-parallel process fails.  Under mpiexec every rank runs this; rank 0 alone reports, and a rank
    that fails aborts the job (MPI_Abort, exit code 1 or 130)."""
    parser = build_parser()
    parser.parse_args(argv)  # --help, and what argparse itself refuses
    try:
        result = train(vars(build_parser(defaults=False).parse_args(argv)))
    except ConfigError as e:  # under MPI, raised on the one rank that reports it
        _exit(2, f"error: {e}")
    except WorkerError as e:  # a data-parallel process died, stopped or hung: the others were killed
        _exit(1, f"training stopped: {e}")
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of this step
        _exit(130, "aborted; checkpoints written before (if any) are kept")
    if result.get("interrupted"):
        sys.exit(130)
    if "test_acc" in result and world_rank() == 0:  # with --tta the final number is TTA's, as in timm and airbench
        tta, plain = result.get("test_acc_tta"), f"{100 * result['test_acc']:.2f}%"
        print("final test accuracy: " + (plain if tta is None else f"{100 * tta:.2f}% with TTA ({plain} without)"))


if __name__ == "__main__":
    main()
