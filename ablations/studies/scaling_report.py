"""The scaling study's outputs: its table of multipliers with their controls, the report
section around it, and the loss-vs-compute figure (ablations/studies/scaling.py runs it)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ablations.config import TaskSection
from ablations.studies.base import StudyContext, canvas, image, save_figure, wall_times
from ablations.studies.scaling_grid import CONTROL_FACTOR, HEAD_DIM, Ladder
from bench.analysis import scaling_law as scaling

FOOTNOTE = (
    "_Each cell: the multiplier at that size with its 95% percentile bootstrap interval over "
    "seeds (each size gets its number of seeds drawn with replacement from every size's seed "
    "luck, a seed's luck moving all its runs at once; everything refitted). **Data ×**: the "
    "tokens the baseline of that size needs on the fitted surface to reach the arm's mean "
    "final loss, over the arm's tokens. **Compute ×**: the "
    "least training compute on the surface over every N (the compute-optimal allocation) that "
    "reaches that loss, over the arm's compute. 'extrap.': the reading leaves the region the "
    "baseline's grid covered. Trend: the slope of ln(multiplier) on ln(N) across sizes, with "
    "its interval. **Rule:** a gain 'holds across sizes' only if its interval's lower bound "
    "exceeds 1 at every size and its trend's interval is not wholly below 0 (upper end ≥ 0); "
    "'worse at every size' if the upper bound is below 1 at every size; otherwise 'not "
    "resolved'; no verdict from a multiplier read more than 2× outside the grid (in N or "
    "in tokens) at any size, where the surface's form alone would decide it. **Controls:** "
    "the baseline trained on 2× the tokens but charged 1× must read a "
    "data multiplier whose interval contains 2 at every size; each size left out of the fit "
    "must have an interval of its mean observed − predicted loss (over its budgets) that "
    "contains 0. ‡ The controls' intervals hold for all sizes together at 95% (each at "
    "1 − 0.05/sizes: 95% at each of 4 sizes would fail a right method 19% of the time). "
    "Verdicts are given only when both controls pass._"
)


def _times(m: float, lo: float, hi: float, extrapolated: bool) -> str:
    if not np.isfinite(m):
        return "∞ (below the surface's floor)" if m == math.inf else "—"
    return f"{m:.2f}× [{lo:.2f}, {hi:.2f}]" + (" extrap." if extrapolated else "")


def _trend(t) -> str:
    return "—" if not np.isfinite(t["slope"]) else (
        f"{t['slope']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]")  # fmt: skip


def _passed(c: scaling.Control) -> str:
    return {True: "passes", False: "**FAILS**", None: "not evaluated"}[c.passed] + f" ({c.detail})"


def _row(result, arm: str, kind: str, label: str, verdict: str, level: str = "") -> dict:
    """An arm's multipliers of one kind across sizes; `level` "_all": the controls' intervals
    (all sizes together at 95%) instead of each size's."""
    cells = result.cells[result.cells["arm"] == arm].set_index("size", drop=False)
    row = {"": label}
    for size, col in _columns(result).items():
        if size not in cells.index:
            row[col] = "—"
            continue
        r = cells.loc[size]
        lo, hi = r[f"{kind}_low{level}"], r[f"{kind}_high{level}"]
        row[col] = _times(r[f"{kind}_x"], lo, hi, r[f"{kind}_extrap"])
    trends = result.trends.set_index(["arm", "kind"])
    row["trend (d ln k / d ln N)"] = _trend(trends.loc[(arm, kind)])
    row["verdict"] = verdict
    return row


def _columns(result: scaling.ScalingResult) -> dict:
    sizes = zip(result.sizes, result.size_n, result.n_seeds, strict=True)
    return {s: f"{s} (N={n / 1e3:,.0f}k, n={k})" for s, n, k in sizes}


def _loso_row(result: scaling.ScalingResult, check: scaling.Control) -> dict:
    row = {"": "control: each size left out of the fit, observed − predicted loss (must be 0) ‡"}
    loso = result.loso.set_index("size")
    for size, col in _columns(result).items():
        r = loso.loc[size]
        row[col] = "—" if not np.isfinite(r["residual"]) else (
            f"{r['residual']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"
            + ("" if r["passed"] else " ✗"))  # fmt: skip
    row["trend (d ln k / d ln N)"] = "—"
    row["verdict"] = _passed(check)
    return row


