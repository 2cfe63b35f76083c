"""Regression tests (issue 22 section 3, items 7 to 9): inputs that were silently taken, side
inputs of the report, and small things (a suggestion that errors, file modes, bare NaN)."""

from __future__ import annotations

import json

import pytest
from faults_cli import FAST, cli


def _plan(*argv):
    from ablations.flags import parse_args, resolve_config
    from ablations.plan import build_plan

    return build_plan(resolve_config(parse_args(list(argv))))


MICRO = ["--task", "addition", "--model", "micro", "--device", "cpu"]


# ---------------------------------------------------------------------------------------------
# 7. silently accepted


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--steps", "10000000000"], ["--steps 1e+10", "steps for one run", "days", "--force"]),
        (["--tokens", "1e20"], ["--tokens 1e+20", "steps for one run", "--force"]),
        (["--steps", "20", "--ladder", "0.5,1e15"], ["--ladder 1e+15", "--force"]),
        (["--time", "1e9"], ["days", "more than 30", "--force"]),
        (["--steps", "1400", "--ladder", "0.001,2"], ["--ladder 0.001", "1 step(s)"]),
    ],
)
def test_silently_accepted_budgets(argv, words):
    with pytest.raises(ValueError) as caught:
        _plan(*MICRO, *argv)
    for w in words:
        assert w in str(caught.value), (w, str(caught.value))
    if "--force" in words:  # on purpose: it is taken
        plan, _ = _plan(*MICRO, *argv, "--force")
        assert plan.budget.value == float(argv[1])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--sizes", ""], ["--sizes is empty"]),
        (["--out", ""], ["--out is empty"]),
        (["--tune-grid", "1,2"], ["--tune-grid", "without --tune"]),
        (["--max-seeds", "4"], ["--max-seeds", "without --ci-width"]),
        (["--scale", "0.5"], ["--scale", "--study"]),
        (["--no-wait"], ["--no-wait", "--executor slurm"]),
        (["--executor", "slurm", "--slurm-cpus", "0"], ["--slurm-cpus must be at least 1"]),
        (["--executor", "slurm", "--runs-per-job", "0"], ["--runs-per-job must be at least 1"]),
        (["--runs-per-job", "2"], ["--runs-per-job is for --executor slurm"]),
    ],
)
def test_silently_accepted_flags_that_do_nothing(argv, words):
    from ablations.flags import parse_args, resolve_config

    with pytest.raises(ValueError) as caught:
        resolve_config(parse_args([*MICRO, *argv]))
    for w in words:
        assert w in str(caught.value), (w, str(caught.value))


def test_silently_accepted_n_heldout_past_its_cap():
    """A capped n_heldout would train under the asked value's id; what fits is taken."""
    with pytest.raises(ValueError, match=r"n_heldout=50: .* at most 10 problem"):
        _plan(*MICRO, "--task-option", "n_digits=1", "--task-option", "n_heldout=50")
    plan, task = _plan(*MICRO, "--task-option", "n_digits=1", "--task-option", "n_heldout=10")
    assert plan.task_spec["n_heldout"] == task.n_heldout == 10


def test_silently_accepted_negative_cached_peak_flops(tmp_path, monkeypatch):
    import torch

    from bench.measure import flops

    monkeypatch.setenv("TRANSFORMER_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(flops, "_peak_memo", {})
    key = flops._peak_key(torch.device("cpu"), torch.float32)
    for bad in (-5e10, 0, float("nan"), "fast", True):
        (tmp_path / flops._PEAK_CACHE_FILE).write_text(json.dumps({key: bad}))
        flops._peak_memo.clear()
        assert flops.measured_peak_flops("cpu", torch.float32) > 1e6, bad


def test_silently_accepted_rank_without_torchrun(tmp_path):
    """RANK=1 left in the environment, no torchrun: the only process still writes and prints
    the table (it exited 0 with no output and no summary)."""
    out = tmp_path / "out"
    r = cli(*FAST, "--jobs", "1", "--quiet", "--out", str(out), env={"RANK": "1"})
    assert r.returncode == 0, r.stderr
    assert (out / "summary.md").is_file() and "| baseline |" in r.stdout
    assert "RANK=1 without torchrun" in r.stderr and "wall time" in r.stderr
