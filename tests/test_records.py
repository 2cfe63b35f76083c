"""Tests for bench.core.records: stable ids, concurrent appends, crash tolerance, merging."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis import tables
from bench.core import records
from bench.core.records import SCHEMA, RunRecord, as_record
from variants.config import late_fields

N_PROCS = 8
N_APPENDS = 50
REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "ablations"
OLD_RECORDS = REFERENCE / "addition_tiny_400steps_cpu" / "runs.jsonl"  # older records
# records of a real sweep with a probe (schema 2 since it was retrained at the tuned lr)
REAL_RECORDS = REFERENCE / "lengths_shakespeare_tiny_1400steps_cpu" / "runs.jsonl"
STUB_LINE = len(REAL_RECORDS.read_text().splitlines()) + 1  # a line appended after them
STUB = {"run_id": "0123456789ab", "variant": "baseline"}  # valid JSON, not a record


def rec(rid: str, **extra) -> dict:
    """A minimal complete record (the keys bench.core.train.run() always writes), plus `extra`."""
    budget = {"mode": "steps", "value": 10}
    return {
        "run_id": rid,
        "variant": "baseline",
        "seed": 0,
        "task": "addition",
        "budget": budget,
        "spec": {"variant": "baseline", "seed": 0, "budget": budget},
        "status": "ok",
        "env": {"device": "cpu"},
        "metrics": {"val_loss": 1.0},
        "curve": [],
        **extra,
    }


def ids(recs: list[records.RunRecord]) -> list[str]:
    return [r.run_id for r in recs]


def n_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def test_run_id_stable_and_order_independent():
    a = {"variant": "rope", "d_model": 256, "lr": 3e-4, "opt": {"beta2": 0.95, "wd": 0.1}}
    b = {"opt": {"wd": 0.1, "beta2": 0.95}, "lr": 3e-4, "d_model": 256, "variant": "rope"}
    assert records.run_id(a) == records.run_id(b)
    rid = records.run_id(a)
    assert len(rid) == 12 and int(rid, 16) >= 0
    # Hard-coded value: the id must not change across processes, machines or versions.
    assert records.run_id({"a": 1, "b": [1, 2]}) == "8baa73198470"
    assert records.run_id({**a, "lr": 1e-3}) != rid
    assert records.run_id({**a, "seed": 1}) != rid


def _writer(path: str, worker: int, barrier) -> None:
    barrier.wait()  # start all writers at once to maximise contention
    for i in range(N_APPENDS):
        payload = "x" * (3000 + 97 * worker + i)  # a few KB, different lengths
        records.append_record(path, rec(f"w{worker}-{i}", worker=worker, i=i, payload=payload))


def test_concurrent_appends_leave_every_record_intact(tmp_path):
    path = tmp_path / "runs.jsonl"
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(N_PROCS)
    procs = [ctx.Process(target=_writer, args=(str(path), w, barrier)) for w in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == N_PROCS * N_APPENDS
    parsed = [json.loads(line) for line in lines]  # every line parses on its own
    for rec in parsed:
        assert len(rec["payload"]) == 3000 + 97 * rec["worker"] + rec["i"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = records.load_records(path)
    assert len(loaded) == N_PROCS * N_APPENDS
    assert records.finished_ids(path) == {
        f"w{w}-{i}" for w in range(N_PROCS) for i in range(N_APPENDS)
    }
    # Each writer's own records stay in its order.
    for w in range(N_PROCS):
        assert [r["i"] for r in parsed if r["worker"] == w] == list(range(N_APPENDS))


def test_truncated_trailing_line_is_skipped_with_warning(tmp_path):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, rec("aaa"))
    records.append_record(path, rec("bbb"))
    half = json.dumps(rec("ccc", payload="y" * 100))
    with open(path, "a") as f:  # a writer killed mid-line: no newline, half the JSON
        f.write(half[: len(half) // 2])
    with pytest.warns(UserWarning, match=r"runs\.jsonl:3"):
        loaded = records.load_records(path)
    assert ids(loaded) == ["aaa", "bbb"]

    # The next append starts a fresh line, so the new record is not glued to the fragment.
    records.append_record(path, rec("ddd"))
    with pytest.warns(UserWarning, match=r"runs\.jsonl:3"):
        loaded = records.load_records(path)
    assert ids(loaded) == ["aaa", "bbb", "ddd"]
    with pytest.warns(UserWarning):
        assert records.finished_ids(path) == {"aaa", "bbb", "ddd"}


def test_blank_lines_and_missing_paths(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text("\n" + json.dumps(rec("a")) + "\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert records.load_records(path) == [as_record(rec("a"))]
    assert records.load_records(tmp_path / "nope.jsonl") == []
    assert records.finished_ids(tmp_path / "nope" / "runs.jsonl") == set()
    assert records.load_records(tmp_path / "empty_dir_that_does_not_exist") == []


def test_load_records_merges_subfolders(tmp_path):
    records.append_record(tmp_path / "runs.jsonl", rec("top"))
    records.append_record(tmp_path / "machine_a" / "runs.jsonl", rec("a1"))
    records.append_record(tmp_path / "machine_a" / "runs.jsonl", rec("a2"))
    records.append_record(tmp_path / "machine_b" / "w0" / "runs.jsonl", rec("b1"))
    (tmp_path / "machine_b" / "notes.jsonl").write_text(json.dumps(rec("ignored")) + "\n")
    ids = {r.run_id for r in records.load_records(tmp_path)}
    assert ids == {"top", "a1", "a2", "b1"}
    assert records.finished_ids(tmp_path) == ids


def test_last_record_wins_on_duplicate_ids(tmp_path):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, rec("x", loss=1.0))
    records.append_record(path, rec("y", loss=5.0))
    records.append_record(path, rec("x", loss=0.5))  # --force rerun
    loaded = records.load_records(path)
    assert loaded == [as_record(rec("y", loss=5.0)), as_record(rec("x", loss=0.5))]


def test_append_record_rejects_unserialisable_without_writing(tmp_path):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, rec("ok"))
    with pytest.raises(TypeError):
        records.append_record(path, rec("bad", obj=object()))
    assert records.load_records(path) == [as_record(rec("ok"))]


def test_write_json_atomic_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "config.json"
    records.write_json_atomic(target, {"a": 1, "b": [1, 2, 3]})
    records.write_json_atomic(target, {"a": 2})  # overwrite
    assert json.loads(target.read_text()) == {"a": 2}
    with pytest.raises(TypeError):
        records.write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"a": 2}  # old content intact after a failure
    assert sorted(os.listdir(target.parent)) == ["config.json"]
    assert not [p for p in Path(tmp_path).rglob("*.tmp")]


# --------------------------------------------------------------------------- incomplete records


def _with_stub(tmp_path: Path, stub: dict) -> Path:
    """A copy of the real records with `stub` appended as line STUB_LINE."""
    path = tmp_path / "runs.jsonl"
    shutil.copyfile(REAL_RECORDS, path)
    records.append_record(path, stub)
    return path


def test_incomplete_record_is_skipped_with_warning_naming_file_line_and_reason(tmp_path):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, rec("aaa"))
    records.append_record(path, STUB)
    no_metrics = rec("bbb")
    del no_metrics["metrics"]
    records.append_record(path, no_metrics)
    with pytest.warns(UserWarning) as caught:
        loaded = records.load_records(path)
    assert ids(loaded) == ["aaa"]
    messages = [str(w.message) for w in caught]
    assert messages == [
        f"{path}:2: skipped: record lacks 'seed', 'task', 'budget', 'spec', 'status', 'env', "
        "'metrics', 'curve'",
        f"{path}:3: skipped: record lacks 'metrics'",
    ]
    assert all(w.category is records.RecordWarning for w in caught)
    # the same for a one-record file
    records.write_run_record(tmp_path, STUB)
    stub_file = records.run_file(tmp_path, STUB["run_id"])
    with pytest.warns(UserWarning, match=r"0123456789ab\.json: skipped: record lacks"):
        assert records.load_records(stub_file) == []


def _mutated(**changes) -> dict:
    r = rec("abcdefabcdef")
    for key, value in changes.items():
        if value is KeyError:
            del r[key]
        else:
            r[key] = value
    return r


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_mutated(run_id=KeyError), "lacks 'run_id'"),
        (_mutated(run_id=12), "'run_id' is an integer, not a string"),
        (_mutated(seed="0"), "'seed' is a string, not an integer"),
        (_mutated(seed=True), "'seed' is a boolean, not an integer"),
        (_mutated(seed=None), "'seed' is null, not an integer"),
        (_mutated(metrics=[1.0]), "'metrics' is a list, not an object"),
        (_mutated(metrics={"accuracy": 0.5}), "'metrics' lacks 'val_loss'"),
        (_mutated(metrics={"val_loss": "low"}), "'metrics.val_loss' is a string, not a number"),
        (_mutated(spec="baseline"), "'spec' is a string, not an object"),
        (_mutated(curve={}), "'curve' is an object, not a list"),
        (_mutated(env=None), "'env' is null, not an object"),
        (_mutated(budget={"mode": "steps"}), "'budget' lacks 'value'"),
        (_mutated(budget={"mode": "steps", "value": "1"}), "'budget.value' is a string, not a"),
        (_mutated(status="running"), "'status' is 'running', not 'ok', 'diverged' or 'failed'"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_validate_record_names_the_problem(record, reason):
    assert reason in records.validate_record(record)


def test_validate_record_accepts_real_and_diverged_records():
    real = [json.loads(line) for line in REAL_RECORDS.read_text().splitlines()]
    assert [records.validate_record(r) for r in real] == [None] * len(real)
    diverged = rec("d", status="diverged", metrics={"val_loss": None}, seed=3)
    assert records.validate_record(diverged) is None
    assert records.validate_record(rec("f", metrics={"val_loss": float("nan")})) is None


def test_stub_reusing_a_real_run_id_does_not_replace_the_real_record(tmp_path):
    real = [json.loads(line) for line in REAL_RECORDS.read_text().splitlines()]
    path = _with_stub(tmp_path, {**STUB, "run_id": real[0]["run_id"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = records.load_records(tmp_path)
    assert loaded == [as_record(r) for r in real]
    groups = tables.summaries(loaded)
    assert groups and "baseline" in set(groups[0][1]["variant"])
    assert [str(w.message) for w in caught] == [
        f"{path}:{STUB_LINE}: skipped: record lacks 'seed', 'task', 'budget', 'spec', 'status', "
        "'env', 'metrics', 'curve'"
    ]


def test_finished_ids_ignores_invalid_records(tmp_path):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, rec("aaa"))
    records.append_record(path, STUB)
    records.append_record(path, _mutated(run_id="bbb", metrics=None))
    with pytest.warns(UserWarning):
        assert records.finished_ids(path) == {"aaa"}  # the sweep trains the others again


def test_write_summary_on_a_directory_with_a_stub_line(tmp_path):
    _with_stub(tmp_path, STUB)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = records.load_records(tmp_path)
    tables.write_summary(loaded, tmp_path)  # was: TypeError from pandas on the stub's NaNs
    text = (tmp_path / "summary.md").read_text()
    assert "baseline" in text and "rope" in text and "alibi" in text
    assert (tmp_path / "summary.csv").is_file()
    assert len(loaded) == n_lines(REAL_RECORDS)
    assert len(caught) == 1
    assert f"runs.jsonl:{STUB_LINE}: skipped: record lacks" in str(caught[0].message)


def test_a_skipped_line_is_reported_once_on_stderr_without_source_line(tmp_path):
    path = _with_stub(tmp_path, STUB)
    with open(path, "a") as f:  # line 17: a writer killed mid-line
        f.write('{"run_id": "b4a9')
    # What a sweep does in one process: resume check, then the summary (and the --ci-width
    # loop reads again every round).
    code = (
        "import sys; from bench.core.records import finished_ids, load_records\n"
        "d = sys.argv[1]\n"
        "finished_ids(d)\n"
        "load_records(d)\n"
        "load_records(d + '/runs.jsonl')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr  # one line per bad line: no repeats, no source lines
    assert lines[0].endswith(f"{path}:{STUB_LINE}: skipped: record lacks 'seed', 'task', 'budget', "
                             "'spec', 'status', 'env', 'metrics', 'curve'")  # fmt: skip
    assert f"{path}:{STUB_LINE + 1}: skipped: not valid JSON (" in lines[1]


def test_old_records_still_all_load():
    """Every line of the committed reference records is a valid record, none is skipped. The
    old addition file holds three forced reruns of 6 runs (18 lines, 6 run ids): load_records
    keeps the last of each, as always."""
    for path in [OLD_RECORDS, *sorted((REPO / "results" / "reference").rglob("runs.jsonl"))]:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert [records.validate_record(r) for r in lines] == [None] * len(lines), path
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no line skipped
            loaded = records.load_records(path)
        last = {r["run_id"]: records.RunRecord.from_dict(r) for r in lines}
        assert sorted(ids(loaded)) == sorted(last) and all(r == last[r.run_id] for r in loaded)
    assert n_lines(OLD_RECORDS) == 18 and len(records.load_records(OLD_RECORDS)) == 6


def test_committed_records_keep_their_run_ids():
    """Fields added to the configs since a record was written are left out of the spec while
    they hold their default, so every committed record's spec still hashes to its own id (resume
    finds them) and a spec that sets a new field gets a new id."""
    from bench.core.spec import RunSpec

    n = 0
    for path in sorted((REPO / "results" / "reference").rglob("runs.jsonl")):
        for r in records.load_records(path):
            spec = RunSpec.from_dict(r.spec)
            assert records.run_id(spec.to_dict()) == r.run_id, (path, r.run_id)
            n += 1
    assert n > 50
    spec = RunSpec.from_dict(r.spec)
    late = [f for f in dataclasses.fields(spec.model) if f.name in late_fields(type(spec.model))]
    for f in late:
        changed = dataclasses.replace(spec, model=spec.model.replace(**{f.name: _other(f)}))
        assert records.run_id(changed.to_dict()) != r.run_id, f.name
    late_train = [
        f for f in dataclasses.fields(spec.train) if f.name in late_fields(type(spec.train))
    ]
    assert {f.name for f in late_train} >= {"optimizer", "muon_momentum"}
    for f in late_train:
        train = dataclasses.replace(spec.train, **{f.name: _other(f)})
        changed = dataclasses.replace(spec, train=train)
        assert records.run_id(changed.to_dict()) != r.run_id, f.name


def test_a_field_added_tomorrow_needs_no_list_entry():
    """The run-id rule covers a field nobody listed: a ModelConfig grown by one field hashes to
    the same dict while the field holds its default, and includes it once it does not."""
    from variants.config import ModelConfig, id_dict

    fields = [(f.name, f.type, dataclasses.field(default=f.default))
              for f in dataclasses.fields(ModelConfig)]  # fmt: skip
    grown = dataclasses.make_dataclass(
        "ModelConfig", [*fields, ("brand_new", int, dataclasses.field(default=0))], frozen=True
    )
    assert id_dict(grown()) == id_dict(ModelConfig())
    assert id_dict(grown(brand_new=3)) == {**id_dict(ModelConfig()), "brand_new": 3}


def _other(f):
    """A value other than the field's default, of its type."""
    d = f.default
    if isinstance(d, tuple):  # block_options: one block's option off its default
        return (("mlp", (("hidden_mult", 2),)),)
    return (not d) if isinstance(d, bool) else d + 1 if isinstance(d, (int, float)) else d + "x"


