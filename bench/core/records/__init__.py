"""Run records: their type, run ids, crash-safe appends to ``runs.jsonl``, reading them back.

Every run leaves one :class:`RunRecord` (spec, env, metrics, curve, probes, evals, status),
written and read only through this module: writers hand it a record, readers get records
(:func:`load_records`), each validated against the record schema on the way in, so no table
or study ever meets a half record. Records written before the schema carried a version
(``schema`` absent: version 1, as committed under ``results/``) load as they are. The record
type, its schema and run ids are `bench.core.records.record`; writing and reading records (and files
atomically) is `bench.core.records.store`; their public names are re-exported here.

A sweep is many independent training runs, possibly in several processes or on several
machines. Each run appends one JSON line to ``<out_dir>/runs.jsonl``. The design goals:

* **Resume**: a run's id is a hash of its spec, so a restarted sweep can skip every spec whose
  id is already in the file (:func:`finished_ids`) without any other bookkeeping.
* **Concurrency**: several writers may append to the same file; each line is written whole
  under an exclusive ``flock``, so lines never interleave.
* **Crashes**: a writer killed mid-write can at worst leave a trailing half line. The next
  writer starts on a fresh line, and readers skip (with a warning) lines that do not parse,
  so one crash never loses the other records. Lines that parse but are no complete record
  (:func:`validate_record`, e.g. a hand-written stub) are skipped the same way, so they
  neither break the tables nor count as finished runs nor shadow a record with their id.
* **Merging**: results copied from several machines into subfolders are read together by
  pointing :func:`load_records` at the parent directory.
* **Clusters**: ``flock`` is per host and ``O_APPEND`` is not atomic across NFS clients, so
  jobs on a cluster write one file per run instead, ``<out_dir>/runs/<run_id>.json``
  (:func:`write_run_record`: temp file + rename, so a killed job leaves no half record and no
  lock is needed). :func:`load_records` on a directory reads both kinds and merges them.
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
