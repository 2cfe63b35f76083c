"""Tests for bench.records: stable ids, concurrent appends, crash tolerance, merging."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import warnings
from pathlib import Path

import pytest

from bench import records

N_PROCS = 8
N_APPENDS = 50


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
        rec = {
            "run_id": f"w{worker}-{i}",
            "worker": worker,
            "i": i,
            "payload": "x" * (3000 + 97 * worker + i),  # a few KB, different lengths
        }
        records.append_record(path, rec)


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
    records.append_record(path, {"run_id": "aaa", "loss": 1.0})
    records.append_record(path, {"run_id": "bbb", "loss": 2.0})
    half = json.dumps({"run_id": "ccc", "loss": 3.0, "payload": "y" * 100})
    with open(path, "a") as f:  # a writer killed mid-line: no newline, half the JSON
        f.write(half[: len(half) // 2])
    with pytest.warns(UserWarning, match=r"runs\.jsonl:3"):
        loaded = records.load_records(path)
    assert [r["run_id"] for r in loaded] == ["aaa", "bbb"]

    # The next append starts a fresh line, so the new record is not glued to the fragment.
    records.append_record(path, {"run_id": "ddd", "loss": 4.0})
    with pytest.warns(UserWarning, match=r"runs\.jsonl:3"):
        loaded = records.load_records(path)
    assert [r["run_id"] for r in loaded] == ["aaa", "bbb", "ddd"]
    with pytest.warns(UserWarning):
        assert records.finished_ids(path) == {"aaa", "bbb", "ddd"}


def test_blank_lines_and_missing_paths(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('\n{"run_id": "a"}\n\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert records.load_records(path) == [{"run_id": "a"}]
    assert records.load_records(tmp_path / "nope.jsonl") == []
    assert records.finished_ids(tmp_path / "nope" / "runs.jsonl") == set()
    assert records.load_records(tmp_path / "empty_dir_that_does_not_exist") == []


def test_load_records_merges_subfolders(tmp_path):
    records.append_record(tmp_path / "runs.jsonl", {"run_id": "top"})
    records.append_record(tmp_path / "machine_a" / "runs.jsonl", {"run_id": "a1"})
    records.append_record(tmp_path / "machine_a" / "runs.jsonl", {"run_id": "a2"})
    records.append_record(tmp_path / "machine_b" / "w0" / "runs.jsonl", {"run_id": "b1"})
    (tmp_path / "machine_b" / "notes.jsonl").write_text('{"run_id": "ignored"}\n')
    ids = {r["run_id"] for r in records.load_records(tmp_path)}
    assert ids == {"top", "a1", "a2", "b1"}
    assert records.finished_ids(tmp_path) == ids


def test_last_record_wins_on_duplicate_ids(tmp_path):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, {"run_id": "x", "loss": 1.0})
    records.append_record(path, {"run_id": "y", "loss": 5.0})
    records.append_record(path, {"run_id": "x", "loss": 0.5})  # --force rerun
    records.append_record(path, {"no_id": True})
    loaded = records.load_records(path)
    assert loaded == [{"run_id": "y", "loss": 5.0}, {"run_id": "x", "loss": 0.5}, {"no_id": True}]


def test_append_record_rejects_unserialisable_without_writing(tmp_path):
    path = tmp_path / "runs.jsonl"
    records.append_record(path, {"run_id": "ok"})
    with pytest.raises(TypeError):
        records.append_record(path, {"run_id": "bad", "obj": object()})
    assert records.load_records(path) == [{"run_id": "ok"}]


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
