"""What became of each run an executor was given, and runs that fail.

A run whose code raises (a plugin block that fails in `__init__` or `forward`, CUDA out of
memory, a data file that vanished) is one run's fault, not the sweep's: it is recorded with
status ``failed`` and the error's last line (``Type: message``), its traceback goes to
``<out>/errors/<run_id>.txt``, and the sweep goes on, as it does past a diverged run. A failure
is a fault of the code or the environment, not a result, so it is no finished run: the next
run of the same command trains it again and the new record supersedes the failed one
(`bench.core.records.finished_ids`). `KeyboardInterrupt` is no failure: it stops the sweep.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench import measure
from bench.core import resume
from bench.core.records import RUNS_FILE, RunRecord, append_record, run_id
from bench.core.spec import RunSpec
from bench.core.train import run

ERRORS_DIR = "errors"
TAKEN, HELD, FINISHED = "taken", "held", "finished"  # what `take` says of a claim


@dataclass
class Tally:
    """The runs of one `execute`: trained here (or submitted, for cluster jobs not waited for),
    finished earlier (their record was there, or appeared meanwhile), held by another live
    process sharing the folder (not trained here), and failed (recorded, retried by a rerun)."""

    ran: int = 0
    skipped: int = 0
    held: list[str] = field(default_factory=list)  # the runs' labels
    failed: list[str] = field(default_factory=list)  # "label (Type: message)"

    def add(self, other: Tally) -> None:
        self.ran += other.ran
        self.skipped += other.skipped
        self.held += other.held
        self.failed += other.failed

    def counted(self, label: str, brief: dict) -> None:
        """One run trained here (its `brief`), failed or not."""
        self.ran += 1
        if brief["status"] == "failed":
            self.failed.append(f"{label} ({brief['error']})")

    def words(self) -> str:
        """E.g. '3 run(s) trained, 2 skipped (finished earlier), 1 failed: ... '."""
        text = f"{self.ran} run(s) trained, {self.skipped} skipped (finished earlier)"
        held, failed = list(dict.fromkeys(self.held)), list(dict.fromkeys(self.failed))
        if held:
            text += (
                f", {len(held)} held by another process sharing the folder and not trained "
                f"here ({'; '.join(held)}): rerun once it is done"
            )
        if failed:
            text += (
                f", {len(failed)} failed ({'; '.join(failed)}): recorded as failed, a rerun "
                "retries them"
            )
        return text


def error_line(err: BaseException) -> str:
    """The error's last line, as a traceback ends: 'Type: message' (the first line of it)."""
    message = str(err).strip().splitlines()
    return f"{type(err).__name__}: {message[0]}" if message else type(err).__name__


def failed_record(spec: RunSpec, err: BaseException) -> RunRecord:
    """The record of a run that raised: its spec and machine, status failed, no numbers."""
    spec_dict = spec.to_dict()
    return RunRecord(
        run_id=run_id(spec_dict),
        variant=spec.variant,
        seed=spec.seed,
        task=spec.task["name"],
        budget={"mode": spec.budget.mode, "value": spec.budget.value},
        spec=spec_dict,
        status="failed",
        env=measure.environment(spec.device),
        metrics={"val_loss": None},
        curve=[],
        error=error_line(err),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def train_or_fail(spec: RunSpec, out: Path, policy=None, **kwargs) -> RunRecord:
    """`run(spec)`, or the failed record of a run that raised (its traceback in
    <out>/errors/<run_id>.txt, best effort). KeyboardInterrupt is not caught. With `policy`
    (a bench.core.resume.Checkpointing) the run resumes from, and writes, checkpoints in
    <out>/checkpoints/<run_id>/."""
    try:
        return run(spec, checkpoint_dir=out / "checkpoints", checkpointing=policy, **kwargs)
    except Exception as err:  # whatever the run's code raises: one run's fault
        record = failed_record(spec, err)
        try:
            (out / ERRORS_DIR).mkdir(parents=True, exist_ok=True)
            (out / ERRORS_DIR / f"{record.run_id}.txt").write_text(traceback.format_exc())
        except OSError:
            pass  # the record's line says what failed; the traceback is a convenience
        return record


def recorded(out: Path, record: RunRecord, policy) -> None:
    """After a record is written: its run's checkpoints go, unless kept (--keep-checkpoints).
    A failed run keeps them: the rerun that retries it resumes from there."""
    if policy is not None and not policy.keep and record.status != "failed":
        resume.discard(out / "checkpoints", record.run_id)


def append_run(out: Path, record: RunRecord) -> None:
    """Write a record as one line of <out>/runs.jsonl (locked: safe beside other workers)."""
    append_record(out / RUNS_FILE, record)


def keep(out: Path, record: RunRecord, policy, write, trackers=None) -> None:
    """A trained run's record kept: written by `write(out, record)` (`append_run`, or
    `write_run_record` for cluster jobs), its checkpoints dealt with (`recorded`), then
    handed to the `--log` trackers (a bench.exec.trackers.Trackers), after the record is on
    disk, so that a tracker can never lose it."""
    write(out, record)
    recorded(out, record, policy)
    if trackers is not None:
        trackers.log(record)


def train_and_record(spec: RunSpec, out: Path, policy, write, trackers=None, *, main=True,
                     **kwargs) -> RunRecord:  # fmt: skip
    """The one path from a spec to a kept record: `train_or_fail`, then (on rank 0, `main`)
    `keep`. Every rank trains; only rank 0 writes and logs."""
    record = train_or_fail(spec, out, policy, **kwargs)
    if main:
        keep(out, record, policy, write, trackers)
    return record


def report(label: str, brief: dict, quiet: bool) -> None:
    """The line printed when a run ends (failed and diverged runs always)."""
    if brief["status"] == "failed":
        print(
            f"{label}: FAILED ({brief['error']}); recorded, going on (traceback in "
            f"{ERRORS_DIR}/{brief['run_id']}.txt; a rerun retries it)",
            file=sys.stderr,
        )
    elif brief["status"] != "ok":
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


def skipped(label: str, why: str, quiet: bool) -> None:
    """The line for a run this process did not take (`take` said HELD or FINISHED)."""
    if quiet:
        return
    if why == HELD:
        print(f"{label}: held by another live process (same folder), skipped", file=sys.stderr)
    else:
        print(f"{label}: finished meanwhile by another process (same folder), skipped",
              file=sys.stderr)  # fmt: skip
