"""skengine.stats, the intervals the study reports, against values published elsewhere: Student's t tables,
the t distribution's closed forms for small degrees of freedom, R's t.test output and Wikipedia's Welch
example; the bootstrap by its properties; the README's headline answer from the results file it came from."""
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skengine.stats import bootstrap_ci, t_cdf, t_half_width, t_quantile, welch_ci

HISTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "history")

# R's built-in `sleep` data (extra hours of sleep, drug 1 and drug 2), the example of R's ?t.test
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


# -- Student's t -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p, df, table", [
    # upper critical values of Student's t as printed (4 decimals) in the standard tables (e.g. the NIST/SEMATECH
    # e-Handbook of Statistical Methods, 1.3.6.7.2)
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 5, 2.5706), (0.975, 10, 2.2281), (0.975, 30, 2.0423),
    (0.975, 120, 1.9799), (0.995, 10, 3.1693), (0.95, 1, 6.3138), (0.95, 10, 1.8125), (0.99, 10, 2.7638),
    (0.995, 1, 63.6567), (0.995, 30, 2.7500), (0.9995, 10, 4.5869), (0.975, 4, 2.7764),
    # the lower tail by symmetry
    (0.025, 9, -2.2622), (0.05, 10, -1.8125),
])
def test_t_quantiles_match_a_printed_table(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-5)  # the table rounds to 4 decimals


def test_t_quantiles_to_seven_decimals():
    # two-sided 95% (and one 99%) points to 7 decimals, as R's qt() prints them
    for df, t in ((1, 12.7062047), (2, 4.3026527), (9, 2.2621572), (30, 2.0422725), (1e7, 1.9599640)):
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-6)
    assert t_quantile(0.995, 5) == pytest.approx(4.0321430, abs=1e-6)
    assert t_quantile(0.025, 9) == pytest.approx(-2.2621572, abs=1e-6)


@pytest.mark.parametrize("t", [-40.0, -4.0, -1.3, -0.5, 0.2, 0.7, 0.9, 2.5, 7.0, 300.0])
def test_t_cdf_equals_the_closed_forms_of_small_degrees_of_freedom(t):
    """For 1 to 4 degrees of freedom the CDF has elementary closed forms (derived by integrating the density;
    listed e.g. in Wikipedia's "Student's t-distribution", section "Special cases")."""
    u = 1 + t * t / 4
    closed = {1: 0.5 + math.atan(t) / math.pi,  # the Cauchy distribution
              2: 0.5 + t / (2 * math.sqrt(2 + t * t)),
              3: 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi,
              4: 0.5 + 3 / 8 * t / math.sqrt(u) * (1 - t * t / (12 * u))}
    for df, expected in closed.items():
        assert t_cdf(t, df) == pytest.approx(expected, abs=1e-12), df


def test_t_cdf_at_the_tables_points_and_the_centre():
    for t, df, p in ((12.7062, 1, 0.975), (2.2281, 10, 0.975), (3.1693, 10, 0.995), (1.9799, 120, 0.975),
                     (-2.5706, 5, 0.025)):
        assert t_cdf(t, df) == pytest.approx(p, abs=2e-6)  # the table's rounding of t moves P by less
    for df in (0.5, 1, 3.5, 17.776, 1e6):
        assert t_cdf(0.0, df) == 0.5
    assert t_cdf(math.inf, 3) == 1.0 and t_cdf(-math.inf, 3) == 0.0


@given(p=st.floats(1e-4, 1 - 1e-4), df=st.floats(1.0, 1000.0))
def test_t_quantile_inverts_t_cdf(p, df):
    t = t_quantile(p, df)
    assert t_cdf(t, df) == pytest.approx(p, abs=1e-9)
    assert t_quantile(1 - p, df) == pytest.approx(-t, abs=1e-6 * max(1.0, abs(t)))


@given(t=st.floats(-50, 50), df=st.floats(0.5, 500.0))
def test_t_cdf_is_symmetric_and_between_0_and_1(t, df):
    assert 0.0 <= t_cdf(t, df) <= 1.0
    assert t_cdf(-t, df) == pytest.approx(1 - t_cdf(t, df), abs=1e-12)


