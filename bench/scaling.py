"""Compute multipliers across model sizes: fit the baseline's loss against training compute,
read every other arm off it.

The baseline is trained at several sizes, each to the same tokens-per-parameter budget. Its
final losses against training FLOPs C (the harness's FLOPs per token × tokens) are fitted with

    L(C) = L∞ + A · (C / C0)^(−α)          (scipy.optimize.curve_fit; C0 = the smallest C)

and inverted at another arm's loss at each size: the **compute multiplier** is the compute the
baseline would need to reach that loss over the compute the baseline spent at that size
(> 1: the arm is worth that many times the baseline's compute there). Intervals: percentile
bootstrap over seeds (per size, the same seeds for every arm, so a seed's shared luck moves the
fit and the target together), refitting the curve on every resample; α and L∞ get theirs from
the same resamples. A trend with size is the slope of ln(multiplier) on ln(C) across sizes; an
arm whose slope interval excludes 0 is flagged (its multiplier grows or shrinks with size).

Everything here reads a plain frame of (arm, size, seed, compute, loss) rows; no torch, no
record I/O.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

BASELINE = "baseline"
COLUMNS = ("arm", "size", "seed", "compute", "loss")


@dataclass(frozen=True)
class PowerLaw:
    """L(C) = l_inf + a · (C / c0)^(−alpha)."""

    l_inf: float
    a: float
    alpha: float
    c0: float

    def predict(self, compute):
        return self.l_inf + self.a * (np.asarray(compute, dtype=float) / self.c0) ** -self.alpha

    def invert(self, loss: float) -> float:
        """The compute at which the curve reaches `loss`; inf at or below the asymptote."""
        if not loss > self.l_inf:
            return math.inf
        z = -math.log((loss - self.l_inf) / self.a) / self.alpha  # ln(C / c0)
        return self.c0 * math.exp(z) if z < 700 else math.inf


def _law(x, l_inf, a, alpha):  # x = C / c0
    return l_inf + a * x**-alpha


def fit_power_law(compute, losses, p0: tuple | None = None) -> PowerLaw:
    """Least-squares fit over every (compute, loss) point (several seeds per size are several
    points). Raises ValueError with fewer than 3 distinct computes (3 parameters) or when the
    fit does not converge."""
    c = np.asarray(compute, dtype=float)
    y = np.asarray(losses, dtype=float)
    keep = np.isfinite(c) & np.isfinite(y) & (c > 0)
    c, y = c[keep], y[keep]
    if len(np.unique(c)) < 3:
        raise ValueError("the power-law fit needs losses at 3 or more sizes")
    c0 = float(c.min())
    lo = float(y.min())
    p0 = p0 or (0.5 * lo, float(y.max()) - 0.5 * lo, 0.3)
    bounds = ([0.0, 1e-12, 1e-4], [lo, np.inf, 10.0])  # L∞ below every observed loss
    p0 = np.clip(p0, np.array(bounds[0]) + 1e-9, np.minimum(bounds[1], 1e12) - 1e-9)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning for an exact fit through 3 points
            (l_inf, a, alpha), _ = curve_fit(_law, c / c0, y, p0=p0, bounds=bounds, maxfev=20000)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"the power-law fit did not converge: {err}") from None
    return PowerLaw(float(l_inf), float(a), float(alpha), c0)


@dataclass
class ScalingResult:
    fit: PowerLaw
    fit_ci: dict  # "alpha"/"l_inf" -> (low, high)
    multipliers: pd.DataFrame  # arm, size, compute, loss, n_seeds, multiplier, ci_low, ci_high
    trends: pd.DataFrame  # arm, slope, ci_low, ci_high, flag
    n_boot_used: int


def _size_order(frame: pd.DataFrame) -> list:
    base = frame[frame["arm"] == BASELINE]
    return list(base.groupby("size", sort=False)["compute"].mean().sort_values().index)


def _estimate(frame: pd.DataFrame, p0=None) -> tuple[PowerLaw, dict]:
    """Fit on the baseline rows; (fit, {(arm, size): multiplier})."""
    base = frame[frame["arm"] == BASELINE]
    fit = fit_power_law(base["compute"], base["loss"], p0)
    spent = base.groupby("size")["compute"].mean()
    means = frame[frame["arm"] != BASELINE].groupby(["arm", "size"])["loss"].mean()
    out = {(arm, size): fit.invert(loss) / spent[size] for (arm, size), loss in means.items()}
    return fit, out


def _slope(sizes: list, compute: pd.Series, mult: dict, arm: str) -> float:
    """Slope of ln(multiplier) on ln(C) over the sizes where the multiplier is finite."""
    pts = [(math.log(compute[s]), math.log(mult[(arm, s)])) for s in sizes if (arm, s) in mult]
    pts = [(x, y) for x, y in pts if math.isfinite(y)]
    if len(pts) < 2:
        return math.nan
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _resample(frame: pd.DataFrame, rng) -> pd.DataFrame:
    """Per size, seeds drawn with replacement; every arm keeps the drawn seeds' rows."""
    parts = []
    for _, g in frame.groupby("size", sort=False):
        seeds = g["seed"].unique()
        for seed in rng.choice(seeds, size=len(seeds), replace=True):
            parts.append(g[g["seed"] == seed])
    return pd.concat(parts, ignore_index=True)


