"""Bad inputs raise a clear ValueError / TypeError / IndexError whose message names what is wrong."""
import numpy as np
import pytest

import skengine as sk
import skengine.functional as F
import skengine.nn as nn
from skengine import ops


def T(*shape, dtype=np.float64):
    return sk.Tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


# -- conv2d -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, w_shape, kwargs, exc, pattern", [
    ((4, 4), (2, 3, 3, 3), {}, ValueError, r"input must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\).*\(4, 4\)"),
    ((1, 3, 4, 4, 1), (2, 3, 3, 3), {}, ValueError, r"input must be 4-D"),
    ((1, 3, 4, 4), (2, 3, 3), {}, ValueError, r"weight must be 4-D.*\(2, 3, 3\)"),
    ((1, 3, 4, 4), (2, 2, 3, 3), {}, ValueError, r"input has 3 channels.*expects 2"),
    ((1, 4, 4, 4), (2, 1, 3, 3), dict(groups=2), ValueError, r"input has 4 channels.*groups=2 expects 2"),
    ((1, 3, 4, 4), (2, 1, 3, 3), dict(groups=2), ValueError, r"groups=2 must divide.*input channels \(3\)"),
    ((1, 4, 4, 4), (3, 2, 3, 3), dict(groups=2), ValueError, r"groups=2 must divide.*output channels \(3\)"),
    ((1, 3, 4, 4), (2, 3, 3, 3), dict(groups=0), ValueError, r"groups must be a positive int"),
    ((1, 3, 4, 4), (2, 3, 5, 5), {}, ValueError, r"kernel 5x5.*larger than the padded input 4x4"),
    ((1, 3, 4, 4), (2, 3, 3, 3), dict(dilation=2), ValueError, r"kernel 3x3 \(dilation \(2, 2\)\).*larger"),
    ((1, 3, 2, 9), (2, 3, 3, 1), {}, ValueError, r"larger than the padded input 2x9"),
    ((1, 3, 4, 4), (2, 3, 3, 3), dict(stride=0), ValueError, r"stride \(0, 0\).*>= 1"),
    ((1, 3, 4, 4), (2, 3, 3, 3), dict(padding=-1), ValueError, r"padding \(-1, -1\) >= 0"),
    ((1, 3, 4, 4), (2, 3, 3, 3), dict(stride=1.5), TypeError, r"stride must be an int or a pair of ints"),
    ((1, 3, 4, 4), (2, 3, 3, 3), dict(padding=(1, 1, 1)), TypeError, r"padding must be an int or a pair"),
])
def test_conv2d_errors(x_shape, w_shape, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        F.conv2d(T(*x_shape), T(*w_shape), **kwargs)


def test_conv2d_padding_rescues_small_input():
    assert F.conv2d(T(1, 3, 4, 4), T(2, 3, 5, 5), padding=1).shape == (1, 2, 2, 2)


def test_conv2d_bias_dtype_and_type_errors():
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\), got \(3,\)"):
        F.conv2d(T(1, 3, 4, 4), T(2, 3, 3, 3), T(3))
    with pytest.raises(TypeError, match=r"input dtype float32 and weight dtype float64"):
        F.conv2d(T(1, 3, 4, 4, dtype=np.float32), T(2, 3, 3, 3))
    with pytest.raises(TypeError, match=r"input must be a skengine.Tensor, got ndarray"):
        F.conv2d(np.zeros((1, 3, 4, 4)), T(2, 3, 3, 3))


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(padding="same", stride=2), ValueError, r"conv2d: padding='same' is not supported for strided "
                                                 r"convolutions, got stride \(2, 2\)"),
    (dict(padding="full"), ValueError, r"conv2d: padding must be 'same', 'valid', an int or a pair of ints, "
                                       r"got 'full'"),
])
def test_conv2d_padding_string_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        F.conv2d(T(1, 3, 4, 4), T(2, 3, 3, 3), **kwargs)


