"""Tensor operators, each a Function with its local backward beside its forward.

Gradients of broadcast inputs are summed back to shape by the engine
(``autograd.sum_to``), so the binary ops here ignore broadcasting.
"""
import builtins
import math
import numbers
from collections import namedtuple

import numpy as np

from .autograd import Function, Tensor, is_grad_enabled, sum_to
from .backend import device_of, get_array_module, scatter_add, to_device

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}  # bool < integer < floating point


def as_tensor(value, like):
    """``value`` as a Tensor on ``like``'s device; a Python/NumPy value takes ``like``'s dtype
    unless its kind ranks higher (a float with an integer tensor gives float32, an int with a
    bool tensor int64), as torch treats scalars."""
    if isinstance(value, Tensor):
        return value
    kind = (value.dtype.kind if hasattr(value, "dtype") else "b" if isinstance(value, bool) else
            "i" if isinstance(value, numbers.Integral) else "f" if isinstance(value, float) else
            np.asarray(value).dtype.kind)
    dtype = like.dtype
    if _CATEGORY.get(kind, 2) > _CATEGORY.get(dtype.kind, 2):
        dtype = np.float32 if kind == "f" else np.int64
    return Tensor(get_array_module(like.data).asarray(value, dtype=dtype))


def _promote(a, b):
    """Two tensors for a binary op, with torch's promotion: a scalar follows the tensor's
    dtype (see as_tensor), and between tensors of different kinds (bool, integer, float)
    the lower kind is cast to the higher one's dtype (int64 + float32 gives float32)."""
    if not isinstance(a, Tensor):
        a = as_tensor(a, b) if isinstance(b, Tensor) else Tensor(a)
    b = as_tensor(b, a)
    if a.ndim == 0 and b.device != a.device:  # a 0-d tensor goes where the other operand is, as in torch
        a = a.to(b.device)
    elif b.ndim == 0 and a.device != b.device:
        b = b.to(a.device)
    ka, kb = _CATEGORY.get(a.dtype.kind, 2), _CATEGORY.get(b.dtype.kind, 2)
    if ka == kb and a.dtype != b.dtype and (a.ndim == 0) != (b.ndim == 0):  # a 0-d tensor follows, as in torch
        a, b = (a.to(dtype=b.dtype), b) if a.ndim == 0 else (a, b.to(dtype=a.dtype))
    elif ka < kb:
        a = Tensor(a.data.astype(b.dtype))  # only the higher (floating) side can carry a gradient
    elif kb < ka:
        b = Tensor(b.data.astype(a.dtype))
    return a, b


# -- arithmetic ---------------------------------------------------------------
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return gy, gy


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        return gy, -gy


class Mul(Function):
    def forward(self, a, b):  # keeps only what the wanted gradients need (b for a's, a for b's)
        need_a, need_b = self.needs_input_grad
        self.a, self.b = (a if need_b else None), (b if need_a else None)
        return a * b

    def backward(self, gy):
        return (None if self.b is None else gy * self.b), (None if self.a is None else gy * self.a)


class Div(Function):
    def forward(self, a, b):  # b for both gradients, a only for b's
        self.a, self.b = (a if self.needs_input_grad[1] else None), b
        return a / b

    def backward(self, gy):
        gb = None if self.a is None else -gy * self.a / (self.b * self.b)
        return gy / self.b, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    def __init__(self, p):
        self.p = p

    def forward(self, x):
        self.x = x
        return x ** self.p

    def backward(self, gy):
        if self.p == 0:  # d/dx x**0 = 0 everywhere, also at x = 0 (where x**-1 is inf)
            return get_array_module(gy).zeros_like(gy)
        return gy * self.p * self.x ** (self.p - 1)


class RPow(Function):
    """base ** x for a Python number base > 0: d/dx = base**x * ln(base)."""

    def __init__(self, base):
        self.base = base

    def forward(self, x):
        self.y = get_array_module(x).power(x.dtype.type(self.base), x)
        return self.y

    def backward(self, gy):
        return gy * self.y * self.y.dtype.type(np.log(self.base))


