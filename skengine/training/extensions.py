"""What happens around a training step (Chainer's Extensions, in this engine's own small form).

An extension has a ``trigger`` ((n, "step"): after every n-th optimizer step of the run; (n, "epoch"): after
every n-th epoch), a ``name`` under which the checkpoint keeps its ``state_dict()``, and ``rank0``: whether rank
0 alone runs it (writing files) rather than every rank (collectives, replica state).  ``Trainer.extend``
installs one; the trainer calls each, in the order installed, as ``ext(trainer)``.  A stateful trick is one
class here and one line in ``loop.extensions_for``."""
import contextlib
import os
import sys

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module
from ..optim import Lookahead, ModelEMA
from ..serialization import save
from .config import to_lower
from .errors import Diverged
from .evaluation import evaluate
from .recipe import lookahead_alpha
from .report import write_curves, write_metrics


class Extension:
    trigger = (1, "epoch")
    name = None  # a stateful extension's key in the checkpoint
    rank0 = False

    def __call__(self, trainer):
        raise NotImplementedError

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class DivergenceGuard(Extension):
    """Stop the run when its training loss is not finite on some rank, or climbs above ``factor`` times the
    run's first step's loss (0: never), with the epoch and step named; the last checkpoint stays."""

    trigger, name = (1, "step"), "divergence"

    def __init__(self, factor):
        self.factor, self.first = factor, None

    def __call__(self, trainer):
        step, epoch, stats = trainer.loader.batch, trainer.epoch, trainer.observation
        silent = trainer.rank != 0
        if stats["bad"]:
            why = stats["failure"] or "the loss is not finite on another process"
            raise Diverged(f"training stopped: {why} at epoch {epoch}, step {step}; {trainer.kept()}", silent)
        loss = stats["loss_sum"] / max(stats["n"], 1)
        if self.first is None:
            self.first = loss
        elif self.factor and loss > self.factor * self.first:
            raise Diverged(f"diverged at epoch {epoch} step {step} (loss {loss:.4g}, more than {self.factor:g}x the "
                           f"first step's {self.first:.4g}): {to_lower(trainer.cfg)}; {trainer.kept()}", silent)

    def state_dict(self):
        return {} if self.first is None else {"first": self.first}

    def load_state_dict(self, state):
        self.first = float(state["first"]) if "first" in state else None


class LookaheadSync(Extension):
    """airbench's Lookahead: every ``k`` steps the slow weights move towards the model by lookahead_alpha and
    the model takes them; the run ends on the slow weights.  Its last step syncs too, at the alpha of the steps
    since the sync before (airbench drops them, by its final ``update(decay=1.0)``).  A period of the whole run
    or more would end it near its initial weights: the trainer refuses it before the run starts."""

    trigger, name = (1, "step"), "lookahead"

    def __init__(self, model, k, total_steps):
        self.lookahead, self.total = Lookahead(model, k=k), total_steps

    def __call__(self, trainer):
        step, lookahead = trainer.steps, self.lookahead
        lookahead.step(trainer.model, alpha=lookahead_alpha(step, self.total, lookahead.k))
        rest = lookahead.num_steps % lookahead.k
        if step == self.total and rest:
            lookahead.sync(trainer.model, alpha=lookahead_alpha(step, self.total, rest))

    def state_dict(self):
        return self.lookahead.state_dict()

    def load_state_dict(self, state):
        self.lookahead.load_state_dict(state)


class EMA(Extension):
    """An exponential moving average of the weights, updated every step; the test pass and best.npz use it."""

    trigger, name = (1, "step"), "ema"

    def __init__(self, model, decay):
        self.ema = ModelEMA(model, decay=decay)

    def __call__(self, trainer):
        self.ema.update(trainer.model)

    def swap(self, model):
        return self.ema.swap(model)

    def state_dict(self):
        return self.ema.state_dict()

    def load_state_dict(self, state):
        self.ema.load_state_dict(state)


