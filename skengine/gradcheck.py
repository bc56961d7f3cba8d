"""Check a function's backward against central finite differences, in float64.

    skengine.gradcheck(lambda x, w: F.conv2d(x, w, padding=1), (x, w))

The output is projected on a fixed random direction r, so one scalar
L = sum(f(inputs) * r) is differentiated: its analytic gradient (one
backward) is compared, element by element, with (L(x+eps) - L(x-eps)) / 2eps.
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
    xs = [Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad) if isinstance(x, Tensor) else x
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
        flat = x.data.reshape(-1)  # a view: perturb in place
        for k in range(flat.size):
            orig = float(flat[k])
            flat[k] = orig + eps
            plus = project(_outputs(fn(*xs)))
            flat[k] = orig - eps
            minus = project(_outputs(fn(*xs)))
            flat[k] = orig
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if (err > 0).any():
            worst = np.unravel_index(np.argmax(err), x.shape)
            if raise_exception:
                raise GradcheckError(
                    f"gradcheck: gradient of input {i} (shape {x.shape}) is wrong at index {tuple(map(int, worst))}: "
                    f"analytic {analytic[worst]:.6g}, numeric {numeric[worst]:.6g} "
                    f"(atol={atol}, rtol={rtol}; {(err > 0).sum()} of {err.size} elements fail)")
            return False
    return True


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
