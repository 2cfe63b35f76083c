"""What the tests of tests/test_faults*.py share: the CLI in a subprocess, the one-line error."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "ablations" / "run.py")]
FAST = ["--task", "addition", "--model", "micro", "--steps", "6", "--eval-every", "3"]
FAST += ["--batch-size", "8", "--device", "cpu", "--seeds", "1"]


def cli(*args, timeout=300, cwd=ROOT, env=None, stdin=None, fsize=None):
    """The command in a subprocess; `fsize`: no file it writes may grow past that many bytes
    (a write past it fails, EFBIG, as on a full disk)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd, stdin=stdin,
                          preexec_fn=None if fsize is None else _limit(fsize))  # fmt: skip


def _limit(size: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    return limit


def one_line_error(r, *words) -> None:
    """A bad-input exit: status 2, one 'error: ...' line naming each of `words`, no traceback."""
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
