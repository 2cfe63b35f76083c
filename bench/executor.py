"""Runs a list of RunSpecs through the one training loop, skipping finished ones (resume).

Every entry point (the ablation CLI, the studies, nox -s bench) goes through `execute`, so
records, resume and progress look the same everywhere. Where the runs happen:

* ``executor="local", jobs=1`` (the default): one after the other in this process, with a
  progress bar each. Under torchrun (bench.distributed) every rank takes part in every run and
  rank 0 alone writes the records and shows progress.
* ``executor="local", jobs=N``: N worker processes on this machine (started fresh, "spawn"),
  each with ``cores // N`` torch threads, so small models use every core. Workers append their
  own records to ``<out>/runs.jsonl`` under the file lock (``bench.records.append_record``,
  safe across processes on one machine); a worker that dies leaves at most one unparseable
  trailing line, which readers skip.
* ``executor="slurm"``: a SLURM job array through submitit, ``runs_per_job`` runs per array
  task. Jobs write one file per run, ``<out>/runs/<run_id>.json`` (temp file + rename: no lock
  needed on NFS, nothing half-written); submitit's files and each job's logs go to
  ``<out>/slurm/``. A preempted or timed-out job is requeued (the job object is
  checkpointable) and goes on with the runs it had not finished; the run it was in restarts
  from step 0. ``executor="submitit-local"`` is the same path with submitit's LocalExecutor,
  to try it on a workstation.

Resume works the same for all of them: finished ids are every record below ``out`` (its
runs.jsonl, runs/*.json and those of subfolders, e.g. results copied home from a cluster), see
``bench.records.load_records``, that was measured on this machine (`this_machine`): a record
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

import importlib.util
import multiprocessing as mp
import os
import pickle
import shutil
import socket
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from bench import claims, distributed, measure
from bench.records import (
    RUNS_FILE,
    RunRecord,
    append_record,
    finished_ids,
    load_records,
    run_file,
    run_id,
    same_machine,
    write_run_record,
)
from bench.spec import RunSpec
from bench.train import run

EXECUTORS = ("local", "slurm", "submitit-local")


class WorkerDied(RuntimeError):
    """A worker process or cluster job ended without a record; finished runs are kept."""


def this_machine(device: str, executor: str = "local") -> dict:
    """What a record must share with this machine to count as a finished run here: the
    device's name (CPU model and core count, or GPU name) and, for runs on this machine, the
    hostname. Cluster jobs run on other nodes of one partition, so there the device name alone
    identifies the machine."""
    return {
        "device_name": measure.device_name(device),
        "hostname": socket.gethostname() if executor == "local" else None,
    }


def progress_bar(quiet: bool, label: str):
    """A tqdm bar over the fraction of the budget used, showing step, loss and tokens/s."""
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(
        total=1000,
        desc=label,
        leave=True,
        dynamic_ncols=True,
        bar_format=("{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}"),
    )

    def update(info):
        bar.n = min(1000, int(info["progress"] * 1000))
        bar.set_postfix_str(
            f"step {info['step']} loss {info['loss']:.4f} {info['tokens_per_s']:,.0f} tok/s",
            refresh=True,
        )

    return bar, update


def cpu_cores() -> int:
    """CPUs this process may run on (the affinity mask: what a cgroup or taskset allows)."""
    return measure.usable_cores()


def _brief(record: RunRecord) -> dict:
    """What the parent prints about a run that finished elsewhere (small to pickle)."""
    m = record.metrics
    return {
        "run_id": record.run_id,
        "status": record.status,
        "diverged_at_step": record.diverged_at_step,
        "val_loss": m.get("val_loss"),
        "accuracy": m.get("accuracy"),
        "step_ms": m.get("step_ms"),
    }


def _report(label: str, brief: dict, quiet: bool) -> None:
    if brief["status"] != "ok":
        print(
            f"{label}: DIVERGED at step {brief['diverged_at_step']} (non-finite loss); "
            "recorded, going on",
            file=sys.stderr,
        )
    elif not quiet:
        print(
            f"{label}: val_loss {brief['val_loss']:.4f}"
            + (f" acc {brief['accuracy']:.3f}" if brief.get("accuracy") is not None else "")
            + f" step {brief['step_ms']:.1f} ms",
            file=sys.stderr,
        )


def load_plugins(paths) -> None:
    """Import plugin files (they register blocks/variants) in a fresh worker process."""
    for i, path in enumerate(paths):
        spec = importlib.util.spec_from_file_location(f"_bench_plugin_{i}_{Path(path).stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # a @dataclass in the plugin looks itself up there
        spec.loader.exec_module(module)


def check_fan_out(jobs: int, executor: str, under_torchrun: bool) -> None:
    """Where runs may go: a known executor, at least one job, and under torchrun (every rank
    takes part in every run) neither a pool nor a cluster. The one check, for the CLI and for
    `execute` alike; one line each."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if under_torchrun and (jobs > 1 or executor != "local"):
        raise ValueError(
            "under torchrun every rank takes part in every run: --jobs and --executor are for "
            "sweeps of single-process runs"
        )


