"""The comparison frame of one group of runs: one row per variant, differences to the baseline
with verdicts, compute multipliers, and the baseline's budget ladder.

The learning guard (:func:`learned`) comes before any verdict: a comparison whose baseline did
not learn is ``inconclusive``, a variant that did not learn while the baseline did is ``worse
(did not learn)``. Every variant row also carries the minimum detectable effect and the
compute multipliers of :mod:`bench.analysis.multiplier` (the crossing always; the budget ladder when
baseline-only groups of the same task, size, device and training config at other budgets are
present: they are folded into the comparison instead of getting tables of their own). A ladder
checks itself: its 2× rung, left out of the fit, is read back off the other rungs
(:func:`bench.analysis.multiplier.ladder_control`), the table prints what it reads, and where that
misses 2 the ladder's multipliers are marked '(control failed)' instead of standing as findings.

Diverged runs (status ``"diverged"``) are counted in ``n_diverged``, failed ones (``"failed"``:
the run raised, a fault of code or environment) in ``n_failed``; both are left out of every
mean, std and test (their metrics are NaN or meaningless) and named under the table
(``meta["left_out"]``). Which metrics are compared, and how
(paired by seed, Welch, untested), is declared once in :mod:`bench.analysis.columns`; the verdict
itself is about validation loss, paired by seed over the seeds both the variant and the baseline
finished (see :mod:`bench.analysis.stats`). Repeated runs of one variant and seed keep the latest.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.analysis import fmt, multiplier, stats
from bench.analysis.columns import PRIMARY, Column, shown
from bench.analysis.fmt import BASELINE, variant_order
from bench.analysis.frame import _dedupe_runs, group_meta, records_frame, split_groups
from bench.core.records import as_record

# The learning guard (see `learned`): a run learned when its val loss is at least 20% below
# the loss of a token-frequency table for the task and, on tasks with exact answers, it gets at
# least 5% of held-out problems exactly right.
LEARN_LOSS_FRAC = 0.8
LEARN_MIN_ACCURACY = 0.05
INCONCLUSIVE = "inconclusive: baseline did not learn"
DID_NOT_LEARN = "worse (did not learn)"
# The overfitting guard (see `overfit`): a run overfit when its val loss ended more than 1%
# above its lowest point of the last quarter of training (run to run, that rise is 0 to 0.1%
# on the default comparison's committed records).
OVERFIT_RISE = 0.01
# The metric of the verdict where a group's runs mix tokenisers: nats per token are not
# comparable across tokenisers, bits per byte of the same held-out text are.
BPB = "val_bpb"


def _metric_by_seed(runs: pd.DataFrame, metric: str) -> pd.Series:
    s = runs.set_index("seed")[metric]
    return s[np.isfinite(s.to_numpy(dtype=float))]


def _paired_metric(base: pd.DataFrame, var: pd.DataFrame, metric: str, lower: bool) -> dict:
    """Paired t on the seeds both sides finished; Welch if fewer than two seeds are shared."""
    b, v = _metric_by_seed(base, metric), _metric_by_seed(var, metric)
    common = [s for s in b.index if s in set(v.index)]
    if len(common) < 2 and len(b) >= 2 and len(v) >= 2:
        return stats.compare(b.to_numpy(), v.to_numpy(), paired=False, lower_is_better=lower)
    return stats.compare(b[common].to_numpy(), v[common].to_numpy(), lower_is_better=lower)


def _welch_metric(base: pd.DataFrame, var: pd.DataFrame, metric: str, lower: bool) -> dict:
    return stats.compare(
        base[metric].to_numpy(dtype=float),
        var[metric].to_numpy(dtype=float),
        paired=False,
        lower_is_better=lower,
        n_boot=0,
    )


def _pct(value: float, ref: float) -> float:
    if not (np.isfinite(value) and np.isfinite(ref)) or ref == 0:
        return math.nan
    return 100.0 * (value / ref - 1.0)


def _mean_std(runs: pd.DataFrame, metric: str) -> tuple[float, float]:
    x = runs[metric].to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def learned(runs: pd.DataFrame, has_acc: bool) -> bool | None:
    """The learning guard for one variant's finished runs: True when their mean val loss is at
    most LEARN_LOSS_FRAC x the task's frequency floor (`Task.frequency_loss`) and, on tasks
    with accuracy, their mean exact match is at least LEARN_MIN_ACCURACY. None when it cannot
    be told (no finished run; records that predate the floor and have no accuracy)."""
    ok = runs[runs["ok"]]
    loss, _ = _mean_std(ok, "val_loss")
    if not np.isfinite(loss):
        return None
    floor, _ = _mean_std(ok, "freq_loss") if "freq_loss" in ok else (math.nan, math.nan)
    checks = []
    if np.isfinite(floor):
        checks.append(loss <= LEARN_LOSS_FRAC * floor)
    if has_acc:
        acc, _ = _mean_std(ok, "accuracy")
        checks.append(bool(np.isfinite(acc) and acc >= LEARN_MIN_ACCURACY))
    return all(checks) if checks else None


def overfit(runs: pd.DataFrame) -> bool | None:
    """The overfitting guard for one variant's finished runs: True when their mean rise of the
    val loss over the last quarter of training (`bench.analysis.columns.late_rise`) exceeds
    OVERFIT_RISE; None when no run has a curve long enough to tell."""
    ok = runs[runs["ok"]]
    rise, _ = _mean_std(ok, "val_rise") if "val_rise" in ok else (math.nan, math.nan)
    return None if not np.isfinite(rise) else bool(rise > OVERFIT_RISE)


def _variant_row(name: str, runs: pd.DataFrame, cols: list[Column]) -> dict:
    """Counts, the learning guard, and each shown column's mean and std over finished runs
    (a 'median' column: the median over all runs, as an integer)."""
    ok = runs[runs["ok"]]
    row: dict = {"variant": name, "n_seeds": int(runs["seed"].nunique())}
    row["n_failed"] = int((runs["status"] == "failed").sum())
    row["n_diverged"] = int((~runs["ok"]).sum()) - row["n_failed"]
    for c in cols:
        if c.agg == "median":
            values = runs[c.name].dropna()
            row[c.name] = int(values.median()) if len(values) else math.nan
        else:
            row[f"{c.name}_mean"], row[f"{c.name}_std"] = _mean_std(ok, c.name)
    row["learned"] = learned(runs, any(c.name == "accuracy" for c in cols))
    row["overfit"] = overfit(runs)
    return row


def left_out(g: pd.DataFrame) -> list[str]:
    """The runs of a group that are in no statistic, named: 'rope seed 1: failed (Type: msg)',
    'no-residual seed 0: diverged at step 12'."""
    out = []
    for _, r in g[~g["ok"]].sort_values(["variant", "seed"]).iterrows():
        why = f"failed ({r['error']})" if r["status"] == "failed" else r["status"]
        if r["status"] == "diverged" and pd.notna(r["diverged_at_step"]):
            why += f" at step {int(r['diverged_at_step'])}"
        out.append(f"{r['variant']} seed {int(r['seed'])}: {why}")
    return out


def _curves_by_seed(runs: pd.DataFrame, curves: dict) -> dict:
    return {s: curves.get(rid) or [] for s, rid in zip(runs["seed"], runs["run_id"], strict=True)}


def _bpb_curves(curves: dict) -> dict:
    """The curves with bits per byte read as their loss (groups that mix tokenisers)."""
    return {rid: [{**p, "val_loss": p.get(BPB)} for p in c] for rid, c in curves.items()}


def _multiplier_columns(base: pd.DataFrame, var: pd.DataFrame, row: dict, curves: dict):
    """Crossing multipliers (steps and wall-clock seconds) over the seeds both finished."""
    for axis, key in (("step", "x_steps"), ("time_s", "x_time")):
        m = multiplier.crossing_multipliers(
            _curves_by_seed(base, curves), _curves_by_seed(var, curves), axis=axis
        )
        row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = m["mean"], m["ci_low"], m["ci_high"]


def _rungs(ladder: pd.DataFrame) -> dict:
    """The ladder's finished runs as seed -> {budget: final val loss}."""
    rungs: dict = {}
    ok = ladder[ladder["ok"]]
    for seed, budget, loss in zip(ok["seed"], ok["budget_value"], ok["val_loss"], strict=True):
        if np.isfinite(loss):
            rungs.setdefault(seed, {})[float(budget)] = float(loss)
    return rungs


