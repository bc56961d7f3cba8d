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


def find_mpiexec():
    """The mpiexec beside this Python (where `pip install mpich` puts it, in a venv too), else on PATH; None
    when it or mpi4py is missing."""
    import importlib.util
    import shutil
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = here if os.access(here, os.X_OK) else shutil.which("mpiexec")
    return exe if exe and importlib.util.find_spec("mpi4py") else None


@pytest.fixture(scope="session")
def mpiexec():
    """``run(n, args, timeout=120, env=None)``: ``mpiexec -n n python args...`` from the checkout, returning the
    CompletedProcess with ``elapsed`` seconds.  Skips without mpi4py and mpiexec (``pip install -e '.[dev]'``
    brings both), except in CI (CI=true), where the MPI tests must run."""
    import subprocess
    import time
    exe = find_mpiexec()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("the MPI tests must run in CI, but mpi4py or mpiexec is missing (pip install -e '.[dev]')")
        pytest.skip("needs mpi4py and mpiexec: pip install skengine[mpi]")

    def run(n, args, timeout=120, env=None):
        env = dict(os.environ, **(env or {}))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), ROOT) if p)
        t0 = time.monotonic()
        done = subprocess.run([exe, "-n", str(n), sys.executable, *map(str, args)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        done.elapsed = time.monotonic() - t0
        return done
    return run