def display(result: scaling.ScalingResult) -> pd.DataFrame:
    """Rows: each arm's data and compute multipliers, then the controls; columns: the sizes,
    the trend and the verdict."""
    rows = []
    for arm, verdicts in result.verdicts.items():
        for kind in scaling.KINDS:
            rows.append(_row(result, arm, kind, f"{arm} · {kind} ×", verdicts[kind]))
    for check in result.controls:
        if check.arm is None:
            rows.append(_loso_row(result, check))
        elif check.passed is not None:
            label = f"control: {check.arm} · data × (must read {CONTROL_FACTOR:g}) ‡"
            rows.append(_row(result, check.arm, "data", label, _passed(check), "_all"))
    return pd.DataFrame(rows)


def fit_text(result: scaling.ScalingResult) -> str:
    f, ci = result.surface, result.surface_ci

    def term(name: str, value: float, digits: int = 3) -> str:
        lo, hi = ci[name]
        return f"{value:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"

    edge = (" An exponent ended on the edge of the searched range "
            f"[{scaling.EXPONENTS[0]:g}, {scaling.EXPONENTS[-1]:g}]: the fit is not to be "
            "trusted." if f.at_edge else "")  # fmt: skip
    return (
        f"Baseline surface: L(N, D) = E + A·N^(−α) + B·D^(−β) with E = {term('e', f.e)}, "
        f"A = {term('a', f.a)}, α = {term('alpha', f.alpha)}, B = {term('b', f.b)}, "
        f"β = {term('beta', f.beta)} (95% bootstrap intervals over seeds, "
        f"{result.n_boot_used} resamples that could be fitted).{edge}"
    )


def verdict_lines(result: scaling.ScalingResult) -> list[str]:
    checks = [f"- control: {c.name}: {_passed(c)}" for c in result.controls]
    arms = [f"- {arm}: " + "; ".join(f"{k} × {v}" for k, v in verdicts.items())
            for arm, verdicts in result.verdicts.items()]  # fmt: skip
    if not result.controls_pass:
        arms.insert(0, "**A control did not pass: the multipliers above are not findings.**")
    return [*checks, *arms]


def report(
    study, ctx, ladder: Ladder, result, table: str, records, wall: float, png, data: str
) -> str:
    sizes = ", ".join(f"{layers}x{width}" for layers, width in ladder.sizes)
    budgets = ", ".join(f"{t * ctx.scale:g}" for t in ladder.budgets)
    others = ", ".join(a.label for a in study.arms(ctx)[1:])
    return "\n".join([
        "## Data and compute multipliers across model sizes",
        "",
        f"The baseline trained at sizes {sizes} (n_layer x n_embd, heads of {HEAD_DIM} dims, "
        f"context {ladder.block_size}) on {budgets} tokens per non-embedding parameter N; "
        f"{others} at {ladder.arm_budget * ctx.scale:g} (the control trains on twice that and "
        f"is charged it once); batch {ladder.batch_size}, lr {ladder.lr:g} with the harness's "
        f"warm-up + cosine schedule per run, on {task_label(ctx)}. {data} The baseline's final "
        "losses are fitted with L(N, D) = E + A·N^(−α) + B·D^(−β) (exponents on a grid, E, A, B by "
        "non-negative least squares: bench/analysis/scaling_law/). C = training FLOPs per "
        "token (the matmuls as built, causal attention, the head; 3 × forward) × tokens.",
        "",
        table,
        "",
        FOOTNOTE,
        "",
        fit_text(result),
        "",
        *verdict_lines(result),
        "",
        image(png, "loss vs training compute"),
        "",
        f"Command: `{ctx.command(study.name)}{flags(ctx)}` · "
        f"{torch.get_num_threads()} thread(s) per run · {wall_times(records, wall)}. "
        "Points: `scaling_points.csv`; multipliers: `scaling.csv`; sizes left out: "
        "`scaling_loso.csv`.",
        "",
    ])  # fmt: skip


# --------------------------------------------------------------------------- the figure

ISO = (0.5, 1.0, 2.0, 4.0)  # the compute multipliers drawn as lines


def figure(frame: pd.DataFrame, result: scaling.ScalingResult, path: Path, context: str):
    """Loss against training compute, log-log: the baseline's fitted surface as one curve per
    size (its points on it), every other arm's points, and lines of equal compute multiplier
    (the compute-optimal frontier shifted by k)."""
    ok = frame[np.isfinite(frame["loss"])]
    sizes = result.sizes
    pal = dict(zip(sizes, sns.color_palette("viridis", n_colors=len(sizes)), strict=True))
    with canvas((8.0, 5.5)) as fig:
        ax = fig.subplots()
        _size_curves(ax, ok, result, pal)
        _arm_points(ax, ok, pal)
        _iso_lines(ax, ok, result)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel("final validation loss")
        ax.legend(fontsize=7, ncol=2)
        caption = textwrap.fill(
            "Lines: the baseline's fitted L(N, D) at each size's N against C = F(N)·D; circles: "
            "the baseline's runs (mean ± std over seeds); other markers: the other arms at the "
            "compute they are charged. Grey dashed: the compute-optimal frontier (×1) and its "
            "shifts, where an arm's compute multiplier is ×k.",
            width=120,
        )
        return save_figure(fig, path, caption, bottom=0.08,
                           title=f"Loss vs training compute\n{context}")  # fmt: skip


