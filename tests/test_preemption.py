"""SLURM preemption through submitit: a job that gets the preemption signal mid-run saves a
checkpoint at the next step boundary and requeues itself, and the requeued job ends the run with
the record an uninterrupted job writes. And a rerun of a `--no-wait` sweep tells which runs are
finished, running, checkpointed and not started, and submits only those no live job holds."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_resume import same_numbers

from bench.core import claims, resume
from bench.core.records import RunRecord, run_file, run_id
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.exec import status
from variants import preset


def spec(seed=3, steps=600) -> RunSpec:
    # dropout and a probe: a resume that lost the dropout stream or the probe's state shows
    cfg = replace(preset("micro", vocab_size=13), dropout=0.1)
    tcfg = TrainConfig(batch_size=8, eval_every=50, timing_warmup=2, probes=("grad_norms",))
    task = {"name": "addition", "data": None}
    return RunSpec("baseline", cfg, task, Budget("steps", steps), tcfg, seed, "cpu")


def submit(out: Path, sp: RunSpec, every: str):
    import submitit

    from bench.exec.slurm import SweepJob

    ex = submitit.LocalExecutor(folder=out / "slurm")
    ex.update_parameters(timeout_min=5)
    return ex.submit(SweepJob([sp], str(out), threads=1, policy=resume.Checkpointing(every)))


def wait_for_pid(path: Path, timeout=180.0) -> int:
    """The pid in run's claim once its job has taken it (the job is about to train or is)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            return int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise AssertionError(f"no claim at {path} after {timeout} s")


@pytest.mark.slow
def test_a_preempted_job_saves_at_the_signal_requeues_and_ends_bit_identical(tmp_path):
    pytest.importorskip("submitit")
    sp = spec()
    rid = run_id(sp.to_dict())
    reference = submit(tmp_path / "ref", sp, "off")
    # "2h": no periodic checkpoint in a run this short, so the only one is the signal's
    job = submit(tmp_path / "pre", sp, "2h")
    pid = wait_for_pid(claims.claim_path(tmp_path / "pre", rid))
    os.kill(pid, signal.SIGUSR2)  # what SLURM sends ahead of a preemption (submitit's default)
    assert [b["status"] for b in job.result()] == ["ok"], job.stderr()
    assert [b["status"] for b in reference.result()] == ["ok"], reference.stderr()

    def record(out):
        return RunRecord.from_dict(json.loads(run_file(out, rid).read_text()))

    got, want = record(tmp_path / "pre"), record(tmp_path / "ref")
    same_numbers(got, want)
    stopped = [g["from_step"] for g in got.metrics["segments"]]
    assert len(stopped) == 2 and stopped[0] == 0 and 0 < stopped[1] < 600, stopped
    log = job.stderr() or ""
    assert f"resuming {rid} from step {stopped[1]}" in log, log[-3000:]
    # the record is written: its checkpoint and its claim are gone
    assert resume.latest_step(tmp_path / "pre" / "checkpoints", rid) is None
    assert claims.holder(tmp_path / "pre", rid) is None


def test_a_stop_request_saves_at_the_step_boundary_and_raises_preempted(tmp_path):
    """In process: the flag a signal sets ends the loop after the step, with its checkpoint;
    'off' stops without one."""
    from bench.core.train import run

    sp = spec(steps=40)
    rid = run_id(sp.to_dict())
    real = resume.Saver.due
    for every, saved in (("2h", True), ("off", False)):
        out = tmp_path / every

        def due(self, s, loop):
            if loop.step == 7:
                resume.request_stop()
            return real(self, s, loop)

        resume.Saver.due = due
        try:
            with pytest.raises(resume.Preempted) as e:
                run(sp, checkpoint_dir=out, checkpointing=resume.Checkpointing(every))
        finally:
            resume.Saver.due = real
            resume.clear_stop()
        assert e.value.step == 7
        assert resume.latest_step(out, rid) == (7 if saved else None)


def test_a_requeued_job_takes_over_its_own_claim_and_no_other(tmp_path):
    """A claim that names another host with a fresh heartbeat is live for every job but the
    one that wrote it: SLURM requeued that job, maybe onto another node, and it goes on."""
    path = claims.claim_path(tmp_path, "a" * 12)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 4242, "host": "node-elsewhere", "job": "77_1"}))
    assert claims.holder(tmp_path, "a" * 12) == {"pid": 4242, "host": "node-elsewhere",
                                                 "job": "77_1"}  # fmt: skip
    assert not claims.claim(tmp_path, "a" * 12, job="78_0")
    assert claims.claim(tmp_path, "a" * 12, job="77_1")
    mine = claims.holder(tmp_path, "a" * 12)
    assert mine == {"pid": os.getpid(), "host": socket.gethostname(), "job": "77_1"}
    claims.release(tmp_path, "a" * 12)
    assert claims.holder(tmp_path, "a" * 12) is None


def test_the_status_of_a_rerun_names_running_checkpointed_and_not_started_runs(tmp_path, capsys):
    todo = [(f"[{i + 2}/4] baseline seed {i + 1}", spec(seed=i + 1)) for i in range(3)]
    ids = [run_id(s.to_dict()) for _, s in todo]
    assert claims.claim(tmp_path, ids[0], job="12_3")  # a live job trains seed 1
    folder = resume.run_dir(tmp_path / "checkpoints", ids[1])
    folder.mkdir(parents=True)
    (folder / "step-00000300.pt").write_bytes(b"")  # seed 2 waits at step 300
    (folder / "step-00000200.pt").write_bytes(b"")
    try:
        found = status.survey(tmp_path, todo)
        status.tell(found, finished=1, quiet=False)
    finally:
        claims.release(tmp_path, ids[0])
    err = capsys.readouterr().err
    assert "status: 1 finished, 1 running, 1 checkpointed, 1 not started" in err
    assert f"[2/4] baseline seed 1: running (job 12_3 on {socket.gethostname()}" in err
    assert "[3/4] baseline seed 2: checkpointed at step 300, resumes from there" in err
    assert [label for label, _ in found.free(todo)] == [todo[1][0], todo[2][0]]
    # a first submission (nothing finished, running or checkpointed) says nothing
    status.tell(status.survey(tmp_path / "fresh", todo), finished=0, quiet=False)
    assert capsys.readouterr().err == ""


def test_a_no_wait_rerun_does_not_submit_what_a_live_job_holds(tmp_path, capsys):
    """The command again while its job trains: the status line, and nothing submitted."""
    pytest.importorskip("submitit")
    from ablations.flags import parse_args, resolve_config
    from ablations.plan import build_plan
    from ablations.run import main

    args = ["--task", "addition", "--model", "micro", "--steps", "10", "--batch-size", "8",
            "--eval-every", "5", "--seeds", "1", "--device", "cpu", "--quiet",
            "--executor", "submitit-local", "--out", str(tmp_path),
            "--variant", "rope"]  # fmt: skip
    cfg = resolve_config(parse_args(args))
    plan, _ = build_plan(cfg.validate())
    held = [run_id(s.to_dict()) for s in plan.specs(1)]
    assert len(held) == 2  # the baseline and rope
    for rid in held:
        assert claims.claim(tmp_path, rid, job="99_0")
    try:
        assert main([*args, "--no-wait"]) == 0
    finally:
        for rid in held:
            claims.release(tmp_path, rid)
    err = capsys.readouterr().err
    assert f"status: 0 finished, {len(held)} running, 0 checkpointed, 0 not started" in err
    assert "0 run(s) submitted, 0 skipped (finished earlier), 2 running in live jobs" in err
    assert not (tmp_path / "slurm").exists()  # no job was submitted
