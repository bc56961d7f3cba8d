"""Test a model: mean loss, accuracy and the confusion matrix, optionally with flip TTA, on one process
or sharded over data-parallel ranks."""
import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..backend import to_numpy


def evaluate(model, loader, tta=False, all_reduce=None, num_classes=None):
    """Mean loss, accuracy and the confusion matrix (true x predicted) over ``loader``.

    With ``tta`` the logits of each image and its horizontal mirror are
    averaged, and the result also holds ``plain_loss`` and ``plain_acc``: the
    same numbers from the unmirrored images alone, which that pass computes anyway.
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


def reduce_size(num_classes):
    """How many numbers ``evaluate`` sums over the ranks: three totals and the confusion matrix."""
    return 3 + num_classes ** 2
