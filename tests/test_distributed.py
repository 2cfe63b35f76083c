"""DDP through torchrun: 2 gloo ranks train the same step as one process, one record is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.core.records import load_records
from bench.core.spec import RunSpec
from bench.core.train import run
from bench.exec import distributed
from bench.exec.distributed import shard_batch

ROOT = Path(__file__).resolve().parents[1]
MICRO = ["--task", "addition", "--model", "micro", "--steps", "10", "--batch-size", "8"]
MICRO += ["--eval-every", "5"]


def torchrun(nproc, *args, timeout=180):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--standalone", str(ROOT / "ablations" / "run.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_gloo_ranks_match_one_process_and_write_one_record(tmp_path):
    out = tmp_path / "ddp"
    r = torchrun(2, *MICRO, "--seeds", "1", "--device", "cpu", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1  # rank 0 alone writes
    (rec,) = load_records(out)
    assert rec.distributed == {"world_size": 2, "backend": "gloo"}
    assert rec.metrics["steps"] == 10
    assert rec.metrics["tokens"] == 10 * 8 * 12  # the global batch, every rank counted

    # the same spec (so the same run id: world_size is not part of a run's identity) in one
    # process with the whole batch of 8
    ref = run(RunSpec.from_dict(rec.spec))
    assert ref.run_id == rec.run_id
    assert ref.distributed == {"world_size": 1, "backend": None}
    at = {p["step"]: p for p in rec.curve}
    ref_at = {p["step"]: p for p in ref.curve}
    assert at[10]["train_loss"] == pytest.approx(ref_at[10]["train_loss"], abs=1e-4)
    for step in (0, 5, 10):  # validation: all-reduced over the ranks' shares of the batches
        assert at[step]["val_loss"] == pytest.approx(ref_at[step]["val_loss"], abs=1e-4)
    assert rec.metrics["val_loss"] == pytest.approx(ref.metrics["val_loss"], abs=1e-4)
    assert rec.metrics["accuracy"] == ref.metrics["accuracy"]


def test_global_batch_must_divide_by_the_ranks(monkeypatch, capsys):
    from ablations.run import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets; rejected before any group is up
    monkeypatch.setenv("RANK", "0")
    assert main([*MICRO[:4], "--batch-size", "7", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --batch-size 7 is the global batch")
    assert main([*MICRO, "--jobs", "2", "--quiet"]) == 2
    assert "--jobs and --executor" in capsys.readouterr().err


def test_single_process_helpers_are_identities():
    assert not distributed.is_active()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.info() == {"world_size": 1, "backend": None}
    assert distributed.shard(8) == slice(0, 8)
    assert distributed.all_reduce_sum([1.5, 2]) == [1.5, 2.0]
    assert distributed.all_gather_floats([3.0]) == [[3.0]]
    assert distributed.broadcast_object({"a"}) == {"a"}
    assert distributed.setup("cpu") is False  # no WORLD_SIZE: nothing to set up


def test_uneven_targets_are_weighted_to_the_global_mean(monkeypatch):
    """Ranks holding different numbers of targets: weighted per-rank means average (as DDP
    averages gradients) to the mean over the whole batch."""
    torch.manual_seed(0)
    x = torch.arange(8 * 5).view(8, 5)
    y = torch.randn(8, 5)
    mask = torch.rand(8, 5) < 0.5
    mask[:4, 0] = True  # at least one target per rank
    targets = torch.where(
        mask, torch.zeros_like(y, dtype=torch.long), torch.full_like(y, -100, dtype=torch.long)
    )
    global_mean = y[mask].mean()
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    weighted, shares = [], []
    for r in range(2):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        xs, ts, weight, share = shard_batch(x, targets)
        assert torch.equal(xs, x[4 * r : 4 * r + 4])
        local = y[4 * r : 4 * r + 4][ts != -100].mean()
        weighted.append(local * weight)
        shares.append(share)
    assert sum(shares) == pytest.approx(1.0)
    assert (sum(weighted) / 2).item() == pytest.approx(global_mean.item(), rel=1e-6)