def _ladder_columns(rungs: dict, var: pd.DataFrame, row: dict, main_budget: float, control: dict):
    """'The baseline would need k x the budget': the variant's final losses read off the
    baseline's own budget ladder (bench.analysis.multiplier.ladder_multiplier), with the form of the
    fit and the status of the ladder's control, so a row is never read without them."""
    finals = {s: float(v) for s, v in _metric_by_seed(var, "val_loss").items()}
    try:
        lad = multiplier.ladder_multiplier(rungs, finals, main_budget)
    except ValueError as err:
        row["x_ladder_note"] = str(err)
        return
    row.update(
        x_ladder=lad["multiplier"],
        x_ladder_ci_low=lad["ci_low"],
        x_ladder_ci_high=lad["ci_high"],
        x_ladder_extrapolated=bool(lad["extrapolated"]),
        x_ladder_unreachable=bool(lad["unreachable"]),
        x_ladder_form=lad["form"],
        x_ladder_control=control["status"],
    )


def guarded_test(base: pd.DataFrame, var: pd.DataFrame, metric: str, lower: bool,
                 base_learned: bool | None, var_learned: bool | None) -> dict:  # fmt: skip
    """A verdict on `metric` (a variant's finished runs against the baseline's, paired by
    seed: bench.analysis.stats.compare, with its interval, MDE and seeds needed), behind the
    learning guard: `inconclusive` when the baseline did not learn, `worse (did not learn)`
    when the variant alone did not. The val loss verdict of every table, and any other."""
    c = _paired_metric(base, var, metric, lower=lower)
    if base_learned is False:
        c["verdict"] = INCONCLUSIVE
    elif var_learned is False and base_learned is True:
        c["verdict"] = DID_NOT_LEARN
    return c


