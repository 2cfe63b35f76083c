"""Your own data files (bench.tasks.datafiles, bench.tasks.tokens): every format gives the tokens
of the same text as a .txt, folders and globs are read in sorted order, the tokenised corpus is
cached and rebuilt when a file changes, the data's content names the run, and every bad input
is one line before any training."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablations.config import SweepConfig
from ablations.plan import build_plan
from bench.core.records import run_id
from bench.tasks import TaskError, build_task
from bench.tasks import text as text_mod
from bench.tasks import tokens as tokens_mod
from bench.tasks.datafiles import SEPARATOR, resolve_files

ROOT = Path(__file__).resolve().parents[1]
DOCS = [f"Doc {i}: the quick brown fox, naïve café — {i * 7 % 13}!\nsecond line" for i in range(40)]
SMALL = {"context": 8, "eval_batches": 2, "eval_batch_size": 4}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test tokenises into its own cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("TRANSFORMER_BENCH_CACHE", str(d))
    return d


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def text_task(data, **options):
    return build_task("text", data=str(data), **SMALL, **options)


def write_format(path: Path, docs: list[str], field: str = "text") -> Path:
    """`docs` as a file of `path`'s format, one document a row (or the whole .txt)."""
    kind = path.suffix
    if kind == ".txt":
        path.write_text(SEPARATOR.join(docs), encoding="utf-8")
    elif kind == ".jsonl":
        rows = [json.dumps({"id": i, field: d}, ensure_ascii=False) for i, d in enumerate(docs)]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    elif kind == ".json":
        rows = [{"id": i, field: d} for i, d in enumerate(docs)]
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        frame = pd.DataFrame({"id": range(len(docs)), field: docs})
        if kind == ".csv":
            frame.to_csv(path, index=False, encoding="utf-8")
        else:
            frame.to_parquet(path, index=False)
    return path


