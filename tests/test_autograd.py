"""The autograd core: accumulation, broadcasting, deep graphs, graph release, no_grad, detach, memory."""
import gc
import math
import sys
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import skengine as sk
from skengine import ops
from skengine.autograd import sum_to
from strategies import arrays, broadcast_pairs, nonzero_arrays, seeds


def leaf(a, requires_grad=True):
    return sk.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# -- accumulation -----------------------------------------------------------------------
def test_grad_accumulates_across_two_backward_calls():
    x0 = np.array([0.5, -1.5, 2.0])
    x = leaf(x0)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x0)
    (x * 3.0).sum().backward()  # a second, separate graph
    np.testing.assert_allclose(x.grad.numpy(), 2 * x0 + 3)


def test_grad_accumulates_into_existing_grad_not_aliasing_it():
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    first = x.grad
    first_values = first.numpy().copy()
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [7.0, 7.0])
    np.testing.assert_allclose(first.numpy(), first_values)  # the earlier grad object was not mutated


def test_zeroing_grad_restarts_accumulation():
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    x.grad = None
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_grad_keeps_leaf_dtype_float32():
    x = sk.Tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_backward_with_explicit_upstream_grad():
    x0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = leaf(x0)
    y = x * x
    g = np.array([[1.0, -1.0], [0.5, 2.0]])
    y.backward(g)
    np.testing.assert_allclose(x.grad.numpy(), 2 * x0 * g)


def test_backward_on_leaf_accumulates_upstream_grad():
    x = leaf([1.0, 2.0])
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_backward_of_non_scalar_without_grad_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()


def test_backward_with_wrong_grad_shape_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"gradient shape \(3,\).*\(2,\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_without_requires_grad_raises():
    x = leaf([1.0, 2.0], requires_grad=False)
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x * 2.0).sum().backward()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        sk.Tensor(np.arange(3), requires_grad=True)


def test_constant_operand_gets_no_grad():
    x = leaf([1.0, 2.0])
    c = leaf([3.0, 4.0], requires_grad=False)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


# -- broadcasting ------------------------------------------------------------------------
def _binary(name):
    return {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
            "mul": lambda a, b: a * b, "div": lambda a, b: a / b}[name]


def _ref_grads(name, a, b):
    """Hand-derived gradients of sum(op(a, b)), summed back to each input's shape with numpy."""
    A, B = np.broadcast_arrays(a, b)
    ga, gb = {"add": (np.ones_like(A), np.ones_like(B)),
              "sub": (np.ones_like(A), -np.ones_like(B)),
              "mul": (B, A),
              "div": (1 / B, -A / B ** 2)}[name]
    return _naive_sum_to(ga, a.shape), _naive_sum_to(gb, b.shape)


def _naive_sum_to(g, shape):
    """Sum g down to shape, one element at a time (independent of autograd.sum_to)."""
    out = np.zeros(shape)
    lead = g.ndim - len(shape)
    for idx in np.ndindex(*g.shape):
        tgt = tuple(0 if n == 1 else i for i, n in zip(idx[lead:], shape))
        out[tgt] += g[idx]
    return out


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@given(data=st.data(), shapes=broadcast_pairs(max_dims=3, max_side=3))
def test_broadcast_binary_grads(name, data, shapes):
    sa, sb = shapes
    a0 = data.draw(arrays(sa))
    b0 = data.draw(nonzero_arrays(sb) if name == "div" else arrays(sb))
    a, b = leaf(a0), leaf(b0)
    out = _binary(name)(a, b)
    np.testing.assert_allclose(out.numpy(), _binary(name)(a0, b0))
    out.sum().backward()
    ra, rb = _ref_grads(name, a0, b0)
    assert a.grad.shape == sa and b.grad.shape == sb
    np.testing.assert_allclose(a.grad.numpy(), ra, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), rb, rtol=1e-10, atol=1e-12)
    sk.gradcheck(_binary(name), (leaf(a0), leaf(b0)))


