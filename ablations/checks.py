"""Settings that would otherwise be taken silently: an empty value, a flag that does nothing
where it is given, a budget no machine finishes, a ladder rung of a step or two. One line each
(ValueError), before anything is written or trained; `--force` lets a huge budget through.
"""

from __future__ import annotations

import math

from bench.core.spec import BUDGET_FLAGS

MAX_STEPS = 1e9  # steps of one run past which a budget is taken for a typo
MAX_DAYS = 30  # the same, for the time all the runs of one command would take at best
MIN_RUNG_STEPS = 10  # a ladder rung shorter than this fits no loss curve
# FLOP/s no single CPU or GPU here exceeds: a time estimate at this speed is a lower bound
OPTIMISTIC_FLOPS = {"cpu": 1e12, "cuda": 2e15}


def check_config(cfg) -> None:
    """The checks of a `SweepConfig` that need no task (called by `SweepConfig.validate`)."""
    _check_empty(cfg)
    _check_idle_flags(cfg)


def _check_empty(cfg) -> None:
    given = {"--out": cfg.out, "--sizes": cfg.study.sizes, "--preset": cfg.study.preset,
             "--task": cfg.task.name, "--model": cfg.model.size}  # fmt: skip
    for flag, value in given.items():
        if value is not None and not str(value).strip():
            raise ValueError(f"{flag} is empty; give a value or leave the flag out")


def _check_idle_flags(cfg) -> None:
    """A flag that changes nothing in this command is an error, as --ranks-per-run is."""
    from ablations.config import SweepConfig

    d, c, t, x = SweepConfig(), cfg.comparison, cfg.tune, cfg.executor
    if not t.keys:
        for key in ("grid", "frac", "seeds"):
            flag = f"--tune-{key}"
            if getattr(t, key) != getattr(d.tune, key):
                raise ValueError(f"{flag} shapes --tune; without --tune KEYS it does nothing")
    if c.ci_width is None and c.max_seeds != d.comparison.max_seeds:
        raise ValueError("--max-seeds caps --ci-width; without --ci-width W it does nothing")
    if not cfg.study.name and cfg.study.scale != d.study.scale:
        raise ValueError("--scale scales a study's budgets; add --study NAME (or use --steps)")
    if x.kind == "local" and not x.wait:
        raise ValueError("--no-wait is for --executor slurm: a local sweep always waits")
    for flag, value in (("--runs-per-job", x.runs_per_job), ("--slurm-cpus", x.slurm.cpus),
                        ("--slurm-time", x.slurm.time_min)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if x.kind == "local" and x.runs_per_job != 1:
        raise ValueError("--runs-per-job is for --executor slurm or submitit-local")
    if x.slurm.gpus is not None and x.slurm.gpus < 0:
        raise ValueError(f"--slurm-gpus must be at least 0, got {x.slurm.gpus}")


def check_budget_size(plan, tokens_per_step: int, factors, force: bool) -> None:
    """Refuse (unless `force`) a budget past MAX_STEPS steps a run or MAX_DAYS for the whole
    command even at OPTIMISTIC_FLOPS, and any ladder rung under MIN_RUNG_STEPS steps."""
    b, rungs = plan.budget, [f for f in factors if f != 1.0]
    steps = None if b.mode == "seconds" else b.value / (1 if b.mode == "steps" else tokens_per_step)
    for f in rungs:
        if steps is not None and round(f * steps) < MIN_RUNG_STEPS:
            raise ValueError(
                f"--ladder {f:g} gives a rung of {max(1, round(f * steps))} step(s) ({f:g} x "
                f"{steps:g}); a rung needs at least {MIN_RUNG_STEPS}: raise the factor or budget"
            )
    if force:
        return
    biggest = max([1.0, *rungs])
    if steps is not None and steps * biggest > MAX_STEPS:
        what = f"{BUDGET_FLAGS[b.mode]} {b.value:g}" + (f" x --ladder {biggest:g}" * (biggest > 1))
        days = _seconds(plan, steps * biggest, tokens_per_step) / 86400
        raise ValueError(
            f"{what} is {steps * biggest:.3g} steps for one run (more than {MAX_STEPS:.0e}; at "
            f"least {days:.3g} days{_at(plan.device, steps)}): a typo? Pass --force to train it "
            "anyway"
        )
    runs = plan.seeds * (len(plan.specs(1)) + len(rungs))
    seconds = _seconds(plan, steps, tokens_per_step) * (len(plan.specs(1)) + sum(rungs))
    seconds *= plan.seeds
    if seconds > MAX_DAYS * 86400:
        raise ValueError(
            f"{runs} run(s) of this budget would take at least {seconds / 86400:.3g} days "
            f"(more than {MAX_DAYS}){_at(plan.device, steps)}: a typo? Pass --force to train anyway"
        )


def _seconds(plan, steps: float | None, tokens_per_step: int) -> float:
    """A lower bound on one run's seconds: the budget itself, or its training FLOPs at
    OPTIMISTIC_FLOPS (the baseline's count, from a model built on the meta device)."""
    if steps is None:
        return plan.budget.value
    import torch

    from bench.measure import flops_per_token
    from variants import GPT

    with torch.device("meta"):
        model = GPT(plan.variants[0][1])
    per_token = flops_per_token(model, plan.variants[0][1].block_size)
    return steps * tokens_per_step * per_token / OPTIMISTIC_FLOPS.get(plan.device, math.inf)


def _at(device: str, steps) -> str:
    if steps is None:
        return ""
    return f" at {OPTIMISTIC_FLOPS.get(device, math.inf):.0e} FLOP/s, faster than any {device} here"
