"""Training runs, in the order a run meets them: ``settings.py`` (the table of every setting and the recipes),
``config.py`` (a run's settings resolved and checked before anything is written, and what a resume keeps),
``launch.py`` (its start on the ranks of an MPI launcher), ``recipe.py`` (optimizer, parameter groups, per-group
schedule, whitening, Lookahead's schedule), ``loop.py`` (the step and the Trainer that runs the epochs),
``extensions.py`` (what happens around the step: divergence guard, Lookahead, EMA, test pass, report,
checkpoint), ``evaluation.py`` (the test pass), ``report.py`` (progress, metrics.csv, curves, confusion table),
``runs.py`` (a saved run's network rebuilt) and ``errors.py`` (what a run raises).  The commands are
``skengine/train.py`` and ``skengine/evaluate.py``: they turn the errors into exit codes."""
from .errors import ConfigError, Diverged, Interrupted, TrainingError
from .evaluation import evaluate
from .loop import train
from .runs import load_run
from .settings import DEFAULTS, RECIPES, SETTINGS

__all__ = ["DEFAULTS", "RECIPES", "SETTINGS", "ConfigError", "Diverged", "Interrupted", "TrainingError", "evaluate",
           "load_run", "train"]
