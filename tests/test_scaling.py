"""The scaling study: the L(N, D) fit and the multipliers on constructed losses (known answers),
its controls (which must be able to fail), the study's plan, dry run and one-line errors, the
whole study on synthetic records, and the controls on real training at micro scale (slow)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

from bench.analysis import scaling_law as scaling

# a surface with the losses of the CPU grid (2 to 3 nats): E + A·N^-α + B·D^-β
TRUE = scaling.Surface(e=1.0, a=40.0, alpha=0.35, b=30.0, beta=0.3)
SIZES = {"s1": 5e4, "s2": 1e5, "s3": 2.3e5, "s4": 3.4e5}  # N
BUDGETS = (2, 4, 8, 16)  # the baseline's tokens per parameter
ARM_BUDGET = 3  # every other arm's


def flops(n: float) -> float:
    """FLOPs per token of a size: a power law, so the study's log-log interpolation is exact."""
    return 6.6 * n**1.02


def _frame(arms: dict, noise: float = 0.0, seeds: int = 3, shift: dict | None = None):
    """Runs on TRUE: the baseline on the grid, each arm at ARM_BUDGET x N tokens with the loss
    the baseline reaches on factor x those (a callable of N, or a number). `noise`: each seed's
    luck at a size (shared by its runs there) plus a smaller per-run part; `shift`: size ->
    a loss added to that size's baseline (a size off the law)."""
    rng = np.random.default_rng(0)
    rows = []
    for size, n in SIZES.items():
        for seed in range(seeds):
            luck = noise * rng.standard_normal()
            runs = [("baseline", t * n, 1.0, (shift or {}).get(size, 0.0)) for t in BUDGETS]
            runs += [(arm, ARM_BUDGET * n, k, 0.0) for arm, k in arms.items()]
            for arm, d, k, off in runs:
                k = k(n) if callable(k) else k
                loss = float(TRUE.predict(n, k * d)) + off + luck + 0.5 * noise * rng.normal()
                rows.append({"arm": arm, "size": size, "seed": seed, "params": n, "tokens": d,
                             "compute": flops(n) * d, "loss": loss})  # fmt: skip
    return pd.DataFrame(rows)


def _cells(result) -> pd.DataFrame:
    return result.cells.set_index(["arm", "size"])


# ---------------------------------------------------------------------------- the fit


def test_fit_recovers_the_surface():
    base = _frame({})
    fit = scaling.fit_surface(base["params"], base["tokens"], base["loss"])
    assert fit.alpha == pytest.approx(0.35, abs=2e-3) and fit.beta == pytest.approx(0.3, abs=2e-3)
    assert fit.e == pytest.approx(1.0, abs=5e-3) and not fit.at_edge
    assert fit.a == pytest.approx(40.0, rel=0.02) and fit.b == pytest.approx(30.0, rel=0.02)
    noisy = _frame({}, noise=0.003)
    fit = scaling.fit_surface(noisy["params"], noisy["tokens"], noisy["loss"])
    assert abs(fit.alpha - 0.35) < 0.06 and abs(fit.beta - 0.3) < 0.01 and abs(fit.e - 1) < 0.1
    grid = _frame({})
    assert np.abs(fit.predict(grid["params"], grid["tokens"]) - grid["loss"]).max() < 0.01


def test_fit_keeps_e_non_negative_on_log_linear_losses():
    """Losses linear in ln N and ln D (no curvature, as at toy budgets) pull a free E to large
    negative values with exponents near 0; the fit keeps E ≥ 0 (a loss is) and stays close."""
    n, d = np.meshgrid(np.geomspace(1e4, 1e6, 5), np.geomspace(1e4, 1e8, 5))
    loss = 5 - 0.1 * np.log(n) - 0.1 * np.log(d)
    fit = scaling.fit_surface(n.ravel(), d.ravel(), loss.ravel())
    assert fit.e >= 0 and fit.a >= 0 and fit.b >= 0
    assert np.abs(fit.predict(n, d) - loss).max() < 0.1  # a power law bent to a line


