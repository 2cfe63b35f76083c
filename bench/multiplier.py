"""Turn a loss gap into "how many steps / how much compute is this change worth".

A final validation-loss difference of 0.01 nats is hard to weigh. This module re-expresses it as
a multiplier on the baseline's budget, in two ways. Everything here reads plain lists and dicts
(the ``record["curve"]`` points and per-seed losses); there is no torch and no record I/O.

**Crossing multiplier** (cheap, available for every comparison). For one seed, take the two
validation curves and the *worse* of the two final losses, ``L = max(L_base, L_variant)``. Both
curves reach ``L`` (the worse one at the latest at its own end), so the first step (or second) at
which each reaches it is well defined, and ``m = x_base / x_variant`` says how much faster the
variant gets there: ``m > 1`` means the variant reaches that loss in ``1/m`` of the baseline's
steps (it is "worth" ``m``× the steps), ``m < 1`` means it is slower. Crossings are linearly
interpolated between the last evaluation above the level and the first at or below it. Per-seed
multipliers are summarised by their geometric mean with a t interval on the log scale, because
multipliers are ratios (``2×`` and ``0.5×`` should average to ``1×``).

Caveats: this compares the curves *within one run's learning-rate schedule*; the baseline at an
intermediate step has not annealed, so the crossing multiplier is a statement about the curves
as trained, not about what a baseline with a longer schedule would reach. That is what the
budget ladder below answers. With noisy curves the "first" crossing can be an early noise dip.

**Budget ladder** (opt-in, costs extra baseline runs). The baseline is also trained with its
own full schedule at a few budgets around the main one (e.g. ½×, 1×, 2×). Its final losses
``L(S)`` are fitted and inverted at the variant's final loss: "the baseline would need ``k``×
the steps to match". See :func:`fit_ladder` for the functional form and
:func:`ladder_multiplier` for the interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LadderFit",
    "crossing",
    "crossing_multipliers",
    "first_crossing",
    "fit_ladder",
    "geometric_summary",
    "ladder_multiplier",
]

_AXES = ("step", "time_s")


def _is_finite(v: Any) -> bool:
    if v is None:
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _clean(xs: Sequence[Any], losses: Sequence[Any]) -> tuple[list[float], list[float]]:
    """Pairs (x, loss) with both finite, in the given order."""
    if len(xs) != len(losses):
        raise ValueError(f"xs and losses differ in length ({len(xs)} vs {len(losses)})")
    out_x: list[float] = []
    out_l: list[float] = []
    for x, loss in zip(xs, losses, strict=True):
        if _is_finite(x) and _is_finite(loss):
            out_x.append(float(x))
            out_l.append(float(loss))
    return out_x, out_l


# --------------------------------------------------------------------------------------------
# Crossing multiplier
# --------------------------------------------------------------------------------------------


def first_crossing(xs: Sequence[Any], losses: Sequence[Any], level: float) -> float | None:
    """First x at which the curve reaches ``level`` (loss <= level), or None if it never does.

    Between the last point above the level and the first point at or below it, x is linearly
    interpolated. If the first point is already at or below the level, its x is returned.
    Points whose x or loss is None or nan are ignored.
    """
    cx, cl = _clean(xs, losses)
    for i, (x, loss) in enumerate(zip(cx, cl, strict=True)):
        if loss <= level:
            if i == 0:
                return x
            x0, l0 = cx[i - 1], cl[i - 1]  # l0 > level >= loss, so l0 - loss > 0
            return x0 + (l0 - level) / (l0 - loss) * (x - x0)
    return None


def _axis_and_loss(curve: Sequence[Mapping[str, Any]], axis: str) -> tuple[list, list]:
    return [p.get(axis) for p in curve], [p.get("val_loss") for p in curve]


def _final_loss(losses: Sequence[Any]) -> float:
    for v in reversed(losses):
        if _is_finite(v):
            return float(v)
    return math.nan


def crossing(
    base_curve: Sequence[Mapping[str, Any]],
    var_curve: Sequence[Mapping[str, Any]],
    axis: str = "step",
) -> dict[str, Any]:
    """Crossing multiplier for one seed: ``x_base / x_variant`` at the worse final loss.

    ``axis`` is ``"step"`` or ``"time_s"``. The level is ``max(L_base, L_variant)`` of the final
    (last finite) validation losses. Returns ``{"multiplier", "level", "x_base", "x_variant",
    "axis"}``. The multiplier is nan when it cannot be computed: an empty (or all-nan) curve, a
    curve that does not reach the level, or a crossing at x <= 0 (already at the level at the
    first evaluation, where the ratio means nothing). Identical curves give exactly 1.0.
    """
    if axis not in _AXES:
        raise ValueError(f"axis must be one of {_AXES}, got {axis!r}")
    bx, bl = _axis_and_loss(base_curve, axis)
    vx, vl = _axis_and_loss(var_curve, axis)
    # Final loss of the points usable on this axis (a point without a time has no crossing).
    lb = _final_loss(_clean(bx, bl)[1])
    lv = _final_loss(_clean(vx, vl)[1])
    out: dict[str, Any] = {
        "multiplier": math.nan,
        "level": math.nan,
        "x_base": None,
        "x_variant": None,
        "axis": axis,
    }
    if not (math.isfinite(lb) and math.isfinite(lv)):
        return out
    level = max(lb, lv)
    x_b = first_crossing(bx, bl, level)
    x_v = first_crossing(vx, vl, level)
    out.update(level=level, x_base=x_b, x_variant=x_v)
    if x_b is not None and x_v is not None and x_b > 0 and x_v > 0:
        out["multiplier"] = x_b / x_v
    return out


def geometric_summary(values: Iterable[Any], level: float = 0.95) -> dict[str, Any]:
    """Geometric mean of the positive finite ``values`` with a t interval on the log scale.

    The interval is ``scipy.stats.ttest_1samp(log(values)).confidence_interval(level)``,
    exponentiated. Non-positive and non-finite values are dropped (``n`` counts those kept).
    One value: that value and a nan interval. All values identical: a zero-width interval at
    that value. No values: everything nan.
    """
    kept = [float(v) for v in values if _is_finite(v) and float(v) > 0]
    n = len(kept)
    if n == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    if n == 1:
        return {"mean": kept[0], "ci_low": math.nan, "ci_high": math.nan, "n": 1}
    if all(v == kept[0] for v in kept):
        # scipy would warn about catastrophic cancellation and the spread is exactly 0.
        v = kept[0]
        return {"mean": v, "ci_low": v, "ci_high": v, "n": n}
    from scipy import stats as sps  # only this function needs scipy

    logs = np.log(np.asarray(kept))
    with warnings.catch_warnings():
        # Nearly identical values trip scipy's precision-loss warning; the interval is still
        # (essentially) zero-width, which is the right answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = sps.ttest_1samp(logs, 0.0).confidence_interval(confidence_level=level)
    return {
        "mean": float(np.exp(logs.mean())),
        "ci_low": float(np.exp(ci.low)),
        "ci_high": float(np.exp(ci.high)),
        "n": n,
    }


def _ordered_common(a: Mapping, b: Mapping) -> list:
    common = [s for s in a if s in b]
    try:
        return sorted(common)
    except TypeError:  # mixed seed types: keep the baseline's order
        return common


def crossing_multipliers(
    base_curves: Mapping[Hashable, Sequence[Mapping[str, Any]]],
    var_curves: Mapping[Hashable, Sequence[Mapping[str, Any]]],
    axis: str = "step",
    level: float = 0.95,
) -> dict[str, Any]:
    """Crossing multipliers paired by seed, summarised geometrically.

    Seeds present in both mappings are paired; each pair goes through :func:`crossing`.
    Returns :func:`geometric_summary`'s keys (``"mean", "ci_low", "ci_high", "n"``; ``n``
    counts the usable multipliers) plus ``"per_seed"`` (seed -> multiplier, nan where none
    could be computed), ``"n_pairs"`` (seeds paired) and ``"axis"``.
    """
    seeds = _ordered_common(base_curves, var_curves)
    per_seed = {s: crossing(base_curves[s], var_curves[s], axis)["multiplier"] for s in seeds}
    summary = geometric_summary(per_seed.values(), level=level)
    return {**summary, "per_seed": per_seed, "n_pairs": len(seeds), "axis": axis}


# --------------------------------------------------------------------------------------------
# Budget ladder
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LadderFit:
    """Final loss as a function of budget: ``L(S) = a + b * ln(S)`` with ``b < 0``."""

    a: float
    b: float

    def predict(self, budget: Any) -> Any:
        """L at budget S (scalar or array)."""
        out = self.a + self.b * np.log(np.asarray(budget, dtype=float))
        return float(out) if np.ndim(out) == 0 else out

    def log_invert(self, loss: float) -> float:
        """ln(S) at which the fit reaches ``loss``; finite even when S itself would overflow."""
        return (float(loss) - self.a) / self.b

    def invert(self, loss: float) -> float:
        """Budget S at which the fit reaches ``loss`` (inf if that overflows)."""
        z = self.log_invert(loss)
        return math.exp(z) if z < 709.0 else math.inf


def fit_ladder(budgets: Sequence[float], losses: Sequence[float]) -> LadderFit:
    """Least-squares fit of ``L = a + b * ln(S)`` over all (budget, loss) points.

    Several seeds per budget are simply several points. Why this form: over the ~4× range a
    ladder spans (½× to 2×), the final loss is close to linear in log-steps; two parameters are
    all that three budget levels can support (a power law with an asymptote, ``L = E + A S^-α``,
    has three and would be fitted exactly with nothing left to check it); and it inverts in
    closed form, ``S = exp((L - a) / b)``. Far outside the ladder's range it is an extrapolation
    of a local slope and should be read as such.

    Points with a non-finite loss are dropped. Raises ValueError with fewer than 2 distinct
    budgets, a non-positive budget, or a fitted slope ``b >= 0`` (loss does not fall with the
    budget, so the ladder cannot be inverted).
    """
    if len(budgets) != len(losses):
        raise ValueError(f"budgets and losses differ in length ({len(budgets)} vs {len(losses)})")
    pts = [(float(s), float(v)) for s, v in zip(budgets, losses, strict=True) if _is_finite(v)]
    if any(not (math.isfinite(s) and s > 0) for s, _ in pts):
        raise ValueError("ladder budgets must be positive and finite")
    if len({s for s, _ in pts}) < 2:
        raise ValueError("ladder needs losses at 2 or more distinct budgets to fit a slope")
    x = np.log(np.array([s for s, _ in pts]))
    y = np.array([v for _, v in pts])
    xc = x - x.mean()
    b = float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))
    a = float(y.mean() - b * x.mean())
    if not b < 0:
        raise ValueError(
            f"ladder slope b={b:.4g} >= 0: loss does not fall with budget, cannot invert the ladder"
        )
    return LadderFit(a=a, b=b)


def ladder_multiplier(
    ladder: Mapping[Hashable, Mapping[float, float]],
    variant: Mapping[Hashable, float],
    main_budget: float,
    n_boot: int = 2000,
    rng_seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """ "The baseline would need ``k``× the main budget to match the variant's final loss".

    ``ladder`` maps seed -> {budget: baseline final loss}; ``variant`` maps seed -> the
    variant's final loss at ``main_budget``. Only seeds with a finite variant loss and a ladder
    are used. Point estimate: fit :func:`fit_ladder` on all those seeds' ladder points, invert at
    their mean variant loss: ``k = S* / main_budget``.

    Interval: percentile bootstrap over seeds. Each resample draws the seeds with replacement,
    refits the ladder on the drawn seeds' points (a seed drawn twice counts twice) and inverts
    at the drawn seeds' mean variant loss, so a seed's shared offset moves the fit and the
    target together, as in the data. Resamples whose fit fails (fewer than 2 budgets, slope
    >= 0) are skipped and counted in ``n_boot_skipped``. Quantiles are taken on ``ln k`` (the
    same order statistics; neighbours are interpolated geometrically), which keeps far
    extrapolations finite. With few seeds the interval is coarse and tends to be too narrow:
    with 3 seeds there are only 10 distinct resamples (multisets of 3 out of 3), so the
    "percentiles" are a handful of distinct values. Fewer than 2 seeds: point estimate only and
    a nan interval.

    Returns ``{"multiplier", "ci_low", "ci_high", "n_seeds", "budgets", "extrapolated", "a",
    "b", "n_boot_used", "n_boot_skipped"}``; ``extrapolated`` is True when ``S*`` lies outside
    ``[min budget, max budget]``. Raises ValueError if the point-estimate fit fails (see
    :func:`fit_ladder`), there are no usable seeds, or ``main_budget`` is not positive.
    """
    if not (_is_finite(main_budget) and main_budget > 0):
        raise ValueError(f"main_budget must be positive, got {main_budget!r}")
    seeds = [s for s in _ordered_common(ladder, variant) if _is_finite(variant[s])]
    if not seeds:
        raise ValueError("no seed has both ladder losses and a finite variant loss")
    per_seed_pts = [
        [(float(s), float(v)) for s, v in ladder[seed].items() if _is_finite(v)] for seed in seeds
    ]
    var_loss = np.array([float(variant[s]) for s in seeds])

    def _log_k(idx: Sequence[int]) -> float:
        pts = [p for i in idx for p in per_seed_pts[i]]
        fit = fit_ladder([p[0] for p in pts], [p[1] for p in pts])
        return fit.log_invert(float(var_loss[list(idx)].mean())) - math.log(main_budget)

    all_pts = [p for pts in per_seed_pts for p in pts]
    fit = fit_ladder([p[0] for p in all_pts], [p[1] for p in all_pts])
    log_s_star = fit.log_invert(float(var_loss.mean()))
    budgets = sorted({p[0] for p in all_pts})
    log_k = log_s_star - math.log(main_budget)
    multiplier = math.exp(log_k) if log_k < 709.0 else math.inf

    ci_low = ci_high = math.nan
    n_used = 0
    n_skipped = 0
    if len(seeds) >= 2 and n_boot > 0:
        rng = np.random.default_rng(rng_seed)
        draws = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
        boot: list[float] = []
        for idx in draws:
            try:
                boot.append(_log_k(idx.tolist()))
            except ValueError:
                n_skipped += 1
        n_used = len(boot)
        if boot:
            alpha = 1.0 - level
            lo, hi = np.quantile(np.array(boot), [alpha / 2, 1 - alpha / 2])
            ci_low, ci_high = float(np.exp(lo)), float(np.exp(hi))

    return {
        "multiplier": multiplier,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "n_seeds": len(seeds),
        "budgets": budgets,
        "extrapolated": not (math.log(budgets[0]) <= log_s_star <= math.log(budgets[-1])),
        "a": fit.a,
        "b": fit.b,
        "n_boot_used": n_used,
        "n_boot_skipped": n_skipped,
    }
