"""`--tune KEYS`: every arm at its own best training setting (ablations/tune.py), then the
comparison at those bests and at the default."""

from __future__ import annotations

import sys
from pathlib import Path

from ablations.commands.common import default_jobs, run_specs, write_command
from ablations.config import SweepConfig
from ablations.plan import Plan
from bench.records import load_records


def tune_config(cfg: SweepConfig, plan: Plan):
    """The tuning settings, checked at the edge (one line each), or None without --tune."""
    from bench.tune import TuneConfig, check, parse_grid, parse_keys

    t = cfg.tune
    if not t.keys:
        return None
    grid = parse_grid(",".join(repr(float(f)) for f in t.grid))
    tune = TuneConfig(parse_keys(",".join(t.keys)), grid, t.frac, t.seeds)
    lone_baseline = cfg.variants == ["baseline"]  # asked for by name: its own sweep
    if len(plan.variants) * len(plan.optimizers) < 2 and not lone_baseline:
        raise ValueError(
            "--tune compares arms, each at its own best: add --variant NAME or a second "
            "--optimizer (or --variant baseline alone: the baseline's own lr sweep)"
        )
    return check(tune, plan.seeds)


def tune_command(cfg: SweepConfig, tune, plan: Plan, task, out: Path, world: int, argv) -> int:
    """--tune: the tuning stages, then the comparison at each arm's best and at the default."""
    from ablations.tune import NotYet, Tuner, write_results

    jobs = default_jobs(cfg, plan.device, world)
    counts = [0, 0]

    def train(specs):
        ran, skipped = run_specs(cfg, specs, out, task, jobs, force=cfg.force)
        counts[0], counts[1] = counts[0] + ran, counts[1] + skipped
        return ran

    tokens_per_step = plan.train.batch_size * task.seq_len
    sweep = task.recipe.lr_sweep_dir()  # the recipe's own baseline sweep: its runs are reused
    pool = load_records(sweep) if sweep else []
    tuner = Tuner(tune, plan, tokens_per_step, out, train, wait=cfg.executor.wait, pool=pool,
                  pool_name=task.recipe.lr_sweep)  # fmt: skip
    write_command(out, cfg, argv, world, plan.specs(plan.seeds), plan.seeds)
    try:
        outcome = tuner.run()
    except NotYet as err:
        print(f"{err}; rerun this command when they are done", file=sys.stderr)
        return 0
    print(write_results(outcome, tune, plan, out))
    print(
        f"{counts[0]} run(s) trained, {counts[1]} skipped (finished earlier); records in "
        f"{out}, tables in {out / 'tune.md'}",
        file=sys.stderr,
    )
    return 0
