"""The run record: its type, its schema and how a record is validated, and run ids.

Every run leaves one :class:`RunRecord` (spec, env, metrics, curve, probes, evals, status),
written and read only through `bench.core.records`: writers hand it a record, readers get records
(:func:`load_records`), each validated against the record schema on the way in, so no table
or study ever meets a half record. Records written before the schema carried a version
(``schema`` absent: version 1, as committed under ``results/``) load as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar

# The layout of a record this code writes. Version 1 is every record written before records
# carried a version (those committed under results/ among them): the same keys, no `schema`
# and no `evals`. A record of a newer version than this code knows is skipped with a line that
# says to update the checkout, rather than read wrong.
SCHEMA = 2
_RUN_ID = re.compile(r"[0-9a-f]{12}")
# "failed": the run raised (its code or the environment, not a result: a rerun retries it)
_STATUSES = ("ok", "diverged", "failed")
_TYPE_NAMES = {
    bool: "a boolean", str: "a string", int: "an integer", float: "a number", dict: "an object",
    list: "a list", type(None): "null",
}  # fmt: skip


def _json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: Any) -> float:
    """A metric as a float: None, strings and booleans are NaN."""
    return float(value) if _is_number(value) else math.nan


class RecordError(ValueError):
    """A JSON object that is not a complete run record; `str(err)` says what is missing."""


@dataclass(frozen=True)
class RunRecord:
    """One finished (or diverged) run, as `bench.core.train.run` writes it and every reader
    takes it.

    `spec` stays the dict that hashes to `run_id` (`bench.core.spec.RunSpec.to_dict`), byte for
    byte, so a record read and written again keeps its id; `run_spec` is its typed form. Keys a
    record has beyond these fields (written by a later version, or by hand) are kept in `extra` and
    written back.
    """

    run_id: str
    variant: str
    seed: int
    task: str
    budget: dict  # {"mode": "steps" | "tokens" | "seconds", "value": number}
    spec: dict  # the resolved RunSpec, as hashed into run_id
    status: str  # "ok", "diverged" or "failed"
    env: dict  # the machine and software it was measured on (bench.measure.environment)
    metrics: dict  # final numbers: val_loss, step_ms, peak_mem_mb, ... (None where not measured)
    curve: list  # validation points [{"step", "tokens", "time_s", "val_loss", ...}, ...]
    probes: dict = field(default_factory=dict)  # extra measurements asked for (TrainConfig.probes)
    evals: dict = field(default_factory=dict)  # the task's own evaluation (Task.evaluate)
    task_info: dict = field(default_factory=dict)  # the task's parameters (Task.describe)
    diverged_at_step: int | None = None
    distributed: dict = field(default_factory=dict)  # {"world_size", "backend"}
    created: str | None = None  # ISO time the record was written
    error: str | None = None  # a failed run's error, "Type: message" (written only then)
    schema: int = SCHEMA
    extra: dict = field(default_factory=dict)

    # the fields every record has, with their JSON types; the others have defaults
    _REQUIRED: ClassVar[dict[str, type]] = {
        "run_id": str, "variant": str, "seed": int, "task": str, "budget": dict, "spec": dict,
        "status": str, "env": dict, "metrics": dict, "curve": list,
    }  # fmt: skip
    _OPTIONAL: ClassVar[dict[str, tuple[type, ...]]] = {
        "probes": (dict,), "evals": (dict,), "task_info": (dict,),
        "diverged_at_step": (int, type(None)), "distributed": (dict,),
        "created": (str, type(None)), "error": (str, type(None)), "schema": (int,),
    }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Any) -> RunRecord:
        """The record in `d` (a parsed JSON line); RecordError saying why if it is none."""
        reason = validate_record(d)
        if reason:
            raise RecordError(reason)
        known = {f.name for f in fields(cls)} - {"extra"}
        given = {k: v for k, v in d.items() if k in known}
        for key in ("probes", "evals", "task_info", "distributed"):
            if given.get(key) is None:
                given.pop(key, None)  # absent, or null by hand: an empty section
        if given.get("schema") is None:
            given["schema"] = 1  # written before records carried a version
        return cls(**given, extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        """The JSON object of this record (the inverse of `from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if out["error"] is None:
            del out["error"]  # as every record before failed runs were recorded
        return {**out, **self.extra}

    # ----------------------------------------------------------------- what readers ask for
    @property
    def ok(self) -> bool:
        """Finished without diverging or failing (the only runs whose numbers enter a
        comparison)."""
        return self.status == "ok"

    def metric(self, name: str) -> float:
        """A final metric as a float; NaN when it was not measured (None, or absent)."""
        return _num(self.metrics.get(name))

    @property
    def val_loss(self) -> float:
        """The final validation loss; NaN for a diverged run."""
        return self.metric("val_loss") if self.ok else math.nan

    @property
    def model(self) -> dict:
        """The model config, as in the spec."""
        return self.spec.get("model") or {}

    @property
    def train(self) -> dict:
        """The training config, as in the spec (fields at their default may be absent)."""
        return self.spec.get("train") or {}

    @property
    def device_name(self) -> str:
        """The machine's name (a CPU model and its cores, or a GPU), else the device kind."""
        return self.env.get("device_name") or self.env.get("device") or "unknown device"

    @cached_property
    def run_spec(self):
        """The spec as a typed `bench.core.spec.RunSpec`."""
        from bench.core.spec import RunSpec  # spec imports variants (and torch-free config) lazily

        return RunSpec.from_dict(self.spec)


def as_record(rec: RunRecord | dict) -> RunRecord:
    """A record, from a RunRecord or from its JSON object (RecordError if it is none)."""
    return rec if isinstance(rec, RunRecord) else RunRecord.from_dict(rec)


def validate_record(rec: Any) -> str | None:
    """Why ``rec`` is not a complete run record, or None if it is one.

    Complete means what :func:`bench.core.train.run` writes, at least: ``run_id``, ``variant``,
    ``task``, ``status`` strings (status ``"ok"``, ``"diverged"`` or ``"failed"``), an integer
    ``seed``, ``budget`` ``{"mode": str, "value": number}``, ``spec``, ``env`` and ``metrics``
    objects (metrics with a ``val_loss`` number or null) and a ``curve`` list; the optional
    sections (``probes``, ``evals``, ...) of the right JSON type when present; and a ``schema``
    this code knows. Other keys are free.
    """
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [k for k in RunRecord._REQUIRED if k not in rec]
    if missing:
        return "record lacks " + ", ".join(repr(k) for k in missing)
    for key, kind in RunRecord._REQUIRED.items():
        value = rec[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key!r} is {_json_type(value)}, not {_TYPE_NAMES[kind]}"
    for key, kinds in RunRecord._OPTIONAL.items():
        value = rec.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            return f"{key!r} is {_json_type(value)}, not {_TYPE_NAMES[kinds[0]]}"
    schema = 1 if rec.get("schema") is None else rec["schema"]
    if schema < 1:
        return f"'schema' is {schema}, not a record version (1 to {SCHEMA})"
    if schema > SCHEMA:
        return (
            f"written by a newer transformer-bench (record schema {schema}; this code reads up "
            f"to {SCHEMA}): update this checkout to read it"
        )
    if rec["status"] not in _STATUSES:
        return f"'status' is {rec['status']!r}, not 'ok', 'diverged' or 'failed'"
    for key in ("mode", "value"):
        if key not in rec["budget"]:
            return f"'budget' lacks {key!r}"
    if not isinstance(rec["budget"]["mode"], str):
        return f"'budget.mode' is {_json_type(rec['budget']['mode'])}, not a string"
    from bench.core.spec import BUDGET_MODES  # spec imports variants: only when validating

    if rec["budget"]["mode"] not in BUDGET_MODES:
        return f"'budget.mode' is {rec['budget']['mode']!r}, not one of {', '.join(BUDGET_MODES)}"
    if not _is_number(rec["budget"]["value"]):
        return f"'budget.value' is {_json_type(rec['budget']['value'])}, not a number"
    if "val_loss" not in rec["metrics"]:
        return "'metrics' lacks 'val_loss'"
    val_loss = rec["metrics"]["val_loss"]
    if val_loss is not None and not _is_number(val_loss):
        return f"'metrics.val_loss' is {_json_type(val_loss)}, not a number or null"
    return _check_run_id(rec)


def _check_run_id(rec: dict) -> str | None:
    """A run id of this suite's form (12 hex digits) must be its spec's hash: one that is not
    was edited after the run, and would pass for another run's numbers."""
    rid = rec["run_id"]
    if not _RUN_ID.fullmatch(rid):
        return None  # not an id this suite wrote (a hand-made or test record): nothing to check
    try:
        expected = run_id(rec["spec"])
    except (TypeError, ValueError):
        return "'spec' does not hash (it holds a value that is not JSON)"
    if expected != rid:
        return f"'run_id' {rid} is not its spec's ({expected}): the spec was edited after the run"
    return None


def run_id(spec: dict) -> str:
    """Stable 12-hex-char id of a run spec: sha256 of its canonical JSON.

    Canonical means sorted keys and no whitespace, so the id does not depend on dict insertion
    order, the process, the machine or the Python version. Non-JSON values raise TypeError
    rather than being stringified, since e.g. a repr with a memory address would make the id
    unstable and break resume silently.
    """
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
