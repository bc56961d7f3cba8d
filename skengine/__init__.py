"""skengine: a from-scratch deep-learning engine on NumPy/CuPy for Selective Kernel Networks."""
import numpy as np

from . import ops
from .autograd import Tensor, enable_grad, is_grad_enabled, no_grad, shape_arg
from .backend import cuda_available, get_array_module, to_device
from .gradcheck import GradcheckError, gradcheck, gradcheck_module
from .ops import cat, clamp, matmul, split, stack, where
from .parallel import get_num_threads, set_num_threads
from .random import manual_seed
from .serialization import load, save
from .summary import summary

__version__ = "0.1.0"

float16, float32, float64 = np.float16, np.float32, np.float64
int32, int64, bool = np.int32, np.int64, np.bool_  # noqa: A001 (torch.bool's name)


def tensor(data, requires_grad=False, dtype=None, device="cpu"):
    """A new Tensor holding a copy of ``data``."""
    data = data.data if isinstance(data, Tensor) else data
    xp = get_array_module(data)
    data = data.copy() if isinstance(data, xp.ndarray) else data  # Python values are converted anyway
    return Tensor(to_device(Tensor(data, dtype=dtype).data, device), requires_grad=requires_grad)


def zeros(*size, dtype=np.float32, device="cpu", requires_grad=False):
    return Tensor(to_device(np.zeros(shape_arg(size), dtype), device), requires_grad=requires_grad)


def ones(*size, dtype=np.float32, device="cpu", requires_grad=False):
    return Tensor(to_device(np.ones(shape_arg(size), dtype), device), requires_grad=requires_grad)


def randn(*size, dtype=np.float32, device="cpu", requires_grad=False):
    from .random import generator
    data = generator().standard_normal(shape_arg(size)).astype(dtype)
    return Tensor(to_device(data, device), requires_grad=requires_grad)


def rand(*size, dtype=np.float32, device="cpu", requires_grad=False):
    """Uniform on [0, 1), from the engine's seeded stream."""
    from .random import generator
    data = generator().random(shape_arg(size)).astype(dtype)
    return Tensor(to_device(data, device), requires_grad=requires_grad)


def randint(low, high=None, size=None, dtype=np.int64, device="cpu"):
    """Integers uniform on [low, high) (or [0, low) when high is None), like torch.randint."""
    from .random import generator
    low, high = (0, low) if high is None else (low, high)
    if size is None:
        raise TypeError("randint: size must be given, e.g. randint(0, 10, (3,))")
    return Tensor(to_device(generator().integers(low, high, shape_arg((size,))).astype(dtype), device))


def empty(*size, dtype=np.float32, device="cpu", requires_grad=False):
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def linspace(start, end, steps, dtype=np.float32, device="cpu"):
    return Tensor(to_device(np.linspace(start, end, steps, dtype=dtype), device))


def eye(n, m=None, dtype=np.float32, device="cpu"):
    return Tensor(to_device(np.eye(n, m, dtype=dtype), device))


def _function_form(name):
    """``skengine.NAME(x, ...)`` = ``x.NAME(...)``, as ``torch.NAME(x, ...)`` is the method."""
    def fn(input, *args, **kwargs):
        if not isinstance(input, Tensor):
            raise TypeError(f"skengine.{name}: input must be a Tensor, got {type(input).__name__}")
        return getattr(input, name)(*args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``skengine.{name}(x, ...)`` is ``x.{name}(...)``, as in torch."
    return fn


_FUNCTION_FORMS = ("exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "sum", "mean", "amax", "amin", "max",
                   "min", "argmax", "argmin", "var", "std", "reshape", "flatten", "transpose", "permute", "squeeze",
                   "unsqueeze", "clone", "detach")
globals().update({name: _function_form(name) for name in _FUNCTION_FORMS})


def pow(input, exponent):  # noqa: A001 (torch.pow's name)
    """input ** exponent; either may be a Python number."""
    return input ** exponent if isinstance(input, Tensor) else ops.rpow(input, exponent)


def softmax(input, dim):
    from .functional import softmax as f
    return f(input, dim)


def log_softmax(input, dim):
    from .functional import log_softmax as f
    return f(input, dim)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False):
    dtype = dtype or (np.float32 if isinstance(fill_value, float) else np.asarray(fill_value).dtype)
    return Tensor(to_device(np.full(shape_arg((size,)), fill_value, dtype), device), requires_grad=requires_grad)


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
           "matmul", "where", "clamp", "rand", "randint", "empty", "linspace", "eye", "pow", "softmax", "log_softmax",
           "float16", "int32", "bool", *_FUNCTION_FORMS, "no_grad", "enable_grad", "is_grad_enabled", "gradcheck",
           "gradcheck_module", "GradcheckError", "save", "load", "manual_seed", "cat", "stack", "split",
           "cuda_available", "get_num_threads", "set_num_threads", "get_array_module", "summary", "float32", "float64",
           "int64"]
