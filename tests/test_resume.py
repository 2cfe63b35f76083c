"""Checkpoint and resume inside a run (bench.core.resume): killed with SIGKILL at several
points, a checkpoint write among them, and started again each time, a run ends with the same
record, bit for bit, as the run that was never interrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.core import resume
from bench.core.records import RunRecord, run_id
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.core.train import run
from variants import preset

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "resume_driver.py"


def spec(optimizer="adamw", steps=14, **train) -> RunSpec:
    # dropout and a probe: a resume that lost the dropout stream or the probe's state shows
    cfg = replace(preset("micro", vocab_size=13), dropout=0.1)
    tcfg = TrainConfig(
        batch_size=8, eval_every=4, timing_warmup=2, optimizer=optimizer,
        probes=("grad_norms",), save_checkpoint=True, **train,
    )  # fmt: skip
    return RunSpec("baseline", cfg, {"name": "addition", "data": None}, Budget("steps", steps),
                   tcfg, 3, "cpu")  # fmt: skip


def drive(spec_: RunSpec, out: Path, mode="none", at=0) -> subprocess.CompletedProcess:
    spec_file = out / "spec.json"
    out.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec_.to_dict()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(DRIVER), str(spec_file), str(out), mode, str(at)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


def final(out: Path, rid: str) -> tuple[RunRecord, dict]:
    """The driver's record and final weights."""
    rec = RunRecord.from_dict(json.loads((out / "record.json").read_text()))
    weights = torch.load(out / "checkpoints" / f"{rid}.pt", weights_only=True)
    return rec, weights


def same_numbers(a: RunRecord, b: RunRecord) -> None:
    """Everything a run computes (not what it timed) is equal, bit for bit."""
    untimed = ("time_s",)
    assert [{k: v for k, v in p.items() if k not in untimed} for p in a.curve] == [
        {k: v for k, v in p.items() if k not in untimed} for p in b.curve
    ]
    for k in ("val_loss", "train_loss", "accuracy", "steps", "tokens", "peak_mem_mb"):
        assert a.metrics[k] == b.metrics[k], k
    assert a.probes == b.probes
    assert a.evals == b.evals


def same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_killed_and_resumed_run_is_bit_identical(tmp_path, optimizer):
    s = spec(optimizer)
    rid = run_id(s.to_dict())
    # the reference trains in a driver process too: same thread count as the killed ones
    # (pytest's own process may run torch with more threads, and a reduction split over two
    # threads rounds differently on some CPUs)
    assert drive(s, tmp_path / "ref", "none", 0).returncode == 0
    ref_rec, ref_w = final(tmp_path / "ref", rid)
    assert "segments" not in ref_rec.metrics  # an uninterrupted run is one segment
    assert ref_rec.metrics["checkpoints"] == 4  # steps 3, 6, 9, 12 (14 ends the run)

    out = tmp_path / "killed"
    # before step 5's update (the step-3 checkpoint is the latest), halfway through writing
    # step 9's, after writing step 12's but before its rename, then let it finish; Muon's
    # state (its momentum buffers beside AdamW's moments) is checked with one kill
    kills = [("step", 5), ("write", 9), ("rename", 12)] if optimizer == "adamw" else [("step", 8)]
    for mode, at in [*kills, ("none", 0)]:
        r = drive(s, out, mode, at)
        if mode == "none":
            assert r.returncode == 0, r.stderr[-2000:]
        else:
            assert r.returncode == -9, (mode, r.returncode, r.stderr[-2000:])
    assert "resuming" in r.stderr and f"from step {9 if optimizer == 'adamw' else 6}" in r.stderr
    rec, w = final(out, rid)
    same_numbers(rec, ref_rec)
    same_weights(w, ref_w)
    # three processes trained it, and the step times say so: one segment, not a pooled mix
    seg = rec.metrics["segments"]
    assert [g["from_step"] for g in seg] == ([0, 3, 6, 9] if optimizer == "adamw" else [0, 6])
    assert rec.metrics["timed_segment"] in range(4)
    best = seg[rec.metrics["timed_segment"]]
    assert rec.metrics["step_ms"] == best["median_ms"]
    assert best["timed_steps"] == max(g["timed_steps"] for g in seg)


