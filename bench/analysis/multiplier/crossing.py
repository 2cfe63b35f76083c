"""The crossing multiplier: how much sooner (or later) a variant's validation curve reaches
the loss both runs end at, per seed, summarised over seeds.

Cheap, available for every comparison. For one seed, take the two validation curves and the
*worse* of the two final losses, ``L = max(L_base, L_variant)``. Both curves reach ``L`` (the
worse one at the latest at its own end), so the first step (or second) at which each reaches it
is well defined, and ``m = x_base / x_variant`` says how much faster the variant gets there:
``m > 1`` means the variant reaches that loss in ``1/m`` of the baseline's steps (it is "worth"
``m``× the steps), ``m < 1`` means it is slower. Crossings are linearly interpolated between the
last evaluation above the level and the first at or below it. Per-seed multipliers are
summarised by their geometric mean with a t interval on the log scale, because multipliers are
ratios (``2×`` and ``0.5×`` should average to ``1×``).

Caveats: this compares the curves *within one run's learning-rate schedule*; the baseline at an
intermediate step has not annealed, so the crossing multiplier is a statement about the curves
as trained, not about what a baseline with a longer schedule would reach. That is what the budget
ladder (`bench.analysis.multiplier.ladder`) answers. With noisy curves the "first" crossing can be
an early noise dip.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

_AXES = ("step", "time_s")


def is_finite(v: Any) -> bool:
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
        if is_finite(x) and is_finite(loss):
            out_x.append(float(x))
            out_l.append(float(loss))
    return out_x, out_l


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
        if is_finite(v):
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
    kept = [float(v) for v in values if is_finite(v) and float(v) > 0]
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


def seeds_in_common(a: Mapping, b: Mapping) -> list:
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
    seeds = seeds_in_common(base_curves, var_curves)
    per_seed = {s: crossing(base_curves[s], var_curves[s], axis)["multiplier"] for s in seeds}
    summary = geometric_summary(per_seed.values(), level=level)
    return {**summary, "per_seed": per_seed, "n_pairs": len(seeds), "axis": axis}
