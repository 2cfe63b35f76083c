"""Answers a user can trust: the learning guard, the compute multipliers' positive controls on
real training, --ci-width, and results that always measure this machine."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_harness import cli, one_line_error  # the CLI in a subprocess, as a user runs it

from bench.analysis import multiplier, tables
from bench.core.records import finished_ids, load_records, run_id
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.core.train import run
from bench.tasks import build_task
from variants import preset

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"
OLD_DEFAULT = REFERENCE / "ablations" / "addition_tiny_400steps_cpu" / "runs.jsonl"


def _record(variant, seed, val_loss, acc=None, floor=None, curve=None, steps=100):
    """A minimal record of a finished run, as the harness writes them."""
    metrics = {"val_loss": val_loss, "accuracy": acc, "step_ms": 10.0, "peak_mem_mb": 1.0}
    if floor is not None:
        metrics["freq_loss"] = floor
    curve = curve or [{"step": 0, "time_s": 0.0, "val_loss": 4.0}]
    curve = curve + [{"step": steps, "time_s": steps / 100, "val_loss": val_loss}]
    return {
        "run_id": f"{variant}-{seed}",
        "variant": variant,
        "seed": seed,
        "task": "t",
        "budget": {"mode": "steps", "value": steps},
        "spec": {"model": {"n_layer": 1}, "train": {"lr": 1e-3}},
        "status": "ok",
        "env": {"device_name": "cpu"},
        "metrics": metrics,
        "curve": curve,
    }


def _verdicts(records) -> dict:
    (_, df), *rest = tables.summaries(records)
    assert not rest
    return dict(zip(df["variant"], df["verdict"], strict=True))


# ---------------------------------------------------------------------------------------------
# the learning guard


def test_old_default_plateau_is_inconclusive():
    """The old default (addition, tiny, 400 steps: baseline exact match < 1%) compared two
    plateaus; its committed records must now read 'inconclusive', not better/worse."""
    records = load_records(OLD_DEFAULT)
    (meta, df), *_ = tables.summaries(records)
    base = df[df["variant"] == "baseline"].iloc[0]
    assert base["accuracy_mean"] < 0.01 and base["learned"] is False
    assert _verdicts(records)["rope"] == tables.INCONCLUSIVE


def test_shakespeare_at_the_recipe_is_decided():
    """The default recipe's committed records (nanoGPT's CPU model on tiny Shakespeare at the
    baseline's own best lr): the baseline learned, so the verdicts are decided (RoPE n.s.,
    `modern` better), and the ½/1/2/4 ladder folds into the table with its control passing."""
    records = load_records(REFERENCE / "ablations" / "shakespeare_tiny_1400steps_cpu")
    (meta, df), *rest = tables.summaries(records)
    assert not rest and meta["ladder_budgets"] == [700.0, 1400.0, 2800.0, 5600.0]
    assert df["learned"].tolist() == [True, True, True]
    verdicts = _verdicts(records)
    assert verdicts["modern"] == "better" and verdicts["rope"] == "no significant difference"
    assert (df["x_ladder"].iloc[1:] > 1).all() and (df["x_steps"].iloc[1:] > 1).all()
    # the power law through 700, 1,400 and 5,600 steps reads the 2,800-step rung as ~2x
    control = meta["ladder_control"]
    assert control["status"] == "passed" and control["form"] == "power law"
    assert control["ci_low"] <= 2 <= control["ci_high"]
    assert (df["x_ladder_control"].iloc[1:] == "passed").all()


def test_guard_rules_on_constructed_runs():
    floor = 1.52  # addition's frequency floor: answer digits by position
    # a plateau a little below the floor with no exact answers: nothing learned
    plateau = [_record("baseline", s, 1.38, acc=0.009, floor=floor) for s in range(3)]
    plateau += [_record("rope", s, 1.37 + 0.001 * s, acc=0.01, floor=floor) for s in range(3)]
    assert _verdicts(plateau)["rope"] == tables.INCONCLUSIVE
    # the baseline learned, the variant did not: a finding, not a tie
    good = [_record("baseline", s, 0.05 + 0.01 * s, acc=0.97, floor=floor) for s in range(3)]
    stuck = [_record("no-residual", s, 1.5 + 0.01 * s, acc=0.0, floor=floor) for s in range(3)]
    assert _verdicts(good + stuck)["no-residual"] == tables.DID_NOT_LEARN
    # both learned: the t-test decides (here a clear, consistent gain)
    better = [_record("rope", s, 0.03 + 0.01 * s, acc=0.98, floor=floor) for s in range(3)]
    assert _verdicts(good + better)["rope"] == "better"
    # loss alone, no accuracy: 20% below the floor is the line
    lm = [_record("baseline", s, 2.0 + 0.01 * s, floor=3.35) for s in range(3)]
    lm += [_record("rope", s, 2.9 + 0.001 * s, floor=3.35) for s in range(3)]
    assert _verdicts(lm)["rope"] == tables.DID_NOT_LEARN
    text = tables.footnote(tables.summaries(lm)[0][0])
    assert "0.8 × the loss of a token-frequency table (3.350 nats here)" in text


def test_frequency_floor_is_what_a_frequency_table_scores():
    """Addition's floor is the entropy of answer digits by position: three uniform digits,
    a carry digit that is 0 or 1, and the end marker, averaged over the five targets."""
    task = build_task("addition", context=32, eval_batch_size=64)
    p1 = 0.5 + 1 / 2000  # P(carry = 1) for uniform 3-digit a, b: 0.4995 (about one half)
    carry = -(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1))
    expected = (3 * math.log(10) + carry + 0.0) / 5
    assert task.frequency_loss() == pytest.approx(expected, abs=0.02)
    shakespeare = build_task("shakespeare", context=64)
    assert 3.2 < shakespeare.frequency_loss() < 3.5  # unigram entropy of the characters


# ---------------------------------------------------------------------------------------------
# every ladder table carries its own control (constructed runs from a known law)


def _ladder_records(factors=(0.5, 1.0, 2.0, 4.0), shift_2x=0.0, seeds=5):
    """Baseline runs at each factor x 1,000 steps, from L = 1.5 + 40 S^-0.5 plus a per-seed
    offset and noise (`shift_2x` added at the 2x rung), and a variant at 1,000 steps as good
    as the baseline at 1,500."""
    rng = np.random.default_rng(0)

    def law(steps):
        return 1.5 + 40.0 * steps**-0.5

    out = []
    for seed in range(seeds):
        off = rng.normal(0, 0.01)
        for f in factors:
            loss = law(1000 * f) + off + rng.normal(0, 0.004) + (shift_2x if f == 2 else 0.0)
            rec = _record("baseline", seed, loss, steps=int(1000 * f))
            out.append(dict(rec, run_id=f"{rec['run_id']}-{int(1000 * f)}"))
        out.append(_record("better", seed, law(1500) + off + rng.normal(0, 0.004), steps=1000))
    return out


def _ladder_table(records):
    """(meta, the variant's row, the markdown, the variant's headline ladder cell)."""
    (meta, df), *rest = tables.summaries(records)
    assert not rest  # the other rungs folded in as the ladder
    md = tables.format_summary(df, meta)
    head = tables.headline_frame(df).set_index("variant")
    return meta, df.set_index("variant").loc["better"], md, head.loc["better", "× steps (ladder)"]


def test_a_ladder_table_prints_its_control_and_its_form():
    meta, row, md, cell = _ladder_table(_ladder_records())
    assert meta["ladder_budgets"] == [500.0, 1000.0, 2000.0, 4000.0]
    assert row["x_ladder_form"] == "power law" and row["x_ladder_control"] == "passed"
    assert row["x_ladder"] == pytest.approx(1.5, abs=0.02)
    found = re.search(
        r"Ladder control: the baseline at 2× the budget \(2,000 steps\), left out of the power "
        r"law fit and read off the other rungs, reads (\S+)× \[(\S+), (\S+)\]: passed",
        md,
    )
    assert found, md
    low, high = float(found[2]), float(found[3])
    assert low <= 2.0 <= high and float(found[1]) == pytest.approx(2.0, abs=0.03)
    assert "saturating power law" in md and cell.startswith("1.49×") and "failed" not in cell


def test_a_ladder_whose_control_fails_presents_no_findings():
    meta, row, md, cell = _ladder_table(_ladder_records(shift_2x=0.1))
    assert meta["ladder_control"]["status"] == "failed" and row["x_ladder_control"] == "failed"
    assert meta["ladder_control"]["multiplier"] < 1.8
    assert "failed (2 lies outside its interval), so this table's ladder multipliers are not " in md
    assert cell.endswith("(control failed)") and f"| {cell} |" in md


def test_a_ladder_without_a_2x_rung_says_its_control_could_not_run():
    meta, row, md, cell = _ladder_table(_ladder_records(factors=(0.5, 1.0, 4.0)))
    assert row["x_ladder_form"] == "log-linear" and row["x_ladder_control"] == "not run"
    assert "Ladder control: could not be run (the ladder has no 2× rung)." in md
    assert "log-linear (fewer than 4 budgets)" in md and "saturating" not in md
    assert "failed" not in cell


# ---------------------------------------------------------------------------------------------
# positive controls of the multipliers, on real training (micro model, tiny Shakespeare)

MAIN = 400  # steps: past the first drop, where final loss is close to linear in log-steps
SEEDS = 4


@pytest.fixture(scope="module")
def ladder_runs():
    """Baseline finals at 0.5x, 1x, 1.5x and 2x the main budget, each its own schedule."""
    task = build_task("shakespeare", context=32, eval_batches=4, eval_batch_size=64)
    cfg = preset("micro", vocab_size=task.vocab_size)
    out = {}
    for factor in (0.5, 1.0, 1.5, 2.0):
        steps = int(factor * MAIN)
        train = TrainConfig(
            batch_size=16,
            lr=3e-3,
            eval_every=max(1, steps // 20),
            eval_batches=4,
            eval_batch_size=64,
            timing_warmup=2,
        )
        for seed in range(SEEDS):
            budget = Budget("steps", steps)
            spec = RunSpec("baseline", cfg, {"name": "shakespeare", "data": None}, budget, train,
                           seed, "cpu")  # fmt: skip
            out[(factor, seed)] = run(spec, task=task)
    return out


@pytest.mark.slow
def test_ladder_reads_a_longer_baseline_as_its_budget(ladder_runs):
    """The baseline trained at 1.5x the budget, read against its 0.5x/1x/2x ladder, is worth
    1.5x the steps, within the interval; the 1x runs read against the ladder contain 1."""
    ladder = {
        s: {f * MAIN: ladder_runs[(f, s)].metrics["val_loss"] for f in (0.5, 1.0, 2.0)}
        for s in range(SEEDS)
    }
    longer = {s: ladder_runs[(1.5, s)].metrics["val_loss"] for s in range(SEEDS)}
    m = multiplier.ladder_multiplier(ladder, longer, MAIN)
    print(f"1.5x baseline against the ladder: {m['multiplier']:.2f}x [{m['ci_low']:.2f}, "
          f"{m['ci_high']:.2f}]")  # fmt: skip
    assert m["ci_low"] <= 1.5 <= m["ci_high"], m
    assert 1.35 < m["multiplier"] < 1.65 and not m["extrapolated"]
    itself = {s: ladder[s][MAIN] for s in range(SEEDS)}
    m1 = multiplier.ladder_multiplier(ladder, itself, MAIN)
    assert m1["ci_low"] <= 1.0 <= m1["ci_high"], m1


@pytest.mark.slow
def test_baseline_against_itself_reads_one_in_the_table(ladder_runs):
    """A variant that is the baseline (same runs under another name) reads 1 on every
    multiplier the table prints, with no significant difference."""
    records = [r for (f, _), r in ladder_runs.items() if f != 1.5]
    for seed in range(SEEDS):
        run = ladder_runs[(1.0, seed)]
        twin = dataclasses.replace(run, variant="baseline-twin", run_id=f"twin{seed}")
        records.append(twin)
    (meta, df), *rest = tables.summaries(records)
    assert not rest  # the 0.5x and 2x baseline-only groups folded in as the ladder
    assert meta["ladder_budgets"] == [200.0, 400.0, 800.0]
    row = df[df["variant"] == "baseline-twin"].iloc[0]
    assert row["verdict"] == "no significant difference" and row["d_val_loss"] == 0.0
    assert row["x_steps"] == 1.0 and row["x_time"] == 1.0
    assert row["x_ladder_ci_low"] <= 1.0 <= row["x_ladder_ci_high"]
    md = tables.format_summary(df, meta)
    assert "× steps (ladder)" in md and "1.00×" in md


# ---------------------------------------------------------------------------------------------
# the CLI: precision targets, this machine's results

FAST = ["--model", "micro", "--steps", "30", "--batch-size", "16", "--quiet"]


def test_recipe_fills_what_flags_leave_out():
    """Each part of the task's recipe applies unless a flag names it; --model names a preset
    as it stands."""
    from ablations.flags import parse_args, resolve_config
    from ablations.plan import build_plan

    def plan_of(*argv):
        return build_plan(resolve_config(parse_args(list(argv))))

    plan, _ = plan_of("--task", "addition", "--variant", "rope")
    base = plan.variants[0][1]
    assert (base.n_layer, base.n_embd, base.block_size) == (2, 64, 32)
    assert (plan.budget.value, plan.train.lr, plan.train.batch_size) == (3000, 3e-3, 64)
    assert plan.train.eval_every == 120  # 25 validation points
    plan, _ = plan_of("--task", "addition", "--model", "tiny", "--lr", "1e-3", "--steps", "400")
    base = plan.variants[0][1]
    assert (base.n_layer, base.n_embd, base.block_size) == (4, 128, 64)
    assert (plan.budget.value, plan.train.lr, plan.train.eval_every) == (400, 1e-3, 16)
    plan, _ = plan_of()  # the default task: shakespeare
    assert plan.task_spec["name"] == "shakespeare" and plan.train.batch_size == 12
    assert (plan.budget.value, plan.train.lr) == (1400, 0.00565686)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ci-width", "0"], ["--ci-width", "positive"]),
        (["--ci-width", "-0.1"], ["--ci-width", "positive"]),
        (["--ci-width", "nan"], ["--ci-width"]),
        (["--ci-width", "inf"], ["--ci-width"]),
        (["--ci-width", "abc"], ["--ci-width", "abc"]),
        (["--ci-width", "0.1", "--max-seeds", "1"], ["--max-seeds"]),
        (["--ci-width", "0.1", "--seeds", "5", "--max-seeds", "4"], ["--max-seeds"]),
        (["--ladder", "0,2"], ["--ladder"]),
        (["--ladder", "2"], ["--ladder", "two budgets"]),
        (["--lr", "nan"], ["--lr"]),
    ],
)
def test_bad_precision_args_are_one_line(tmp_path, args, words):
    r = cli(*FAST, "--variant", "rope", "--out", str(tmp_path), *args)
    one_line_error(r, *words)
    assert not (tmp_path / "runs.jsonl").exists()


def test_ci_width_adds_seeds_until_the_cap(tmp_path):
    """A target no 2-seed sweep can meet makes the loop add seeds up to --max-seeds, and the
    table says the target was not reached and that the rule looks at widths only."""
    out = tmp_path / "w"
    r = cli(*FAST, "--variant", "rope", "--seeds", "2", "--ci-width", "1e-6", "--max-seeds", "3",
            "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    seeds = sorted({(x.variant, x.seed) for x in load_records(out)})
    assert seeds == [(v, s) for v in ("baseline", "rope") for s in range(3)]
    summary = (out / "summary.md").read_text()
    assert "Target not reached at 3 seeds" in summary and "never at the sign" in summary
    assert json.loads((out / "command.json").read_text())["seeds"] == 3
    # a loose target is met by the seeds already there: nothing more is trained
    r2 = cli(*FAST, "--variant", "rope", "--seeds", "2", "--ci-width", "10", "--out", str(out))
    assert r2.returncode == 0 and "0 run(s) trained, 4 skipped" in r2.stderr
    assert "Target reached at 2 seeds" in (out / "summary.md").read_text()


def test_records_of_another_machine_are_trained_again(tmp_path):
    """A record measured elsewhere (e.g. a committed reference result) never counts as this
    machine's finished run; the default output folder is ignored by git."""
    out = tmp_path / "m"
    assert cli(*FAST, "--seeds", "1", "--out", str(out)).returncode == 0
    (rec,) = load_records(out)
    assert finished_ids(out, {"device_name": rec.env["device_name"]}) == {rec.run_id}
    foreign_env = {**rec.env, "hostname": "elsewhere", "device_name": "AMD EPYC"}
    foreign = dict(rec.to_dict(), env=foreign_env)
    (out / "runs.jsonl").write_text(json.dumps(foreign) + "\n")
    r = cli(*FAST, "--seeds", "1", "--out", str(out))
    assert r.returncode == 0 and "1 run(s) trained, 0 skipped" in r.stderr
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "results/local/ablations/x/runs.jsonl"], cwd=ROOT
    )
    assert ignored.returncode == 0


