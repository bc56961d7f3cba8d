"""Training runs: ``config.py`` (a run's settings, checked before anything is written), ``loop.py`` (its
set-up, its epochs on every data-parallel rank, checkpoints and resume), ``launch.py`` (its start on the
ranks of an MPI launcher), ``recipe.py`` (the fast recipe's parameter groups, whitening and Lookahead
schedule), ``evaluation.py`` (the test pass) and ``report.py`` (progress, metrics.csv, curves, confusion
table).  The commands are ``skengine/train.py``
and ``skengine/evaluate.py``."""
from .config import DEFAULTS, ConfigError
from .evaluation import evaluate
from .loop import train

__all__ = ["DEFAULTS", "ConfigError", "evaluate", "train"]
