"""`--study NAME`: a ready-made experiment (ablations/studies) with the command's seeds, scale,
device and executor; its report section goes to <out>/report.md and stdout."""

from __future__ import annotations

import sys
from pathlib import Path

from ablations.commands.common import check_output, default_jobs, plugin_paths
from ablations.config import SweepConfig, TaskSection
from ablations.plan import LOCAL_RESULTS

STUDY_SEEDS = 3  # --study without --seeds


def run_study(cfg: SweepConfig) -> int:
    """Check the study's options, then print its plan (--dry-run) or run it and write its
    report; the command's executor section goes to the study's context as it is."""
    from ablations.studies import StudyContext, get_study
    from bench.measure.env import resolve_device

    name = cfg.study.name
    study = get_study(name)
    out = Path(cfg.out) if cfg.out else LOCAL_RESULTS / "studies" / name
    device = resolve_device(cfg.device).type
    seeds = cfg.comparison.seeds
    ctx = StudyContext(
        out=out,
        device=device,
        seeds=STUDY_SEEDS if seeds is None else seeds,
        scale=cfg.study.scale,
        force=cfg.force,
        quiet=cfg.quiet,
        variants=tuple(cfg.variants),
        sizes=cfg.study.sizes,
        preset=cfg.study.preset,
        dry_run=cfg.study.dry_run,
        task=None if cfg.task == TaskSection() else cfg.task,  # given: a study that takes it
        jobs=default_jobs(cfg, device, 1),
        executor=cfg.executor,
        plugins=plugin_paths(cfg),
    )
    study.check(ctx)
    if ctx.dry_run:
        print(study.plan(ctx))  # nothing trained, nothing written
        return 0
    check_output(out)
    section = study.run(ctx)
    (out / "report.md").write_text(section)
    print(section)
    print(f"study {name}: report in {out / 'report.md'}", file=sys.stderr)
    return 0
