"""Significance tests for "is this variant really better than the baseline?".

A transformer variant trained with 3-5 seeds gives a handful of numbers per metric, and the
seed-to-seed spread is often as large as the effect being claimed. The verdicts here are
designed so that noise is never reported as a win:

* **Paired t-test by seed** (the default, :func:`scipy.stats.ttest_rel`). Runs that share a
  seed share the data order and the initialisation stream, so the per-seed difference
  ``variant - baseline`` cancels much of the seed noise. The test is on the mean of those
  differences with ``n - 1`` degrees of freedom.
* **Welch's t-test** (:func:`scipy.stats.ttest_ind` with ``equal_var=False``) when the samples
  are not paired (different seeds, or timing metrics where the seed has nothing to do with the
  noise). It does not assume equal variances.
* The verdict is significant only if the ``1 - alpha`` confidence interval of the difference
  (scipy's ``confidence_interval`` of the test result) excludes 0 (for a t-test this is the
  same event as ``p < alpha``; both are checked so float rounding at the boundary cannot
  produce a win). With fewer than two usable samples there is no spread estimate at all, so the
  verdict is ``"too few seeds"`` and no interval is given. When every difference is identical
  (zero spread: a parameter count, two bit-identical runs) the interval collapses to that value
  and p is 1 if it is 0, else 0; this case is decided here, before scipy sees it.
* A t interval is used rather than a bootstrap for the verdict because with 3-5 seeds the
  percentile bootstrap badly under-covers (with 3 seeds there are only 10 distinct resamples).
  :func:`bootstrap_ci` is still provided as a cross-check and is reported next to the t interval.

**Power analysis.** A verdict of "no significant difference" is only informative if the sweep
could have detected the effect you care about. :func:`mde` gives the *minimum detectable
effect*: the smallest true difference that the two-sided t-test at level ``alpha`` would detect
with probability ``power`` (80 % by default), given the observed seed-to-seed spread and the
number of seeds. A sweep whose MDE is larger than the effect you care about could not have seen
it; "no significant difference" then means "not measured", not "no effect". :func:`seeds_needed`
answers the planning question the other way round (how many paired seeds would detect a given
difference), and :func:`paired_power` gives the power itself. All three are exact for the t-test
(through the noncentral t distribution), not the normal approximation
``(z_{1-alpha/2} + z_power) * sd / sqrt(n)``, which is too optimistic with a handful of seeds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

__all__ = [
    "bootstrap_ci",
    "bootstrap_ci_unpaired",
    "compare",
    "mde",
    "paired_power",
    "seeds_needed",
]


# --------------------------------------------------------------------------- power analysis


def _check_levels(alpha: float, power: float | None = None) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if power is not None and not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")


def _nct_cdf(x: float, df: float, ncp: float) -> float:
    """CDF of the noncentral t distribution, P(T' <= x) with T' ~ nct(df, ncp).

    ``scipy.special.nctdtr`` is the function behind ``scipy.stats.nct.cdf``; it is called
    directly because :func:`compare` evaluates it a few dozen times per call and the overhead of
    the distribution object (~50 us a call) would dominate. Far in the lower tail (values below
    ~1e-14) it returns nan in scipy 1.17; there the same probability is taken from
    ``scipy.stats.nct.sf`` (P(T' <= x) = P(-T' >= -x), and -T' ~ nct(df, -ncp)), which stays
    finite.
    """
    p = float(special.nctdtr(df, ncp, x))
    if not math.isfinite(p):
        p = float(sps.nct.sf(-x, df, -ncp))
    return p


def _power_ncp(ncp: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test with ``df`` degrees of freedom at noncentrality ``ncp``.

    P(T' > q) + P(T' < -q) with T' ~ nct(df, ncp) and q = t_{1-alpha/2, df}. Both tails are
    taken as lower-tail CDFs (P(T' > q) = P(-T' < -q), and -T' ~ nct(df, -ncp)), so neither is
    computed as 1 minus something close to 1.

    The tail on the far side of zero needs Z + |ncp| < 0 (with Z standard normal, the numerator
    of T'), so it is below Phi(-|ncp|); beyond |ncp| = 9 that is < 1e-18, far below the rounding
    of the near tail (which is at least alpha / 2), and it is not evaluated.
    """
    ncp = abs(ncp)
    if math.isinf(df):  # the t-test becomes the z-test
        q = float(special.ndtri(1.0 - alpha / 2.0))
        return float(special.ndtr(ncp - q) + special.ndtr(-q - ncp))
    q = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    near = _nct_cdf(-q, df, -ncp)
    return near if ncp > 9.0 else near + _nct_cdf(-q, df, ncp)


def _mde_se(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest |difference| the two-sided t-test (standard error ``se``, ``df`` degrees of
    freedom) detects with probability ``power``: ``se`` times the noncentrality whose power is
    ``power``, found with :func:`scipy.optimize.brentq`.

    nan if ``se`` or ``df`` is not usable; 0.0 if ``se == 0`` (every difference is detected) or
    if ``power <= alpha`` (even a zero difference is "detected" that often).
    """
    _check_levels(alpha, power)
    if not (math.isfinite(se) and se >= 0.0) or math.isnan(df) or df <= 0.0:
        return math.nan
    if se == 0.0 or power <= alpha:
        return 0.0

    def gap(ncp: float) -> float:
        return _power_ncp(ncp, df, alpha) - power

    # gap(0) = alpha - power < 0 and the power rises to 1 as ncp grows; start the bracket at the
    # normal-approximation answer (which the t-test never reaches) and double until it holds.
    hi = float(special.ndtri(1.0 - alpha / 2.0) + special.ndtri(power))
    hi = max(hi, 1.0)
    for _ in range(200):
        if gap(hi) >= 0.0:
            break
        hi *= 2.0
    else:  # pragma: no cover - power -> 1 for any df > 0, so this needs a pathological input
        return math.nan
    ncp = optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps, maxiter=500)
    return float(ncp * se)


def paired_power(delta: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test to detect a true mean difference ``delta``.

    ``n`` pairs (``df = n - 1``) whose per-pair differences have standard deviation ``sd``.
    Exact through the noncentral t distribution with noncentrality ``delta * sqrt(n) / sd``, both
    tails counted. nan if ``n < 2`` or an input is not finite; with ``sd == 0`` the power is 1
    for any ``delta != 0`` and ``alpha`` for ``delta == 0`` (the limit of the formula).
    """
    _check_levels(alpha)
    if n < 2 or not (math.isfinite(delta) and math.isfinite(sd)):
        return math.nan
    if sd < 0.0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if sd == 0.0:
        return alpha if delta == 0.0 else 1.0
    return _power_ncp(abs(delta) * math.sqrt(n) / sd, n - 1.0, alpha)


def mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a paired comparison over ``n`` seeds.

    The smallest |delta| whose :func:`paired_power` reaches ``power`` when the per-seed
    differences have standard deviation ``sd``. Read it next to a verdict: a sweep whose MDE is
    larger than the effect you care about could not have seen it; "no significant difference"
    then means "not measured", not "no effect".

    nan if ``n < 2`` or ``sd`` is not finite; 0.0 if ``sd == 0``.
    """
    _check_levels(alpha, power)
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd < 0.0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if sd == 0.0:
        return 0.0
    return _mde_se(sd / math.sqrt(n), n - 1.0, alpha, power)


def seeds_needed(
    delta: float,
    sd: float,
    alpha: float = 0.05,
    power: float = 0.8,
    n_max: int = 1000,
) -> int | None:
    """Smallest number of paired seeds ``n >= 2`` whose :func:`paired_power` at ``|delta|``
    reaches ``power``, for per-seed differences with standard deviation ``sd``.

    None if ``delta == 0``, if ``delta`` or ``sd`` is not finite, or if ``n_max`` seeds are not
    enough. With ``sd == 0`` and ``delta != 0`` two seeds suffice.
    """
    _check_levels(alpha, power)
    if delta == 0.0 or not (math.isfinite(delta) and math.isfinite(sd)) or n_max < 2:
        return None
    if sd < 0.0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if sd == 0.0:
        return 2

    # power rises with n: the first n that reaches it (a few ms even at n_max = 1000)
    for n in range(2, n_max + 1):
        if paired_power(delta, sd, n, alpha) >= power:
            return n
    return None


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    diffs: Sequence[float],
    n_boot: int = 10000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences.

    A cross-check only: with a handful of seeds it is too narrow (it cannot know about spread
    it has not seen), which is why verdicts come from the t interval in :func:`compare`.
    Returns (nan, nan) with fewer than two finite values or ``n_boot < 1``.
    """
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2 or n_boot < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(rng_seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_ci_unpaired(
    baseline: Sequence[float],
    variant: Sequence[float],
    n_boot: int = 10000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(variant) - mean(baseline), resampling each side."""
    b = np.asarray(baseline, dtype=float)
    v = np.asarray(variant, dtype=float)
    b, v = b[np.isfinite(b)], v[np.isfinite(v)]
    if b.size < 2 or v.size < 2 or n_boot < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(rng_seed)
    mb = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)
    mv = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(mv - mb, [tail, 100.0 - tail])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- compare


def _tested(n, mean, ci, p, test: str, df, boot, alpha, lower_is_better, power: dict) -> dict:
    """The result of a test that ran: its verdict read from the interval and the p-value."""
    verdict = _verdict(mean, ci, p, alpha, lower_is_better)
    return _result(n, mean, ci, p, test, verdict, df=df, boot=boot, **power)


def _result(
    n: int,
    mean_diff: float,
    ci: tuple[float, float],
    p: float,
    test: str,
    verdict: str,
    df: float = math.nan,
    boot: tuple[float, float] = (math.nan, math.nan),
    sd_diff: float = math.nan,
    mde: float = math.nan,
    seeds_needed: int | None = None,
) -> dict:
    return {
        "n": int(n),
        "mean_diff": float(mean_diff),
        "ci_low": float(ci[0]),
        "ci_high": float(ci[1]),
        "p_value": float(p),
        "test": test,
        "verdict": verdict,
        "df": float(df),
        "boot_ci_low": float(boot[0]),
        "boot_ci_high": float(boot[1]),
        "sd_diff": float(sd_diff),
        "mde": float(mde),
        "seeds_needed": seeds_needed,
    }


def _verdict(mean_diff: float, ci: tuple[float, float], p: float, alpha: float, lower: bool) -> str:
    """Significant only when the interval excludes zero *and* p < alpha."""
    excludes_zero = ci[0] > 0.0 or ci[1] < 0.0
    if not (excludes_zero and p < alpha):
        return "no significant difference"
    improved = mean_diff < 0 if lower else mean_diff > 0
    return "better" if improved else "worse"


def _no_spread(mean: float) -> tuple[tuple[float, float], float]:
    """(CI, p) when every difference is identical: the difference is exactly ``mean`` on every
    sample, so zero is "no difference" and anything else is a certain one."""
    return (mean, mean), (1.0 if mean == 0.0 else 0.0)


def _scipy_t(result, alpha: float) -> tuple[tuple[float, float], float, float]:
    """(CI, p, df) from a scipy ``TtestResult``."""
    ci = result.confidence_interval(confidence_level=1.0 - alpha)
    return (float(ci.low), float(ci.high)), float(result.pvalue), float(result.df)


def compare(
    baseline: Sequence[float],
    variant: Sequence[float],
    paired: bool = True,
    alpha: float = 0.05,
    lower_is_better: bool = True,
    n_boot: int = 10000,
    rng_seed: int = 0,
) -> dict:
    """Compare a metric of a variant against the baseline across seeds.

    ``paired=True`` expects ``baseline[i]`` and ``variant[i]`` to come from the same seed; pairs
    with a non-finite value on either side (diverged runs) are dropped. ``paired=False`` runs
    Welch's test on the finite values of each side.

    Returns a dict with ``n`` (pairs, or the smaller sample for Welch), ``mean_diff``
    (variant - baseline), ``ci_low``/``ci_high`` (the ``1 - alpha`` t interval of the
    difference), ``p_value`` (two-sided), ``test`` ("paired t" | "welch t"), ``verdict``
    ("better" | "worse" | "no significant difference" | "too few seeds"), plus ``df`` and the
    bootstrap cross-check ``boot_ci_low``/``boot_ci_high`` (nan when ``n_boot == 0``).

    Power analysis (80 % power at this ``alpha``): ``sd_diff`` is the standard deviation of the
    paired differences (ddof=1; nan for Welch), ``mde`` the minimum detectable effect of this
    comparison (see :func:`mde`; for Welch the same noncentral-t computation with Welch's
    standard error and degrees of freedom), and ``seeds_needed`` the number of paired seeds that
    would detect the observed ``mean_diff`` (see :func:`seeds_needed`; None for Welch). If the
    verdict is "no significant difference" and ``mde`` is larger than the effect you care about,
    the sweep could not have seen that effect: the difference was not measured, not shown absent.
    On the "too few seeds" path these are nan, nan and None.
    """
    b = np.asarray(baseline, dtype=float).ravel()
    v = np.asarray(variant, dtype=float).ravel()
    test = _paired if paired else _welch
    return test(b, v, alpha, lower_is_better, n_boot, rng_seed)


def _paired(b: np.ndarray, v: np.ndarray, alpha, lower_is_better, n_boot, rng_seed) -> dict:
    """`compare` by seed: the paired t-test on the pairs finite on both sides."""
    if b.size != v.size:
        raise ValueError(f"paired comparison needs equal lengths, got {b.size} and {v.size}")
    keep = np.isfinite(b) & np.isfinite(v)
    b, v = b[keep], v[keep]
    d = v - b
    n = d.size
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return _result(n, mean, (math.nan, math.nan), math.nan, "paired t", "too few seeds")
    boot = bootstrap_ci(d, n_boot=n_boot, level=1.0 - alpha, rng_seed=rng_seed)
    if d.min() == d.max():
        mean, sd_diff, df = float(d[0]), 0.0, n - 1.0
        ci, p = _no_spread(mean)
    else:
        sd_diff = float(d.std(ddof=1))
        with warnings.catch_warnings():
            # nearly identical differences make scipy warn about precision loss in its
            # moment calculation; the result is still the t-test on the data as given.
            warnings.simplefilter("ignore", RuntimeWarning)
            ci, p, df = _scipy_t(sps.ttest_rel(v, b), alpha)
    power = {
        "sd_diff": sd_diff,
        "mde": mde(sd_diff, n, alpha=alpha),
        "seeds_needed": seeds_needed(mean, sd_diff, alpha=alpha),
    }
    return _tested(n, mean, ci, p, "paired t", df, boot, alpha, lower_is_better, power)


def _welch(b: np.ndarray, v: np.ndarray, alpha, lower_is_better, n_boot, rng_seed) -> dict:
    """`compare` unpaired: Welch's t-test on the finite values of each side."""
    b, v = b[np.isfinite(b)], v[np.isfinite(v)]
    n = min(b.size, v.size)
    mean = float(v.mean() - b.mean()) if n else math.nan
    if n < 2:
        return _result(n, mean, (math.nan, math.nan), math.nan, "welch t", "too few seeds")
    boot = bootstrap_ci_unpaired(b, v, n_boot=n_boot, level=1.0 - alpha, rng_seed=rng_seed)
    if b.min() == b.max() and v.min() == v.max():
        # Both sides constant: zero standard error, and Welch's df is 0/0 (reported as inf).
        mean, se, df = float(v[0] - b[0]), 0.0, math.inf
        ci, p = _no_spread(mean)
    else:
        se = math.sqrt(b.var(ddof=1) / b.size + v.var(ddof=1) / v.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ci, p, df = _scipy_t(sps.ttest_ind(v, b, equal_var=False), alpha)
    power = {"mde": _mde_se(se, df, alpha=alpha)}
    return _tested(n, mean, ci, p, "welch t", df, boot, alpha, lower_is_better, power)
