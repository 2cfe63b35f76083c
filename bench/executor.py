"""Runs a list of RunSpecs through the one training loop, skipping finished ones (resume).

The local, sequential executor; every entry point (the ablation CLI, the studies, nox -s bench)
goes through `execute`, so records, resume and progress look the same everywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.records import append_record, finished_ids, run_id
from bench.spec import RunSpec
from bench.train import run


def progress_bar(quiet: bool, label: str):
    """A tqdm bar over the fraction of the budget used, showing step, loss and tokens/s."""
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(
        total=1000,
        desc=label,
        leave=True,
        dynamic_ncols=True,
        bar_format=("{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}"),
    )

    def update(info):
        bar.n = min(1000, int(info["progress"] * 1000))
        bar.set_postfix_str(
            f"step {info['step']} loss {info['loss']:.4f} {info['tokens_per_s']:,.0f} tok/s",
            refresh=True,
        )

    return bar, update


def execute(
    specs: list[RunSpec], out: Path, force: bool = False, quiet: bool = False, task=None
) -> tuple[int, int]:
    """Run what is not finished yet; append each record as soon as it exists, so an interrupted
    sweep keeps every finished run. `task` may share one built task among specs that all use
    it; without it each run builds its own. Saved weights go to <out>/checkpoints.
    Returns (runs trained, runs skipped because their record exists)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.jsonl"
    done = set() if force else finished_ids(runs_path)
    ran = skipped = 0
    for i, spec in enumerate(specs, 1):
        rid = run_id(spec.to_dict())
        label = f"[{i}/{len(specs)}] {spec.variant} seed {spec.seed}"
        if rid in done:
            skipped += 1
            if not quiet:
                print(f"{label}: finished earlier ({rid}), skipped", file=sys.stderr)
            continue
        bar, update = progress_bar(quiet, label)
        try:
            record = run(spec, progress=update, task=task, checkpoint_dir=out / "checkpoints")
        finally:
            if bar is not None:
                bar.close()
        append_record(runs_path, record)
        ran += 1
        if record["status"] != "ok":
            print(
                f"{label}: DIVERGED at step {record['diverged_at_step']} (non-finite loss); "
                "recorded, going on",
                file=sys.stderr,
            )
        elif not quiet:
            m = record["metrics"]
            print(
                f"{label}: val_loss {m['val_loss']:.4f}"
                + (f" acc {m['accuracy']:.3f}" if m.get("accuracy") is not None else "")
                + f" step {m['step_ms']:.1f} ms",
                file=sys.stderr,
            )
    return ran, skipped
