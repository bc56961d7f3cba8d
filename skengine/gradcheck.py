"""Check a function's backward against central finite differences, in float64.

    skengine.gradcheck(lambda x, w: F.conv2d(x, w, padding=1), (x, w))

The output is projected on a fixed random direction r, so one scalar
L = sum(f(inputs) * r) is differentiated: its analytic gradient (one
backward) is compared, element by element, with (L(x+eps) - L(x-eps)) / 2eps.
As in torch.autograd.gradcheck, an element passes when
|analytic - numeric| <= atol + rtol * |numeric|; NaN never passes (nor does an
infinity against anything but the same infinity).  Inputs keep their strides
(a transposed or sliced view is checked as such) and are nudged in place.
"""
import numpy as np

from .autograd import Tensor
from .backend import get_array_module, to_numpy


class GradcheckError(AssertionError):
    """Raised when analytic and numeric gradients disagree; names the worst element."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """True if fn's gradients w.r.t. every input that requires grad match finite differences.

    ``inputs``: a Tensor or a tuple of Tensors (only those with requires_grad
    are checked).  They are copied to float64, so fn must not depend on their
    identity; fn may return a Tensor or a tuple of Tensors.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    xs = [Tensor(_float64_copy(x.data), requires_grad=x.requires_grad) if isinstance(x, Tensor) else x
          for x in inputs]
    checked = [i for i, x in enumerate(xs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    outs = _outputs(fn(*xs))
    rng = np.random.default_rng(seed)
    xp = get_array_module(outs[0].data)
    directions = [xp.asarray(rng.standard_normal(o.shape)) for o in outs]

    def project(outs):
        return sum(float((o.data.astype(np.float64) * r).sum()) for o, r in zip(outs, directions))

    total = sum(((o * Tensor(r)).sum() for o, r in zip(outs, directions)), start=Tensor(xp.zeros(())))
    for i in checked:
        xs[i].grad = None
    total.backward()
    for i in checked:
        x = xs[i]
        analytic = np.zeros(x.shape) if x.grad is None else to_numpy(x.grad.data)
        numeric = np.zeros(x.shape)
        # nudge x's own array in place, whatever its strides: a reshape(-1) of a non-contiguous
        # array would be a copy, and the nudges would never reach fn
        contiguous = x.data.flags.c_contiguous
        target = x.data.reshape(-1) if contiguous else x.data
        positions = range(x.data.size) if contiguous else np.ndindex(*x.shape)
        for k, pos in enumerate(positions):
            orig = float(target[pos])
            target[pos] = orig + eps
            plus = project(_outputs(fn(*xs)))
            target[pos] = orig - eps
            minus = project(_outputs(fn(*xs)))
            target[pos] = orig
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        # torch.allclose(analytic, numeric, rtol, atol): NaN is never close, an infinity only to itself
        bad = ~np.isclose(analytic, numeric, rtol=rtol, atol=atol, equal_nan=False)
        if bad.any():
            nonfinite = bad & ~(np.isfinite(analytic) & np.isfinite(numeric))
            with np.errstate(invalid="ignore"):
                err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            worst = np.argmax(nonfinite) if nonfinite.any() else np.argmax(np.where(bad, err, -np.inf))
            worst = np.unravel_index(worst, x.shape)
            if raise_exception:
                what = f"{int(bad.sum())} of {bad.size} elements fail"
                if nonfinite.any():
                    what += f", {int(nonfinite.sum())} of them with a NaN or infinite gradient"
                raise GradcheckError(
                    f"gradcheck: gradient of input {i} (shape {x.shape}) is wrong at index {tuple(map(int, worst))}: "
                    f"analytic {analytic[worst]:.6g}, numeric {numeric[worst]:.6g} "
                    f"(atol={atol}, rtol={rtol}; {what})")
            return False
    return True


def _float64_copy(a):
    """A float64 copy of ``a`` with the same strides, up to the itemsize (a transposed, sliced or
    reversed view stays one, so fn sees the layout it was given); a compact copy where the strides
    overlap (a broadcast view: one nudge would move several elements) or on another array module."""
    if not isinstance(a, np.ndarray) or a.ndim == 0 or a.size == 0 or a.flags.c_contiguous:
        return a.astype(np.float64, copy=True)
    dims = [(n, s) for n, s in zip(a.shape, a.strides) if n > 1]
    if any(s % a.itemsize for _, s in dims):
        return np.array(a, dtype=np.float64, order="C")
    steps = [(n, s // a.itemsize) for n, s in dims]
    reach = 0  # elements spanned by the faster axes: the next stride must step past them
    for n, s in sorted(steps, key=lambda d: abs(d[1])):
        if abs(s) <= reach:
            return np.array(a, dtype=np.float64, order="C")
        reach += abs(s) * (n - 1)
    low = sum(s * (n - 1) for n, s in steps if s < 0)
    high = sum(s * (n - 1) for n, s in steps if s > 0)
    buffer = np.full(high - low + 1, np.nan)  # the gaps between the elements: NaN, should fn read them
    strides = [s // a.itemsize * 8 if n > 1 else 8 for n, s in zip(a.shape, a.strides)]
    out = np.lib.stride_tricks.as_strided(buffer[-low:], a.shape, strides)
    out[...] = a
    return out


def _outputs(y):
    outs = y if isinstance(y, (tuple, list)) else (y,)
    if not all(isinstance(o, Tensor) for o in outs):
        raise TypeError("gradcheck: fn must return a Tensor or a tuple of Tensors")
    return outs


def gradcheck_module(module, *inputs, **tolerances):
    """gradcheck of ``module(*inputs)`` w.r.t. the inputs that require grad AND every parameter.

    The module is run in float64 (``module.double()``, left so afterwards);
    during the check its parameters are swapped for the checked copies.
    """
    module.double()
    slots = []
    for _, m in module.named_modules():
        slots += [(m, name) for name, p in m._parameters.items() if p is not None]
    originals = [m._parameters[name] for m, name in slots]

    def run(*tensors):
        xs, ps = tensors[:len(inputs)], tensors[len(inputs):]
        for (m, name), p in zip(slots, ps):
            m._parameters[name] = p
        return module(*xs)

    params = [Tensor(p.data.copy(), requires_grad=True) for p in originals]
    try:
        return gradcheck(run, tuple(inputs) + tuple(params), **tolerances)
    finally:
        for (m, name), p in zip(slots, originals):
            m._parameters[name] = p
