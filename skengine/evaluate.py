"""Test accuracy of a model or a saved checkpoint: ``python -m skengine.evaluate --checkpoint run/best.npz``."""
import argparse
import sys

import numpy as np

from . import functional as F
from .autograd import Tensor, no_grad
from .backend import to_numpy


def evaluate(model, loader, tta=False, all_reduce=None, num_classes=None):
    """Mean loss, accuracy and the confusion matrix (true x predicted) over ``loader``.

    With ``tta`` the logits of each image and its horizontal mirror are
    averaged, and the result also holds ``plain_loss`` and ``plain_acc``: the
    same numbers from the unmirrored images alone, which that pass computes anyway.
    ``all_reduce`` (data parallel: ``ProcessGroup.all_reduce``, every rank's
    loader yielding its shard) sums the counts of all ranks before the means;
    ``num_classes`` sizes the confusion matrix of a rank whose shards were all empty.
    """
    was_training = model.training
    model.eval()
    loss_sum, plain_loss_sum, plain_correct = 0.0, 0.0, 0
    confusion = None if num_classes is None else np.zeros((num_classes, num_classes), np.int64)
    with no_grad():
        for x, y in loader:
            if len(y) == 0:  # an empty shard of a short last batch
                continue
            logits = model(Tensor(x))
            if tta:
                plain_loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                plain_correct += int((to_numpy(logits.data.argmax(axis=1)) == to_numpy(y)).sum())
                logits = (logits + model(Tensor(x[..., ::-1]))) * 0.5
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            pred, true = to_numpy(logits.data.argmax(axis=1)), to_numpy(y)
            if confusion is None:
                confusion = np.zeros((logits.shape[1],) * 2, np.int64)
            np.add.at(confusion, (true, pred), 1)
    model.train(was_training)
    if confusion is None:
        raise ValueError("evaluate: the loader yielded no images (a data-parallel rank whose shards may all be "
                         "empty needs num_classes)")
    if all_reduce is not None:
        total = all_reduce(np.concatenate([[loss_sum, plain_loss_sum, plain_correct], confusion.ravel()]))
        loss_sum, plain_loss_sum, plain_correct = (float(v) for v in total[:3])
        confusion = total[3:].round().astype(np.int64).reshape(confusion.shape)
    n = int(confusion.sum())
    if n == 0:
        raise ValueError("evaluate: the loader yielded no images")
    result = {"loss": loss_sum / n, "acc": float(np.trace(confusion)) / n, "confusion": confusion}
    if tta:
        result.update(plain_loss=plain_loss_sum / n, plain_acc=float(plain_correct) / n)
    return result


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


def main(argv=None):
    from .data import CIFAR_MEAN_STD, DataLoader, class_names, load_cifar
    from .models import create
    from .serialization import load
    from .train import resolve_device

    p = argparse.ArgumentParser(prog="skengine-evaluate", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoint.npz or best.npz written by skengine.train")
    p.add_argument("--data-dir", help="folder holding the CIFAR data (default: the trainer's cache)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="average with the horizontally flipped image")
    args = p.parse_args(argv)
    ckpt = load(args.checkpoint)
    cfg = ckpt["config"]
    device = resolve_device(args.device)
    names = class_names(args.data_dir, cfg["dataset"])
    model = create(cfg["model"], num_classes=len(names), **cfg.get("model_kwargs", {}))
    model.load_state_dict(ckpt["model"])
    model.to(device)
    x, y = load_cifar(args.data_dir, cfg["dataset"], train=False)
    xp = np
    if device == "cuda":
        from .backend import cupy
        xp = cupy()
    mean, std = CIFAR_MEAN_STD[cfg["dataset"]]
    result = evaluate(model, DataLoader(x, y, args.batch_size, mean=mean, std=std, xp=xp), tta=args.tta)
    print(confusion_table(result["confusion"], names), file=sys.stderr)
    print(f"{cfg['model']} ({args.checkpoint}): test loss {result['loss']:.4f}, "
          f"test accuracy {100 * result['acc']:.2f}% on {len(y)} images")
    return result


if __name__ == "__main__":
    main()