def test_fit_needs_three_sizes_and_three_budgets_and_inverts():
    base = _frame({})
    two_sizes = base[base["size"].isin(["s1", "s2"])]
    with pytest.raises(ValueError, match="3 or more sizes and 3 or more budgets"):
        scaling.fit_surface(two_sizes["params"], two_sizes["tokens"], two_sizes["loss"])
    d = TRUE.tokens_for(1e5, float(TRUE.predict(1e5, 7e5)))
    assert d == pytest.approx(7e5, rel=1e-9)
    assert TRUE.tokens_for(1e5, 1.0 + 40 * 1e5**-0.35) == math.inf  # that N's floor: never


def _least_compute_by_hand(loss: float) -> float:
    """min over N of F(N)·D(N, loss) on TRUE, by a scalar minimiser (not the study's grid)."""

    def ln_c(ln_n):
        n = math.exp(ln_n)
        d = float(TRUE.tokens_for(n, loss))
        return math.log(flops(n) * d) if math.isfinite(d) else 1e9

    return math.exp(minimize_scalar(ln_c, bounds=(math.log(1e3), math.log(1e8))).fun)


# ---------------------------------------------------------------------------- multipliers


def test_multipliers_recover_a_known_effective_data_factor():
    """An arm whose loss is the baseline's at 1.5x its tokens reads a data multiplier of 1.5 at
    every size, and a compute multiplier equal to the least compute by hand over its own; the
    baseline's twin reads 1. Exact without noise; with seed noise the intervals contain them."""
    exact = scaling.compute_multipliers(_frame({"eff": 1.5, "twin": 1.0}), n_boot=20)
    cells = _cells(exact)
    for size, n in SIZES.items():
        eff = cells.loc[("eff", size)]
        assert eff["data_x"] == pytest.approx(1.5, rel=2e-3)
        assert cells.loc[("twin", size), "data_x"] == pytest.approx(1.0, rel=2e-3)
        by_hand = _least_compute_by_hand(eff["loss"]) / (flops(n) * ARM_BUDGET * n)
        assert eff["compute_x"] == pytest.approx(by_hand, rel=5e-3)
    noisy = _cells(scaling.compute_multipliers(_frame({"eff": 1.5}, noise=0.005), n_boot=300))
    for size in SIZES:
        eff = noisy.loc[("eff", size)]
        assert eff["data_low_all"] <= 1.5 <= eff["data_high_all"]


def test_the_2x_control_reads_two_and_can_fail():
    """The baseline on 2x the tokens, charged 1x, reads 2 (its control passes); a mislabelled
    control that is worth 3x fails it, and then no arm gets a verdict."""
    good = scaling.compute_multipliers(
        _frame({"eff": 1.5, "ctrl": 2.0}, noise=0.005, seeds=6), controls={"ctrl": 2.0}, n_boot=300
    )
    cells = _cells(good)
    for size in SIZES:
        ctrl = cells.loc[("ctrl", size)]
        assert ctrl["data_low_all"] <= 2 <= ctrl["data_high_all"]  # the control's intervals
        assert cells.loc[("ctrl", size), "data_x"] == pytest.approx(2.0, rel=0.05)
    assert good.controls_pass and good.verdicts["eff"]["data"] == "holds across sizes"
    bad = scaling.compute_multipliers(
        _frame({"eff": 1.5, "ctrl": 3.0}, noise=0.005), controls={"ctrl": 2.0}, n_boot=300
    )
    control = next(c for c in bad.controls if c.arm == "ctrl")
    assert control.passed is False and not bad.controls_pass
    assert all(v.startswith("not read") for v in bad.verdicts["eff"].values())


def test_leave_one_size_out_predicts_each_size_and_can_fail():
    """On losses that follow the surface every size left out is predicted within its interval;
    when the largest size sits 0.1 nats above the law, its prediction misses and the control
    fails."""
    good = scaling.compute_multipliers(_frame({"eff": 1.5}, noise=0.005), n_boot=300)
    assert good.loso["passed"].all() and good.controls_pass
    assert good.loso["residual"].abs().max() < 0.04
    off = scaling.compute_multipliers(
        _frame({"eff": 1.5}, noise=0.005, shift={"s4": 0.1}), n_boot=300
    )
    loso = off.loso.set_index("size")
    assert not loso.loc["s4", "passed"] and loso.loc["s4", "residual"] > 0.05
    assert not off.controls_pass and off.verdicts["eff"]["data"].startswith("not read")


