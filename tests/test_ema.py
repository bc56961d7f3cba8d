"""skengine.optim.ema.ModelEMA: the running average, swap / copy_to, warm-up decay, resuming from a state dict."""
import numpy as np
import pytest

from skengine.nn import BatchNorm1d, Linear, Module
from skengine.optim import ModelEMA
from test_optim import npz_roundtrip


class _Tiny(Module):
    def __init__(self):
        super().__init__()
        self.fc = Linear(2, 2)
        self.bn = BatchNorm1d(2)


def test_model_ema():
    net = _Tiny().double()
    w0 = net.fc.weight.data.copy()
    ema = ModelEMA(net, decay=0.9)
    expected = w0.copy()
    for k in range(3):
        net.fc.weight.data += 1.0 + k                       # "training" moves the weights
        net.bn.running_mean.data[...] = k
        ema.update(net)
        expected = 0.9 * expected + 0.1 * net.fc.weight.data
    np.testing.assert_allclose(ema.shadow["fc.weight"], expected, rtol=1e-14)
    np.testing.assert_array_equal(ema.buffers["bn.running_mean"], 2)
    assert ema.num_updates == 3

    trained = net.fc.weight.data.copy()
    with ema.swap(net):
        np.testing.assert_allclose(net.fc.weight.data, expected, rtol=1e-14)
    np.testing.assert_array_equal(net.fc.weight.data, trained)

    # resume: the state (through an .npz) continues the same average
    ema2 = ModelEMA(_Tiny().double(), decay=0.5)
    sd = ema.state_dict()
    ema2.load_state_dict({k: (npz_roundtrip(v) if isinstance(v, dict) else np.asarray(v))
                          for k, v in sd.items()})
    assert ema2.decay == 0.9 and ema2.num_updates == 3
    ema.update(net)
    ema2.update(net)
    np.testing.assert_array_equal(ema2.shadow["fc.weight"], ema.shadow["fc.weight"])

    other = _Tiny().double()
    ema.copy_to(other)
    for name, value in ema.weights().items():
        np.testing.assert_array_equal(other.state_dict()[name].data, value)


def test_model_ema_warmup_decay():
    ema = ModelEMA(_Tiny(), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(2 / 11)
    with pytest.raises(ValueError):
        ModelEMA(_Tiny(), decay=1.5)