def test_t_half_width_by_hand():
    # 1..5: mean 3, s = sqrt(2.5), n = 5; t_0.975 with 4 degrees of freedom is 2.7764 in the tables
    assert t_half_width([1, 2, 3, 4, 5]) == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), rel=2e-5)
    # t_0.995 with 9 degrees of freedom: 3.2498
    assert t_half_width(list(range(10)), level=0.99) == pytest.approx(3.2498 * np.std(range(10), ddof=1)
                                                                      / math.sqrt(10), rel=2e-5)
    assert t_half_width([4.0]) is None and t_half_width([]) is None  # no spread to measure
    assert t_half_width([7.0, 7.0, 7.0]) == 0.0


# -- Welch ---------------------------------------------------------------------------------------------------

def test_welch_matches_r_t_test_on_the_sleep_data():
    """R, t.test(extra ~ group, data = sleep) (the example of its documentation), prints: Welch Two Sample
    t-test, t = -1.8608, df = 17.776, p-value = 0.07939, 95 percent confidence interval of mean(group 1) -
    mean(group 2): -3.3654832 0.2054832."""
    diff, half, df = welch_ci(SLEEP_2, SLEEP_1)  # b - a: group 1 - group 2, as R's interval
    assert diff == pytest.approx(0.75 - 2.33)
    assert df == pytest.approx(17.776, abs=5e-4)
    assert (diff - half, diff + half) == pytest.approx((-3.3654832, 0.2054832), abs=5e-7)
    se = math.sqrt(np.var(SLEEP_1, ddof=1) / 10 + np.var(SLEEP_2, ddof=1) / 10)
    assert diff / se == pytest.approx(-1.8608, abs=5e-5)
    assert 2 * t_cdf(-abs(diff / se), df) == pytest.approx(0.07939, abs=5e-6)
    # the other order: the same interval, mirrored
    diff2, half2, df2 = welch_ci(SLEEP_1, SLEEP_2)
    assert (diff2, half2, df2) == pytest.approx((-diff, half, df))
    # at 99%: wider, and by the ratio of the two t quantiles
    _, half99, _ = welch_ci(SLEEP_2, SLEEP_1, level=0.99)
    assert half99 / half == pytest.approx(t_quantile(0.995, df) / t_quantile(0.975, df))


def test_welch_matches_wikipedias_worked_example():
    """Wikipedia, "Welch's t-test", example 1 (15 values each): Welch's t = -2.46, p = 0.021, and the
    Welch-Satterthwaite degrees of freedom 24.99 (24.98853 as MathPHP's Significance::tTest prints them)."""
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    diff, half, df = welch_ci(a2, a1)
    assert diff == pytest.approx(20.82 - 22.98667, abs=1e-5)
    assert df == pytest.approx(24.98853, abs=1e-4)
    se = math.sqrt(np.var(a1, ddof=1) / 15 + np.var(a2, ddof=1) / 15)
    assert diff / se == pytest.approx(-2.46, abs=5e-3)
    assert 2 * t_cdf(-abs(diff / se), df) == pytest.approx(0.021, abs=5e-4)
    assert half == pytest.approx(t_quantile(0.975, df) * se)


def test_welch_interval_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]
    diff, half, df = welch_ci(a, b)
    # var(a)/4 = 5/12, var(b)/4 = 5/3; df = (25/12)^2 / ((5/12)^2/3 + (5/3)^2/3) = 4.41176...
    assert diff == 2.5 and df == pytest.approx((25 / 12) ** 2 / ((5 / 12) ** 2 / 3 + (5 / 3) ** 2 / 3))
    assert half == pytest.approx(t_quantile(0.975, df) * math.sqrt(25 / 12))
    # equal group sizes and variances: Welch's df is the pooled test's n1 + n2 - 2
    _, half, df = welch_ci([1.0, 2.0, 3.0], [5.0, 6.0, 7.0])
    assert df == pytest.approx(4.0) and half == pytest.approx(2.7764 * math.sqrt(2 / 3), rel=2e-5)
    assert welch_ci([3.0, 3.0], [5.0, 5.0, 5.0]) == (2.0, 0.0, math.inf)  # no spread: no uncertainty


# -- the bootstrap ---------------------------------------------------------------------------------------------

