"""Losses: cross-entropy (class indices or probabilities, weights, ignore_index, label smoothing)
and negative log-likelihood, with PyTorch's reductions."""
import math

from .. import ops
from ..autograd import Function, Tensor
from ..backend import get_array_module
from .activation import log_softmax, log_softmax_array
from .args import check_tensor


class CrossEntropy(Function):
    """-sum_c q_c * w_c * log_softmax(x)_c for each row of (M, C) logits, q the smoothed one-hot target.

    Plain (weight and valid None): every w_c = 1, no row ignored, and 'mean'
    divides by M.  Otherwise ``weight`` (C,) weighs the classes, ``valid``
    (M,) marks the rows not ignored (their target is a valid index; the others
    hold 0) and 'mean' divides by the summed weight of the valid rows' targets,
    as PyTorch.  With W = sum_c w_c, the gradient of a row is
    p * ((1-eps) w_t + eps/C W) - eps/C w - (1-eps) w_t onehot(t).
    """

    def __init__(self, target, label_smoothing, reduction, weight=None, valid=None):
        self.target, self.eps, self.reduction = target, label_smoothing, reduction
        self.weight, self.valid = weight, valid

    def forward(self, x):
        xp = get_array_module(x)
        N, C = x.shape
        logp = log_softmax_array(x, 1)
        picked = xp.take_along_axis(logp, self.target[:, None], axis=1)[:, 0]
        self.p = xp.exp(logp)
        if self.weight is None and self.valid is None:
            loss = -(1 - self.eps) * picked - (self.eps / C) * logp.sum(axis=1)
            self.total = N
        else:
            w = xp.ones(C, x.dtype) if self.weight is None else self.weight.astype(x.dtype, copy=False)
            valid = xp.ones(N, bool) if self.valid is None else self.valid
            self.w, self.wt = w, xp.where(valid, w[self.target], 0).astype(x.dtype)  # each row's target weight
            loss = -(1 - self.eps) * self.wt * picked
            if self.eps:
                loss -= (self.eps / C) * (logp @ w)
            loss = xp.where(valid, loss, 0)  # ignored rows count 0, even with non-finite logits
            self.total = self.wt.sum()
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / self.total if self.total else xp.full((), xp.nan, x.dtype)  # all ignored: nan

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C = self.p.shape
        rows = xp.arange(N)
        if self.weight is None and self.valid is None:
            g = self.p - self.eps / C
            g[rows, self.target] -= 1 - self.eps
        else:
            valid = xp.ones(N, bool) if self.valid is None else self.valid
            g = self.p * ((1 - self.eps) * self.wt + valid * (self.eps / C * self.w.sum()))[:, None]
            if self.eps:
                g -= (self.eps / C) * valid[:, None] * self.w
            g[rows, self.target] -= (1 - self.eps) * self.wt
        if self.reduction == "none":
            return g * gy[:, None]
        if self.reduction == "sum":
            return g * gy
        return g * (gy / self.total) if self.total else xp.zeros_like(g)  # all ignored: no gradient, as PyTorch


