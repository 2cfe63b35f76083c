"""One reading of every arm off the baseline's surface: the frame reduced to cells and seed luck
once (`prepare`), a resample's cell means (`resample`), and the surface fitted and read at
those means (`read`): data and compute multipliers, leave-one-size-out residuals, trends."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.analysis.fmt import BASELINE
from bench.analysis.scaling_law.compute import FlopsCurve, least_compute
from bench.analysis.scaling_law.surface import Surface, fit_surface

COLUMNS = ("arm", "size", "seed", "params", "tokens", "compute", "loss")
KINDS = ("data", "compute")


@dataclass(eq=False)
class Data:
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


def prepare(frame: pd.DataFrame) -> Data:
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
    return Data(
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


def resample(data: Data, rng: np.random.Generator) -> np.ndarray:
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
class Reading:
    """One estimate (the point estimate, or one resample's)."""

    surface: Surface
    mult: dict  # kind -> multiplier per arm cell
    n_opt: np.ndarray  # per arm cell: the N of the least compute
    edge: np.ndarray  # per arm cell: that N on the search grid's edge
    loso: np.ndarray  # per size: mean observed - predicted, fitted without that size
    slopes: dict = field(default_factory=dict)  # (arm, kind) -> d ln k / d ln N


def read(data: Data, means: np.ndarray) -> Reading:
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
    reading = Reading(surface, {"data": data_x, "compute": comp_x}, n_opt, edge, loso)
    reading.slopes = _slopes(data, reading.mult)
    return reading


def _leave_one_out(data: Data, n, loss) -> np.ndarray:
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


def _slopes(data: Data, mult: dict) -> dict:
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


def interval(values, level: float) -> tuple[float, float]:
    """Percentile interval, nan dropped; no interpolation, so that an infinite end stays one."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    lo = np.quantile(v, (1 - level) / 2, method="lower")
    hi = np.quantile(v, (1 + level) / 2, method="higher")
    return float(lo), float(hi)
