"""Study `addition`: does a small transformer learn a+b=c, and does it generalise to longer sums?

    python ablations/run.py --study addition            # results/local/studies/addition/

Design (what is trained, what is tested, and why)
-------------------------------------------------
A problem of *d digits* is written in the `addition` task's format for n_digits = d: both
operands zero-padded to d digits, the sum to d+1 digits (least significant first when
`reverse`), then '$'. "d digits" is the width of the operands, so the d-digit problems are all
pairs (a, b) in [0, 10^d)² (e.g. "005+012=7100$" is a 3-digit problem).

Training mixes widths 1, 2 and 3 (uniformly per row; shorter rows are padded at the END with '$'
tokens whose targets are ignored, which a causal model cannot see from earlier positions).
Testing covers widths 1 to 5: 1-3 are in-distribution lengths, 4 and 5 are longer than any row
seen in training. A single fixed-width zero-padded format (train n_digits=3, pad 1-digit
problems to "001+002=...") would make "1-digit" problems just a subset of the 3-digit training
distribution and could not express a longer problem at all, so the widths vary instead.

What "length generalisation" can mean for each position scheme:
  * `learned`: the embedding rows for positions beyond the longest training row (12 tokens for
    3 digits; a 5-digit problem needs 18) receive no gradient, only weight decay. Failure at
    4-5 digits is expected by construction; the column is there to show it, not to test it.
  * `rope`: no per-position parameters, but the distances between an answer digit and the
    operand digits it depends on grow with d, so longer problems need relative offsets never
    seen in training.
  * `none` (NoPE): a causal model can still infer positions (e.g. by counting); it has no
    per-position table to run out of.

The task is the `addition` task itself with min_digits=1, n_digits=3, eval_digits=5 (see
bench/tasks/addition.py), so each run evaluates itself at the end and keeps exact match and
digit accuracy per width in its record (`evals`); the table is read from the records alone.

Held-out problems: for each width d the held-out set is exactly the `addition` task's own
held-out set for n_digits=d (fixed seed, the same for every run). Training redraws any pair
(a, b) that is held out at ANY width, compared by value, so neither a held-out string nor the
same sum written at another width is ever trained on (this leaves 79 of the 100 one-digit
problems for training). Widths 4 and 5 are never trained at all.

Compared (one change at a time from the reference): answer digits reversed vs normal order;
loss masked on the prompt vs not; positions learned vs rope vs none. Metrics per width: exact
match (every answer digit and '$' right, greedy decoding) and digit accuracy (fraction of the
d+1 answer digits right at their position), on up to 500 held-out problems per width
(only 10 exist for d=1: the task keeps 90% of the 100 one-digit problems for training).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ablations.studies.base import Study, StudyContext, canvas, image, plus_minus, save_figure
from bench.analysis.tables import markdown_table
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.tasks.addition import VOCAB
from variants.config import preset
from variants.registry import get_variant

TRAIN_DIGITS = (1, 2, 3)
TEST_DIGITS = (1, 2, 3, 4, 5)
N_HELDOUT = 1000  # per width, as in the addition task (capped at 10% of the width's problems)
EVAL_PROBLEMS = 500  # held-out problems decoded per width at scale 1


def task_dict(reverse: bool, mask: bool, eval_problems: int) -> dict:
    """The runs' task: the addition task trained on widths 1-3 and evaluated on 1-5."""
    return {
        "name": "addition",
        "data": None,
        "n_digits": TRAIN_DIGITS[-1],
        "min_digits": TRAIN_DIGITS[0],
        "eval_digits": TEST_DIGITS[-1],
        "reverse": reverse,
        "mask_prompt": mask,
        "n_heldout": N_HELDOUT,
        "eval_problems": eval_problems,
    }


# ----------------------------------------------------------------------------------------------
# the study

# (label, model variant, reverse, mask_prompt): the reference first, then one change each
CONFIGS = (
    ("reference", "baseline", True, True),
    ("normal order", "baseline", False, True),
    ("no prompt mask", "baseline", True, False),
    ("rope", "rope", True, True),
    ("no position", "no-position", True, True),
)
MODEL = dict(n_layer=2, n_head=4, n_embd=64, block_size=32)  # `micro` depth, 2x its width
STEPS = 1500
TRAIN = TrainConfig(batch_size=64, lr=3e-3, eval_every=100, timing_warmup=5, eval_batches=6)


def _describe_config(label: str, variant: str, reverse: bool, mask: bool) -> dict:
    cfg = get_variant(variant).apply(preset("micro"))
    return {
        "config": label,
        "position": cfg.position,
        "answer order": "reversed" if reverse else "normal",
        "loss mask": "answer only" if mask else "every token",
    }


