"""The fully connected map."""
from .. import ops
from .args import check_tensor


def linear(input, weight, bias=None):
    """input @ weight.T + bias, with weight shaped (out_features, in_features)."""
    x, w = check_tensor(input, "input"), check_tensor(weight, "weight")
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input {x.shape} does not match weight {w.shape} "
                         f"(expected input (..., {w.shape[1] if w.ndim == 2 else '?'}))")
    if bias is not None and tuple(bias.shape) != (w.shape[0],):
        raise ValueError(f"linear: bias must have shape ({w.shape[0]},) for weight {w.shape}, got {tuple(bias.shape)}")
    y = ops.matmul(x, ops.transpose(w, 0, 1))
    return y if bias is None else y + bias
