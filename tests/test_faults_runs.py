"""Regression tests (issue 22 section 3, item 4): one failing run must not end the sweep. A run
whose code raises is recorded as failed with its error's last line, the sweep goes on, the
tables name it and leave it out of the statistics, and a rerun retries it; on every executor.
"""

from __future__ import annotations

import json

import pytest
from faults_cli import FAST, cli

BOOM = """
import torch.nn as nn
from variants.registry import register, register_variant


@register("mlp", "faults-boom")
class Boom(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        raise RuntimeError("boom in forward")


@register("norm", "faults-init")
class InitBoom(nn.Module):
    def __init__(self, cfg):
        raise ValueError("no norm for you")


register_variant("faults-boom", "raises in forward", mlp="faults-boom")
register_variant("faults-init", "raises in __init__", norm="faults-init")
"""


def _statuses(out):
    lines = (out / "runs.jsonl").read_text().splitlines()
    return [(r["variant"], r["status"], r.get("error")) for r in map(json.loads, lines)]


@pytest.mark.parametrize("jobs", ["1", "2"])  # this process; a pool of worker processes
def test_one_failing_run_ends_the_sweep(tmp_path, jobs):
    plugin, out = tmp_path / "boom.py", tmp_path / "out"
    plugin.write_text(BOOM)
    args = [*FAST, "--plugin", str(plugin), "--variant", "faults-boom", "--variant",
            "faults-init", "--jobs", jobs, "--quiet", "--out", str(out)]  # fmt: skip
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    failed = [x for x in r.stderr.splitlines() if "FAILED" in x]
    assert len(failed) == 2, r.stderr
    assert any("FAILED (RuntimeError: boom in forward)" in x for x in failed)
    assert any("FAILED (ValueError: no norm for you)" in x for x in failed)
    assert sorted(_statuses(out)) == [
        ("baseline", "ok", None),
        ("faults-boom", "failed", "RuntimeError: boom in forward"),
        ("faults-init", "failed", "ValueError: no norm for you"),
    ]
    summary = (out / "summary.md").read_text()
    assert "faults-boom seed 0: failed (RuntimeError: boom in forward)" in summary
    assert "| faults-init | 0/1 |" in summary  # counted, in no statistic
    assert "1 run(s) trained" not in r.stderr and "2 failed" in r.stderr
    tracebacks = list((out / "errors").glob("*.txt"))
    assert len(tracebacks) == 2 and all("Traceback" in t.read_text() for t in tracebacks)

    again = cli(*args)  # a failure is a fault, not a result: the rerun retries it
    assert again.returncode == 0, again.stderr
    assert "2 run(s) trained, 1 skipped (finished earlier)" in again.stderr
    assert len(_statuses(out)) == 5


def test_one_failing_run_ends_a_cluster_job(tmp_path, monkeypatch):
    """The SLURM job's loop (bench.exec.slurm.SweepJob) records a failed run as its own file
    and goes on with the next."""
    pytest.importorskip("submitit")
    from bench.core.records import load_records, run_id
    from bench.core.spec import Budget, RunSpec, TrainConfig
    from bench.exec import outcome
    from bench.exec.executor import SweepJob
    from variants import preset

    train = TrainConfig(batch_size=8, eval_every=3, timing_warmup=1)
    task = {"name": "addition", "data": None}
    specs = [RunSpec("baseline", preset("micro", vocab_size=13), task, Budget("steps", 4),
                     train, seed, "cpu") for seed in range(2)]  # fmt: skip
    real = outcome.run

    def flaky(spec, **kw):
        if spec.seed == 0:
            raise torch_oom()
        return real(spec, **kw)

    monkeypatch.setattr(outcome, "run", flaky)
    briefs = SweepJob(specs, str(tmp_path), threads=1)()
    assert [b["status"] for b in briefs] == ["failed", "ok"]
    recs = {r.seed: r for r in load_records(tmp_path)}
    assert recs[0].status == "failed" and recs[0].error.startswith("OutOfMemoryError: ")
    assert recs[1].status == "ok"
    assert run_id(specs[0].to_dict()) not in outcome_finished(tmp_path)  # retried next time


def torch_oom():
    import torch

    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")


def outcome_finished(out):
    from bench.core.records import finished_ids

    return finished_ids(out)


def test_keyboard_interrupt_still_stops_the_sweep(tmp_path, monkeypatch):
    from bench.core import claims
    from bench.core.spec import Budget, RunSpec
    from bench.exec import outcome
    from bench.exec.executor import execute
    from variants import preset

    def interrupted(spec, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(outcome, "run", interrupted)
    spec = RunSpec("baseline", preset("micro", vocab_size=13), {"name": "addition", "data": None},
                   Budget("steps", 4))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        execute([spec, spec], tmp_path, quiet=True)
    assert not (tmp_path / "runs.jsonl").exists()
    assert not list((tmp_path / claims.CLAIMS_DIR).glob("*.claim"))  # released on the way out
