"""The one-command GPU check script, exercised on the CPU through its dry run."""

from __future__ import annotations

import re

import pytest
import torch

from bench import gpu_checks
from bench.core.records import load_records


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_its_report(tmp_path, capsys):
    assert gpu_checks.main(["--dry-run", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "checks.md").read_text()
    for name in ("kernel-tests", "kernel-bench", "train-eager", "train-compile", "seams"):
        assert f"| {name} | ok |" in report, report
    assert re.search(r"\b2 passed, 4 skipped", report)  # kernel tests ran; bf16 needs a GPU
    assert list(tmp_path.glob("flash_attn_*.csv"))  # the benchmark's table
    for sub, compiled in (("train", False), ("train-compile", True)):
        recs = load_records(tmp_path / sub)
        assert sorted(r.variant for r in recs) == ["baseline", "naive-attention"]
        assert all(r.spec["train"]["compile"] is compiled for r in recs)
    seams = {r.variant for r in load_records(tmp_path / "seams")}
    assert seams == {"baseline", *gpu_checks.seam_variants()}


def test_the_variants_it_runs_are_read_off_the_registry():
    """No variant name is written in the script; today's registry yields the set it always ran."""
    assert gpu_checks.seam_variants() == ("gqa", "alibi", "sliding-window", "speedrun")
    assert gpu_checks.kernel_variants() == ("flash-triton", "naive-attention")


def test_time_limits_fit_eight_minutes():
    for dry_run in (False, True):
        assert sum(s.timeout_s for s in gpu_checks.steps(gpu_checks.ROOT, dry_run)) <= 480


def test_without_a_gpu_it_says_how_to_dry_run(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert gpu_checks.main([]) == 2
    assert "--dry-run" in capsys.readouterr().out
