"""What a training run raises instead of exiting: the commands (``train.py``, ``evaluate.py``) turn each into
its exit code.  ``silent`` marks the copy of an error on a rank that is not the one reporting it (another
rank said it): that rank exits with the code and prints nothing."""


class TrainingError(Exception):
    """A run that cannot go on; ``exit_code`` is the command's."""

    exit_code = 1

    def __init__(self, message="", silent=False):
        super().__init__(message)
        self.silent = silent


class ConfigError(TrainingError, ValueError):
    """A setting that cannot work, named as on the command line; raised before anything is written."""

    exit_code = 2


class Diverged(TrainingError):
    """The training loss became NaN/inf or climbed far above its start: the weights are lost, the last
    checkpoint is kept."""


class Interrupted(TrainingError):
    """Ctrl-C or SIGTERM stopped the run after a step, with a checkpoint to continue from (``epoch``, ``step``:
    where it stopped; ``result``: the last finished epoch's metrics)."""

    exit_code = 130

    def __init__(self, message="", epoch=None, step=None, result=None, silent=False):
        super().__init__(message, silent)
        self.epoch, self.step, self.result = epoch, step, result or {}


__all__ = ["TrainingError", "ConfigError", "Diverged", "Interrupted"]
