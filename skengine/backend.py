"""Array backend: NumPy on "cpu", CuPy on "cuda".

Every op takes its array module from its inputs (``xp = get_array_module(x)``),
so one code path serves both.  CuPy is imported lazily, the first time a
"cuda" array is asked for; the few GPU-only pieces live here beside their
NumPy twins.
"""
import numpy as np

_cupy = None
_CUDA_HELP = ("CUDA needs CuPy and an NVIDIA GPU: install skengine with "
              "`pip install skengine[cuda12]` (CUDA 12) or `skengine[cuda13]` (CUDA 13)")


def cupy():
    """Import CuPy on first use; raise a clear error if it or a GPU is missing."""
    global _cupy
    if _cupy is None:
        try:
            import cupy as cp
        except ImportError as e:
            raise RuntimeError(f"device 'cuda' is not available: {_CUDA_HELP}") from e
        try:
            if cp.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no GPU found")
        except Exception as e:
            raise RuntimeError(f"device 'cuda' is not available ({e}): {_CUDA_HELP}") from e
        _cupy = cp
    return _cupy


def cuda_available():
    try:
        cupy()
        return True
    except RuntimeError:
        return False


def _is_cupy_array(a):
    if _cupy is None and type(a).__module__.startswith("cupy"):  # made with CuPy before skengine asked for it
        cupy()
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def is_array(a):
    """Whether ``a`` is a NumPy or a CuPy array."""
    return isinstance(a, np.ndarray) or _is_cupy_array(a)


def get_array_module(*arrays):
    """numpy, or cupy if any argument is a CuPy array."""
    for a in arrays:
        if _is_cupy_array(a):
            return _cupy
    return np


def device_of(array):
    return "cuda" if _is_cupy_array(array) else "cpu"


def check_device(device):
    device = str(device)
    if device.startswith("cuda"):
        return "cuda"
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return "cpu"


def resolve_device(name):
    """A device name as given by a user: "auto" is "cuda" where a GPU and CuPy are found, else "cpu";
    "cuda" without them raises the error that says how to install CuPy."""
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    device = check_device(name)
    if device == "cuda":
        cupy()
    return device


def array_module(device):
    """The array module of a device: numpy for "cpu", cupy for "cuda"."""
    return cupy() if check_device(device) == "cuda" else np


def to_device(array, device):
    """The array on `device` ("cpu" or "cuda"); no copy if it is already there."""
    device = check_device(device)
    if device == "cuda":
        return cupy().asarray(array)
    if _is_cupy_array(array):
        return array.get()
    return np.asarray(array)


def to_numpy(array):
    return array.get() if _is_cupy_array(array) else np.asarray(array)


def scatter_add(a, indices, values):
    """a[indices] += values with repeated indices accumulated (np.add.at's job)."""
    if _is_cupy_array(a):
        import cupyx
        cupyx.scatter_add(a, indices, values)
    else:
        np.add.at(a, indices, values)