def execute(
    specs: list[RunSpec],
    out: Path,
    force: bool = False,
    quiet: bool = False,
    task=None,
    *,
    jobs: int = 1,
    executor: str = "local",
    plugins=(),
    slurm: dict | None = None,
    wait: bool = True,
) -> tuple[int, int]:
    """Run what is not finished yet; each record is written as soon as it exists, so an
    interrupted sweep keeps every finished run. `task` may share one built task among specs
    that all use it; without it each run builds its own. Saved weights go to <out>/checkpoints.

    `executor` and `jobs` choose where runs happen (see the module docstring); `plugins` are
    plugin files that worker processes import before training (variants registered by them);
    `slurm` holds the cluster options (partition, time_min, cpus, gpus, runs_per_job,
    parallelism: most array tasks at once, additional: extra #SBATCH keys); `wait=False`
    submits cluster jobs and returns.
    Returns (runs trained, runs skipped because their record exists); with wait=False the
    first number counts the runs submitted."""
    check_fan_out(jobs, executor, distributed.is_active())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = this_machine(specs[0].device, executor) if specs else None
    done = set() if force else finished_ids(out, machine)
    done = distributed.broadcast_object(done)  # all ranks agree on what to run
    main = distributed.is_main()
    todo, skipped = [], 0
    for i, spec in enumerate(specs, 1):
        rid = run_id(spec.to_dict())
        label = f"[{i}/{len(specs)}] {spec.variant} seed {spec.seed}"
        if rid in done:
            skipped += 1
            if not quiet and main:
                print(f"{label}: finished earlier ({rid}), skipped", file=sys.stderr)
            continue
        todo.append((label, spec))
    if not todo:
        return 0, skipped
    if executor != "local":
        ran = _run_submitit(todo, out, quiet, executor, plugins, slurm or {}, wait, jobs, force)
    elif jobs > 1:
        ran = _run_pool(todo, out, quiet, jobs, plugins, task, force, machine)
    else:
        ran = _run_here(todo, out, quiet, task, force, machine)
    return ran, skipped + len(todo) - ran


# ---------------------------------------------------------------------------------------------
# in this process (and, under torchrun, on every rank)


def _take(out: Path, rid: str, force: bool, machine: dict | None) -> bool:
    """Whether this process trains run `rid` now: it must win the run's claim, and the run must
    not have been finished meanwhile by another sweep sharing `out` (`--force`: retrain)."""
    if not claims.claim(out, rid):
        return False
    if not force and rid in finished_ids(out, machine):
        claims.release(out, rid)
        return False
    return True


def _elsewhere(label: str, quiet: bool) -> None:
    if not quiet:
        print(f"{label}: finished or in training elsewhere (same folder), skipped", file=sys.stderr)


def _run_here(todo, out: Path, quiet: bool, task, force=False, machine=None) -> int:
    main = distributed.is_main()
    ran = 0
    for label, spec in todo:
        rid = run_id(spec.to_dict())
        if not distributed.broadcast_object(_take(out, rid, force, machine) if main else None):
            if main:
                _elsewhere(label, quiet)
            continue
        bar, update = progress_bar(quiet or not main, label)
        try:
            record = run(spec, progress=update, task=task, checkpoint_dir=out / "checkpoints")
            if main:
                append_record(out / RUNS_FILE, record)
        finally:
            if bar is not None:
                bar.close()
            if main:
                claims.release(out, rid)
        if main:
            _report(label, _brief(record), quiet)
        ran += 1
    distributed.barrier()  # the records are on disk before any rank reads them
    return ran


