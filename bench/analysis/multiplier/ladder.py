"""The budget ladder: "the baseline would need k x the steps to match the variant".

Opt-in: it costs extra baseline runs. The baseline is also trained with its own full schedule at
a few budgets around the main one (by default ½×, 1×, 2×, 4×). Its final losses ``L(S)`` are
fitted and inverted at the variant's final loss: "the baseline would need ``k``× the steps to
match". The fit is a saturating power law ``E + B·S^(−β)`` on 4 or more budgets and log-linear
``a + b·ln S`` on 2 or 3 (:func:`fit_ladder`); :func:`ladder_multiplier` gives the interval.
Every ladder checks itself (:func:`ladder_control`): its 2× rung, left out of the fit, must read
back as 2×, or its multipliers are not findings.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from bench.analysis.multiplier.crossing import is_finite, seeds_in_common

LOG_LINEAR = "log-linear"
POWER_LAW = "power law"
FORMS = (LOG_LINEAR, POWER_LAW)
POWER_LAW_MIN_BUDGETS = 4  # fewer distinct budgets: the log-linear form
_PARAMS = {LOG_LINEAR: 2, POWER_LAW: 3}  # a fit in this form needs as many distinct budgets
CONTROL_FACTOR = 2.0  # the rung every ladder reads back as its own positive control
BETA_GRID = np.geomspace(0.02, 2.0, 200)  # the power law's exponents searched, then refined
_FINE_POINTS = 201  # the refined grid around the best exponent of BETA_GRID
_LOG_MAX = 709.0  # math.exp overflows above this
_NOT_FALLING = "loss does not fall with budget (fitted slope >= 0), cannot invert the ladder"


def _exp(z: float) -> float:
    """exp(z), inf where that overflows: a far extrapolation stays a number, not an error."""
    return math.exp(z) if z < _LOG_MAX else math.inf


def _scalar_or_array(out: Any) -> Any:
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class LadderFit:
    """Final loss against budget S, fitted through a ladder and inverted in closed form: a
    :class:`LogLinearFit` or a :class:`PowerLawFit`, ``form`` says which."""

    form: ClassVar[str] = ""

    def predict(self, budget: Any) -> Any:
        """L at budget S (scalar or array)."""
        raise NotImplementedError

    def log_invert(self, loss: float) -> float:
        """ln(S) at which the fit reaches ``loss``: finite even when S itself would overflow,
        inf when no budget reaches it."""
        raise NotImplementedError

    def invert(self, loss: float) -> float:
        """Budget S at which the fit reaches ``loss`` (inf if that overflows or is never)."""
        return _exp(self.log_invert(loss))

    def params(self) -> dict[str, float]:
        """The fitted parameters by name: ``a, b`` or ``E, B, beta``."""
        return asdict(self)


@dataclass(frozen=True)
class LogLinearFit(LadderFit):
    """``L(S) = a + b·ln S`` with ``b < 0``: the form of a ladder with 2 or 3 budgets."""

    a: float
    b: float
    form: ClassVar[str] = LOG_LINEAR

    def predict(self, budget: Any) -> Any:
        return _scalar_or_array(self.a + self.b * np.log(np.asarray(budget, dtype=float)))

    def log_invert(self, loss: float) -> float:
        return (float(loss) - self.a) / self.b


@dataclass(frozen=True)
class PowerLawFit(LadderFit):
    """``L(S) = E + B·S^(−β)`` with ``B > 0``: the loss saturates at ``E`` (any real)."""

    E: float
    B: float
    beta: float
    form: ClassVar[str] = POWER_LAW

    def predict(self, budget: Any) -> Any:
        s = np.asarray(budget, dtype=float)
        return _scalar_or_array(self.E + self.B * s**-self.beta)

    def log_invert(self, loss: float) -> float:
        """``ln S = (ln B − ln(L − E)) / β``; inf for ``L <= E``: no budget gets below the
        asymptote."""
        gap = float(loss) - self.E
        return (math.log(self.B) - math.log(gap)) / self.beta if gap > 0 else math.inf


def _line_fits(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordinary least squares of ``y ≈ c + m·x`` for every row of ``x`` at once: (intercepts,
    slopes, squared errors). The closed form on centred sums, because the power law's grid
    solves hundreds of these per fit and the bootstrap refits thousands of times, where
    np.linalg.lstsq would take one system per call."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    slope = xc @ yc / (xc * xc).sum(axis=1)
    resid = yc - slope[:, None] * xc
    return y.mean() - slope * x.mean(axis=1), slope, (resid * resid).sum(axis=1)


def _best_beta(z: np.ndarray, y: np.ndarray, betas: np.ndarray) -> tuple[float, float, float]:
    """(β, E, B0) of least squared error among ``betas``, only those with ``B0 > 0``, for
    ``y ≈ E + B0·exp(−β z)``: given β the law is linear in E and B0, so each is exact OLS."""
    e, b0, sse = _line_fits(np.exp(-np.outer(betas, z)), y)
    sse = np.where(b0 > 0, sse, np.inf)
    j = int(np.argmin(sse))
    if not np.isfinite(sse[j]):
        raise ValueError(_NOT_FALLING)
    return float(betas[j]), float(e[j]), float(b0[j])


def _fit_power_law(s: np.ndarray, y: np.ndarray) -> PowerLawFit:
    """β on :data:`BETA_GRID`, refined on a finer grid between its neighbours; E and B by
    least squares at each β. A grid, not curve_fit from a start: the profile over β can be
    flat or have several dips on a few noisy budgets, and a grid finds the least one every
    time. Budgets are centred (``z = ln(S / S0)``, S0 their geometric mean) so ``S^−β`` stays
    near 1 at any budget scale; ``B = B0·S0^β`` brings it back to S."""
    log_s0 = float(np.log(s).mean())
    z = np.log(s) - log_s0
    beta = _best_beta(z, y, BETA_GRID)[0]
    step = BETA_GRID[1] / BETA_GRID[0]
    lo, hi = max(beta / step, BETA_GRID[0]), min(beta * step, BETA_GRID[-1])
    beta, e, b0 = _best_beta(z, y, np.geomspace(lo, hi, _FINE_POINTS))
    return PowerLawFit(E=e, B=b0 * math.exp(beta * log_s0), beta=beta)


def _ladder_points(budgets: Sequence[float], losses: Sequence[float]):
    """(budgets, losses) as arrays, non-finite losses dropped; one-line errors for bad input."""
    if len(budgets) != len(losses):
        raise ValueError(f"budgets and losses differ in length ({len(budgets)} vs {len(losses)})")
    pts = [(float(s), float(v)) for s, v in zip(budgets, losses, strict=True) if is_finite(v)]
    if any(not (math.isfinite(s) and s > 0) for s, _ in pts):
        raise ValueError("ladder budgets must be positive and finite")
    s = np.array([p[0] for p in pts], dtype=float)
    return s, np.array([p[1] for p in pts], dtype=float)


def ladder_form(n_budgets: int) -> str:
    """The form a ladder of ``n_budgets`` distinct budgets is fitted with (see fit_ladder)."""
    return POWER_LAW if n_budgets >= POWER_LAW_MIN_BUDGETS else LOG_LINEAR


def fit_ladder(
    budgets: Sequence[float], losses: Sequence[float], form: str | None = None
) -> LadderFit:
    """Least-squares fit of the final loss against budget over all (budget, loss) points.

    Several seeds per budget are simply several points. The form (``form=None``: by the
    number of distinct budgets): with 4 or more, ``L = E + B·S^(−β)``
    (:class:`PowerLawFit`), the saturating law that losses follow over a wide range of
    budgets; three parameters need a fourth budget before anything is left to check them.
    With 2 or 3 budgets, ``L = a + b·ln S`` (:class:`LogLinearFit`): over the ~4× range of
    such a ladder the final loss is close to linear in log-budget, and two parameters are all
    it supports. Both invert in closed form. Far outside the ladder's range either is an
    extrapolation and should be read as such.

    ``form`` forces a form; the power law then needs only 3 budgets, its parameter count (an
    exact fit through them, as :func:`ladder_control` uses it on a 4-rung ladder with one rung
    left out). Points with a non-finite loss are dropped. Raises ValueError with fewer than 2
    distinct budgets (3 for ``form="power law"``), a non-positive budget, an unknown form, or a
    fit whose loss does not fall with the budget (``b >= 0``; no β with ``B > 0``): such a
    ladder cannot be inverted.
    """
    s, y = _ladder_points(budgets, losses)
    n = len(np.unique(s))
    if n < 2:
        raise ValueError("ladder needs losses at 2 or more distinct budgets to fit a slope")
    form = form or ladder_form(n)
    if form not in FORMS:
        raise ValueError(f"ladder form must be one of {FORMS}, got {form!r}")
    if n < _PARAMS[form]:
        raise ValueError(f"a {form} ladder fit needs {_PARAMS[form]} or more budgets, got {n}")
    if form == POWER_LAW:
        return _fit_power_law(s, y)
    (a,), (b,), _ = _line_fits(np.log(s)[None, :], y)
    if not b < 0:
        raise ValueError(f"ladder slope b={b:.4g}: {_NOT_FALLING}")
    return LogLinearFit(a=float(a), b=float(b))


def _fit_seeds(per_seed_pts: Sequence[list], idx: Iterable[int], form: str | None) -> LadderFit:
    """fit_ladder on the points of the seeds ``idx`` (a seed drawn twice counts twice)."""
    pts = [p for i in idx for p in per_seed_pts[i]]
    return fit_ladder([p[0] for p in pts], [p[1] for p in pts], form)


def _bootstrap_k(
    per_seed_pts: Sequence[list],
    var_loss: np.ndarray,
    form: str,
    main_budget: float,
    n_boot: int,
    rng_seed: int,
    level: float,
) -> tuple[float, float, int, int]:
    """Percentile interval of k over seeds drawn with replacement (see
    :func:`ladder_multiplier`): (low, high, resamples used, resamples whose fit failed)."""
    n = len(per_seed_pts)
    if n < 2 or n_boot <= 0:
        return math.nan, math.nan, 0, 0
    draws = np.random.default_rng(rng_seed).integers(0, n, size=(n_boot, n))
    boot: list[float] = []
    for idx in draws:
        try:
            fit = _fit_seeds(per_seed_pts, idx, form)
        except ValueError:
            continue
        boot.append(fit.log_invert(float(var_loss[idx].mean())))
    if not boot:
        return math.nan, math.nan, 0, n_boot
    # an unreachable loss (inf) as a huge finite ln S, so quantiles never interpolate inf - inf
    log_k = np.minimum(np.array(boot), 1e6) - math.log(main_budget)
    alpha = 1.0 - level
    lo, hi = np.quantile(log_k, [alpha / 2, 1 - alpha / 2])
    return _exp(float(lo)), _exp(float(hi)), len(boot), n_boot - len(boot)


def _usable_seeds(
    ladder: Mapping[Hashable, Mapping[float, float]], variant: Mapping[Hashable, float]
) -> tuple[list[list], np.ndarray]:
    """(per seed: its finite (budget, loss) ladder points, the variant's losses) over the seeds
    with a ladder and a finite variant loss; ValueError when there are none."""
    seeds = [s for s in seeds_in_common(ladder, variant) if is_finite(variant[s])]
    if not seeds:
        raise ValueError("no seed has both ladder losses and a finite variant loss")
    per_seed_pts = [
        [(float(s), float(v)) for s, v in ladder[seed].items() if is_finite(v)] for seed in seeds
    ]
    return per_seed_pts, np.array([float(variant[s]) for s in seeds])


def ladder_multiplier(
    ladder: Mapping[Hashable, Mapping[float, float]],
    variant: Mapping[Hashable, float],
    main_budget: float,
    n_boot: int = 2000,
    rng_seed: int = 0,
    level: float = 0.95,
    form: str | None = None,
) -> dict[str, Any]:
    """ "The baseline would need ``k``× the main budget to match the variant's final loss".

    ``ladder`` maps seed -> {budget: baseline final loss}; ``variant`` maps seed -> the
    variant's final loss at ``main_budget``. Only seeds with a finite variant loss and a ladder
    are used. Point estimate: fit :func:`fit_ladder` on all those seeds' ladder points (in ``form``,
    by default chosen by the number of distinct budgets), invert at their mean variant loss:
    ``k = S* / main_budget``. A loss at or below a power law's asymptote ``E`` is reached at no
    budget: ``k`` is inf and ``unreachable`` is True.

    Interval: percentile bootstrap over seeds. Each resample draws the seeds with replacement,
    refits the ladder in the point estimate's form on the drawn seeds' points (a seed drawn
    twice counts twice) and inverts at the drawn seeds' mean variant loss, so a seed's shared
    offset moves the fit and the target together, as in the data. Resamples whose fit fails
    (too few budgets, loss not falling) are skipped and counted in ``n_boot_skipped``.
    Quantiles are taken on ``ln k`` (the same order statistics; neighbours are interpolated
    geometrically), which keeps far extrapolations finite. With few seeds the interval is coarse
    and tends to be too narrow: with 3 seeds there are only 10 distinct resamples (multisets of
    3 out of 3), so the "percentiles" are a handful of distinct values. Fewer than 2 seeds:
    point estimate only and a nan interval.

    Returns ``{"multiplier", "ci_low", "ci_high", "n_seeds", "budgets", "extrapolated",
    "unreachable", "form", <the fit's parameters: "a", "b" or "E", "B", "beta">, "n_boot_used",
    "n_boot_skipped"}``; ``extrapolated`` is True when ``S*`` lies outside ``[min budget, max
    budget]``. Raises ValueError if the point-estimate fit fails (see :func:`fit_ladder`), there
    are no usable seeds, or ``main_budget`` is not positive.
    """
    if not (is_finite(main_budget) and main_budget > 0):
        raise ValueError(f"main_budget must be positive, got {main_budget!r}")
    per_seed_pts, var_loss = _usable_seeds(ladder, variant)
    fit = _fit_seeds(per_seed_pts, range(len(var_loss)), form)
    log_s_star = fit.log_invert(float(var_loss.mean()))
    budgets = sorted({p[0] for pts in per_seed_pts for p in pts})
    lo, hi, used, skipped = _bootstrap_k(
        per_seed_pts, var_loss, fit.form, main_budget, n_boot, rng_seed, level
    )
    return {
        "multiplier": _exp(log_s_star - math.log(main_budget)),
        "ci_low": lo,
        "ci_high": hi,
        "n_seeds": len(var_loss),
        "budgets": budgets,
        "extrapolated": not (math.log(budgets[0]) <= log_s_star <= math.log(budgets[-1])),
        "unreachable": log_s_star == math.inf,
        "form": fit.form,
        **fit.params(),
        "n_boot_used": used,
        "n_boot_skipped": skipped,
    }


def _split_rung(ladder: Mapping[Hashable, Mapping[float, float]], budget: float):
    """(seed -> finite loss at ``budget``, seed -> the other rungs): one rung held out."""

    def at(b: float) -> bool:
        return math.isclose(float(b), budget, rel_tol=1e-9)

    held = {
        seed: float(v) for seed, rungs in ladder.items() for b, v in rungs.items()
        if at(b) and is_finite(v)
    }  # fmt: skip
    rest = {seed: {b: v for b, v in rungs.items() if not at(b)} for seed, rungs in ladder.items()}
    return held, rest


def ladder_control(
    ladder: Mapping[Hashable, Mapping[float, float]],
    main_budget: float,
    factor: float = CONTROL_FACTOR,
    n_boot: int = 2000,
    rng_seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """The ladder's positive control: does it read its own ``factor``× rung as ``factor``?

    The rung at ``factor × main_budget`` is left out, the other rungs are fitted in the form
    the whole ladder is fitted with (:func:`ladder_form`) and inverted at that rung's own
    per-seed baseline losses by :func:`ladder_multiplier`, with the same bootstrap over seeds.
    The form is the whole ladder's, not the one the rungs left would choose, because the
    control checks the fit the multipliers come from: on a ½×, 1×, 2×, 4× ladder that is the
    power law, fitted exactly through the three rungs left and read at the fourth (the
    log-linear form through ½×, 1×, 4× bends away from a curved loss by more than the noise).
    A ladder whose fit can be trusted reads ``factor``; the control passes when ``factor``
    lies inside the interval. A ladder that misreads a budget it was trained at cannot be
    trusted to read a variant. It needs nothing but the ladder's losses: it trains nothing.

    Returns ``{"status": "passed" | "failed" | "not run", "reason", "factor", "budget"}`` plus,
    where the inversion ran, :func:`ladder_multiplier`'s keys. "not run" (with the reason): no
    ``factor``× rung, too few budgets without it for the form (2 log-linear, 3 power law), a
    leave-out fit that fails, or one seed (a reading but no interval to judge it by).
    """
    if not (is_finite(main_budget) and main_budget > 0):
        raise ValueError(f"main_budget must be positive, got {main_budget!r}")
    budget = factor * float(main_budget)
    out: dict[str, Any] = {"status": "not run", "reason": "", "factor": factor, "budget": budget}
    held, rest = _split_rung(ladder, budget)
    left = {float(b) for rungs in rest.values() for b, v in rungs.items() if is_finite(v)}
    form = ladder_form(len(left) + 1)  # the whole ladder's: the rungs left and the one held
    if not held:
        return {**out, "reason": f"the ladder has no {factor:g}× rung"}
    if len(left) < _PARAMS[form]:
        need = f"{_PARAMS[form]} budgets for its {form} fit"
        return {**out, "reason": f"without the {factor:g}× rung fewer than {need} are left"}
    try:
        out.update(ladder_multiplier(rest, held, main_budget, n_boot, rng_seed, level, form))
    except ValueError as err:
        return {**out, "reason": f"the fit without the {factor:g}× rung failed: {err}"}
    lo, hi = out["ci_low"], out["ci_high"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        out["reason"] = "one seed: no interval to judge it by"
    elif lo <= factor <= hi:
        out["status"] = "passed"
    else:
        out.update(status="failed", reason=f"{factor:g} lies outside its interval")
    return out