class MatMul(Function):
    """a @ b with NumPy's batching rules (1-D operands promoted and squeezed)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        xp = get_array_module(gy)
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        if self.b.ndim == 1:  # first, so that a 0-d gy (1-D @ 1-D) becomes (1, 1)
            gy = xp.expand_dims(gy, -1)
        if self.a.ndim == 1:
            gy = xp.expand_dims(gy, -2)
        ga = gy @ xp.swapaxes(b, -1, -2)
        gb = xp.swapaxes(a, -1, -2) @ gy
        if self.a.ndim == 1:
            ga = (ga.sum(axis=tuple(range(ga.ndim - 2))) if ga.ndim > 2 else ga).reshape(self.a.shape)
        if self.b.ndim == 1:
            gb = (gb.sum(axis=tuple(range(gb.ndim - 2))) if gb.ndim > 2 else gb).reshape(self.b.shape)
        return ga, gb


def add(a, b): return Add()(*_promote(a, b))
def sub(a, b): return Sub()(*_promote(a, b))
def mul(a, b): return Mul()(*_promote(a, b))
def div(a, b):
    a, b = _promote(a, b)
    if a.dtype.kind != "f":  # true division of integers gives float32, as in torch
        a, b = Tensor(a.data.astype(np.float32)), Tensor(b.data.astype(np.float32))
    return Div()(a, b)
def neg(x): return Neg()(x)
def matmul(a, b):
    a, b = (t if isinstance(t, Tensor) else Tensor(t) for t in (a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match: the last dimension of the first "
                         f"({k_a}) must equal the {'only' if b.ndim == 1 else 'second-to-last'} dimension of the "
                         f"second ({k_b})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of shapes {a.shape} and {b.shape} do not broadcast") from None
    return MatMul()(a, b)


def pow(x, p):
    if not isinstance(p, numbers.Real):
        raise TypeError(f"pow: exponent must be a Python number, got {type(p).__name__}")
    return Pow(p)(x)


def rpow(base, x):
    """base ** x for a Python number ``base`` > 0 and a tensor exponent."""
    if not isinstance(base, numbers.Real) or base <= 0:
        raise TypeError(f"base ** tensor: the base must be a positive Python number, got {base!r}")
    if x.dtype.kind != "f":  # an integer power stays an integer (torch); a float base gives float32
        if isinstance(base, numbers.Integral):
            return Tensor(get_array_module(x.data).power(x.data.dtype.type(base), x.data))
        x = Tensor(x.data.astype(np.float32))
    return RPow(base)(x)


# -- casts and copies -----------------------------------------------------------------
class To(Function):
    """A copy on another device and/or with another dtype (or a plain copy: clone);
    the gradient goes back to the input's device and dtype."""

    def __init__(self, device, dtype):
        self.device, self.dtype = device, dtype

    def forward(self, x):
        self.in_device, self.in_dtype = device_of(x), x.dtype
        y = x if self.device is None else to_device(x, self.device)
        y = y if self.dtype is None else y.astype(self.dtype)
        return y.copy() if y is x else y

    def backward(self, gy):
        return to_device(gy, self.in_device).astype(self.in_dtype, copy=False)


