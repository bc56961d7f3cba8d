"""Training runs: ``config.py`` (a run's settings, checked before anything is written), ``loop.py`` (its
set-up, its epochs on every data-parallel rank, checkpoints and resume), ``evaluation.py`` (the test pass)
and ``report.py`` (progress, metrics.csv, curves, confusion table).  The commands are ``skengine/train.py``
and ``skengine/evaluate.py``."""
from .config import DEFAULTS, ConfigError
from .evaluation import evaluate
from .loop import train

__all__ = ["DEFAULTS", "ConfigError", "evaluate", "train"]
