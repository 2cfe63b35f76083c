"""Significance tests for "is this variant really better than the baseline?".

A transformer variant trained with 3-5 seeds gives a handful of numbers per metric, and the
seed-to-seed spread is often as large as the effect being claimed. The verdicts here are
designed so that noise is never reported as a win:

* **Paired t-test by seed** (the default). Runs that share a seed share the data order and the
  initialisation stream, so the per-seed difference ``variant - baseline`` cancels much of the
  seed noise. The test is on the mean of those differences with ``n - 1`` degrees of freedom.
* **Welch's t-test** when the samples are not paired (different seeds, or timing metrics where
  the seed has nothing to do with the noise). It does not assume equal variances.
* The verdict is significant only if the ``1 - alpha`` confidence interval of the difference
  excludes 0 (for a t-test this is the same event as ``p < alpha``; both are checked so float
  rounding at the boundary cannot produce a win). With fewer than two usable samples there is
  no spread estimate at all, so the verdict is ``"too few seeds"`` and no interval is given.
* A t interval is used rather than a bootstrap for the verdict because with 3-5 seeds the
  percentile bootstrap badly under-covers (with 3 seeds there are only 10 distinct resamples).
  :func:`bootstrap_ci` is still provided as a cross-check and is reported next to the t interval.

scipy is not a dependency, so the Student t distribution is implemented here: the CDF through
the regularized incomplete beta function (evaluated with a continued fraction, modified Lentz
method) and the quantile by bisection on that CDF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "betainc",
    "bootstrap_ci",
    "bootstrap_ci_unpaired",
    "compare",
    "t_cdf",
    "t_ppf",
    "t_two_sided_p",
]

_TINY = 1e-300
_EPS = 1e-15


def _beta_continued_fraction(a: float, b: float, x: float, max_iter: int = 500) -> float:
    """Continued fraction for I_x(a, b) (without the prefactor), by the modified Lentz method.

    The fraction is 1 / (1 + d1 / (1 + d2 / (1 + ...))) with
    d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)) and d_{2m} = m(b-m) x / ((a+2m-1)(a+2m)).
    It converges quickly for x < (a+1)/(a+b+2); the caller uses the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) to stay in that region.
    """

    def _guard(v: float) -> float:
        return _TINY if abs(v) < _TINY else v

    # Lentz: f = b0 + a1/(b1 + a2/(b2 + ...)) with b0 = 0 handled by starting at the first term.
    c = 1.0
    d = 1.0 / _guard(1.0 - (a + b) * x / (a + 1.0))
    f = d
    for m in range(1, max_iter + 1):
        # even step d_{2m}
        num = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 / _guard(1.0 + num * d)
        c = _guard(1.0 + num / c)
        f *= d * c
        # odd step d_{2m+1}
        num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 / _guard(1.0 + num * d)
        c = _guard(1.0 + num / c)
        step = d * c
        f *= step
        if abs(step - 1.0) < _EPS:
            return f
    return f  # converged to working precision for every (a, b, x) the t distribution needs


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom.

    Uses P(|T| >= t) = I_{df/(df+t^2)}(df/2, 1/2), which stays accurate far in the tail
    (small p-values are not computed as 1 minus something close to 1).
    """
    if df <= 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2.0))
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution."""
    tail = 0.5 * t_two_sided_p(t, df)
    return 1.0 - tail if t >= 0 else tail


def t_ppf(q: float, df: float) -> float:
    """Quantile (inverse CDF) of Student's t distribution, by bisection on the CDF.

    Bisection is slow-ish (~100 CDF calls) but unconditionally convergent, including for the
    fractional degrees of freedom that Welch's test produces.
    """
    if not 0.0 < q < 1.0:
        if q == 0.0:
            return -math.inf
        if q == 1.0:
            return math.inf
        raise ValueError(f"quantile level must be in [0, 1], got {q}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    target = 2.0 * (1.0 - q)  # two-sided tail probability at the answer
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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


def _result(n, mean_diff, ci, p, test, verdict, df=math.nan, boot=(math.nan, math.nan)) -> dict:
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
    }


def _verdict(mean_diff: float, ci: tuple[float, float], p: float, alpha: float, lower: bool) -> str:
    """Significant only when the interval excludes zero *and* p < alpha."""
    excludes_zero = ci[0] > 0.0 or ci[1] < 0.0
    if not (excludes_zero and p < alpha):
        return "no significant difference"
    improved = mean_diff < 0 if lower else mean_diff > 0
    return "better" if improved else "worse"


def _t_interval(mean: float, se: float, df: float, alpha: float) -> tuple[tuple, float]:
    """(CI, p) for a t statistic; a zero standard error means every difference was identical."""
    if se == 0.0:
        # No spread at all: the difference is exactly `mean` on every sample (e.g. a parameter
        # count, or two bit-identical runs). Zero difference is "no difference", anything else is
        # a certain one.
        return (mean, mean), (1.0 if mean == 0.0 else 0.0)
    q = t_ppf(1.0 - alpha / 2.0, df)
    p = t_two_sided_p(mean / se, df)
    return (mean - q * se, mean + q * se), p


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
    """
    b = np.asarray(baseline, dtype=float).ravel()
    v = np.asarray(variant, dtype=float).ravel()
    nan2 = (math.nan, math.nan)
    level = 1.0 - alpha
    if paired:
        if b.size != v.size:
            raise ValueError(f"paired comparison needs equal lengths, got {b.size} and {v.size}")
        keep = np.isfinite(b) & np.isfinite(v)
        d = v[keep] - b[keep]
        n = d.size
        mean = float(d.mean()) if n else math.nan
        if n < 2:
            return _result(n, mean, nan2, math.nan, "paired t", "too few seeds")
        df = n - 1.0
        se = float(d.std(ddof=1)) / math.sqrt(n)
        boot = bootstrap_ci(d, n_boot=n_boot, level=level, rng_seed=rng_seed)
        test = "paired t"
    else:
        b, v = b[np.isfinite(b)], v[np.isfinite(v)]
        n = min(b.size, v.size)
        mean = float(v.mean() - b.mean()) if n else math.nan
        if n < 2:
            return _result(n, mean, nan2, math.nan, "welch t", "too few seeds")
        vb, vv = b.var(ddof=1) / b.size, v.var(ddof=1) / v.size
        se = math.sqrt(vb + vv)
        denom = vb**2 / (b.size - 1) + vv**2 / (v.size - 1)
        df = (vb + vv) ** 2 / denom if denom > 0 else math.inf
        boot = bootstrap_ci_unpaired(b, v, n_boot=n_boot, level=level, rng_seed=rng_seed)
        test = "welch t"
    ci, p = _t_interval(mean, se, df, alpha)
    verdict = _verdict(mean, ci, p, alpha, lower_is_better)
    return _result(n, mean, ci, p, test, verdict, df=df, boot=boot)