def test_conv2d_module_padding_errors():
    with pytest.raises(ValueError, match=r"Conv2d: padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=(1, 2), padding="same")
    with pytest.raises(ValueError, match=r"Conv2d: invalid padding string 'full', should be one of"):
        nn.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match=r"Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate', "
                                         r"'circular', got 'mirror'"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"pad: reflect padding \(3, 3, 3, 3\) \(top, bottom, left, right\) must "
                                         r"be at most 2 rows and 2 columns for input of shape \(1, 1, 3, 3\)"):
        nn.Conv2d(1, 1, 7, padding=3, padding_mode="reflect")(T(1, 1, 3, 3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"pad: circular padding .* at most 3 rows"):
        nn.Conv2d(1, 1, 9, padding=4, padding_mode="circular")(T(1, 1, 3, 3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: input must be 4-D \(N, C, H, W\), got shape \(3, 3\)"):
        nn.Conv2d(1, 1, 3, padding=1, padding_mode="replicate")(T(3, 3, dtype=np.float32))


def test_conv2d_module_errors():
    with pytest.raises(ValueError, match=r"groups=2 must divide in_channels=3"):
        nn.Conv2d(3, 4, 3, groups=2)
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"input has 5 channels"):
        conv(T(1, 5, 6, 6, dtype=np.float32))


# -- pooling -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_pool_errors(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: input must be 4-D.*or 3-D.*\(4, 4\)"):
        fn(T(4, 4), 2)
    with pytest.raises(ValueError, match=rf"{name}: kernel \(3, 3\) is larger than the padded input"):
        fn(T(1, 1, 2, 2), 3)
    with pytest.raises(ValueError, match=rf"{name}: padding \(2, 2\) must be at most half the kernel size"):
        fn(T(1, 1, 6, 6), 3, padding=2)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        fn(T(1, 1, 6, 6), 2.5)


def test_pool_new_argument_errors():
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be at most half the kernel size"):
        F.max_pool2d(T(1, 1, 9, 9), 3, padding=2, dilation=2)  # the kernel, not the dilated one, as torch
    with pytest.raises(ValueError, match=r"max_pool2d: kernel \(3, 3\) is larger than the padded input 4x4 "
                                         r"\(dilation \(2, 2\)\); input shape \(1, 1, 4, 4\)"):
        F.max_pool2d(T(1, 1, 4, 4), 3, dilation=2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size \(2, 2\), stride \(0, 0\) and dilation "
                                         r"\(1, 1\) must be >= 1"):
        F.max_pool2d(T(1, 1, 4, 4), 2, stride=0)
    with pytest.raises(ValueError, match=r"avg_pool2d: divisor_override must be a non-zero int or None, got 0"):
        F.avg_pool2d(T(1, 1, 4, 4), 2, divisor_override=0)
    with pytest.raises(TypeError, match=r"dilation must be an int or a pair of ints"):
        nn.MaxPool2d(2, dilation=1.5)(T(1, 1, 4, 4))


def test_adaptive_pool_errors():
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: input must be 4-D"):
        F.adaptive_avg_pool2d(T(2, 3), 1)
    with pytest.raises(TypeError, match="output_size must be an int or a pair"):
        F.adaptive_avg_pool2d(T(1, 1, 4, 4), (1, 2, 3))


# -- batch norm -------------------------------------------------------------------------------------------
def test_batch_norm_errors():
    with pytest.raises(ValueError, match=r"batch_norm: input must be \(N, C\).*\(3,\)"):
        F.batch_norm(T(3), None, None, training=True)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\).*got \(2,\)"):
        F.batch_norm(T(4, 3), T(2), T(3))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(4,\)"):
        F.batch_norm(T(4, 3), None, None, T(4), training=True)
    with pytest.raises(ValueError, match=r"training needs more than one value per channel"):
        F.batch_norm(T(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"evaluation \(training=False\) needs running_mean and running_var"):
        F.batch_norm(T(4, 3), None, None, training=False)


def test_batchnorm_module_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected a 4-D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(T(2, 3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): input has 4 channels"):
        nn.BatchNorm1d(3)(T(2, 4, dtype=np.float32))


# -- losses ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
def test_loss_target_errors(loss):
    name = loss.__name__
    x = T(3, 4)
    with pytest.raises(TypeError, match=rf"{name}: target must hold integer class indices.*got dtype float64 "
                                        rf"and shape \(3,\)"):
        loss(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=rf"{name}: target values must lie in \[0, 4\), got min 0 and max 4"):
        loss(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=rf"{name}: target values must lie in \[0, 4\), got min -1"):
        loss(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=rf"{name}: target values must lie in \[0, 4\), got min -100.*ignore_index=3"):
        loss(x, np.array([0, -100, 3]), ignore_index=3)
    with pytest.raises(ValueError, match=rf"{name}: target must have shape \(3,\).*got \(2,\)"):
        loss(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=rf"{name}: target must have shape \(3, 1\) for input \(3, 4, 1\), got \(3,\)"):
        loss(T(3, 4, 1), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{name}: target must have shape \(\) for input \(4,\), got \(1,\)"):
        loss(T(4), np.array([0]))
    with pytest.raises(ValueError, match=rf"{name}: input must have shape \(C,\), \(N, C\) or \(N, C, d1, ...\), "
                                         rf"got \(\)"):
        loss(T(), np.array(0))
    with pytest.raises(ValueError, match=rf"{name}: weight must have shape \(4,\), one per class, for input "
                                         rf"\(3, 4\), got \(3,\)"):
        loss(x, np.array([0, 1, 2]), weight=T(3))
    with pytest.raises(ValueError, match=rf"{name}: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        loss(x, np.array([0, 1, 2]), reduction="avg")


def test_cross_entropy_probability_target_errors():
    with pytest.raises(TypeError, match=r"cross_entropy: a target shaped like the input \(3, 4\) holds class "
                                        r"probabilities and must be floating point, got dtype int64"):
        F.cross_entropy(T(3, 4), np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: ignore_index is not supported for class-probability "
                                         r"targets.*got ignore_index=1"):
        F.cross_entropy(T(3, 4), np.full((3, 4), 0.25), ignore_index=1)


def test_loss_module_errors():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: reduction must be 'mean', 'sum' or 'none', got 'max'"):
        nn.CrossEntropyLoss(reduction="max")
    with pytest.raises(ValueError, match=r"NLLLoss: reduction must be"):
        nn.NLLLoss(reduction="max")


def test_cross_entropy_nan_logits():
    x = np.zeros((2, 3))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"cross_entropy: the loss is nan: the logits contain NaN"):
        F.cross_entropy(sk.Tensor(x), np.array([0, 1]))
    x[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"logits contain NaN or inf"):
        F.cross_entropy(sk.Tensor(x), np.array([0, 1]), reduction="sum")


def test_activation_errors():
    with pytest.raises(ValueError, match=r"gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(T(2), approximate="erf")
    with pytest.raises(ValueError, match=r"GELU: approximate must be 'none' or 'tanh', got 'fast'"):
        nn.GELU("fast")
    with pytest.raises(TypeError, match=r"input must be a skengine.Tensor, got ndarray"):
        F.leaky_relu(np.zeros(2))


def test_cross_entropy_bad_label_smoothing():
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        F.cross_entropy(T(2, 3), np.array([0, 1]), label_smoothing=1.5)


# -- matmul / linear ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, pattern", [
    ((2, 3), (4, 5), r"matmul: shapes \(2, 3\) and \(4, 5\) do not match.*\(3\).*\(4\)"),
    ((3,), (4,), r"matmul: shapes \(3,\) and \(4,\) do not match"),
    ((2, 3), (4,), r"matmul: shapes \(2, 3\) and \(4,\) do not match.*only dimension of the second \(4\)"),
    ((2, 2, 3), (3, 3, 1), r"matmul: batch dimensions of shapes \(2, 2, 3\) and \(3, 3, 1\) do not broadcast"),
    ((), (3,), r"matmul: both operands need at least 1 dimension, got shapes \(\) and \(3,\)"),
])
def test_matmul_shape_errors(a, b, pattern):
    with pytest.raises(ValueError, match=pattern):
        T(*a) @ T(*b)
    with pytest.raises(ValueError, match=pattern):
        ops.matmul(T(*a), T(*b))


def test_linear_errors():
    with pytest.raises(ValueError, match=r"linear: input \(2, 3\) does not match weight \(4, 5\).*\(\.\.\., 5\)"):
        F.linear(T(2, 3), T(4, 5))
    with pytest.raises(ValueError, match=r"linear: input .* does not match weight \(4,\)"):
        F.linear(T(2, 4), T(4))
    with pytest.raises(ValueError, match=r"linear: bias must have shape \(4,\) for weight \(4, 3\), got \(5,\)"):
        F.linear(T(2, 3), T(4, 3), T(5))
    with pytest.raises(ValueError, match=r"linear: input \(2, 7\) does not match weight \(3, 5\)"):
        nn.Linear(5, 3)(T(2, 7, dtype=np.float32))


# -- dims ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, pattern", [
    (lambda x: x.sum(dim=3), r"dim 3 is out of range for a tensor with 3 dimensions"),
    (lambda x: x.mean(dim=(0, -4)), r"dim -4 is out of range"),
    (lambda x: x.amax(dim=5), r"dim 5 is out of range"),
    (lambda x: x.max(dim=3), r"max: dim 3 is out of range"),
    (lambda x: x.transpose(0, 3), r"transpose: dim 3 is out of range for a tensor with 3 dimensions"),
    (lambda x: x.permute(0, 1, 5), r"permute: dim 5 is out of range"),
    (lambda x: x.unsqueeze(4), r"unsqueeze: dim 4 is out of range.*\[-4, 3\]"),
    (lambda x: x.unsqueeze(-5), r"unsqueeze: dim -5 is out of range"),
    (lambda x: x.squeeze(3), r"squeeze: dim 3 is out of range"),
    (lambda x: x.flatten(0, 3), r"flatten: dim 3 is out of range"),
    (lambda x: x.split(1, dim=-4), r"split: dim -4 is out of range"),
    (lambda x: sk.cat([x, x], dim=3), r"cat: dim 3 is out of range"),
    (lambda x: sk.stack([x, x], dim=4), r"stack: dim 4 is out of range.*\[-4, 3\]"),
    (lambda x: ops.take_along_dim(x, np.zeros((2, 3, 4), np.int64), 3), r"take_along_dim: dim 3 is out of range"),
    (lambda x: F.softmax(x, 3), r"softmax: dim 3 is out of range for input of shape \(2, 3, 4\)"),
    (lambda x: F.log_softmax(x, -4), r"log_softmax: dim -4 is out of range"),
])
def test_bad_dims_raise_index_error(call, pattern):
    with pytest.raises(IndexError, match=pattern):
        call(T(2, 3, 4))


def test_other_dim_and_shape_errors():
    x = T(2, 3, 4)
    with pytest.raises(ValueError, match=r"permute: dims \(0, 1\) has 2 entries for a tensor with 3 dimensions"):
        x.permute(0, 1)
    with pytest.raises(ValueError, match=r"permute: dims \(0, 0, 1\) is not a permutation of 3 dimensions"):
        x.permute(0, 0, 1)
    with pytest.raises(ValueError, match=r"flatten: start_dim 2 comes after end_dim 1"):
        x.flatten(2, 1)
    with pytest.raises(TypeError, match=r"transpose: dim must be an int, got float"):
        x.transpose(0.0, 1)
    with pytest.raises(ValueError, match=r"cat: tensor 1 has shape \(2, 5, 4\), incompatible with \(2, 3, 4\)"):
        sk.cat([x, T(2, 5, 4)], dim=2)
    with pytest.raises(ValueError, match=r"cat: expected a non-empty list"):
        sk.cat([])
    with pytest.raises(ValueError, match=r"stack: all tensors need the same shape"):
        sk.stack([x, T(2, 3, 5)])
    with pytest.raises(ValueError, match=r"split: sizes \[1, 1\] do not add up to 3"):
        x.split([1, 1], dim=1)
    with pytest.raises(ValueError, match=r"split: split_size must be a positive int, got 0"):
        x.split(0)
    with pytest.raises(ValueError, match=r"cannot reshape array of size 24 into shape \(5,"):
        x.reshape(5, -1)


# -- misc ----------------------------------------------------------------------------------------------------
def test_misc_errors():
    with pytest.raises(TypeError, match=r"pow: exponent must be a Python number, got Tensor"):
        T(2) ** T(2)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got 1.5"):
        F.dropout(T(2), p=1.5)
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\], got -0.1"):
        nn.Dropout(-0.1)
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'tpu'"):
        T(2).to("tpu")
    with pytest.raises(ValueError, match=r"broadcast.*\(2,3\).*\(4,\)"):
        T(2, 3) + T(4)
    with pytest.raises(TypeError, match=r"gradcheck: fn must return a Tensor"):
        sk.gradcheck(lambda x: 1.0, (sk.Tensor(np.ones(2), requires_grad=True),))
    with pytest.raises(ValueError, match=r"gradcheck: no input has requires_grad=True"):
        sk.gradcheck(lambda x: x, (T(2),))


