"""Test a model: mean loss, accuracy and the confusion matrix, optionally with flip (and translation) TTA, on one
process or sharded over data-parallel ranks."""
import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..backend import get_array_module, to_numpy


def evaluate(model, loader, tta=False, all_reduce=None, num_classes=None, translate=False):
    """Mean loss, accuracy and the confusion matrix (true x predicted) over ``loader``.

    With ``tta`` the logits of each image and its horizontal mirror are
    averaged, and the result also holds ``plain_loss`` and ``plain_acc``: the
    same numbers from the unmirrored images alone, which that pass computes anyway.
    With ``translate`` too (airbench's TTA), those mirror-averaged logits weigh 1/2
    and those of the image moved one pixel up-left and one down-right (reflected at the
    border), each also averaged with its mirror, 1/4 each: six passes.
    ``all_reduce`` (data parallel: the group's ``all_reduce``, local or MPI, every
    rank's loader yielding its shard) sums the counts of all ranks before the means;
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
                if translate:
                    logits = logits * 0.5 + sum(_mirrored(model, view) for view in _shifted(x)) * 0.25
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            pred, true = to_numpy(logits.data.argmax(axis=1)), to_numpy(y)
            if confusion is None:
                confusion = np.zeros((logits.shape[1],) * 2, np.int64)
            np.add.at(confusion, (true, pred), 1)
    model.train(was_training)
    if confusion is None:
        raise ValueError("evaluate: the loader yielded no images (a data-parallel rank whose shards may all be "
                         "empty needs num_classes)")
    if all_reduce is not None:  # reduce_size(num_classes) values
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


def _mirrored(model, x):
    return (model(Tensor(x)) + model(Tensor(x[..., ::-1]))) * 0.5


def _shifted(x):
    """The images moved by one pixel towards the bottom-right and towards the top-left, reflected at the border."""
    xp = get_array_module(x)
    padded = xp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    H, W = x.shape[2:]
    return padded[:, :, :H, :W], padded[:, :, 2:, 2:]


def reduce_size(num_classes):
    """How many numbers ``evaluate`` sums over the ranks: three totals and the confusion matrix."""
    return 3 + num_classes ** 2
