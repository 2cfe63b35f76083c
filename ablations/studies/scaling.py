"""Study `scaling`: data and compute multipliers per model size, read off a loss surface
L(N, D) = E + A·N^(−α) + B·D^(−β) fitted to the baseline on a grid of sizes x token budgets.

    python ablations/run.py --study scaling --variant modern --dry-run   # the plan and its cost
    python ablations/run.py --study scaling --variant modern             # the CPU grid, ~15 min
    python ablations/run.py --study scaling --variant modern --preset h100 --device cuda  # ~1 h
    python ablations/run.py --study scaling --variant rope --sizes 1x64,2x64,3x96,4x128

The baseline is trained at every size of a width/depth ladder (`--sizes LxD,...`: n_layer x
n_embd, heads of 32 dims) on several token budgets (tokens per non-embedding parameter N of the
size, x --scale), each with its own full warm-up + cosine schedule, on tiny Shakespeare or the
command's text (`--task text --data PATH --tokenizer bpe:N`); every
`--variant` and the control `baseline ×2 tokens` (the baseline on twice the variants' tokens,
charged the variants' tokens) at one budget between the grid's. bench/analysis/scaling_law/ fits the
baseline's surface (Chinchilla's approach 3, the exponent-grid + non-negative least-squares recipe
of Besiroglu et al. 2024) and reads each arm at each size as a data multiplier (the tokens the
baseline of that size needs for the arm's loss, over the arm's tokens) and a compute multiplier (the
least compute on the surface, over N: the compute-optimal allocation, that reaches the arm's loss,
over the arm's compute), each with a bootstrap interval over seeds, and
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
estimated at ~60 min at an assumed 25% MFU of the H100's 989 TFLOP/s dense bf16 peak; its
longest run reads tiny Shakespeare's train split 169 times, so give it a corpus: the plan and the
report say how many times the longest run reads the train split, and past 4 epochs (where a
repeated token is worth less than a fresh one, which L(N, D) does not model) the corpus size
that would keep it within 4.

This file is the study, its points and its dry run; its grid (constants, ladders, sizes) is in
scaling_grid.py, its table, report text and figure in scaling_report.py.
"""

from __future__ import annotations

import functools
import json
import math
import textwrap
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from ablations.commands.common import format_seconds
from ablations.config import TaskSection
from ablations.plan import given_options
from ablations.studies.base import Study, StudyContext
from ablations.studies.scaling_grid import (
    CONTROL,
    CONTROL_FACTOR,
    CPU_START_S,
    CPU_TOKENS_PER_S,
    DEFAULT_VARIANTS,
    EVAL_BATCH_SIZE,
    EVAL_BATCHES,
    EVALS_PER_RUN,
    H100_MFU,
    H100_PEAK,
    H100_START_S,
    HEAD_DIM,
    PRESETS,
    TASK,
    VOCAB,
    Arm,
    Ladder,
    Planned,
    model_counts,
    parse_sizes,
    size_config,
    size_label,
)
from ablations.studies.scaling_report import (
    FOOTNOTE,
    display,
    figure,
    flags,
    repetition,
    report,
    task_label,
)
from bench.analysis import scaling_law as scaling
from bench.analysis.tables import markdown_table
from bench.core.records import RunRecord, run_id
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.tasks import build_task
from bench.tasks.text import CharWindowsTask
from variants.config import preset
from variants.registry import get_variant


class ScalingStudy(Study):
    name = "scaling"
    description = "data and compute multipliers per model size from an L(N, D) surface"
    one_thread = True
    takes = frozenset({"--sizes", "--preset", "--dry-run", "--task"})

    def __init__(self, ladder: Ladder | None = None, n_boot: int = 1000, control: bool = True):
        """The default ladder is the preset's; tests pass a micro one (and may leave out the
        2x-tokens control where it is not what they check)."""
        self.ladder, self.n_boot, self.control = ladder, n_boot, control
        self._built: tuple | None = None  # (what it was built from, the task): built once

    def check(self, ctx: StudyContext) -> None:
        super().check(ctx)
        ladder = self._ladder(ctx)
        if ladder.hardware != "cpu" and ctx.device == "cpu" and not ctx.dry_run:
            raise ValueError(
                f"--preset {ctx.preset} is sized for one H100 (days on a CPU): add --device cuda, "
                "or --dry-run to see its plan"
            )
        self.arms(ctx)
        self._task(ctx)  # a bad --data, --tokenizer or task: its one line, before training
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
        task = self._task_spec(ctx)
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
                    spec = RunSpec(arm.variant, cfg, task, budget, train, seed, ctx.device)
                    out.append(Planned(arm, size_label(base), n, spec, model_counts(cfg)[1],
                                       float(charged * per_step)))  # fmt: skip
        return out

    def _task(self, ctx: StudyContext) -> CharWindowsTask:
        """The task every run trains on: tiny Shakespeare, or the command's task section
        (`--task text --data PATH --tokenizer bpe:N`), any language modelling on a stream of
        tokens; built once per task section and context."""
        given = ctx.task or TaskSection(name=TASK["name"])
        key = (json.dumps(asdict(given), sort_keys=True), self._ladder(ctx).block_size)
        if self._built is None or self._built[0] != key:
            name = given.name or TASK["name"]
            task = build_task(
                name, context=key[1], data=given.data, eval_batches=EVAL_BATCHES,
                eval_batch_size=EVAL_BATCH_SIZE, **given.all_options(),
            )  # fmt: skip
            if not isinstance(task, CharWindowsTask):
                raise ValueError(
                    f"--study scaling fits a language model's loss on text; task {name!r} is "
                    "not one: use the default (tiny Shakespeare) or --task text --data PATH"
                )
            self._built = (key, task)
        return self._built[1]

    def _task_spec(self, ctx: StudyContext) -> dict:
        """What each run's spec says of its task: as a sweep on that task says it (the
        default's is TASK, so the committed runs keep their ids)."""
        task, given = self._task(ctx), ctx.task or TaskSection()
        options = given_options(task.options, given.all_options())
        return {"name": given.name or TASK["name"], **task.run_identity(given.data, options)}

    def plan(self, ctx: StudyContext) -> str:
        ladder, task = self._ladder(ctx), self._task(ctx)
        plan = self.planned(ctx, task.vocab_size)
        data = textwrap.fill(repetition(task, plan), width=100)
        return f"{plan_text(self, ctx, ladder, plan)}\n\n{data}"

    def _run(self, ctx: StudyContext) -> str:
        ladder, task = self._ladder(ctx), self._task(ctx)
        plan = self.planned(ctx, task.vocab_size)
        records = ctx.execute(unique_specs(plan), task=task, jobs=ctx.jobs)
        frame = points(plan, records)
        frame.to_csv(ctx.out / "scaling_points.csv", index=False)
        controls = {CONTROL: CONTROL_FACTOR} if self.control else {}
        result = scaling.compute_multipliers(frame, controls=controls, n_boot=self.n_boot)
        result.loso.to_csv(ctx.out / "scaling_loso.csv", index=False)
        table = self.write_table(ctx.out, "scaling", result.cells, display(result), FOOTNOTE)
        device = records[0].device_name if records else ctx.device
        png = figure(frame, result, ctx.out / "scaling.png", f"{device} · {task_label(ctx)}")
        reuse = repetition(task, plan)
        return report(self, ctx, ladder, result, table, records, self.elapsed(), png, reuse)


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
        f"Plan of `{ctx.command(study.name)}{flags(ctx)}` (a dry run: nothing is trained): "
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


STUDY = ScalingStudy()
