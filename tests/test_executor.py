"""Executors: a local pool (--jobs) and submitit leave every record exactly once, where the
report reads them, and resume skips what any of them finished."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from test_records import rec  # a minimal complete record

from ablations.run import main
from bench.core import records
from bench.core.records import as_record, load_records, run_id
from bench.exec.executor import cpu_cores

ROOT = Path(__file__).resolve().parents[1]
MICRO = ["--model", "micro", "--steps", "10", "--batch-size", "8", "--eval-every", "5"]


def cli(*args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "ablations" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def expected_ids(out: Path) -> set[str]:
    specs = json.loads((out / "command.json").read_text())["specs"]
    return {run_id(s) for s in specs}


def test_jobs_2_leaves_each_record_exactly_once_and_resumes(tmp_path, capsys):
    out = tmp_path / "pool"
    args = ["--variant", "rope", "--seeds", "2", "--out", str(out), "--quiet", *MICRO]
    r = cli(*args, "--jobs", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 run(s) trained, 0 skipped" in r.stderr
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 4
    parsed = [json.loads(line) for line in lines]  # every line whole
    assert sorted(p["run_id"] for p in parsed) == sorted(expected_ids(out))
    assert {(p["variant"], p["seed"]) for p in parsed} == {
        (v, s) for v in ("baseline", "rope") for s in (0, 1)
    }
    threads = max(1, cpu_cores() // 2)  # each worker its share of the cores
    assert all(p["status"] == "ok" and p["env"]["torch_threads"] == threads for p in parsed)
    # the same command again (in this process): nothing to run, nothing appended
    assert main([*args, "--jobs", "2"]) == 0
    assert "0 run(s) trained, 4 skipped" in capsys.readouterr().err
    assert len((out / "runs.jsonl").read_text().splitlines()) == 4


def spec_rec(seed: int, **extra) -> dict:
    """A minimal record whose run id is its spec's hash (records with a forged id are skipped)."""
    r = rec("0" * 12, **extra)
    r["seed"] = r["spec"]["seed"] = seed
    r["run_id"] = run_id(r["spec"])
    return r


def test_load_records_merges_per_run_files_with_runs_jsonl(tmp_path):
    a, b, c, d = (run_id(spec_rec(s)["spec"]) for s in range(4))
    records.append_record(tmp_path / "runs.jsonl", spec_rec(0, v=1))
    records.append_record(tmp_path / "runs.jsonl", spec_rec(1, v=1))
    records.write_run_record(tmp_path, spec_rec(1, v=2))  # same run, later
    records.write_run_record(tmp_path, spec_rec(2, v=2))
    records.write_run_record(tmp_path / "machine2", spec_rec(3, v=3))
    (tmp_path / "runs" / "notes.json").write_text("{}")  # not a run id: not a record
    (tmp_path / "runs" / ".eeeeeeeeeeee.json.x1.tmp").write_text('{"run_id": "ee')  # killed
    (tmp_path / "command.json").write_text('{"argv": []}')
    assert records.run_file(tmp_path, c) == tmp_path / "runs" / f"{c}.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = {r.run_id: r.extra["v"] for r in load_records(tmp_path)}
    assert got == {a: 1, b: 2, c: 2, d: 3}
    assert records.finished_ids(tmp_path) == set(got)
    # a file path still means that file only
    assert len(load_records(tmp_path / "runs.jsonl")) == 2
    assert load_records(tmp_path / "runs" / f"{c}.json") == [as_record(spec_rec(2, v=2))]


def test_submitit_local_executor_runs_a_sweep_for_real(tmp_path, capsys):
    pytest.importorskip("submitit")
    out = tmp_path / "cluster"
    args = ["--seeds", "2", "--out", str(out), "--quiet", *MICRO]
    r = cli(*args, "--executor", "submitit-local", "--runs-per-job", "1", "--slurm-time", "5")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "submitted 2 run(s) as 2 local job(s)" in r.stderr
    assert "2 run(s) trained, 0 skipped" in r.stderr
    files = sorted((out / "runs").glob("*.json"))
    assert {f.stem for f in files} == expected_ids(out)
    assert not (out / "runs.jsonl").exists()
    assert any((out / "slurm").glob("*_log.out"))  # submitit's per-job logs
    # where the report reads them
    from bench.analysis.report import build_report

    report = build_report(out)
    assert "baseline" in report.read_text()
    assert len(load_records(out)) == 2
    # resume skips them whichever executor runs the sweep next
    assert main(args) == 0
    assert "0 run(s) trained, 2 skipped" in capsys.readouterr().err


def test_sweep_job_requeues_only_unfinished_runs(tmp_path):
    pytest.importorskip("submitit")
    from bench.core.spec import Budget, RunSpec
    from bench.exec.executor import SweepJob
    from variants import preset

    cfg = preset("micro", vocab_size=13)
    task = {"name": "addition", "data": None}
    specs = [RunSpec("baseline", cfg, task, Budget("steps", 5), seed=s) for s in range(3)]
    job = SweepJob(specs, str(tmp_path), threads=1)
    job.completed.append(run_id(specs[0].to_dict()))  # as if preempted during the second run
    again = job.checkpoint()
    assert [s.seed for s in again.function.specs] == [1, 2]
    assert again.function.out == str(tmp_path) and again.args == ()


