"""A plugin file (tests/plugins/extend_all.py) adds a block with its own option, a variant, a
task and an optimizer; each is listed by --list and usable in a run, with no edit of ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "extend_all.py"


def cli(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, str(ROOT / "ablations" / "run.py"), "--plugin", str(PLUGIN), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_a_plugin_lists_its_block_variant_and_task():
    r = cli("--list")
    assert r.returncode == 0, r.stderr
    variant = next(line for line in r.stdout.splitlines() if line.startswith("  plugin-gated "))
    assert "mlp: gelu → plugin-gated" in variant and "mlp.gate_init: 1.0 → 0.5" in variant
    assert any(
        line.startswith("  plugin-copy ") and "copy a random digit string" in line
        for line in r.stdout.splitlines()
    ), r.stdout


def test_a_plugin_task_trains_with_the_plugin_variant_and_optimizer(tmp_path):
    r = cli(
        "--task", "plugin-copy", "--variant", "plugin-gated", "--optimizer", "plugin-sgd",
        "--model", "micro", "--steps", "4", "--eval-every", "2", "--seeds", "1",
        "--device", "cpu", "--jobs", "1", "--quiet", "--out", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    arms = {(rec["variant"], rec["spec"]["train"].get("optimizer")) for rec in records}
    assert ("plugin-gated", "plugin-sgd") in arms, arms
    gated = next(rec for rec in records if rec["variant"] == "plugin-gated")
    assert gated["spec"]["model"]["block_options"] == {"mlp": {"gate_init": 0.5}}
    assert gated["task"] == "plugin-copy" or "plugin-copy" in json.dumps(gated["spec"])


def test_an_unknown_optimizer_lists_the_plugin_one():
    r = cli("--optimizer", "nope", "--model", "micro", "--steps", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "unknown optimizer 'nope'; valid optimizers: adamw, muon, plugin-sgd" in r.stderr