def _primary_columns(base: pd.DataFrame, var: pd.DataFrame, row: dict, brow: dict,
                     metric: str = PRIMARY):  # fmt: skip
    """The verdict: val loss (`metric`: bits per byte where tokenisers mix) paired by seed,
    behind the learning guard, with its interval, p-value, MDE and the seeds that would
    resolve it."""
    c = guarded_test(base, var, metric, True, brow.get("learned"), row.get("learned"))
    row.update(
        d_val_loss=c["mean_diff"],
        d_val_loss_ci=fmt.ci(c["ci_low"], c["ci_high"]),
        verdict=c["verdict"],
        d_val_loss_ci_low=c["ci_low"],
        d_val_loss_ci_high=c["ci_high"],
        d_val_loss_p=c["p_value"],
        d_val_loss_n=c["n"],
        d_val_loss_test=c["test"],
        d_val_loss_boot_ci=fmt.ci(c["boot_ci_low"], c["boot_ci_high"]),
        d_val_loss_sd=c.get("sd_diff", math.nan),
        mde=c.get("mde", math.nan),
        seeds_needed=c.get("seeds_needed"),
    )


def _diff_columns(base: pd.DataFrame, var: pd.DataFrame, row: dict, brow: dict, cols: list,
                  primary: str = PRIMARY):  # fmt: skip
    """Fill the difference columns of one variant row against the baseline's runs and row."""
    base, var = base[base["ok"]], var[var["ok"]]
    _primary_columns(base, var, row, brow, primary)
    for c in cols:
        if c.name == PRIMARY and primary != PRIMARY:
            continue  # no Δ in nats per token across tokenisers: d_val_loss holds Δ bpb
        if c.delta == "pct":
            row[c.d] = _pct(row[f"{c.name}_mean"], brow[f"{c.name}_mean"])
        if c.test == "paired":
            t = _paired_metric(base, var, c.name, lower=c.lower_is_better)
            if c.delta == "abs":
                row[c.d] = t["mean_diff"]
            row[c.d_ci], row[c.verdict] = fmt.ci(t["ci_low"], t["ci_high"]), t["verdict"]
        elif c.test == "welch":
            row[c.verdict] = _welch_metric(base, var, c.name, lower=c.lower_is_better)["verdict"]
        elif c.delta == "abs":
            row[c.d] = row[f"{c.name}_mean"] - brow[f"{c.name}_mean"]