def test_bootstrap_is_deterministic_for_a_seed_and_contains_the_observed_difference():
    rng = np.random.default_rng(5)
    a, b = rng.normal(70.0, 0.4, 8), rng.normal(70.6, 0.5, 8)
    first = bootstrap_ci(a, b, seed=3)
    assert bootstrap_ci(list(a), list(b), seed=3) == first  # bit for bit
    other = bootstrap_ci(a, b, seed=4)
    assert other != first and other == pytest.approx(first, abs=0.05)  # another draw, about the same interval
    lo, hi = first
    assert lo < b.mean() - a.mean() < hi
    narrow, wide = bootstrap_ci(a, b, level=0.5), bootstrap_ci(a, b, level=0.99)
    assert wide[0] < lo < narrow[0] < narrow[1] < hi < wide[1]
    # the same resamples (same seed) of b moved by 1.5: the interval moves by 1.5
    assert bootstrap_ci(a, b + 1.5, seed=3) == pytest.approx((lo + 1.5, hi + 1.5), abs=1e-9)
    assert bootstrap_ci([2.0, 2.0], [3.0, 3.0, 3.0]) == pytest.approx((1.0, 1.0))


def test_bootstrap_is_close_to_welch_for_large_normal_samples():
    rng = np.random.default_rng(1)
    x, y = rng.normal(90.0, 0.3, 400), rng.normal(90.5, 0.3, 400)
    diff, half, _ = welch_ci(x, y)
    lo, hi = bootstrap_ci(x, y)
    assert lo < diff < hi and (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(diff, abs=0.1 * half)


def test_the_readmes_headline_answer_from_its_results_file():
    """The gates grid at 25 seeds each (benchmarks/history, README): sigmoid - softmax = +0.65, 95% CI
    [+0.41, +0.89] by Welch's t and [+0.43, +0.88] by the bootstrap, as the tables printed them."""
    with open(os.path.join(HISTORY, "2026-12-03-gates-grid-results.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    accs = {v: [100 * r["test_acc"] for r in sorted(records, key=lambda r: r["seed"])
                if r["variant"] == v and r.get("status", "done") == "done"] for v in ("softmax", "sigmoid")}
    assert len(accs["softmax"]) == len(accs["sigmoid"]) == 25
    diff, half, _ = welch_ci(accs["softmax"], accs["sigmoid"])
    assert [round(v, 2) for v in (diff, diff - half, diff + half)] == [0.65, 0.41, 0.89]
    assert [round(float(v), 2) for v in bootstrap_ci(accs["softmax"], accs["sigmoid"])] == [0.43, 0.88]


# -- mistakes --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, says", [
    (lambda: t_cdf(1.0, 0), "df"), (lambda: t_cdf(1.0, -2.0), "df"), (lambda: t_cdf(1.0, math.inf), "df"),
    (lambda: t_cdf(math.nan, 3), "t must be a real number"), (lambda: t_cdf("1", 3), "t must be"),
    (lambda: t_quantile(0.0, 3), "p must be a probability"), (lambda: t_quantile(1.0, 3), "p must be"),
    (lambda: t_quantile(math.nan, 3), "p must be"), (lambda: t_quantile(0.5, 0), "df"),
    (lambda: t_half_width([1.0, 2.0], level=95), "level must be"),
    (lambda: t_half_width([1.0, math.nan]), "values holds a NaN"),
    (lambda: t_half_width([[1.0, 2.0], [3.0, 4.0]]), "values must be a flat sequence"),
    (lambda: welch_ci([1.0], [1.0, 2.0]), "a has 1 value"), (lambda: welch_ci([1.0, 2.0], []), "b has 0 values"),
    (lambda: welch_ci([1.0, 2.0], [1.0, 2.0], level=1.0), "level must be"),
    (lambda: welch_ci(["x", "y"], [1.0, 2.0]), "a must be a sequence of numbers"),
    (lambda: welch_ci([1.0, 2.0], [1.0, math.inf]), "b holds a NaN or an infinity"),
    (lambda: bootstrap_ci([1.0, 2.0], [3.0]), "b has 1 value"),
    (lambda: bootstrap_ci([1.0, 2.0], [3.0, 4.0], level=0), "level must be"),
    (lambda: bootstrap_ci([1.0, 2.0], [3.0, 4.0], n=0), "n (the number of resamples)"),
    (lambda: bootstrap_ci([1.0, 2.0], [3.0, 4.0], n=10.5), "n (the number of resamples)"),
])
def test_mistakes_are_value_errors_that_name_the_argument(call, says):
    with pytest.raises(ValueError) as e:
        call()
    assert says in str(e.value) and "\n" not in str(e.value)


def test_the_cdf_is_exact_near_zero():
    """df / (df + t^2) rounded to 1 for |t| < 1e-7 at df 128: t_quantile(0.5) came out -1.2e-7 (hypothesis found it)."""
    assert abs(t_quantile(0.5, 128.22094804538946)) < 1e-12
    assert t_cdf(1e-8, 128) > 0.5 > t_cdf(-1e-8, 128)