def test_leave_one_size_out_needs_four_sizes():
    three = _frame({"eff": 1.5})
    three = three[three["size"] != "s4"]
    res = scaling.compute_multipliers(three, n_boot=20)
    assert res.loso["passed"].isna().all()
    check = next(c for c in res.controls if c.arm is None)
    assert check.passed is None and "4 or more sizes" in check.detail
    assert res.verdicts["eff"]["data"].startswith("not read")  # a control not evaluated


def test_verdicts_follow_the_rule():
    """Above 1 everywhere with a flat trend: holds; below 1 everywhere: worse; above 1
    everywhere but shrinking with N (the trend interval wholly below 0): not resolved."""
    shrinking = lambda n: 1.8 * (n / 5e4) ** -0.25  # noqa: E731 - 1.8 at s1 down to 1.1 at s4
    res = scaling.compute_multipliers(
        _frame({"eff": 1.5, "worse": 0.5, "shrinks": shrinking}, noise=0.002), n_boot=300
    )
    cells = _cells(res)
    assert all(cells.loc[("shrinks", s), "data_low"] > 1 for s in SIZES)
    trends = res.trends.set_index(["arm", "kind"])
    assert trends.loc[("shrinks", "data"), "high"] < 0
    assert trends.loc[("eff", "data"), "low"] <= 0 <= trends.loc[("eff", "data"), "high"]
    assert res.verdicts["eff"]["data"] == "holds across sizes"
    assert res.verdicts["worse"] == {
        "data": "worse at every size",
        "compute": "worse at every size",
    }
    assert res.verdicts["shrinks"]["data"] == "not resolved"


def test_no_verdict_from_a_reading_far_outside_the_grid():
    """A compute multiplier whose compute-optimal model lies far beyond the sizes trained (the
    CPU grid's modern read 0.03x with n_opt at the search's bound, 100x below its smallest
    size) is decided by the surface's form, not by runs: no verdict from it."""
    res = scaling.compute_multipliers(_frame({"eff": 1.5}, noise=0.002), n_boot=100)
    assert res.verdicts["eff"] == {"data": "holds across sizes", "compute": "holds across sizes"}
    assert not res.cells["compute_far"].any() and not res.cells["data_far"].any()
    cells = res.cells.set_index(["arm", "size"])
    assert (cells["n_opt"] > 50000 / 2).all()  # near the grid, so read
    res.cells.loc[res.cells["size"] == "s2", "compute_far"] = True
    assert scaling.verdict(res, "eff", []) == {
        "data": "holds across sizes",
        "compute": "not read: far outside the baseline's grid at s2",
    }


def test_flops_curve_interpolates_log_log_and_extends():
    curve = scaling.FlopsCurve.through([1e4, 1e5, 1e6], [flops(1e4), flops(1e5), flops(1e6)])
    for n in (3e3, 2e4, 5e5, 4e7):
        assert curve(n) == pytest.approx(flops(n), rel=1e-9)


# ---------------------------------------------------------------------------- the study

MICRO = dict(sizes=((1, 32), (1, 48), (2, 48), (2, 64)), budgets=(2.0, 4.0, 8.0, 16.0),
             arm_budget=3.0, block_size=32, batch_size=16, lr=3e-3)  # fmt: skip
WORTH = {"baseline": 1.0, "swiglu": 1.5, "no-residual": 0.3}  # data factor of each fake variant


def _fake_execute(shift: float = 0.0):
    """StudyContext.execute without training: a record per spec whose final loss is TRUE's at
    the baseline's N for the spec's size and WORTH x its tokens, plus seed luck (`shift` added
    to the largest size's baseline: a size off the law)."""
    from ablations.studies.scaling import Ladder, model_counts, size_config
    from bench.core.records import RunRecord, run_id

    ladder = Ladder(**MICRO)

    def execute(self, specs, task=None, jobs=1, force=None):
        out = []
        for spec in specs:
            m = spec.model
            n = model_counts(size_config(m.n_layer, m.n_embd, ladder, m.vocab_size))[0]
            luck = np.random.default_rng([spec.seed, m.n_layer, m.n_embd]).normal()  # the seed's
            tokens = spec.budget.value
            own = np.random.default_rng([spec.seed, m.n_layer, m.n_embd, int(tokens)]).normal()
            loss = float(TRUE.predict(n, WORTH[spec.variant] * tokens)) + 0.004 * luck + 0.002 * own
            loss += shift if (m.n_layer, m.n_embd) == (2, 64) and spec.variant == "baseline" else 0
            out.append(RunRecord(
                run_id=run_id(spec.to_dict()), variant=spec.variant, seed=spec.seed,
                task="shakespeare", budget=spec.to_dict()["budget"], spec=spec.to_dict(),
                status="ok", env={"device_name": "fake CPU"},
                metrics={"val_loss": loss, "wall_s": 0.0}, curve=[],
            ))  # fmt: skip
        return out

    return execute