@given(shapes=broadcast_pairs(max_dims=4, max_side=3), seed=seeds())
def test_sum_to_matches_naive_reduction(shapes, seed):
    sa, sb = shapes
    full = np.broadcast_shapes(sa, sb)
    g = np.random.default_rng(seed).standard_normal(full)
    for shape in (sa, sb):
        np.testing.assert_allclose(sum_to(g, shape), _naive_sum_to(g, shape), atol=1e-12)


@pytest.mark.parametrize("op, dx", [
    (lambda x: 2.0 - x, lambda x: -np.ones_like(x)),
    (lambda x: 3.0 / x, lambda x: -3.0 / x ** 2),
    (lambda x: 2.0 * x + 1.0, lambda x: 2 * np.ones_like(x)),
    (lambda x: x - np.float64(1.0), lambda x: np.ones_like(x)),
    (lambda x: np.float64(2.0) * x, lambda x: 2 * np.ones_like(x)),
])
def test_python_and_numpy_scalar_operands(op, dx):
    x0 = np.array([0.5, -1.5, 2.0])
    x = leaf(x0)
    y = op(x)
    assert isinstance(y, sk.Tensor) and y.dtype == np.float64
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), dx(x0))


# -- deep graphs -------------------------------------------------------------------------
def test_thousand_layer_chain_backward():
    x = leaf(np.array([1.0, -2.0]))
    y = x
    for _ in range(1000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 1000] * 2, rtol=1e-12)
    np.testing.assert_allclose(y.numpy(), np.array([1.0, -2.0]) * 1.0001 ** 1000, rtol=1e-12)


def test_deep_tanh_chain_beyond_recursion_limit():
    depth = max(3000, sys.getrecursionlimit() + 500)  # a recursive backward would overflow the stack
    x0 = 0.3
    x = leaf([x0])
    y = x
    for _ in range(depth):
        y = y.tanh()
    y.sum().backward()
    v, d = x0, 1.0  # the chain rule, by hand
    for _ in range(depth):
        v = math.tanh(v)
        d *= 1 - v * v
    np.testing.assert_allclose(y.numpy(), [v], rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), [d], rtol=1e-9)


# -- diamonds and reuse --------------------------------------------------------------------
def test_diamond_same_input_twice():
    x0 = np.array([0.5, -1.0, 2.0])
    x = leaf(x0)
    (x * x + x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x0 + 3)


def test_diamond_through_shared_intermediate():
    x0 = np.array([0.2, -0.7])
    x = leaf(x0)
    a = x.exp()
    (a + a * a).sum().backward()  # d/dx (e^x + e^2x)
    np.testing.assert_allclose(x.grad.numpy(), np.exp(x0) + 2 * np.exp(2 * x0), rtol=1e-12)


def test_diamond_with_unequal_branch_depths():
    # a = tanh(x); b = a*2; c = (b*a) ; d = c + a;  d = 2a^2 + a
    x0 = np.array([0.3, -1.2, 0.8])
    x = leaf(x0)
    a = x.tanh()
    b = a * 2.0
    for _ in range(5):  # lengthen one branch
        b = b * 1.0
    d = b * a + a
    d.sum().backward()
    t = np.tanh(x0)
    np.testing.assert_allclose(x.grad.numpy(), (4 * t + 1) * (1 - t ** 2), rtol=1e-12)


def test_same_tensor_as_both_operands():
    x0 = np.array([1.5, -2.0])
    x = leaf(x0)
    (x * x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x0 ** 2)
    x.grad = None
    (x / x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0], atol=1e-15)
    x.grad = None
    (x - x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0])


def test_multi_output_function_with_unused_outputs():
    x0 = np.arange(6.0)
    x = leaf(x0)
    a, b, c = sk.split(x, 2)
    (b * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0, 3, 3, 0, 0])


