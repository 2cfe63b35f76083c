"""Regression tests (issue 22 section 3, items 5 and 6): storage faults and odd things in the
output folder are one line naming the file, never a traceback, and never cost a finished record.
A full disk is simulated two ways: a write that fails with ENOSPC (monkeypatched), and a real
limit on file sizes in a subprocess (RLIMIT_FSIZE: a write past it fails as on a full disk).
"""

from __future__ import annotations

import errno
import json
import os

import pytest
from faults_cli import FAST, cli, one_line_error

ARGS = [*FAST, "--jobs", "1", "--quiet"]


def _storage_error(r, name: str) -> None:
    """Exit 1 with one 'error: cannot write <file>' line naming `name`, no traceback."""
    assert r.returncode == 1, r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if not x.startswith("wall time")]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), r.stderr
    assert name in lines[0] and "Traceback" not in r.stderr


def test_storage_fault_during_a_record_append_corrupts_the_records(tmp_path, monkeypatch):
    """ENOSPC after half the line is written: the file is cut back, the error names it."""
    from bench.core.records import append_record, store

    path = tmp_path / "runs.jsonl"
    append_record(path, {"run_id": "a" * 12, "note": "an earlier record"})
    before = path.read_bytes()

    def half_then_full(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_all", half_then_full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        append_record(path, {"run_id": "b" * 12, "note": "x" * 1000})
    assert caught.value.filename == str(path)
    assert path.read_bytes() == before  # no half line after the earlier record


def test_storage_fault_on_a_full_disk_prints_a_traceback(tmp_path):
    """A real full disk mid-sweep: the record append fails part way; one line, the records
    already there stay whole and no half line is left behind."""
    out = tmp_path / "out"
    assert cli(*ARGS, "--seeds", "2", "--out", str(out)).returncode == 0
    runs = (out / "runs.jsonl").read_bytes()
    assert len((out / "command.json").read_bytes()) * 1.4 + 200 < len(runs)  # what fails first
    r = cli(*ARGS, "--seeds", "3", "--out", str(out), fsize=len(runs) + 100)
    _storage_error(r, str(out / "runs.jsonl"))
    assert (out / "runs.jsonl").read_bytes() == runs


def test_storage_fault_leaves_command_json_truncated(tmp_path):
    out = tmp_path / "out"
    assert cli(*ARGS, "--out", str(out)).returncode == 0
    old = (out / "command.json").read_text()
    r = cli(*ARGS, "--seeds", "4", "--out", str(out), fsize=len(old) + 200)
    _storage_error(r, str(out / "command.json"))
    assert (out / "command.json").read_text() == old  # the old file, whole
    assert json.loads(old)["seeds"] == 1


def test_storage_fault_writing_the_summary_prints_a_traceback(tmp_path):
    out = tmp_path / "out"
    assert cli(*ARGS, "--out", str(out)).returncode == 0
    small = max(len((out / f).read_bytes()) for f in ("command.json", "config.toml", "summary.csv"))
    summary = (out / "summary.md").read_text()
    assert small + 100 < len(summary)
    r = cli(*ARGS, "--out", str(out), fsize=small + 100)  # every run skipped; then the tables
    _storage_error(r, str(out / "summary.md"))
    assert (out / "summary.md").read_text() == summary


def test_storage_fault_when_out_turns_read_only_mid_sweep(tmp_path, monkeypatch, capsys):
    """The folder turns read-only (EROFS) after the checks: one line naming the file it could
    not write, exit 1, no traceback (in process: a test run as root ignores chmod)."""
    from ablations.run import main
    from bench.core.records import store

    real_open, out = os.open, tmp_path / "out"

    def read_only(path, flags, *a, **kw):
        if str(path).endswith("runs.jsonl") and flags & os.O_APPEND:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(store.os, "open", read_only)
    assert main([*ARGS, "--out", str(out)]) == 1
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert err == [
        f"error: cannot write {out / 'runs.jsonl'}: Read-only file system; every finished run is "
        "kept: free the disk (or make the folder writable) and rerun the same command to resume"
    ]


# ---------------------------------------------------------------------------------------------
# 6. odd things where the command writes or reads: one line each, no traceback, no hang


def _odd(tmp_path, case: str) -> tuple[list[str], str]:
    """Set up `case` under tmp_path; (the flags that meet it, a word its error line names)."""
    out = tmp_path / "out"
    out.mkdir()
    if case in ("summary.md", "config.toml"):
        (out / case).mkdir()
    elif case == "claims":
        (out / case).write_text("")
    elif case == "runs.jsonl":
        os.mkfifo(out / case)
    elif case == "config-loop":
        (tmp_path / "a.toml").symlink_to(tmp_path / "b.toml")
        (tmp_path / "b.toml").symlink_to(tmp_path / "a.toml")
        return ["--config", str(tmp_path / "a.toml"), "--out", str(out)], "a.toml"
    elif case == "config-fifo":
        os.mkfifo(tmp_path / "sweep.toml")
        return ["--config", str(tmp_path / "sweep.toml"), "--out", str(out)], "sweep.toml"
    elif case == "plugin-txt":
        (tmp_path / "notpy.txt").write_text("x = 1\n")
        return ["--plugin", str(tmp_path / "notpy.txt"), "--out", str(out)], "notpy.txt"
    return ["--out", str(out)], case


@pytest.mark.parametrize(
    "case",
    ["summary.md", "config.toml", "claims", "runs.jsonl", "config-loop", "config-fifo",
     "plugin-txt"],
)  # fmt: skip
def test_odd_out_contents_give_a_traceback_or_hang(tmp_path, case):
    flags, word = _odd(tmp_path, case)
    r = cli(*ARGS, *flags, timeout=60)  # a FIFO opened for reading or appending would hang
    one_line_error(r, word)
    assert not (tmp_path / "out" / "command.json").exists()  # refused before anything ran
