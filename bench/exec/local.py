"""Runs in this process (under torchrun, on every rank), and what every executor shares: which
machine a record must come from to count as finished here, a run's claim, its progress bar and
the line printed when it ends. `bench.exec.executor.execute` chooses between this, a worker pool
(`bench.exec.pool`) and a cluster (`bench.exec.slurm`).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from bench import measure
from bench.core import claims
from bench.core.records import RUNS_FILE, RunRecord, append_record, finished_ids, run_id
from bench.core.train import run
from bench.exec import distributed


class WorkerDied(RuntimeError):
    """A worker process or cluster job ended without a record; finished runs are kept."""


def this_machine(device: str, executor: str = "local") -> dict:
    """What a record must share with this machine to count as a finished run here: the
    device's name (CPU model and core count, or GPU name) and, for runs on this machine, the
    hostname. Cluster jobs run on other nodes of one partition, so there the device name alone
    identifies the machine."""
    return {
        "device_name": measure.device_name(device),
        "hostname": socket.gethostname() if executor == "local" else None,
    }


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


def cpu_cores() -> int:
    """CPUs this process may run on (the affinity mask: what a cgroup or taskset allows)."""
    return measure.usable_cores()


def brief(record: RunRecord) -> dict:
    """What the parent prints about a run that finished elsewhere (small to pickle)."""
    m = record.metrics
    return {
        "run_id": record.run_id,
        "status": record.status,
        "diverged_at_step": record.diverged_at_step,
        "val_loss": m.get("val_loss"),
        "accuracy": m.get("accuracy"),
        "step_ms": m.get("step_ms"),
    }


def report(label: str, brief: dict, quiet: bool) -> None:
    if brief["status"] != "ok":
        print(
            f"{label}: DIVERGED at step {brief['diverged_at_step']} (non-finite loss); "
            "recorded, going on",
            file=sys.stderr,
        )
    elif not quiet:
        print(
            f"{label}: val_loss {brief['val_loss']:.4f}"
            + (f" acc {brief['accuracy']:.3f}" if brief.get("accuracy") is not None else "")
            + f" step {brief['step_ms']:.1f} ms",
            file=sys.stderr,
        )


def take(out: Path, rid: str, force: bool, machine: dict | None) -> bool:
    """Whether this process trains run `rid` now: it must win the run's claim, and the run must
    not have been finished meanwhile by another sweep sharing `out` (`--force`: retrain)."""
    if not claims.claim(out, rid):
        return False
    if not force and rid in finished_ids(out, machine):
        claims.release(out, rid)
        return False
    return True


def elsewhere(label: str, quiet: bool) -> None:
    if not quiet:
        print(f"{label}: finished or in training elsewhere (same folder), skipped", file=sys.stderr)


def run_here(todo, out: Path, quiet: bool, task, force=False, machine=None) -> int:
    main = distributed.is_main()
    ran = 0
    for label, spec in todo:
        rid = run_id(spec.to_dict())
        if not distributed.broadcast_object(take(out, rid, force, machine) if main else None):
            if main:
                elsewhere(label, quiet)
            continue
        bar, update = progress_bar(quiet or not main, label)
        try:
            record = run(spec, progress=update, task=task, checkpoint_dir=out / "checkpoints")
            if main:
                append_record(out / RUNS_FILE, record)
        finally:
            if bar is not None:
                bar.close()
            if main:
                claims.release(out, rid)
        if main:
            report(label, brief(record), quiet)
        ran += 1
    distributed.barrier()  # the records are on disk before any rank reads them
    return ran