# ---------------------------------------------------------------------------------------------
# formats, folders, globs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".jsonl", ".json", ".csv", ".parquet"])
def test_each_format_gives_the_tokens_of_the_same_text(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    txt = text_task(write_format(tmp_path / "docs.txt", DOCS))
    other = text_task(write_format(tmp_path / f"docs{ext}", DOCS, field="body"), data_field="body")
    assert other.vocab.chars == txt.vocab.chars
    assert np.array_equal(np.asarray(other.tokens), np.asarray(txt.tokens))
    assert (other.n_train, other.val_bytes) == (txt.n_train, txt.val_bytes)
    assert other.decode(other.tokens[: other.n_train]) == SEPARATOR.join(DOCS)[: txt.n_train]
    assert other.sha256 != txt.sha256  # another file, another corpus hash


def test_json_lines_in_a_json_file(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text("\n".join(json.dumps({"text": d}) for d in DOCS), encoding="utf-8")
    txt = text_task(write_format(tmp_path / "docs.txt", DOCS))
    assert np.array_equal(np.asarray(text_task(path).tokens), np.asarray(txt.tokens))


def test_folder_and_glob_are_read_in_sorted_order(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    parts = {"b.txt": "B" * 90, "a.txt": "A" * 90, "sub/c.txt": "C" * 90}
    for name, text in parts.items():
        (d / name).write_text(text, encoding="utf-8")
    (d / ".hidden.txt").write_text("hidden", encoding="utf-8")
    (d / "README.md").write_text("not data", encoding="utf-8")
    assert [p.relative_to(d).as_posix() for p in resolve_files(d)] == [
        "a.txt",
        "b.txt",
        "sub/c.txt",
    ]
    task = text_task(d)
    assert task.decode(task.tokens) == SEPARATOR.join(["A" * 90, "B" * 90, "C" * 90])
    assert len(task.describe()["files"]) == 3

    globbed = resolve_files(str(d / "*.txt"))
    assert [p.name for p in globbed] == ["a.txt", "b.txt"]  # not the subfolder, not hidden
    assert [p.name for p in resolve_files(str(d / "**" / "*.txt"))] == ["a.txt", "b.txt", "c.txt"]


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, cache, monkeypatch):
    calls = []
    write_ids = tokens_mod._write_ids

    def counting(*args):
        calls.append(1)
        return write_ids(*args)

    monkeypatch.setattr(tokens_mod, "_write_ids", counting)
    path = write_format(tmp_path / "docs.txt", DOCS)
    first = text_task(path)
    assert isinstance(first.tokens, np.memmap) and len(calls) == 1
    again = text_task(path)
    assert len(calls) == 1  # read from the cache, not tokenised again
    assert np.array_equal(np.asarray(again.tokens), np.asarray(first.tokens))
    cached = sorted(p.name for p in (cache / "tokens").iterdir())
    assert len(cached) == 2 and not [n for n in cached if n.startswith(".")]  # .bin and .json

    path.write_text(SEPARATOR.join(DOCS[::-1]), encoding="utf-8")  # same path, new content
    edited = text_task(path)
    assert len(calls) == 2 and edited.sha256 != first.sha256
    assert edited.decode(edited.tokens[:20]) == DOCS[-1][:20]


def test_a_worker_maps_the_ids_again_instead_of_receiving_them(tmp_path):
    """The pool pickles the task once per worker (bench.exec.pool): without its ids."""
    task = text_task(write_format(tmp_path / "docs.txt", DOCS * 20))
    blob = pickle.dumps(task)
    assert len(blob) < task.tokens.nbytes / 4
    copy = pickle.loads(blob)
    assert isinstance(copy.tokens, np.memmap) and np.array_equal(copy._val, task._val)
    assert copy.decode(copy.encode("naïve")) == "naïve"


def test_an_interrupted_cache_is_never_read(tmp_path, cache):
    """The ids are written before their .json: a .bin without one is built again."""
    path = write_format(tmp_path / "docs.txt", DOCS)
    task = text_task(path)
    meta = next((cache / "tokens").glob("*.json"))
    meta.unlink()
    assert np.array_equal(np.asarray(text_task(path).tokens), np.asarray(task.tokens))


# ---------------------------------------------------------------------------------------------
# run identity: the content names the run
# ---------------------------------------------------------------------------------------------


def plan_ids(task: str, data: str | None = None, **task_fields) -> list[str]:
    cfg = SweepConfig()
    cfg.task.name, cfg.task.data = task, data
    for key, value in task_fields.items():
        setattr(cfg.task, key, value)
    cfg.budget.steps, cfg.comparison.seeds, cfg.device = 20, 2, "cpu"
    cfg.model.size = "micro"
    plan, _ = build_plan(cfg.validate())
    return [run_id(s.to_dict()) for s in plan.specs(2)], plan


def test_editing_the_data_in_place_changes_the_run_id(tmp_path):
    path = write_format(tmp_path / "docs.txt", DOCS)
    before, plan = plan_ids("text", str(path))
    assert plan.task_spec["data_sha256"] == text_task(path).sha256
    spec_task = dict(plan.task_spec)
    path.write_text(SEPARATOR.join(DOCS[1:]), encoding="utf-8")
    after, _ = plan_ids("text", str(path))
    assert set(before).isdisjoint(after)
    # a worker handed the old spec finds the new content: one line, before training
    options = {k: v for k, v in spec_task.items() if k not in ("name", "data")}
    with pytest.raises(TaskError) as e:
        build_task("text", data=spec_task["data"], **SMALL, **options)
    assert "changed since this run was planned" in one_line(e)


def test_a_copy_of_shakespeare_is_the_default_run(tmp_path):
    """Byte-identical to the shipped corpus: the same runs, not new ones."""
    copy = tmp_path / "input.txt"
    copy.write_bytes(text_mod.shakespeare_path()[0].read_bytes())
    default, plan = plan_ids("shakespeare")
    assert plan.task_spec == {"name": "shakespeare", "data": None}  # nothing new in the spec
    assert plan_ids("shakespeare", str(copy))[0] == default
    assert plan_ids("shakespeare", str(copy), tokenizer="char")[0] == default  # char: the default


def test_the_default_plan_names_the_committed_runs():
    """The default comparison's committed records are the runs the default plan makes now."""
    path = ROOT / "results/reference/ablations/shakespeare_tiny_1400steps_cpu/runs.jsonl"
    committed = {json.loads(line)["run_id"] for line in path.read_text().splitlines()}
    cfg = SweepConfig()
    cfg.variants, cfg.device = ["rope"], "cpu"
    plan, _ = build_plan(cfg.validate())
    assert {run_id(s.to_dict()) for s in plan.specs(3)} <= committed


# ---------------------------------------------------------------------------------------------
# bad input: one line each, before any training
# ---------------------------------------------------------------------------------------------


def test_a_missing_field_names_the_file_and_what_it_has(tmp_path):
    for ext in (".jsonl", ".csv", ".parquet"):
        if ext == ".parquet" and not _has_pyarrow():
            continue
        path = write_format(tmp_path / f"docs{ext}", DOCS, field="body")
        with pytest.raises(TaskError) as e:
            text_task(path)
        msg = one_line(e)
        assert str(path) in msg and "'text'" in msg and "id, body" in msg and "--data-field" in msg


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: d / "nothing-*.txt", ["matches no files"]),
        (lambda d: (d / "empty").mkdir() or d / "empty", ["holds no data files"]),
        (lambda d: _write(d / "notes.md", "text " * 100), ["extension", ".md", ".jsonl"]),
        (lambda d: _write(d / "empty.txt", ""), ["empty"]),
        (lambda d: _write(d / "rows.jsonl", ""), ["empty"]),
        (lambda d: _write(d / "tiny.txt", "x" * 60), ["too short", "one window needs"]),
        (lambda d: _write(d / "short.txt", "x" * 100), ["too short", "fewer than one validation"]),
        (lambda d: _write(d / "bad.jsonl", '{"text": "a"}\nnot json\n'), ["line 2", "not JSON"]),
        (lambda d: _write(d / "num.jsonl", '{"text": 3}\n'), ["line 1", "not text"]),
    ],
)
def test_bad_data_is_one_line(tmp_path, make, words):
    with pytest.raises(TaskError) as e:
        text_task(make(tmp_path))
    msg = one_line(e)
    assert all(w in msg for w in words), msg


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "rows.jsonl"
    raw = b'{"text": "fine"}\n{"text": "caf\xe9"}\n'
    path.write_bytes(raw)
    with pytest.raises(TaskError) as e:
        text_task(path)
    assert str(path) in one_line(e) and f"offset {raw.index(bytes([0xE9]))})" in one_line(e)


def test_bad_data_from_the_command_line_is_one_line(tmp_path):
    path = write_format(tmp_path / "docs.jsonl", DOCS, field="body")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRANSFORMER_BENCH_CACHE": str(tmp_path / "c")}
    cmd = [sys.executable, "ablations/run.py", "--task", "text", "--data", str(path)]
    cmd += ["--steps", "1", "--quiet", "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "no field 'text'" in lines[0] and "id, body" in lines[0]
    assert not (tmp_path / "out" / "runs.jsonl").exists()  # nothing trained