# --------------------------------------------------------------------------- the typed record


def test_run_record_round_trips_and_keeps_unknown_keys():
    raw = rec("a", extra_key={"x": 1}, probes={"lengths": {"points": []}}, schema=SCHEMA)
    r = RunRecord.from_dict(raw)
    assert r.extra == {"extra_key": {"x": 1}} and r.probes == {"lengths": {"points": []}}
    assert RunRecord.from_dict(r.to_dict()) == r
    assert r.to_dict()["extra_key"] == {"x": 1} and r.to_dict()["schema"] == SCHEMA


def test_version_less_records_load_as_schema_1():
    """Records written before the schema carried a version (the older committed ones) load as
    they are, with empty optional sections."""
    real = json.loads(OLD_RECORDS.read_text().splitlines()[0])
    assert "schema" not in real and "evals" not in real
    r = RunRecord.from_dict(real)
    assert r.schema == 1 and r.evals == {} and r.ok and r.val_loss == real["metrics"]["val_loss"]
    assert r.run_spec.seed == real["seed"] and r.device_name == real["env"]["device_name"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"schema": SCHEMA + 1}, "newer transformer-bench"),
        ({"probes": [1, 2]}, "'probes' is a list, not an object"),
        ({"evals": "good"}, "'evals' is a string, not an object"),
        ({"diverged_at_step": "4"}, "'diverged_at_step' is a string, not an integer"),
    ],
)
def test_records_of_a_newer_schema_or_bad_sections_are_skipped_with_a_line(
    tmp_path, change, reason
):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, rec("good"))
    records.append_record(path, rec("bad", **change))
    with pytest.warns(records.RecordWarning, match=reason):
        assert ids(records.load_records(path)) == ["good"]
    with pytest.raises(records.RecordError, match=reason):
        RunRecord.from_dict(rec("bad", **change))


def test_readers_take_records_and_their_json_objects_alike():
    real = [json.loads(line) for line in REAL_RECORDS.read_text().splitlines()]
    from_dicts = tables.summary(real)
    from_records = tables.summary([RunRecord.from_dict(r) for r in real])
    pd.testing.assert_frame_equal(from_dicts, from_records)
    with pytest.raises(records.RecordError, match="record lacks"):
        tables.summary([STUB])


def test_metric_accessors_read_missing_and_null_as_nan():
    r = RunRecord.from_dict(rec("d", status="diverged", metrics={"val_loss": None, "steps": 3}))
    assert not r.ok and math.isnan(r.val_loss) and math.isnan(r.metric("step_ms"))
    assert r.metric("steps") == 3.0