def _size_curves(ax, ok: pd.DataFrame, result: scaling.ScalingResult, pal: dict) -> None:
    base = ok[ok["arm"] == scaling.BASELINE]
    for size, n in zip(result.sizes, result.size_n, strict=True):
        g = base[base["size"] == size]
        fpt = float((g["compute"] / g["tokens"]).mean())
        d = np.geomspace(g["tokens"].min() / 2, g["tokens"].max() * 2, 100)
        ax.plot(fpt * d, result.surface.predict(n, d), color=pal[size], lw=1.2,
                label=f"baseline {size} (fit)")  # fmt: skip
        m = g.groupby("tokens")
        ax.errorbar(m["compute"].mean(), m["loss"].mean(), yerr=m["loss"].std().fillna(0),
                    fmt="o", ms=4, capsize=2, color=pal[size])  # fmt: skip


def _arm_points(ax, ok: pd.DataFrame, pal: dict) -> None:
    others = [a for a in dict.fromkeys(ok["arm"]) if a != scaling.BASELINE]
    for arm, marker in zip(others, "*DsP^v<>", strict=False):
        g = ok[ok["arm"] == arm].groupby("size", sort=False)
        mean = g[["compute", "loss"]].mean()
        ax.scatter(mean["compute"], mean["loss"], marker=marker, s=60, zorder=3,
                   c=[pal[s] for s in mean.index], edgecolors="black", linewidths=0.5,
                   label=arm)  # fmt: skip


def _iso_lines(ax, ok: pd.DataFrame, result: scaling.ScalingResult) -> None:
    c = np.geomspace(ok["compute"].min() / 2, ok["compute"].max() * 2, 80)
    span = (result.size_n.min(), result.size_n.max())
    for k in ISO:
        loss = scaling.optimal_loss(result.surface, result.flops, k * c, span)
        ax.plot(c, loss, ls="--", lw=0.8, color="0.55")
        ax.annotate(f"×{k:g}", (c[-1], loss[-1]), fontsize=7, color="0.4")


def flags(ctx: StudyContext) -> str:
    """The flags that shaped this run of the study, as typed (for its command line)."""
    task = ctx.task or TaskSection()
    given = (
        ("--preset", ctx.preset),
        ("--sizes", ctx.sizes),
        *(("--variant", v) for v in ctx.variants),
        ("--task", task.name),
        ("--data", task.data),
        ("--tokenizer", task.tokenizer),
        ("--data-field", task.data_field),
        *(("--task-option", f"{k}={v}") for k, v in task.options.items()),
    )
    return "".join(f" {flag} {value}" for flag, value in given if value)


def task_label(ctx: StudyContext) -> str:
    """The data in words, for the report and the figure: tiny Shakespeare (the default) or the
    task, its data file's name and its tokeniser."""
    task = ctx.task
    if task is None:
        return "tiny Shakespeare"
    parts = [task.name or "shakespeare", task.data and Path(task.data).name, task.tokenizer]
    return " · ".join(str(p) for p in parts if p)


# Epochs of the train split up to which repeated tokens are worth about as much as fresh ones
# (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models")
REPEAT_OK = 4.0


def repetition(task, plan) -> str:
    """How often the longest run reads the train split, and what that means past REPEAT_OK:
    L(N, D) counts every token as fresh."""
    most = max(p.spec.budget.value for p in plan)
    epochs = most / task.n_train
    text = (f"Data: the train split holds {task.n_train:,} tokens; the longest run reads it "
            f"{epochs:.1f} times.")  # fmt: skip
    if epochs > REPEAT_OK:
        text += (
            f" Past about {REPEAT_OK:g} epochs a repeated token is worth less than a fresh one "
            "(Muennighoff et al. 2023), which the surface's D term does not model: the controls "
            "say whether it still holds here. For multipliers at these sizes, give a corpus of "
            f"{most / REPEAT_OK:,.0f} tokens or more (--task text --data PATH)."
        )
    return text
