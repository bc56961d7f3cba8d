"""Every differentiable tensor op: forward against NumPy, backward against finite differences (float64)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skengine as sk
from skengine import ops
from strategies import (
    arrays,
    arrays_of_shapes,
    away_from,
    broadcast_pairs,
    nonzero_arrays,
    positive_arrays,
    shapes,
    unique_arrays,
)


def leaf(a, requires_grad=True):
    return sk.Tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


def check(fn, *arrays_, ref=None, **kw):
    """fn's forward equals ref (NumPy, if given) and its backward passes gradcheck."""
    if ref is not None:
        out = fn(*[leaf(a, False) for a in arrays_])
        outs = out if isinstance(out, tuple) else (out,)
        refs = ref(*arrays_)
        refs = refs if isinstance(refs, tuple) else (refs,)
        assert len(outs) == len(refs)
        for o, r in zip(outs, refs):
            assert o.shape == np.shape(r), (o.shape, np.shape(r))
            np.testing.assert_allclose(o.numpy(), r, rtol=1e-12, atol=1e-12)
    assert sk.gradcheck(fn, tuple(leaf(a) for a in arrays_), **kw)


small = shapes(min_dims=1, max_dims=3, max_side=4)
small0 = shapes(min_dims=0, max_dims=3, max_side=4)


# -- arithmetic ----------------------------------------------------------------------------
@given(ab=broadcast_pairs(max_dims=3, max_side=3).flatmap(lambda s: st.tuples(arrays(s[0]), arrays(s[1]))))
def test_add(ab):
    check(lambda a, b: a + b, *ab, ref=np.add)


@given(ab=broadcast_pairs(max_dims=3, max_side=3).flatmap(lambda s: st.tuples(arrays(s[0]), arrays(s[1]))))
def test_sub(ab):
    check(lambda a, b: a - b, *ab, ref=np.subtract)


@given(ab=broadcast_pairs(max_dims=3, max_side=3).flatmap(lambda s: st.tuples(arrays(s[0]), arrays(s[1]))))
def test_mul(ab):
    check(lambda a, b: a * b, *ab, ref=np.multiply)


@given(ab=broadcast_pairs(max_dims=3, max_side=3).flatmap(
    lambda s: st.tuples(arrays(s[0]), nonzero_arrays(s[1], margin=0.5))))
def test_div(ab):
    check(lambda a, b: a / b, *ab, ref=np.divide)


@given(a=arrays_of_shapes(small0))
def test_neg(a):
    check(lambda x: -x, a, ref=np.negative)


@pytest.mark.parametrize("p", [2, 3, -1, 0, 1.5, 0.5, -0.5, 2.0])
@given(data=st.data(), shape=small)
def test_pow_scalar(p, data, shape):
    integer = float(p).is_integer()
    if integer and p >= 0:
        a = data.draw(arrays(shape))
    elif integer:
        a = data.draw(nonzero_arrays(shape, margin=0.5))
    else:
        a = data.draw(positive_arrays(shape, lo=0.3))
    check(lambda x: x ** p, a, ref=lambda x: x ** p)


@st.composite
def matmul_operands(draw, a_nd, b_nd):
    n, k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(st.lists(st.integers(1, 3), min_size=2, max_size=2))
    a_batch = [draw(st.sampled_from([1, b])) for b in batch][4 - max(a_nd, 2):] if a_nd > 2 else []
    b_batch = [draw(st.sampled_from([1, b])) for b in batch][4 - max(b_nd, 2):] if b_nd > 2 else []
    a_shape = (k,) if a_nd == 1 else tuple(a_batch) + (n, k)
    b_shape = (k,) if b_nd == 1 else tuple(b_batch) + (k, m)
    return draw(arrays(a_shape)), draw(arrays(b_shape))


@pytest.mark.parametrize("a_nd", [1, 2, 3, 4])
@pytest.mark.parametrize("b_nd", [1, 2, 3, 4])
@settings(max_examples=6)
@given(data=st.data())
def test_matmul_batched_and_1d(a_nd, b_nd, data):
    a, b = data.draw(matmul_operands(a_nd, b_nd))
    check(lambda a, b: a @ b, a, b, ref=np.matmul)


