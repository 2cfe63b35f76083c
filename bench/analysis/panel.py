"""The capability panel: every variant on every probe task (`mqar`, `selective-copy`,
`induction`, or any task whose evaluation names a capability), read as a scoreboard of paired
differences in accuracy at the positions that test the capability, with a heatmap.

A record belongs to the panel when its `evals` carry a `capability` and the accuracy per
length (`by_length`, bench.tasks.synthetic). Each probe task is one comparable group (task,
budget, size, device: bench.analysis.frame), and every cell is the comparison of the tables
(bench.analysis.compare.guarded_test) on the accuracy instead of the loss: paired by seed, a
verdict only when the 95% CI excludes 0, the minimum detectable effect, and the learning guard
first (a cell whose baseline did not learn reads `inconclusive`, never better or worse).

    python -m bench.report results/local/studies/probes     # the scoreboard and heatmap
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.compare import INCONCLUSIVE, guarded_test, learned
from bench.analysis.fmt import BASELINE, budget_text, ci, pm, short_verdict, variant_order
from bench.analysis.frame import _dedupe_runs, records_frame, split_groups
from bench.analysis.sections import SECTIONS, Section
from bench.core.records import as_record

NOT_READ = "n/a"  # a length the model cannot read (learned positions past their table)


def panel_records(records: Sequence) -> list:
    """The records that belong to the panel (see the module docstring), as RunRecords."""
    recs = [as_record(r) for r in records]
    return [r for r in recs if r.evals.get("capability") and "by_length" in r.evals]


def _probe_labels(groups: list[tuple[dict, pd.DataFrame]]) -> list[str]:
    """A probe's column name: its task, with the budget where one task has several groups."""
    tasks = [meta["task"] for meta, _ in groups]
    return [
        t if tasks.count(t) == 1 else f"{t} · {budget_text(m['budget_mode'], m['budget_value'])}"
        for t, (m, _) in zip(tasks, groups, strict=True)
    ]


def _cell(probe: str, capability: str, variant: str, runs: pd.DataFrame) -> dict:
    ok = runs[runs["ok"]]
    acc = ok["accuracy"].to_numpy(dtype=float)
    acc = acc[np.isfinite(acc)]
    return {
        "probe": probe, "capability": capability, "variant": variant,
        "n_seeds": int(runs["seed"].nunique()), "n_diverged": int((~runs["ok"]).sum()),
        "learned": learned(runs, True),
        "accuracy_mean": float(acc.mean()) if acc.size else math.nan,
        "accuracy_std": float(acc.std(ddof=1)) if acc.size > 1 else math.nan,
    }  # fmt: skip


def panel_cells(records: Sequence) -> pd.DataFrame:
    """One row per (probe, variant), the baseline's included: mean accuracy, the learning
    guard, and against the baseline the paired Δ accuracy with its 95% CI, p-value, verdict,
    MDE and the seeds that would resolve it. Empty when no record belongs to the panel."""
    recs = panel_records(records)
    if not recs:
        return pd.DataFrame()
    capability = {r.run_id: r.evals["capability"] for r in recs}
    groups = split_groups(records_frame(recs))
    rows = []
    for probe, (_, g) in zip(_probe_labels(groups), groups, strict=True):
        g, _ = _dedupe_runs(g)
        cap = capability[g["run_id"].iloc[0]]
        runs = {v: g[g["variant"] == v] for v in variant_order(g["variant"])}
        cells = {v: _cell(probe, cap, v, r) for v, r in runs.items()}
        base = cells.get(BASELINE)
        for v, cell in cells.items():
            if v != BASELINE and base is not None:
                b, r = runs[BASELINE], runs[v]
                t = guarded_test(b[b["ok"]], r[r["ok"]], "accuracy", False, base["learned"],
                                 cell["learned"])  # fmt: skip
                cell.update(
                    d_accuracy=t["mean_diff"], ci_low=t["ci_low"], ci_high=t["ci_high"],
                    p_value=t["p_value"], n=t["n"], verdict=t["verdict"],
                    mde=t.get("mde", math.nan), seeds_needed=t.get("seeds_needed"),
                )  # fmt: skip
            rows.append(cell)
    return pd.DataFrame(rows)


def length_cells(records: Sequence) -> pd.DataFrame:
    """One row per (probe, variant, length factor): mean and sd of the accuracy over seeds,
    NaN with `why` where no run of the variant could read that length."""
    rows = []
    for rec in panel_records(records):
        if not rec.ok:
            continue
        for factor, point in rec.evals["by_length"].items():
            acc = point.get("accuracy")
            rows.append({"probe": rec.task, "variant": rec.variant, "seed": rec.seed,
                         "factor": int(factor), "length": point.get("length"),
                         "accuracy": math.nan if acc is None else float(acc)})  # fmt: skip
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).drop_duplicates(["probe", "variant", "seed", "factor"], keep="last")
    g = frame.groupby(["probe", "variant", "factor", "length"], sort=False)["accuracy"]
    return g.agg(mean="mean", sd="std", n="count").reset_index()


# --------------------------------------------------------------------------- tables


def _score_text(r: pd.Series) -> str:
    """'-0.412 [-0.52, -0.30] worse · MDE 0.05'; '—' without a comparison."""
    d = r.get("d_accuracy", math.nan)
    if not np.isfinite(d):
        return "—"
    interval = ci(r["ci_low"], r["ci_high"])
    mde = r.get("mde", math.nan)
    parts = [f"{d:+.3f}", interval or "", short_verdict(r["verdict"])]
    text = " ".join(p for p in parts if p)
    return text + (f" · MDE {mde:.3f}" if np.isfinite(mde) else "")