# ---------------------------------------------------------------------------------------------
# a pool of worker processes on this machine

_WORKER_TASK = None


def _init_worker(threads: int, plugins, task, workers: int) -> None:
    global _WORKER_TASK
    torch.set_num_threads(threads)
    os.environ[measure.WORKERS_ENV] = str(workers)  # recorded in each run's environment
    load_plugins(plugins)
    _WORKER_TASK = task


def _pool_run(spec: RunSpec, out: str, force: bool, machine: dict | None) -> dict | None:
    """Train one run in a worker; None when another process has it (see `_take`)."""
    out = Path(out)
    rid = run_id(spec.to_dict())
    if not _take(out, rid, force, machine):
        return None
    try:
        record = run(spec, task=_WORKER_TASK, checkpoint_dir=out / "checkpoints")
        append_record(out / RUNS_FILE, record)  # locked, one write: safe beside other workers
    finally:
        claims.release(out, rid)
    return _brief(record)


def _run_pool(todo, out: Path, quiet: bool, jobs: int, plugins, task, force, machine) -> int:
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
    ran, first_error = 0, None
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),  # no fork of a process with torch threads running
        initializer=_init_worker,
        initargs=(threads, tuple(str(p) for p in plugins), task, workers),
    )
    try:
        futures = {
            pool.submit(_pool_run, spec, str(out), force, machine): label for label, spec in todo
        }
        for fut in as_completed(futures):
            label = futures[fut]
            if fut.cancelled():
                continue
            try:
                brief = fut.result()
            except BrokenProcessPool:
                lost = sum(
                    not f.done() or f.cancelled() or f.exception() is not None for f in futures
                )
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
            if brief is None:
                _elsewhere(label, quiet)
                continue
            ran += 1
            _report(label, brief, quiet)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if first_error is not None:
        raise first_error
    return ran


# ---------------------------------------------------------------------------------------------
# SLURM (or submitit's local executor) through submitit


class SweepJob:
    """One array task: trains its specs in turn, each record to <out>/runs/<run_id>.json.

    Checkpointable the submitit way (it has `checkpoint`): when SLURM preempts the job or its
    time runs out, submitit calls `checkpoint` and requeues what it returns, a job with the
    runs this one had not finished (the run in progress restarts from step 0)."""

    def __init__(
        self, specs, out: str, plugins=(), threads: int | None = None, force=False, ranks=1
    ):
        self.specs = list(specs)
        self.out = str(out)
        self.plugins = tuple(plugins)
        self.threads = threads
        self.force = force
        self.ranks = int(ranks)  # > 1: the job's tasks are DDP ranks that train each run together
        self.completed: list[str] = []

    def __call__(self) -> list[dict]:
        if self.threads:
            torch.set_num_threads(self.threads)
        load_plugins(self.plugins)
        if self.ranks > 1:
            from submitit.helpers import TorchDistributedEnvironment

            # MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK from the job's tasks, as torchrun
            # would set them; from there the harness's DDP path is the torchrun one. The job's
            # GPUs stay visible to every task (distributed.setup takes cuda:LOCAL_RANK):
            # narrowing CUDA_VISIBLE_DEVICES to the local rank's number would both break that
            # and pick the wrong GPU where SLURM already narrowed it to, say, "4,5".
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
            distributed.setup(self.specs[0].device if self.specs else "cpu")
        try:
            return self._train_all(Path(self.out))
        finally:
            distributed.teardown()

    def _train_all(self, out: Path) -> list[dict]:
        briefs = []
        for spec in self.specs:
            rid = run_id(spec.to_dict())
            skip = rid in self.completed or (not self.force and self._finished(out, rid, spec))
            if distributed.broadcast_object(skip):  # rank 0 decides for all ranks
                continue
            record = run(spec, checkpoint_dir=out / "checkpoints")
            if distributed.is_main():
                write_run_record(out, record)
                briefs.append(_brief(record))
            self.completed.append(rid)
        return briefs

    @staticmethod
    def _finished(out: Path, rid: str, spec: RunSpec) -> bool:
        machine = this_machine(spec.device, "slurm")
        return any(same_machine(r, machine) for r in load_records(run_file(out, rid)))

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        remaining = [s for s in self.specs if run_id(s.to_dict()) not in self.completed]
        return DelayedSubmission(
            SweepJob(remaining, self.out, self.plugins, self.threads, self.force, self.ranks)
        )


