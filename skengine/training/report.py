"""What a training run reports: the progress line, metrics.csv, curves.png and the confusion table."""
import csv
import sys
import time

from ..serialization import atomic_write


class Progress:
    """A one-line progress bar: step, loss, accuracy, images/s and ETA."""

    def __init__(self, total, title, stream=sys.stderr):
        self.total, self.title, self.stream = total, title, stream
        self.tty = stream.isatty()
        self.start = time.perf_counter()
        self.last_print = 0.0

    def update(self, step, images, **stats):
        now = time.perf_counter()
        if step < self.total and now - self.last_print < (0.2 if self.tty else 30.0):
            return
        self.last_print = now
        elapsed = now - self.start
        rate = images / max(elapsed, 1e-9)
        eta = elapsed / max(step, 1) * (self.total - step)
        filled = int(20 * step / max(self.total, 1))
        text = " ".join(f"{k} {v:.4g}" for k, v in stats.items())
        line = (f"{self.title} [{'#' * filled}{'.' * (20 - filled)}] {step}/{self.total} {text} "
                f"{rate:.0f} img/s ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and step >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def write_metrics(path, history):
    """metrics.csv: one row per epoch, written whole and atomically (atomic_write)."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            # every key any epoch has, in first-seen order: a run resumed from an older checkpoint may add one
            w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in history for k in row)), restval="")
            w.writeheader()
            w.writerows(history)

    atomic_write(path, write, ".csv")


_SAID = set()


def pyplot(what):
    """matplotlib.pyplot on the file-only Agg backend, or None (saying that ``what`` is skipped)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if what not in _SAID:  # once a process, not after every epoch
            _SAID.add(what)
            print(f"{what} skipped: matplotlib is not installed (pip install skengine[plot])", file=sys.stderr)
        return None
    return plt


def write_curves(history, path):
    """curves.png: loss and accuracy per epoch, train and test (skipped without matplotlib)."""
    plt = pyplot("curves.png")
    if plt is None:
        return
    epochs = [h["epoch"] for h in history]
    tested = [h for h in history if h["test_acc"] is not None]  # --test-every leaves some epochs untested
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    a.plot([h["epoch"] for h in tested], [h["test_loss"] for h in tested], "o-", label="test")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.plot(epochs, [100 * h["train_acc"] for h in history], "o-", label="train")
    b.plot([h["epoch"] for h in tested], [100 * h["test_acc"] for h in tested], "o-", label="test")
    b.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_table(confusion, names):
    """Per-class accuracy and the confusion matrix as aligned text."""
    width = max(6, max(len(n) for n in names))
    lines = ["per-class accuracy:"]
    for i, name in enumerate(names):
        total = confusion[i].sum()
        lines.append(f"  {name:<{width}} {100 * confusion[i, i] / max(total, 1):6.2f}%  ({confusion[i, i]}/{total})")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(" " * (width + 2) + " ".join(f"{n[:5]:>5}" for n in names))
    for i, name in enumerate(names):
        lines.append(f"  {name:<{width}}" + " ".join(f"{v:5d}" for v in confusion[i]))
    return "\n".join(lines)