class Clamp(Function):
    """Limit to [lo, hi]; the gradient passes where lo < x < hi (none at the bounds, as in torch 2)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        self.x = x
        return get_array_module(x).clip(x, self.lo, self.hi).astype(x.dtype, copy=False)

    def backward(self, gy):
        keep = True
        if self.lo is not None:
            keep = keep & (self.x > self.lo)
        if self.hi is not None:
            keep = keep & (self.x < self.hi)
        return gy * keep


def clamp(x, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and not isinstance(bound, numbers.Real):
            raise TypeError(f"clamp: {name} must be a Python number or None, got {type(bound).__name__}")
    return Clamp(min, max)(x)


class Where(Function):
    """cond ? a : b elementwise (broadcasting); the gradient goes to a where cond, else to b."""

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        return get_array_module(a).where(self.cond, a, b)

    def backward(self, gy):
        xp = get_array_module(gy)
        zero = xp.zeros((), gy.dtype)
        return xp.where(self.cond, gy, zero), xp.where(self.cond, zero, gy)


def replace(old, new):
    """``new`` in ``old``'s place: old's gradient is zero, new's passes through (fill_ and copy_ of a
    tensor in a graph, which stays in it, as in torch)."""
    if not (old.requires_grad and is_grad_enabled()):  # nothing to record: new as it is
        return new
    return Where(get_array_module(old.data).zeros(old.shape, bool))(old, new)


def where(condition, input, other):
    """Like torch.where(condition, input, other)."""
    cond = condition.data if isinstance(condition, Tensor) else condition
    if isinstance(input, Tensor) or isinstance(other, Tensor):
        input, other = _promote(input, other)
    else:
        input, other = Tensor(input), Tensor(other)
    cond = get_array_module(input.data).asarray(cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
    try:
        np.broadcast_shapes(cond.shape, input.shape, other.shape)
    except ValueError:
        raise ValueError(f"where: shapes condition {cond.shape}, input {input.shape} and other {other.shape} "
                         "do not broadcast") from None
    return Where(cond)(input, other)


# -- elementwise functions --------------------------------------------------------
class Exp(Function):
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return get_array_module(x).abs(x)  # not abs(): this module's abs() shadows the builtin

    def backward(self, gy):
        return gy * get_array_module(gy).sign(self.x)


class ReLU(Function):
    """Keeps its output, not a mask: the next layer keeps that array for its own backward anyway."""

    def forward(self, x):
        self.y = get_array_module(x).maximum(x, 0)
        return self.y

    def backward(self, gy):
        return gy * (self.y > 0)


class Sigmoid(Function):
    def forward(self, x):
        xp = get_array_module(x)
        self.y = 0.5 * xp.tanh(0.5 * x) + 0.5  # stable for large |x|
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class Tanh(Function):
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


def exp(x): return Exp()(x)
def log(x): return Log()(x)
def sqrt(x): return Sqrt()(x)
def abs(x): return Abs()(x)
def relu(x): return ReLU()(x)
def sigmoid(x): return Sigmoid()(x)
def tanh(x): return Tanh()(x)


# -- reductions ---------------------------------------------------------------------
def _axes(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    for d in dims:
        if not -ndim <= d < max(ndim, 1):
            raise IndexError(f"dim {d} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(d % ndim for d in dims)) if ndim else ()  # a 0-d tensor: dim 0 or -1 reduces nothing


def _dim(dim, ndim, name, extra=0):
    """Validate one dim index for a tensor of ``ndim`` dims (``extra``=1 where a new axis is inserted)."""
    n = ndim + extra
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}: dim must be an int, got {type(dim).__name__}")
    if not -max(n, 1) <= dim < max(n, 1):
        raise IndexError(f"{name}: dim {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected a value in [{-max(n, 1)}, {max(n, 1) - 1}])")
    return int(dim) % max(n, 1)


def _keep(gy, axes, keepdim):
    """Re-insert reduced axes so gy broadcasts against the input."""
    if keepdim or not axes:
        return gy
    return get_array_module(gy).expand_dims(gy, axes)


class Sum(Function):
    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        self.shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        return get_array_module(gy).broadcast_to(_keep(gy, self.axes, self.keepdim), self.shape)


class AMax(Function):
    """Maximum (or, with ``smallest``, minimum) over axes; the gradient is split evenly among ties."""

    def __init__(self, axes, keepdim, smallest=False):
        self.axes, self.keepdim, self.smallest = axes, keepdim, smallest

    def forward(self, x):
        self.x = x
        self.y = (x.min if self.smallest else x.max)(axis=self.axes, keepdims=True)
        return self.y if self.keepdim else self.y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, gy):
        mask = self.x == self.y
        return mask * (_keep(gy, self.axes, self.keepdim) / mask.sum(axis=self.axes, keepdims=True))


def sum(x, dim=None, keepdim=False):
    return Sum(_axes(dim, x.ndim), keepdim)(x)


def mean(x, dim=None, keepdim=False):
    if x.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating-point tensor, got {x.dtype} (cast it with .float())")
    axes = _axes(dim, x.ndim)
    n = 1
    for a in axes:
        n *= x.shape[a]
    return Sum(axes, keepdim)(x) * (1.0 / n)


def var(x, dim=None, correction=1, keepdim=False):
    """Variance over ``dim`` with Bessel's ``correction`` (1: unbiased, torch's default)."""
    axes = _axes(dim, x.ndim)
    n = 1
    for a in axes:
        n *= x.shape[a]
    d = x - mean(x, axes, keepdim=True)
    return sum(d * d, axes, keepdim) * (1.0 / (n - correction) if n > correction else float("nan"))


def amax(x, dim=None, keepdim=False):
    return AMax(_axes(dim, x.ndim), keepdim)(x)


def amin(x, dim=None, keepdim=False):
    return AMax(_axes(dim, x.ndim), keepdim, smallest=True)(x)


ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])  # what torch.max(x, dim) returns


def max_with_indices(x, dim, keepdim=False, smallest=False):
    """(values, indices) along one dim, like torch.max(x, dim) (torch.min with ``smallest``)."""
    dim = _dim(dim, x.ndim, "min" if smallest else "max")
    xp = get_array_module(x.data)
    idx = (xp.argmin if smallest else xp.argmax)(x.data, axis=dim, keepdims=True)
    values = take_along_dim(x, Tensor(idx), dim)
    if not keepdim:
        values, idx = values.squeeze(dim), idx.squeeze(axis=dim)
    return ValuesIndices(values, Tensor(idx))


# -- shape --------------------------------------------------------------------------
class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Permute(Function):
    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, gy):
        inv = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inv[d] = i
        return gy.transpose(inv)


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        y = x[self.index]
        if not hasattr(y, "shape") or y.ndim == 0 and y.base is None:  # a scalar: take the 0-d view instead
            y = x[(self.index if isinstance(self.index, tuple) else (self.index,)) + (Ellipsis,)]
        return y

    def backward(self, gy):
        gx = get_array_module(gy).zeros(self.shape, self.dtype)
        scatter_add(gx, self.index, gy)
        return gx


class Concat(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        self.sizes = [x.shape[self.dim] for x in xs]
        return get_array_module(*xs).concatenate(xs, axis=self.dim)

    def backward(self, gy):
        xp = get_array_module(gy)
        bounds = [int(b) for b in xp.cumsum(xp.asarray(self.sizes[:-1])).tolist()] if len(self.sizes) > 1 else []
        return tuple(xp.split(gy, bounds, axis=self.dim))


class Stack(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        return get_array_module(*xs).stack(xs, axis=self.dim)

    def backward(self, gy):
        xp = get_array_module(gy)
        return tuple(xp.squeeze(g, axis=self.dim) for g in xp.split(gy, gy.shape[self.dim], axis=self.dim))


class Split(Function):
    def __init__(self, bounds, dim):
        self.bounds, self.dim = bounds, dim

    def forward(self, x):
        return tuple(get_array_module(x).split(x, self.bounds, axis=self.dim))

    def backward(self, *gys):
        return get_array_module(*gys).concatenate(gys, axis=self.dim)


class TakeAlongDim(Function):
    def __init__(self, indices, dim):
        self.indices, self.dim = indices, dim

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        return get_array_module(x).take_along_axis(x, self.indices, axis=self.dim)

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.shape, self.dtype)
        nd = self.indices.ndim  # an open grid by hand: CuPy's indices() has no sparse=
        grid = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (nd - i - 1))
                for i, n in enumerate(self.indices.shape)]
        grid[self.dim] = self.indices
        scatter_add(gx, tuple(grid), gy)
        return gx


def reshape(x, shape):
    return Reshape(tuple(shape))(x)


def flatten(x, start_dim=0, end_dim=-1):
    s, e = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {x.shape}")
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]  # not -1: sizes 0 have no -1
    return Reshape(shape)(x)


def permute(x, dims):
    if len(dims) != x.ndim:
        raise ValueError(f"permute: dims {tuple(dims)} has {len(dims)} entries for a tensor with {x.ndim} dimensions")
    dims = [_dim(d, x.ndim, "permute") for d in dims]
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {tuple(dims)} is not a permutation of {x.ndim} dimensions")
    return Permute(tuple(d % x.ndim for d in dims))(x)


def transpose(x, dim0, dim1):
    dim0, dim1 = _dim(dim0, x.ndim, "transpose"), _dim(dim1, x.ndim, "transpose")
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute(tuple(dims))(x)


def unsqueeze(x, dim):
    dim = _dim(dim, x.ndim, "unsqueeze", extra=1)
    return Reshape(x.shape[:dim] + (1,) + x.shape[dim:])(x)


def squeeze(x, dim=None):
    """Drop size-1 dims: all of them, or those of ``dim`` (an int or a tuple) that have size 1."""
    if dim is None:
        shape = tuple(n for n in x.shape if n != 1)
    elif x.ndim == 0:
        shape = x.shape
    else:
        dims = {_dim(d, x.ndim, "squeeze") for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        shape = tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))
    return Reshape(shape)(x)


class Expand(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return get_array_module(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return gy  # the engine sums it back to the input's shape (autograd.sum_to)


def expand(x, shape):
    """Like torch's expand: broadcast to ``shape`` (-1 keeps a dim), a read-only view."""
    shape = tuple(shape)
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: shape {shape} has fewer dims than the tensor's {x.shape}")
    full = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
    try:
        if np.broadcast_shapes(x.shape, full) != full or -1 in full:
            raise ValueError
    except ValueError:
        raise ValueError(f"expand: a tensor of shape {x.shape} cannot be expanded to {shape}") from None
    return Expand(full)(x)