def _interval(values, level: float) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def compute_multipliers(
    frame: pd.DataFrame, n_boot: int = 1000, level: float = 0.95, rng_seed: int = 0
) -> ScalingResult:
    """Fit the baseline, read every other arm at every size, bootstrap over seeds. `frame`
    has COLUMNS; rows with a non-finite loss (diverged runs) are dropped."""
    frame = frame[np.isfinite(frame["loss"].to_numpy(float))]
    sizes = _size_order(frame)
    fit, point = _estimate(frame)
    p0 = (fit.l_inf, fit.a, fit.alpha)
    arms = [a for a in dict.fromkeys(frame["arm"]) if a != BASELINE]
    spent = frame[frame["arm"] == BASELINE].groupby("size")["compute"].mean()
    rng = np.random.default_rng(rng_seed)
    boots: dict = {"alpha": [], "l_inf": [], **{k: [] for k in point}}
    slopes: dict = {a: [] for a in arms}
    for _ in range(n_boot):
        sample = _resample(frame, rng)
        try:
            bfit, mult = _estimate(sample, p0)
        except ValueError:
            continue  # a resample the curve cannot be fitted to: skipped, counted below
        boots["alpha"].append(bfit.alpha)
        boots["l_inf"].append(bfit.l_inf)
        for k, m in mult.items():
            boots[k].append(math.log(m) if m > 0 else math.nan)
        bspent = sample[sample["arm"] == BASELINE].groupby("size")["compute"].mean()
        for a in arms:
            slopes[a].append(_slope(sizes, bspent, mult, a))
    rows = []
    base_losses = frame[frame["arm"] == BASELINE].groupby("size")["loss"].mean()
    for (arm, size), m in point.items():
        lo, hi = _interval(boots[(arm, size)], level)
        g = frame[(frame["arm"] == arm) & (frame["size"] == size)]
        loss = float(g["loss"].mean())
        rows.append({
            "arm": arm, "size": size, "compute": float(g["compute"].mean()),
            "loss": loss, "n_seeds": int(g["seed"].nunique()),
            "multiplier": m, "ci_low": math.exp(lo), "ci_high": math.exp(hi),
            # read outside the losses the baseline reached: the curve is extrapolated
            "extrapolated": not base_losses.min() <= loss <= base_losses.max(),
        })  # fmt: skip
    mult = pd.DataFrame(rows)
    mult["size"] = pd.Categorical(mult["size"], categories=sizes, ordered=True)
    mult = mult.sort_values(["arm", "size"], key=_arm_key(arms)).reset_index(drop=True)
    trends = []
    for a in arms:
        lo, hi = _interval(slopes[a], level)
        slope = _slope(sizes, spent, point, a)
        flag = "grows with size" if lo > 0 else "shrinks with size" if hi < 0 else ""
        trends.append({"arm": a, "slope": slope, "ci_low": lo, "ci_high": hi, "flag": flag})
    return ScalingResult(
        fit=fit,
        fit_ci={k: _interval(boots[k], level) for k in ("alpha", "l_inf")},
        multipliers=mult,
        trends=pd.DataFrame(trends),
        n_boot_used=len(boots["alpha"]),
    )


def _arm_key(arms: list[str]):
    """Sort key for sort_values: arms in their given order, sizes by their category order."""
    rank = {a: i for i, a in enumerate(arms)}

    def key(col: pd.Series) -> pd.Series:
        return col.map(rank) if col.name == "arm" else col.cat.codes

    return key
