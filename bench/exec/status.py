"""Where the runs of a cluster sweep stand, told when its command is run again.

With `--no-wait` the command returns once the jobs are submitted, and the way to follow them is
to run it again. Before it submits anything, that rerun says of every run whether it is
finished (its record exists), running (a live job holds its claim: which job, on which host),
checkpointed (no job holds it and a checkpoint waits: at which step) or not started. It then
submits only the runs no live job holds: the checkpointed ones resume where they stopped, and a
run a job is training is not trained twice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import claims, resume
from bench.core.records import run_id


@dataclass
class Survey:
    running: list[tuple[str, dict]] = field(default_factory=list)  # (label, claim)
    checkpointed: list[tuple[str, int]] = field(default_factory=list)  # (label, step)
    not_started: list[str] = field(default_factory=list)

    def free(self, todo) -> list:
        """The (label, spec) pairs of `todo` no live job holds: those to submit."""
        held = {label for label, _ in self.running}
        return [(label, spec) for label, spec in todo if label not in held]


def survey(out: Path, todo) -> Survey:
    """Classify the unfinished runs `todo` ((label, spec) pairs)."""
    found = Survey()
    for label, spec in todo:
        rid = run_id(spec.to_dict())
        holder = claims.holder(out, rid)
        if holder is not None:
            found.running.append((label, holder))
            continue
        step = resume.latest_step(Path(out) / "checkpoints", rid)
        if step is not None:
            found.checkpointed.append((label, step))
        else:
            found.not_started.append(label)
    return found


def _where(claim: dict) -> str:
    job = f"job {claim['job']} " if claim.get("job") else ""
    pid = f", pid {claim['pid']}" if claim.get("pid") else ""
    return f"{job}on {claim['host']}{pid}"


def tell(found: Survey, finished: int, quiet: bool) -> None:
    """The status lines (on stderr): the counts, then each running and checkpointed run."""
    if not (found.running or found.checkpointed or finished):
        return  # a first submission: nothing to tell yet
    print(
        f"status: {finished} finished, {len(found.running)} running, "
        f"{len(found.checkpointed)} checkpointed, {len(found.not_started)} not started",
        file=sys.stderr,
    )
    if quiet:
        return
    for label, claim in found.running:
        print(f"  {label}: running ({_where(claim)}), not submitted again", file=sys.stderr)
    for label, step in found.checkpointed:
        print(f"  {label}: checkpointed at step {step}, resumes from there", file=sys.stderr)