def _run_study(tmp_path, monkeypatch, variants=("swiglu",), shift=0.0):
    from ablations.studies.base import StudyContext
    from ablations.studies.scaling import Ladder, ScalingStudy

    monkeypatch.setattr(StudyContext, "execute", _fake_execute(shift))
    ctx = StudyContext(out=tmp_path, seeds=3, quiet=True, variants=variants)
    study = ScalingStudy(Ladder(**MICRO), n_boot=200)
    study.check(ctx)
    return study.run(ctx), study, ctx


def test_the_study_reads_a_known_gain_and_writes_its_table_and_figure(tmp_path, monkeypatch):
    """The whole study on records made from a known surface (no training): swiglu, made worth
    1.5x the data, reads 1.5 and 'holds across sizes'; the control reads 2 and passes; the
    points charge the control its 1x tokens and every run its FLOPs per token x those."""
    report, study, ctx = _run_study(tmp_path, monkeypatch)
    print(report)
    cells = pd.read_csv(tmp_path / "scaling.csv").set_index(["arm", "size"])
    for size in ("1x32", "1x48", "2x48", "2x64"):
        assert cells.loc[("swiglu", size), "data_x"] == pytest.approx(1.5, rel=0.06)
        assert cells.loc[("baseline ×2 tokens", size), "data_x"] == pytest.approx(2, rel=0.06)
    assert "| swiglu · data × |" in report and "data × holds across sizes" in report
    assert "control: baseline ×2 tokens · data × (must read 2) ‡" in report
    assert "A control did not pass" not in report and "**FAILS**" not in report
    points = pd.read_csv(tmp_path / "scaling_points.csv")
    control = points[points["arm"] == "baseline ×2 tokens"]
    assert (control["trained_tokens"] == 2 * control["tokens"]).all()
    plan = study.planned(ctx, 65)
    fpt = {(p.arm.label, p.size): p.flops_per_token for p in plan}
    for r in points.itertuples():
        assert r.compute == pytest.approx(fpt[(r.arm, r.size)] * r.tokens)
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert (tmp_path / "scaling_loso.csv").exists() and "Rule:" in report


def test_a_failed_control_turns_verdicts_off(tmp_path, monkeypatch):
    """The largest size's baseline 0.1 nats off the law: leaving it out predicts it badly, the
    control fails, and the report says the multipliers are not findings."""
    report, _, _ = _run_study(tmp_path, monkeypatch, shift=0.1)
    assert "**FAILS**" in report and "A control did not pass" in report
    assert "× holds across sizes" not in report and "not read: control failed" in report


def test_plan_grid_and_budgets():
    """The CPU default: 4 sizes x 4 budgets for the baseline, each other arm at one budget
    between the grid's, the control on twice that (charged once), 3 seeds at the two smallest
    sizes and 2 at the others; the control's steps are exactly twice the variant's."""
    from pathlib import Path

    from ablations.studies.base import StudyContext
    from ablations.studies.scaling import CONTROL, PRESETS, ScalingStudy

    ctx = StudyContext(out=Path("unused"), seeds=3, variants=("modern",))
    plan = ScalingStudy().planned(ctx, 65)
    assert len(plan) == (3 + 3 + 2 + 2) * 6
    base = [p for p in plan if p.arm.label == "baseline"]
    assert len({(p.size, p.spec.budget.value) for p in base}) == 16
    for size in {p.size for p in plan}:
        at = {p.arm.label: p for p in plan if p.size == size}
        assert at[CONTROL].spec.budget.value == 2 * at["modern"].spec.budget.value
        assert at[CONTROL].charged == at["modern"].spec.budget.value
        assert at["modern"].spec.budget.value / at["modern"].params == pytest.approx(3, rel=0.02)
    assert PRESETS["cpu"].hardware == "cpu" and PRESETS["h100"].hardware == "h100"


