"""Run records: their type, run ids, crash-safe appends to ``runs.jsonl``, reading them back.

Every run leaves one :class:`RunRecord` (spec, env, metrics, curve, probes, evals, status),
written and read only through this module: writers hand it a record, readers get records
(:func:`load_records`), each validated against the record schema on the way in, so no table
or study ever meets a half record. Records written before the schema carried a version
(``schema`` absent: version 1, as committed under ``results/``) load as they are. The record
type, its schema and run ids are `bench.core.records.record`; writing and reading records
(and files atomically) is `bench.core.records.store`; their public names are re-exported here.

Why the store is built as it is (resume, concurrent writers, crashes, merging, clusters) is
said once, in `bench.core.records.store`.
"""

from __future__ import annotations

from bench.core.records.record import (
    SCHEMA,
    RecordError,
    RunRecord,
    as_record,
    run_id,
    validate_record,
)
from bench.core.records.store import (
    CACHE_ENV,
    RUNS_DIR,
    RUNS_FILE,
    RecordWarning,
    append_record,
    cache_dir,
    finished_ids,
    load_records,
    run_file,
    same_machine,
    write_bytes_atomic,
    write_json_atomic,
    write_run_record,
)

__all__ = [
    "CACHE_ENV",
    "RUNS_DIR",
    "RUNS_FILE",
    "SCHEMA",
    "RecordError",
    "RecordWarning",
    "RunRecord",
    "as_record",
    "cache_dir",
    "append_record",
    "finished_ids",
    "load_records",
    "run_file",
    "run_id",
    "same_machine",
    "validate_record",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_run_record",
]
