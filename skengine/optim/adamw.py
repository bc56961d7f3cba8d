"""AdamW (decoupled weight decay), with the exact update rule of torch.optim.AdamW."""
from .adam import Adam


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter), as in PyTorch: ``Adam`` (see its
    update) with ``decoupled_weight_decay=True``, i.e. ``p = p * (1 - lr * weight_decay)`` before the
    Adam step instead of adding ``weight_decay * p`` to the gradient; weight_decay defaults to 1e-2.
    The flag stays True in every param group, also after ``load_state_dict()``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
