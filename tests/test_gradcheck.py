"""skengine.gradcheck: a wrong backward is caught, and the wrong input named."""
import numpy as np
import pytest

import skengine as sk


def test_gradcheck_detects_a_wrong_backward():
    class BadSquare(sk.autograd.Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, gy):
            return gy * self.x  # should be 2 * x

    with pytest.raises(sk.GradcheckError, match=r"gradient of input 0 \(shape \(3,\)\) is wrong"):
        sk.gradcheck(lambda x: BadSquare()(x), (sk.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True),))
    assert not sk.gradcheck(lambda x: BadSquare()(x), (sk.Tensor(np.array([1.0, 2.0]), requires_grad=True),),
                            raise_exception=False)
