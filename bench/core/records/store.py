"""Writing run records and reading them back: crash-safe appends to ``runs.jsonl``, one file
per run on clusters, and atomic file writes.

A sweep is many independent training runs, possibly in several processes or on several
machines. Each run appends one JSON line to ``<out_dir>/runs.jsonl``. The design goals:

* **Resume**: a run's id is a hash of its spec, so a restarted sweep can skip every spec whose
  id is already in the file (:func:`finished_ids`) without any other bookkeeping.
* **Concurrency**: several writers may append to the same file; each line is written whole
  under an exclusive ``flock``, so lines never interleave.
* **Crashes**: a writer killed mid-write can at worst leave a trailing half line. The next
  writer starts on a fresh line, and readers skip (with a warning) lines that do not parse,
  so one crash never loses the other records. Lines that parse but are no complete record
  (:func:`validate_record`, e.g. a hand-written stub) are skipped the same way, so they
  neither break the tables nor count as finished runs nor shadow a record with their id.
* **Merging**: results copied from several machines into subfolders are read together by
  pointing :func:`load_records` at the parent directory.
* **Clusters**: ``flock`` is per host and ``O_APPEND`` is not atomic across NFS clients, so
  jobs on a cluster write one file per run instead, ``<out_dir>/runs/<run_id>.json``
  (:func:`write_run_record`: temp file + rename, so a killed job leaves no half record and no
  lock is needed). :func:`load_records` on a directory reads both kinds and merges them.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from bench.core.records.record import RecordError, RunRecord

CACHE_ENV = "TRANSFORMER_BENCH_CACHE"


def cache_dir() -> Path:
    """This machine's cache (the unpacked corpus, the measured peak FLOP/s):
    $TRANSFORMER_BENCH_CACHE, else ~/.cache/transformer-bench/."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "transformer-bench"


RUNS_FILE = "runs.jsonl"
RUNS_DIR = "runs"  # <out_dir>/runs/<run_id>.json: one record per file (cluster jobs)
_RUN_FILE_NAME = re.compile(r"^[0-9a-f]{12}\.json$")


class RecordWarning(UserWarning):
    """A record line or file was skipped: it does not parse or is not a complete record."""


# A skipped record is told once per process, as one line on stderr (`_skipped`). The warnings
# machinery would add the source line of the call and repeat it for every caller that reads
# the file (a sweep reads it for resume and again for the summary), so it does not display
# RecordWarning; it still raises or records it (-W error, pytest.warns, catch_warnings).
warnings.filterwarnings("ignore", category=RecordWarning, append=True)
_told: set[str] = set()


def _write_all(fd: int, data: bytes) -> None:
    # One os.write normally writes everything to a regular file; loop in case it does not
    # (signal, huge line). We hold the lock, so a continued write cannot interleave.
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN or infinity as None: JSON has no such numbers, and strict parsers
    reject Python's bare `NaN` (records written before this still read: the reader takes it)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def append_record(path: str | Path, record: RunRecord | dict) -> None:
    """Append ``record`` as one JSON line, atomically with respect to other appenders.

    The line is serialised completely before the file is touched (so a serialisation error
    writes nothing), then written with a single ``os.write`` on an ``O_APPEND`` descriptor
    under an exclusive ``fcntl.flock``, then fsync'ed before unlocking. If the file does not
    end with a newline (a previous writer was killed mid-line), a newline is written first so
    the broken fragment stays on its own line, which readers skip, and this record stays
    readable. Parent directories are created. ``flock`` is advisory and per-host: fine for
    local disks; on network filesystems give each machine its own file and merge by directory.
    A write that fails (disk full) is undone (the file cut back to its old length) and raised
    as an OSError naming the file, so the records already there stay whole.
    """
    if isinstance(record, RunRecord):
        record = record.to_dict()
    line = json.dumps(json_safe(record), separators=(",", ":"), allow_nan=False) + "\n"
    data = line.encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_RDWR only so the last byte can be checked with pread on the same descriptor.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        try:
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as err:
            _undo(fd, size)
            raise OSError(err.errno, err.strerror, str(path)) from None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _undo(fd: int, size: int) -> None:
    """Cut a file back to `size` bytes after a failed append (best effort: the disk is full)."""
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def run_file(out_dir: str | Path, rid: str) -> Path:
    """Where :func:`write_run_record` puts the record of run ``rid``."""
    return Path(out_dir) / RUNS_DIR / f"{rid}.json"


def write_run_record(out_dir: str | Path, record: RunRecord | dict) -> Path:
    """Write ``record`` as its own file ``<out_dir>/runs/<run_id>.json``, atomically.

    For writers that cannot rely on :func:`append_record`'s lock (jobs on several machines
    sharing an NFS directory): each run has its own file, written by one job, and the rename
    is atomic on the server, so readers see the whole record or none. A rerun replaces it.
    """
    if isinstance(record, RunRecord):
        record = record.to_dict()
    path = run_file(out_dir, record["run_id"])
    write_json_atomic(path, record)
    return path


