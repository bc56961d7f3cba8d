"""Training runs: ``loop.py`` (a run's set-up, its epochs on every data-parallel rank, checkpoints and
resume), ``evaluation.py`` (the test pass) and ``report.py`` (progress, metrics.csv, curves, confusion
table).  The commands are ``skengine/train.py`` and ``skengine/evaluate.py``."""
from .evaluation import evaluate
from .loop import DEFAULTS, train

__all__ = ["DEFAULTS", "evaluate", "train"]
