"""Study `scaling`: a compute multiplier per model size, from a power law fitted to the baseline.

    python ablations/run.py --study scaling --variant modern        # the CPU ladder, ~20 min
    python ablations/run.py --study scaling --variant modern --device cuda   # from `small` up
    python ablations/run.py --study scaling --variant rope --sizes 2x64,3x96,4x128,6x128

The baseline, each `--variant` and the baseline trained on twice the tokens (a control that
must read about 2x) are trained at every size of a width/depth ladder (`--sizes LxD,...`:
n_layer x n_embd, heads of 32 dims), each run to the same number of training tokens per
non-embedding parameter (the N of the harness's 6N FLOPs per token) on tiny Shakespeare. The
baseline's final losses against training FLOPs are fitted with L(C) = L∞ + A·C^(−α) and every
other arm is read off that curve at each size (bench/scaling.py): "the baseline would need
k x its compute at this size to reach this loss". Intervals by bootstrap over seeds.

CPU ladder cost (measured here, one thread per run, batch 16 x 64): 1x64 ~180k tok/s,
2x64 ~92k, 3x96 ~26k, 4x128 ~13k tokens/s. At 3.5 tokens per parameter with 3 seeds at the two
smallest sizes and 2 at the others, and four arms' worth of tokens per seed (baseline, one
variant, 2x tokens), that is ~2,300 s of one-thread training, about 20 min on two cores.
"""

from __future__ import annotations

import math
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from ablations.studies.base import Study, StudyContext, save_figure, wall_times
from bench import scaling
from bench.records import RunRecord, run_id
from bench.spec import Budget, RunSpec, TrainConfig
from bench.tables import markdown_table
from bench.tasks import build_task
from variants.config import ModelConfig, preset
from variants.model import GPT
from variants.registry import get_variant

TASK = {"name": "shakespeare", "data": None}
CONTROL = "baseline ×2 tokens"  # the baseline on twice the tokens: must read ~2x
DEFAULT_VARIANTS = ("modern",)
HEAD_DIM = 32


@dataclass(frozen=True)
class Ladder:
    sizes: tuple[tuple[int, int], ...]  # (n_layer, n_embd), smallest first
    block_size: int
    batch_size: int
    tokens_per_param: float  # x --scale
    lr: float
    small_sizes: int = 2  # the first `small_sizes` get --seeds seeds, the others 2

    def seeds_at(self, i: int, seeds: int) -> int:
        return seeds if i < self.small_sizes else min(seeds, 2)


LADDERS = {
    "cpu": Ladder(((1, 64), (2, 64), (3, 96), (4, 128)), 64, 16, 3.5, 2e-3),
    # from `small` (6 x 384, context 256) up; on tiny Shakespeare (1 MB) the larger rungs
    # repeat the data: give a bigger corpus with --data for a GPU ladder worth reading
    "cuda": Ladder(((6, 384), (8, 512), (10, 640), (12, 768)), 256, 64, 20.0, 1e-3),
}


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """--sizes "2x64,3x96,..." -> ((2, 64), (3, 96), ...), smallest compute first; one-line
    ValueError for anything else."""
    sizes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            layers, width = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise ValueError(f"--sizes {part!r} is not LAYERSxWIDTH (e.g. 4x128)") from None
        if layers < 1 or width < 8 or width % 8:
            raise ValueError(f"--sizes {part!r}: layers >= 1 and a width that is a multiple of 8")
        sizes.append((layers, width))
    if len(set(sizes)) < 4:
        raise ValueError(f"--sizes needs 4 or more different sizes for the fit, got {text!r}")
    return tuple(sorted(set(sizes), key=lambda s: s[0] * s[1] ** 2))


