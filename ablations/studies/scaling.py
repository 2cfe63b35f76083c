"""Study `scaling`: data and compute multipliers per model size, read off a loss surface
L(N, D) = E + A·N^(−α) + B·D^(−β) fitted to the baseline on a grid of sizes x token budgets.

    python ablations/run.py --study scaling --variant modern --dry-run   # the plan and its cost
    python ablations/run.py --study scaling --variant modern             # the CPU grid, ~15 min
    python ablations/run.py --study scaling --variant modern --preset h100 --device cuda  # ~1 h
    python ablations/run.py --study scaling --variant rope --sizes 1x64,2x64,3x96,4x128

The baseline is trained at every size of a width/depth ladder (`--sizes LxD,...`: n_layer x
n_embd, heads of 32 dims) on several token budgets (tokens per non-embedding parameter N of the
size, x --scale), each with its own full warm-up + cosine schedule, on tiny Shakespeare; every
`--variant` and the control `baseline ×2 tokens` (the baseline on twice the variants' tokens,
charged the variants' tokens) at one budget between the grid's. bench/scaling.py fits the
baseline's surface (Chinchilla's approach 3, the exponent-grid + non-negative least-squares
recipe of Besiroglu et al. 2024) and reads each arm at each size as a data multiplier (the
tokens the baseline of that size needs for the arm's loss, over the arm's tokens) and a compute
multiplier (the least compute on the surface, over N: the compute-optimal allocation, that
reaches the arm's loss, over the arm's compute), each with a bootstrap interval over seeds, and
the trend of each across sizes. C = training FLOPs per token (bench.measure.flops_per_token:
the matmuls as built, causal attention, the head; 3 x forward) x tokens. Two controls are rows
of every table: the 2x-tokens control must read a data multiplier of 2 at every size, and every
size left out of the fit must be predicted within its interval; when one fails the table says
so instead of giving verdicts.

Cost of the CPU default (`--dry-run` prints it run by run): sizes 1x64, 2x64, 2x96, 3x96 (N =
54k to 339k); the baseline at 2, 4, 8 and 16 tokens per parameter, `--variant` at 3, the
control at 6; 3 seeds at the two smallest sizes, 2 at the others; 60 runs. Estimated from the
one-thread tokens/s of the baseline at batch 16 x 64 measured on this 2-core Xeon (1x64 ~180k,
2x64 ~92k, 3x96 ~26k, 4x128 ~13k tokens/s, about 60 GFLOP/s with these FLOP counts; a size not
measured at their median FLOP rate) plus two evaluations and 3 s of start-up per run: ~1,800 s
of one-thread work, ~15 min on two cores (one one-thread worker each). The same estimate for
the previous fixed-ratio ladder's 30 runs gives 2,340 s of training against 3,565 s measured
with other jobs sharing the CPU (1.5x); at that ratio this grid takes ~22 min. The `h100`
preset (sizes 6x384 = `small` to 12x768 = `medium`'s shape at context 256, 48 runs) is
estimated at ~60 min at an assumed 25% MFU of the H100's 989 TFLOP/s dense bf16 peak; tiny
Shakespeare (1 MB) is repeated many times by its larger runs, so read it as a test of the
machinery there.
"""

from __future__ import annotations

import functools
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

from ablations.commands.common import format_seconds
from ablations.studies.base import Study, StudyContext, save_figure, wall_times
from bench import measure, scaling
from bench.records import RunRecord, run_id
from bench.spec import Budget, RunSpec, TrainConfig
from bench.tables import markdown_table
from bench.tasks import build_task
from variants.config import ModelConfig, preset
from variants.model import GPT
from variants.registry import get_variant

TASK = {"name": "shakespeare", "data": None}
VOCAB = 65  # tiny Shakespeare's characters: the task's vocab_size, for checks and estimates
CONTROL = "baseline ×2 tokens"  # the baseline on 2x the variants' tokens, charged 1x
CONTROL_FACTOR = 2.0  # so it must read a data multiplier of 2
DEFAULT_VARIANTS = ("modern",)
HEAD_DIM = 32
EVAL_BATCHES, EVAL_BATCH_SIZE = 8, 64
EVALS_PER_RUN = 2  # at step 0 and the final one: the study reads final losses only

