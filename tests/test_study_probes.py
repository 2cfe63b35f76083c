"""`--study probes`, the capability panel, against its controls (real training, micro model):
a sliding window shorter than the recall distances reads `worse` on MQAR and one longer than
every distance reads n.s.; the baseline against itself reads n.s. on every probe; a probe the
baseline did not learn reads `inconclusive`. Plus the scoreboard, heatmap and report it writes.

The MQAR control has one key-value pair: at this budget (300 steps, ~1 s a run) the micro
baseline answers every query of it, so a window's verdict is about its reach and nothing else
(with two or more pairs a baseline this small is still on its way, README "Capability probes").
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from ablations.run import main as run_main
from ablations.studies import StudyContext, get_study
from ablations.studies.probes import Arm, Probe, ProbesStudy
from bench.analysis import panel
from bench.analysis.compare import DID_NOT_LEARN, INCONCLUSIVE
from bench.analysis.fmt import NO_DIFFERENCE
from bench.core.spec import Recipe
from bench.tasks import build_task

MICRO = Recipe(model="micro", model_overrides=(("block_size", 16),), batch_size=32, lr=3e-3,
               steps=300, eval_points=5, eval_batches=2, eval_batch_size=64)  # fmt: skip
# one pair, queries within 4 slots: the value is at most 7 tokens before its query
RECALL = Probe("mqar", (("n_pairs", 1), ("seq_len", 16), ("max_gap", 4)), MICRO)
SHORT, LONG = 2, 12  # windows: 2 layers x (2 - 1) reach only the first slot; 12 reach all
AGAIN = Arm("baseline again", "baseline")
CONTROLS = (Arm(f"window {SHORT}", "sliding-window", (("attn_window", SHORT),)),
            Arm(f"window {LONG}", "sliding-window", (("attn_window", LONG),)), AGAIN)  # fmt: skip
# induction needs a few more steps than the others to pass the guard at this size
OTHERS = (
    Probe("selective-copy", (("n_tokens", 2), ("seq_len", 16)), MICRO),
    Probe("induction", (("seq_len", 16),), dataclasses.replace(MICRO, steps=800)),
)


def _cells(records) -> dict:
    cells = panel.panel_cells(records)
    return {(r["probe"], r["variant"]): r for _, r in cells.iterrows()}


@pytest.fixture(scope="module")
def recall(tmp_path_factory):
    """The window controls and the baseline twice on MQAR, 3 seeds (12 micro runs)."""
    ctx = StudyContext(out=tmp_path_factory.mktemp("recall"), seeds=3, quiet=True)
    study = ProbesStudy(probes=(RECALL,), arms=CONTROLS)
    report = study.run(ctx)
    return ctx, report, ctx.execute(study.specs(ctx))


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    """The baseline twice on selective copying and induction, 2 seeds (8 micro runs)."""
    ctx = StudyContext(out=tmp_path_factory.mktemp("others"), seeds=2, quiet=True)
    study = ProbesStudy(probes=OTHERS, arms=(AGAIN,))
    study.run(ctx)
    return ctx.execute(study.specs(ctx))


def test_recall_distances_are_what_the_windows_were_chosen_for():
    task = build_task("mqar", context=16, **dict(RECALL.options))
    assert task.max_distance() == 8  # key -> query; value -> query at most 7
    assert 2 * (SHORT - 1) < 3 and LONG > 8  # slot 0 (distance 1 or 2) only; every slot


@pytest.mark.slow
def test_a_window_shorter_than_the_recall_distances_reads_worse(recall):
    cells = _cells(recall[2])
    base, short = cells[("mqar", "baseline")], cells[("mqar", f"window {SHORT}")]
    assert base["learned"] is True and base["accuracy_mean"] > 0.95
    assert short["verdict"] in ("worse", DID_NOT_LEARN) and short["ci_high"] < 0
    assert short["d_accuracy"] < -0.3  # most queries are out of its reach


@pytest.mark.slow
def test_a_window_longer_than_every_distance_reads_no_difference(recall):
    long = _cells(recall[2])[("mqar", f"window {LONG}")]
    assert long["verdict"] == NO_DIFFERENCE and long["learned"] is True
    assert long["ci_low"] <= 0 <= long["ci_high"] and long["mde"] < 0.1


@pytest.mark.slow
def test_the_baseline_against_itself_reads_no_difference_on_every_probe(recall, others):
    cells = _cells(recall[2] + others)
    for probe in ("mqar", "selective-copy", "induction"):
        again, base = cells[(probe, "baseline again")], cells[(probe, "baseline")]
        assert base["learned"] is True, probe  # else the cell would read inconclusive
        assert again["verdict"] == NO_DIFFERENCE and again["d_accuracy"] == 0.0, probe


@pytest.mark.slow
def test_the_study_writes_its_scoreboard_heatmap_and_report(recall):
    ctx, report, records = recall
    board = pd.read_csv(ctx.out / "probes.csv")
    assert set(board["variant"]) == {"baseline", "window 2", "window 12", "baseline again"}
    shown = (ctx.out / "probes.md").read_text()
    assert "MDE" in shown and "worse" in shown and "acc " in shown  # the baseline's own row
    assert (ctx.out / "probes.png").stat().st_size > 5000
    assert "## Capability probes" in report and "![capability probes heatmap](probes.png)" in report
    lengths = pd.read_csv(ctx.out / "probes_lengths.csv")
    learned_long = lengths[(lengths["variant"] == "baseline") & (lengths["factor"] > 1)]
    assert learned_long["n"].eq(0).all() and "n/a" in report  # learned positions end at T


@pytest.mark.slow
def test_a_probe_the_baseline_did_not_learn_is_inconclusive(recall):
    """The guard comes first: the same records with the baseline's accuracy at 0 and its loss
    at the floor read inconclusive in every cell, never better or worse."""
    records = [dataclasses.replace(r, metrics=_stuck(r.metrics)) if r.variant == "baseline"
               else r for r in recall[2]]  # fmt: skip
    cells = panel.panel_cells(records)
    assert set(cells.loc[cells["variant"] != "baseline", "verdict"]) == {INCONCLUSIVE}
    assert "inconclusive" in panel.scoreboard(records).to_string()


def _stuck(metrics: dict) -> dict:
    return {**metrics, "accuracy": 0.0, "val_loss": metrics["freq_loss"]}


def test_the_study_is_registered_and_checks_its_input(tmp_path, capsys):
    assert run_main(["--list"]) == 0
    assert "probes" in capsys.readouterr().out.split("studies (--study NAME):")[1]
    assert isinstance(get_study("probes"), ProbesStudy)
    for argv, words in (
        (["--seeds", "1"], "--seeds 2 or more"),
        (["--variant", "no-such-variant"], "no-such-variant"),
    ):
        assert run_main(["--study", "probes", "--out", str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
