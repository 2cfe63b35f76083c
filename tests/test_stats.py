"""The verdicts must find real differences and must not call noise a win; the power analysis
must say how large a difference a sweep could have found."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import stats

# z_{0.975} + z_{0.80}: the normal-approximation factor of the minimum detectable effect.
Z_SUM = 1.959963984540054 + 0.8416212335729143


def _seeds(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 0.05, n), rng


# --------------------------------------------------------------------------- t-tests


def test_paired_hand_computed():
    # differences [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3), df 2
    res = stats.compare([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], n_boot=0)
    se = 1.0 / math.sqrt(3.0)
    half = 4.302652729911275 * se  # t_{0.975, 2}
    assert res["mean_diff"] == pytest.approx(2.0, abs=1e-12)
    assert res["ci_low"] == pytest.approx(2.0 - half, abs=1e-9)
    assert res["ci_high"] == pytest.approx(2.0 + half, abs=1e-9)
    # df = 2 has a closed form: P(|T| >= t) = 1 - t / sqrt(t^2 + 2)
    t = 2.0 / se
    assert res["p_value"] == pytest.approx(1.0 - t / math.sqrt(t * t + 2.0), abs=1e-12)
    assert res["df"] == 2.0 and res["sd_diff"] == pytest.approx(1.0, abs=1e-12)
    assert res["verdict"] == "no significant difference"  # p = 0.074


def test_welch_hand_computed():
    # baseline variance 1, variant variance 4, three each: se^2 = 1/3 + 4/3, df = 50/17
    res = stats.compare([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], paired=False, n_boot=0)
    se = math.sqrt(5.0 / 3.0)
    df = (5.0 / 3.0) ** 2 / ((1.0 / 3.0) ** 2 / 2 + (4.0 / 3.0) ** 2 / 2)
    assert df == pytest.approx(50.0 / 17.0)
    assert res["test"] == "welch t" and res["n"] == 3
    assert res["mean_diff"] == pytest.approx(2.0, abs=1e-12)
    assert res["df"] == pytest.approx(df, rel=1e-12)
    assert 0.5 * (res["ci_low"] + res["ci_high"]) == pytest.approx(2.0, abs=1e-12)
    half = 0.5 * (res["ci_high"] - res["ci_low"])
    assert half == pytest.approx(sps.t.ppf(0.975, df) * se, rel=1e-10)


@pytest.mark.parametrize(("seed", "alpha"), [(0, 0.05), (1, 0.05), (2, 0.1), (3, 0.01)])
def test_paired_matches_scipy_ttest_rel(seed, alpha):
    rng = np.random.default_rng(seed)
    base = rng.normal(3.0, 0.2, 6)
    var = base + rng.normal(-0.1, 0.1, 6)
    res = stats.compare(base, var, alpha=alpha, n_boot=0)
    ref = sps.ttest_rel(var, base)
    ci = ref.confidence_interval(confidence_level=1 - alpha)
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert res["df"] == 5.0 and res["test"] == "paired t"


@pytest.mark.parametrize(("seed", "alpha"), [(0, 0.05), (1, 0.05), (2, 0.1), (3, 0.01)])
def test_welch_matches_scipy_ttest_ind(seed, alpha):
    rng = np.random.default_rng(seed)
    base = rng.normal(3.0, 0.1, 5)
    var = rng.normal(2.9, 0.3, 7)
    res = stats.compare(base, var, paired=False, alpha=alpha, n_boot=0)
    ref = sps.ttest_ind(var, base, equal_var=False)
    ci = ref.confidence_interval(confidence_level=1 - alpha)
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert res["df"] == pytest.approx(ref.df, rel=1e-12)
    assert res["n"] == 5 and res["mean_diff"] == pytest.approx(var.mean() - base.mean())


def test_clear_improvement_is_better_and_reverse_is_worse():
    base, rng = _seeds()
    better = base - 0.5 + rng.normal(0, 0.02, base.size)
    res = stats.compare(base, better)
    assert res["verdict"] == "better"
    assert res["test"] == "paired t" and res["n"] == 5
    assert res["ci_high"] < 0 and res["p_value"] < 0.05
    assert res["mean_diff"] == pytest.approx(np.mean(better - base))
    assert res["boot_ci_low"] <= res["mean_diff"] <= res["boot_ci_high"]
    assert stats.compare(better, base)["verdict"] == "worse"
    assert stats.compare(base, better, paired=False)["verdict"] == "better"


def test_direction_flips_for_higher_is_better():
    base, rng = _seeds()
    higher = base + 0.5 + rng.normal(0, 0.02, base.size)
    assert stats.compare(base, higher, lower_is_better=False)["verdict"] == "better"
    assert stats.compare(base, higher, lower_is_better=True)["verdict"] == "worse"
    assert stats.compare(higher, base, lower_is_better=False)["verdict"] == "worse"


def test_identical_runs_are_no_difference():
    base, _ = _seeds()
    res = stats.compare(base, base.copy())
    assert res["verdict"] == "no significant difference"
    assert res["mean_diff"] == 0.0 and res["p_value"] == 1.0


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    assert [str(w.message) for w in caught] == []
    return out


def test_zero_spread_emits_no_warning_and_keeps_verdicts():
    base, _ = _seeds()
    # every difference 0: no difference, p = 1, interval collapsed to 0
    same = _no_warnings(stats.compare, base, base.copy())
    assert same["verdict"] == "no significant difference" and same["p_value"] == 1.0
    assert same["ci_low"] == same["ci_high"] == 0.0 and same["sd_diff"] == 0.0
    assert same["mde"] == 0.0 and same["seeds_needed"] is None
    # every difference exactly +0.5: a certain difference, p = 0
    base = np.array([1.0, 2.0, 3.0, 4.0])
    shifted = _no_warnings(stats.compare, base, base + 0.5)
    assert shifted["verdict"] == "worse" and shifted["p_value"] == 0.0
    assert shifted["ci_low"] == shifted["ci_high"] == 0.5
    assert shifted["mde"] == 0.0 and shifted["seeds_needed"] == 2
    # Welch with both sides constant
    welch = _no_warnings(stats.compare, [1.0, 1.0, 1.0], [1.5] * 4, paired=False)
    assert welch["verdict"] == "worse" and welch["p_value"] == 0.0
    assert welch["ci_low"] == welch["ci_high"] == 0.5 and welch["mde"] == 0.0
    welch0 = _no_warnings(stats.compare, [0.1] * 3, [0.1] * 5, paired=False)
    assert welch0["verdict"] == "no significant difference" and welch0["p_value"] == 1.0
    # one side constant is an ordinary Welch test
    one = _no_warnings(stats.compare, [1.0, 1.0, 1.0], [1.4, 1.5, 1.6], paired=False)
    assert one["verdict"] == "worse" and 0.0 < one["p_value"] < 0.05


def test_nearly_identical_differences_emit_no_warning():
    # differences equal up to the last bit: scipy warns about precision loss on such data
    base = np.zeros(5)
    var = np.array([1.0, 1.0, 1.0, 1.0, np.nextafter(1.0, 2.0)])
    res = _no_warnings(stats.compare, base, var)
    assert res["verdict"] == "worse" and res["p_value"] < 1e-6
    assert res["ci_low"] > 0
    assert math.isfinite(res["mde"]) and res["mde"] < 1e-6


@pytest.mark.parametrize("paired", [True, False])
def test_noise_false_positive_rate_is_near_alpha(paired):
    rng = np.random.default_rng(1234)
    trials, hits = 200, 0
    for _ in range(trials):
        base = rng.normal(3.0, 0.1, 5)
        var = rng.normal(3.0, 0.1, 5)
        res = stats.compare(base, var, paired=paired, n_boot=0)
        hits += res["verdict"] != "no significant difference"
        # never a verdict without an interval that excludes zero
        if res["verdict"] in ("better", "worse"):
            assert res["ci_low"] > 0 or res["ci_high"] < 0
    assert hits / trials <= 0.1


def test_too_few_seeds():
    res = stats.compare([2.0], [1.0])
    assert res["verdict"] == "too few seeds"
    assert res["n"] == 1 and math.isnan(res["ci_low"]) and math.isnan(res["p_value"])
    assert math.isnan(res["sd_diff"]) and math.isnan(res["mde"]) and res["seeds_needed"] is None
    # a diverged (nan) pair is dropped, leaving one usable pair
    assert stats.compare([2.0, 2.1], [1.0, float("nan")])["verdict"] == "too few seeds"
    welch = stats.compare([2.0, 2.1], [1.0], paired=False)
    assert welch["verdict"] == "too few seeds" and math.isnan(welch["mde"])


def test_diverged_pairs_are_dropped():
    base = [1.0, 2.0, float("nan"), 4.0, 5.0]
    var = [1.5, 2.4, 3.0, float("inf"), 5.6]
    res = stats.compare(base, var, n_boot=0)
    ref = stats.compare([1.0, 2.0, 5.0], [1.5, 2.4, 5.6], n_boot=0)
    assert res["n"] == 3
    assert res["p_value"] == ref["p_value"] and res["ci_low"] == ref["ci_low"]


def test_paired_needs_equal_lengths():
    with pytest.raises(ValueError):
        stats.compare([1.0, 2.0], [1.0, 2.0, 3.0])


def test_bootstrap_ci_is_a_cross_check():
    d = np.array([-0.5, -0.45, -0.52, -0.48, -0.51])
    lo, hi = stats.bootstrap_ci(d, n_boot=2000, rng_seed=3)
    assert lo <= d.mean() <= hi and hi < 0
    assert stats.bootstrap_ci(d, rng_seed=3) == stats.bootstrap_ci(d, rng_seed=3)
    assert all(math.isnan(x) for x in stats.bootstrap_ci([1.0]))


def test_bootstrap_ci_unpaired():
    b = np.array([3.0, 3.1, 2.9, 3.05])
    v = b - 1.0
    lo, hi = stats.bootstrap_ci_unpaired(b, v, n_boot=2000, rng_seed=1)
    assert lo <= -1.0 <= hi and hi < 0
    assert all(math.isnan(x) for x in stats.bootstrap_ci_unpaired([1.0], v))


# --------------------------------------------------------------------------- power analysis


@pytest.mark.parametrize(("delta", "sd", "n"), [(0.3, 1.0, 5), (-1.0, 0.5, 3), (0.05, 0.2, 40)])
def test_paired_power_matches_scipy_nct(delta, sd, n):
    # the definition written out with scipy.stats: both tails of the noncentral t
    q = sps.t.ppf(0.975, n - 1)
    nc = abs(delta) * math.sqrt(n) / sd
    expected = sps.nct.sf(q, n - 1, nc) + sps.nct.sf(q, n - 1, -nc)
    assert stats.paired_power(delta, sd, n) == pytest.approx(expected, abs=1e-12)


def test_paired_power_limits():
    # no true difference: the power is the false-positive rate
    assert stats.paired_power(0.0, 1.0, 5) == pytest.approx(0.05, abs=1e-12)
    assert stats.paired_power(0.0, 1.0, 5, alpha=0.1) == pytest.approx(0.1, abs=1e-12)
    # symmetric in the sign of delta, rising with delta and with n
    assert stats.paired_power(-0.7, 1.0, 6) == stats.paired_power(0.7, 1.0, 6)
    assert stats.paired_power(0.5, 1.0, 6) < stats.paired_power(0.7, 1.0, 6)
    assert stats.paired_power(0.5, 1.0, 6) < stats.paired_power(0.5, 1.0, 7)
    # far in the tail (two seeds, huge effect) the power stays finite and below 1
    p = stats.paired_power(6.0, 1.0, 2)
    assert 0.0 < p < 1.0 and math.isfinite(p)
    assert math.isnan(stats.paired_power(1.0, 1.0, 1))
    assert stats.paired_power(1.0, 0.0, 3) == 1.0


def test_mde_large_n_matches_normal_approximation():
    sd, n = 2.5, 400
    approx = Z_SUM * sd / math.sqrt(n)
    m = stats.mde(sd, n)
    assert m == pytest.approx(approx, rel=0.01)
    assert m >= approx  # the t-test never beats the test with known variance
    assert stats.paired_power(m, sd, n) == pytest.approx(0.8, abs=1e-6)


def test_mde_small_n_is_exact():
    m = stats.mde(1.0, 3)
    # with df = 2 the normal approximation (1.62) is far too optimistic
    assert m > 1.5 * Z_SUM / math.sqrt(3.0)
    assert stats.paired_power(m, 1.0, 3) == pytest.approx(0.8, abs=1e-6)
    assert stats.paired_power(0.99 * m, 1.0, 3) < 0.8
    # other levels solve their own equation, and the MDE scales with sd
    m90 = stats.mde(1.0, 6, alpha=0.01, power=0.9)
    assert stats.paired_power(m90, 1.0, 6, alpha=0.01) == pytest.approx(0.9, abs=1e-6)
    assert stats.mde(3.0, 6) == pytest.approx(3.0 * stats.mde(1.0, 6), rel=1e-9)


def test_mde_edge_cases():
    assert math.isnan(stats.mde(1.0, 1))
    assert math.isnan(stats.mde(float("nan"), 5)) and math.isnan(stats.mde(float("inf"), 5))
    assert stats.mde(0.0, 5) == 0.0
    # two seeds (df = 1) still solves
    m2 = stats.mde(1.0, 2)
    assert stats.paired_power(m2, 1.0, 2) == pytest.approx(0.8, abs=1e-6)
    with pytest.raises(ValueError):
        stats.mde(1.0, 5, power=1.0)


def test_mde_rejection_rate_by_simulation():
    # at the MDE, the paired test of compare() must reject 80 % of the time
    n, sd = 5, 1.0
    delta = stats.mde(sd, n)
    rng = np.random.default_rng(2024)
    sims, hits = 2000, 0
    for _ in range(sims):
        base = rng.normal(3.0, 0.5, n)
        var = base + rng.normal(delta, sd, n)
        hits += stats.compare(base, var, n_boot=0)["verdict"] != "no significant difference"
    assert hits / sims == pytest.approx(0.80, abs=0.03)


def test_seeds_needed_reaches_power_with_the_fewest_seeds():
    for delta, sd in [(0.5, 1.0), (1.0, 1.0), (0.1, 0.3), (2.0, 1.0), (0.1, 1.0)]:
        n = stats.seeds_needed(delta, sd)
        assert n is not None and n >= 2
        assert stats.paired_power(delta, sd, n) >= 0.8
        if n > 2:
            assert stats.paired_power(delta, sd, n - 1) < 0.8
        assert stats.seeds_needed(-delta, sd) == n
    # compare with a brute-force search, other levels included
    for delta, sd, alpha, power in [(0.4, 1.0, 0.01, 0.9), (0.8, 0.5, 0.1, 0.5)]:
        brute = next(k for k in range(2, 1001) if stats.paired_power(delta, sd, k, alpha) >= power)
        assert stats.seeds_needed(delta, sd, alpha=alpha, power=power) == brute


def test_seeds_needed_is_monotone_in_delta():
    deltas = np.linspace(0.1, 3.0, 60)
    ns = [stats.seeds_needed(float(d), 1.0) for d in deltas]
    assert all(n is not None for n in ns)
    assert all(a >= b for a, b in zip(ns, ns[1:], strict=False))
    assert ns[0] > 100 and ns[-1] <= 4
    # large n: close to the normal approximation ((z + z) sd / delta)^2
    assert stats.seeds_needed(0.1, 1.0) == pytest.approx((Z_SUM / 0.1) ** 2, rel=0.02)


def test_seeds_needed_edge_cases():
    assert stats.seeds_needed(0.5, 0.0) == 2
    assert stats.seeds_needed(0.0, 1.0) is None
    assert stats.seeds_needed(float("nan"), 1.0) is None
    assert stats.seeds_needed(float("inf"), 1.0) is None
    assert stats.seeds_needed(0.5, float("nan")) is None
    assert stats.seeds_needed(0.01, 1.0) is None  # would need ~78,000 seeds
    assert stats.seeds_needed(0.01, 1.0, n_max=100_000) > 70_000
    assert stats.seeds_needed(5.0, 1.0) == 3  # n = 2 has df = 1: power 0.42 only
    assert stats.seeds_needed(100.0, 1.0) == 2


def test_compare_reports_power_analysis():
    rng = np.random.default_rng(7)
    base = rng.normal(3.0, 0.2, 5)
    var = base + rng.normal(-0.05, 0.1, 5)
    res = stats.compare(base, var, n_boot=0)
    d = var - base
    assert res["sd_diff"] == pytest.approx(np.std(d, ddof=1), rel=1e-12)
    assert res["mde"] == pytest.approx(stats.mde(res["sd_diff"], 5), rel=1e-12)
    assert res["seeds_needed"] == stats.seeds_needed(res["mean_diff"], res["sd_diff"])
    assert res["mde"] > abs(res["mean_diff"])  # this sweep could not have seen its own effect
    assert res["verdict"] == "no significant difference"

    welch = stats.compare(base, var, paired=False, n_boot=0)
    assert math.isnan(welch["sd_diff"]) and welch["seeds_needed"] is None
    se = math.sqrt(np.var(base, ddof=1) / 5 + np.var(var, ddof=1) / 5)
    assert welch["mde"] == pytest.approx(stats._mde_se(se, welch["df"]), rel=1e-12)
    # the power analysis follows compare's alpha
    res10 = stats.compare(base, var, alpha=0.1, n_boot=0)
    assert res10["mde"] == pytest.approx(stats.mde(res["sd_diff"], 5, alpha=0.1), rel=1e-12)
    assert res10["mde"] < res["mde"]
    # paired mde goes through the same helper
    assert stats.mde(0.3, 7) == stats._mde_se(0.3 / math.sqrt(7), 6)


def test_welch_mde_large_samples_matches_normal_approximation():
    rng = np.random.default_rng(11)
    base = rng.normal(3.0, 0.2, 300)
    var = rng.normal(3.0, 0.4, 200)
    res = stats.compare(base, var, paired=False, n_boot=0)
    se = math.sqrt(np.var(base, ddof=1) / 300 + np.var(var, ddof=1) / 200)
    assert res["mde"] == pytest.approx(Z_SUM * se, rel=0.01)