def test_matmul_1d_times_batched_sums_over_batch():
    rng = np.random.default_rng(0)
    a0, b0 = rng.standard_normal(3), rng.standard_normal((4, 3, 2))
    a, b = leaf(a0), leaf(b0)
    (a @ b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b0.sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), np.broadcast_to(a0[None, :, None], (4, 3, 2)), rtol=1e-12)


def test_matmul_both_1d_is_a_dot_product():
    a, b = leaf([1.0, 2.0, 3.0]), leaf([4.0, -5.0, 6.0])
    y = a @ b
    assert y.shape == () and y.item() == pytest.approx(12.0)
    y.backward()
    np.testing.assert_allclose(a.grad.numpy(), [4.0, -5.0, 6.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 2.0, 3.0])


# -- elementwise ---------------------------------------------------------------------------
@given(a=arrays_of_shapes(small0))
def test_exp(a):
    check(lambda x: x.exp(), a, ref=np.exp)


@given(a=small.flatmap(positive_arrays))
def test_log(a):
    check(lambda x: x.log(), a, ref=np.log)


@given(a=small.flatmap(positive_arrays))
def test_sqrt(a):
    check(lambda x: x.sqrt(), a, ref=np.sqrt)


@given(a=small.flatmap(lambda s: nonzero_arrays(s, margin=0.05)))
def test_abs(a):
    check(lambda x: x.abs(), a, ref=np.abs)


@given(a=small.flatmap(lambda s: nonzero_arrays(s, margin=0.05)))
def test_relu(a):
    check(lambda x: x.relu(), a, ref=lambda x: np.maximum(x, 0))


@given(a=arrays_of_shapes(small, lo=-6, hi=6))
def test_sigmoid(a):
    check(lambda x: x.sigmoid(), a, ref=lambda x: 1 / (1 + np.exp(-x)))


@given(a=arrays_of_shapes(small, lo=-3, hi=3))
def test_tanh(a):
    check(lambda x: x.tanh(), a, ref=np.tanh)


CLOSED_FORM = {  # op, derivative by hand, domain
    "exp": (lambda t: t.exp(), np.exp, "any"),
    "log": (lambda t: t.log(), lambda x: 1 / x, "pos"),
    "sqrt": (lambda t: t.sqrt(), lambda x: 0.5 / np.sqrt(x), "pos"),
    "abs": (lambda t: t.abs(), np.sign, "nonzero"),
    "relu": (lambda t: t.relu(), lambda x: (x > 0).astype(float), "nonzero"),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2, "any"),
    "tanh": (lambda t: t.tanh(), lambda x: 1 / np.cosh(x) ** 2, "any"),
    "neg": (lambda t: -t, lambda x: -np.ones_like(x), "any"),
    "pow2": (lambda t: t ** 2, lambda x: 2 * x, "any"),
    "pow3": (lambda t: t ** 3, lambda x: 3 * x ** 2, "any"),
    "pow-1": (lambda t: t ** -1, lambda x: -1 / x ** 2, "nonzero"),
    "pow-2.5": (lambda t: t ** -2.5, lambda x: -2.5 * x ** -3.5, "pos"),
    "pow0.5": (lambda t: t ** 0.5, lambda x: 0.5 / np.sqrt(x), "pos"),
    "pow0": (lambda t: t ** 0, lambda x: np.zeros_like(x), "pos"),
}


@pytest.mark.parametrize("name", list(CLOSED_FORM))
@given(data=st.data(), shape=small)
def test_elementwise_grad_matches_closed_form(name, data, shape):
    op, deriv, domain = CLOSED_FORM[name]
    a = data.draw({"any": arrays(shape, -3, 3), "pos": positive_arrays(shape, 0.2, 3),
                   "nonzero": nonzero_arrays(shape, margin=0.2)}[domain])
    x = leaf(a)
    g = np.random.default_rng(0).standard_normal(shape)
    op(x).backward(g)
    np.testing.assert_allclose(x.grad.numpy(), g * deriv(a), rtol=1e-10, atol=1e-12)


def test_sigmoid_is_stable_for_large_inputs():
    with np.errstate(over="raise"):
        y = leaf([-1000.0, 0.0, 1000.0]).sigmoid().numpy()
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