# What the time estimates assume. CPU: one-thread tokens/s of the baseline at batch 16 x 64,
# measured on this 2-core Xeon; other sizes run at the median FLOP rate of these.
CPU_TOKENS_PER_S = {(1, 64): 180e3, (2, 64): 92e3, (3, 96): 26e3, (4, 128): 13e3}
CPU_START_S = 3.0  # per run: worker, data, model and optimizer set-up
H100_PEAK, H100_MFU = 989.4e12, 0.25  # dense bf16 FLOP/s (bench.measure's table); assumed MFU
H100_START_S = 10.0


@dataclass(frozen=True)
class Ladder:
    sizes: tuple[tuple[int, int], ...]  # (n_layer, n_embd), smallest first
    budgets: tuple[float, ...]  # the baseline's tokens per parameter (x --scale)
    arm_budget: float  # every other arm's (x --scale); the control trains CONTROL_FACTOR x it
    block_size: int
    batch_size: int
    lr: float
    hardware: str = "cpu"  # what the time estimate assumes: "cpu" or "h100"
    small_sizes: int = 2  # the first `small_sizes` get --seeds seeds, the others at most 2

    def seeds_at(self, i: int, seeds: int) -> int:
        return seeds if i < self.small_sizes else min(seeds, 2)


PRESETS = {
    # ~15 min on two cores (see the module docstring)
    "cpu": Ladder(
        sizes=((1, 64), (2, 64), (2, 96), (3, 96)), budgets=(2.0, 4.0, 8.0, 16.0), arm_budget=3.0,
        block_size=64, batch_size=16, lr=2e-3,
    ),
    # `small` (6x384) to `medium`'s shape (12x768) at small's context: ~1 h at 25% MFU, so far
    # below compute-optimal (~20 tokens/param): the data-limited corner of the surface
    "h100": Ladder(
        sizes=((6, 384), (8, 512), (10, 640), (12, 768)), budgets=(0.25, 0.5, 1.0, 2.0),
        arm_budget=0.75, block_size=256, batch_size=64, lr=6e-4, hardware="h100", small_sizes=0,
    ),
}  # fmt: skip


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """--sizes "2x64,3x96,..." -> ((2, 64), (3, 96), ...), smallest compute first; one-line
    ValueError for anything else. Four sizes at least: leaving one out must leave three."""
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


@functools.lru_cache(maxsize=256)
def model_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(non-embedding parameters, training FLOPs per token at its context) of a config, from a
    model built on the meta device: the harness's own counts, without memory or training."""
    with torch.device("meta"):
        model = GPT(cfg)
    return model.num_params(non_embedding=True), measure.flops_per_token(model, cfg.block_size)


@dataclass(frozen=True)
class Arm:
    label: str
    variant: str
    token_factor: float = 1.0  # trains this x the tokens it is charged


@dataclass(frozen=True)
class Planned:
    """One run of the study, with what the analysis charges it."""

    arm: Arm
    size: str
    params: int  # the baseline's N at this size: every arm is read at it
    spec: RunSpec
    flops_per_token: int  # of this arm's model
    charged: float  # tokens the arm is charged (the control: trained tokens / its factor)


