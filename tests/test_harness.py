"""The harness as users meet it: the training loop's contracts and the CLI in a subprocess."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.core.records import SCHEMA, RunRecord, load_records
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.core.train import lr_at, run
from variants import preset

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "ablations" / "run.py")]
FAST = ["--task", "addition", "--model", "micro", "--steps", "12", "--eval-every", "6"]
FAST += ["--batch-size", "16"]


def cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*RUN, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def one_line_error(r, *words) -> None:
    """A bad-input exit: status 2, one 'error: ...' line naming each of `words`, no traceback."""
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def tiny_spec(variant="baseline", seed=0, budget=None, **train):
    cfg = preset("micro", vocab_size=13)
    budget = budget or Budget("steps", 15)
    train = TrainConfig(batch_size=16, eval_every=5, timing_warmup=2, **train)
    return RunSpec(variant, cfg, {"name": "addition", "data": None}, budget, train, seed, "cpu")


# ---------------------------------------------------------------------------------------------
# the loop


def test_same_seed_same_run_and_seeds_differ():
    a, b = run(tiny_spec(seed=3)), run(tiny_spec(seed=3))
    c = run(tiny_spec(seed=4))
    assert a.run_id == b.run_id != c.run_id
    assert [p["train_loss"] for p in a.curve] == [p["train_loss"] for p in b.curve]
    assert a.metrics["val_loss"] == b.metrics["val_loss"]
    assert a.metrics["val_loss"] != c.metrics["val_loss"]


@pytest.mark.slow
def test_compile_trains_the_same_model():
    # --compile must change speed, not results: same init, data and steps give the same losses
    # up to float reassociation in inductor's fused kernels. Also exercises the memory-tracked
    # step under compile (MemTracker's global hooks around a compiled module).
    eager = run(tiny_spec(budget=Budget("steps", 6)))
    compiled = run(tiny_spec(budget=Budget("steps", 6), compile=True))
    assert eager.run_id != compiled.run_id  # compile is part of the spec
    assert compiled.status == "ok"
    assert compiled.metrics["peak_mem_mb"] > 0
    got = [p["train_loss"] for p in compiled.curve if p["train_loss"] is not None]
    want = [p["train_loss"] for p in eager.curve if p["train_loss"] is not None]
    assert got == pytest.approx(want, rel=1e-4)
    assert compiled.metrics["val_loss"] == pytest.approx(eager.metrics["val_loss"], rel=1e-4)


def test_record_has_every_metric_and_the_curve():
    rec = run(tiny_spec())
    m = rec.metrics
    for key in (
        "val_loss",
        "accuracy",
        "train_loss",
        "step_ms",
        "step_ms_p10",
        "step_ms_p90",
        "tokens_per_s",
        "fwd_ms",
        "peak_mem_mb",
        "params",
        "flops_per_token",
        "steps",
        "tokens",
        "wall_s",
        "freq_loss",
        "peak_flops",
        "mfu",
    ):
        assert m[key] is not None, key
    assert m["steps"] == 15 and m["tokens"] == 15 * 16 * 12
    assert 0 < m["mfu"] < 2 and m["mfu_datasheet"] is None  # measured peak; no table on CPU
    assert [p["step"] for p in rec.curve] == [0, 5, 10, 15]
    assert rec.curve[-1]["val_loss"] == m["val_loss"]
    assert rec.env["torch"] == torch.__version__
    assert rec.spec["model"]["n_layer"] == 2
    line = json.loads(json.dumps(rec.to_dict()))  # JSON-serialisable as it stands
    assert line["schema"] == SCHEMA and RunRecord.from_dict(line) == rec  # read back whole


def test_token_and_time_budgets():
    rec = run(tiny_spec(budget=Budget("tokens", 16 * 12 * 7)))
    assert rec.metrics["steps"] == 7
    rec = run(tiny_spec(budget=Budget("seconds", 1.0)))
    assert rec.metrics["steps"] >= 1
    # the budget counts training time only; a step may overshoot it by its own length
    assert rec.curve[-1]["time_s"] < 1.0 + 1.0
    with pytest.raises(ValueError, match="less than one step"):
        run(tiny_spec(budget=Budget("tokens", 10)))


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1e-3, warmup_frac=0.1, min_lr_frac=0.1)
    lrs = [lr_at(p / 100, cfg) for p in range(101)]
    assert lrs[0] < lrs[5] < lrs[10]
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[100] == pytest.approx(1e-4)


def test_nan_is_recorded_as_diverged():
    from variants.registry import SLOTS, register

    class NaNAfter(torch.nn.Module):
        """An MLP whose 4th training forward returns NaN: a stand-in for a blown-up run."""

        def __init__(self, cfg):
            super().__init__()
            self.lin = torch.nn.Linear(cfg.n_embd, cfg.n_embd)
            self.calls = 0

        def forward(self, x):
            self.calls += self.training  # evaluation passes do not count
            y = self.lin(x)
            return y * float("nan") if self.calls >= 4 else y

        def init_weights(self, std, proj_std):
            pass

    register("mlp", "nan-test")(NaNAfter)
    try:
        spec = dataclasses.replace(
            tiny_spec(), model=preset("micro", vocab_size=13, mlp="nan-test")
        )
        rec = run(spec)
    finally:
        del SLOTS["mlp"]["nan-test"]
    assert rec.status == "diverged"
    assert rec.diverged_at_step == 4
    assert rec.metrics["val_loss"] is None
    assert rec.curve[0]["step"] == 0  # what was measured before is kept


# ---------------------------------------------------------------------------------------------
# the CLI, as a user runs it


def test_cli_table_resume_and_force(tmp_path):
    out = tmp_path / "sweep"
    r = cli("--variant", "rope", "--seeds", "2", "--out", str(out), "--quiet", *FAST)
    assert r.returncode == 0, r.stderr
    assert "4 run(s) trained, 0 skipped" in r.stderr
    records = load_records(out / "runs.jsonl")
    assert sorted((x.variant, x.seed) for x in records) == [
        ("baseline", 0),
        ("baseline", 1),
        ("rope", 0),
        ("rope", 1),
    ]
    csv = (out / "summary.csv").read_text().splitlines()
    header = csv[0].split(",")
    for col in (
        "variant",
        "val_loss_mean",
        "val_loss_std",
        "accuracy_mean",
        "step_ms_mean",
        "tokens_per_s_mean",
        "peak_mem_mb_mean",
        "params",
        "d_val_loss",
        "verdict",
    ):
        assert col in header, col
    assert len(csv) == 3  # header + baseline + rope
    assert "| rope |" in r.stdout  # the table is printed at the end
    # the same command again: everything is skipped, nothing is appended
    r2 = cli("--variant", "rope", "--seeds", "2", "--out", str(out), "--quiet", *FAST)
    assert r2.returncode == 0 and "0 run(s) trained, 4 skipped" in r2.stderr
    assert len((out / "runs.jsonl").read_text().splitlines()) == 4
    # a new variant in the same directory reuses the finished baseline runs
    r3 = cli("--variant", "swiglu", "--seeds", "2", "--out", str(out), "--quiet", *FAST)
    assert "2 run(s) trained, 2 skipped" in r3.stderr
    r4 = cli("--seeds", "1", "--out", str(out), "--quiet", "--force", *FAST)
    assert "1 run(s) trained, 0 skipped" in r4.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--variant", "ropee"], ["ropee", "valid variants", "rope"]),
        (["--task", "sudoku"], ["sudoku", "addition"]),
        (["--task", "text", "--data", "/no/such/file.txt"], ["/no/such/file.txt"]),
        (["--steps", "0"], ["positive"]),
        (["--tokens", "5"], ["less than one step"]),
        (["--device", "cuda"], ["CUDA"]),
        (["--model", "huge"], ["huge", "tiny"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--steps", "3", "--time", "9"], ["not allowed with"]),
        (["--time", "0"], ["--time", "positive"]),
        (["--time", "nan"], ["--time", "positive"]),
        (["--lr", "inf"], ["--lr"]),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, words):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    fast = FAST if {"--steps", "--tokens", "--time"}.isdisjoint(args) else FAST[:4] + FAST[6:]
    r = cli(*fast, "--quiet", "--out", str(tmp_path), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize(
    "out, words",
    [
        ("a-file", ["is a file, not a folder"]),
        ("/dev/null/x", ["/dev/null/x", "is a file, not a folder"]),
        ("/sys/x", ["/sys/x", "cannot be written"]),
    ],
)
def test_cli_unusable_output_is_one_line_before_training(tmp_path, out, words):
    """An output that cannot take records is found before the first step, not after a run
    has trained (its result would be lost)."""
    if out == "a-file":
        out = tmp_path / "a-file"
        out.write_text("not a folder")
    r = cli(*FAST, "--quiet", "--out", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "val_loss" not in r.stderr  # nothing trained


def test_cli_too_small_token_budget_writes_nothing(tmp_path):
    out = tmp_path / "t"
    r = cli(*FAST[:4], "--tokens", "5", "--quiet", "--out", str(out))
    assert r.returncode == 2 and "less than one step" in r.stderr
    assert not (out / "command.json").exists()


@pytest.mark.parametrize(
    "source, words",
    [
        ("def broken(:\n", ["line 1", "syntax error"]),
        ("x = 1\nraise RuntimeError('no GPU here')\n", ["line 2", "RuntimeError", "no GPU here"]),
        ("import no_such_module_xyz\n", ["line 1", "ModuleNotFoundError", "no_such_module_xyz"]),
    ],
)
def test_cli_broken_plugin_is_one_line(tmp_path, source, words):
    plugin = tmp_path / "my_blocks.py"
    plugin.write_text(source)
    r = cli(*FAST, "--quiet", "--out", str(tmp_path / "o"), "--plugin", str(plugin))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    for w in [str(plugin), *words]:
        assert w in lines[0], (w, lines[0])


def test_cli_list_shows_every_variant_with_its_difference():
    r = cli("--list")
    assert r.returncode == 0
    assert "position: learned → rope" in r.stdout
    assert "norm: layernorm → rmsnorm, mlp: gelu → swiglu" in r.stdout  # modern
    for name in ("baseline", "separate-heads", "no-residual", "addition", "shakespeare", "tiny"):
        assert name in r.stdout


def test_cli_plugin_registers_a_user_variant(tmp_path):
    plugin = tmp_path / "my_blocks.py"
    plugin.write_text(
        "import torch\n"
        "from variants.registry import register, register_variant\n"
        "@register('mlp', 'blowup')\n"
        "class Blowup(torch.nn.Module):\n"
        "    def __init__(self, cfg):\n"
        "        super().__init__()\n"
        "        self.lin = torch.nn.Linear(cfg.n_embd, cfg.n_embd)\n"
        "    def forward(self, x):\n"
        "        return self.lin(x) * float('inf')\n"
        "    def init_weights(self, std, proj_std):\n"
        "        pass\n"
        "register_variant('blowup', 'an MLP that returns inf', mlp='blowup')\n"
    )
    out = tmp_path / "o"
    r = cli(
        "--plugin",
        str(plugin),
        "--variant",
        "blowup",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--quiet",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    assert "DIVERGED at step 1" in r.stderr  # recorded, and the sweep went on
    recs = {x.variant: x for x in load_records(out / "runs.jsonl")}
    assert recs["blowup"].status == "diverged" and recs["blowup"].diverged_at_step == 1
    assert recs["baseline"].status == "ok"
    assert math.isfinite(recs["baseline"].metrics["val_loss"])


def test_grad_norm_probe_and_checkpoint_round_trip(tmp_path):
    train = dict(probes=("grad_norms",), save_checkpoint=True)
    spec = tiny_spec(**train)
    rec = run(spec, checkpoint_dir=tmp_path)
    probes = rec.probes["grad_norms"]
    assert [p["step"] for p in probes] == [1, 5, 10, 15]
    assert all(len(p["norms"]) == 2 and min(p["norms"]) > 0 for p in probes)
    assert (tmp_path / f"{rec.run_id}.pt").is_file()
    # a run initialised from it starts where the first one ended
    follow = dataclasses.replace(tiny_spec(), init_from=rec.run_id)
    rec2 = run(follow, checkpoint_dir=tmp_path)
    assert rec2.curve[0]["val_loss"] == pytest.approx(rec.metrics["val_loss"])
    assert rec2.run_id != run_id_of(tiny_spec())
    with pytest.raises(ValueError, match="no checkpoint for run"):
        run(dataclasses.replace(tiny_spec(), init_from="0123456789ab"), checkpoint_dir=tmp_path)


def run_id_of(spec):
    from bench.core.records import run_id

    return run_id(spec.to_dict())
