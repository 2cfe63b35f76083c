"""Experiment trackers (bench.exec.trackers, `--log`): what TensorBoard's and W&B's own readers
get back from a real run equals its record, a tracker that raises is one warning line and the
sweep and its records go on, and a name that cannot be logged to is refused before training."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from test_harness import cli, one_line_error

from ablations import config, config_toml
from ablations.flags import parse_args, resolve_config
from ablations.run import main
from bench.core.records import RUNS_FILE, RunRecord, load_records
from bench.exec import trackers
from bench.exec.executor import ExecutorConfig, execute

MICRO = ["--task", "addition", "--model", "micro", "--steps", "10", "--batch-size", "8"]
MICRO += ["--eval-every", "5", "--device", "cpu", "--quiet", "--jobs", "1"]


def records(out) -> list[RunRecord]:
    return [RunRecord.from_dict(json.loads(line)) for line in (out / RUNS_FILE).open()]


def numbers(values: dict) -> dict:
    """What a tracker is given of a curve point or the metrics: its numbers, step aside."""
    return {k: v for k, v in trackers.scalars(values).items() if k != "step"}


def one_run(out, *log) -> RunRecord:
    assert main([*MICRO, "--seeds", "1", "--out", str(out), *log]) == 0
    (rec,) = records(out)
    assert rec.status == "ok" and [p["step"] for p in rec.curve] == [0, 5, 10]
    return rec


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_event_files_hold_the_records_curve_and_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    rec = one_run(out, "--log", "tensorboard")
    folder = out / "trackers" / "tensorboard" / "baseline" / rec.run_id
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    got = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}

    curve_keys = {k for p in rec.curve for k in numbers(p)}
    final = numbers(rec.metrics)
    assert {"val_loss", "train_loss", "accuracy", "tokens", "time_s"} <= curve_keys
    assert set(got) == curve_keys | {f"final/{k}" for k in final}
    for key in curve_keys:  # every point, at its step; TensorBoard stores float32
        want = [(p["step"], p[key]) for p in rec.curve if key in numbers(p)]
        assert [s for s, _ in got[key]] == [s for s, _ in want], key
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in want], rel=1e-6), key
    last = rec.curve[-1]["step"]
    for key, value in final.items():
        ((step, logged),) = got[f"final/{key}"]
        assert step == last and logged == pytest.approx(value, rel=1e-6, nan_ok=True), key
    (text,) = events.Tensors("config/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    assert rec.run_id in shown and '"variant": "baseline"' in shown
    assert 'log = ["tensorboard"]' in (out / "config.toml").read_text()


def tensorboard_scalars(folder) -> dict:
    """{tag: [(step, value), ...]} as TensorBoard's own event reader reads `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


@pytest.mark.slow
@pytest.mark.parametrize(
    "where", [["--jobs", "2"], ["--executor", "submitit-local", "--jobs", "2"]], ids=["pool", "job"]
)
def test_worker_processes_and_cluster_jobs_log_each_run(tmp_path, where):
    """The trackers travel to pool workers and submitit jobs, and log there after the record."""
    pytest.importorskip("tensorboard")
    if "submitit-local" in where:
        pytest.importorskip("submitit")
    out = tmp_path / "sweep"
    args = [*MICRO[:-2], "--seeds", "2", "--out", str(out), "--log", "tensorboard", *where]
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = load_records(out)  # runs.jsonl (workers) and runs/*.json (jobs)
    assert len(recs) == 2
    for rec in recs:
        got = tensorboard_scalars(out / "trackers" / "tensorboard" / "baseline" / rec.run_id)
        want = [(p["step"], p["val_loss"]) for p in rec.curve]
        assert [s for s, _ in got["val_loss"]] == [s for s, _ in want]
        assert [v for _, v in got["val_loss"]] == pytest.approx([v for _, v in want], rel=1e-6)


# --------------------------------------------------------------------------- W&B (offline)


def wandb_inspect(run_file, *flags) -> str:
    """W&B's own reader of a .wandb transaction log: `wandb leet inspect --json`."""
    r = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", *flags,
                        str(run_file)], capture_output=True, text=True, timeout=120)  # fmt: skip
    if r.returncode != 0 and "No such command" in r.stderr:
        pytest.skip("this wandb has no `wandb leet inspect` to read an offline run")
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_wandb_offline_run_holds_the_records_curve_and_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline by default, whoever runs this
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))

    out = tmp_path / "wb"
    rec = one_run(out, "--log", "wandb")
    (run_file,) = (out / "trackers" / "wandb" / "wandb").glob(
        f"offline-run-*/run-{rec.run_id}.wandb"
    )
    logged = [json.loads(line) for line in wandb_inspect(run_file).splitlines() if line.strip()]

    history = [r["history"] for r in logged if r["type"] == "history"]
    rows = [{k: v for k, v in h["item"].items() if not k.startswith("_")} for h in history]
    assert [h.get("step", {}).get("num", 0) for h in history] == [p["step"] for p in rec.curve]
    assert rows == [numbers(p) for p in rec.curve]  # JSON doubles: the record's exact numbers

    state = json.loads(wandb_inspect(run_file, "--summary"))
    assert state["state"] == "finished" and state["run_id"] == rec.run_id
    assert state["name"] == "baseline seed 0" and state["project"] == "transformer-bench"
    final = numbers(rec.metrics)
    assert {k: state["summary"][k] for k in final} == final
    assert state["config"]["spec"] == rec.spec and state["config"]["variant"] == "baseline"
    (run,) = [r["run"] for r in logged if r["type"] == "run"]
    assert run["run_group"] == "baseline"