class ScalingStudy(Study):
    name = "scaling"
    description = "data and compute multipliers per model size from an L(N, D) surface"
    one_thread = True
    takes = frozenset({"--sizes", "--preset", "--dry-run"})

    def __init__(self, ladder: Ladder | None = None, n_boot: int = 1000, control: bool = True):
        """The default ladder is the preset's; tests pass a micro one (and may leave out the
        2x-tokens control where it is not what they check)."""
        self.ladder, self.n_boot, self.control = ladder, n_boot, control

    def check(self, ctx: StudyContext) -> None:
        super().check(ctx)
        ladder = self._ladder(ctx)
        if ladder.hardware != "cpu" and ctx.device == "cpu" and not ctx.dry_run:
            raise ValueError(
                f"--preset {ctx.preset} is sized for one H100 (days on a CPU): add --device cuda, "
                "or --dry-run to see its plan"
            )
        self.arms(ctx)
        if ctx.seeds < 2:
            raise ValueError("--study scaling needs --seeds 2 or more (intervals resample seeds)")
        for layers, width in ladder.sizes:
            n = model_counts(size_config(layers, width, ladder, VOCAB))[0]
            if len({self._steps(ladder, t, ctx.scale, n) for t in ladder.budgets}) < 3:
                raise ValueError(
                    f"--scale {ctx.scale:g} leaves fewer than 3 different token budgets at size "
                    f"{layers}x{width} (the fit needs 3); raise --scale"
                )

    def _ladder(self, ctx: StudyContext) -> Ladder:
        if self.ladder is not None:
            ladder = self.ladder
        else:
            name = ctx.preset or ("h100" if ctx.device == "cuda" else "cpu")
            if name not in PRESETS:
                raise ValueError(f"unknown --preset {name!r}; valid: {', '.join(PRESETS)}")
            ladder = PRESETS[name]
        return replace(ladder, sizes=parse_sizes(ctx.sizes)) if ctx.sizes else ladder

    def arms(self, ctx: StudyContext) -> list[Arm]:
        names = [v for v in (ctx.variants or DEFAULT_VARIANTS) if v != "baseline"]
        for v in names:
            get_variant(v)  # one line for an unknown name, before anything trains
        control = [Arm(CONTROL, "baseline", CONTROL_FACTOR)] if self.control else []
        return [Arm("baseline", "baseline"), *(Arm(v, v) for v in names), *control]

    @staticmethod
    def _steps(ladder: Ladder, tokens_per_param: float, scale: float, n: int) -> int:
        per_step = ladder.batch_size * ladder.block_size
        return max(1, math.ceil(tokens_per_param * scale * n / per_step))

    def _budgets(self, ctx: StudyContext, ladder: Ladder, n: int):
        """(arm, steps trained, steps charged) at a size of N parameters: the baseline at every
        budget of the grid, the other arms at one (the control at its factor x that)."""
        arms = self.arms(ctx)
        for t in ladder.budgets:
            steps = self._steps(ladder, t, ctx.scale, n)
            yield arms[0], steps, steps
        steps = self._steps(ladder, ladder.arm_budget, ctx.scale, n)
        for arm in arms[1:]:
            yield arm, round(steps * arm.token_factor), steps

    def planned(self, ctx: StudyContext, vocab: int) -> list[Planned]:
        """Every run of the study, smallest size first."""
        ladder = self._ladder(ctx)
        per_step = ladder.batch_size * ladder.block_size
        out = []
        for i, (layers, width) in enumerate(ladder.sizes):
            base = size_config(layers, width, ladder, vocab)
            n = model_counts(base)[0]
            for arm, steps, charged in self._budgets(ctx, ladder, n):
                cfg = get_variant(arm.variant).apply(base).validate()
                train = TrainConfig(
                    batch_size=ladder.batch_size, lr=ladder.lr, eval_every=steps + 1,
                    eval_batches=EVAL_BATCHES, eval_batch_size=EVAL_BATCH_SIZE, timing_warmup=5,
                )  # fmt: skip
                budget = Budget("tokens", float(steps * per_step))
                for seed in range(ladder.seeds_at(i, ctx.seeds)):
                    spec = RunSpec(arm.variant, cfg, TASK, budget, train, seed, ctx.device)
                    out.append(Planned(arm, size_label(base), n, spec, model_counts(cfg)[1],
                                       float(charged * per_step)))  # fmt: skip
        return out

    def _task(self, ctx: StudyContext):
        return build_task("shakespeare", context=self._ladder(ctx).block_size,
                          eval_batches=EVAL_BATCHES, eval_batch_size=EVAL_BATCH_SIZE)  # fmt: skip

    def plan(self, ctx: StudyContext) -> str:
        ladder, vocab = self._ladder(ctx), self._task(ctx).vocab_size
        return plan_text(self, ctx, ladder, self.planned(ctx, vocab))

    def _run(self, ctx: StudyContext) -> str:
        t0 = time.perf_counter()
        ctx.out.mkdir(parents=True, exist_ok=True)
        ladder, task = self._ladder(ctx), self._task(ctx)
        plan = self.planned(ctx, task.vocab_size)
        records = ctx.execute(unique_specs(plan), task=task, jobs=ctx.jobs)
        frame = points(plan, records)
        frame.to_csv(ctx.out / "scaling_points.csv", index=False)
        controls = {CONTROL: CONTROL_FACTOR} if self.control else {}
        result = scaling.compute_multipliers(frame, controls=controls, n_boot=self.n_boot)
        result.cells.to_csv(ctx.out / "scaling.csv", index=False)
        result.loso.to_csv(ctx.out / "scaling_loso.csv", index=False)
        table = markdown_table(display(result))
        (ctx.out / "scaling.md").write_text(f"{table}\n\n{FOOTNOTE}\n")
        device = records[0].device_name if records else ctx.device
        figure(frame, result, ctx.out / "scaling.png", f"{device} · tiny Shakespeare")
        return report(self, ctx, ladder, result, table, records, time.perf_counter() - t0)