@given(a0=arrays((3,)), b0=arrays((3,)))
def test_random_composite_graph_gradcheck(a0, b0):
    def f(a, b):
        u = a * b + a.tanh()
        v = u * u - b.sigmoid() * a
        return (v + u).sum() * 0.5
    sk.gradcheck(f, (leaf(a0), leaf(b0)))


# -- graph release and retain_graph ------------------------------------------------------------
def test_second_backward_without_retain_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_second_backward_and_doubles_grad():
    x0 = np.array([1.0, -2.0])
    x = leaf(x0)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), 2 * x0)
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), 4 * x0)
    y.backward()  # the last use frees it
    np.testing.assert_allclose(x.grad.numpy(), 6 * x0)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def _graph_functions(t):
    seen, stack, fns = set(), [t.creator], []
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        fns.append(fn)
        stack.extend(edge[0] for edge in fn.edges if edge is not None)
    return fns


def test_every_function_released_after_backward():
    x = leaf(np.array([0.5, 1.5, 2.5]))
    w = leaf(np.array([1.0, -1.0, 2.0]))
    y = ((x * w).exp() / (x + 1.0)).log().tanh().sum()
    fns = _graph_functions(y)
    assert len(fns) >= 6
    y.backward()
    assert all(not any(hasattr(v, "__array_interface__") for v in vars(fn).values()) for fn in fns)  # no array left
    assert all(fn.freed == any(isinstance(fn, k) for k in (ops.Mul, ops.Div, ops.Exp, ops.Log, ops.Tanh))
               for fn in fns)  # marked freed where backward needed what was dropped


def test_second_backward_through_functions_that_saved_nothing_works_like_torch():
    x = leaf([1.0, 2.0])
    s = (x + 1.0).sum()
    s.backward()
    s.backward()  # Add and Sum keep no arrays: torch allows this too
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_saved_arrays_are_freed_after_backward():
    x = leaf(np.linspace(0.5, 2.0, 1000))
    h = x * 2.0
    y = h ** 3  # Pow saves h's array
    fn = y.creator
    saved = weakref.ref(fn.x)
    h_ref = weakref.ref(h)
    del h
    gc.collect()
    assert saved() is not None  # the array Pow's backward needs is held until backward ...
    assert h_ref() is None  # ... but not the input Tensor itself (a node keeps no inputs, as in Chainer)
    y.sum().backward()
    gc.collect()
    assert saved() is None


def test_retain_graph_keeps_saved_arrays():
    x = leaf(np.linspace(0.5, 2.0, 10))
    y = (x * 2.0) ** 3
    saved = weakref.ref(y.creator.x)
    y.sum().backward(retain_graph=True)
    gc.collect()
    assert saved() is not None


def test_intermediates_do_not_accumulate_over_training_steps():
    w = leaf(np.ones(4))
    refs = []
    for step in range(5):
        h = (w * float(step + 1)).tanh()
        refs.append(weakref.ref(h))
        (h * h).sum().backward()
        del h
    gc.collect()
    assert all(r() is None for r in refs)


# -- no_grad, detach, item ------------------------------------------------------------------------
def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with sk.no_grad():
        assert not sk.is_grad_enabled()
        y = x * 2.0 + 1.0
        z = y.exp().sum()
    assert sk.is_grad_enabled()
    for t in (y, z):
        assert not t.requires_grad and t.creator is None
    np.testing.assert_allclose(y.numpy(), [3.0, 5.0])
    with pytest.raises(RuntimeError):
        z.backward()


def test_no_grad_restores_state_after_exception():
    with pytest.raises(ZeroDivisionError):
        with sk.no_grad():
            _ = 1 / 0
    assert sk.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = leaf([1.0, 2.0])
    with sk.no_grad():
        with sk.enable_grad():
            y = x * 2.0
        z = x * 2.0
    assert y.requires_grad and y.creator is not None
    assert not z.requires_grad