def size_config(layers: int, width: int, ladder: Ladder, vocab: int) -> ModelConfig:
    heads = max(1, width // HEAD_DIM) if width % HEAD_DIM == 0 else 1
    return preset("tiny", vocab_size=vocab).replace(
        n_layer=layers, n_embd=width, n_head=heads, block_size=ladder.block_size
    )


def size_label(cfg: ModelConfig) -> str:
    return f"{cfg.n_layer}x{cfg.n_embd}"


@dataclass(frozen=True)
class Arm:
    label: str
    variant: str
    token_factor: float = 1.0


class ScalingStudy(Study):
    name = "scaling"
    description = "compute multiplier per model size from a power law fitted to the baseline"
    one_thread = True

    def __init__(self, ladder: Ladder | None = None, n_boot: int = 1000, control: bool = True):
        """The default ladder is the device's; tests pass a micro one (and may leave out the
        2x-tokens control where it is not what they check)."""
        self.ladder, self.n_boot, self.control = ladder, n_boot, control

    def check(self, ctx: StudyContext) -> None:
        self._ladder(ctx)
        self.arms(ctx)
        if ctx.seeds < 2:
            raise ValueError("--study scaling needs --seeds 2 or more (intervals resample seeds)")

    def _ladder(self, ctx: StudyContext) -> Ladder:
        ladder = self.ladder or LADDERS["cuda" if ctx.device == "cuda" else "cpu"]
        return replace(ladder, sizes=parse_sizes(ctx.sizes)) if ctx.sizes else ladder

    def arms(self, ctx: StudyContext) -> list[Arm]:
        names = [v for v in (ctx.variants or DEFAULT_VARIANTS) if v != "baseline"]
        for v in names:
            get_variant(v)  # one line for an unknown name, before anything trains
        control = [Arm(CONTROL, "baseline", 2.0)] if self.control else []
        return [Arm("baseline", "baseline"), *(Arm(v, v) for v in names), *control]

    def specs(self, ctx: StudyContext, vocab: int) -> list[tuple[Arm, RunSpec]]:
        """Every (arm, spec) of the study, smallest size first."""
        ladder = self._ladder(ctx)
        out = []
        for i, (layers, width) in enumerate(ladder.sizes):
            base = size_config(layers, width, ladder, vocab)
            n = GPT(base).num_params(non_embedding=True)
            for arm in self.arms(ctx):
                cfg = get_variant(arm.variant).apply(base).validate()
                tokens = ladder.tokens_per_param * ctx.scale * n * arm.token_factor
                per_step = ladder.batch_size * ladder.block_size
                steps = max(1, math.ceil(tokens / per_step))
                budget = Budget("tokens", float(steps * per_step))  # whole steps
                train = TrainConfig(
                    batch_size=ladder.batch_size, lr=ladder.lr, eval_every=max(1, steps // 20),
                    eval_batches=8, timing_warmup=5,
                )  # fmt: skip
                for seed in range(ladder.seeds_at(i, ctx.seeds)):
                    out.append((arm, RunSpec(arm.variant, cfg, TASK, budget, train, seed,
                                             ctx.device)))  # fmt: skip
        return out

    def _run(self, ctx: StudyContext) -> str:
        t0 = time.perf_counter()
        ctx.out.mkdir(parents=True, exist_ok=True)
        ladder = self._ladder(ctx)
        task = build_task("shakespeare", context=ladder.block_size, eval_batches=8,
                          eval_batch_size=64)  # fmt: skip
        pairs = self.specs(ctx, task.vocab_size)
        records = ctx.execute([s for _, s in pairs], task=task, jobs=ctx.jobs)
        frame = points(pairs, records)
        frame.to_csv(ctx.out / "scaling_points.csv", index=False)
        result = scaling.compute_multipliers(frame, n_boot=self.n_boot)
        result.multipliers.to_csv(ctx.out / "scaling.csv", index=False)
        table = markdown_table(display(result))
        (ctx.out / "scaling.md").write_text(table + "\n")
        device = records[0].device_name if records else ctx.device
        tpp = ladder.tokens_per_param * ctx.scale
        context = f"{device} · tiny Shakespeare · {tpp:g} tokens/param"
        figure(frame, result, ctx.out / "scaling.png", context)
        return report(self, ctx, ladder, result, table, records, time.perf_counter() - t0)


def points(pairs: list[tuple[Arm, RunSpec]], records: list[RunRecord]) -> pd.DataFrame:
    """One row per finished run: arm, size, seed, training FLOPs, final val loss."""
    by_id = {r.run_id: r for r in records}
    rows = []
    for arm, spec in pairs:
        rec = by_id.get(run_id(spec.to_dict()))
        if rec is None:
            continue
        rows.append({
            "arm": arm.label, "size": size_label(spec.model), "seed": spec.seed,
            "params": rec.metrics["params"],
            "compute": rec.metric("flops_per_token") * rec.metric("tokens"),
            "loss": rec.val_loss,  # NaN for a diverged run
        })  # fmt: skip
    return pd.DataFrame(rows)


def _times(m: float, lo: float, hi: float, extrapolated: bool) -> str:
    if not np.isfinite(m):
        return "∞ (below the fit's L∞)" if m == math.inf else "—"
    return f"{m:.2f}× [{lo:.2f}, {hi:.2f}]" + (" extrap." if extrapolated else "")


def display(result: scaling.ScalingResult) -> pd.DataFrame:
    """Multiplier per arm (rows) and size (columns), with the arm's trend with size."""
    m = result.multipliers
    sizes = list(m["size"].cat.categories)
    rows = []
    for arm, g in m.groupby("arm", sort=False):
        row = {"arm": arm}
        for _, r in g.iterrows():
            cell = _times(r["multiplier"], r["ci_low"], r["ci_high"], r["extrapolated"])
            row[f"{r['size']} (n={r['n_seeds']})"] = cell
        t = result.trends.set_index("arm").loc[arm]
        slope = f"{t['slope']:+.2f} [{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]"
        row["trend (d ln k / d ln C)"] = slope + (f" — {t['flag']}" if t["flag"] else "")
        rows.append(row)
    frame = pd.DataFrame(rows)
    cells = [c for c in frame.columns if c.split(" ")[0] in sizes]
    return frame[["arm", *cells, frame.columns[-1]]]


def fit_text(result: scaling.ScalingResult) -> str:
    f, ci = result.fit, result.fit_ci
    return (
        f"Baseline fit: L(C) = L∞ + A·(C/C0)^(−α) with α = {f.alpha:.3f} "
        f"[{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}], L∞ = {f.l_inf:.3f} "
        f"[{ci['l_inf'][0]:.3f}, {ci['l_inf'][1]:.3f}], A = {f.a:.3f}, C0 = {f.c0:.3g} FLOPs "
        f"(95% bootstrap intervals over seeds, {result.n_boot_used} resamples that could be fit)."
    )


def report(study, ctx, ladder: Ladder, result, table: str, records, wall: float) -> str:
    sizes = ", ".join(f"{layers}x{width}" for layers, width in ladder.sizes)
    flagged = [f"{r.arm} ({r.flag})" for r in result.trends.itertuples() if r.flag]
    return "\n".join([
        "## Compute multiplier across model sizes",
        "",
        f"The baseline, {', '.join(a.label for a in study.arms(ctx)[1:])} trained at sizes "
        f"{sizes} (n_layer x n_embd, heads of {HEAD_DIM} dims, context {ladder.block_size}), "
        f"each to {ladder.tokens_per_param * ctx.scale:g} training tokens per non-embedding "
        f"parameter (the control twice that), batch {ladder.batch_size}, lr {ladder.lr:g} "
        "with the harness's warm-up + cosine schedule, on tiny Shakespeare. C = training FLOPs "
        "(the harness's FLOPs per token × tokens). Each cell: the compute the baseline's fitted "
        "curve needs to reach the arm's mean final val loss at that size, over the compute the "
        "baseline spent there (> 1: the arm is worth that many times the baseline's compute), "
        "with a 95% percentile bootstrap interval over seeds (n = seeds at that size). Trend: "
        "the slope of ln k on ln C across sizes with its bootstrap interval; an interval that "
        "excludes 0 is flagged; 'extrap.': the arm's loss lies outside the losses the baseline "
        "reached, so the curve is extrapolated (always so for the control at the largest size). "
        "Control: 'baseline ×2 tokens' must read about 2 at every size.",
        "",
        table,
        "",
        fit_text(result),
        "",
        f"Flagged trends: {', '.join(flagged) if flagged else 'none'}.",
        "",
        "![loss vs training FLOPs](scaling.png)",
        "",
        f"Command: `{ctx.command(study.name)}{' --sizes ' + ctx.sizes if ctx.sizes else ''}"
        f"{''.join(' --variant ' + v for v in ctx.variants)}` · "
        f"{torch.get_num_threads()} thread(s) per run · {wall_times(records, wall)}. "
        "Points: `scaling_points.csv`; multipliers: `scaling.csv`.",
        "",
    ])  # fmt: skip


def _own_fit(rows: pd.DataFrame) -> scaling.PowerLaw | None:
    try:
        return scaling.fit_power_law(rows["compute"], rows["loss"])
    except ValueError:
        return None


def figure(frame: pd.DataFrame, result: scaling.ScalingResult, path: Path, context: str):
    """Loss vs training FLOPs, log-log: mean ± std per arm and size, the baseline's fitted
    curve (solid) and each other arm's own fit of the same form (dashed, for the eye)."""
    ok = frame[np.isfinite(frame["loss"])]
    arms = list(dict.fromkeys(ok["arm"]))
    pal = dict(zip(arms, sns.color_palette(n_colors=len(arms)), strict=True))
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(7.5, 5.0))
        ax = fig.subplots()
        grid = np.geomspace(ok["compute"].min() / 1.5, ok["compute"].max() * 1.5, 100)
        for arm in arms:
            g = ok[ok["arm"] == arm].groupby("size", sort=False)
            mean, std = g[["compute", "loss"]].mean(), g["loss"].std().fillna(0)
            ax.errorbar(mean["compute"], mean["loss"], yerr=std, fmt="o", capsize=3,
                        color=pal[arm], label=arm)  # fmt: skip
            fit = result.fit if arm == scaling.BASELINE else _own_fit(ok[ok["arm"] == arm])
            if fit is None:
                continue  # an arm its own curve does not fit: points only
            ls = "-" if arm == scaling.BASELINE else "--"
            ax.plot(grid, fit.predict(grid), ls=ls, lw=1.2, color=pal[arm])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C")
        ax.set_ylabel("final validation loss")
        ax.legend(fontsize=8)
        fig.suptitle(f"Loss vs training compute\n{context}", fontsize=11)
        caption = textwrap.fill(
            "Points: mean over seeds, bars ±1 std. Solid: the baseline's fit L∞ + A·C^(−α), "
            "which the multipliers read; dashed: each arm's own fit of the same form.",
            width=110,
        )
        return save_figure(fig, path, caption, bottom=0.06)


STUDY = ScalingStudy()
