"""--tune lr: the choice rule, the edge extension, one-line errors, and a real micro tune that
chooses on seeds no verdict uses and trains nothing twice when rerun."""

from __future__ import annotations

import json
import math

import pytest
from test_harness import cli, one_line_error  # the CLI in a subprocess, as a user runs it

from bench.analysis import tuning as tune
from bench.core.records import load_records

FAST = ["--model", "micro", "--batch-size", "16", "--quiet", "--jobs", "1"]
TUNE = ["--variant", "rope", "--tune", "lr"]


def test_grid_and_keys_parse():
    assert tune.parse_keys("lr") == ("lr",)
    assert tune.parse_keys("lr, weight_decay,lr") == ("lr", "weight_decay")
    assert tune.parse_grid("0.25,0.5,2,4") == (0.25, 0.5, 1.0, 2.0, 4.0)  # 1 always a point


def test_best_value_and_edge():
    c = tune.Choice("lr", 1e-3, {5e-4: 3.0, 1e-3: 2.5, 2e-3: 2.7})
    assert c.best == 1e-3 and c.edge is None
    c = tune.Choice("lr", 1e-3, {5e-4: 3.0, 1e-3: 2.5, 2e-3: 2.1})
    assert c.best == 2e-3 and c.edge == "up"
    assert tune.beyond([5e-4, 1e-3, 2e-3], "up") == pytest.approx(4e-3)
    assert tune.beyond([5e-4, 1e-3, 2e-3], "down") == pytest.approx(2.5e-4)
    # a diverged value never wins; a tie goes to the value nearest the default
    c = tune.Choice("lr", 1e-3, {5e-4: 2.5, 1e-3: 2.5, 4e-3: math.inf})
    assert c.best == 1e-3 and c.edge is None
    assert tune.Choice("lr", 1e-3, {1e-3: math.inf, 2e-3: math.inf}).edge is None


@pytest.mark.parametrize(
    "args, words",
    [
        (["--variant", "rope", "--tune", "foo"], ["--tune 'foo'", "lr"]),
        (["--variant", "rope", "--tune", ""], ["--tune", "lr"]),
        (["--tune", "lr"], ["--tune compares arms", "--variant"]),
        ([*TUNE, "--tune-grid", "0,1,2"], ["--tune-grid", "positive"]),
        ([*TUNE, "--tune-grid=-1,2"], ["--tune-grid", "positive"]),
        ([*TUNE, "--tune-grid", "2"], ["--tune-grid", "two"]),
        ([*TUNE, "--tune-grid", "a,b"], ["--tune-grid", "a,b"]),
        ([*TUNE, "--tune-frac", "0"], ["--tune-frac"]),
        ([*TUNE, "--tune-frac", "1.5"], ["--tune-frac"]),
        ([*TUNE, "--tune-seeds", "0"], ["--tune-seeds"]),
        ([*TUNE, "--ladder"], ["--ladder"]),
        ([*TUNE, "--seeds", "1001"], ["tuning seeds"]),
    ],
)
def test_bad_tune_args_are_one_line(tmp_path, args, words):
    r = cli(*FAST, "--steps", "10", "--out", str(tmp_path), *args)
    one_line_error(r, *words)
    assert not (tmp_path / "runs.jsonl").exists()


def test_a_micro_tune_chooses_on_other_seeds_and_resumes(tmp_path):
    """Baseline vs rope, lr grid x{0.5,1,2} at half of 20 steps: at so short a budget the
    largest lr wins, so each grid is extended upwards, point by point, and says so. The tuning
    runs use seeds 1000+ at the tuning budget, the verdict runs seeds 0-1 at the full budget,
    the table has the chosen lr and both differences, the figure exists; a rerun trains
    nothing."""
    out = tmp_path / "t"
    args = [*FAST, "--steps", "20", "--seeds", "2", "--variant", "rope", "--tune", "lr",
            "--tune-grid", "0.5,2", "--tune-frac", "0.5", "--tune-seeds", "1",
            "--out", str(out)]  # fmt: skip
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    recs = load_records(out)
    tuning = [x for x in recs if x.seed >= tune.TUNE_SEED_OFFSET]
    verdict = [x for x in recs if x.seed < tune.TUNE_SEED_OFFSET]
    assert {x.budget["value"] for x in tuning} == {10}
    assert {x.budget["value"] for x in verdict} == {20}
    assert {x.seed for x in verdict} == {0, 1} and {x.seed for x in tuning} == {1000}
    choices = json.loads((out / "tune.json").read_text())
    from bench.tasks import task_recipe

    default = task_recipe("shakespeare").lr
    for arm in ("baseline", "rope"):
        (c,) = choices[arm]
        tried = sorted(v for v, _ in c["losses"])
        assert c["default"] == default and len(tried) == 3 + c["added"]  # grid + extensions
        assert c["extended"] == "up" and c["added"] >= 1
        # each added point one grid step (x2) past the last; interior at the end, or given up
        expected = [default * 2 ** (k + 2) for k in range(c["added"])]
        assert tried[3:] == pytest.approx(expected, rel=1e-5)  # grid values: 6 digits
        assert c["still_at_edge"] == (c["added"] == tune.MAX_EXTENSIONS)
        assert c["best"] != max(tried) or c["still_at_edge"]
        lrs = {x.spec["train"]["lr"] for x in verdict if x.variant == arm}
        assert lrs == {c["best"], default}  # at its own best and at the shared default
        best_loss = min(loss for _, loss in c["losses"])
        assert dict(c["losses"])[c["best"]] == best_loss
    text = (out / "tune.md").read_text()
    for words in ("chosen lr", "Δ tuned vs tuned", "Δ at the default", "grid extended up",
                  "seeds 1000, disjoint from the verdict's seeds 0–1"):  # fmt: skip
        assert words in text, words
    assert (out / "figures" / "lr_sweep.png").stat().st_size > 10_000
    assert "wall time:" in r.stderr
    from bench.analysis.report import (
        build_report,  # the report from records: the table and the figure
    )

    report = build_report(out).read_text()
    assert "Tuned comparison" in report and "lr_sweep.png" in report
    again = cli(*args)
    assert again.returncode == 0 and f"0 run(s) trained, {len(recs)} skipped" in again.stderr
    assert len(load_records(out)) == len(recs)