# ---------------------------------------------------------------------------- the command


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    from test_harness import cli

    out = tmp_path / "s"
    r = cli("--study", "scaling", "--variant", "modern", "--dry-run", "--device", "cpu",
            "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    for words in ("a dry run: nothing is trained", "| baseline | 1x64 | 53,504 | 2.01 |",
                  "| modern | 3x96 |", "| baseline ×2 tokens | 2x96 |", "60 runs",
                  "one-thread CPU time", "GFLOP/s"):  # fmt: skip
        assert words in r.stdout, words
    assert not out.exists() and "[1/" not in r.stderr  # no folder, no run started
    r = cli("--study", "scaling", "--preset", "h100", "--dry-run", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "| baseline | 12x768 |" in r.stdout and "25% MFU" in r.stdout and not out.exists()


def test_the_study_trains_on_the_users_text_and_says_how_often_it_repeats(tmp_path):
    """`--task text --data PATH --tokenizer ...` reaches every run's spec (the data by content,
    the tokeniser by name and hash) and the command line; the plan says how many times the
    longest run reads the train split, and past 4 epochs what that means and what corpus
    would do. The default's spec stays TASK, so committed runs keep their ids."""
    from pathlib import Path

    from test_harness import cli

    from ablations.config import TaskSection
    from ablations.studies.base import StudyContext
    from ablations.studies.scaling import TASK, ScalingStudy

    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over it.\n" for i in range(6000)))
    given = TaskSection(name="text", data=str(text), tokenizer="bpe:300")
    ctx = StudyContext(out=Path("unused"), seeds=2, task=given)
    study = ScalingStudy()
    study.check(ctx)
    task = study._task(ctx)
    spec = study.planned(ctx, task.vocab_size)[0].spec
    assert spec.task["name"] == "text" and spec.task["data"] == str(text.resolve())
    assert spec.task["data_sha256"] == task.sha256 and spec.task["tokenizer"] == "bpe:300"
    assert spec.model.vocab_size == task.vocab_size > 65
    plan = study.plan(ctx)
    assert "--task text --data" in plan and "--tokenizer bpe:300" in plan
    longest = max(p.spec.budget.value for p in study.planned(ctx, task.vocab_size))
    epochs = f"reads it {longest / task.n_train:.1f} times"
    assert f"holds {task.n_train:,} tokens" in plan and epochs in " ".join(plan.split())
    assert "Muennighoff" in plan and f"{longest / 4:,.0f} tokens or more" in plan

    default = StudyContext(out=Path("unused"), seeds=2)
    assert ScalingStudy().planned(default, 65)[0].spec.task == TASK
    r = cli("--study", "scaling", "--preset", "h100", "--dry-run", "--out", str(tmp_path / "h"))
    assert r.returncode == 0 and "reads it 169.4 times" in " ".join(r.stdout.split())


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sizes", "2x64,3x96,4x128"], ["--sizes", "4 or more"]),
        (["--sizes", "2x64,3x96,4x128,big"], ["--sizes 'big'", "LAYERSxWIDTH"]),
        (["--sizes", "1x64,2x64,3x96,4x100"], ["--sizes '4x100'", "multiple of 8"]),
        (["--variant", "nope"], ["nope"]),
        (["--seeds", "1"], ["--seeds 2"]),
        (["--preset", "nope"], ["--preset 'nope'", "cpu, h100"]),
        (["--preset", "h100", "--device", "cpu"], ["--preset h100", "--device cuda", "--dry-run"]),
        (["--scale", "0.001"], ["--scale 0.001", "3 different token budgets"]),
        (["--task", "addition"], ["task 'addition' is not one", "--task text --data PATH"]),
        (["--task", "text"], ["needs data", "--data PATH"]),
        (["--task", "text", "--data", "no/such.txt"], ["no/such.txt", "does not exist"]),
    ],
)
def test_bad_scaling_args_are_one_line(tmp_path, args, words):
    from test_harness import cli, one_line_error

    one_line_error(cli("--study", "scaling", "--out", str(tmp_path / "s"), *args), *words)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["--study", "heads", "--sizes", "1x64,2x64,3x96,4x128"],
            ["--sizes is for --study scaling"],
        ),
        (["--study", "heads", "--preset", "cpu"], ["--preset is for --study scaling"]),
        (["--study", "heads", "--dry-run"], ["--dry-run is for --study scaling"]),
        (["--variant", "rope", "--dry-run"], ["--dry-run is for --study scaling"]),
        (["--study", "residual", "--task", "addition"], ["--study residual sets its own task"]),
    ],
)
def test_scaling_flags_belong_to_the_scaling_study(tmp_path, args, words):
    from test_harness import cli, one_line_error

    one_line_error(cli(*args, "--out", str(tmp_path / "h")), *words)
    assert not (tmp_path / "h").exists()