_PRIMARY_COLS = ["d_val_loss", "d_val_loss_ci", "verdict", "mde", "seeds_needed"]
_PRIMARY_DETAIL = ["d_val_loss_ci_low", "d_val_loss_ci_high", "d_val_loss_p", "d_val_loss_n",
                   "d_val_loss_test", "d_val_loss_sd", "d_val_loss_boot_ci"]  # fmt: skip
_MULTIPLIER_COLS = [
    "x_steps", "x_steps_ci_low", "x_steps_ci_high", "x_time", "x_time_ci_low", "x_time_ci_high",
    "x_ladder", "x_ladder_ci_low", "x_ladder_ci_high", "x_ladder_extrapolated",
    "x_ladder_unreachable", "x_ladder_form", "x_ladder_control", "x_ladder_note",
]  # fmt: skip


def frame_columns(cols: list[Column]) -> list[str]:
    """The comparison frame's columns (summary.csv's order): counts and the means of the shown
    columns; the verdict and multipliers; unpaired differences; paired ones with their interval
    and verdict; the verdict's detail; the Welch verdicts."""
    out = ["variant", "n_seeds", "n_diverged", "n_failed", "learned", "overfit"]
    for c in cols:
        out += [c.name] if c.agg == "median" else [f"{c.name}_mean", f"{c.name}_std"]
    out += _PRIMARY_COLS + _MULTIPLIER_COLS
    compared = [c for c in cols if c.delta and c.name != PRIMARY]
    out += [c.d for c in compared if c.test != "paired"]
    out += [x for c in compared if c.test == "paired" for x in (c.d, c.d_ci, c.verdict)]
    out += _PRIMARY_DETAIL
    return out + [c.verdict for c in compared if c.test == "welch"]


def _group_summary(g: pd.DataFrame, curves: dict, ladder: tuple | None) -> pd.DataFrame:
    """One group's frame; `ladder` is (rungs, control) of the baseline's budget ladder."""
    g, _ = _dedupe_runs(g)
    cols = shown(lambda name: bool(np.isfinite(g[name].to_numpy(dtype=float)).any()))
    order = variant_order(g["variant"])
    runs = {v: g[g["variant"] == v] for v in order}
    rows = {v: _variant_row(v, runs[v], cols) for v in order}
    primary = BPB if g["tokenizer"].nunique() > 1 else PRIMARY  # never Δ nats across tokenisers
    if primary == BPB:
        curves = _bpb_curves(curves)
    if BASELINE in rows:
        base = runs[BASELINE]
        for v in order:
            if v == BASELINE:
                continue
            _diff_columns(base, runs[v], rows[v], rows[BASELINE], cols, primary)
            ok_b, ok_v = base[base["ok"]], runs[v][runs[v]["ok"]]
            _multiplier_columns(ok_b, ok_v, rows[v], curves)
            if ladder is not None and primary == PRIMARY:
                _ladder_columns(ladder[0], ok_v, rows[v], _main_budget(g), ladder[1])
    df = pd.DataFrame([rows[v] for v in order])
    df = df.reindex(columns=frame_columns(cols))
    text_cols = [c for c in df.columns if c.endswith(("_ci", "verdict", "_test", "_note"))]
    text_cols += ["learned", "overfit", "x_ladder_extrapolated", "x_ladder_unreachable"]
    text_cols += ["x_ladder_form", "x_ladder_control", "seeds_needed"]
    df[text_cols] = df[text_cols].astype(object).where(df[text_cols].notna(), None)
    df["d_val_loss_n"] = df["d_val_loss_n"].astype("Int64")
    df.attrs["primary"] = primary  # what the verdict columns (d_val_loss, ...) are about
    return df


def _main_budget(g: pd.DataFrame) -> float:
    return float(g["budget_value"].iloc[0])


_LADDER_KEY = ["task", "budget_mode", "model_size", "device_name", "train_cfg_ladder"]


