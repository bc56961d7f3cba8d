"""skengine.parallel: the thread count, and conv blocks dealt to worker threads agree with one thread."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skengine import convolution, parallel
from strategies import conv_configs, seeds
from test_functional import _conv_inputs, _conv_value_and_grads


@given(cfg=conv_configs(max_batch=5), seed=seeds(), chunk_bytes=st.integers(1, 1 << 14),
       workers=st.integers(1, 3))
def test_conv2d_blocks_on_worker_threads_give_the_same_result(cfg, seed, chunk_bytes, workers):
    """Blocks dealt to worker threads (skengine.parallel) must give what one thread gives, sums of parts included."""
    x, w, b = _conv_inputs(cfg, seed)
    old = parallel.get_num_threads()
    try:
        with mock.patch.object(convolution, "CHUNK_BYTES", chunk_bytes):
            parallel.set_num_threads(1)
            alone = _conv_value_and_grads(cfg, x, w, b)
            parallel.set_num_threads(workers)
            with mock.patch.object(convolution, "PARALLEL_BELOW", 1 << 40):  # every conv in parallel blocks
                shared = _conv_value_and_grads(cfg, x, w, b)
    finally:
        parallel.set_num_threads(old)
    for a, c in zip(alone, shared):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="n must be a positive int"):
        parallel.set_num_threads(bad)
