"""Study `probes`: a panel of capability probes. Every given variant and the baseline train on
every probe task (bench/tasks: `mqar`, `selective-copy`, `induction`), each at its own recipe,
and the panel (bench.analysis.panel) reads them as a scoreboard of paired Δ accuracy at the
positions that test the capability, with a heatmap.

    python ablations/run.py --study probes                       # the default four variants
    python ablations/run.py --study probes --variant sliding-window --variant rope --seeds 3

A loss averaged over every position hides what a block changes most; these tasks have exact
answers at known positions, so the question each asks is visible: can the model recall a key
it saw many tokens ago (a sliding window cuts that, fewer k/v heads may), copy in order among
noise, complete a repeated sequence (induction), and keep doing so at 2x and 4x the trained
length (position schemes). Verdicts are the tables' (paired by seed, 95% CI, MDE, the learning
guard first); the longer lengths are reported, not tested (the baseline's learned positions
cannot read them, so there is no baseline to pair with).

Cost (README "Capability probes"): one thread a run, ~46 s on mqar (3 layers) and ~23 s on
each of the others (2 layers), so ~93 s per arm and seed; the default four variants and the
baseline at 3 seeds take ~12 min on two cores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import torch

from ablations.studies.base import Study, StudyContext, image, wall_times
from bench.analysis import panel
from bench.analysis.fmt import markdown_table
from bench.core.spec import Budget, Recipe, RunSpec, TrainConfig
from bench.tasks import build_task, task_recipe
from variants.registry import get_variant

PANEL = ("mqar", "selective-copy", "induction")
# what runs without --variant: a window and fewer k/v heads (recall), two position schemes
# (copying, induction and longer rows); README's table adds gqa and no-position
DEFAULT_VARIANTS = ("sliding-window", "mqa", "rope", "alibi")


@dataclass(frozen=True)
class Arm:
    """One row of the scoreboard: a registered variant, with model fields changed over it
    (a control's window: Arm('window 4', 'sliding-window', (('attn_window', 4),)))."""

    label: str
    variant: str
    changes: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Probe:
    """One column: a task (with options over its defaults) and the recipe it trains at (the
    task's own unless given)."""

    task: str
    options: tuple[tuple[str, object], ...] = ()
    recipe: Recipe | None = None


class ProbesStudy(Study):
    name = "probes"
    description = "capability probes: every variant x mqar, selective-copy, induction"
    one_thread = True

    def __init__(self, probes: tuple[Probe, ...] | None = None, arms: tuple[Arm, ...] = ()):
        """The defaults are the panel; tests pass smaller probes and control arms (`arms`,
        trained beside the baseline and any --variant)."""
        self.probes = probes or tuple(Probe(t) for t in PANEL)
        self.extra_arms = tuple(arms)

    def arms(self, ctx: StudyContext) -> list[Arm]:
        names = [v for v in (ctx.variants or DEFAULT_VARIANTS) if v != "baseline"]
        if not ctx.variants and self.extra_arms:
            names = []  # a study given its own arms runs those alone beside the baseline
        return [Arm("baseline", "baseline"), *(Arm(v, v) for v in names), *self.extra_arms]

    def check(self, ctx: StudyContext) -> None:
        super().check(ctx)
        if ctx.seeds < 2:
            raise ValueError("--study probes needs --seeds 2 or more (verdicts pair seeds)")
        for arm in self.arms(ctx):
            get_variant(arm.variant)  # one line for an unknown name, before anything trains

    def specs(self, ctx: StudyContext) -> list[RunSpec]:
        """Every arm x seed on every probe, at the probe's recipe (steps x --scale)."""
        out = []
        for probe in self.probes:
            recipe = probe.recipe or task_recipe(probe.task)
            base = recipe.model_config()
            task = build_task(probe.task, context=base.block_size, **dict(probe.options),
                              eval_batches=recipe.eval_batches,
                              eval_batch_size=recipe.eval_batch_size)  # fmt: skip
            base = base.replace(vocab_size=task.vocab_size)
            steps = ctx.steps(recipe.steps, minimum=10)
            train = TrainConfig(**recipe.train_fields(), eval_every=recipe.eval_every(steps))
            # the options as the task typed them, as a command's plan writes them
            options = json.loads(json.dumps({k: getattr(task.options, k) for k, _ in
                                             probe.options}))  # fmt: skip
            spec_task = {"name": probe.task, "data": None, **options}
            for arm in self.arms(ctx):
                cfg = get_variant(arm.variant).apply(base).replace(**dict(arm.changes))
                cfg = cfg.validate()  # e.g. a window the model cannot take: one line
                budget = Budget("steps", steps)
                out += [RunSpec(arm.label, cfg, spec_task, budget, train, seed, ctx.device)
                        for seed in range(ctx.seeds)]  # fmt: skip
        return out

    def _run(self, ctx: StudyContext) -> str:
        records = ctx.execute(self.specs(ctx), jobs=ctx.jobs)
        cells = panel.panel_cells(records)
        board = panel.scoreboard(records)
        md = self.write_table(ctx.out, "probes", cells, board, panel.footnote(records))
        lengths = panel.length_table(records)
        lengths_md = markdown_table(lengths) if lengths is not None else "(no lengths)"
        if lengths is not None:
            panel.length_cells(records).to_csv(ctx.out / "probes_lengths.csv", index=False)
        png = panel.heatmap(records, ctx.out / "probes.png")
        return report(self, ctx, records, md, lengths_md, png)


def command(ctx: StudyContext, arms: list[Arm]) -> str:
    """The command line that reproduces the study's registered arms (a control's `Arm` with
    changes is a test's, not a flag)."""
    named = [f"--variant {a.variant}" for a in arms if a.label == a.variant != "baseline"]
    return " ".join([ctx.command("probes"), *named])


def report(study: ProbesStudy, ctx: StudyContext, records, md: str, lengths_md: str, png) -> str:
    recipes = []
    for probe in study.probes:
        r = probe.recipe or task_recipe(probe.task)
        r = replace(r, steps=ctx.steps(r.steps, minimum=10), seeds=ctx.seeds)
        opts = ", ".join(f"{k}={v}" for k, v in probe.options) or "its defaults"
        recipes.append(f"- `{probe.task}` ({opts}): {r.describe()}")
    device = records[0].device_name if records else ctx.device
    return "\n".join(
        [
            "## Capability probes",
            "",
            "Every arm against the baseline on each probe: the paired Δ accuracy at the "
            "positions that test the capability [95% CI], the verdict and the MDE (the "
            "baseline's row: its own accuracy).",
            "",
            md,
            "",
            panel.footnote(records),
            "",
            *([image(png, "capability probes heatmap"), ""] if png is not None else []),
            "### At longer lengths",
            "",
            lengths_md,
            "",
            panel.length_footnote(records),
            "",
            "Recipes (the same for every arm of a probe):",
            *recipes,
            "",
            f"Command: `{command(ctx, study.arms(ctx))}` · device: {device} ({ctx.device}, "
            f"{torch.get_num_threads()} thread(s) a run, {ctx.jobs} at once) · "
            + wall_times(records, study.elapsed()),
            "",
        ]
    )


STUDY = ProbesStudy()
