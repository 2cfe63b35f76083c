"""Study `calculator`: which operations does a small transformer learn, at which operand
lengths, and do chain-of-thought traces help?

    python ablations/run.py --study calculator --seeds 1      # results/local/studies/calculator/

At scale 1 (2400 steps per run, three runs per seed) one seed took 5.5 minutes on two shared
CPU cores with OMP_NUM_THREADS=1 (up to twice that when the cores are busy); every further seed
adds as much.

One model per condition is trained on the `calculator` task (bench/tasks/calculator.py: + − ×
÷ mixed, operand lengths mixed, every (operator, length) cell equally often) and scored by
exact match on the task's held-out problems, per operator and per operand length:

* ``plain``: "a op b = answer $", loss on the answer only.
* ``trace``: "a op b = trace | answer $" with the worked steps (column digits and carries for
  + and −, partial products and running sums for ×, long-division steps for ÷), loss on the
  trace and the answer. Scored twice: with the trace *generated* by the model (the real
  use: a wrong step spoils the answer) and with the true trace *given* (can it read the
  answer off correct working?).
* ``trace-masked``: the same rows, but the trace carries no loss: the model reads worked
  steps during training and is never taught to write them. It can only be scored with the
  trace given.

Every condition has the same model (block size fitted to the longest trace row), the same
number of optimizer steps, batch size and learning rate, and the same seeds; so the same number
of *problems* is seen, while a trace row is longer (more tokens, more compute per step).
The figure shows the accuracy per cell as heatmaps, mean over seeds; the table lists them with
the spread over seeds, plus each condition's overall accuracy (micro-average over problems).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from ablations.studies.base import Study, StudyContext, canvas, image, save_figure, wall_times
from bench.analysis.tables import markdown_table
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.tasks import build_task
from variants.config import preset

# (label, trace, mask_trace)
CONDITIONS = (("plain", False, False), ("trace", True, False), ("trace-masked", True, True))
# which accuracy columns each condition gets: trace_eval values
EVALS = {"plain": ("none",), "trace": ("generated", "given"), "trace-masked": ("given",)}
COLUMN = {
    ("plain", "none"): "plain",
    ("trace", "generated"): "trace (generated)",
    ("trace", "given"): "trace (given)",
    ("trace-masked", "given"): "masked trace (given)",
}
CSV_COLUMNS = [
    "condition", "trace_eval", "op", "length", "n", "seeds", "accuracy_mean", "accuracy_std",
]  # fmt: skip
# the full-scale model: the `micro` preset widened to d=64 (about 0.1M parameters). In 1500-step
# pilots the d=32 preset got 5% of the answers right with a generated trace, d=64 42%.
MODEL = {"n_embd": 64, "n_head": 4}


@dataclass
class CalculatorStudy(Study):
    # (unannotated: class attributes, not dataclass fields)
    name = "calculator"
    description = "+ - * / per operator and operand length, with vs without chain-of-thought traces"

    model: str = "micro"
    model_overrides: dict = field(default_factory=lambda: dict(MODEL))
    ops: str = "+-*/"
    lengths: str = "1,2,3"
    full_steps: int = 2400
    batch_size: int = 64
    lr: float = 3e-3
    eval_every: int = 250
    n_heldout: int = 100
    eval_problems: int | None = None  # None: every held-out problem
    conditions: tuple = CONDITIONS

    # --- specs ----------------------------------------------------------------------------------

    def task_dict(self, trace: bool, mask_trace: bool) -> dict:
        task = {
            "name": "calculator",
            "data": None,
            "ops": self.ops,
            "lengths": self.lengths,
            "trace": trace,
            "mask_trace": mask_trace,
            "n_heldout": self.n_heldout,
        }
        if self.eval_problems is not None:  # only then: at its default it is not in the id
            task["eval_problems"] = max(1, round(self.eval_problems))
        return task

    def specs(self, ctx: StudyContext) -> list[tuple[str, RunSpec]]:
        # one model config for every condition: the block size of the longest (trace) row
        probe = {
            label: build_task("calculator", context=10_000, **_opts(self.task_dict(trace, mask)))
            for label, trace, mask in self.conditions
        }
        seq = max(t.seq_len for t in probe.values())
        vocab = next(iter(probe.values())).vocab_size
        cfg = preset(self.model, **self.model_overrides).replace(vocab_size=vocab, block_size=seq)
        cfg = cfg.validate()
        budget = Budget("steps", ctx.steps(self.full_steps, minimum=20))
        every = max(5, round(self.eval_every * min(1.0, ctx.scale)))
        train = TrainConfig(batch_size=self.batch_size, lr=self.lr, eval_every=every).validate()
        out = []
        for label, trace, mask in self.conditions:
            task = self.task_dict(trace, mask)
            for seed in range(ctx.seeds):
                out.append((label, RunSpec(label, cfg, task, budget, train, seed, ctx.device)))
        return out

    # --- running ------------------------------------------------------------------------------

    def _run(self, ctx: StudyContext) -> str:
        labelled = self.specs(ctx)
        records = ctx.execute([spec for _, spec in labelled])
        cells = cell_frame(records, self.conditions)
        cells.to_csv(ctx.out / "calculator_by_cell.csv", index=False)
        table = summary_table(cells, self.conditions)
        table.to_csv(ctx.out / "calculator.csv", index=False)

        spec0 = labelled[0][1]
        n_div = sum(1 for r in records if r.status != "ok")
        context = (
            f"{ctx.device} · model L{spec0.model.n_layer} d{spec0.model.n_embd} ctx"
            f"{spec0.model.block_size} · {spec0.budget.describe()}, batch"
            f" {spec0.train.batch_size}, lr {spec0.train.lr:g} · {ctx.seeds} seed(s)"
        )
        png = figure(table, ctx.out / "calculator.png", context)
        return self.section(table, records, spec0, ctx, context, png, n_div)

    # --- report ---------------------------------------------------------------------------------

    def section(self, table, records, spec0, ctx, context, png, n_div) -> str:
        wide = display_table(table)
        ctx_len = spec0.model.block_size
        plain = build_task("calculator", context=ctx_len, **_opts(self.task_dict(False, False)))
        traced = build_task("calculator", context=ctx_len, **_opts(self.task_dict(True, False)))
        ex, tex = plain.describe()["examples"], traced.describe()["examples"]
        width = max(len(v) for v in ex.values())
        example_lines = "\n".join(
            f"    {ex[k]:<{width}}  {tex[k]}" for k in ex if k[1:] == str(max(plain.lengths))
        )
        lines = [
            "## Calculator: per operator and operand length, with and without traces",
            "",
            f"{context}. Held-out problems per (operator, length) cell: up to"
            f" {self.n_heldout} (10% of a cell at most, so fewer for 1-digit cells); exact"
            " match of the answer, greedy decoding. Numbers: accuracy in %, mean ± std over"
            " seeds; `all` is the micro-average over every decoded problem.",
            "",
            "Examples (longest operands; plain, then with trace):",
            "",
            example_lines,
            "",
            markdown_table(wide),
            "",
            findings(table),
            "",
            image(png, "calculator"),
            "",
            f"Files: `calculator.csv` (this table, long form), `calculator_by_cell.csv` (per"
            f" seed and run), `calculator.png`, `runs.jsonl`. {wall_times(records, self.elapsed())}"
            + (f"; {n_div} diverged run(s) left out." if n_div else "."),
            "",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _opts(task: dict) -> dict:
    return {k: v for k, v in task.items() if k not in ("name", "data")}


def cell_frame(records, conditions=CONDITIONS) -> pd.DataFrame:
    """From the runs' records alone: one row per (finished run, way of scoring, cell), read
    from the `evals` each run wrote; rows in condition, then seed order."""
    rank = {c[0]: i for i, c in enumerate(conditions)}
    mine = sorted(
        (r for r in records if r.variant in rank and r.status == "ok"),
        key=lambda r: (rank[r.variant], r.seed),
    )
    rows = []
    for rec in mine:
        label, by_cell = rec.variant, rec.evals.get("by_cell", {})
        for ev in EVALS[label]:
            for r in by_cell.get(ev, []):
                rows.append(
                    {
                        "condition": label,
                        "seed": rec.seed,
                        "run_id": rec.run_id,
                        **r,
                    }
                )
    cells = pd.DataFrame(rows)
    if cells.empty:
        raise ValueError("calculator study: no run finished with its evaluation (all diverged?)")
    return cells


def _over_seeds(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and std of `accuracy` over seeds per `keys` (n: problems per seed)."""
    return (
        frame.groupby(keys, sort=False)
        .agg(
            n=("n", "first"),
            seeds=("seed", "nunique"),
            accuracy_mean=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
        )
        .reset_index()
    )