def _ladders(groups: list[tuple[dict, pd.DataFrame]]) -> tuple[dict, set]:
    """For each comparison group (index), the baseline's budget ladder: its own baseline runs
    and those of baseline-only groups trained alike at other budgets. Returns
    ({group index: ladder frame}, indices of the baseline-only groups used as rungs)."""

    def key(g):
        return tuple(str(g[c].iloc[0]) for c in _LADDER_KEY)

    only_base = {i for i, (_, g) in enumerate(groups) if set(g["variant"]) == {BASELINE}}
    ladders, used = {}, set()
    for i, (_, g) in enumerate(groups):
        if i in only_base or BASELINE not in set(g["variant"]):
            continue
        rungs = [j for j in only_base if key(groups[j][1]) == key(g)]
        if not rungs:
            continue
        frames = [_dedupe_runs(groups[k][1])[0] for k in (i, *rungs)]
        frames[0] = frames[0][frames[0]["variant"] == BASELINE]
        ladders[i] = pd.concat(frames, ignore_index=True)
        used.update(rungs)
    return ladders, used


def summaries(records: list[dict]) -> list[tuple[dict, pd.DataFrame]]:
    """One (meta, summary frame) per comparable group of runs; see the module docstring.
    Baseline-only groups that serve as the budget ladder of a comparison are folded into it
    (meta["ladder_budgets"]) instead of getting a table of their own; the ladder's control
    (bench.analysis.multiplier.ladder_control, from these records alone) is meta["ladder_control"]
    and the forms its fits took are meta["ladder_forms"]."""
    records = [as_record(r) for r in records]
    frame = records_frame(records)
    curves = {r.run_id: r.curve for r in records}
    groups = split_groups(frame)
    ladders, used = _ladders(groups)
    out = []
    for i, (_key, g) in enumerate(groups):
        if i in used:
            continue
        meta = group_meta(g)
        meta["n_duplicates"] = _dedupe_runs(g)[1]
        meta["left_out"] = left_out(_dedupe_runs(g)[0])
        meta["positions"] = list(g.index)  # rows of records_frame(records) in this group
        ladder, rung_runs = None, ladders.get(i)
        if rung_runs is not None:
            meta["ladder_budgets"] = sorted(float(b) for b in rung_runs["budget_value"].unique())
            rungs = _rungs(rung_runs)
            meta["ladder_control"] = multiplier.ladder_control(rungs, _main_budget(g))
            ladder = (rungs, meta["ladder_control"])
        base = g[g["variant"] == BASELINE]
        meta["freq_loss"] = _mean_std(base, "freq_loss")[0] if len(base) else math.nan
        df = _group_summary(g, curves, ladder)
        if ladder is not None:
            meta["ladder_forms"] = sorted(set(df["x_ladder_form"].dropna()))
        out.append((meta, df))
    return out


def summary(records: list[dict]) -> pd.DataFrame:
    """Summary of one comparable group of runs (one row per variant, baseline first).

    Raises ValueError if the records mix tasks, budgets, model sizes or devices: use
    :func:`summaries` (or :func:`write_summary`) to get one table per group.
    """
    groups = summaries(records)
    if not groups:
        raise ValueError("no run records to summarise")
    if len(groups) > 1:
        labels = "; ".join(fmt.group_title(m) for m, _ in groups)
        raise ValueError(
            f"records span {len(groups)} incomparable groups ({labels}); "
            "use bench.analysis.tables.summaries() for one table per group"
        )
    return groups[0][1]


def ci_widths(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Per variant (not the baseline): the width of the 95% CI of Δ val loss and the sd of the
    paired differences, over every group in `records` (inf when there is no interval yet)."""
    out = {}
    for _, df in summaries(records):
        for _, r in df.iterrows():
            if r["variant"] == BASELINE:
                continue
            lo, hi = fmt.num_or_nan(r, "d_val_loss_ci_low"), fmt.num_or_nan(r, "d_val_loss_ci_high")
            width = hi - lo if np.isfinite(lo) and np.isfinite(hi) else math.inf
            out[r["variant"]] = (width, fmt.num_or_nan(r, "d_val_loss_sd"))
    return out
