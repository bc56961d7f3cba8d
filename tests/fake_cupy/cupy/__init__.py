"""A NumPy-backed stand-in for CuPy, for running skengine's GPU code paths on a machine without a GPU.

Its arrays are a NumPy subclass that counts as the device: skengine's ``device_of`` says "cuda" for
them, ``.get()`` copies them to the host, and, as in real CuPy, an operation that mixes in a host
(NumPy) array of one or more dimensions raises TypeError instead of converting it silently.  So the
engine's device handling (what moves where, what each op is given) is checked on the CPU.  What it
cannot check: CuPy's API is a subset of NumPy's, and everything NumPy has is here, so a NumPy-only
function called on device arrays passes here and fails on a real GPU (tests/test_gpu.py on a GPU
machine is the check for that; benchmarks/gpu.sh runs it).
"""
import numpy as _np

__version__ = "0.0-fake"


class ndarray(_np.ndarray):
    def get(self):
        return _np.asarray(self).view(_np.ndarray).copy()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for x in inputs + tuple(kwargs.get("out", ())):
            if type(x) is _np.ndarray:
                raise TypeError(f"Unsupported type {type(x)} (fake CuPy: a host array in a device op)")
        args = [x.view(_np.ndarray) if isinstance(x, ndarray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(_np.ndarray) if isinstance(o, ndarray) else o for o in kwargs["out"])
        r = getattr(ufunc, method)(*args, **kwargs)
        return _wrap(r)

    def __array_function__(self, func, types, args, kwargs):
        def check(x):
            if type(x) is _np.ndarray and x.ndim > 0:
                raise TypeError(f"Unsupported type {type(x)} in {func.__name__} (fake CuPy)")
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, (list, tuple)):
                for b in a:
                    check(b)
            else:
                check(a)
        def unwrap(x):
            if isinstance(x, ndarray):
                return x.view(_np.ndarray)
            if isinstance(x, (list, tuple)):
                return type(x)(unwrap(y) for y in x)
            return x
        r = func(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()})
        return _wrap(r)

    def __getitem__(self, idx):
        return _wrap(super().__getitem__(idx))


def _wrap(r):
    if isinstance(r, tuple):
        return tuple(_wrap(x) for x in r)
    if isinstance(r, list):
        return [_wrap(x) for x in r]
    if type(r) is _np.ndarray:
        return r.view(ndarray)
    if isinstance(r, _np.generic):
        return _np.asarray(r).view(ndarray)
    return r


def asarray(a, dtype=None):
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    return _np.array(a, dtype=dtype).view(ndarray)


def array(a, dtype=None, copy=True):
    return _np.array(a.view(_np.ndarray) if isinstance(a, ndarray) else a, dtype=dtype, copy=copy).view(ndarray)


def asnumpy(a):
    return a.get() if isinstance(a, ndarray) else _np.asarray(a)


def _factory(name):
    f = getattr(_np, name)
    def g(*args, **kwargs):
        return _wrap(f(*args, **kwargs))
    g.__name__ = name
    return g


for _name in ["zeros", "ones", "empty", "full", "arange", "linspace", "eye", "indices"]:
    globals()[_name] = _factory(_name)


def __getattr__(name):
    attr = getattr(_np, name)
    if callable(attr) and not isinstance(attr, type):
        def g(*args, **kwargs):
            return _wrap(attr(*args, **kwargs))
        g.__name__ = name
        return g
    return attr


class _Pool:
    def total_bytes(self):
        return 0

    def used_bytes(self):
        return 0


def get_default_memory_pool():
    return _Pool()


class _Gen:
    def __init__(self, seed):
        self.g = _np.random.default_rng(seed)

    def random(self, shape, dtype=_np.float64):
        return self.g.random(shape, dtype=dtype).view(ndarray)


class random:
    @staticmethod
    def default_rng(seed=None):
        return _Gen(seed)


class cuda:
    class runtime:
        @staticmethod
        def getDeviceCount():
            return 1

        @staticmethod
        def getDeviceProperties(i):
            return {"name": b"fake GPU (NumPy)"}

    class Device:
        def __init__(self, i=0):
            pass

        def synchronize(self):
            pass

    class Stream:
        class null:
            @staticmethod
            def synchronize():
                pass