# -- zero sizes: work where torch works, a clear error where it raises --------------------------------------
def test_zero_size_layers_work_like_torch():
    lin = nn.Linear(0, 3)  # torch: allowed, the zero-element weight is left as is and the bias bound is 0
    assert lin.weight.shape == (3, 0) and not lin.bias.numpy().any()
    x = T(2, 0, dtype=np.float32)
    assert lin(x).shape == (2, 3)
    conv = nn.Conv2d(0, 4, 3)  # torch: allowed too
    assert conv.weight.shape == (4, 0, 3, 3) and not conv.bias.numpy().any()
    assert conv(T(0, 0, 5, 5, dtype=np.float32)).shape == (0, 4, 3, 3)
    assert nn.Conv2d(4, 0, 3)(T(2, 4, 5, 5, dtype=np.float32)).shape == (2, 0, 3, 3)
    # torch's zero-channel convolution fails on a view unless the output is empty too: a clear error here
    with pytest.raises(ValueError, match=r"conv2d: input \(2, 0, 5, 5\) has 0 channels.*weight \(4, 0, 3, 3\)"):
        conv(T(2, 0, 5, 5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"conv2d: weight \(4, 3, 0, 3\) has an empty kernel"):
        F.conv2d(T(1, 3, 5, 5), T(4, 3, 0, 3))


@pytest.mark.parametrize("make, pattern", [
    (lambda: nn.Linear(-1, 3), r"Linear: in_features must be an int >= 0, got -1"),
    (lambda: nn.Linear(3, 2.5), r"Linear: out_features must be an int >= 0, got 2.5"),
    (lambda: nn.Conv2d(-2, 4, 3), r"Conv2d: in_channels must be an int >= 0, got -2"),
    (lambda: nn.Conv2d(4, 4, 3, groups=0), r"Conv2d: groups must be a positive int, got 0"),
    (lambda: nn.Conv2d(4, 4, (3, 0)), r"Conv2d: kernel_size must be >= 1, got \(3, 0\)"),
])
def test_layer_size_errors(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