class SetItem(Function):
    """A copy of x with x[index] = v; the gradient goes to v where it was written, to x elsewhere."""

    def __init__(self, index):
        self.index = index

    def forward(self, x, v):
        self.v_shape = v.shape
        y = x.copy()
        try:
            y[self.index] = v
        except (ValueError, TypeError):  # leading 1-dims the target lacks: torch drops them
            lead = next((i for i, n in enumerate(v.shape) if n != 1), v.ndim)
            y[self.index] = v.reshape(v.shape[lead:])
        return y

    def backward(self, gy):
        gx = gy.copy()
        gx[self.index] = 0
        gv = gy[self.index]
        if gv.shape == self.v_shape:
            return gx, gv
        extra = len(self.v_shape) - gv.ndim  # a value with more leading 1-dims than its target
        gv = gv.reshape((1,) * extra + gv.shape) if extra > 0 else gv
        return gx, sum_to(gv, self.v_shape)


def setitem(x, index, value):
    """The out-of-place form of ``x[index] = value`` (Tensor.__setitem__ makes it in place)."""
    index = index.data if isinstance(index, Tensor) else \
        tuple(i.data if isinstance(i, Tensor) else i for i in index) if isinstance(index, tuple) else index
    value = as_tensor(value, x)
    if value.dtype != x.dtype:
        value = value.to(dtype=x.dtype)
    try:
        return SetItem(index)(x, value)
    except (ValueError, IndexError, TypeError) as e:
        raise ValueError(f"setitem: cannot assign a value of shape {value.shape} at index {index!r} "
                         f"of a tensor of shape {x.shape} ({e})") from None


def getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index)(x)


def take_along_dim(x, indices, dim):
    dim = _dim(dim, x.ndim, "take_along_dim")
    return TakeAlongDim(indices.data if isinstance(indices, Tensor) else indices, dim)(x)


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    ref = tensors[0].shape
    dim = _dim(dim, len(ref), "cat")
    for i, t in enumerate(tensors):
        if t.ndim != len(ref) or any(a != b for k, (a, b) in enumerate(zip(t.shape, ref)) if k != dim):
            raise ValueError(f"cat: tensor {i} has shape {t.shape}, incompatible with {ref} outside dim {dim}")
    return Concat(dim)(*tensors)


def stack(tensors, dim=0):
    tensors = list(tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    dim = _dim(dim, len(next(iter(shapes))), "stack", extra=1)
    return Stack(dim)(*tensors)


def split(x, split_size, dim=0):
    """Like torch.split: chunks of ``split_size`` along ``dim``, or a list of sizes."""
    dim = _dim(dim, x.ndim, "split")
    n = x.shape[dim]
    if isinstance(split_size, int):
        if split_size < 1:
            raise ValueError(f"split: split_size must be a positive int, got {split_size}")
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else [])
    else:
        sizes = list(split_size)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n} (dim {dim} of shape {x.shape})")
    bounds, acc = [], 0
    for s in sizes[:-1]:
        acc += s
        bounds.append(acc)
    out = Split(bounds, dim)(x)
    return out if isinstance(out, tuple) else (out,)