class AdditionStudy(Study):
    name = "addition"
    description = (
        "a+b=c accuracy by digit count (train 1-3, test 1-5 digits): reversed vs normal answer,"
        " prompt mask, learned/rope/no positions"
    )
    one_thread = True

    def __init__(self, model=None, steps=STEPS, train=TRAIN, configs=CONFIGS, eval_problems=None):
        """The defaults are the study; tests pass a smaller model or fewer configurations."""
        self.model = dict(MODEL if model is None else model)
        self.steps, self.train, self.configs = steps, train, tuple(configs)
        self.eval_problems = EVAL_PROBLEMS if eval_problems is None else eval_problems

    def specs(self, ctx: StudyContext) -> list[tuple[tuple, list[RunSpec]]]:
        base = preset("micro", **self.model, vocab_size=len(VOCAB))
        budget = Budget("steps", ctx.steps(self.steps, minimum=20))
        every = max(5, round(self.train.eval_every * min(1.0, ctx.scale)))
        train = dataclasses.replace(self.train, eval_every=every)
        n_eval = max(20, round(self.eval_problems * min(1.0, ctx.scale)))
        out = []
        for conf in self.configs:
            label, variant, reverse, mask = conf
            task = task_dict(reverse, mask, n_eval)
            cfg = get_variant(variant).apply(base).validate()
            specs = [
                RunSpec(variant, cfg, task, budget, train, seed, ctx.device, None)
                for seed in range(ctx.seeds)
            ]
            out.append((conf, specs))
        return out

    def _run(self, ctx: StudyContext) -> str:
        labelled = self.specs(ctx)
        records = ctx.execute([s for _, specs in labelled for s in specs])
        long, curves = frames(records, self.configs)
        table = write_tables(long, ctx.out)
        md_table = markdown_table(_display(table))
        spec0 = labelled[0][1][0]
        context = (
            f"{long['device_name'].iloc[0]} · {spec0.model.n_layer} layers, n_embd "
            f"{spec0.model.n_embd} · {spec0.budget.describe()} · {ctx.seeds} seed(s)"
        )
        png = figure(long, curves, ctx.out / "addition.png", context, self.configs)
        dev = f"{long['device_name'].iloc[0]} ({ctx.device}, {torch.get_num_threads()} thread(s))"
        return self.section(ctx, table, long, md_table, spec0, dev, png)

    def section(self, ctx, table, long, md_table, spec, device, png) -> str:
        m = spec.model
        runs = long.drop_duplicates("run_id")
        train_s, n_runs = float(runs["wall_s"].sum()), len(runs)
        return "\n".join(
            [
                "## Addition: accuracy by number of digits, and longer than trained",
                "",
                "A GPT with "
                f"{m.n_layer} layers, {m.n_head} heads, n_embd {m.n_embd} learns a+b=c from "
                f"problems of 1-3 digits (widths mixed per row, zero-padded within a width) and"
                " is tested on held-out problems of 1-5 digits; 4 and 5 digits are longer than "
                "any training row. Held-out pairs are excluded from training by value at every "
                "width. Compared, one change at a time from the reference (learned positions, "
                "answer reversed, loss on the answer only): the answer in normal order, the "
                "loss on every token, RoPE, and no position information. Exact match: all "
                "answer digits and '$' right under greedy decoding (mean ± std over seeds; the "
                "digit-accuracy columns count answer digits right at their position). Learned "
                "positions cannot represent the positions of a 4- or 5-digit row (their "
                "embedding rows were never trained), so their failure there is by design.",
                "",
                md_table,
                "",
                findings(table, long),
                "",
                image(png, "accuracy by number of digits"),
                "",
                f"Command: `{ctx.command('addition')}` · device: "
                f"{device} · budget: {spec.budget.describe()} per run, batch "
                f"{spec.train.batch_size}, lr {spec.train.lr:g}, {ctx.seeds} seed(s) · training "
                f"time {train_s / 60:.1f} min summed over {n_runs} runs (this invocation: "
                f"{self.elapsed() / 60:.1f} min; finished runs are reused). Per-seed numbers: "
                "`addition_by_digits.csv`.",
                "",
            ]
        )


