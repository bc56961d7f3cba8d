"""skengine: a from-scratch deep-learning engine on NumPy/CuPy for Selective Kernel Networks."""
import numpy as np

from .autograd import Tensor, enable_grad, is_grad_enabled, no_grad
from .backend import cuda_available, get_array_module, to_device
from .gradcheck import GradcheckError, gradcheck, gradcheck_module
from .ops import cat, clamp, matmul, split, stack, where
from .parallel import get_num_threads, set_num_threads
from .random import manual_seed
from .serialization import load, save
from .summary import summary

__version__ = "0.1.0"

float32, float64, int64 = np.float32, np.float64, np.int64


def tensor(data, requires_grad=False, dtype=None, device="cpu"):
    """A new Tensor holding a copy of ``data``."""
    data = data.data if isinstance(data, Tensor) else data
    xp = get_array_module(data)
    data = data.copy() if isinstance(data, xp.ndarray) else data  # Python values are converted anyway
    return Tensor(to_device(Tensor(data, dtype=dtype).data, device), requires_grad=requires_grad)


def _shape(size):
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)


def zeros(*size, dtype=np.float32, device="cpu", requires_grad=False):
    return Tensor(to_device(np.zeros(_shape(size), dtype), device), requires_grad=requires_grad)


def ones(*size, dtype=np.float32, device="cpu", requires_grad=False):
    return Tensor(to_device(np.ones(_shape(size), dtype), device), requires_grad=requires_grad)


def randn(*size, dtype=np.float32, device="cpu", requires_grad=False):
    from .random import generator
    data = generator().standard_normal(_shape(size)).astype(dtype)
    return Tensor(to_device(data, device), requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False):
    dtype = dtype or (np.float32 if isinstance(fill_value, float) else np.asarray(fill_value).dtype)
    return Tensor(to_device(np.full(_shape((size,)), fill_value, dtype), device), requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return Tensor(get_array_module(t.data).zeros(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return Tensor(get_array_module(t.data).ones(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def from_numpy(array):
    """A Tensor sharing ``array``'s memory (no copy), like torch.from_numpy."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def arange(*args, dtype=None, device="cpu"):
    """Like torch.arange: int64 for integer arguments, else float32 (torch's default dtype)."""
    if dtype is None and any(isinstance(a, float) for a in args):
        dtype = np.float32
    return Tensor(to_device(np.arange(*args, dtype=dtype), device))


__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "arange", "full", "zeros_like", "ones_like", "from_numpy",
           "matmul", "where", "clamp", "no_grad", "enable_grad",
           "is_grad_enabled", "gradcheck", "gradcheck_module", "GradcheckError", "save", "load", "manual_seed", "cat", "stack",
           "split", "cuda_available", "get_num_threads", "set_num_threads", "get_array_module", "summary", "float32", "float64", "int64"]
