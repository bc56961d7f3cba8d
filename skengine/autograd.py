"""The autograd core: Tensor, Function and the backward pass.

A Tensor wraps a raw array (NumPy or CuPy).  Calling a Function on tensors
runs its ``forward`` on the raw arrays and, when gradients are wanted, links
the outputs to the Function (their ``creator``) and the Function to where
each input came from: an edge (the input's creator, which of its outputs)
or, for a leaf, the leaf itself.  ``Tensor.backward`` walks those edges
iteratively, latest generation first, calling each Function's ``backward``
on raw arrays and accumulating into the leaves' ``.grad``.  The graph is
released as it is consumed.

A Function keeps no input Tensors (as in Chainer): only the raw arrays its
backward needs, on itself, and for each input an edge.  So an intermediate
tensor that no backward needs is freed once the caller drops it.

In-place ops (``+=``, ``x[i] = v``, ``add_``, ...) and every other write into
a tensor's array (optimizer steps, ``nn.init``, ``load_state_dict``, BatchNorm's
running statistics, the all-reduce) go through ``Tensor._write_``, which bumps
the tensor's version (shared with the views ops made of it); a Function that
kept an input's array for its backward records that version, and backward
refuses (as torch does) if the array was changed since.  Inside a graph, an
in-place op instead makes the tensor the output of a new node, leaving the old
value to what used it.
"""
import contextlib
import heapq
import itertools

import numpy as np

