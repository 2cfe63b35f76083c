"""A pool of worker processes on this machine (`--jobs N`): each started fresh ("spawn") with
``cores // N`` torch threads, so small models use every core. Workers append their own records
to ``<out>/runs.jsonl`` under the file lock (``bench.core.records.append_record``, safe across
processes on one machine); a worker that dies leaves at most one unparseable trailing line,
which readers skip.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from bench import measure
from bench.core import claims
from bench.core.records import run_id
from bench.core.spec import RunSpec
from bench.exec.local import WorkerDied, brief, cpu_cores, take
from bench.exec.outcome import (
    FINISHED,
    HELD,
    TAKEN,
    Tally,
    append_run,
    report,
    skipped,
    train_and_record,
)
from bench.exec.plugins import load_plugins

_WORKER_TASK = None
_WORKER_TRACKERS = None  # this worker's --log trackers: one that fails stays off in it


def _init_worker(threads: int, plugins, task, workers: int, trackers=None) -> None:
    global _WORKER_TASK, _WORKER_TRACKERS
    torch.set_num_threads(threads)
    os.environ[measure.WORKERS_ENV] = str(workers)  # recorded in each run's environment
    load_plugins(plugins)
    _WORKER_TASK = task
    _WORKER_TRACKERS = trackers


def _pool_run(spec: RunSpec, out: str, force: bool, machine: dict | None, retry_failed: bool,
              policy=None):  # fmt: skip
    """Train one run in a worker: (TAKEN, its brief), or (HELD or FINISHED, None) when this
    worker did not take it (see `bench.exec.local.take`)."""
    out = Path(out)
    rid = run_id(spec.to_dict())
    got = take(out, rid, force, machine, retry_failed)
    if got != TAKEN:
        return got, None
    try:
        record = train_and_record(spec, out, policy, append_run, _WORKER_TRACKERS,
                                  task=_WORKER_TASK)  # fmt: skip
    finally:
        claims.release(out, rid)
    return TAKEN, brief(record)


def run_pool(todo, out: Path, quiet: bool, jobs: int, plugins, task, force, machine,
             retry_failed=True, policy=None, trackers=None) -> Tally:  # fmt: skip
    """Train `todo` ((label, spec) pairs) in `jobs` worker processes (each with its own copy
    of `trackers`)."""
    workers = min(jobs, len(todo))
    threads = max(1, cpu_cores() // jobs)
    if task is not None:
        try:
            pickle.dumps(task)  # shipped once to each worker; else each run builds its own
        except Exception:
            task = None
    if not quiet:
        print(
            f"running {len(todo)} run(s) in {workers} worker process(es), "
            f"{threads} torch thread(s) each",
            file=sys.stderr,
        )
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),  # no fork of a process with torch threads running
        initializer=_init_worker,
        initargs=(threads, tuple(str(p) for p in plugins), task, workers, trackers),
    )
    try:
        futures = {
            pool.submit(_pool_run, spec, str(out), force, machine, retry_failed, policy): label
            for label, spec in todo
        }
        outcome, first_error = _collect(futures, quiet)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if first_error is not None:
        raise first_error
    return outcome


def _collect(futures: dict, quiet: bool):
    """(the Tally, the first error a worker raised outside a run: writing its record, say)
    as the workers finish; after an error no new run starts, the running ones finish. A dead
    worker is WorkerDied at once."""
    outcome, first_error = Tally(), None
    for fut in as_completed(futures):
        label = futures[fut]
        if fut.cancelled():
            continue
        try:
            done = fut.result()
        except BrokenProcessPool:
            lost = sum(not f.done() or f.cancelled() or f.exception() is not None for f in futures)
            raise WorkerDied(
                f"a worker process died (killed, out of memory?); {lost} run(s) did not "
                "finish, every finished run is kept: rerun the same command to resume"
            ) from None
        except Exception as err:  # stop starting new runs; let the running ones finish
            if first_error is None:
                first_error = err
                for f in futures:
                    f.cancel()
            continue
        got, done = done
        if got != TAKEN:
            outcome.skipped += got == FINISHED
            outcome.held += [label] if got == HELD else []
            skipped(label, got, quiet)
            continue
        outcome.counted(label, done)
        report(label, done, quiet)
    return outcome, first_error
