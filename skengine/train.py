"""Train an SK model on CIFAR-10/100: ``python -m skengine.train`` (or ``skengine-train``).

With no arguments: the airbench93_sk recipe (airbench93's recipe on
``sknet_cifar_fast`` with sigmoid-gated SK units, 10 epochs; ``--recipe fast``:
15 epochs, more accurate); ``--model X`` takes the recipe tuned for X, or the plain
settings (``--recipe none``), and the first line says which; on CIFAR-10
(downloaded into the cache if absent), on CUDA if available, else the CPU.
Every epoch ends with a test pass (``--test-every N``: every Nth and the last), a row in ``metrics.csv`` and an atomic
``checkpoint.npz`` (model, optimizer, schedule, data order and RNG state,
so ``--resume`` continues bit for bit); Ctrl-C finishes the current step,
checkpoints and exits; a NaN/inf loss stops the run and leaves the last
good checkpoint, and so does a loss that climbs far above its start.
"""
import argparse
import json
import sys

from .distributed import WorkerError, launched_rank, world_rank
from .training.config import settings_of
from .training.errors import TrainingError

# what scripts imported from this module before it became the command alone stays importable from here
from .training.evaluation import evaluate  # noqa: F401
from .training.loop import StopRequested, Trainer, load_data, resolve_processes, train  # noqa: F401
from .training.report import Progress, confusion_table, pyplot, write_curves  # noqa: F401
from .training.settings import DEFAULTS, OPTIMIZER_DEFAULTS, RECIPE_OF_MODEL, RECIPES, SETTINGS, flag


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a user's mistake: one line on stderr, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")

    def _print_message(self, message, file=None):  # under mpiexec every rank parses the same command line:
        if launched_rank() == 0:  # --help and argparse's refusals are printed once, by the launcher's rank 0
            super()._print_message(message, file)


def build_parser(defaults=True):
    """The command's parser; with ``defaults=False`` an option not given is absent from the result (what a
    resumed run must know: which settings the user asked for)."""
    p = _Parser(prog="skengine-train", description=__doc__.split("\n\n")[0], epilog=_recipes_help(),
                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                argument_default=None if defaults else argparse.SUPPRESS)
    for setting in SETTINGS:
        setting.add_to(p)
    if defaults:
        p.set_defaults(**settings_of({}))  # what a run takes when nothing is given: the default recipe's
    return p


def _recipes_help():
    """What --help says after the options: each recipe's settings, and an optimizer's own where a recipe tuned
    for another is used (the defaults shown above are the default recipe's)."""
    def settings(d):
        return ", ".join(f"{flag(k)} {v:.4g}" if isinstance(v, float) else
                         f"{flag(k)} {json.dumps(v) if isinstance(v, dict) else v}" for k, v in d.items())
    lines = [f"recipe {name} (tuned for --model {r['model']}"
             f"{', which takes it by default' if RECIPE_OF_MODEL.get(r['model']) == name else ''}): {settings(r)}."
             for name, r in RECIPES.items()]
    plain = {k: DEFAULTS[k] for r in RECIPES.values() for k in r}
    lines.append(f"The plain settings (--recipe none, and a model without a recipe): {settings(plain)}.")
    lines += [f"--optimizer {name} under a recipe tuned for another: {settings(d)}."
              for name, d in OPTIMIZER_DEFAULTS.items()]
    return " ".join(lines)


def main(argv=None):
    """The command: exit code 0 when the run ends, 2 for a setting that cannot work (one line on stderr,
    before anything is written), 130 after a Ctrl-C (with the command that continues the run), 1 when the
    run diverges, a data-parallel process fails or a file cannot be written (a full disk: one line naming the
    folder and the space needed; the checkpoint written before is kept).  Under mpiexec every rank runs this;
    rank 0 alone reports, and a rank that fails aborts the job (MPI_Abort, exit code 1 or 130)."""
    parser = build_parser()
    parser.parse_args(argv)  # --help, and what argparse itself refuses
    try:
        result = train(vars(build_parser(defaults=False).parse_args(argv)))
    except TrainingError as e:  # under MPI the ranks that do not report it raise it silent
        if not e.silent and str(e):
            prefix = "error: " if e.exit_code == 2 else ""
            sys.stderr.write(f"skengine-train: {prefix}{e}\n")
        sys.exit(e.exit_code)
    except WorkerError as e:  # a data-parallel process died, stopped or hung: the others were killed
        sys.stderr.write(f"skengine-train: training stopped: {e}\n")
        sys.exit(1)
    except OSError as e:  # a full disk (atomic_write's error names the folder and the space), a folder taken away
        sys.stderr.write(f"skengine-train: training stopped: {' '.join(str(e).split())}\n")
        sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of this step
        sys.stderr.write("skengine-train: aborted; checkpoints written before (if any) are kept\n")
        sys.exit(130)
    if "test_acc" in result and world_rank() == 0:  # with --tta the final number is TTA's, as in timm and airbench
        tta, plain = result.get("test_acc_tta"), f"{100 * result['test_acc']:.2f}%"
        print("final test accuracy: " + (plain if tta is None else f"{100 * tta:.2f}% with TTA ({plain} without)"))


if __name__ == "__main__":
    main()