def test_detach_stops_gradient_and_shares_values():
    x0 = np.array([1.0, -3.0])
    x = leaf(x0)
    d = x.detach()
    assert not d.requires_grad and d.creator is None and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), x0)
    (d * x).sum().backward()  # d is a constant: the grad is d, not 2x
    np.testing.assert_allclose(x.grad.numpy(), x0)


def test_detach_of_intermediate_cuts_the_graph():
    x0 = np.array([0.5, 2.0])
    x = leaf(x0)
    h = x * x
    (h.detach() * x + h).sum().backward()  # d/dx (c*x + x^2) with c = x^2 held constant
    np.testing.assert_allclose(x.grad.numpy(), x0 ** 2 + 2 * x0)


def test_item():
    x = leaf([[2.5]])
    v = (x * 2.0).sum().item()
    assert isinstance(v, float) and v == 5.0
    assert isinstance(sk.Tensor(np.array(3, np.int64)).item(), int)
    with pytest.raises(ValueError, match="one element"):
        leaf([1.0, 2.0]).item()


def test_comparisons_and_argmax_carry_no_grad():
    x = leaf([1.0, 3.0, 2.0])
    for t in (x > 1.5, x == 3.0, x.argmax()):
        assert not t.requires_grad and t.creator is None
    assert x.argmax().item() == 1
    np.testing.assert_array_equal((x > 1.5).numpy(), [False, True, True])


def test_requires_grad_propagation():
    a = leaf([1.0], requires_grad=False)
    b = leaf([1.0], requires_grad=True)
    assert not (a * 2.0).requires_grad
    assert (a * b).requires_grad
    assert b.is_leaf and not (a * b).is_leaf


@pytest.mark.parametrize("reduce", [lambda t: t.sum(), lambda t: t.mean(), lambda t: t.amax(),
                                    lambda t: t[0] + t[1], lambda t: (t * t).sum() * 2.0])
def test_float64_scalar_results_stay_float64(reduce):
    # NumPy returns np.float64 scalars from full reductions / 0-d arithmetic; they must not drop to float32
    x = leaf([0.1, 0.2, 0.3])
    y = reduce(x)
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float64


def test_numpy_scalar_keeps_dtype_python_float_is_float32():
    assert sk.Tensor(np.float64(1.5)).dtype == np.float64
    assert sk.Tensor(np.float32(1.5)).dtype == np.float32
    assert sk.Tensor(1.5).dtype == np.float32


# -- PyTorch's semantics for conversions, promotion and in-place ops ----------------------------
def test_python_conversions_of_one_element_tensors():
    assert float(sk.tensor(2.5)) == 2.5 and int(sk.tensor([7])) == 7
    assert f"{sk.tensor(1.23456):.2f}" == "1.23" and bool(sk.tensor(0.0)) is False and bool(sk.tensor([3]))
    with pytest.raises(RuntimeError, match=r"shape \(2,\) is ambiguous"):
        bool(sk.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="one element"):
        float(sk.tensor([1.0, 2.0]))


def test_scalar_and_mixed_kind_promotion_follows_torch():
    i = sk.tensor([1, 3])
    assert (i * 0.5).dtype == np.float32 and (i * 0.5).tolist() == [0.5, 1.5]
    assert (i + 0.5).tolist() == [1.5, 3.5] and (i * 2).dtype == np.int64
    assert ((i > 1) * 1.0).dtype == np.float32 and ((i > 1) + 1).dtype == np.int64
    assert (i / i).dtype == np.float32 and (i / 2).tolist() == [0.5, 1.5]
    assert (i + sk.tensor([0.5, 0.5])).dtype == np.float32
    assert (sk.tensor([1.0], dtype=np.float64) * 2.0).dtype == np.float64
    assert sk.arange(0, 1, 0.25).dtype == np.float32 and sk.arange(3).dtype == np.int64
    with pytest.raises(TypeError, match="mean: needs a floating-point tensor"):
        i.mean()