def frames(records, configs=CONFIGS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From the runs' records alone: one row per (run, width) with its evaluation, and the
    validation curves. A record's configuration is its variant, answer order and loss mask;
    records of no configuration here are left out. Rows come in configuration, then seed order."""
    index = {(v, r, m): i for i, (_, v, r, m) in enumerate(configs)}

    def conf_of(rec):
        task = rec.spec["task"]
        return index.get((rec.variant, task["reverse"], task["mask_prompt"]))

    mine = sorted(
        (r for r in records if conf_of(r) is not None),
        key=lambda r: (conf_of(r), r.seed),
    )
    rows, curves = [], []
    for rec in mine:
        conf = configs[conf_of(rec)]
        metrics, seed = rec.metrics, rec.seed
        for point in rec.curve:
            curves.append({"config": conf[0], "seed": seed, **point})
        by_digits = (rec.evals or {}).get("by_digits")
        if rec.status != "ok" or not by_digits:
            by_digits = {
                str(d): {"exact": math.nan, "digit": math.nan, "n": 0} for d in TEST_DIGITS
            }
        for d, ev in sorted(by_digits.items(), key=lambda kv: int(kv[0])):
            rows.append(
                {
                    **_describe_config(*conf),
                    "seed": seed,
                    "run_id": rec.run_id,
                    "status": rec.status,
                    "digits": int(d),
                    "trained_length": int(d) in TRAIN_DIGITS,
                    "exact_match": ev["exact"],
                    "digit_accuracy": ev["digit"],
                    "n_problems": ev["n"],
                    "val_loss": metrics["val_loss"],
                    "steps": metrics["steps"],
                    "wall_s": metrics["wall_s"],
                    "device_name": rec.env["device_name"],
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(curves)


def write_tables(long: pd.DataFrame, out: Path) -> pd.DataFrame:
    """addition_by_digits.csv (per run and width), addition.csv and addition.md (per
    configuration); returns the per-configuration table."""
    long.to_csv(out / "addition_by_digits.csv", index=False)
    table = summary_table(long)
    Study.write_table(out, "addition", table, _display(table))
    return table


# ----------------------------------------------------------------------------------------------
# table, figure, text


def summary_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: mean and std over seeds of exact match per width, digit
    accuracy per width, and the final validation loss (answer tokens, trained widths)."""
    rows = []
    keys = ["config", "position", "answer order", "loss mask"]
    for key, g in long.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        per_seed = g.drop_duplicates("seed")
        row["seeds"] = len(per_seed)
        row["diverged"] = int((per_seed["status"] != "ok").sum())
        row["val_loss_mean"] = per_seed["val_loss"].mean()
        row["val_loss_std"] = per_seed["val_loss"].std(ddof=1) if len(per_seed) > 1 else np.nan
        for d, gd in g.groupby("digits"):
            row[f"exact_{d}d_mean"] = gd["exact_match"].mean()
            row[f"exact_{d}d_std"] = gd["exact_match"].std(ddof=1) if len(gd) > 1 else np.nan
        for d, gd in g.groupby("digits"):
            row[f"digit_acc_{d}d_mean"] = gd["digit_accuracy"].mean()
        row["n_problems"] = "/".join(str(int(v)) for v in g.groupby("digits")["n_problems"].first())
        rows.append(row)
    return pd.DataFrame(rows)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    for col in ("config", "position", "answer order", "loss mask"):
        out[col] = table[col]
    out["val loss"] = [
        plus_minus(m, s, ".3f")
        for m, s in zip(table["val_loss_mean"], table["val_loss_std"], strict=True)
    ]
    for d in TEST_DIGITS:
        mark = "" if d in TRAIN_DIGITS else "*"
        out[f"exact {d}d{mark} %"] = [
            plus_minus(100 * m, 100 * s, ".1f")
            for m, s in zip(table[f"exact_{d}d_mean"], table[f"exact_{d}d_std"], strict=True)
        ]
    for d in TEST_DIGITS:
        if d not in TRAIN_DIGITS:
            out[f"digits {d}d* %"] = [
                plus_minus(100 * m, np.nan, ".1f") for m in table[f"digit_acc_{d}d_mean"]
            ]
    return out


def findings(table: pd.DataFrame, long: pd.DataFrame) -> str:
    """Plain-language reading of the numbers (whatever they turn out to be)."""
    t = table.set_index("config")
    in_dist = [f"exact_{d}d_mean" for d in TRAIN_DIGITS]
    longer = [f"exact_{d}d_mean" for d in TEST_DIGITS if d not in TRAIN_DIGITS]
    t["in_dist"] = t[in_dist].mean(axis=1)
    t["longer"] = t[longer].mean(axis=1) if longer else np.nan
    if "reference" not in t.index:
        return ""
    ref = t.loc["reference"]
    lines = []

    def cmp(label, what):
        if label not in t.index:
            return
        r = t.loc[label]
        lines.append(
            f"- {what}: exact match on 1-{TRAIN_DIGITS[-1]} digits "
            f"{100 * r['in_dist']:.1f}% vs {100 * ref['in_dist']:.1f}% for the reference; "
            f"{TRAIN_DIGITS[-1]} digits alone {100 * r[f'exact_{TRAIN_DIGITS[-1]}d_mean']:.1f}%"
            f" vs {100 * ref[f'exact_{TRAIN_DIGITS[-1]}d_mean']:.1f}%."
        )

    lines.append(
        f"- Reference: {100 * ref['in_dist']:.1f}% exact match on trained lengths "
        f"(mean of 1-{TRAIN_DIGITS[-1]} digits), {100 * ref['longer']:.1f}% on longer ones."
    )
    cmp("normal order", "Answer in normal order (most significant digit first)")
    cmp("no prompt mask", "Loss on every token (prompt not masked)")
    cmp("rope", "RoPE")
    cmp("no position", "No position information")
    per_seed = long[long["digits"] == TRAIN_DIGITS[-1]].groupby("config", sort=False)
    lines.append(
        f"- Per seed, {TRAIN_DIGITS[-1]}-digit exact match (%): "
        + "; ".join(
            f"{c} " + "/".join(f"{100 * v:.0f}" for v in g.sort_values("seed")["exact_match"])
            for c, g in per_seed
        )
        + "."
    )
    split = [c for c, g in per_seed if g["exact_match"].max() - g["exact_match"].min() > 0.5]
    if split:
        lines.append(
            f"- {', '.join(split)}: some seeds learned {TRAIN_DIGITS[-1]}-digit addition and "
            "others had not yet, so this budget ends in the middle of their learning "
            "transition: they learn more slowly than the reference, which does not show they "
            "cannot learn it."
        )
    best = t["longer"].idxmax()
    lines.append(
        f"- Longer than trained ({', '.join(str(d) for d in TEST_DIGITS if d not in TRAIN_DIGITS)}"
        f" digits): exact match at most {100 * t.loc[best, 'longer']:.2f}% ({best}); digit "
        "accuracy there: "
        + ", ".join(
            f"{c} {100 * t.loc[c, [f'digit_acc_{d}d_mean' for d in TEST_DIGITS if d not in TRAIN_DIGITS]].mean():.0f}%"  # noqa: E501
            for c in t.index
        )
        + " (chance per digit is 10%)."
    )
    return "\n".join(lines)


def figure(long, curves, path: Path, context: str, configs=CONFIGS) -> Path:
    order = [c[0] for c in configs if c[0] in set(long["config"])]
    with canvas((14, 4.6)) as fig:
        axes = fig.subplots(1, 3)
        for ax, col, ylabel in (
            (axes[0], "exact_match", "exact match (all answer tokens)"),
            (axes[1], "digit_accuracy", "digit accuracy (per answer digit)"),
        ):
            sns.lineplot(
                data=long, x="digits", y=col, hue="config", hue_order=order, style="config",
                style_order=order, markers=True, dashes=False, errorbar=("pi", 100), ax=ax,
                legend=ax is axes[0],
            )  # fmt: skip
            ax.axvspan(TRAIN_DIGITS[-1] + 0.5, TEST_DIGITS[-1] + 0.3, color="0.9", zorder=0)
            ax.text(
                (TRAIN_DIGITS[-1] + 0.5 + TEST_DIGITS[-1]) / 2 + 0.1, 1.02, "longer than trained",
                ha="center", va="bottom", fontsize=8, color="0.3",
            )  # fmt: skip
            ax.set_xticks(list(TEST_DIGITS))
            ax.set_ylim(-0.03, 1.08)
            ax.set_xlabel("digits per operand")
            ax.set_ylabel(ylabel)
        axes[0].legend(fontsize=8, title=None, loc="lower left")
        ax = axes[2]
        if not curves.empty:
            c = curves.dropna(subset=["val_loss"])
            sns.lineplot(
                data=c, x="step", y="val_loss", hue="config", hue_order=order, errorbar=("pi", 100),
                ax=ax, legend=False,
            )  # fmt: skip
            ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("validation loss (answer tokens, 1-3 digits)")
        fig.suptitle(f"Addition: held-out accuracy by number of digits\n{context}", fontsize=11)
        caption = (
            "Line: mean over seeds; band: range over seeds (min to max). Trained on 1-3 digit "
            "problems; shaded: longer than any training row (learned positions have no trained "
            "embedding there)."
        )
        return save_figure(fig, path, caption, bottom=0.04)


STUDY = AdditionStudy()
