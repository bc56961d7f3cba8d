"""The GPU code paths on the CPU: every ``gpu``-marked test, run against tests/fake_cupy.

tests/fake_cupy is a NumPy-backed stand-in for CuPy that is strict where CuPy is (an operation that
mixes in a host array raises), so what moves to the device and when is checked in CI, on every
commit, although no GPU is there.  It does not replace a GPU run: NumPy-only functions pass here
(see tests/fake_cupy/cupy/__init__.py).  Skipped where a real GPU is available: run the real thing.
"""
import os
import subprocess
import sys

import pytest

from skengine.backend import cuda_available

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "fake_cupy")


@pytest.mark.skipif(cuda_available(), reason="a real GPU is here: tests/test_gpu.py runs on it")
def test_gpu_marked_tests_pass_on_the_strict_fake_cupy():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FAKE, ROOT]))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert " passed" in run.stdout and " skipped" not in run.stdout, tail  # they ran, on the fake device


def test_the_fake_refuses_host_arrays_like_cupy():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FAKE, ROOT]))
    code = ("import numpy as np, skengine as sk\n"
            "x = sk.to_device(np.ones(3, np.float32), 'cuda')\n"
            "assert sk.Tensor(x).device == 'cuda'\n"
            "try:\n    x + np.ones(3, np.float32)\nexcept TypeError:\n    print('refused')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.strip() == "refused", run.stdout + run.stderr