def _run_submitit(todo, out, quiet, executor, plugins, opts, wait, jobs, force) -> int:
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--executor {executor} needs submitit: pip install submitit") from None
    cluster = "slurm" if executor == "slurm" else "local"
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ValueError(
            "--executor slurm: no sbatch here; submit from a SLURM login node (or try the "
            "path on this machine with --executor submitit-local)"
        )
    k = int(opts.get("runs_per_job", 1))
    if k < 1:
        raise ValueError(f"--runs-per-job must be at least 1, got {k}")
    ranks = int(opts.get("ranks_per_run", 1))
    if ranks < 1:
        raise ValueError(f"--ranks-per-run must be at least 1, got {ranks}")
    groups = [[s for _, s in todo[i : i + k]] for i in range(0, len(todo), k)]
    device = todo[0][1].device
    if cluster == "slurm":
        cpus = int(opts.get("cpus") or 4)
        threads = cpus
    else:  # submitit's LocalExecutor starts every job at once: they share this machine's cores
        cpus = max(1, cpu_cores() // (len(groups) * ranks))
        threads = cpus
    gpus = opts.get("gpus")
    if gpus is None:
        gpus = ranks if device == "cuda" else 0
    if device == "cuda" and ranks > int(gpus):
        raise ValueError(
            f"--ranks-per-run {ranks} needs a GPU per rank but --slurm-gpus is {gpus}; "
            f"drop --slurm-gpus or give at least {ranks}"
        )
    root = str(Path(__file__).resolve().parents[1])
    params = dict(
        name=opts.get("name", "bench-sweep"),
        timeout_min=int(opts.get("time_min", 60)),
        nodes=1,
        tasks_per_node=ranks,
        cpus_per_task=cpus,
    )
    if int(gpus) > 0:  # some clusters refuse an explicit --gpus-per-node=0
        params["gpus_per_node"] = int(gpus)
    ex = submitit.AutoExecutor(folder=out / "slurm", cluster=cluster)
    setup = [f"export PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if cluster == "slurm":
        params["slurm_setup"] = setup
        params["slurm_additional_parameters"] = dict(opts.get("additional") or {})
        if opts.get("partition"):
            params["slurm_partition"] = opts["partition"]
        limit = opts.get("parallelism") or (jobs if jobs > 1 else None)
        if limit:
            params["slurm_array_parallelism"] = int(limit)
    else:
        params["local_setup"] = setup
    ex.update_parameters(**params)
    fns = [SweepJob(g, str(out), [str(p) for p in plugins], threads, force, ranks) for g in groups]
    submitted = ex.submit_array(fns)
    ids = [j.job_id for j in submitted]
    print(
        f"submitted {len(todo)} run(s) as {len(submitted)} {cluster} job(s) "
        f"({ids[0]}{' … ' + ids[-1] if len(ids) > 1 else ''}); logs in {out / 'slurm'}",
        file=sys.stderr,
    )
    if not wait:
        return len(todo)
    failed = []
    labels = {run_id(s.to_dict()): label for label, s in todo}
    poll = 1.0 if cluster == "local" else 30.0
    for job in submitit.helpers.as_completed(submitted, poll_frequency=poll):
        try:
            briefs = job.results()[0]  # task 0 is rank 0 when the job's tasks are DDP ranks
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            failed.append(f"job {job.job_id} ({job.paths.stderr}): {first}")
            continue
        for brief in briefs:
            _report(labels.get(brief["run_id"], brief["run_id"]), brief, quiet)
    # counted from the files: a requeued job reports only what it ran after its restart
    ran = sum(run_file(out, rid).exists() for rid in labels)
    if failed:
        raise WorkerDied(
            f"{len(failed)} of {len(submitted)} job(s) failed, first: {failed[0]}; finished "
            "runs are kept, rerun the same command to resume"
        )
    return ran
