"""Regression tests (issue 22 section 3, items 7 to 9): inputs that were silently taken, side
inputs of the report, and small things (a suggestion that errors, file modes, bare NaN)."""

from __future__ import annotations

import json
import math
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# 8. the report's side inputs and records that are not what they claim


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real sweep's folder: the baseline, two seeds."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    r = cli(*FAST, "--seeds", "2", "--jobs", "1", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def _copy(sweep, tmp_path):
    import shutil

    return Path(shutil.copytree(sweep, tmp_path / "run"))


def _report(run, *argv):
    from bench.analysis.report import main

    return main([str(run), *argv])


def test_report_side_inputs_give_a_traceback(sweep, tmp_path, capsys):
    """A --micro file whose benchmarks are not objects, one that is no JSON, a corrupt
    tune.csv: each one warning line naming its file; the report is built without them."""
    run = _copy(sweep, tmp_path)
    numbers, broken = tmp_path / "numbers.json", tmp_path / "broken.json"
    numbers.write_text(json.dumps({"benchmarks": [5]}))
    broken.write_text("{half")
    (run / "tune.csv").write_bytes(b'arm,lr\n"never closed,1\n\xff\xfe')
    assert _report(run, "--micro", str(numbers), str(broken)) == 0
    warned = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning")]
    assert len(warned) == 3, warned
    for name in (numbers, broken, run / "tune.csv"):
        assert sum(str(name) in x for x in warned) == 1, (name, warned)
    assert "Tuned comparison" not in (run / "report.md").read_text()


def _mutations():
    return {
        "unknown-budget-mode": lambda r: r["budget"].update(mode="minutes"),
        "schema-minus-1": lambda r: r.update(schema=-1),
        "id-not-its-spec": lambda r: r["spec"].update(seed=7),
    }


@pytest.mark.parametrize("case", [*_mutations(), "ok-with-null-loss"])
def test_report_records_that_are_not_what_they_claim_pass_silently(sweep, tmp_path, case, capsys):
    from bench.analysis.tables import write_summary
    from bench.core.records import RecordWarning, load_records

    run = _copy(sweep, tmp_path)
    lines = (run / "runs.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    if case == "ok-with-null-loss":
        rec["metrics"]["val_loss"] = None
    else:
        _mutations()[case](rec)
    (run / "runs.jsonl").write_text("\n".join([lines[0], json.dumps(rec)]) + "\n")
    capsys.readouterr()
    if case == "ok-with-null-loss":  # a complete record: the tables tell
        records = load_records(run)
    else:  # not a record of what it claims: skipped on load
        with pytest.warns(RecordWarning, match="runs.jsonl:2: skipped"):
            records = load_records(run)
    write_summary(records, run)
    warned = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning")]
    assert len(warned) == 1, warned
    shown = "1/2" if case == "ok-with-null-loss" else "1/1"  # in the table, in no statistic
    assert f"| baseline | {shown} |" in (run / "summary.md").read_text()


# ---------------------------------------------------------------------------------------------
# 9. small things


def test_study_with_ci_width_suggests_a_flag_that_errors():
    from ablations.flags import parse_args, resolve_config

    with pytest.raises(ValueError) as caught:
        resolve_config(parse_args(["--study", "heads", "--ci-width", "0.1"]))
    assert "add --variant" not in str(caught.value)
    assert "--study heads sets its own comparison" in str(caught.value)


def test_result_files_written_0600(sweep):
    """summary.md, config.toml, command.json get the mode runs.jsonl has (the umask's)."""
    mode = (sweep / "runs.jsonl").stat().st_mode & 0o777
    for name in ("summary.md", "summary.csv", "config.toml", "command.json"):
        assert (sweep / name).stat().st_mode & 0o777 == mode, name


def test_records_hold_bare_nan(sweep, tmp_path):
    from bench.core.records import append_record, load_records

    def strict(text):  # a parser that, like most outside Python, has no NaN
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))

    rec = json.loads((sweep / "runs.jsonl").read_text().splitlines()[0])
    rec["metrics"]["val_loss"] = float("nan")
    rec["curve"] = [{"step": 1, "val_loss": float("inf")}]
    append_record(tmp_path / "runs.jsonl", rec)
    written = strict((tmp_path / "runs.jsonl").read_text())
    assert written["metrics"]["val_loss"] is None and written["curve"][0]["val_loss"] is None
    old = json.dumps(rec)  # as records were written before: bare NaN, Infinity
    assert "NaN" in old
    (tmp_path / "old.jsonl").write_text(old + "\n")
    assert math.isnan(load_records(tmp_path / "old.jsonl")[0].metric("val_loss"))  # still read
