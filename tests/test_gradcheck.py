"""skengine.gradcheck: a wrong backward is caught, and the wrong input named; NaN and inf gradients fail;
non-contiguous inputs are checked as they are."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skengine as sk
import skengine.functional as F
from strategies import (
    arrays,
    nonzero_arrays,
    rng_arrays,
    shapes,
    small_conv_configs,
    strided,
    strided_arrays,
)


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


# -- NaN and infinite gradients fail, and are named (torch.allclose's rule) ----------------------------
class _Op(sk.autograd.Function):
    """y = f(x) with a backward given separately, both elementwise on raw arrays."""

    def __init__(self, f, df):
        self.f, self.df = f, df

    def forward(self, x):
        self.x = x
        return self.f(x)

    def backward(self, gy):
        return gy * self.df(self.x)


def _x(*values):
    return sk.Tensor(np.array(values, dtype=np.float64), requires_grad=True)


def _assert_fails(fn, x, match):
    with pytest.raises(sk.GradcheckError, match=match):
        sk.gradcheck(fn, (x,))
    assert sk.gradcheck(fn, (x,), raise_exception=False) is False


def test_gradcheck_fails_a_nan_analytic_gradient():
    def df(x):  # right (2x), except NaN at index 1
        g = 2 * x
        g[1] = np.nan
        return g

    _assert_fails(lambda x: _Op(np.square, df)(x), _x(0.5, 1.0, -1.5),
                  r"input 0 \(shape \(3,\)\) is wrong at index \(1,\): analytic nan, numeric -?[0-9.e+-]+ "
                  r".*1 of 3 elements fail, 1 of them with a NaN or infinite gradient")


def test_gradcheck_fails_an_infinite_analytic_gradient():
    _assert_fails(lambda x: _Op(np.square, lambda x: np.where(x > 1.2, np.inf, 2 * x))(x), _x(0.5, 1.0, 1.5),
                  r"input 0 .* at index \(2,\): analytic -?inf, numeric -?[0-9.e+-]+ ")


def test_gradcheck_fails_a_nan_numeric_gradient():
    # y = x for x >= 0, NaN below: at 0 the minus-nudge gives NaN, the analytic (one-sided) 1 is finite
    fn = lambda x: _Op(lambda x: np.where(x < 0, np.nan, x), np.ones_like)(x)
    _assert_fails(fn, _x(1.0, 0.0, 2.0), r"at index \(1,\): analytic -?[0-9.e+-]+, numeric nan")


def test_gradcheck_fails_an_infinite_numeric_gradient():
    fn = lambda x: _Op(lambda x: np.where(x < 0, np.inf, x), np.ones_like)(x)
    _assert_fails(fn, _x(1.0, 2.0, 0.0), r"at index \(2,\): analytic -?[0-9.e+-]+, numeric -?inf")


def test_gradcheck_fails_nan_on_both_sides():
    fn = lambda x: _Op(lambda x: np.where(x < 0, np.nan, x), lambda x: np.where(x == 0, np.nan, 1.0))(x)
    _assert_fails(fn, _x(0.0, 1.0), r"at index \(0,\): analytic nan, numeric nan ")


def test_gradcheck_names_a_non_finite_element_before_a_larger_finite_error():
    def df(x):  # 10x too big everywhere, NaN at index 2
        g = 20 * x
        g[2] = np.nan
        return g

    _assert_fails(lambda x: _Op(np.square, df)(x), _x(3.0, -2.0, 0.5), r"at index \(2,\): analytic nan.*3 of 3")


def test_gradcheck_equal_infinities_are_close_as_in_torch():
    # torch.allclose(inf, inf) is True: an infinite gradient that both sides agree on passes
    fn = lambda x: _Op(lambda x: np.where(x > 0, np.inf, x), lambda x: np.full_like(x, np.inf))(x)
    assert sk.gradcheck(fn, (_x(0.0),))


def test_gradcheck_module_fails_a_nan_parameter_gradient():
    class Scale(sk.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = sk.nn.Parameter(np.array([0.5, 2.0]))

        def forward(self, x):
            return x * _Op(lambda w: w, lambda w: np.where(w > 1, np.nan, 1.0))(self.w)

    with pytest.raises(sk.GradcheckError, match=r"input 1 \(shape \(2,\)\) is wrong at index \(1,\): analytic nan"):
        sk.gradcheck_module(Scale(), sk.Tensor(np.array([1.0, 3.0])))
    assert sk.gradcheck_module(Scale(), sk.Tensor(np.array([1.0, 3.0])), raise_exception=False) is False


# -- non-contiguous inputs: nudged in place, whatever the strides, and passed on as views ----------------
def _base(*shape):
    return np.linspace(-1.0, 1.5, int(np.prod(shape))).reshape(shape)


@pytest.mark.parametrize("view", [lambda a: a.T, lambda a: np.swapaxes(a, 0, 1), lambda a: a[::-1, ::2],
                                  lambda a: a[1:, ::-2].T], ids=["T", "swapaxes", "reversed-step", "step-T"])
def test_gradcheck_passes_a_correct_op_on_a_non_contiguous_input(view):
    a = view(_base(4, 6))
    assert not a.flags.c_contiguous
    x = sk.Tensor(a, requires_grad=True)
    assert sk.gradcheck(lambda x: x * x.tanh(), (x,))
    assert sk.gradcheck(lambda x, w: x @ w, (x, sk.Tensor(_base(4, 6).T[:a.shape[1]], requires_grad=True)))


def test_gradcheck_hands_fn_the_inputs_layout():
    a = _base(5, 6).astype(np.float32)[::-2, 1::2].T  # float32: copied to float64 with the same strides
    strides = []

    def fn(x):
        strides.append(x.data.strides)
        return x * x

    assert sk.gradcheck(fn, (sk.Tensor(a, requires_grad=True),))
    assert set(strides) == {tuple(2 * s for s in a.strides)}


def test_gradcheck_checks_a_broadcast_input_as_a_compact_copy():
    # stride 0: nudging in place would move a whole row; as in torch, each element is its own variable
    a = np.broadcast_to(_base(1, 3), (2, 3))
    assert sk.gradcheck(lambda x: x * x, (sk.Tensor(a, requires_grad=True),))


def test_gradcheck_module_passes_a_linear_layer_on_a_transposed_input():
    sk.manual_seed(0)
    x = sk.Tensor(_base(3, 2).T, requires_grad=True)
    assert sk.gradcheck_module(sk.nn.Linear(3, 2), x)


# -- ops on non-contiguous inputs drawn by the strided strategies ---------------------------------------
small = shapes(min_dims=1, max_dims=3, max_side=3)


@settings(max_examples=30)
@given(a=strided(arrays((4, 3, 2))))
def test_strided_draws_views_with_the_drawn_values(a):
    assert a.shape == (4, 3, 2) and a.base is not None and not a.flags.c_contiguous
    assert np.isfinite(a).all()  # the NaN filling stays outside the view


@settings(max_examples=8)
@given(ab=small.flatmap(lambda s: st.tuples(strided_arrays(s), strided(nonzero_arrays(s, margin=0.5)))))
def test_elementwise_gradients_on_strided_inputs(ab):
    inputs = tuple(sk.Tensor(a, requires_grad=True) for a in ab)
    assert sk.gradcheck(lambda a, b: a * b.tanh() + a.exp() / b, inputs)


@settings(max_examples=8)
@given(data=st.data(), n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3))
def test_matmul_gradients_on_strided_inputs(data, n, k, m):
    a, b = data.draw(strided_arrays((n, k))), data.draw(strided_arrays((k, m)))
    assert sk.gradcheck(lambda a, b: a @ b, (sk.Tensor(a, requires_grad=True), sk.Tensor(b, requires_grad=True)))


@settings(max_examples=8)
@given(data=st.data(), shape=shapes(min_dims=2, max_dims=3, max_side=3))
def test_reduction_and_reshape_gradients_on_strided_inputs(data, shape):
    a = data.draw(strided_arrays(shape))
    dim = data.draw(st.integers(0, len(shape) - 1))
    keepdim = data.draw(st.booleans())
    x = sk.Tensor(a, requires_grad=True)
    assert sk.gradcheck(lambda x: x.sum(dim, keepdim) * 2 + x.mean(dim, keepdim), (x,))
    assert sk.gradcheck(lambda x: x.reshape(-1) * x.reshape(-1).tanh(), (x,))


@settings(max_examples=4)
@given(cfg=small_conv_configs(), data=st.data())
def test_conv2d_gradients_on_strided_inputs(cfg, data):
    x = data.draw(strided(rng_arrays(cfg.x_shape)))
    w = data.draw(strided(rng_arrays(cfg.w_shape)))
    inputs = (sk.Tensor(x, requires_grad=True), sk.Tensor(w, requires_grad=True))
    assert sk.gradcheck(lambda x, w: F.conv2d(x, w, **cfg.kwargs), inputs)
