"""The verdicts must find real differences and must not call noise a win."""

import math

import numpy as np
import pytest

from bench import stats


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706205), (2, 4.302653), (5, 2.570582), (30, 2.042272), (1000, 1.962339)],
)
def test_t_quantile_known_values(df, expected):
    assert stats.t_ppf(0.975, df) == pytest.approx(expected, abs=2e-6)
    assert stats.t_ppf(0.025, df) == pytest.approx(-expected, abs=2e-6)


def test_t_cdf_closed_forms():
    # df=1 is Cauchy, df=2 has a closed form; both checked against formulas, not tables.
    for t in (-3.0, -0.5, 0.0, 0.7, 2.0, 25.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)), abs=1e-12)
    # ppf inverts cdf for fractional df (Welch) too
    for df in (1.3, 4.7, 17.2):
        for q in (0.6, 0.9, 0.995):
            assert stats.t_cdf(stats.t_ppf(q, df), df) == pytest.approx(q, abs=1e-10)


def test_betainc_known_values():
    assert stats.betainc(2, 3, 0.5) == pytest.approx(11 / 16, abs=1e-14)
    assert stats.betainc(1, 1, 0.3) == pytest.approx(0.3, abs=1e-14)
    assert stats.betainc(0.5, 0.5, 0.5) == pytest.approx(0.5, abs=1e-12)
    assert stats.betainc(3, 2, 0.0) == 0.0 and stats.betainc(3, 2, 1.0) == 1.0


def _seeds(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 0.05, n), rng


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
    # a diverged (nan) pair is dropped, leaving one usable pair
    assert stats.compare([2.0, 2.1], [1.0, float("nan")])["verdict"] == "too few seeds"
    assert stats.compare([2.0, 2.1], [1.0], paired=False)["verdict"] == "too few seeds"


def test_paired_needs_equal_lengths():
    with pytest.raises(ValueError):
        stats.compare([1.0, 2.0], [1.0, 2.0, 3.0])


def test_bootstrap_ci_is_a_cross_check():
    d = np.array([-0.5, -0.45, -0.52, -0.48, -0.51])
    lo, hi = stats.bootstrap_ci(d, n_boot=2000, rng_seed=3)
    assert lo <= d.mean() <= hi and hi < 0
    assert stats.bootstrap_ci(d, rng_seed=3) == stats.bootstrap_ci(d, rng_seed=3)
    assert all(math.isnan(x) for x in stats.bootstrap_ci([1.0]))