def reduction_mode(reduction, size_average, reduce, name):
    """The reduction, from PyTorch's deprecated size_average / reduce when either is given."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else "mean" if size_average else "sum"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _rows(x):
    """(N, C) or (C,) or (N, C, d1, ...) scores as (M, C) rows, class axis last, and the per-row shape."""
    if x.ndim == 1:
        return x.reshape(1, -1), ()
    if x.ndim == 2:
        return x, x.shape[:1]
    C = x.shape[1]
    return x.permute(0, *range(2, x.ndim), 1).reshape(-1, C), (x.shape[0],) + x.shape[2:]


def _class_targets(x, target, ignore_index, name, probabilities_allowed=False):
    """Validated integer class indices for scores x, as an array beside x, flattened to (M,),
    with the mask of rows that are not ignore_index (None when none is)."""
    xp = get_array_module(x.data)
    t = xp.asarray(target.data if isinstance(target, Tensor) else target)
    if x.ndim == 0:
        raise ValueError(f"{name}: input must have shape (C,), (N, C) or (N, C, d1, ...), got {x.shape}")
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    expected = () if x.ndim == 1 else x.shape[:1] + x.shape[2:]
    if probabilities_allowed and t.shape == x.shape and t.shape != expected:
        raise TypeError(f"{name}: a target shaped like the input {x.shape} holds class probabilities and must "
                        f"be floating point, got dtype {t.dtype}")
    if t.dtype.kind not in "iu":
        also = f" or class probabilities shaped like the input {x.shape}" if probabilities_allowed else ""
        raise TypeError(f"{name}: target must hold integer class indices{also}, got dtype {t.dtype} "
                        f"and shape {t.shape}")
    if t.shape != expected:
        raise ValueError(f"{name}: target must have shape {expected} for input {x.shape}, got {t.shape}")
    t = t.reshape(-1)
    ignored = t == ignore_index
    valid = None if not bool(ignored.any()) else ~ignored
    kept = t if valid is None else t[valid]
    if kept.size and (int(kept.min()) < 0 or int(kept.max()) >= C):
        raise ValueError(f"{name}: target values must lie in [0, {C}), got min {int(kept.min())} "
                         f"and max {int(kept.max())} (ignore_index={ignore_index} aside)")
    if valid is not None:
        t = xp.where(valid, t, 0)
    return t.astype(xp.int64, copy=False), valid


def _class_weight(x, weight, name):
    """The class weights (C,) as an array beside x, or None."""
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else get_array_module(x.data).asarray(weight)
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    if w.shape != (C,):
        raise ValueError(f"{name}: weight must have shape ({C},), one per class, for input {x.shape}, got {w.shape}")
    return w


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy of logits against class indices or class probabilities, as torch.nn.functional.cross_entropy.

    input (C,), (N, C) or (N, C, d1, ...); target the class indices (), (N,)
    or (N, d1, ...) (ignore_index: rows that count for nothing), or
    probabilities of the input's shape.  weight (C,) weighs the classes; with
    indices 'mean' divides by the summed weight of the counted targets, with
    probabilities by the number of rows.  label_smoothing mixes the target
    with the uniform distribution.
    """
    x = check_tensor(input, "input")
    xp = get_array_module(x.data)
    reduction = reduction_mode(reduction, size_average, reduce, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    w = _class_weight(x, weight, "cross_entropy")
    raw = target.data if isinstance(target, Tensor) else xp.asarray(target)
    if raw.dtype.kind == "f" and x.ndim > 0 and raw.shape == x.shape:
        loss = _cross_entropy_probabilities(x, target, w, ignore_index, reduction, float(label_smoothing))
    else:
        t, valid = _class_targets(x, target, ignore_index, "cross_entropy", probabilities_allowed=True)
        rows, shape = _rows(x)
        loss = CrossEntropy(t, float(label_smoothing), reduction, w, valid)(rows)
        loss = loss.reshape(shape) if reduction == "none" else loss
    if reduction != "none" and not bool(xp.isfinite(loss.data)) and not bool(xp.isfinite(x.data).all()):
        raise ValueError(f"cross_entropy: the loss is {float(loss.data)}: the logits contain NaN or inf")
    return loss


def _cross_entropy_probabilities(x, target, weight, ignore_index, reduction, label_smoothing):
    """-sum_c w_c q_c log_softmax(x)_c, q the (smoothed) target probabilities; differentiable in x and target."""
    if ignore_index != -100:
        raise ValueError(f"cross_entropy: ignore_index is not supported for class-probability targets "
                         f"(target {tuple(target.shape)} shaped like the input), got ignore_index={ignore_index}")
    if not isinstance(target, Tensor) or (not target.requires_grad and target.dtype != x.dtype):
        target = Tensor(getattr(target, "data", target), dtype=x.dtype)
    rows, shape = _rows(x)
    q, _ = _rows(target)
    C = rows.shape[1]
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / C
    if weight is not None:
        q = q * Tensor(weight.astype(x.dtype, copy=False))
    loss = -(log_softmax(rows, 1) * q).sum(dim=1)
    if reduction == "none":
        return loss.reshape(shape)
    return loss.mean() if reduction == "mean" else loss.sum()


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities at integer targets, as torch.nn.functional.nll_loss.

    input (C,), (N, C) or (N, C, d1, ...) with target (), (N,) or (N, d1, ...);
    weight and ignore_index as in cross_entropy.
    """
    x = check_tensor(input, "input")
    xp = get_array_module(x.data)
    reduction = reduction_mode(reduction, size_average, reduce, "nll_loss")
    w = _class_weight(x, weight, "nll_loss")
    t, valid = _class_targets(x, target, ignore_index, "nll_loss")
    rows, shape = _rows(x)
    picked = ops.take_along_dim(rows, t[:, None], 1)[:, 0]
    if w is None and valid is None:
        loss = -picked
        total = loss.shape[0]
    else:
        wt = xp.ones(t.shape, x.dtype) if w is None else w.astype(x.dtype, copy=False)[t]
        wt = wt if valid is None else xp.where(valid, wt, 0).astype(x.dtype)
        loss, total = -picked * Tensor(wt), wt.sum()
    if reduction == "none":
        return loss.reshape(shape)
    if reduction == "sum":
        return loss.sum()
    if not total:  # every target ignored: nan with no gradient, as PyTorch
        return loss.sum() * 0 + math.nan
    return loss.sum() / total