def test_abs_and_relu_kink_conventions():
    x = leaf([0.0, -0.0, 2.0])
    (x.relu() + x.abs()).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 2.0])  # subgradient 0 at 0, like PyTorch


def test_away_from_helper_moves_values_off_kinks():
    a = away_from(np.array([0.0, -0.01, 0.5, -2.0]), (0.0,), 0.1)
    assert np.all(np.abs(a) >= 0.1)
    np.testing.assert_array_equal(np.sign(a), [1, -1, 1, -1])


# -- reductions --------------------------------------------------------------------------------
@st.composite
def reduce_args(draw, min_dims=1):
    shape = draw(shapes(min_dims=min_dims, max_dims=3, max_side=4))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "neg", "tuple"]))
    if kind == "none":
        dim = None
    elif kind == "int":
        dim = draw(st.integers(0, nd - 1))
    elif kind == "neg":
        dim = draw(st.integers(-nd, -1))
    else:
        dim = tuple(draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True)))
    return shape, dim, draw(st.booleans())


def _np_dim(dim):
    return dim if dim is None or isinstance(dim, int) else tuple(dim)


@given(args=reduce_args(), data=st.data())
def test_sum(args, data):
    shape, dim, keepdim = args
    check(lambda x: x.sum(dim, keepdim), data.draw(arrays(shape)),
          ref=lambda x: np.sum(x, axis=_np_dim(dim), keepdims=keepdim))


@given(args=reduce_args(), data=st.data())
def test_mean(args, data):
    shape, dim, keepdim = args
    check(lambda x: x.mean(dim, keepdim), data.draw(arrays(shape)),
          ref=lambda x: np.mean(x, axis=_np_dim(dim), keepdims=keepdim))


@given(args=reduce_args(), data=st.data())
def test_amax_unique_values(args, data):
    shape, dim, keepdim = args
    check(lambda x: x.amax(dim, keepdim), data.draw(unique_arrays(shape)),
          ref=lambda x: np.max(x, axis=_np_dim(dim), keepdims=keepdim))


