"""The default command: train the plan's runs (and the ladder's), adding seeds for --ci-width,
then write and print the comparison table."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ablations.commands.common import default_jobs, run_specs, write_command
from ablations.config import SweepConfig
from ablations.plan import Plan, ladder_factors
from bench.core.records import load_records, run_id
from bench.exec import distributed
from bench.exec.executor import Tally


def sweep(cfg: SweepConfig, plan: Plan, task, out: Path, world: int, argv):
    """Train the plan's runs (and the ladder's); with --ci-width, add seeds until the 95% CI
    of every Δ val loss is narrower than the target or --max-seeds is reached. Whether to add
    seeds is decided from the CI widths alone, never from the sign or size of a difference.
    Returns (the Tally: runs trained, skipped as finished earlier, held, failed; notes for
    the table). A run that failed is retried by the next command, not by the next round."""
    from bench.analysis.tables import ci_widths

    c = cfg.comparison
    seeds = plan.seeds
    if c.ci_width is not None:
        seeds = max(seeds, 2)  # a CI needs two seeds
    factors = [f for f in ladder_factors(c.ladder) if f != 1.0]
    tokens_per_step = plan.train.batch_size * task.seq_len
    rank0 = not distributed.is_active() or distributed.is_main()
    jobs = default_jobs(cfg, plan.device, world)
    outcome, first, notes = Tally(), True, []
    while True:
        specs = plan.specs(seeds)
        specs += plan.ladder_specs(tuple(factors), seeds, tokens_per_step) if factors else []
        if rank0:
            write_command(out, cfg, argv, world, specs, seeds)
        # --force retrains once, not every round of seeds; a failed run is retried once too
        got = run_specs(cfg, specs, out, task, jobs, force=cfg.force and first, retry_failed=first)
        got.skipped = got.skipped if first else 0  # the first round's count is the one told
        outcome.add(got)
        first = False
        if c.ci_width is None or not cfg.executor.wait:
            return outcome, notes
        ids = {run_id(s.to_dict()) for s in plan.specs(seeds)}
        records = [r for r in load_records(out) if r.run_id in ids]
        widths = ci_widths(records)  # variant -> (CI width, sd of the paired differences)
        worst = max((w for w, _ in widths.values()), default=math.inf)
        if worst <= c.ci_width or seeds >= c.max_seeds:
            reached = "reached" if worst <= c.ci_width else "not reached"
            notes.append(
                f"Seeds were added until the 95% CI of every Δ val loss was narrower than "
                f"{c.ci_width:g} (--ci-width) or --max-seeds {c.max_seeds} was hit; the "
                f"rule looks at CI widths only, never at the sign or size of a difference. "
                f"Target {reached} at {seeds} seeds (widest CI {worst:.4g})."
            )
            return outcome, notes
        seeds = min(c.max_seeds, max(seeds + 1, seeds_for_width(widths, c.ci_width)))
        if rank0 and not cfg.quiet:
            print(
                f"widest 95% CI of Δ val loss is {worst:.4g} > {c.ci_width:g}: "
                f"going to {seeds} seeds",
                file=sys.stderr,
            )


def seeds_for_width(widths: dict, target: float) -> int:
    """Seeds whose 95% t interval would be `target` wide at each variant's observed spread."""
    from scipy import stats as st

    need = 2
    for _, sd in widths.values():
        if not math.isfinite(sd):
            continue
        n = 2
        while n < 10_000 and 2 * st.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > target:
            n += 1
        need = max(need, n)
    return need


def report(cfg: SweepConfig, out: Path, outcome: Tally, notes: list[str]) -> None:
    """The comparison table from every record in `out` (every worker's), printed; or, for
    cluster jobs submitted without waiting, how to make it when they are done."""
    if not cfg.executor.wait and cfg.executor.kind != "local" and (outcome.ran or outcome.held):
        running = f", {len(outcome.held)} running in live jobs" if outcome.held else ""
        print(
            f"{outcome.ran} run(s) submitted, {outcome.skipped} skipped (finished earlier)"
            f"{running}; when the jobs are "
            f"done: python -m bench.report {out}  (or rerun this command for the table)",
            file=sys.stderr,
        )
        return
    from bench.analysis.tables import write_summary

    write_summary(load_records(out), out, notes=notes)
    print((out / "summary.md").read_text())
    print(
        f"{outcome.words()}; records in "
        f"{out / ('runs.jsonl' if cfg.executor.kind == 'local' else 'runs')}, "
        f"table in {out / 'summary.md'}",
        file=sys.stderr,
    )
