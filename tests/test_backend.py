"""skengine.backend: the one array check, device names and the device -> array module map (CPU side;
tests/test_gpu.py covers CuPy)."""
import numpy as np
import pytest

import skengine as sk
from skengine import backend


def test_is_array_is_true_for_arrays_only():
    assert backend.is_array(np.zeros(3)) and backend.is_array(np.zeros(()))
    for value in (np.float32(1.0), [1.0], 1.0, None, sk.zeros(3), "abc"):
        assert not backend.is_array(value), value


def test_resolve_device_and_array_module():
    assert backend.resolve_device("cpu") == "cpu"
    assert backend.resolve_device("auto") == ("cuda" if backend.cuda_available() else "cpu")
    assert backend.array_module("cpu") is np
    for bad in ("gpu", "tpu", ""):
        with pytest.raises(ValueError, match=f"device must be 'cpu' or 'cuda', got {bad!r}"):
            backend.resolve_device(bad)
        with pytest.raises(ValueError, match="device must be"):
            backend.array_module(bad)


@pytest.mark.skipif(backend.cuda_available(), reason="checks the message shown where CUDA is missing")
def test_cuda_without_a_gpu_says_how_to_install_cupy():
    for call in (backend.resolve_device, backend.array_module):
        with pytest.raises(RuntimeError, match=r"pip install skengine\[cuda12\]"):
            call("cuda")
