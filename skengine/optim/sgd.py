"""Stochastic gradient descent, with the exact update rule of torch.optim.SGD."""
from ..backend import get_array_module
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""SGD with optional momentum, dampening, L2 weight decay and Nesterov.

    For each parameter with gradient ``g`` (PyTorch's rule, step by step)::

        g = -g                                        (if maximize)
        g = g + weight_decay * p                      (if weight_decay != 0)
        if momentum != 0:
            buf = g                                   (first step: no dampening)
            buf = momentum * buf + (1 - dampening) * g   (later steps)
            g = g + momentum * buf  if nesterov else  buf
        p = p - lr * g

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate (default 1e-3, as in PyTorch 2.x).
        momentum, dampening, weight_decay: as above (>= 0).
        nesterov: Nesterov momentum; needs momentum > 0 and dampening == 0.
        maximize: maximize the objective (the gradient is negated).

    State per parameter: ``'momentum_buffer'`` (only when momentum != 0).
    PyTorch's ``foreach``, ``fused`` and ``differentiable`` options have no
    counterpart here.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        self._check_lr_and_weight_decay(group)
        if group["momentum"] < 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']} (must be >= 0)")
        if group["dampening"] < 0.0:
            raise ValueError(f"Invalid dampening value: {group['dampening']} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr = float(group["lr"])
            momentum = float(group["momentum"])
            dampening = float(group["dampening"])
            weight_decay = float(group["weight_decay"])
            nesterov = bool(group["nesterov"])
            for p, p_data, g in self._params_with_grad(group):  # g negated if maximize
                xp = get_array_module(p_data)
                if weight_decay != 0:
                    g = g + weight_decay * p_data          # new array: never touch p.grad
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = xp.array(g, dtype=p_data.dtype, copy=True)
                        state["momentum_buffer"] = buf
                    else:
                        buf *= momentum
                        if dampening == 0:
                            buf += g
                        else:
                            buf += (1.0 - dampening) * g
                    if nesterov:
                        g = g + momentum * buf
                    else:
                        g = buf
                # p.add_(g, alpha=-lr)  ==  p + (-lr) * g
                p_data += (-lr) * g
        return loss
