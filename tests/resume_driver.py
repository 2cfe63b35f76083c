"""Trains one run with checkpoints every few steps, in a process that may kill itself with
SIGKILL at a chosen point (tests/test_resume.py): nothing of Python's shutdown runs, as when
the OOM killer or a scheduler ends a job.

    python tests/resume_driver.py SPEC.json OUT MODE AT

MODE: none | step (kill before step AT's optimizer update) | write (kill halfway through
writing the checkpoint of step AT) | rename (kill after writing it, before its rename).
The record goes to OUT/record.json when the run finishes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from bench.core import resume, train
from bench.core.spec import RunSpec


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(mode: str, at: int) -> None:
    if mode == "step":
        real_step = train._train_step

        def step(s, loop, x, y, weight=None):
            if loop.step == at:
                _die()
            return real_step(s, loop, x, y, weight)

        train._train_step = step
    elif mode in ("write", "rename"):
        real_save, real_replace = resume.torch.save, resume.os.replace

        def save(state, f):
            if mode == "write" and state.get("step") == at:
                f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk, then death
                f.flush()
                _die()
            real_save(state, f)

        def replace(src, dst):
            if mode == "rename" and str(src).endswith(f"step-{at:08d}.pt.tmp"):
                _die()
            real_replace(src, dst)

        resume.torch.save, resume.os.replace = save, replace


def main(spec_file: str, out: str, mode: str, at: str) -> None:
    spec = RunSpec.from_dict(json.loads(Path(spec_file).read_text()))
    _arm(mode, int(at))
    policy = resume.Checkpointing(every="3")
    record = train.run(spec, checkpoint_dir=Path(out) / "checkpoints", checkpointing=policy)
    (Path(out) / "record.json").write_text(json.dumps(record.to_dict()))


if __name__ == "__main__":
    main(*sys.argv[1:])