from .backend import check_device, device_of, get_array_module, to_device, to_numpy

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (inference, optimizer updates)."""
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = old


@contextlib.contextmanager
def enable_grad():
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, True
    try:
        yield
    finally:
        _grad_enabled = old


def is_grad_enabled():
    return _grad_enabled


def _as_array(data, dtype=None):
    """Raw array from a Tensor, array or Python value; Python floats become float32."""
    if isinstance(data, Tensor):
        data = data.data
    xp = get_array_module(data)
    if isinstance(data, xp.ndarray):
        return data if dtype is None else data.astype(dtype, copy=False)
    if isinstance(data, np.generic):  # a NumPy scalar (what a full reduction returns) keeps its dtype
        return np.asarray(data, dtype=dtype)
    arr = np.asarray(data, dtype=dtype)
    if dtype is None and arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return arr


NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floating point: the dtypes a tensor holds


class Tensor:
    """An n-dimensional array that can record the operations applied to it."""
    __array_priority__ = 1000  # numpy scalars/arrays defer to our operators

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        if self.data.dtype.kind not in NUMERIC_KINDS:  # strings, objects, complex: as torch.tensor refuses
            raise TypeError(f"a tensor holds bool, integer or floating-point numbers, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        if self.requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {self.data.dtype}")
        self.grad = None
        self.creator = None
        self.generation = 0
        self._version = [0]  # this array's version: bumped by in-place writes, replaced with the array

    # -- plain properties ------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)
    output_index = 0  # which output of its creator this tensor is

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(to_numpy(self.data), prefix="tensor(", precision=4, threshold=20)
        extra = "" if self.device == "cpu" else ", device='cuda'"
        extra += "" if self.dtype == np.float32 else f", dtype={self.dtype}"
        extra += ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({body}{extra})"

    # -- conversion --------------------------------------------------------
    def numpy(self):
        """The data as a NumPy array (copied to the host if on the GPU)."""
        return to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):  # np.asarray(tensor), like torch
        return np.asarray(self.numpy(), dtype=dtype)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def __float__(self): return float(self.item())
    def __int__(self): return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous: "
                               "use .any() or .all()")
        return bool(self.data.item())

    def __format__(self, spec):  # f"{loss:.3f}" formats a one-element tensor as its number, like torch
        return format(self.item(), spec) if self.data.size == 1 else format(repr(self), spec)

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """The same array, out of the graph (writes through it count as changes to this tensor)."""
        out = Tensor(self.data)
        out._version = self._version
        return out

    def to(self, device=None, dtype=None):
        """This tensor on ``device`` and/or as ``dtype``: itself if nothing changes, else a copy
        that stays in the graph (its gradient flows back to this tensor), like torch."""
        if device is not None and not isinstance(device, str):  # x.to(sk.float64), as in torch
            device, dtype = None, device
        device = None if device is None else check_device(device)
        dtype = None if dtype is None else np.dtype(dtype)
        if (device is None or device == self.device) and (dtype is None or dtype == self.dtype):
            return self
        return ops.To(device, dtype)(self)

    def cpu(self): return self.to("cpu")
    def cuda(self): return self.to("cuda")
    def float(self): return self.to(dtype=np.float32)
    def double(self): return self.to(dtype=np.float64)
    def long(self): return self.to(dtype=np.int64)
    def int(self): return self.to(dtype=np.int32)
    def bool(self): return self.to(dtype=np.bool_)

    def clone(self):
        """A copy that stays in the graph."""
        return ops.To(None, None)(self)

    def dim(self):
        return self.ndim

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    # -- in place ------------------------------------------------------------
    def _inplace(self, name, op):
        """Make this tensor hold ``op(its current value)``, as an in-place op.

        A tensor inside a graph (it has a creator, and gradients are recorded)
        becomes the output of op's node: what used its old value keeps its edge
        to the old node, as in torch.  Otherwise (plain tensors, and leaves
        under no_grad) the values are written into the tensor's own array, so
        views of it and state_dict() entries see them, and its version is
        bumped: a backward that needs the old array then raises.
        """
        if self.requires_grad and self.creator is None and _grad_enabled:
            raise RuntimeError(f"{name}: a leaf tensor that requires grad cannot be changed in place "
                               "outside no_grad() (wrap optimizer-style updates in `with no_grad():`)")
        result = op(self)
        if result.shape != self.shape:
            raise ValueError(f"{name}: the result has shape {result.shape}, which does not fit this "
                             f"tensor's shape {self.shape}")
        if result.requires_grad or (self.creator is not None and _grad_enabled):
            self.data, self.grad, self._version = result.data, None, [0]  # a new array: a fresh version
            self.creator, self.requires_grad, self.generation = None, result.requires_grad, 0
            if result.requires_grad:
                self.set_creator(result.creator, result.output_index)
            return self
        if not get_array_module(self.data).can_cast(result.dtype, self.dtype, "same_kind"):
            raise TypeError(f"{name}: the result has dtype {result.dtype}, which cannot be stored in "
                            f"this tensor's dtype {self.dtype}")
        return self._write_(result.data)

    def _write_(self, value=None):
        """The one way to change this tensor's array in place outside the graph (in-place ops under
        no_grad, optimizer steps, init, load_state_dict, BatchNorm's running statistics): store
        ``value`` (an array or number, cast to this dtype) into the array, or, with no value, mark that
        the caller changes ``.data`` in place itself (an optimizer's arithmetic).  Either way the version
        is bumped, so a backward that kept the old array raises instead of using the new values."""
        if value is not None:
            self.data[...] = value
        self._version[0] += 1
        return self

    def __iadd__(self, o): return self._inplace("+=", lambda t: ops.add(t, o))
    def __isub__(self, o): return self._inplace("-=", lambda t: ops.sub(t, o))
    def __imul__(self, o): return self._inplace("*=", lambda t: ops.mul(t, o))
    def __itruediv__(self, o): return self._inplace("/=", lambda t: ops.div(t, o))
    def add_(self, o, alpha=1): return self._inplace("add_", lambda t: ops.add(t, o if alpha == 1 else o * alpha))
    def sub_(self, o, alpha=1): return self._inplace("sub_", lambda t: ops.sub(t, o if alpha == 1 else o * alpha))
    def mul_(self, o): return self._inplace("mul_", lambda t: ops.mul(t, o))
    def div_(self, o): return self._inplace("div_", lambda t: ops.div(t, o))
    def zero_(self): return self.fill_(0)

    def fill_(self, value):
        xp = get_array_module(self.data)
        return self._inplace("fill_", lambda t: ops.replace(t, Tensor(xp.full(self.shape, _raw(value), self.dtype))))

    def copy_(self, src):
        return self._inplace("copy_", lambda t: ops.replace(t, ops.To(self.device, self.dtype)(
            ops.expand(ops.as_tensor(src, t), self.shape))))

    def __setitem__(self, index, value):
        self._inplace("__setitem__", lambda t: ops.setitem(t, index, value))

    # -- autograd ----------------------------------------------------------
    def set_creator(self, fn, index=0):
        self.creator, self.output_index = fn, index
        self.generation = fn.generation + 1

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        Iterative and generation ordered, so a graph of any depth works.
        Unless ``retain_graph``, each Function's saved arrays are dropped
        once it has been used, so memory does not grow across steps.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input has requires_grad=True, or it was computed under no_grad())")
        xp = get_array_module(self.data)
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output, got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = to_device(_as_array(gradient, self.dtype), self.device)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward: gradient shape {grad.shape} does not match tensor shape {self.shape}")
        if self.creator is None:
            self._accumulate(grad, shared=gradient is not None)
            return
        grads = {(id(self.creator), self.output_index): grad}  # (node, output) -> its gradient so far
        order = itertools.count()  # tie-breaker so the heap never compares Functions
        heap, queued = [], set()

        def push(fn):
            if id(fn) not in queued:
                queued.add(id(fn))
                heapq.heappush(heap, (-fn.generation, next(order), fn))

        given = set()  # ids of the arrays handed to leaves: one handed twice is copied
        push(self.creator)
        while heap:
            fn = heapq.heappop(heap)[2]
            if fn.__dict__.get("freed"):
                raise RuntimeError(f"{type(fn).__name__}.backward: what it saved was freed by an earlier "
                                   "backward(); pass retain_graph=True to backward through the graph twice")
            for counter, version, shape in fn.saved_versions:
                if counter[0] != version:
                    raise RuntimeError(f"{type(fn).__name__}.backward: an input it saved (shape {shape}) was "
                                       "changed in place after it was used; its gradient cannot be computed "
                                       "(clone() it before changing it)")
            gys = [grads.pop((id(fn), k), None) for k in range(len(fn.output_meta))]
            gys = [xp.zeros(shape, dtype) if g is None else g for g, (shape, dtype) in zip(gys, fn.output_meta)]
            gxs = fn.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            for edge, gx in zip(fn.edges, gxs):
                if gx is None or edge is None:
                    continue
                source, target, shape = edge
                if gx.shape != shape:
                    gx = sum_to(gx, shape)
                if source is None:
                    target._accumulate(gx, shared=id(gx) in given)
                    given.add(id(gx))
                else:
                    prev = grads.get((id(source), target))
                    grads[id(source), target] = gx if prev is None else prev + gx
                    push(source)
            if not retain_graph:
                fn.release()

    def _accumulate(self, g, shared=False):
        """Add g to .grad; a first .grad is an array of its own (g may be a broadcast view, or, with
        ``shared``, an array handed to another leaf too), so that .grad can be changed in place."""
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        elif self.grad is None and (shared or g is self.data or not g.flags.owndata):
            g = g.copy()
        self.grad = Tensor(g) if self.grad is None else Tensor(self.grad.data + g)

    # -- operators (implemented in ops.py) ----------------------------------
    def __add__(self, o): return ops.add(self, o)
    def __radd__(self, o): return ops.add(self, o)
    def __sub__(self, o): return ops.sub(self, o)
    def __rsub__(self, o): return ops.sub(o, self)
    def __mul__(self, o): return ops.mul(self, o)
    def __rmul__(self, o): return ops.mul(self, o)
    def __truediv__(self, o): return ops.div(self, o)
    def __rtruediv__(self, o): return ops.div(o, self)
    def __pow__(self, p): return ops.pow(self, p)
    def __rpow__(self, base): return ops.rpow(base, self)
    def __neg__(self): return ops.neg(self)
    def __matmul__(self, o): return ops.matmul(self, o)
    def __rmatmul__(self, o): return ops.matmul(o, self)
    def __getitem__(self, index): return ops.getitem(self, index)

    # comparisons carry no gradient: they return boolean tensors
    def __eq__(self, o): return Tensor(self.data == _raw(o))
    def __ne__(self, o): return Tensor(self.data != _raw(o))
    def __lt__(self, o): return Tensor(self.data < _raw(o))
    def __le__(self, o): return Tensor(self.data <= _raw(o))
    def __gt__(self, o): return Tensor(self.data > _raw(o))
    def __ge__(self, o): return Tensor(self.data >= _raw(o))
    __hash__ = object.__hash__

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def abs(self): return ops.abs(self)
    def relu(self): return ops.relu(self)
    def sigmoid(self): return ops.sigmoid(self)
    def tanh(self): return ops.tanh(self)
    def sum(self, dim=None, keepdim=False): return ops.sum(self, dim, keepdim)
    def mean(self, dim=None, keepdim=False): return ops.mean(self, dim, keepdim)
    def amax(self, dim=None, keepdim=False): return ops.amax(self, dim, keepdim)
    def amin(self, dim=None, keepdim=False): return ops.amin(self, dim, keepdim)
    def var(self, dim=None, unbiased=True, keepdim=False, correction=None):
        return ops.var(self, dim, 1 if correction is None and unbiased else (correction or 0), keepdim)
    def std(self, dim=None, unbiased=True, keepdim=False, correction=None):
        return self.var(dim, unbiased, keepdim, correction).sqrt()
    def clamp(self, min=None, max=None): return ops.clamp(self, min, max)
    clip = clamp
    def expand(self, *shape): return ops.expand(self, shape_arg(shape))

    def max(self, dim=None, keepdim=False):
        """Like torch: the maximum value, or (values, indices) along ``dim``."""
        return ops.amax(self) if dim is None else ops.max_with_indices(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        """Like torch: the minimum value, or (values, indices) along ``dim``."""
        return ops.amin(self) if dim is None else ops.max_with_indices(self, dim, keepdim, smallest=True)

    def argmin(self, dim=None, keepdim=False):
        xp = get_array_module(self.data)
        if dim is None:
            return Tensor(xp.argmin(self.data))
        return Tensor(xp.argmin(self.data, axis=dim, keepdims=keepdim))

    def argmax(self, dim=None, keepdim=False):
        xp = get_array_module(self.data)
        if dim is None:
            return Tensor(xp.argmax(self.data))
        return Tensor(xp.argmax(self.data, axis=dim, keepdims=keepdim))

    def reshape(self, *shape): return ops.reshape(self, shape_arg(shape))
    view = reshape
    def flatten(self, start_dim=0, end_dim=-1): return ops.flatten(self, start_dim, end_dim)
    def transpose(self, dim0, dim1): return ops.transpose(self, dim0, dim1)
    def permute(self, *dims): return ops.permute(self, shape_arg(dims))
    def unsqueeze(self, dim): return ops.unsqueeze(self, dim)
    def squeeze(self, dim=None): return ops.squeeze(self, dim)
    def split(self, split_size, dim=0): return ops.split(self, split_size, dim)
    T = property(lambda self: ops.permute(self, tuple(reversed(range(self.ndim)))))


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _is_array(v):
    """A NumPy or CuPy array (or NumPy scalar): what a Function may keep for backward."""
    return hasattr(v, "__array_interface__") or hasattr(v, "__cuda_array_interface__")


def _views(v, a):
    """Whether array ``v`` is ``a`` or a view of it (or of what ``a`` views)."""
    base = getattr(v, "base", None)
    return v is a or (base is not None and (base is a or base is getattr(a, "base", None)))


def shape_arg(args):
    """A shape given as separate ints or as one tuple/list (``x.reshape(2, 3)`` or ``x.reshape((2, 3))``)."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def sum_to(g, shape):
    """Sum a broadcast gradient back down to ``shape``."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


class Function:
    """One differentiable operation: ``forward`` and ``backward`` on raw arrays.

    Subclasses keep what backward needs on ``self`` (raw arrays, never the input
    Tensors: the node keeps only an edge per input); backward receives one
    upstream gradient per output and returns one gradient (or None) per input.
    """
    generation = 0

    def __call__(self, *inputs):
        inputs = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        # which inputs get a gradient: forward can skip keeping what only the others' gradients need
        self.needs_input_grad = tuple(_grad_enabled and x.requires_grad for x in inputs)
        ys = self.forward(*(x.data for x in inputs))
        single = not isinstance(ys, tuple)
        outputs = [Tensor(y) for y in ((ys,) if single else ys)]
        for o in outputs:  # a view of an input (reshape, transpose, slice) shares its version, as in torch
            for x in inputs:
                if _views(o.data, x.data):
                    o._version = x._version
                    break
        if _grad_enabled and any(x.requires_grad for x in inputs):
            self.generation = max(x.generation for x in inputs)
            for k, o in enumerate(outputs):
                o.requires_grad = o.data.dtype.kind == "f"
                o.set_creator(self, k)
            # where each input's gradient goes: (its creator, which output) or (None, the leaf)
            self.edges = [None if not x.requires_grad else (x.creator, x.output_index, x.shape)
                          if x.creator is not None else (None, x, x.shape) for x in inputs]
            self.output_meta = [(o.data.shape, o.data.dtype) for o in outputs]
            # the inputs whose arrays this Function kept for backward, and their versions now
            kept = [v for v in self.__dict__.values() if _is_array(v)]
            self.saved_versions = [(t._version, t._version[0], t.shape) for t in inputs + outputs
                                   if any(_views(v, t.data) for v in kept)]
        return outputs[0] if single else tuple(outputs)

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

    def release(self):
        """Drop the arrays saved for backward, keeping the edges: a second backward through a
        Function that saved nothing works (as in torch), one that needs them raises."""
        saved = [k for k, v in self.__dict__.items() if _is_array(v)]
        for k in saved:
            del self.__dict__[k]
        self.freed = bool(saved)


from . import ops  # noqa: E402  (ops builds on Function and Tensor above)
