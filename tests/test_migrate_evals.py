"""bench.tools.migrate_evals: a study's cached evaluations folded into its records' `evals`."""

from __future__ import annotations

import json

import pytest

from bench.core.records import run_id
from bench.tools.migrate_evals import main, migrate


def _record(seed: int) -> dict:
    spec = {"variant": "plain", "seed": seed, "task": {"name": "calculator"}}
    return {"run_id": run_id(spec), "variant": "plain", "seed": seed, "spec": spec,
            "status": "ok", "metrics": {"val_loss": 0.5}, "curve": [], "probes": {},
            "created": "2026-01-01T00:00:00+00:00"}  # fmt: skip


def _folder(tmp_path, cache: dict, name="calculator_eval.json", n=2):
    recs = [_record(s) for s in range(n)]
    (tmp_path / "runs.jsonl").write_text(
        "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs)
    )
    (tmp_path / name).write_text(json.dumps(cache))
    return recs


def test_cached_evals_land_in_their_records_and_nothing_else_changes(tmp_path):
    recs = _folder(tmp_path, {})
    rid = recs[0]["run_id"]
    rows = [{"op": "+", "length": 1, "n": 3, "correct": 2, "accuracy": 2 / 3}]
    cache = {f"{rid}:generated:None": rows, f"{rid}:given:None": rows[:0]}
    (tmp_path / "calculator_eval.json").write_text(json.dumps(cache))
    before = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert migrate(tmp_path) == 1
    after = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert after[0]["evals"] == {
        "by_cell": {"generated": rows, "given": []},
        "evals_from": "calculator_eval.json",
    }
    assert list(after[0]) == [*list(recs[0])[:-1], "evals", "created"]  # after probes
    assert {k: v for k, v in after[0].items() if k != "evals"} == recs[0]
    assert run_id(after[0]["spec"]) == after[0]["run_id"] == rid
    assert (tmp_path / "runs.jsonl").read_text().splitlines()[1] == before[1]  # not covered
    text = (tmp_path / "runs.jsonl").read_text()
    assert migrate(tmp_path) == 1 and (tmp_path / "runs.jsonl").read_text() == text  # idempotent


@pytest.mark.parametrize(
    "name, key, value, evals",
    [
        ("addition_eval.json", "{rid}:500", {"3": {"n": 9}}, {"by_digits": {"3": {"n": 9}}}),
        ("pretraining_eval.json", "{rid}", 1.25, {"train_split_loss": 1.25}),
    ],
)  # fmt: skip
def test_each_studys_cache_layout(tmp_path, name, key, value, evals):
    recs = _folder(tmp_path, {}, name=name, n=1)
    (tmp_path / name).write_text(json.dumps({key.format(rid=recs[0]["run_id"]): value}))
    assert main([str(tmp_path)]) == 0
    (rec,) = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert rec["evals"] == {**evals, "evals_from": name}


def test_bad_folders_are_one_line(tmp_path, capsys):
    recs = _folder(tmp_path, {"0123456789ab:none:None": []})
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "0123456789ab" in err and "not in" in err
    (tmp_path / "calculator_eval.json").unlink()
    assert main([str(tmp_path)]) == 1
    assert "0 evaluation caches" in capsys.readouterr().err
    rid = recs[0]["run_id"]
    (tmp_path / "calculator_eval.json").write_text(
        json.dumps({f"{rid}:none:None": [1], f"{rid}:none:40": [2]})
    )
    with pytest.raises(ValueError, match="differ"):
        migrate(tmp_path)
