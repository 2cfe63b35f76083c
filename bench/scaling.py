"""Data and compute multipliers across model sizes, read off a loss surface L(N, D) fitted to the
baseline (Chinchilla's approach 3), with the controls that say whether to believe them.

The baseline is trained on a grid of sizes (N = non-embedding parameters) x token budgets (D =
training tokens). Its final losses are fitted with

    L(N, D) = E + A·N^(−α) + B·D^(−β)

the robust way (Besiroglu et al. 2024, "Chinchilla scaling: a replication attempt", found
Chinchilla's own nonlinear fit unstable): (α, β) are searched on a grid, refined twice around
the best pair, and for each pair E, A, B solve a linear least-squares problem exactly, all
≥ 0 (non-negative least squares, as the best feasible solution over the eight supports of
(E, A, B); E ≥ 0 because a loss is, and a free E runs off to large negative values with
exponents near 0 where the losses look log-linear); the pair of least squared error wins. One
run per (size, budget, seed) is one point; the fit uses the means per (size, budget) weighted
by their number of seeds, which is the same least-squares problem.

Every other arm is read off the surface at every size, from its mean final loss over seeds:

* **data multiplier**: the tokens the baseline of the same N (the baseline's at that size)
  needs to reach the arm's loss, over the tokens the arm used;
* **compute multiplier**: the least compute C = F(N)·D anywhere on the surface that reaches the
  arm's loss (minimised over N: the compute-optimal allocation; F = training FLOPs per token,
  log-log interpolated between the baseline's sizes), over the compute the arm used.

Trends: the slope of ln(multiplier) on ln(N) across sizes. Intervals: percentile bootstrap
over seeds, everything refitted on every resample. A seed's luck at a size is its runs' losses
there minus the means over seeds (every budget and arm: the same seed's runs move together),
scaled by √(n/(n−1)); a resample gives each size its number of seeds drawn with replacement
from the luck of every size's seeds. (Drawing a size's own seeds only, with the 2 or 3 seeds a
CPU study affords, gives 3 or 10 distinct resamples: on losses made from a known surface with
seed noise, the 2x control below then passed in only 15-70% of simulated 4-size studies; with
the luck pooled and the controls' level below, in 77-93%.)

Controls: (a) an arm that is the baseline trained on k x the tokens but charged 1 x must read
a data multiplier of k at every size; (b) leave one size out: fit on the other sizes, predict
the left-out size's losses; the mean of observed − predicted over its budgets must be 0 within
its interval, for every size in turn. Both read intervals at the level that holds for all sizes
together (Bonferroni: 98.75% each at 4 sizes for 95% in all), since 95% at each of 4 sizes
fails a right method 19% of the time. Verdicts are given only when every control passes.

Everything here reads a plain frame of COLUMNS rows; no torch, no record I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BASELINE = "baseline"
COLUMNS = ("arm", "size", "seed", "params", "tokens", "compute", "loss")
EXPONENTS = np.linspace(0.02, 3.0, 50)  # the coarse grid searched for α and for β
REFINE = 21  # points per exponent in each refinement, spanning ± one step of the grid before
N_SPAN = 100.0  # the compute-optimal N is searched within [smallest / N_SPAN, largest x N_SPAN]
KINDS = ("data", "compute")


@dataclass(frozen=True)
class Surface:
    """L(N, D) = e + a·N^(−alpha) + b·D^(−beta). `at_edge`: an exponent ended on the edge of the
    searched range (the least-squares optimum lies beyond it)."""

    e: float
    a: float
    alpha: float
    b: float
    beta: float
    at_edge: bool = False

    def predict(self, n, d):
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.e + self.a * n**-self.alpha + self.b * d**-self.beta

    def tokens_for(self, n, loss):
        """The tokens at which N parameters reach `loss` on the surface: inf where no number of
        tokens does (the loss is at or below that N's floor E + A·N^(−α)); nan without a D term."""
        floor = self.e + self.a * np.asarray(n, dtype=float) ** -self.alpha
        gap = np.asarray(loss, dtype=float) - floor
        if not self.b > 0:
            return np.full(np.shape(gap), np.nan)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            d = (gap / self.b) ** (-1.0 / self.beta)
        return np.where(gap > 0, d, np.where(np.isnan(gap), np.nan, np.inf))


# --------------------------------------------------------------------------- the fit


@dataclass
class _Best:
    sse: float
    alpha: float
    beta: float
    a: float  # in the normalised units of _search (N / n0, D / d0)
    b: float
    e: float


def _supports(u, v, y, w) -> list:
    """Weighted least squares of y on a·u + b·v for every pair of rows of u and v, on each
    support of (a, b): {a, b}, {a}, {b}, {}; per support (sse, a, b) as (rows of u, rows of v)
    arrays, sse inf where a coefficient would be negative (or the pair is collinear)."""
    shape = (len(u), len(v))
    syy = float(w @ y**2)
    suu, svv, suy, svy = (u**2) @ w, (v**2) @ w, u @ (w * y), v @ (w * y)
    suv = (u * w) @ v.T
    det = np.outer(suu, svv) - suv**2
    with np.errstate(divide="ignore", invalid="ignore"):
        a2 = (svv[None, :] * suy[:, None] - suv * svy[None, :]) / det
        b2 = (suu[:, None] * svy[None, :] - suv * suy[:, None]) / det
        a1, b1 = suy / suu, svy / svv
    both = (det > 1e-12 * np.outer(suu, svv)) & (a2 >= 0) & (b2 >= 0)
    zero = np.zeros(shape)
    only_a = np.where((suu > 0) & (a1 >= 0), syy - a1 * suy, np.inf)[:, None]
    only_b = np.where((svv > 0) & (b1 >= 0), syy - b1 * svy, np.inf)[None, :]
    return [
        (np.where(both, syy - a2 * suy[:, None] - b2 * svy[None, :], np.inf), a2, b2),
        (np.broadcast_to(only_a, shape), np.broadcast_to(a1[:, None], shape), zero),
        (np.broadcast_to(only_b, shape), zero, np.broadcast_to(b1[None, :], shape)),
        (np.full(shape, syy), zero, zero),
    ]


def _search(x, z, y, w, alphas, betas) -> _Best:
    """The best pair of `alphas` x `betas`, with E, A, B ≥ 0 solved exactly for each by
    non-negative least squares: every support of (E, A, B) in closed form (with E: regression
    on the centred columns, E from the means; without: on the raw ones), infeasible solutions
    (a negative coefficient) dropped, the least squared error kept. x = ln(N/n0),
    z = ln(D/d0) per point, w the weights summing to 1."""
    u = np.exp(-np.outer(alphas, x))
    v = np.exp(-np.outer(betas, z))
    u_mean, v_mean, y_mean = u @ w, v @ w, float(w @ y)
    cands = []
    for sse, a, b in _supports(u - u_mean[:, None], v - v_mean[:, None], y - y_mean, w):
        with np.errstate(invalid="ignore"):
            e = y_mean - a * u_mean[:, None] - b * v_mean[None, :]
            cands.append((np.where(e >= 0, sse, np.inf), a, b, e))
    cands += [(sse, a, b, np.zeros_like(sse)) for sse, a, b in _supports(u, v, y, w)]
    sse = np.stack([c[0] for c in cands])
    k, i, j = np.unravel_index(np.argmin(sse), sse.shape)
    a, b, e = (float(cands[k][m][i, j]) for m in (1, 2, 3))
    return _Best(float(sse[k, i, j]), float(alphas[i]), float(betas[j]), a, b, e)


def _around(value: float, step: float) -> np.ndarray:
    return np.linspace(max(value - step, 1e-3), value + step, REFINE)


def fit_surface(params, tokens, losses, weights=None) -> Surface:
    """Least-squares fit of L(N, D) over the points (one per run, or per-cell means weighted by
    their runs). Raises ValueError with fewer than 3 sizes or 3 budgets (α and β each need
    three points beside their coefficient and E)."""
    n, d, y = (np.asarray(v, dtype=float) for v in (params, tokens, losses))
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    keep = np.isfinite(n) & np.isfinite(d) & np.isfinite(y) & (n > 0) & (d > 0) & (w > 0)
    n, d, y, w = n[keep], d[keep], y[keep], w[keep] / w[keep].sum()
    if len(np.unique(n)) < 3 or len(np.unique(d)) < 3:
        raise ValueError("the L(N, D) fit needs losses at 3 or more sizes and 3 or more budgets")
    n0, d0 = math.exp(w @ np.log(n)), math.exp(w @ np.log(d))  # units that keep it conditioned
    x, z = np.log(n / n0), np.log(d / d0)
    best = _search(x, z, y, w, EXPONENTS, EXPONENTS)
    edge = {best.alpha, best.beta} & {EXPONENTS[0], EXPONENTS[-1]}
    step = EXPONENTS[1] - EXPONENTS[0]
    for _ in range(2):
        best = _search(x, z, y, w, _around(best.alpha, step), _around(best.beta, step))
        step /= (REFINE - 1) / 2
    return Surface(
        e=best.e, a=float(best.a * n0**best.alpha), alpha=best.alpha,
        b=float(best.b * d0**best.beta), beta=best.beta, at_edge=bool(edge),
    )  # fmt: skip


# --------------------------------------------------------------------------- compute


@dataclass(frozen=True, eq=False)
class FlopsCurve:
    """Training FLOPs per token as a function of N, through the baseline's sizes: piecewise
    linear in ln F against ln N, the end segments extended past them (one size: F ∝ N). The
    compute-optimal search needs F between and beyond the sizes that were trained."""

    ln_n: np.ndarray
    ln_f: np.ndarray

    @classmethod
    def through(cls, params, flops) -> FlopsCurve:
        ln_n, idx = np.unique(np.log(np.asarray(params, dtype=float)), return_index=True)
        return cls(ln_n, np.log(np.asarray(flops, dtype=float))[idx])

    def __call__(self, n):
        ln = np.log(np.asarray(n, dtype=float))
        xs, ys = self.ln_n, self.ln_f
        if len(xs) == 1:
            return np.exp(ys[0] + ln - xs[0])
        lo = ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (ln - xs[0])
        hi = ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (ln - xs[-1])
        return np.exp(np.where(ln < xs[0], lo, np.where(ln > xs[-1], hi, np.interp(ln, xs, ys))))


def _n_grid(n_range: tuple[float, float], points: int = 1601) -> np.ndarray:
    lo, hi = n_range
    return np.linspace(math.log(lo / N_SPAN), math.log(hi * N_SPAN), points)


def _parabola_min(ln_y: np.ndarray, i: np.ndarray, step: float):
    """Refine each row's grid minimum at index i by the parabola through it and its two
    neighbours: (offset in grid units x step, refined value). Rows at an edge stay put."""
    rows = np.arange(len(i))
    inner = (i > 0) & (i < ln_y.shape[1] - 1)
    j = np.clip(i, 1, ln_y.shape[1] - 2)
    y0, y1, y2 = ln_y[rows, j - 1], ln_y[rows, j], ln_y[rows, j + 1]
    curv = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = inner & np.isfinite(curv) & (curv > 0)
        off = np.where(ok, 0.5 * (y0 - y2) / curv, 0.0)
        val = np.where(ok, y1 - 0.125 * (y0 - y2) ** 2 / curv, ln_y[rows, i])
    return off * step, val


def least_compute(surface: Surface, flops: FlopsCurve, losses, n_range: tuple[float, float]):
    """For each target loss, the least training compute F(N)·D on the surface that reaches it
    and the N that does: minimised over N on a log grid spanning the sizes' range widened N_SPAN
    times each way, refined by a parabola. Returns (compute, n_opt, at_edge): inf compute where
    no N reaches the loss; at_edge where the minimum sits on the grid's edge."""
    ln_n = _n_grid(n_range)
    n = np.exp(ln_n)
    d = surface.tokens_for(n[None, :], np.atleast_1d(np.asarray(losses, dtype=float))[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_c = np.log(flops(n))[None, :] + np.log(d)
    ln_c = np.where(np.isfinite(ln_c), ln_c, np.inf)
    i = np.argmin(ln_c, axis=1)
    off, best = _parabola_min(ln_c, i, ln_n[1] - ln_n[0])
    edge = (i == 0) | (i == len(ln_n) - 1)
    return np.exp(best), np.exp(ln_n[i] + off), edge


def optimal_loss(surface: Surface, flops: FlopsCurve, compute, n_range: tuple[float, float]):
    """The least loss the surface reaches with each training compute C, min over N of
    L(N, C / F(N)): the compute-optimal frontier (the figure's iso-multiplier lines)."""
    n = np.exp(_n_grid(n_range))
    c = np.atleast_1d(np.asarray(compute, dtype=float))[:, None]
    return np.min(surface.predict(n[None, :], c / flops(n)[None, :]), axis=1)


# --------------------------------------------------------------------------- the readings


@dataclass(eq=False)
class _Data:
    """The frame reduced to cells (the baseline's (size, budget) cells, then the other arms'
    (arm, size) cells), their means over seeds, and each seed's luck for resampling."""

    sizes: list  # size labels, the baseline's smallest N first
    arms: list  # the arms other than the baseline, in the frame's order
    size_n: np.ndarray  # the baseline's N per size
    n_seeds: np.ndarray  # seeds per size
    cell_size: np.ndarray  # per baseline cell: size index
    cell_tokens: np.ndarray  # per baseline cell: tokens
    cell_runs: np.ndarray  # per baseline cell: runs (the fit's weights)
    arm_cells: pd.DataFrame  # per (arm, size) cell: arm, size, size_idx, tokens, compute, n_seeds
    means: np.ndarray  # per cell (baseline cells first): mean final loss over seeds
    slots: np.ndarray  # (sizes, slots): each size's cell in a slot (budget rank or arm), or -1
    luck: np.ndarray  # (seeds at all sizes, slots): a seed's losses minus its size's means
    flops: FlopsCurve


def _prepare(frame: pd.DataFrame) -> _Data:
    """Cells and seed luck from the rows, once: every resample then only shifts cell means.
    Sizes are ordered by the baseline's N; a size without baseline runs cannot be read."""
    frame = frame[np.isfinite(frame["loss"].to_numpy(float))]
    base = frame[frame["arm"] == BASELINE]
    if base.empty:
        raise ValueError("no finished baseline runs to fit the surface to")
    per = base.assign(fpt=base["compute"] / base["tokens"]).groupby("size", sort=False)
    per = per[["params", "fpt"]].mean().sort_values("params")
    sizes = list(per.index)
    frame = frame[frame["size"].isin(sizes)].reset_index(drop=True)  # a size needs its baseline
    frame["size_idx"] = frame["size"].map({s: i for i, s in enumerate(sizes)})
    is_base = (frame["arm"] == BASELINE).to_numpy()
    # a slot is what a cell is at its size: the baseline's k-th budget, or an arm
    rank = frame[is_base].groupby("size")["tokens"].rank(method="dense").astype(int)
    frame["slot"] = frame["arm"].where(~is_base, "budget " + rank.reindex(frame.index).astype(str))
    frame["cell"] = -1
    frame.loc[is_base, "cell"] = frame[is_base].groupby(["size_idx", "tokens"]).ngroup()
    n_base = int(frame["cell"].max()) + 1
    arms = list(dict.fromkeys(frame.loc[~is_base, "arm"]))  # in the frame's order, then by size
    key = frame["arm"].map({a: i for i, a in enumerate(arms)}) * len(sizes) + frame["size_idx"]
    frame.loc[~is_base, "cell"] = n_base + key[~is_base].rank(method="dense").astype(int) - 1
    cells = frame.groupby("cell").agg(
        arm=("arm", "first"), size=("size", "first"), size_idx=("size_idx", "first"),
        tokens=("tokens", "mean"), compute=("compute", "mean"), n_seeds=("seed", "nunique"),
        loss=("loss", "mean"), slot=("slot", "first"),
    )  # fmt: skip
    slots, luck = _seed_luck(frame, cells, len(sizes))
    return _Data(
        sizes=sizes, arms=arms,
        size_n=per["params"].to_numpy(float),
        n_seeds=frame.groupby("size_idx")["seed"].nunique().to_numpy(int),
        cell_size=cells["size_idx"].to_numpy(int)[:n_base],
        cell_tokens=cells["tokens"].to_numpy(float)[:n_base],
        cell_runs=cells["n_seeds"].to_numpy(float)[:n_base],
        arm_cells=cells.iloc[n_base:].drop(columns=["loss", "slot"]).reset_index(drop=True),
        means=cells["loss"].to_numpy(float), slots=slots, luck=luck,
        flops=FlopsCurve.through(per["params"], per["fpt"]),
    )  # fmt: skip


def _seed_luck(frame: pd.DataFrame, cells: pd.DataFrame, n_sizes: int):
    """Each size's cells by slot, and every (size, seed)'s luck: its runs' losses minus their
    cells' means, by slot (nan where it has no run), scaled by √(n/(n−1)) for the n seeds at
    its size so that the luck's spread is unbiased (a size of one seed brings none)."""
    names = list(dict.fromkeys(cells["slot"]))
    slot_of = {name: i for i, name in enumerate(names)}
    slots = np.full((n_sizes, len(names)), -1)
    slots[cells["size_idx"].to_numpy(int), cells["slot"].map(slot_of).to_numpy(int)] = cells.index
    frame = frame.assign(dev=frame["loss"] - cells["loss"].to_numpy()[frame["cell"]])
    rows = []
    for _, g in frame.groupby("size_idx"):
        n = g["seed"].nunique()
        if n < 2:
            continue
        for _, run in g.groupby("seed"):
            vec = np.full(len(names), np.nan)
            vec[run["slot"].map(slot_of).to_numpy(int)] = run["dev"] * math.sqrt(n / (n - 1))
            rows.append(vec)
    return slots, np.array(rows).reshape(-1, len(names))


def _resample(data: _Data, rng: np.random.Generator) -> np.ndarray:
    """Cell means of one resample: at each size, its number of seeds drawn with replacement
    from every size's seed luck, each drawn seed bringing its luck on every slot together
    (the same seed's runs move together), added to the size's means. Pooling the sizes' seeds
    gives a resample many values even where a size has two seeds (its own two alone would give
    three, and intervals that cover far less than they claim)."""
    if not len(data.luck):
        raise ValueError("no size has two seeds to resample")
    means = data.means.copy()
    for s, n in enumerate(data.n_seeds):
        drawn = data.luck[rng.integers(len(data.luck), size=n)]
        count = np.isfinite(drawn).sum(axis=0)
        shift = np.where(count > 0, np.nansum(drawn, axis=0) / np.maximum(count, 1), 0.0)
        have = data.slots[s] >= 0
        means[data.slots[s][have]] += shift[have]
    return means


@dataclass
class _Reading:
    """One estimate (the point estimate, or one resample's)."""

    surface: Surface
    mult: dict  # kind -> multiplier per arm cell
    n_opt: np.ndarray  # per arm cell: the N of the least compute
    edge: np.ndarray  # per arm cell: that N on the search grid's edge
    loso: np.ndarray  # per size: mean observed - predicted, fitted without that size
    slopes: dict = field(default_factory=dict)  # (arm, kind) -> d ln k / d ln N


def _read(data: _Data, means: np.ndarray) -> _Reading:
    """Fit the surface to the baseline's cell means (weighted by their runs) and read every
    arm cell off it; `means` per cell: the point estimate's, or a resample's."""
    n_base = len(data.cell_size)
    loss, arm_loss = means[:n_base], means[n_base:]
    n = data.size_n[data.cell_size]
    surface = fit_surface(n, data.cell_tokens, loss, data.cell_runs)
    cells = data.arm_cells
    n_at = data.size_n[cells["size_idx"].to_numpy(int)]
    data_x = surface.tokens_for(n_at, arm_loss) / cells["tokens"].to_numpy()
    span = (data.size_n.min(), data.size_n.max())
    c_min, n_opt, edge = least_compute(surface, data.flops, arm_loss, span)
    comp_x = np.where(np.isnan(arm_loss), np.nan, c_min / cells["compute"].to_numpy())
    loso = _leave_one_out(data, n, loss)
    reading = _Reading(surface, {"data": data_x, "compute": comp_x}, n_opt, edge, loso)
    reading.slopes = _slopes(data, reading.mult)
    return reading


def _leave_one_out(data: _Data, n, loss) -> np.ndarray:
    """Per size: the surface fitted to the other sizes, the mean over this size's budgets of
    observed - predicted loss (nan where the others are too few to fit)."""
    out = np.full(len(data.sizes), np.nan)
    for s in range(len(data.sizes)):
        held, runs = data.cell_size == s, data.cell_runs
        try:
            sub = fit_surface(n[~held], data.cell_tokens[~held], loss[~held], runs[~held])
        except ValueError:
            continue
        resid = loss[held] - sub.predict(n[held], data.cell_tokens[held])
        resid = resid[np.isfinite(resid)]
        out[s] = resid.mean() if resid.size else np.nan
    return out


def _slopes(data: _Data, mult: dict) -> dict:
    """Slope of ln(multiplier) on ln(N) across sizes, per arm and kind, over the sizes where
    the multiplier is finite and positive (nan with fewer than two)."""
    out = {}
    ln_n = np.log(data.size_n[data.arm_cells["size_idx"].to_numpy(int)])
    for arm in data.arms:
        rows = (data.arm_cells["arm"] == arm).to_numpy()
        for kind in KINDS:
            m = mult[kind][rows]
            ok = np.isfinite(m) & (m > 0)
            x, y = ln_n[rows][ok], np.log(m[ok])
            out[(arm, kind)] = float(np.polyfit(x, y, 1)[0]) if len(set(x)) >= 2 else math.nan
    return out


def _interval(values, level: float) -> tuple[float, float]:
    """Percentile interval, nan dropped; no interpolation, so that an infinite end stays one."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    lo = np.quantile(v, (1 - level) / 2, method="lower")
    hi = np.quantile(v, (1 + level) / 2, method="higher")
    return float(lo), float(hi)


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class Control:
    name: str
    passed: bool | None  # None: could not be evaluated (`detail` says why)
    detail: str
    arm: str | None = None  # the control arm it reads, if any


@dataclass
class ScalingResult:
    surface: Surface
    surface_ci: dict  # "e", "a", "alpha", "b", "beta" -> (low, high)
    cells: pd.DataFrame  # per arm and size: loss, tokens, compute, both multipliers, intervals
    trends: pd.DataFrame  # arm, kind, slope, low, high
    loso: pd.DataFrame  # size, params, residual, low, high, passed
    controls: list[Control]
    verdicts: dict  # arm -> {kind: phrase}
    n_boot_used: int
    sizes: list
    size_n: np.ndarray  # the baseline's N per size
    n_seeds: np.ndarray  # seeds per size
    flops: FlopsCurve

    @property
    def controls_pass(self) -> bool:
        return all(c.passed for c in self.controls)


def compute_multipliers(
    frame: pd.DataFrame,
    controls: dict | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> ScalingResult:
    """Fit the baseline's surface, read every other arm at every size, bootstrap over seeds.
    `frame` has COLUMNS (rows with a non-finite loss, diverged runs, are dropped); `controls`
    maps a control arm to the data multiplier it must read (e.g. the baseline on 2x tokens,
    charged 1x: 2.0)."""
    controls = dict(controls or {})
    data = _prepare(frame)
    point = _read(data, data.means)
    rng = np.random.default_rng(rng_seed)
    boots = []
    for _ in range(n_boot):
        try:
            boots.append(_read(data, _resample(data, rng)))
        except ValueError:
            continue  # a resample the surface cannot be fitted to: skipped, counted below
    cells = _cells_table(data, point, boots, level)
    trends = _trends_table(data, point, boots, level)
    loso = _loso_table(data, point, boots, level)
    checks = [*(_data_control(cells, arm, k) for arm, k in controls.items()), _loso_control(loso)]
    names = ("e", "a", "alpha", "b", "beta")
    result = ScalingResult(
        surface=point.surface,
        surface_ci={k: _interval([getattr(b.surface, k) for b in boots], level) for k in names},
        cells=cells, trends=trends, loso=loso, controls=checks, verdicts={},
        n_boot_used=len(boots), sizes=data.sizes, size_n=data.size_n, n_seeds=data.n_seeds,
        flops=data.flops,
    )  # fmt: skip
    failed = [c.name for c in checks if not c.passed]
    result.verdicts = {a: verdict(result, a, failed) for a in data.arms if a not in controls}
    return result


def _cells_table(data: _Data, point: _Reading, boots: list, level: float) -> pd.DataFrame:
    """One row per (arm, size): what the arm spent and reached, and both multipliers with
    their intervals; 'extrap.' where the reading leaves the region the baseline covered."""
    idx = data.arm_cells["size_idx"].to_numpy(int)
    out = data.arm_cells.drop(columns="size_idx")
    out.insert(2, "params", data.size_n[idx])
    out.insert(5, "loss", data.means[len(data.cell_size) :])
    family = _family(level, len(data.sizes))
    for kind in KINDS:
        out[f"{kind}_x"] = point.mult[kind]
        values = [[b.mult[kind][i] for b in boots] for i in range(len(out))]
        for suffix, lv in (("", level), ("_all", family)):
            ci = [_interval(v, lv) for v in values]
            out[f"{kind}_low{suffix}"], out[f"{kind}_high{suffix}"] = zip(*ci, strict=True)
    needed = (out["data_x"] * out["tokens"]).to_numpy()  # the baseline's tokens for that loss
    grid = [data.cell_tokens[data.cell_size == i] for i in idx]
    out["data_extrap"] = [not g.min() <= t <= g.max() for g, t in zip(grid, needed, strict=True)]
    out["n_opt"] = point.n_opt
    lo, hi = data.size_n.min(), data.size_n.max()
    out["compute_extrap"] = point.edge | (point.n_opt < lo) | (point.n_opt > hi)
    out["size"] = pd.Categorical(out["size"], categories=data.sizes, ordered=True)
    return out


def _trends_table(data: _Data, point: _Reading, boots: list, level: float) -> pd.DataFrame:
    rows = []
    for arm in data.arms:
        for kind in KINDS:
            lo, hi = _interval([b.slopes[(arm, kind)] for b in boots], level)
            rows.append({"arm": arm, "kind": kind, "slope": point.slopes[(arm, kind)],
                         "low": lo, "high": hi})  # fmt: skip
    return pd.DataFrame(rows, columns=["arm", "kind", "slope", "low", "high"])


def _family(level: float, sizes: int) -> float:
    """The level of each size's interval such that all sizes' hold together at `level`
    (Bonferroni): a control asked to pass at every one of k sizes at 95% each would fail a
    right method about 1 - 0.95^k of the time (19% at 4 sizes)."""
    return 1 - (1 - level) / max(sizes, 1)


def _loso_table(data: _Data, point: _Reading, boots: list, level: float) -> pd.DataFrame:
    """Per size left out: observed - predicted, with its interval at the family level."""
    rows = []
    for s, size in enumerate(data.sizes):
        lo, hi = _interval([b.loso[s] for b in boots], _family(level, len(data.sizes)))
        ok = bool(lo <= 0 <= hi) if np.isfinite([lo, hi]).all() else None
        rows.append({"size": size, "params": data.size_n[s], "residual": point.loso[s],
                     "low": lo, "high": hi, "passed": ok})  # fmt: skip
    return pd.DataFrame(rows)


def _data_control(cells: pd.DataFrame, arm: str, factor: float) -> Control:
    """The arm must read a data multiplier of `factor` within its interval at every size (the
    intervals at the family level, so that all sizes together are read at the stated one)."""
    name = f"{arm} reads {factor:g}x data"
    rows = cells[cells["arm"] == arm]
    if rows.empty:
        return Control(name, None, "not run", arm)
    inside = (rows["data_low_all"] <= factor) & (factor <= rows["data_high_all"])
    missed = [str(s) for s, ok in zip(rows["size"], inside, strict=True) if not ok]
    detail = "at every size" if not missed else f"not at {', '.join(missed)}"
    return Control(name, not missed, detail, arm)


def _loso_control(loso: pd.DataFrame) -> Control:
    """Every size, left out of the fit, is predicted within its interval."""
    name = "each size left out is predicted"
    if loso["passed"].isna().any():
        return Control(name, None, "needs 4 or more sizes (the fit without one needs 3)")
    missed = [str(s) for s, ok in zip(loso["size"], loso["passed"], strict=True) if not ok]
    return Control(name, not missed, "at every size" if not missed else f"not {', '.join(missed)}")


def verdict(result: ScalingResult, arm: str, failed: list[str]) -> dict:
    """Per kind of multiplier, one phrase. A gain 'holds across sizes' when the multiplier's
    interval lies above 1 at every size and its trend's interval is not wholly below 0; 'worse
    at every size' when it lies below 1 at every size; otherwise 'not resolved'. Nothing is
    read when a control failed or could not be evaluated."""
    if failed:
        return {kind: f"not read: control failed ({'; '.join(failed)})" for kind in KINDS}
    rows = result.cells[result.cells["arm"] == arm]
    trends = result.trends.set_index(["arm", "kind"])
    out = {}
    for kind in KINDS:
        if (rows[f"{kind}_low"] > 1).all() and trends.loc[(arm, kind), "high"] >= 0:
            out[kind] = "holds across sizes"
        elif (rows[f"{kind}_high"] < 1).all():
            out[kind] = "worse at every size"
        else:
            out[kind] = "not resolved"
    return out