# --------------------------------------------------------------------------- failures


class Memo:
    """A tracker that keeps what it is given (in this process: --jobs 1)."""

    requires: tuple[str, ...] = ()
    extra = "memo"
    seen: list = []

    def start(self, record, out):
        self.entry = {"run_id": record.run_id, "points": [], "metrics": None}
        Memo.seen.append(self.entry)

    def log_point(self, point):
        self.entry["points"].append(point)

    def finish(self, metrics):
        self.entry["metrics"] = metrics


def broken(where: str, err: Exception) -> type:
    """A tracker that raises `err` in its method `where` (and does nothing otherwise)."""

    def fail(self, *args):
        raise err

    def nothing(self, *args):
        pass

    methods = {m: fail if m == where else nothing for m in ("start", "log_point", "finish")}
    return type("Broken", (), {"requires": (), "extra": "broken", **methods})


@pytest.mark.parametrize(
    ("where", "err"),
    [("start", ImportError("no module named 'fancy_tracker'")),
     ("log_point", OSError(28, "No space left on device"))],
)  # fmt: skip
def test_a_tracker_that_raises_is_one_warning_and_the_sweep_goes_on(
    tmp_path, monkeypatch, capsys, where, err
):
    monkeypatch.setitem(trackers.TRACKERS, "broken", broken(where, err))
    monkeypatch.setitem(trackers.TRACKERS, "memo", Memo)
    monkeypatch.setattr(Memo, "seen", [])
    out = tmp_path / "sweep"
    assert main([*MICRO, "--seeds", "2", "--out", str(out), "--log", "broken,memo"]) == 0
    stderr = capsys.readouterr().err
    warnings = [line for line in stderr.splitlines() if "--log broken" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert type(err).__name__ in warnings[0] and "Traceback" not in stderr
    assert "2 run(s) trained" in stderr
    recs = records(out)
    assert [r.status for r in recs] == ["ok", "ok"]
    # the other tracker logged both runs in full
    assert [e["run_id"] for e in Memo.seen] == [r.run_id for r in recs]
    assert [[numbers(p) for p in e["points"]] for e in Memo.seen] == [
        [numbers(p) for p in r.curve] for r in recs
    ]
    assert [numbers(e["metrics"]) for e in Memo.seen] == [numbers(r.metrics) for r in recs]


def test_an_unknown_tracker_is_one_line_and_nothing_trains(tmp_path):
    out = tmp_path / "foo"
    r = cli(*MICRO, "--out", str(out), "--log", "foo")
    one_line_error(r, "--log 'foo'", "tensorboard", "wandb")
    assert not out.exists()


def test_a_missing_package_names_the_extra_before_anything_trains(tmp_path, monkeypatch, capsys):
    class Needy(Memo):
        requires = ("no_such_module_for_the_tracker_test",)
        extra = "needy"

    monkeypatch.setitem(trackers.TRACKERS, "needy", Needy)
    out = tmp_path / "needy"
    assert main([*MICRO, "--out", str(out), "--log", "needy"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --log needy needs") and 'pip install -e ".[needy]"' in line
    assert not out.exists()
    with pytest.raises(ValueError, match="needy"):  # execute refuses it too (studies, the API)
        execute([], tmp_path / "api", where=ExecutorConfig(log=["needy"]))


def test_a_failed_run_is_not_logged(tmp_path, monkeypatch):
    """A failed run is no result (a rerun retries it): no tracker hears of it."""
    seen = []

    class Spy(Memo):
        def __init__(self):
            seen.append(self)

    rec = RunRecord(run_id="0" * 12, variant="baseline", seed=0, task="addition",
                    budget={"mode": "steps", "value": 1}, spec={}, status="failed", env={},
                    metrics={"val_loss": None}, curve=[], error="OSError: gone")  # fmt: skip
    monkeypatch.setitem(trackers.TRACKERS, "spy", Spy)
    group = trackers.Trackers(["spy"], tmp_path)
    group.log(rec)
    assert seen == []
    monkeypatch.setattr(Memo, "seen", [])
    group.log(dataclasses.replace(rec, status="diverged"))  # a diverged run is a result
    assert len(seen) == 1


# --------------------------------------------------------------------------- config


def test_log_flows_from_flags_and_files_into_the_dumped_config(tmp_path, monkeypatch):
    monkeypatch.setitem(trackers.TRACKERS, "memo", Memo)
    monkeypatch.setitem(trackers.TRACKERS, "other", Memo)
    cfg = resolve_config(parse_args(["--log", "memo,other", "--log", "memo"]))
    assert cfg.executor.log == ["memo", "other"]
    assert resolve_config(parse_args(['--executor.log=["other"]'])).executor.log == ["other"]
    dumped = config_toml.dumps(cfg)
    assert 'log = ["memo", "other"]' in dumped.split("[executor]")[1]
    path = tmp_path / "sweep.toml"
    path.write_text(dumped)
    assert config.load(path) == cfg
    path.write_text('[executor]\nlog = "memo"\n')
    with pytest.raises(config.ConfigError, match="executor.log must be a list of strings"):
        config.load(path)
    path.write_text('[executor]\nlog = ["nope"]\n')
    with pytest.raises(ValueError, match="--log 'nope' is no tracker"):
        config.load(path).validate()