@pytest.mark.parametrize(
    "name",
    [
        "ablations/shakespeare_tiny_1400steps_cpu",
        "ablations/addition_L2-H4-d64-ctx32_3000steps_cpu",
        "ablations/addition_tiny_400steps_cpu",
        "ablations/speedrun_blocks_shakespeare_tiny_1400steps_cpu",
        "ablations/lengths_shakespeare_tiny_1400steps_cpu",
        "ablations/tune_shakespeare_tiny_1400steps_cpu",
        "ablations/tune_swiglu_shakespeare_tiny_600steps_cpu",
        "ablations/muon_shakespeare_tiny_1400steps_cpu",
        "ablations/lr_sweep_shakespeare_tiny_1400steps_cpu",
        "ablations/lr_sweep_addition_L2-H4-d64-ctx32_3000steps_cpu",
        "ablations/bpe1024_shakespeare_tiny_1400steps_cpu",
        "ablations/char_vs_bpe1024_shakespeare_tiny_1400steps_cpu",  # two tokenisers: in bpb
        "ablations/char_vs_bpe1024_shakespeare_tiny_1400steps_cpu/char",
        "bench/sweep",
    ],
)
def test_reference_tables_rebuild_from_their_records(tmp_path, name):
    """Every committed table is what its records give today: a change to the analysis shows
    up here (rebuild the references and say why), never silently in a README figure."""
    src = REFERENCE / name
    tables.write_summary(load_records(src), tmp_path)
    assert (tmp_path / "summary.md").read_text() == (src / "summary.md").read_text()


