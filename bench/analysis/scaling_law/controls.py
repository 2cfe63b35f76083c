"""The scaling study's result: the point reading and its bootstrap over seeds, the tables of
multipliers, trends and left-out sizes, the controls that say whether to believe them, and one
verdict per arm and kind of multiplier."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.analysis.scaling_law.compute import FlopsCurve
from bench.analysis.scaling_law.readings import (
    KINDS,
    Data,
    Reading,
    interval,
    prepare,
    read,
    resample,
)
from bench.analysis.scaling_law.surface import Surface

# How far past the baseline's grid a multiplier may be read and still get a verdict: within a
# factor 2 (one step of the budgets) of the sizes or token budgets trained
FAR = 2.0


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
    data = prepare(frame)
    point = read(data, data.means)
    rng = np.random.default_rng(rng_seed)
    boots = []
    for _ in range(n_boot):
        try:
            boots.append(read(data, resample(data, rng)))
        except ValueError:
            continue  # a resample the surface cannot be fitted to: skipped, counted below
    cells = _cells_table(data, point, boots, level)
    trends = _trends_table(data, point, boots, level)
    loso = _loso_table(data, point, boots, level)
    checks = [*(_data_control(cells, arm, k) for arm, k in controls.items()), _loso_control(loso)]
    names = ("e", "a", "alpha", "b", "beta")
    result = ScalingResult(
        surface=point.surface,
        surface_ci={k: interval([getattr(b.surface, k) for b in boots], level) for k in names},
        cells=cells, trends=trends, loso=loso, controls=checks, verdicts={},
        n_boot_used=len(boots), sizes=data.sizes, size_n=data.size_n, n_seeds=data.n_seeds,
        flops=data.flops,
    )  # fmt: skip
    failed = [c.name for c in checks if not c.passed]
    result.verdicts = {a: verdict(result, a, failed) for a in data.arms if a not in controls}
    return result


def _cells_table(data: Data, point: Reading, boots: list, level: float) -> pd.DataFrame:
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
            ci = [interval(v, lv) for v in values]
            out[f"{kind}_low{suffix}"], out[f"{kind}_high{suffix}"] = zip(*ci, strict=True)
    needed = (out["data_x"] * out["tokens"]).to_numpy()  # the baseline's tokens for that loss
    grid = [data.cell_tokens[data.cell_size == i] for i in idx]
    out["data_extrap"] = [not g.min() <= t <= g.max() for g, t in zip(grid, needed, strict=True)]
    out["data_far"] = [not g.min() / FAR <= t <= g.max() * FAR
                       for g, t in zip(grid, needed, strict=True)]  # fmt: skip
    out["n_opt"] = point.n_opt
    lo, hi = data.size_n.min(), data.size_n.max()
    out["compute_extrap"] = point.edge | (point.n_opt < lo) | (point.n_opt > hi)
    out["compute_far"] = point.edge | (point.n_opt < lo / FAR) | (point.n_opt > hi * FAR)
    out["size"] = pd.Categorical(out["size"], categories=data.sizes, ordered=True)
    return out


def _trends_table(data: Data, point: Reading, boots: list, level: float) -> pd.DataFrame:
    rows = []
    for arm in data.arms:
        for kind in KINDS:
            lo, hi = interval([b.slopes[(arm, kind)] for b in boots], level)
            rows.append({"arm": arm, "kind": kind, "slope": point.slopes[(arm, kind)],
                         "low": lo, "high": hi})  # fmt: skip
    return pd.DataFrame(rows, columns=["arm", "kind", "slope", "low", "high"])


def _family(level: float, sizes: int) -> float:
    """The level of each size's interval such that all sizes' hold together at `level`
    (Bonferroni): a control asked to pass at every one of k sizes at 95% each would fail a
    right method about 1 - 0.95^k of the time (19% at 4 sizes)."""
    return 1 - (1 - level) / max(sizes, 1)


def _loso_table(data: Data, point: Reading, boots: list, level: float) -> pd.DataFrame:
    """Per size left out: observed - predicted, with its interval at the family level."""
    rows = []
    for s, size in enumerate(data.sizes):
        lo, hi = interval([b.loso[s] for b in boots], _family(level, len(data.sizes)))
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
    read when a control failed or could not be evaluated, nor from a multiplier read more
    than FAR x outside the baseline's grid at any size (a compute-optimal model that size
    beyond the sizes trained, or the tokens beyond the budgets): there the surface's form
    alone decides the reading. A reading just past the grid ('extrap.') is still read."""
    if failed:
        return {kind: f"not read: control failed ({'; '.join(failed)})" for kind in KINDS}
    rows = result.cells[result.cells["arm"] == arm]
    trends = result.trends.set_index(["arm", "kind"])
    out = {}
    for kind in KINDS:
        far = [str(s) for s, x in zip(rows["size"], rows[f"{kind}_far"], strict=True) if x]
        if far:
            out[kind] = f"not read: far outside the baseline's grid at {', '.join(far)}"
        elif (rows[f"{kind}_low"] > 1).all() and trends.loc[(arm, kind), "high"] >= 0:
            out[kind] = "holds across sizes"
        elif (rows[f"{kind}_high"] < 1).all():
            out[kind] = "worse at every size"
        else:
            out[kind] = "not resolved"
    return out
