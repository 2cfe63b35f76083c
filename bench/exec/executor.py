"""Runs a list of RunSpecs through the one training loop, skipping finished ones (resume).

Every entry point (the ablation CLI, the studies, nox -s bench) goes through `execute`, so
records, resume and progress look the same everywhere. Where the runs happen:

* ``kind="local", jobs=1`` (the default): one after the other in this process, with a
  progress bar each. Under torchrun (bench.exec.distributed) every rank takes part in every run and
  rank 0 alone writes the records and shows progress.
* ``kind="local", jobs=N``: N worker processes on this machine (`bench.exec.pool`), each with
  ``cores // N`` torch threads, so small models use every core.
* ``kind="slurm"``: a SLURM job array through submitit, ``runs_per_job`` runs per array task,
  one record file per run (`bench.exec.slurm`); ``kind="submitit-local"`` is the same path with
  submitit's LocalExecutor, to try it on a workstation.

Resume works the same for all of them: finished ids are every record below ``out`` (its
runs.jsonl, runs/*.json and those of subfolders, e.g. results copied home from a cluster), see
``bench.core.records.load_records``, that was measured on this machine (`this_machine`): a record
from another machine, say a reference result copied in, is trained again here, because its
speed and memory are not this machine's.

Measured (2-core AMD EPYC VM shared with other work, load average 3-4.6 throughout, so
noisy): ``--variant rope --seeds 2 --steps 200 --model tiny --device cpu --quiet``, whole
command wall time, in the order jobs 1, 2, 2, 1: 440 s, 169 s, 104 s, 399 s, i.e. --jobs 2
was 2.4-4.2x faster. More than 2x because on a busy machine one process with 2 intra-op
threads loses more to thread contention than it gains (median step 199/348 ms with 2 threads
against 306/172 ms for each 1-thread worker); on a quiet machine expect at most ~2x. Rerun:

    for J in 1 2 2 1; do /usr/bin/time -f "jobs=$J %e s" python ablations/run.py \\
      --variant rope --seeds 2 --steps 200 --model tiny --device cpu --quiet --jobs $J \\
      --out $(mktemp -d); done
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.core.records import finished_ids, run_id
from bench.core.spec import RunSpec
from bench.exec import distributed, status
from bench.exec.local import (  # noqa: F401 (re-exported: the executor's public names)
    Tally,
    WorkerDied,
    cpu_cores,
    progress_bar,
    run_here,
    this_machine,
)
from bench.exec.placement import EXECUTORS, ExecutorConfig, SlurmConfig, check_fan_out  # noqa: F401
from bench.exec.plugins import load_plugins  # noqa: F401
from bench.exec.pool import run_pool
from bench.exec.slurm import SweepJob, run_submitit  # noqa: F401
from bench.exec.trackers import Trackers, check_trackers

LOCAL = ExecutorConfig()  # one run after another in this process, or a local pool


def execute(
    specs: list[RunSpec],
    out: Path,
    force: bool = False,
    quiet: bool = False,
    task=None,
    *,
    jobs: int = 1,
    where: ExecutorConfig = LOCAL,
    plugins=(),
    retry_failed: bool = True,
) -> Tally:
    """Run what is not finished yet; each record is written as soon as it exists, so an
    interrupted sweep keeps every finished run. `task` may share one built task among specs
    that all use it; without it each run builds its own. Saved weights go to <out>/checkpoints.

    `where` is the command's executor section, as given (see the module docstring and
    `bench.exec.placement`); `jobs` is the resolved number of local worker processes (on a
    cluster, the array's parallelism when `where.jobs` is unset); `plugins` are plugin files
    that worker processes and jobs import before training. With `where.wait` False, cluster
    jobs are submitted and this returns at once. A run that raises is recorded as failed and
    the others go on (`bench.exec.outcome`); it is trained again unless `retry_failed` is
    False (a later round of seeds of the same command).
    Returns the Tally: runs trained (with wait=False: submitted), skipped because their
    record exists, held by another live process, failed."""
    check_fan_out(jobs, where.kind, distributed.is_active())
    check_trackers(where.log)  # an unknown --log or a missing package: before any run
    policy = where.checkpointing()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = this_machine(specs[0].device, where.kind) if specs else None
    done = set() if force else finished_ids(out, machine, failed=not retry_failed)
    done = distributed.broadcast_object(done)  # all ranks agree on what to run
    main = distributed.is_main()
    trackers = Trackers(where.log, out) if where.log else None
    todo, outcome = [], Tally()
    for i, spec in enumerate(specs, 1):
        rid = run_id(spec.to_dict())
        label = f"[{i}/{len(specs)}] {spec.variant} seed {spec.seed}"
        if rid in done:
            outcome.skipped += 1
            if not quiet and main:
                print(f"{label}: finished earlier ({rid}), skipped", file=sys.stderr)
            continue
        todo.append((label, spec))
    if not todo:
        return outcome
    if where.kind != "local":
        found = status.survey(out, todo)  # a rerun: which runs live jobs still hold
        status.tell(found, outcome.skipped, quiet)
        outcome.held += [label for label, _ in found.running]
        todo = found.free(todo)
        if todo:
            outcome.add(run_submitit(todo, out, quiet, where, plugins, jobs, force, trackers))
    elif jobs > 1:
        rest = (plugins, task, force, machine, retry_failed, policy, trackers)
        outcome.add(run_pool(todo, out, quiet, jobs, *rest))
    else:
        outcome.add(
            run_here(todo, out, quiet, task, force, machine, retry_failed, policy, trackers)
        )
    return outcome
