"""What data-parallel training exchanges over a group (any backend): the gradients and BatchNorm buffers
averaged once per step, all packed into one vector (one collective a step, as ChainerMN and DDP's buckets
do), and the parameters broadcast from rank 0 before the first step."""
import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module, to_numpy


def average_gradients(group, params, buffers, count, extras=()):
    """Average every parameter's gradient over the ranks, weighted by ``count`` (the samples this rank's
    gradient is the mean over), and the float ``buffers`` (BatchNorm's running statistics) likewise:
    afterwards every rank holds the same gradients and buffers.

    A parameter that has no gradient on any rank keeps ``grad = None`` (so the optimizer skips it, as
    it would in one process); one that has it on some ranks gets zeros from the others.
    ``extras`` (numbers) are summed along.  Returns (the summed count, the summed extras as a NumPy array).
    The vector is built on the parameters' device (CuPy on a GPU) and handed to ``group.all_reduce`` whole.
    """
    xp = get_array_module(*[p.data for p in params[:1]])
    pieces = []
    for p in params:
        if p.grad is not None and count:
            pieces.append((p.grad.data.ravel() * count).astype(np.float64))
        else:
            pieces.append(xp.zeros(p.data.size))
    pieces += [(b.data.ravel() * count).astype(np.float64) for b in buffers]
    tail = [p.grad is not None and count > 0 for p in params] + [count] + list(extras)
    pieces.append(xp.asarray(np.array(tail, np.float64)))
    total = group.all_reduce(xp.concatenate(pieces))
    o = sum(p.data.size for p in params) + sum(b.data.size for b in buffers)
    tail = to_numpy(total[o:])
    has_grad, n = tail[:len(params)], tail[len(params)]
    scale, o = 1.0 / max(n, 1), 0
    for p, has in zip(params, has_grad):
        p.grad = Tensor((total[o:o + p.data.size] * scale).reshape(p.data.shape).astype(p.data.dtype)) if has else None
        o += p.data.size
    for b in buffers:
        if n:
            b._write_((total[o:o + b.data.size] * scale).reshape(b.data.shape))
        o += b.data.size
    return n, tail[len(params) + 1:]


def broadcast_parameters(group, tensors, root=0):
    """Give every rank rank ``root``'s values of ``tensors`` (parameters and buffers), in one broadcast; as
    ChainerMN and DDP do before the first step, so that replicas built apart start the same."""
    tensors = list(tensors)
    if not tensors:
        return
    xp = get_array_module(tensors[0].data)
    total = group.broadcast(xp.concatenate([t.data.ravel().astype(np.float64) for t in tensors]), root)
    o = 0
    for t in tensors:
        t._write_(total[o:o + t.data.size].reshape(t.data.shape))
        o += t.data.size


def float_buffers(model):
    """The model's floating-point buffers (BatchNorm running mean and variance), which ranks average."""
    return [b for b in model.buffers() if b.data.dtype.kind == "f"]


def vector_size(model, extras):
    """How long a vector ``average_gradients`` sends for ``model`` with ``extras`` numbers (and, being
    longer, the most ``broadcast_parameters`` sends of its parameters and float buffers)."""
    params = list(model.parameters())
    return sum(p.data.size + 1 for p in params) + sum(b.data.size for b in float_buffers(model)) + 1 + extras


__all__ = ["average_gradients", "broadcast_parameters", "float_buffers", "vector_size"]