class TestPass(Extension):
    """The test pass after every ``every`` epochs and after the last (0: the last only; None: every epoch;
    sharded over the ranks), with the EMA's weights if there are; the last epoch's with TTA (flip, and 1-pixel
    translations with ``translate``), keeping the plain numbers too.  Weights that the epoch's last steps made NaN
    or inf (the guard sees a step's loss, taken before its update) stop the run as the guard does, before the
    checkpoint: in an epoch left untested, the weights and buffers are checked instead."""

    def __init__(self, loader, num_classes, tta, translate, ema=None, every=None):
        self.loader, self.num_classes, self.tta, self.translate, self.ema = loader, num_classes, tta, translate, ema
        self.every = 1 if every is None else every

    def __call__(self, trainer):
        last = trainer.epoch == trainer.cfg["epochs"]
        if not last and not (self.every and trainer.epoch % self.every == 0):  # the row's test numbers stay None
            if not _finite(trainer.model, trainer.group):
                self._diverged(trainer, "the weights are not finite after this step")
            return
        tta = self.tta and last
        test = trainer.last_test = self.run(trainer.model, trainer.group, tta)
        if test is None:
            self._diverged(trainer, "the test pass's logits are not finite after this step")
        plain = {"loss": test["plain_loss"], "acc": test["plain_acc"]} if tta else test
        trainer.row.update(test_loss=plain["loss"], test_acc=plain["acc"], test_acc_tta=test["acc"] if tta else None)

    @staticmethod
    def _diverged(trainer, why):
        raise Diverged(f"diverged at epoch {trainer.epoch} step {trainer.loader.batch} ({why}): "
                       f"{to_lower(trainer.cfg)}; {trainer.kept()}", trainer.rank != 0)

    def run(self, model, group, tta):
        """evaluate's result, or None where the logits were not finite on some rank."""
        rank, world = (group.rank, group.world_size) if group else (0, 1)
        self.loader.set_shard(rank, world)
        watched = FiniteLogits(model)
        swap = self.ema.swap(model) if self.ema else contextlib.nullcontext()
        with swap, np.errstate(over="ignore", invalid="ignore"):  # what overflows is said below
            result = evaluate(watched, self.loader, tta=tta, translate=tta and self.translate,
                              all_reduce=group.all_reduce if group else None, num_classes=self.num_classes)
        bad = group.all_reduce([watched.bad])[0] > 0 if group else watched.bad
        return None if bad else result


def _finite(model, group):
    """Whether every parameter and buffer of ``model`` is finite on every rank."""
    bad = not all(bool(get_array_module(t.data).isfinite(t.data).all())
                  for t in (*model.parameters(), *model.buffers()) if t is not None)
    return not (group.all_reduce([bad])[0] > 0 if group else bad)


class FiniteLogits:
    """A model whose logits that are not finite are noted (``bad``) and passed on as zeros: a test pass of NaN
    weights ends, on every rank together (its collectives), instead of raising on some."""

    def __init__(self, model):
        self.model, self.bad = model, False

    def __getattr__(self, name):  # training, eval(), train()
        return getattr(self.model, name)

    def __call__(self, x):
        logits = self.model(x)
        if not bool(get_array_module(logits.data).isfinite(logits.data).all()):
            self.bad = True
            return Tensor(get_array_module(logits.data).zeros_like(logits.data))
        return logits


class Report(Extension):
    """Rank 0: the epoch's line on stderr, metrics.csv and curves.png."""

    rank0 = True

    def __call__(self, trainer):
        row, test = trainer.row, trainer.last_test
        views = "flip + translate" if trainer.cfg["tta_translate"] else "flip"
        tested = "" if row["test_acc"] is None else (
            f"test loss {row['test_loss']:.4f} acc {100 * row['test_acc']:.2f}%"
            + (f", with {views} TTA {100 * test['acc']:.2f}%" if row["test_acc_tta"] is not None else "") + " | ")
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% | "
              f"{tested}{row['epoch_time']:.1f} s, {row['images_per_s']:.0f} img/s", file=sys.stderr)
        write_metrics(os.path.join(trainer.out, "metrics.csv"), trainer.history)
        write_curves(trainer.history, os.path.join(trainer.out, "curves.png"))


class Checkpoint(Extension):
    """Rank 0: best.npz when the test accuracy is the run's best (the weights that were tested: the EMA's
    with --ema), and checkpoint.npz: everything --resume needs, every extension's state included."""

    name, rank0 = "checkpoint", True

    def __init__(self, ema=None):
        self.ema, self.best_acc = ema, -1.0

    def __call__(self, trainer):
        row, cfg = trainer.row, trainer.cfg
        if row["test_acc"] is not None and row["test_acc"] > self.best_acc:
            self.best_acc = row["test_acc"]
            with self.ema.swap(trainer.model) if self.ema else contextlib.nullcontext():
                save({"config": cfg, "model": trainer.model.state_dict(), "epoch": row["epoch"],
                      "test_acc": row["test_acc"]}, os.path.join(trainer.out, "best.npz"))
        save(trainer.state_dict(), trainer.checkpoint_path)

    def state_dict(self):
        return {"best_acc": self.best_acc}

    def load_state_dict(self, state):
        self.best_acc = float(state["best_acc"])


__all__ = ["Extension", "DivergenceGuard", "LookaheadSync", "EMA", "TestPass", "Report", "Checkpoint", "FiniteLogits"]
