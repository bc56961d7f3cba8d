"""Shared pytest setup: import path, hypothesis profiles, the ``gpu`` marker and a fake CIFAR-10 folder.

Profiles (pick with HYPOTHESIS_PROFILE=...):
  default   few examples, no deadline: the whole suite stays fast on 2 cores
  thorough  many more examples, for a slow, deep run
"""
import os
import signal
import sys

import pytest
from hypothesis import HealthCheck, settings

from fakecifar import write_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # tests import skengine from the checkout, installed or not
    sys.path.insert(0, ROOT)

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("default", deadline=None, max_examples=20, suppress_health_check=_SLOW_OK)
settings.register_profile("thorough", deadline=None, max_examples=300, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def gpu_available():
    """True when CuPy and an NVIDIA GPU can be used (never raises)."""
    try:
        import skengine
        return skengine.cuda_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_items and not gpu_available():
        skip = pytest.mark.skip(reason="needs CuPy and an NVIDIA GPU")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def deadline():
    """Fail a test that runs past 90 s (a hung process group) instead of hanging the suite."""
    def fail(*_):
        raise TimeoutError("the test ran past its 90 s deadline (a hung process group?)")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(90)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_cifar(tmp_path_factory.mktemp("cifar")))
