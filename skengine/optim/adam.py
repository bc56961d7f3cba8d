"""Adam (L2 or decoupled weight decay), with the exact update rule of torch.optim.Adam."""

from ..backend import get_array_module
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam, as in PyTorch (``AdamW`` is this class with decoupled weight decay).

    For each parameter with gradient ``g``, at step ``t`` (1, 2, ...)::

        g   = -g                                    (if maximize)
        g   = g + weight_decay * p                  (L2, the default), or
        p   = p * (1 - lr * weight_decay)           (decoupled_weight_decay: AdamW)
        m   = lerp(m, g, 1 - beta1)                 # m + (1-beta1) * (g - m)
        v   = beta2 * v + (1 - beta2) * g * g
        vm  = max(vm, v) if amsgrad else v
        den = sqrt(vm) / sqrt(1 - beta2**t) + eps
        p   = p - lr / (1 - beta1**t) * m / den

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate (default 1e-3).
        betas: coefficients of the running averages (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: weight decay (default 0).
        amsgrad: use the AMSGrad variant.
        maximize: maximize the objective (the gradient is negated).
        decoupled_weight_decay: decay the weights directly (AdamW) instead of
            adding ``weight_decay * p`` to the gradient.

    State per parameter: ``'step'`` (int), ``'exp_avg'``, ``'exp_avg_sq'`` and,
    with amsgrad, ``'max_exp_avg_sq'``.  PyTorch's ``foreach``, ``fused``,
    ``capturable`` and ``differentiable`` options have no counterpart here.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        self._check_lr_and_weight_decay(group)
        if not group["eps"] >= 0.0:
            raise ValueError(f"Invalid epsilon value: {group['eps']} (must be >= 0)")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(float(b) for b in betas)
        for i, b in enumerate(group["betas"]):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b} (must be in [0, 1))")

    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr = float(group["lr"])
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = float(group["eps"])
            weight_decay = float(group["weight_decay"])
            amsgrad = bool(group["amsgrad"])
            decoupled = bool(group["decoupled_weight_decay"])
            for p, p_data, g in self._params_with_grad(group):  # g negated if maximize
                xp = get_array_module(p_data)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p_data)
                    state["exp_avg_sq"] = xp.zeros_like(p_data)
                    if amsgrad:
                        state["max_exp_avg_sq"] = xp.zeros_like(p_data)
                elif amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = xp.zeros_like(p_data)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] = step = int(state["step"]) + 1

                if weight_decay != 0:
                    if decoupled:
                        p_data *= 1 - lr * weight_decay
                    else:
                        g = g + weight_decay * p_data                # grad.add(p, alpha=wd)

                # exp_avg.lerp_(g, 1 - beta1), with torch's two-sided lerp formula
                w = 1 - beta1
                tmp = xp.subtract(g, exp_avg, dtype=p_data.dtype)   # g - m
                if abs(w) < 0.5:
                    tmp *= w
                    exp_avg += tmp                                   # m + w*(g - m)
                else:
                    tmp *= 1 - w
                    xp.subtract(g, tmp, out=exp_avg)                 # g - (g - m)*(1 - w)

                # exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                exp_avg_sq *= beta2
                xp.multiply(g, 1 - beta2, out=tmp)
                tmp *= g
                exp_avg_sq += tmp

                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                step_size = lr / bias_correction1
                bias_correction2_sqrt = bias_correction2 ** 0.5

                if amsgrad:
                    max_sq = state["max_exp_avg_sq"]
                    xp.maximum(max_sq, exp_avg_sq, out=max_sq)
                    xp.sqrt(max_sq, out=tmp)
                else:
                    xp.sqrt(exp_avg_sq, out=tmp)
                tmp /= bias_correction2_sqrt
                tmp += eps                                           # denom
                # p.addcdiv_(m, denom, value=-step_size)
                xp.divide(exp_avg, tmp, out=tmp)
                tmp *= -step_size
                p_data += tmp
        return loss