def _is_run_file(f: Path) -> bool:
    return f.parent.name == RUNS_DIR and bool(_RUN_FILE_NAME.match(f.name)) and f.is_file()


def _iter_files(path_or_dir: str | Path) -> list[Path]:
    p = Path(path_or_dir)
    if p.is_dir():
        logs = [f for f in p.rglob(RUNS_FILE) if f.is_file()]
        singles = [f for f in p.rglob("*.json") if _is_run_file(f)]

        # directory by directory; in each, runs.jsonl first, then its runs/*.json
        def order(f: Path):
            log = f.name == RUNS_FILE
            return (f.parent.parts if log else f.parent.parent.parts, 0 if log else 1, f.name)

        return sorted(logs + singles, key=order)
    if p.is_file():
        return [p]
    return []


def _skipped(where: str, reason: str) -> None:
    """Tell that the record at ``where`` (``file`` or ``file:line``) was skipped and why: once
    per process on stderr, and as a RecordWarning on every read (see RecordWarning)."""
    message = f"{where}: skipped: {reason}"
    if message not in _told:
        _told.add(message)
        print(f"warning: {message}", file=sys.stderr)
    warnings.warn(message, RecordWarning, stacklevel=2)


def _parse(text: bytes) -> tuple[RunRecord | None, str | None]:
    """(record, None) for a complete record, else (None, why it is skipped)."""
    try:
        obj = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not valid JSON ({exc})"
    try:
        return RunRecord.from_dict(obj), None
    except RecordError as err:
        return None, str(err)


def _read_file(path: Path) -> list[RunRecord]:
    if path.suffix == ".json":  # one runs/<run_id>.json
        rec, reason = _parse(path.read_bytes())
        if reason:
            _skipped(str(path), reason)
        return [rec] if rec is not None else []
    records = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue  # blank lines are harmless (e.g. hand edits); skip silently
            rec, reason = _parse(text)
            if reason:
                _skipped(f"{path}:{lineno}", reason)
                continue
            records.append(rec)
    return records


def load_records(path_or_dir: str | Path) -> list[RunRecord]:
    """All records from a ``runs.jsonl`` file (or one ``runs/<run_id>.json``), or from every
    ``runs.jsonl`` and every ``runs/<run_id>.json`` below a directory.

    Files are read in sorted path order (in each directory its ``runs.jsonl`` before its
    ``runs/*.json``), lines in file order. Records sharing a ``run_id`` are
    de-duplicated keeping the LAST one read (a forced rerun appended later supersedes the
    earlier result); it takes the position of that last occurrence. Lines that do not parse
    and records that are not complete (:func:`validate_record`) are skipped before that, so
    they never replace a record, each with one line on stderr naming ``file:line`` and the
    reason (and a :class:`RecordWarning`). A missing path gives an empty list.
    """
    merged: dict[str, RunRecord] = {}
    for f in _iter_files(path_or_dir):
        for rec in _read_file(f):
            merged.pop(rec.run_id, None)
            merged[rec.run_id] = rec
    return list(merged.values())


def same_machine(record: RunRecord, machine: dict | None) -> bool:
    """Whether ``record`` was measured on ``machine``: every key of ``machine`` that is not
    None (``device_name``, ``hostname``) equals the record's ``env`` entry. ``None``: any."""
    if not machine:
        return True
    return all(record.env.get(k) == v for k, v in machine.items() if v is not None)


def finished_ids(path: str | Path, machine: dict | None = None, failed: bool = False) -> set[str]:
    """Ids of the records at ``path`` (file or directory); an empty set if it does not exist.

    Every complete record (:func:`load_records` skips the others, so a stub line is trained
    again) counts as finished (the training loop decides what it writes, e.g. whether a
    diverged run is recorded, and ``--force`` reruns regardless), except that with
    ``machine`` a record measured elsewhere does not: its speed and memory are another
    machine's, so this machine trains the run itself (see :func:`same_machine`); and a failed
    run (status ``failed``: its code or environment raised, no result) does not unless
    ``failed``, so the next command retries it (`bench.exec.outcome`).
    """
    return {
        r.run_id
        for r in load_records(path)
        if same_machine(r, machine) and (failed or r.status != "failed")
    }


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` so readers see either the old file or the complete new one.

    The bytes go to a temporary file in the same directory (same filesystem, so the rename is
    atomic), are fsync'ed, then ``os.replace``'d over ``path``. On any error the temporary file
    is removed, and an OSError (disk full, a read-only folder) names ``path``. Parent
    directories are created. The file gets the mode a plain ``open`` would give it (0644 under
    the usual umask), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(err, OSError):  # the same subclass again (errno), now naming `path`
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it: set and restore at once
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (see `write_bytes_atomic`)."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"  # first: no debris
    write_bytes_atomic(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; best effort (not supported everywhere).
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
