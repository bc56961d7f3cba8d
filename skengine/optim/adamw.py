"""AdamW (decoupled weight decay), with the exact update rule of torch.optim.AdamW."""
from .adam import Adam


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter), as in PyTorch.

    For each parameter with gradient ``g``, at step ``t`` (1, 2, ...)::

        g   = -g                                    (if maximize)
        p   = p * (1 - lr * weight_decay)
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
        weight_decay: decoupled weight decay (default 1e-2).
        amsgrad: use the AMSGrad variant.
        maximize: maximize the objective (the gradient is negated).

    As in PyTorch, this is ``Adam`` with ``decoupled_weight_decay=True`` (kept
    True in every param group, also after ``load_state_dict()``).
    State per parameter: ``'step'`` (int), ``'exp_avg'``, ``'exp_avg_sq'`` and,
    with amsgrad, ``'max_exp_avg_sq'``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
