"""The confidence intervals the study reports (examples/ablate.py's tables): the t interval of a mean, and
the difference of two means by Welch's t and by a bootstrap of the means.

No SciPy: Student's t distribution comes from the regularized incomplete beta function, by its continued
fraction.  Every function checks its arguments first and raises a ValueError that names the one at fault.
"""
import math
import numbers

import numpy as np

__all__ = ["t_cdf", "t_quantile", "t_half_width", "welch_ci", "bootstrap_ci"]


def _real(value, name, who):
    """``value`` as a float; a ValueError naming ``name`` unless it is a real number (not a bool, not NaN)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{who}: {name} must be a real number, got {value!r}")
    return float(value)


def _df(df, who):
    df = _real(df, "df", who)
    if not 0 < df < math.inf:
        raise ValueError(f"{who}: df (degrees of freedom) must be a finite number > 0, got {df!r}")
    return df


def _level(level, who):
    if not isinstance(level, numbers.Real) or isinstance(level, bool) or not 0 < level < 1:
        raise ValueError(f"{who}: level must be a number strictly between 0 and 1 (0.95 for a 95% interval), "
                         f"got {level!r}")
    return float(level)


def _sample(values, name, who, least=2):
    """``values`` as a 1-D float array of at least ``least`` finite numbers, or a ValueError naming ``name``."""
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a sequence of numbers, got a {type(values).__name__}") from None
    if x.ndim != 1:
        raise ValueError(f"{who}: {name} must be a flat sequence of numbers, got an array of shape {x.shape}")
    if len(x) < least:
        raise ValueError(f"{who}: {name} has {len(x)} value{'' if len(x) == 1 else 's'}; it needs at least "
                         f"{least} (a variance needs two)")
    if not np.isfinite(x).all():
        raise ValueError(f"{who}: {name} holds a NaN or an infinity")
    return x


def _betainc(a, b, x):
    """I_x(a, b) by its continued fraction (modified Lentz), the series that converges for x < (a+1)/(a+b+2)."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1 - c * d) < 1e-15:
            break
    return front * (f - 1)


def _cdf(t, df):
    if t * t < df:  # near 0, df / (df + t^2) rounds to 1: take the other side's argument, t^2 / (df + t^2)
        tail = 0.5 * (1 - _betainc(0.5, df / 2, t * t / (df + t * t)))
    else:
        tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_cdf(t, df):
    """P(T <= t) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    return _cdf(_real(t, "t", "t_cdf"), _df(df, "t_cdf"))


def t_quantile(p, df):
    """The t with P(T <= t) = p (0 < p < 1), by bisection on t_cdf."""
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0 < p < 1:
        raise ValueError(f"t_quantile: p must be a probability strictly between 0 and 1, got {p!r}")
    df = _df(df, "t_quantile")
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def t_half_width(values, level=0.95):
    """The half-width of the t interval of the mean of ``values`` at ``level``; None for fewer than two."""
    level = _level(level, "t_half_width")
    if len(values) < 2:
        return None
    x = _sample(values, "values", "t_half_width")
    n = len(x)
    return t_quantile(0.5 + level / 2, n - 1) * float(np.std(x, ddof=1)) / math.sqrt(n)


def welch_ci(a, b, level=0.95):
    """(difference of means b - a, its half-width at ``level`` by Welch's t, degrees of freedom); two groups
    that do not vary at all give a half-width of 0 and infinite degrees of freedom."""
    level = _level(level, "welch_ci")
    a, b = _sample(a, "a", "welch_ci"), _sample(b, "b", "welch_ci")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = b.mean() - a.mean()
    if se == 0:
        return diff, 0.0, math.inf
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, t_quantile(0.5 + level / 2, df) * se, df


def bootstrap_ci(a, b, level=0.95, n=10000, seed=0):
    """The percentile interval at ``level`` of mean(b*) - mean(a*) over ``n`` resamples of each group (with
    replacement, each its own size), drawn from ``seed``: the same arguments give the same interval."""
    level = _level(level, "bootstrap_ci")
    a, b = _sample(a, "a", "bootstrap_ci"), _sample(b, "b", "bootstrap_ci")
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"bootstrap_ci: n (the number of resamples) must be an integer >= 1, got {n!r}")
    rng = np.random.default_rng(seed)
    diffs = (b[rng.integers(0, len(b), (n, len(b)))].mean(1) - a[rng.integers(0, len(a), (n, len(a)))].mean(1))
    return tuple(np.quantile(diffs, [0.5 - level / 2, 0.5 + level / 2]))