def summary_table(cells: pd.DataFrame, conditions) -> pd.DataFrame:
    """Mean and std over seeds per (condition, trace_eval, op, length), plus op='all' rows
    (accuracy over every decoded problem of the run, then mean over seeds)."""
    cells = cells[cells["n"] > 0]
    per = _over_seeds(cells, ["condition", "trace_eval", "op", "length"])
    runs = (
        cells.groupby(["condition", "trace_eval", "seed"], sort=False)
        .agg(n=("n", "sum"), correct=("correct", "sum"))
        .reset_index()
    )
    runs["accuracy"] = runs["correct"] / runs["n"]
    overall = _over_seeds(runs, ["condition", "trace_eval"])
    overall["op"] = "all"
    overall["length"] = 0
    out = pd.concat([per, overall], ignore_index=True)
    cond_rank = {c[0]: i for i, c in enumerate(conditions)}
    op_rank = {o: i for i, o in enumerate("+-*/")} | {"all": 9}
    out = out.sort_values(
        by=["condition", "trace_eval", "op", "length"],
        key=lambda s: s.map(cond_rank) if s.name == "condition"
        else s.map(op_rank) if s.name == "op" else s,
    )  # fmt: skip
    return out[CSV_COLUMNS].reset_index(drop=True)


def _pct(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{100 * mean:.0f}" + (f" ± {100 * std:.0f}" if np.isfinite(std) else "")


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (op, length), one column per evaluated condition."""
    t = table.copy()
    t["column"] = [
        COLUMN.get((c, e), f"{c} ({e})")
        for c, e in zip(t["condition"], t["trace_eval"], strict=True)
    ]
    t["value"] = [_pct(m, s) for m, s in zip(t["accuracy_mean"], t["accuracy_std"], strict=True)]
    t["cell"] = [
        "all" if op == "all" else f"{op} {int(L)}-digit"
        for op, L in zip(t["op"], t["length"], strict=True)
    ]
    t["n"] = t["n"].astype(int)
    order_cols = list(dict.fromkeys(t["column"]))
    wide = t.pivot_table(
        index="cell", columns="column", values="value", aggfunc="first", sort=False
    )
    n = t.drop_duplicates("cell").set_index("cell")["n"]
    wide = wide[order_cols]
    wide.insert(0, "problems", n.reindex(wide.index).astype(str))
    wide = wide.reset_index().rename(columns={"cell": "op, operand length"})
    return wide.fillna("–")


def findings(table: pd.DataFrame) -> str:
    """Plain sentences with the numbers: overall per condition, best/worst cells."""
    overall = table[table["op"] == "all"]
    parts = []
    for _, r in overall.iterrows():
        name = COLUMN.get((r["condition"], r["trace_eval"]), r["condition"])
        parts.append(f"{name} {100 * r['accuracy_mean']:.1f}%")
    text = "Overall exact match: " + ", ".join(parts) + "."
    per = table[table["op"] != "all"]
    for cond, ev in [("plain", "none"), ("trace", "generated")]:
        sub = per[(per["condition"] == cond) & (per["trace_eval"] == ev)]
        if sub.empty:
            continue
        by_op = sub.groupby("op", sort=False)["accuracy_mean"].mean()
        ops = ", ".join(f"{op} {100 * v:.0f}%" for op, v in by_op.items())
        text += f" {COLUMN[(cond, ev)]}, mean over lengths per operator: {ops}."
    return text


def figure(table: pd.DataFrame, path: Path, context: str) -> Path:
    """Heatmaps of accuracy (op × operand length), one panel per evaluated condition."""
    per = table[table["op"] != "all"].copy()
    per["column"] = [
        COLUMN.get((c, e), f"{c} ({e})")
        for c, e in zip(per["condition"], per["trace_eval"], strict=True)
    ]
    columns = list(dict.fromkeys(per["column"]))
    ops = [o for o in "+-*/" if o in set(per["op"])]
    lengths = sorted(set(per["length"].astype(int)))
    with canvas((2.2 + 2.3 * len(columns), 3.6), style="white") as fig:
        axes = np.atleast_1d(fig.subplots(1, len(columns), sharey=True))
        for i, (ax, col) in enumerate(zip(axes, columns, strict=True)):
            sub = per[per["column"] == col]
            grid = (
                sub.pivot_table(index="op", columns="length", values="accuracy_mean").reindex(
                    index=ops, columns=lengths
                )
                * 100
            )
            sns.heatmap(
                grid, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".0f",
                cbar=i == len(columns) - 1, cbar_kws={"label": "exact match (%)"},
                linewidths=0.5, linecolor="white",
            )  # fmt: skip
            ax.set_title(col, fontsize=10)
            ax.set_xlabel("operand digits")
            ax.set_ylabel("operator" if i == 0 else "")
            ax.tick_params(axis="y", rotation=0)
        title = f"Calculator: held-out exact match per cell\n{context}"
        caption = "Mean over seeds. 'generated': the model writes its own trace; 'given': the"
        caption += " true trace is part of the prompt."
        return save_figure(fig, path, caption, bottom=0.05, title=title)


STUDY = CalculatorStudy()
