"""The length probe (val loss at 1-8x the trained context on the same held-out text) and its
table: what it scores, what it refuses, and how it reaches the summary."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ablations.run import main
from bench.analysis.sections import SECTIONS
from bench.core.records import RunRecord
from bench.probes import lengths
from bench.probes.lengths import length_losses
from bench.tasks import build_task
from variants import build_model, preset


@pytest.fixture(scope="module")
def task():
    return build_task("shakespeare", context=32)


def micro(name, seed=0):
    torch.manual_seed(seed)
    return build_model(name, preset("micro", vocab_size=65))


def test_every_length_scores_the_same_held_out_characters(task):
    spans = task.held_out_spans(4, 128)
    assert spans.shape == (4, 129)
    # non-overlapping runs of the validation split, in order
    val = torch.from_numpy(task._val.astype("int64"))
    stride = (val.numel() - 1) // 4
    for i in range(4):
        assert torch.equal(spans[i], val[i * stride : i * stride + 129])
    with pytest.raises(ValueError, match="too short"):
        task.held_out_spans(10**6, 128)


def test_the_loss_at_t_is_the_mean_over_rows_of_t(task):
    model = micro("rope").eval()
    probe = length_losses(model, task, "cpu", contextlib.nullcontext, tokens=2048)
    spans = task.held_out_spans(2048 // 256, 256)
    x, y = spans[:, :-1].reshape(-1, 32), spans[:, 1:].reshape(-1, 32)
    with torch.no_grad():
        expect = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).item()
    (at_t,) = [p for p in probe["points"] if p["factor"] == 1]
    assert at_t["val_loss"] == pytest.approx(expect, rel=1e-5)
    assert probe["context"] == 32 and probe["tokens"] == y.numel()
    assert [p["length"] for p in probe["points"]] == [32, 64, 128, 256]
    # a longer row changes the context of the same targets, so the losses differ
    losses = [p["val_loss"] for p in probe["points"]]
    assert all(v > 0 for v in losses) and len(set(losses)) == 4


def test_learned_positions_are_not_read_past_t(task):
    probe = length_losses(micro("baseline"), task, "cpu", contextlib.nullcontext, tokens=2048)
    vals = [p["val_loss"] for p in probe["points"]]
    assert vals[0] > 0 and vals[1:] == [None, None, None]
    assert all(p["why"] == "positions end at T" for p in probe["points"][1:])


def _record(variant, seed, points, context=32):
    budget = {"mode": "steps", "value": 10}
    return RunRecord(
        run_id=f"{variant}{seed}", variant=variant, seed=seed, task="shakespeare", budget=budget,
        spec={}, status="ok", env={}, metrics={"val_loss": 1.0}, curve=[],
        probes={"lengths": {"context": context, "tokens": 1000, "points": points}},
    )  # fmt: skip


def _points(*vals):
    return [
        {"factor": f, "length": 32 * f, "val_loss": v}
        for f, v in zip((1, 2, 4, 8), vals, strict=True)
    ]


def test_table_means_changes_and_learned_cells():
    recs = [
        _record("baseline", 0, _points(2.0, None, None, None)),
        _record("baseline", 1, _points(2.2, None, None, None)),
        _record("alibi", 0, _points(1.9, 1.8, 1.8, 1.9)),
        _record("alibi", 1, _points(2.1, 2.0, 2.0, 2.1)),
        dataclasses.replace(_record("rope", 0, []), probes={}),  # no probe: not in the table
    ]
    table = lengths.length_table(recs).set_index("variant")
    assert list(table.index) == ["baseline", "alibi"]
    assert table.loc["baseline", "L = 32 (T)"] == "2.100 ± 0.141"
    assert table.loc["baseline", "L = 64 (2T)"] == lengths.NOT_READ
    assert table.loc["alibi", "L = 64 (2T)"] == "1.900 ± 0.141 (-0.100)"
    assert table.loc["alibi", "seeds"] == 2
    section = SECTIONS["lengths"]  # the table goes to summary.md through the sections list
    text = section.markdown(recs)
    assert text.startswith("\n## Length generalisation") and "1,000 held-out characters" in text
    assert section.markdown(recs[-1:]) == "" and lengths.length_table([]) is None


def test_the_probe_on_a_task_without_running_text_is_one_line(capsys, tmp_path):
    args = ["--task", "addition", "--variant", "rope", "--probe", "lengths", "--model", "micro"]
    assert main([*args, "--steps", "5", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'lengths' probe needs a text task" in err[0]
    assert not (tmp_path / "x" / "runs.jsonl").exists()


def test_an_unknown_probe_is_one_line(capsys, tmp_path):
    assert main(["--variant", "rope", "--probe", "lenghts", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lenghts" in err[0] and "lengths" in err[0]