def test_tune_reuses_the_recipes_baseline_sweep(tmp_path, monkeypatch, capsys):
    """The recipe's committed baseline sweep (here a micro one made first) holds the baseline's
    tuning runs: --tune on a new variant reads them instead of training them (they stay out of
    its folder: they may be another machine's), trains only the variant's grid, and its table
    says which points were reused. A sweep of another spec (other steps) is not used."""
    from ablations.run import main
    from bench.core.spec import Recipe

    sweep = tmp_path / "sweep"
    common = [*FAST, "--seeds", "2", "--tune", "lr", "--tune-grid", "0.5,2", "--tune-seeds", "1"]
    assert main([*common, "--steps", "12", "--variant", "baseline", "--out", str(sweep)]) == 0
    swept = [r for r in load_records(sweep) if r.seed >= tune.TUNE_SEED_OFFSET]
    assert len(swept) >= 3 and {r.variant for r in swept} == {"baseline"}
    monkeypatch.setattr(Recipe, "lr_sweep_dir", lambda self: sweep)
    capsys.readouterr()

    out = tmp_path / "tuned"
    assert main([*common, "--steps", "12", "--variant", "rope", "--out", str(out)]) == 0
    choices = json.loads((out / "tune.json").read_text())
    (base,), (rope,) = choices["baseline"], choices["rope"]
    assert sorted(base["reused"]) == sorted(v for v, _ in base["losses"])  # every point
    from bench.tasks import task_recipe

    assert rope["reused"] == [] and base["reused_from"] == task_recipe("shakespeare").lr_sweep
    trained = int(capsys.readouterr().err.split(" run(s) trained")[0].rsplit("\n", 1)[-1])
    here = load_records(out)
    assert trained == len(here)  # nothing of the sweep trained again ...
    assert not [r for r in here if r.variant == "baseline" and r.seed >= tune.TUNE_SEED_OFFSET]
    swept_losses = {r.spec["train"]["lr"]: r.val_loss for r in swept}  # ... its losses read
    assert dict(base["losses"]) == pytest.approx(swept_losses)
    assert "points reused from the recipe's sweep" in (out / "tune.md").read_text()

    other = tmp_path / "other"  # another budget: the sweep's runs are other runs
    assert main([*common, "--steps", "14", "--variant", "rope", "--out", str(other)]) == 0
    (base,) = json.loads((other / "tune.json").read_text())["baseline"]
    assert base["reused"] == []


def test_the_lr_figure_draws_the_runs_that_chose_and_its_star_sits_on_the_choice():
    """A --tune folder also holds the verdict's runs at the chosen and default lr. The figure
    draws the tuning runs alone, so its means are tune.json's and its star is the chosen lr.
    On the committed swiglu tuning at 600 steps, every run of the folder together would put
    swiglu's best mean at 2e-3 (a verdict seed stalled at the chosen 2.83e-3), not the choice."""
    from pathlib import Path

    from bench.analysis.plots import _frame, _lr_sweep_points, lr_sweep_points

    folder = Path(__file__).parents[1] / "results/reference/ablations"
    folder = folder / "tune_swiglu_shakespeare_tiny_600steps_cpu"
    records = load_records(folder)
    chosen = json.loads((folder / "tune.json").read_text())
    pts, seeds = lr_sweep_points(records)
    assert "tuning seeds" in seeds and (pts["seed"] >= 1000).all()
    means = pts.groupby(["arm", "lr"])["val_loss"].mean()
    for arm, (choice,) in chosen.items():
        assert means[arm].idxmin() == pytest.approx(choice["best"], rel=1e-4)
        for lr, loss in choice["losses"]:
            assert means[arm][means[arm].index.to_series().sub(lr).abs().idxmin()] == (
                pytest.approx(loss)
            )
    everything = _lr_sweep_points(_frame(records)).groupby(["arm", "lr"])["val_loss"].mean()
    assert everything["swiglu"].idxmin() == pytest.approx(0.002, rel=1e-4)