def unique_specs(plan: list[Planned]) -> list[RunSpec]:
    """The plan's specs, each once (a control budget on the grid is the grid's run), the most
    expensive first so that parallel workers finish together."""
    by_id = {run_id(p.spec.to_dict()): p for p in plan}
    ordered = sorted(by_id.values(), key=lambda p: -p.flops_per_token * p.spec.budget.value)
    return [p.spec for p in ordered]


def points(plan: list[Planned], records: list[RunRecord]) -> pd.DataFrame:
    """One row per planned run with a record: arm, size, seed, the baseline's N at the size,
    the tokens and compute it is charged, its final val loss (NaN for a diverged run)."""
    by_id = {r.run_id: r for r in records}
    rows = []
    for p in plan:
        rec = by_id.get(run_id(p.spec.to_dict()))
        if rec is not None:
            rows.append({
                "arm": p.arm.label, "size": p.size, "seed": p.spec.seed, "params": p.params,
                "tokens": p.charged, "compute": p.flops_per_token * p.charged,
                "trained_tokens": p.spec.budget.value, "loss": rec.val_loss,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=[*scaling.COLUMNS, "trained_tokens"])


# --------------------------------------------------------------------------- the dry run


def _run_seconds(p: Planned, ladder: Ladder) -> float:
    """Estimated seconds of one run: its training and evaluation FLOPs (an evaluated token is a
    third of a trained one) at the hardware's rate, plus start-up."""
    evaluated = EVALS_PER_RUN * EVAL_BATCHES * EVAL_BATCH_SIZE * ladder.block_size
    flops = p.flops_per_token * (p.spec.budget.value + evaluated / 3)
    if ladder.hardware == "h100":
        return flops / (H100_MFU * H100_PEAK) + H100_START_S
    return flops / _cpu_flop_rate(p.spec.model.n_layer, p.spec.model.n_embd) + CPU_START_S


@functools.lru_cache(maxsize=64)
def _cpu_flop_rate(layers: int, width: int) -> float:
    """One-thread training FLOP/s on this CPU: measured tokens/s x the baseline's FLOPs per
    token at the measured shape (context 64, 65 tokens); the median of those for other sizes."""

    def rate(size):
        cfg = preset("tiny", vocab_size=VOCAB).replace(
            n_layer=size[0], n_embd=size[1], n_head=size[1] // HEAD_DIM, block_size=64
        )
        return CPU_TOKENS_PER_S[size] * model_counts(cfg)[1]

    if (layers, width) in CPU_TOKENS_PER_S:
        return rate((layers, width))
    return float(np.median([rate(s) for s in CPU_TOKENS_PER_S]))


def plan_frame(plan: list[Planned], ladder: Ladder) -> pd.DataFrame:
    """The plan by (arm, size, budget): seeds, FLOPs and estimated seconds over its seeds."""
    rows = [{"arm": p.arm.label, "size": p.size, "N": p.params,
             "tokens/param": p.spec.budget.value / p.params, "tokens": p.spec.budget.value,
             "seed": p.spec.seed, "FLOPs/token": p.flops_per_token,
             "FLOPs": p.flops_per_token * p.spec.budget.value,
             "seconds": _run_seconds(p, ladder)} for p in plan]  # fmt: skip
    frame = pd.DataFrame(rows)
    keys = ["arm", "size", "N", "tokens/param", "tokens", "FLOPs/token"]
    return frame.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"), FLOPs=("FLOPs", "sum"), seconds=("seconds", "sum")
    ).reset_index()  # fmt: skip