def test_in_place_update_under_no_grad_writes_the_same_array():
    p = leaf([1.0, 2.0])
    p.grad = sk.tensor([1.0, 1.0], dtype=np.float64)
    data, state = p.data, {"p": p}
    with sk.no_grad():
        p -= 0.5 * p.grad
        p.mul_(2).add_(sk.tensor([1.0, 1.0], dtype=np.float64), alpha=3)
    assert p.data is data and state["p"] is p and p.requires_grad and p.is_leaf
    np.testing.assert_array_equal(p.numpy(), [4.0, 6.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad cannot be changed in place"):
        p += 1
    i = sk.tensor([1, 2])
    with pytest.raises(TypeError, match="cannot be stored in this tensor's dtype int64"):
        i += 0.5


def test_in_place_ops_inside_a_graph_give_exact_gradients():
    w = leaf([1.0, 2.0, 3.0])
    h = w * 2
    h[1] = w[0] * 10      # h = [2 w0, 10 w0, 2 w2]
    h += w.exp()          # the old h fed nothing else; exp's saved output is untouched
    (h * h).sum().backward()
    a = w.numpy()
    h_val = np.array([2 * a[0], 10 * a[0], 2 * a[2]]) + np.exp(a)
    expect = np.array([2 * h_val[0] * (2 + np.exp(a[0])) + 2 * h_val[1] * 10,
                       2 * h_val[1] * np.exp(a[1]), 2 * h_val[2] * (2 + np.exp(a[2]))])
    np.testing.assert_allclose(w.grad.numpy(), expect, rtol=1e-12)
    t = sk.zeros(3, dtype=np.float64)
    t[2] = w[1] * 3       # a tensor without grad becomes part of the graph
    w.grad = None
    t.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [0.0, 3.0, 0.0])


def test_setitem_and_fill_without_a_graph():
    t = sk.zeros(2, 3)
    view = t[0]
    t[0, 1:] = 5.0
    t[1] = sk.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(t.numpy(), [[0, 5, 5], [1, 2, 3]])
    np.testing.assert_array_equal(view.numpy(), [0, 5, 5])  # a basic-slice view sees the write, as in torch
    t.zero_()
    assert not t.numpy().any()
    t.fill_(2).copy_(sk.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match=r"setitem: cannot assign a value of shape \(4,\)"):
        t[0] = sk.zeros(4)


def test_backward_takes_torchs_gradient_keyword():
    x = leaf([1.0, 2.0])
    (x * 3).backward(gradient=np.array([1.0, 0.5]))
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 1.5])


def test_max_and_min_along_a_dim_return_values_and_indices_by_name():
    m = sk.tensor([[1.0, 5.0], [7.0, 2.0]])
    assert m.max(1).values.tolist() == [5.0, 7.0] and m.max(1).indices.tolist() == [1, 0]
    assert m.min(0).values.tolist() == [1.0, 2.0] and m.argmin(1).tolist() == [0, 1]
    assert m.min().item() == 1.0 and m.dim() == 2 and m.long().dtype == np.int64


def test_in_place_change_leaves_earlier_consumers_on_the_old_value():
    """torch's rule: an op that used h before h *= 5 still differentiates through h's old value."""
    for change, expect in ((lambda h: h.mul_(5), [6.0, 6.0]), (lambda h: h.fill_(0), [6.0, 6.0])):
        x = leaf([1.0, 2.0])
        h = x * 2
        y = h * 3
        change(h)
        y.sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), expect)
    x = leaf([1.0, 2.0])
    h = x * 2
    y = h * 3
    h *= 5
    (y.sum() + h.sum()).backward()  # 6 through y, 10 through the new h
    np.testing.assert_array_equal(x.grad.numpy(), [16.0, 16.0])