def test_amax_splits_gradient_evenly_among_ties():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x.amax(dim=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


@given(args=reduce_args(), data=st.data())
def test_max_dim_values_and_indices(args, data):
    shape, _, keepdim = args
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = data.draw(unique_arrays(shape))
    values, idx = leaf(a).max(dim=dim, keepdim=keepdim)
    np.testing.assert_array_equal(values.numpy(), np.max(a, axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(idx.numpy(), np.argmax(a, axis=dim, keepdims=keepdim))
    assert not idx.requires_grad
    check(lambda x: x.max(dim=dim, keepdim=keepdim)[0], a)


def test_full_max_and_sum_of_scalar():
    x = leaf(np.array(2.5))
    y = x.sum() + x.amax()
    y.backward()
    assert x.grad.item() == 2.0


# -- shapes ---------------------------------------------------------------------------------------
@st.composite
def reshape_args(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
    n = math.prod(shape)
    d = draw(st.sampled_from([k for k in range(1, n + 1) if n % k == 0]))
    target = draw(st.sampled_from([(d, -1), (-1, d), (d, n // d), (n,), (1, d, n // d)]))
    return shape, target


@given(args=reshape_args(), data=st.data())
def test_reshape_and_view(args, data):
    shape, target = args
    a = data.draw(arrays(shape))
    check(lambda x: x.reshape(target), a, ref=lambda x: x.reshape(target))
    check(lambda x: x.view(*target), a, ref=lambda x: x.reshape(target))


@given(shape=shapes(min_dims=1, max_dims=4, max_side=3), data=st.data())
def test_transpose(shape, data):
    nd = len(shape)
    d0, d1 = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
    check(lambda x: x.transpose(d0, d1), data.draw(arrays(shape)), ref=lambda x: np.swapaxes(x, d0, d1))


@given(shape=shapes(min_dims=1, max_dims=4, max_side=3), data=st.data())
def test_permute_and_T(shape, data):
    perm = data.draw(st.permutations(range(len(shape))))
    a = data.draw(arrays(shape))
    check(lambda x: x.permute(*perm), a, ref=lambda x: np.transpose(x, perm))
    check(lambda x: x.permute(perm), a, ref=lambda x: np.transpose(x, perm))
    check(lambda x: x.T, a, ref=lambda x: x.T)


@given(shape=shapes(min_dims=1, max_dims=4, max_side=3), data=st.data())
def test_flatten(shape, data):
    nd = len(shape)
    start = data.draw(st.integers(0, nd - 1))
    end = data.draw(st.integers(start, nd - 1))
    end = data.draw(st.sampled_from([end, end - nd]))  # negative end_dim too
    flat_shape = shape[:start] + (math.prod(shape[start:end % nd + 1]),) + shape[end % nd + 1:]
    check(lambda x: x.flatten(start, end), data.draw(arrays(shape)), ref=lambda x: x.reshape(flat_shape))


@given(shape=shapes(min_dims=0, max_dims=3, max_side=3), data=st.data())
def test_unsqueeze(shape, data):
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check(lambda x: x.unsqueeze(dim), data.draw(arrays(shape)), ref=lambda x: np.expand_dims(x, dim))


@given(shape=shapes(min_dims=1, max_dims=4, min_side=1, max_side=2), data=st.data())
def test_squeeze(shape, data):
    a = data.draw(arrays(shape))
    check(lambda x: x.squeeze(), a, ref=np.squeeze)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    ref = (lambda x: np.squeeze(x, axis=dim)) if shape[dim] == 1 else (lambda x: x)  # like torch: no-op if not 1
    check(lambda x: x.squeeze(dim), a, ref=ref)


# -- indexing -----------------------------------------------------------------------------------------
BASIC_INDICES = [
    1, -1, slice(None), slice(1, 3), slice(None, None, 2), slice(None, None, -1), slice(-2, None),
    (slice(None), 0), (Ellipsis, 1), (None, 0), (0, slice(1, None)), (slice(None), slice(None, None, -2)),
]


@pytest.mark.parametrize("index", BASIC_INDICES, ids=repr)
@given(a=arrays((3, 4)))
def test_basic_indexing_and_slicing(index, a):
    check(lambda x: x[index], a, ref=lambda x: x[index])


@given(a=arrays((4, 3)), idx=st.lists(st.integers(-4, 3), min_size=1, max_size=7))
def test_fancy_index_with_repeats(a, idx):
    idx = np.array(idx)
    check(lambda x: x[idx], a, ref=lambda x: x[idx])
    check(lambda x: x[sk.Tensor(idx)], a, ref=lambda x: x[idx])
    check(lambda x: x[list(idx)], a, ref=lambda x: x[idx])


@given(a=arrays((3, 4)), rows=st.lists(st.integers(0, 2), min_size=1, max_size=5), data=st.data())
def test_fancy_index_pairs_with_repeats(a, rows, data):
    cols = data.draw(st.lists(st.integers(0, 3), min_size=len(rows), max_size=len(rows)))
    rows, cols = np.array(rows), np.array(cols)
    check(lambda x: x[rows, cols], a, ref=lambda x: x[rows, cols])
    check(lambda x: x[:, cols], a, ref=lambda x: x[:, cols])


def test_repeated_index_accumulates_gradient():
    x = leaf([10.0, 20.0, 30.0])
    x[np.array([0, 2, 0, 0])].sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 0.0, 1.0])


@given(a=arrays((3, 4)), mask=arrays((3, 4)).map(lambda m: m > 0))
def test_boolean_mask_index(a, mask):
    check(lambda x: x[mask], a, ref=lambda x: x[mask])


# -- cat, stack, split, take_along_dim ----------------------------------------------------------------
@st.composite
def cat_inputs(draw):
    nd = draw(st.integers(1, 3))
    base = list(draw(shapes(min_dims=nd, max_dims=nd, max_side=3)))
    dim = draw(st.integers(-nd, nd - 1))
    out = []
    for _ in range(draw(st.integers(1, 3))):
        s = list(base)
        s[dim] = draw(st.integers(1, 3))
        out.append(draw(arrays(tuple(s))))
    return out, dim


@given(args=cat_inputs())
def test_cat(args):
    arrs, dim = args
    check(lambda *xs: sk.cat(list(xs), dim=dim), *arrs, ref=lambda *xs: np.concatenate(xs, axis=dim))


@given(shape=shapes(min_dims=0, max_dims=3, max_side=3), n=st.integers(1, 3), data=st.data())
def test_stack(shape, n, data):
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    arrs = [data.draw(arrays(shape)) for _ in range(n)]
    check(lambda *xs: sk.stack(xs, dim=dim), *arrs, ref=lambda *xs: np.stack(xs, axis=dim))


@given(shape=shapes(min_dims=1, max_dims=3, max_side=5), data=st.data())
def test_split_by_size(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    size = data.draw(st.integers(1, shape[dim] + 1))
    n = shape[dim]
    bounds = list(range(size, n, size))
    check(lambda x: sk.split(x, size, dim), data.draw(arrays(shape)),
          ref=lambda x: tuple(np.split(x, bounds, axis=dim)))


@given(shape=shapes(min_dims=1, max_dims=3, max_side=5), data=st.data())
def test_split_by_sections_and_method(shape, data):
    dim = data.draw(st.integers(0, len(shape) - 1))
    n = shape[dim]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    check(lambda x: x.split(sizes, dim), data.draw(arrays(shape)),
          ref=lambda x: tuple(np.split(x, np.cumsum(sizes)[:-1], axis=dim)))


@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_take_along_dim_with_repeats(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    idx_shape = list(shape)
    idx_shape[dim] = data.draw(st.integers(1, 5))
    n = math.prod(idx_shape)
    idx = np.array(data.draw(st.lists(st.integers(0, shape[dim] - 1), min_size=n, max_size=n)),
                   dtype=np.int64).reshape(idx_shape)
    check(lambda x: ops.take_along_dim(x, idx, dim), data.draw(arrays(shape)),
          ref=lambda x: np.take_along_axis(x, idx, axis=dim))


# -- GPU (skipped without CuPy and a GPU) --------------------------------------------------------------
@pytest.mark.gpu
def test_ops_on_gpu_match_cpu():
    rng = np.random.default_rng(0)
    a0, b0 = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))

    def run(device):
        a = sk.tensor(a0, requires_grad=True, device=device)
        b = sk.tensor(b0, requires_grad=True, device=device)
        y = ((a @ b).tanh() * 2.0 + a.sum(dim=2, keepdim=True)).amax(dim=1)
        y = sk.cat([y, y[:, ::-1]], dim=1)
        y.sum().backward()
        return y.numpy(), a.grad.numpy(), b.grad.numpy()

    for c, g in zip(run("cpu"), run("cuda")):
        np.testing.assert_allclose(g, c, rtol=1e-10, atol=1e-12)


# -- casts, copies, clamp, where, expand, setitem, base ** tensor, var ---------------------------
@given(a=arrays_of_shapes(small0))
def test_cast_and_clone_pass_the_gradient_back(a):
    check(lambda x: x.clone() * x, a, ref=lambda x: x * x)
    # through float32 finite differences would measure rounding: the chain rule is checked exactly
    x, w = leaf(a), np.linspace(-1, 1, max(a.size, 1)).reshape(a.shape).astype(np.float32)
    (x.float() * sk.Tensor(w)).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), w.astype(np.float64))


@given(data=st.data(), shape=small, lo=st.floats(-1.5, 0), hi=st.floats(0.1, 1.5))
def test_clamp(data, shape, lo, hi):
    a = data.draw(arrays(shape))  # kept 0.1 away from the bounds, where the gradient jumps
    a = np.where(np.abs(a - lo) < 0.1, lo - 0.1, np.where(np.abs(a - hi) < 0.1, hi + 0.1, a))
    check(lambda x: x.clamp(lo, hi), a, ref=lambda x: np.clip(x, lo, hi))
    check(lambda x: x.clamp(min=lo), a, ref=lambda x: np.maximum(x, lo))
    check(lambda x: sk.clamp(x, max=hi), a, ref=lambda x: np.minimum(x, hi))


def test_clamp_gradient_is_zero_at_the_bounds_like_torch():
    """torch 2.14: clamp(0, 1) of [-1, 0, .5, 1, 2] has gradient [0, 0, 1, 0, 0]; min or max alone likewise."""
    for kw, expect in ((dict(min=0.0, max=1.0), [0, 0, 1, 0, 0]), (dict(min=0.0), [0, 0, 1, 1, 1]),
                       (dict(max=1.0), [1, 1, 1, 0, 0])):
        x = leaf([-1.0, 0.0, 0.5, 1.0, 2.0])
        x.clamp(**kw).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), expect)


@given(ab=broadcast_pairs(max_dims=3, max_side=3).flatmap(lambda s: st.tuples(arrays(s[0]), arrays(s[1]))),
       seed=st.integers(0, 2 ** 16))
def test_where(ab, seed):
    shape = np.broadcast_shapes(ab[0].shape, ab[1].shape)
    cond = np.random.default_rng(seed).random(shape) < 0.5
    check(lambda a, b: sk.where(sk.Tensor(cond), a, b), *ab, ref=lambda a, b: np.where(cond, a, b))


@given(data=st.data(), shape=small)
def test_expand(data, shape):
    a = data.draw(arrays(tuple(1 if i % 2 else n for i, n in enumerate(shape))))
    target = (2,) + tuple(max(n, 2) if m == 1 else m for n, m in zip(shape, a.shape))
    check(lambda x: x.expand(*target), a, ref=lambda x: np.broadcast_to(x, target))
    check(lambda x: x.expand((-1,) * a.ndim) * 1, a, ref=lambda x: x)


@given(data=st.data(), shape=shapes(min_dims=2, max_dims=3, min_side=2, max_side=4))
def test_setitem_out_of_place(data, shape):
    """y = x with y[index] = v: dy/dx is 1 off the index, 0 on it; dy/dv sums over broadcasting."""
    a = data.draw(arrays(shape))
    v = data.draw(arrays(shape[1:]))
    check(lambda x, w: ops.setitem(x, 1, w), a, v, ref=lambda x, w: np.concatenate([x[:1], w[None], x[2:]]))
    check(lambda x, w: ops.setitem(x, (slice(None), 0), w[0]), a, v,
          ref=lambda x, w: np.concatenate([np.broadcast_to(w[0], x[:, :1].shape), x[:, 1:]], axis=1))


@pytest.mark.parametrize("base", [2, 0.5, math.e, 10.0])
@given(a=arrays_of_shapes(small0))
def test_rpow(base, a):
    check(lambda x: base ** x, a, ref=lambda x: base ** x)


@given(args=reduce_args(), data=st.data(), correction=st.sampled_from([0, 1]))
def test_var_and_std(args, data, correction):
    shape, dim, keepdim = args
    a = data.draw(arrays(shape))
    dims = range(len(shape)) if dim is None else (dim,) if isinstance(dim, int) else dim
    n = int(np.prod([shape[d] for d in dims]))
    if n <= correction:
        return
    check(lambda x: x.var(dim, keepdim=keepdim, correction=correction), a,
          ref=lambda x: np.var(x, axis=_np_dim(dim), keepdims=keepdim, ddof=correction))
    a = a + np.linspace(0, 1, a.size).reshape(a.shape)  # keep the std away from 0 (its gradient's pole)
    if n > 1:
        check(lambda x: x.std(dim, keepdim=keepdim, unbiased=bool(correction)), a,
              ref=lambda x: np.std(x, axis=_np_dim(dim), keepdims=keepdim, ddof=correction))


@given(args=reduce_args(), data=st.data())
def test_min_dim_values_and_indices(args, data):
    shape, dim, keepdim = args
    if dim is None or not isinstance(dim, int):
        return
    a = data.draw(unique_arrays(shape))
    values, indices = leaf(a, False).min(dim, keepdim)
    np.testing.assert_array_equal(values.numpy(), np.min(a, axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.numpy(), np.argmin(a, axis=dim, keepdims=keepdim))
    check(lambda x: x.min(dim, keepdim).values, a)
    check(lambda x: x.amin(dim, keepdim), a, ref=lambda x: np.min(x, axis=dim, keepdims=keepdim))


def test_flatten_of_an_empty_tensor_keeps_its_shape_as_torch():
    """(0, C, 1, 1).flatten(1) raised (a reshape with -1 cannot size an empty array)."""
    x = sk.zeros(0, 3, 2, 2)
    assert x.flatten(1).shape == (0, 12) and x.flatten().shape == (0,) and x.flatten(0, 1).shape == (0, 2, 2)
    assert sk.zeros(2, 0, 3).flatten(1).shape == (2, 0)