def test_foreign_newer_and_truncated_checkpoints_are_refused_not_overwritten(tmp_path, capsys):
    s = spec(steps=9)
    rid = run_id(s.to_dict())
    policy = resume.Checkpointing(every="3")
    ref = run(s, checkpoint_dir=tmp_path / "ref", checkpointing=policy)
    kept = sorted(p.name for p in resume.run_dir(tmp_path / "ref", rid).iterdir())
    assert kept == ["step-00000003.pt", "step-00000006.pt"]  # 9 ends the run; the latest 2
    step3, step6 = (resume.run_dir(tmp_path / "ref", rid) / k for k in kept)

    # step 6 truncated, step 3 good: the run resumes from 3 and ends as the reference did
    folder = resume.run_dir(tmp_path / "own", rid)
    folder.mkdir(parents=True)
    (folder / step3.name).write_bytes(step3.read_bytes())
    (folder / step6.name).write_bytes(step6.read_bytes()[: step6.stat().st_size // 2])
    capsys.readouterr()
    rec = run(s, checkpoint_dir=tmp_path / "own", checkpointing=policy)
    err = capsys.readouterr().err.splitlines()
    assert any("step-00000006.pt refused (unreadable" in line for line in err), err
    assert any("resuming" in line and "from step 3" in line for line in err), err
    same_numbers(rec, ref)
    assert (folder / "step-00000006.pt.refused").is_file()  # kept aside, not deleted

    # another run's checkpoint, and one of a newer format: both refused, the run starts at 0
    other = replace(s, seed=4)
    ofolder = resume.run_dir(tmp_path / "other", run_id(other.to_dict()))
    ofolder.mkdir(parents=True)
    (ofolder / step6.name).write_bytes(step6.read_bytes())
    newer = torch.load(step3, weights_only=True) | {"format": resume.FORMAT + 1}
    torch.save(newer, ofolder / step3.name)
    capsys.readouterr()
    run(other, checkpoint_dir=tmp_path / "other", checkpointing=policy)
    err = [line for line in capsys.readouterr().err.splitlines() if "refused" in line]
    assert len(err) == 2, err
    assert f"belongs to run {rid}" in err[0] and "newer than this version" in err[1]
    refused = sorted(p.name for p in ofolder.glob("*.refused*"))
    assert refused == ["step-00000003.pt.refused", "step-00000006.pt.refused"]
    assert sorted(p.name for p in ofolder.glob("step-*.pt")) == kept  # its own, written anew

    resume.discard(tmp_path / "own", rid)  # what the executor does once the record is written
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000006.pt.refused"]


def test_checkpoint_every_is_read_or_refused_in_one_line():
    assert resume.Checkpointing("500").interval() == (500, None)
    assert resume.Checkpointing("90s").interval() == (None, 90.0)
    assert resume.Checkpointing("10m").interval() == (None, 600.0)
    assert resume.Checkpointing("2h").interval() == (None, 7200.0)
    assert resume.Checkpointing("auto").interval() == (None, resume.AUTO_SECONDS)
    assert resume.Checkpointing("off").interval() == (None, None)
    for bad in ("0", "-5", "ten", "1.5", "5d", ""):
        with pytest.raises(ValueError, match="--checkpoint-every") as e:
            resume.Checkpointing(bad).interval()
        assert "\n" not in str(e.value)


MICRO = ["--task", "addition", "--model", "micro", "--steps", "10", "--batch-size", "8"]
MICRO += ["--eval-every", "5", "--seeds", "1", "--device", "cpu", "--quiet"]


def test_sweep_removes_checkpoints_once_recorded_unless_kept(tmp_path):
    from ablations.run import main

    assert main([*MICRO, "--checkpoint-every", "3", "--out", str(tmp_path / "a")]) == 0
    assert not any((tmp_path / "a" / "checkpoints").glob("*/step-*.pt"))
    args = [*MICRO, "--checkpoint-every", "3", "--keep-checkpoints", "--out", str(tmp_path / "b")]
    assert main(args) == 0
    kept = sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("*/step-*.pt"))
    assert kept == ["step-00000006.pt", "step-00000009.pt"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_ddp_run_resumes_on_every_rank_from_rank_zeros_checkpoint(tmp_path):
    """Two gloo ranks: rank 0 writes the checkpoints, both read one back. The record is
    dropped after a first full run (its checkpoints kept), so the rerun resumes at step 6 and
    must end with the first run's numbers."""
    from test_distributed import torchrun

    out = tmp_path / "ddp"
    args = [*MICRO, "--checkpoint-every", "3", "--keep-checkpoints", "--out", str(out)]
    first = torchrun(2, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    (rec1,) = [RunRecord.from_dict(json.loads(x)) for x in (out / "runs.jsonl").open()]
    (out / "runs.jsonl").unlink()
    (out / "checkpoints" / rec1.run_id / "step-00000009.pt").unlink()  # resume from 6
    again = torchrun(2, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "from step 6" in again.stderr
    (rec2,) = [RunRecord.from_dict(json.loads(x)) for x in (out / "runs.jsonl").open()]
    assert rec2.distributed == {"world_size": 2, "backend": "gloo"}
    same_numbers(rec2, rec1)
    assert [g["from_step"] for g in rec2.metrics["segments"]] == [0, 6]