def test_in_place_on_a_result_whose_graph_was_freed():
    x = leaf([1.0, 2.0])
    total = (x * x).sum()
    total.backward()
    step = (x * x).sum()
    step.backward()
    total += step  # a running total of losses, as training loops keep
    assert total.item() == 10.0


def test_changing_an_array_a_backward_needs_raises_like_torch():
    w, c = leaf([1.0, 2.0]), sk.tensor([3.0, 4.0], dtype=np.float64)
    y = w * c
    c += 100  # Mul kept c for w's gradient
    with pytest.raises(RuntimeError, match=r"Mul.backward: an input it saved .* was changed in place"):
        y.sum().backward()
    w, v = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    y = w * v
    with sk.no_grad():
        w -= 10
    with pytest.raises(RuntimeError, match="changed in place after it was used"):
        y.sum().backward()
    w, c = leaf([1.0, 2.0]), sk.tensor([3.0, 4.0], dtype=np.float64)
    y = w + c
    c += 100  # Add keeps nothing: its backward is unaffected
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])


def test_copy_into_a_tensor_gives_it_its_own_writable_array():
    a = leaf([1.0, 2.0])
    b = sk.zeros(2, dtype=np.float64)
    b.copy_(a * 2)
    with sk.no_grad():
        b += 1
    np.testing.assert_array_equal(b.numpy(), [3.0, 5.0])
    np.testing.assert_array_equal(a.numpy(), [1.0, 2.0])


def test_setitem_value_with_extra_leading_ones():
    w = leaf([1.0, 2.0, 3.0])
    t = sk.zeros(2, 3, dtype=np.float64)
    t[0] = w.reshape(1, 3) * 2
    t.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0, 2.0])


def test_min_and_argmin_of_unsigned_and_bool_tensors():
    u = sk.Tensor(np.array([7, 0, 5, 3], np.uint8))
    assert u.min().item() == 0 and u.argmin().item() == 1 and u.min(0).indices.item() == 1
    assert sk.Tensor(np.array([True, False])).min().item() is False


def test_zero_dim_tensors_and_integer_powers_promote_like_torch():
    assert (sk.ones(2) + sk.tensor(1.0, dtype=np.float64)).dtype == np.float32
    assert (sk.ones(2, dtype=np.float64) + sk.tensor(1.0)).dtype == np.float64
    p = 2 ** sk.tensor([1, 2])
    assert p.dtype == np.int64 and p.tolist() == [2, 4]
    assert (2.0 ** sk.tensor([1, 2])).dtype == np.float32 and sk.ones(2).to(sk.float64).dtype == np.float64


def test_a_tensor_given_a_new_array_in_a_graph_does_not_trip_the_version_check():
    w, w2 = leaf([1.0, 2.0]), leaf([5.0, 6.0])
    c = sk.tensor([3.0, 4.0], dtype=np.float64)
    c += 1            # written in place: version 1
    y = w * c         # Mul keeps c's array at version 1
    c += w2           # c becomes a new node with a new array; the kept one is untouched
    (y.sum() + c.sum()).backward()
    np.testing.assert_array_equal(w.grad.numpy(), [4.0, 5.0])
    np.testing.assert_array_equal(w2.grad.numpy(), [1.0, 1.0])


# -- cases a differential fuzzer against torch 2.14 found ----------------------------------------
def test_grads_are_own_writable_arrays():
    x = leaf([1.0, 2.0])
    x.sum().backward()  # the gradient reaching x is a broadcast view
    x.grad.zero_()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])
    a, c = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    ((a + c) * 2.0).sum().backward()  # Add hands one array to both
    a.grad.mul_(10)
    np.testing.assert_array_equal(c.grad.numpy(), [2.0, 2.0])


