"""Runs in this process (under torchrun, on every rank), and what every executor shares: which
machine a record must come from to count as finished here, a run's claim, its progress bar and
what the parent hears of it (the lines printed when a run ends, and failed runs, are
`bench.exec.outcome`). `bench.exec.executor.execute` chooses between this, a worker pool
(`bench.exec.pool`) and a cluster (`bench.exec.slurm`).
"""

from __future__ import annotations

import socket
from pathlib import Path

from bench import measure
from bench.core import claims
from bench.core.records import RunRecord, finished_ids, run_id
from bench.exec import distributed
from bench.exec.outcome import (
    FINISHED,
    HELD,
    TAKEN,
    Tally,
    append_run,
    report,
    skipped,
    train_and_record,
)


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
        "error": record.error,
        "val_loss": m.get("val_loss"),
        "accuracy": m.get("accuracy"),
        "step_ms": m.get("step_ms"),
    }


def take(out: Path, rid: str, force: bool, machine: dict | None, retry_failed=True) -> str:
    """Whether this process trains run `rid` now (TAKEN): it must win the run's claim (else
    HELD: another live process has it), and the run must not have been finished meanwhile by
    another sweep sharing `out` (else FINISHED; `--force`: retrain). A failed run counts as
    finished only when not `retry_failed` (a later round of seeds of the same command)."""
    if not claims.claim(out, rid):
        return HELD
    if not force and rid in finished_ids(out, machine, failed=not retry_failed):
        claims.release(out, rid)
        return FINISHED
    return TAKEN


def run_here(todo, out: Path, quiet: bool, task, force=False, machine=None,
             retry_failed=True, policy=None, trackers=None) -> Tally:  # fmt: skip
    main = distributed.is_main()
    outcome = Tally()
    for label, spec in todo:
        rid = run_id(spec.to_dict())
        got = take(out, rid, force, machine, retry_failed) if main else None
        got = distributed.broadcast_object(got)
        if got != TAKEN:
            outcome.skipped += got == FINISHED
            outcome.held += [label] if got == HELD else []
            skipped(label, got, quiet or not main)
            continue
        bar, update = progress_bar(quiet or not main, label)
        try:
            record = train_and_record(spec, out, policy, append_run, trackers, main=main,
                                      progress=update, task=task)  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
            if main:
                claims.release(out, rid)
        if main:
            report(label, brief(record), quiet)
        outcome.counted(label, brief(record))
    distributed.barrier()  # the records are on disk before any rank reads them
    return outcome
