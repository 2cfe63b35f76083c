"""Claims: a run is trained once, however many sweeps or workers share one output folder.

Finished runs are known from their records, but a sweep reads those once, at its start: two
identical sweeps started into one ``--out`` would both train every run. So before training a
run, a process claims it by creating ``<out>/claims/<run_id>.claim`` with ``O_EXCL`` (atomic on
a local disk); whoever creates the file trains the run and removes the claim once its record
is written. A claim whose process has died (same host, pid gone) is stale and is taken over,
so a killed sweep never blocks the run forever. A claim from another host cannot be checked
and is respected (cluster jobs write one record file per run and do not use claims).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

CLAIMS_DIR = "claims"


def claim_path(out: str | Path, rid: str) -> Path:
    return Path(out) / CLAIMS_DIR / f"{rid}.claim"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale(path: Path) -> bool:
    """A claim of a process on this host that no longer runs (or an unreadable claim)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # half-written by a process killed between create and write
    if holder.get("host") != socket.gethostname():
        return False
    return not _alive(int(holder.get("pid", -1)))


def claim(out: str | Path, rid: str) -> bool:
    """Claim run `rid` for this process: True if it is ours to train now. Checking a claim and
    taking it (or taking over a stale one) happen under one lock, so two processes never both
    win the same run."""
    path = claim_path(out, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists() and not _stale(path):
            return False
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        path.write_text(json.dumps(me))
        return True


def release(out: str | Path, rid: str) -> None:
    """Drop this process's claim on `rid` (after its record is written, or on failure)."""
    try:
        claim_path(out, rid).unlink()
    except FileNotFoundError:
        pass
