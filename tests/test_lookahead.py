"""skengine.optim.lookahead.Lookahead: the slow/fast weights by hand, a scheduled alpha, resuming from a state dict."""
import numpy as np
import pytest

import skengine as sk
from skengine.nn import Linear, Module, Parameter
from skengine.optim import SGD, Lookahead
from test_optim import npz_roundtrip


class _One(Module):
    def __init__(self):
        super().__init__()
        self.w = Parameter(np.zeros(1, np.float32))


def _walk(model, la, steps, **kwargs):
    """An 'optimizer' that adds 1 to the weight, then the lookahead step; the weight after each."""
    seen = []
    for _ in range(steps):
        model.w._write_(model.w.data + 1)
        la.step(model, **kwargs)
        seen.append(float(model.w.data[0]))
    return seen


def test_slow_weights_by_hand():
    model = _One()
    la = Lookahead(model, k=2, alpha=0.5)
    # step 2: slow = 0 + 0.5 (2 - 0) = 1, fast = 1; step 4: fast 3, slow = 1 + 0.5 (3 - 1) = 2; step 6: 2 + 0.5 * 2
    assert _walk(model, la, 6) == [1, 1, 2, 2, 3, 3]
    model.w._write_(np.array([10.0], np.float32))
    la.finish(model)
    assert float(model.w.data[0]) == 3.0  # the steps since the last sync are dropped
    other = _One()
    la2 = Lookahead(other, k=1)
    assert _walk(other, la2, 3, alpha=1.0) == [1, 2, 3]  # alpha 1: plain training
    assert _walk(other, la2, 2, alpha=0.0) == [3, 3]  # alpha 0: frozen at the slow weights
    for bad in (dict(k=0), dict(k=2.0), dict(alpha=1.5)):
        with pytest.raises(ValueError, match="Lookahead: (k must be a positive int|alpha must be in)"):
            Lookahead(model, **bad)
    with pytest.raises(KeyError, match="'weight' of the model is not"):
        Lookahead(model, k=1).step(Linear(2, 2))


def test_sync_by_hand_moves_the_slow_weights_now_and_leaves_the_count():
    model = _One()
    la = Lookahead(model, k=2, alpha=0.5)
    assert _walk(model, la, 3) == [1, 1, 2]  # synced at step 2 (slow 1), step 3 not
    la.sync(model)  # slow = 1 + 0.5 (2 - 1)
    assert float(model.w.data[0]) == 1.5 and la.num_steps == 3
    assert _walk(model, la, 1) == [2.0]  # step 4 is the count's sync: 1.5 + 0.5 (2.5 - 1.5)
    la.sync(model, alpha=1.0)  # alpha 1: the slow weights take the model's
    assert float(model.w.data[0]) == 2.0 and la.num_steps == 4


def test_resume_from_a_state_dict_is_bit_exact_and_keeps_the_optimizer_going():
    def make():
        sk.manual_seed(0)
        model = Linear(3, 2)
        return model, SGD(model.parameters(), lr=0.1, momentum=0.9), Lookahead(model, k=3, alpha=0.4)
    x, y = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32), np.arange(8) % 2

    def train(model, opt, la, steps):
        for _ in range(steps):
            opt.zero_grad()
            sk.functional.cross_entropy(model(sk.Tensor(x)), y).backward()
            opt.step()
            la.step(model)

    ref = make()
    train(*ref, 10)
    model, opt, la = make()
    train(model, opt, la, 4)  # mid-way between syncs
    state = npz_roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "la": la.state_dict()})
    model2, opt2, la2 = make()
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    la2.load_state_dict(state["la"])
    train(model2, opt2, la2, 6)
    for a, b in zip(ref[0].parameters(), model2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(KeyError, match="does not match"):
        Lookahead(Linear(3, 3)).load_state_dict(state["la"])


def test_batchnorm_statistics_are_slow_too_as_in_airbench():
    from skengine.nn import BatchNorm1d
    bn = BatchNorm1d(2)
    la = Lookahead(bn, k=2, alpha=0.5)
    assert set(la.slow) == {"weight", "bias", "running_mean", "running_var"}  # not num_batches_tracked
    for _ in range(2):
        bn(sk.Tensor(np.array([[4.0, 0.0], [6.0, 2.0]], np.float32)))  # batch means 5 and 1
        la.step(bn)
    # fast running_mean after 2 updates at momentum 0.1: 0.19 * (5, 1); slow = 0 + 0.5 * that
    np.testing.assert_allclose(bn.running_mean.numpy(), [0.475, 0.095], rtol=1e-6)