def test_in_place_result_must_keep_the_shape_inside_a_graph_too():
    acc, a = sk.zeros(3, dtype=np.float64), leaf(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\+=: the result has shape \(2, 3\).*shape \(3,\)"):
        acc += a


def test_fill_and_copy_keep_a_graph_tensor_in_the_graph():
    a, b = leaf([1.0, 2.0, 3.0]), leaf([4.0, 5.0, 6.0])
    h = a.clone()
    h.zero_()
    assert h.requires_grad
    (h * b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.0, 0.0, 0.0])
    a.grad = b.grad = None
    v = a / 2.0
    v.copy_(b)
    v.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0, 1.0])


def test_version_check_covers_kept_outputs_and_detached_aliases():
    a = leaf([0.5, 1.0])
    y = a.exp()  # Exp keeps its output
    with sk.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match="Exp.backward"):
        y.sum().backward()
    a = leaf([0.5, 1.0])
    y = a * a
    a.detach().zero_()  # the same array, changed through its detached alias
    with pytest.raises(RuntimeError, match="Mul.backward"):
        y.sum().backward()


def test_scaling_by_a_constant_keeps_nothing_that_a_later_change_could_spoil():
    a = leaf([1.0, 2.0])
    y = a * 2.0  # only the constant is kept for a's gradient
    z = a / 4.0
    with sk.no_grad():
        a.mul_(1.5)
    (y.sum() + z.sum()).backward()
    np.testing.assert_array_equal(a.grad.numpy(), [2.25, 2.25])


def test_integer_index_of_a_vector_is_a_view_and_zero_d_sums_take_dim_0():
    p = sk.tensor([1.0, 2.0])
    v = p[0]
    p.zero_()
    assert v.item() == 0.0
    assert leaf([1.0, 2.0]).sum().sum(0).item() == 3.0


def test_second_backward_through_slicing_and_a_setitem_value_with_a_leading_one():
    a = leaf(np.ones((2, 3)))
    s = a[1:].sum()  # GetItem keeps only its index and shapes
    s.backward()
    s.backward()
    np.testing.assert_array_equal(a.grad.numpy(), [[0, 0, 0], [2, 2, 2]])
    w = leaf([1.0, 1.0, 1.0])
    q = sk.zeros(3, dtype=np.float64)
    q[np.array([True, False, True])] = (w[:2] * 2).reshape(1, 2)  # (1, 2) into 2 places, as torch allows
    q.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0, 0.0])


def test_torch_style_function_forms_and_creation_functions():
    x = leaf([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    y = sk.sum(sk.exp(x) * sk.sigmoid(x), 1) + sk.max(x, 1).values + sk.pow(x, 2).mean(1)
    y.sum().backward()
    a = x.numpy()
    sig = 1 / (1 + np.exp(-a))
    expect = np.exp(a) * sig + np.exp(a) * sig * (1 - sig) + (a == a.max(1, keepdims=True)) + 2 * a / 3
    np.testing.assert_allclose(x.grad.numpy(), expect, rtol=1e-12)
    assert sk.pow(2, sk.tensor([3])).tolist() == [8] and sk.transpose(x, 0, 1).shape == (3, 2)
    np.testing.assert_allclose(sk.softmax(x, -1).sum(-1).numpy(), 1.0)
    sk.manual_seed(3)
    r, i = sk.rand(1000), sk.randint(2, 5, (1000,))
    assert r.dtype == np.float32 and 0 <= r.numpy().min() and r.numpy().max() < 1
    assert i.dtype == np.int64 and set(i.tolist()) == {2, 3, 4}
    assert sk.linspace(0, 1, 5).tolist() == [0, 0.25, 0.5, 0.75, 1] and sk.eye(2).tolist() == [[1, 0], [0, 1]]
    assert sk.ones(2).to(sk.bool).dtype == np.bool_ and sk.empty(2, 3).shape == (2, 3)
    with pytest.raises(TypeError, match="skengine.exp: input must be a Tensor, got ndarray"):
        sk.exp(np.ones(2))
