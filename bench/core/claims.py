"""Claims: a run is trained once, however many sweeps or workers share one output folder.

Finished runs are known from their records, but a sweep reads those once, at its start: two
identical sweeps started into one ``--out`` would both train every run. So before training a
run, a process claims it: it opens ``<out>/claims/<run_id>.claim``, takes an exclusive
``flock`` on it without waiting, and keeps the file open (the lock held) until the run's record
is written. The kernel drops the lock when the process ends, however it ends, so on this host
a claim is live exactly while its lock is held. Nothing in the file is trusted for that: a pid
reused by an unrelated process, a pid of 0 or a file of garbage cannot keep a run from ever
being trained.

``flock`` is per host (other NFS clients may not see it), so the holder also refreshes the
file's time every ``HEARTBEAT_S`` seconds: a claim that names another host counts live only
while that heartbeat is younger than ``STALE_S``. A claim file whose content is no claim is
stale, with one warning line.

Cluster jobs claim their runs too, naming their job: a job that SLURM requeued after a
preemption takes over its own claim at once (the same job id), where another job must wait for
the heartbeat to go stale. `holder` reads a live claim without taking it (a sweep's status).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

CLAIMS_DIR = "claims"
HEARTBEAT_S = 30.0  # how often a holder refreshes its claims' time
STALE_S = 600.0  # another host's claim without a heartbeat for this long is dead

_held: dict[str, int] = {}  # claim path -> the open descriptor that holds its lock
_beat: threading.Thread | None = None


def claim_path(out: str | Path, rid: str) -> Path:
    return Path(out) / CLAIMS_DIR / f"{rid}.claim"


def _holder(path: Path, fd: int) -> dict | None:
    """The claim in the file (None if empty: a holder killed before it wrote); a file that
    holds something else is told once and taken as no claim."""
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return None
    try:
        holder = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        holder = None
    if not isinstance(holder, dict) or not (
        isinstance(holder.get("host"), str) and type(holder.get("pid")) is int  # not a bool
    ):
        print(f"warning: {path} is not a claim (no host and pid); taken as stale", file=sys.stderr)
        return None
    return holder


def _live_elsewhere(path: Path, fd: int, job: str | None = None) -> bool:
    """Whether the unlocked claim in `fd` belongs to a live process on another host: it names
    another host and its heartbeat is fresh. On this host an unlocked claim is dead, and so is
    one of `job` (this very job before SLURM requeued it)."""
    holder = _holder(path, fd)
    if holder is None or holder["host"] == socket.gethostname():
        return False
    if job is not None and holder.get("job") == job:
        return False
    return time.time() - os.fstat(fd).st_mtime < STALE_S


def holder(out: str | Path, rid: str) -> dict | None:
    """The live claim on run `rid` ({"pid", "host"} and "job" for a cluster job), or None where
    no live process holds it. Reads only: the lock is tried and let go at once."""
    path = claim_path(out, rid)
    if not path.exists():
        return None
    with open(path.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held on this host
                return _holder(path, fd) or {"pid": None, "host": socket.gethostname()}
            live = _live_elsewhere(path, fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return _holder(path, fd) if live else None
        finally:
            os.close(fd)


def claim(out: str | Path, rid: str, job: str | None = None) -> bool:
    """Claim run `rid` for this process: True if it is ours to train now. Checking a claim and
    taking it (or taking over a stale one, or one of this same `job` before a requeue) happen
    under one lock of the folder, so two processes never both win the same run."""
    path = claim_path(out, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live process on this host (this one, maybe) holds it
            os.close(fd)
            return False
        if _live_elsewhere(path, fd, job):
            os.close(fd)
            return False
        mine = {"pid": os.getpid(), "host": socket.gethostname()}
        me = json.dumps(mine if job is None else {**mine, "job": job}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        _held[str(path)] = fd
    _start_heartbeat()
    return True


def release(out: str | Path, rid: str) -> None:
    """Drop this process's claim on `rid` (after its record is written, or on failure)."""
    path = claim_path(out, rid)
    if not path.parent.is_dir():
        return
    with open(path.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = _held.pop(str(path), None)
        try:
            path.unlink()  # before the lock goes: no one can take the old file meanwhile
        except FileNotFoundError:
            pass
        if fd is not None:
            os.close(fd)


def _start_heartbeat() -> None:
    global _beat
    if _beat is None or not _beat.is_alive():
        _beat = threading.Thread(target=_heartbeat, name="claims-heartbeat", daemon=True)
        _beat.start()


def _heartbeat() -> None:
    """Refresh the time of every claim this process holds (what another host reads)."""
    while True:
        time.sleep(HEARTBEAT_S)
        for path in list(_held):
            try:
                os.utime(path)
            except OSError:
                pass
