"""Activations and the softmax family: ReLU-like units, GELU (with the error function NumPy lacks),
softmax and log-softmax."""
import math

from .. import ops
from ..autograd import Function
from ..backend import get_array_module
from .args import check_tensor

relu, sigmoid, tanh = ops.relu, ops.sigmoid, ops.tanh


class LeakyReLU(Function):
    """x for x > 0, negative_slope * x otherwise (the slope's gradient at 0, as PyTorch)."""

    def __init__(self, negative_slope):
        self.slope = negative_slope

    def forward(self, x):
        self.positive = x > 0
        return get_array_module(x).where(self.positive, x, x * self.slope)

    def backward(self, gy):
        return get_array_module(gy).where(self.positive, gy, gy * self.slope)


def leaky_relu(input, negative_slope=0.01, inplace=False):  # inplace accepted for PyTorch compatibility
    x = check_tensor(input, "input")
    return LeakyReLU(float(negative_slope))(x)


# W. J. Cody's rational approximations of erf (Math. Comp. 23, 1969; netlib specfun calerf)
_ERF_A = (3.16112374387056560e0, 1.13864154151050156e2, 3.77485237685302021e2, 3.20937758913846947e3,
          1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e0, 6.61191906371416295e1, 2.98635138197400131e2,
          8.81952221241769090e2, 1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3,
          2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2, 1.62138957456669019e3,
          3.29079923573345963e3, 4.36261909014324716e3, 3.43936767414372164e3, 1.23033935480374942e3)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
          6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1, 6.05183413124413191e-2,
          2.33520497626869185e-3)


def _cody(coef_num, coef_den, t):
    """Cody's ratio (((c[-1] t + c[0]) t + c[1]) t ...) + c[n-1]) / (((t + d[0]) t + d[1]) ...) + d[n-1])."""
    num, den = coef_num[-1] * t, t
    for c, d in zip(coef_num[:-2], coef_den[:-1]):
        num, den = (num + c) * t, (den + d) * t
    return (num + coef_num[-2]) / (den + coef_den[-1])


def _erf(x):
    """The error function of an array, elementwise (NumPy has none), to about 1e-16 in float64.

    |x| <= 0.46875: erf directly; beyond, erfc(|x|) = exp(-x^2) R(|x|), R a rational in |x| up
    to 4 and in 1/x^2 after.
    """
    xp = get_array_module(x)
    y = xp.abs(x)
    near = x * _cody(_ERF_A, _ERF_B, xp.minimum(y, 0.46875) ** 2)
    mid = _cody(_ERF_C, _ERF_D, xp.clip(y, 0.46875, 4.0))
    far_y = xp.maximum(y, 4.0)
    far = (0.5641895835477562869 - _cody(_ERF_P, _ERF_Q, 1 / far_y ** 2) / far_y ** 2) / far_y
    erfc = xp.exp(-y * y) * xp.where(y <= 4.0, mid, far)
    return xp.where(y <= 0.46875, near, xp.sign(x) * (1 - erfc))


_ERFC_NR = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196,
            1.00002368)


def _normal_cdf32(x):
    """Phi(x) of a float32 array, from Numerical Recipes' Chebyshev erfc (fractional error below 1.2e-7 at
    every argument in exact arithmetic; in float32 the exponent's rounding leaves a relative error of about
    1e-6 at x = -3 and 2e-5 at -12, i.e. absolute errors below 6e-7): a dozen passes over the array, where
    the float64 _erf takes several dozen."""
    xp = get_array_module(x)
    z = xp.abs(x)
    z *= math.sqrt(0.5)
    t = z * 0.5
    t += 1
    xp.reciprocal(t, out=t)
    p = t * _ERFC_NR[0]
    for c in _ERFC_NR[1:]:
        p += c
        p *= t
    p -= 1.26551223
    z *= z
    p -= z
    xp.exp(p, out=p)
    p *= t
    p *= 0.5  # erfc(|x| / sqrt 2) / 2 = Phi(-|x|)
    return xp.where(x < 0, p, 1 - p)


class GELU(Function):
    """x * Phi(x), Phi the standard normal CDF; approximate='tanh' uses
    Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, as PyTorch."""
    k = math.sqrt(2 / math.pi)

    def __init__(self, approximate):
        self.approximate = approximate

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        if self.approximate == "tanh":  # in place: two arrays of x's size, not eight
            t = x * x
            t *= x
            t *= 0.044715
            t += x
            t *= self.k
            self.t = xp.tanh(t, out=t)
            y = t + 1
            y *= x
            y *= 0.5
            return y
        if x.dtype.kind == "f" and x.dtype.itemsize <= 4:  # float16 through float32, and back
            self.cdf = _normal_cdf32(x.astype(xp.float32, copy=False)).astype(x.dtype, copy=False)
        else:
            self.cdf = 0.5 * (1 + _erf(x * math.sqrt(0.5)))
        return x * self.cdf

    def backward(self, gy):
        xp = get_array_module(gy)
        x = self.x
        if self.approximate == "tanh":  # gy * (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2)), in place
            t = self.t
            inner = x * x
            inner *= 3 * 0.044715
            inner += 1
            inner *= 0.5 * self.k
            inner *= x
            d = t * t
            xp.subtract(1, d, out=d)
            d *= inner
            d += 0.5
            inner = xp.multiply(t, 0.5, out=inner)
            d += inner
            d *= gy
            return d
        return gy * (self.cdf + x * xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi)))


class LogSigmoid(Function):
    """log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)), finite for every finite x (sigmoid itself underflows to
    0 in float32 below about -88, and loses its relative precision far earlier); the gradient is
    1 - sigmoid(x) = -expm1(y), from the output alone."""

    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))
        return self.y

    def backward(self, gy):
        return gy * -get_array_module(gy).expm1(self.y)


def logsigmoid(input):
    """PyTorch's ``F.logsigmoid``."""
    return LogSigmoid()(check_tensor(input, "input"))


def gelu(input, approximate="none"):
    x = check_tensor(input, "input")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU(approximate)(x)


class Softmax(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.dim, keepdims=True))
        self.y = e / e.sum(axis=self.dim, keepdims=True)
        return self.y

    def backward(self, gy):
        return self.y * (gy - (gy * self.y).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        self.y = log_softmax_array(x, self.dim)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.dim, keepdims=True)


def log_softmax_array(x, dim):
    xp = get_array_module(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))


def _dim(x, dim, name):
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"{name}: dim {dim} is out of range for input of shape {x.shape}")
    return dim % x.ndim


def softmax(input, dim):
    x = check_tensor(input, "input")
    return Softmax(_dim(x, dim, "softmax"))(x)


def log_softmax(input, dim):
    x = check_tensor(input, "input")
    return LogSoftmax(_dim(x, dim, "log_softmax"))(x)