def plan_text(study: ScalingStudy, ctx: StudyContext, ladder: Ladder, plan: list) -> str:
    """--dry-run's output: the grid, a table of the runs, the totals and what the estimate
    assumes."""
    frame = plan_frame(plan, ladder)
    table = frame.assign(
        N=frame["N"].map(lambda n: f"{n:,}"), tokens=frame["tokens"].map(lambda t: f"{t:,.0f}"),
        **{"tokens/param": frame["tokens/param"].map(lambda t: f"{t:.2f}"),
           "FLOPs/token": frame["FLOPs/token"].map(lambda f: f"{f:,}"),
           "FLOPs": frame["FLOPs"].map(lambda f: f"{f:.3g}"),
           "seconds": frame["seconds"].map(format_seconds)},
    ).rename(columns={"FLOPs": "FLOPs (all seeds)", "seconds": "est. time"})  # fmt: skip
    jobs = ctx.jobs if ladder.hardware == "cpu" else 1
    per_run = [_run_seconds(p, ladder) for p in plan]
    wall = max(sum(per_run) / jobs, max(per_run))
    sizes = ", ".join(f"{lay}x{wid}" for lay, wid in ladder.sizes)
    where = ("one-thread CPU" if ladder.hardware == "cpu" else "H100") + " time"
    return "\n".join([
        f"Plan of `{ctx.command(study.name)}{_flags(ctx)}` (a dry run: nothing is trained): "
        f"sizes {sizes} (n_layer x n_embd, heads of {HEAD_DIM} dims), context "
        f"{ladder.block_size}, batch {ladder.batch_size}, lr {ladder.lr:g}.",
        "", markdown_table(table), "",
        f"{len(plan)} runs ({len(unique_specs(plan))} distinct), "
        f"{frame['FLOPs'].sum():.3g} training FLOPs; estimated {format_seconds(sum(per_run))} of "
        f"{where}, about {format_seconds(wall)} on {jobs} worker(s).",
        "", textwrap.fill(_assumptions(ladder), width=100),
    ])  # fmt: skip


def _assumptions(ladder: Ladder) -> str:
    evals = f"{EVALS_PER_RUN} evaluations of {EVAL_BATCHES} x {EVAL_BATCH_SIZE} rows per run"
    if ladder.hardware == "h100":
        return (f"Estimate: FLOPs at an assumed {H100_MFU:.0%} MFU of the H100's "
                f"{H100_PEAK / 1e12:.0f} TFLOP/s dense bf16 peak, {evals}, {H100_START_S:g} s of "
                "start-up per run.")  # fmt: skip
    measured = ", ".join(f"{a}x{b} {r / 1e3:.0f}k" for (a, b), r in CPU_TOKENS_PER_S.items())
    median = float(np.median([_cpu_flop_rate(*s) for s in CPU_TOKENS_PER_S]))
    return (f"Estimate: the baseline's one-thread tokens/s at batch 16 x 64 measured on this "
            f"2-core CPU ({measured}) as FLOP rates; other sizes at their median, "
            f"{median / 1e9:.0f} GFLOP/s; {evals}; {CPU_START_S:g} s of start-up per run. Other "
            "jobs on the CPU slow it (the previous ladder took 1.5x its estimate).")  # fmt: skip


def _flags(ctx: StudyContext) -> str:
    given = (
        ("--preset", ctx.preset),
        ("--sizes", ctx.sizes),
        *(("--variant", v) for v in ctx.variants),
    )
    return "".join(f" {flag} {value}" for flag, value in given if value)


# --------------------------------------------------------------------------- table, report

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
    "resolved'. **Controls:** the baseline trained on 2× the tokens but charged 1× must read a "
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


def report(study, ctx, ladder: Ladder, result, table: str, records, wall: float) -> str:
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
        "warm-up + cosine schedule per run, on tiny Shakespeare. The baseline's final losses "
        "are fitted with L(N, D) = E + A·N^(−α) + B·D^(−β) (exponents on a grid, E, A, B by "
        "non-negative least squares: bench/scaling.py). C = training FLOPs per token (the "
        "matmuls as built, causal attention, the head; 3 × forward) × tokens.",
        "",
        table,
        "",
        FOOTNOTE,
        "",
        fit_text(result),
        "",
        *verdict_lines(result),
        "",
        "![loss vs training compute](scaling.png)",
        "",
        f"Command: `{ctx.command(study.name)}{_flags(ctx)}` · "
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
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(8.0, 5.5))
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


STUDY = ScalingStudy()