def scoreboard(records: Sequence) -> pd.DataFrame | None:
    """Variants x probes: the baseline's accuracy (mean ± sd) in its row, every other cell
    the paired Δ accuracy [95% CI], verdict and MDE; None when no record is a probe's."""
    cells = panel_cells(records)
    if cells.empty:
        return None
    probes = list(dict.fromkeys(cells["probe"]))
    table: dict = {}
    for _, r in cells.iterrows():
        if r["variant"] == BASELINE:
            text = "acc " + pm(r["accuracy_mean"], r["accuracy_std"], ".3f")
            text += "" if r["learned"] is not False else " (did not learn)"
        else:
            text = _score_text(r)
        table.setdefault(r["variant"], {})[r["probe"]] = text
    out = pd.DataFrame.from_dict(table, orient="index").reindex(columns=probes).fillna("—")
    out = out.loc[variant_order(out.index)]
    return out.rename_axis("variant").reset_index()


def length_table(records: Sequence) -> pd.DataFrame | None:
    """Probe x variant rows, accuracy at 1x, 2x and 4x the trained length (mean ± sd)."""
    stats = length_cells(records)
    if stats.empty:
        return None
    table: dict = {}
    for _, r in stats.iterrows():
        row = table.setdefault((r["probe"], r["variant"]), {})
        if r["factor"] == 1:
            row["trained length"] = int(r["length"])
        col = "1× (trained)" if r["factor"] == 1 else f"{int(r['factor'])}×"
        row[col] = NOT_READ if r["n"] == 0 else pm(r["mean"], r["sd"], ".3f")
    out = pd.DataFrame.from_dict(table, orient="index").fillna("—")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["probe", "variant"])
    return out.reset_index()


def footnote(records: Sequence) -> str:
    cells = panel_cells(records)
    pairs = dict(zip(cells["probe"], cells["capability"], strict=True))
    caps = "; ".join(f"{p}: {c}" for p, c in pairs.items())
    return (
        f"Accuracy at the positions that test each capability ({caps}): the argmax of the "
        "teacher-forced model at every scored position of the fixed held-out rows. Each cell "
        "is a variant against the baseline on that probe: the paired difference in accuracy "
        "by seed, its 95% t interval, the verdict (better/worse only when the interval "
        "excludes 0) and the minimum detectable effect (80% power at α = 0.05) of these "
        "seeds. The learning guard comes first: where the baseline did not learn a probe "
        f"(loss ≤ 0.8 × its frequency floor and accuracy ≥ 5%), the cell reads '{INCONCLUSIVE}'."
    )


def length_footnote(records: Sequence) -> str:
    return (
        "Accuracy on held-out rows 1, 2 and 4 times the trained length, with as many times the "
        "problems in a row (the same number of scored positions at every length), mean ± sd "
        f"over seeds. '{NOT_READ}': a model with learned positions has no vector past its "
        "trained context and cannot read the longer rows at all."
    )


# --------------------------------------------------------------------------- the heatmap


def heatmap(records: Sequence, path) -> Path | None:
    """Variants x probes, coloured by the paired Δ accuracy (blue better, red worse, grey
    where the cell is inconclusive), each cell annotated with Δ and the verdict."""
    import seaborn as sns  # late: training imports the sections, and needs no plotting
    from matplotlib.figure import Figure

    cells = panel_cells(records)
    if cells.empty or "d_accuracy" not in cells:
        return None
    cells = cells[cells["variant"] != BASELINE]
    probes, variants = list(dict.fromkeys(cells["probe"])), variant_order(cells["variant"])
    grid = cells.pivot(index="variant", columns="probe", values="d_accuracy")
    grid = grid.reindex(index=variants, columns=probes).astype(float)
    verdicts = cells.pivot(index="variant", columns="probe", values="verdict")
    verdicts = verdicts.reindex(index=variants, columns=probes)
    notes = [[_annotation(grid.iloc[i, j], verdicts.iloc[i, j]) for j in range(len(probes))]
             for i in range(len(variants))]  # fmt: skip
    masked = grid.where(verdicts != INCONCLUSIVE)
    with sns.axes_style("white"):
        fig = Figure(figsize=(2.5 + 1.9 * len(probes), 1.8 + 0.55 * len(variants)))
        ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # inconclusive cells: no colour
    sns.heatmap(masked, ax=ax, cmap="RdBu", center=0.0, vmin=-1.0, vmax=1.0, annot=notes, fmt="",
                annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "Δ accuracy"})  # fmt: skip
    ax.set_xlabel("probe")
    ax.set_ylabel("")
    fig.suptitle("Capability probes: Δ accuracy vs baseline (verdict: paired t, 95% CI)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


def _annotation(delta: float, verdict) -> str:
    if verdict == INCONCLUSIVE:
        return "inconclusive"
    if not np.isfinite(delta):
        return "—"
    return f"{delta:+.2f}\n{short_verdict(verdict)}"


SECTIONS.register(
    "capabilities",
    Section("Capability probes", table=scoreboard, footnote=footnote, figure=heatmap,
            alt="Capability probes: Δ accuracy heatmap", slug="capability_probes"),
)  # fmt: skip
SECTIONS.register(
    "capability_lengths",
    Section("Capability probes at longer lengths", table=length_table, footnote=length_footnote),
)