# ---------------------------------------------------------------------------- real training


def _real_study(tmp_path, ladder: dict, variants, control: bool, seeds: int = 2):
    from ablations.studies.base import StudyContext
    from ablations.studies.scaling import Ladder, ScalingStudy

    study = ScalingStudy(Ladder(**ladder), n_boot=300, control=control)
    ctx = StudyContext(out=tmp_path, seeds=seeds, quiet=True, variants=variants, jobs=2)
    study.check(ctx)
    report = study.run(ctx)
    cells = pd.read_csv(tmp_path / "scaling.csv")
    return report, {(r.arm, r.size): r for r in cells.itertuples()}


@pytest.mark.slow
def test_the_study_runs_end_to_end_on_real_training(tmp_path):
    """The study through the real executor and records at toy budgets (~20 s on 2 cores): 48
    runs, every row of the table, a figure. The numbers mean nothing at this size."""
    tiny = dict(sizes=((1, 16), (1, 24), (1, 32), (2, 32)), budgets=(0.2, 0.4, 0.8, 1.6),
                arm_budget=0.3, block_size=64, batch_size=16, lr=3e-3)  # fmt: skip
    report, cells = _real_study(tmp_path, tiny, ("swiglu",), True)
    print(report)
    assert len(cells) == 8 and "control: each size left out" in report
    assert len(pd.read_csv(tmp_path / "scaling_points.csv")) == 48
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


@pytest.mark.slow
def test_baseline_on_twice_the_tokens_reads_two_on_real_training(tmp_path):
    """Controls (a) and (b) on real training, at CI cost (~5.5 min on 2 cores): a ladder of
    one depth (2x32 to 2x64, N = 25k to 98k; a ladder that mixes 1- and 2-layer models puts the
    1-layer ones below the others' surface and fails (b) at this size), 2 to 16 tokens/param,
    batch 8 x 32 so the shortest run still takes ~190 steps, the recipe's lr, 5 seeds (with 3,
    the 2x32 reading's interval came out 2.19x [2.07, 2.41] on seeds 3-5: the percentile
    bootstrap over 3 seeds is too narrow). The baseline on 2x the tokens, charged 1x, reads a
    data multiplier of 2 within its interval at every size, and the interval excludes 1 (the
    control sees a real 2x); every size left out of the fit is predicted."""
    micro = dict(sizes=((2, 32), (2, 40), (2, 48), (2, 64)), budgets=(2.0, 4.0, 8.0, 16.0),
                 arm_budget=3.0, block_size=32, batch_size=8, lr=5.656854249492381e-3,
                 small_sizes=4)  # fmt: skip
    report, cells = _real_study(tmp_path, micro, ("baseline",), True, seeds=5)
    print(report)
    assert "**FAILS**" not in report, report
    control = [c for (arm, _), c in cells.items() if arm == "baseline ×2 tokens"]
    assert len(control) == 4 and all(c.data_low_all > 1 for c in control), control


@pytest.mark.slow
def test_no_residual_at_depth_8_reads_below_one(tmp_path):
    """Without the residual an 8-block model barely learns: it is worth less than the
    baseline's data and compute at every width."""
    deep = dict(sizes=((8, 16), (8, 24), (8, 32), (8, 40)), budgets=(0.75, 1.5, 3.0, 6.0),
                arm_budget=1.5, block_size=32, batch_size=16, lr=3e-3)  # fmt: skip
    report, cells = _real_study(tmp_path, deep, ("no-residual",), False)
    print(report)
    nores = [c for (arm, _), c in cells.items() if arm == "no-residual"]
    assert len(nores) == 4 and all(c.data_x < 1 and c.compute_x < 1 for c in nores), nores