def test_slurm_submission_with_a_stand_in_sbatch(tmp_path, monkeypatch, capsys):
    """The SLURM path up to sbatch: one job array, the asked-for resources, requeue signal,
    logs under <out>/slurm/ (sbatch here is a script that only answers with a job id)."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        '#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\necho "Submitted batch job 4242"\n'
    )
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "sweep"
    argv = ["--variant", "rope", "--seeds", "3", "--out", str(out), "--quiet", *MICRO]
    argv += ["--executor", "slurm", "--slurm-partition", "debug", "--slurm-time", "30"]
    argv += ["--slurm-cpus", "2", "--runs-per-job", "2", "--jobs", "2", "--no-wait"]
    argv += ["--slurm-option", "account=proj"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "submitted 6 run(s) as 3 slurm job(s) (4242_0 … 4242_2)" in err
    assert "6 run(s) submitted, 0 skipped" in err
    assert len((bin_dir / "calls").read_text().splitlines()) == 1  # one sbatch: one array
    script = out / "slurm" / "4242_submission.sh"
    text = script.read_text()
    for line in (
        "#SBATCH --array=0-2%2",
        "#SBATCH --partition=debug",
        "#SBATCH --time=30",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --account=proj",
        "#SBATCH --signal=USR2@",  # submitit checkpoints and requeues on it
        f"export PYTHONPATH={ROOT}",
        f"{out / 'slurm'}/%A_%a_0_log.out",
    ):
        assert line in text, line
    assert "--gpus-per-node" not in text  # a CPU sweep asks for no GPU
    assert "#SBATCH --ntasks-per-node=1" in text

    # --ranks-per-run: one task per rank in every job of the array
    out2 = tmp_path / "sweep-ddp"
    argv2 = [a if a != str(out) else str(out2) for a in argv] + ["--ranks-per-run", "2"]
    assert main(argv2) == 0
    text2 = (out2 / "slurm" / "4242_submission.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2" in text2 and "#SBATCH --array=0-2%2" in text2


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_submitit_job_with_two_ranks_trains_one_run_with_ddp(tmp_path):
    # --ranks-per-run 2: the job's two tasks become DDP ranks (gloo) that train the run together,
    # exactly as under torchrun; rank 0 alone writes the record, equal to one process's run.
    pytest.importorskip("submitit")
    from bench.core.spec import RunSpec
    from bench.core.train import run

    out = tmp_path / "ddp-jobs"
    args = ["--seeds", "1", "--device", "cpu", "--out", str(out), "--quiet", *MICRO]
    r = cli(*args, "--executor", "submitit-local", "--ranks-per-run", "2", "--slurm-time", "5")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "submitted 1 run(s) as 1 local job(s)" in r.stderr
    assert "1 run(s) trained, 0 skipped" in r.stderr
    (rec,) = load_records(out)
    assert len(list((out / "runs").glob("*.json"))) == 1
    assert rec.distributed == {"world_size": 2, "backend": "gloo"}
    ref = run(RunSpec.from_dict(rec.spec))
    assert ref.run_id == rec.run_id
    assert rec.metrics["val_loss"] == pytest.approx(ref.metrics["val_loss"], abs=1e-4)


def test_ranks_per_run_without_a_job_executor_is_one_line(capsys):
    assert main([*MICRO, "--ranks-per-run", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torchrun --nproc_per_node" in err[0]


# ---------------------------------------------------------------------------------------------
# claims: sweeps sharing one folder split the work


def _trained(stderr: str) -> int:
    line = next(x for x in stderr.splitlines() if "run(s) trained" in x)
    return int(line.split()[0])


def test_two_identical_sweeps_train_each_run_once(tmp_path):
    """Two identical sweeps started into one --out at the same time: every run is trained by
    exactly one of them (claims), and the records hold each run once."""
    out = tmp_path / "shared"
    args = [sys.executable, str(ROOT / "ablations" / "run.py"), "--task", "addition"]
    args += [*MICRO, "--steps", "40", "--variant", "rope", "--seeds", "2", "--jobs", "1"]
    args += ["--quiet", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    ids = [r.run_id for r in load_records(out / "runs.jsonl")]
    assert len(ids) == len(set(ids)) == 4
    assert sum(_trained(e) for e in errs) == 4
    assert not list((out / "claims").glob("*.claim"))  # every claim released


def test_live_claims_are_respected_and_dead_ones_taken_over(tmp_path):
    from bench.core import claims

    out = tmp_path / "c"
    assert claims.claim(out, "aaaaaaaaaaaa")  # this (live) process holds it
    assert not claims.claim(out, "aaaaaaaaaaaa")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    path = claims.claim_path(out, "bbbbbbbbbbbb")
    path.write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    assert claims.claim(out, "bbbbbbbbbbbb")  # its holder is gone: stale, taken over
    path.write_text(json.dumps({"pid": 1, "host": "another-host"}))
    assert not claims.claim(out, "bbbbbbbbbbbb")  # cannot tell for another host: respected
    claims.release(out, "bbbbbbbbbbbb")
    assert claims.claim(out, "bbbbbbbbbbbb")