def _study_tables(name: str, records, out: Path) -> list[str]:
    """Write study `name`'s tables from `records` alone into `out`; the files written."""
    from ablations.studies import addition, calculator, pretraining

    if name == "addition":
        long, _ = addition.frames(records)
        addition.write_tables(long, out)
        return ["addition_by_digits.csv", "addition.csv", "addition.md"]
    if name == "calculator":
        cells = calculator.cell_frame(records)
        cells.to_csv(out / "calculator_by_cell.csv", index=False)
        calculator.summary_table(cells, calculator.CONDITIONS).to_csv(
            out / "calculator.csv", index=False
        )
        return ["calculator_by_cell.csv", "calculator.csv"]
    pretraining.seed_table(records).to_csv(out / "pretraining.csv", index=False)
    pretraining.curve_frame(records).to_csv(out / "pretraining_curves.csv", index=False)
    return ["pretraining.csv", "pretraining_curves.csv"]


@pytest.mark.parametrize("name", ["addition", "calculator", "pretraining"])
def test_reference_study_tables_rebuild_from_their_records(tmp_path, name):
    """The studies read their runs' evaluations from the records (`evals`, folded in from the
    old caches by bench.tools.migrate_evals): the committed tables are what those records give, and
    every record still hashes to its own run id."""
    src = REFERENCE / "studies" / name
    records = load_records(src)
    assert all(run_id(r.spec) == r.run_id for r in records)
    assert any(r.evals for r in records)
    for f in _study_tables(name, records, tmp_path):
        assert (tmp_path / f).read_text() == (src / f).read_text(), f
    assert not list(src.glob("*_eval.json"))  # nothing reads a cache any more
