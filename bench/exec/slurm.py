"""A SLURM job array through submitit (`executor="slurm"`), or the same path on this machine
with submitit's LocalExecutor (`"submitit-local"`, to try it on a workstation).

``runs_per_job`` runs per array task. Jobs write one file per run, ``<out>/runs/<run_id>.json``
(temp file + rename: no lock needed on NFS, nothing half-written); submitit's files and each
job's logs go to ``<out>/slurm/``. A job claims each run while it trains it (bench.core.claims,
naming its job id), so a rerun of the command sees which runs live jobs hold. A preempted or
timed-out job saves a checkpoint of the run it was in at the next step boundary and requeues
itself with the runs it had not finished (bench.exec.preemption); the requeued job resumes that
run from the checkpoint.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from bench.core import claims, resume
from bench.core.records import finished_ids, run_file, run_id, write_run_record
from bench.core.spec import RunSpec
from bench.exec import distributed, preemption
from bench.exec.local import WorkerDied, brief, cpu_cores, this_machine
from bench.exec.outcome import Tally, keep, report, train_or_fail
from bench.exec.placement import ExecutorConfig
from bench.exec.plugins import load_plugins


class SweepJob:
    """One array task: trains its specs in turn, each record to <out>/runs/<run_id>.json.

    Checkpointable the submitit way (it has `checkpoint`): when SLURM preempts the job or its
    time runs out, submitit calls `checkpoint` and requeues what it returns, a job with the
    runs this one had not finished; the run in progress resumes from its latest checkpoint
    (bench.core.resume), or from step 0 where checkpoints are off or none was written yet."""

    def __init__(
        self,
        specs,
        out: str,
        plugins=(),
        threads: int | None = None,
        force=False,
        ranks=1,
        policy=None,
        trackers=None,
    ):
        self.specs = list(specs)
        self.out = str(out)
        self.plugins = tuple(plugins)
        self.threads = threads
        self.force = force
        self.ranks = int(ranks)  # > 1: the job's tasks are DDP ranks that train each run together
        self.completed: list[str] = []
        self.policy = policy  # checkpoints inside each run (bench.core.resume)
        self.trackers = trackers  # --log (bench.exec.trackers), rank 0 after each record

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
        signal = preemption.defer()  # the preemption signal, served at a step boundary
        try:
            return self._train_all(Path(self.out), signal)
        finally:
            distributed.teardown()

    def _train_all(self, out: Path, signal: preemption.Deferred | None) -> list[dict]:
        briefs, main = [], distributed.is_main()
        job = signal.job_id if signal is not None else None
        for spec in self.specs:
            if signal is not None and resume.stop_requested():
                signal.hand_over()  # the signal came between runs: requeue before the next
            rid = run_id(spec.to_dict())
            skip = rid in self.completed or (not self.force and self._finished(out, rid, spec))
            if not skip and main:
                if not claims.claim(out, rid, job):
                    skip = True  # another live job trains it (a twin sweep's array)
                elif not self.force and self._finished(out, rid, spec):
                    claims.release(out, rid)  # it finished while we looked: nothing to do
                    skip = True
            if distributed.broadcast_object(skip):  # rank 0 decides for all ranks
                continue
            try:
                record = train_or_fail(spec, out, self.policy)  # raises: recorded as failed
            except resume.Preempted:
                if signal is None:  # a stop no signal of ours asked for
                    raise
                if main:
                    claims.release(out, rid)  # checkpointed, not running, until the requeue
                signal.hand_over()  # does not return
            if main:
                keep(out, record, self.policy, write_run_record, self.trackers)
                claims.release(out, rid)
                briefs.append(brief(record))
            self.completed.append(rid)
        return briefs

    @staticmethod
    def _finished(out: Path, rid: str, spec: RunSpec) -> bool:
        return rid in finished_ids(run_file(out, rid), this_machine(spec.device, "slurm"))

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        remaining = [s for s in self.specs if run_id(s.to_dict()) not in self.completed]
        args = (self.out, self.plugins, self.threads, self.force, self.ranks, self.policy)
        return DelayedSubmission(SweepJob(remaining, *args, trackers=self.trackers))


def run_submitit(todo, out: Path, quiet: bool, where: ExecutorConfig, plugins, jobs: int,
                 force: bool, trackers=None) -> Tally:  # fmt: skip
    """Submit `todo` ((label, spec) pairs) as a job array; with `where.wait`, wait for it
    (its Tally counts the runs trained), else its Tally counts the runs submitted."""
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--executor {where.kind} needs submitit: pip install submitit") from None
    cluster = "slurm" if where.kind == "slurm" else "local"
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ValueError(
            "--executor slurm: no sbatch here; submit from a SLURM login node (or try the "
            "path on this machine with --executor submitit-local)"
        )
    k, ranks = where.runs_per_job, where.ranks_per_run
    if k < 1:
        raise ValueError(f"--runs-per-job must be at least 1, got {k}")
    if ranks < 1:
        raise ValueError(f"--ranks-per-run must be at least 1, got {ranks}")
    groups = [[s for _, s in todo[i : i + k]] for i in range(0, len(todo), k)]
    params, threads = _job_parameters(where, cluster, todo[0][1].device, len(groups), jobs)
    ex = submitit.AutoExecutor(folder=out / "slurm", cluster=cluster)
    ex.update_parameters(**params)
    policy = where.checkpointing()
    fns = [
        SweepJob(g, str(out), [str(p) for p in plugins], threads, force, ranks, policy, trackers)
        for g in groups
    ]
    submitted = ex.submit_array(fns)
    ids = [j.job_id for j in submitted]
    print(
        f"submitted {len(todo)} run(s) as {len(submitted)} {cluster} job(s) "
        f"({ids[0]}{' … ' + ids[-1] if len(ids) > 1 else ''}); logs in {out / 'slurm'}",
        file=sys.stderr,
    )
    if not where.wait:
        return Tally(ran=len(todo))
    return _wait(submitit, submitted, todo, out, quiet, poll=1.0 if cluster == "local" else 30.0)


def _job_parameters(where: ExecutorConfig, cluster: str, device: str, n_jobs: int, jobs: int):
    """(submitit's parameters for every job of the array, torch threads per job)."""
    s, ranks = where.slurm, where.ranks_per_run
    if cluster == "slurm":
        cpus = int(s.cpus or 4)
    else:  # submitit's LocalExecutor starts every job at once: they share this machine's cores
        cpus = max(1, cpu_cores() // (n_jobs * ranks))
    gpus = (ranks if device == "cuda" else 0) if s.gpus is None else s.gpus
    if device == "cuda" and ranks > int(gpus):
        raise ValueError(
            f"--ranks-per-run {ranks} needs a GPU per rank but --slurm-gpus is {gpus}; "
            f"drop --slurm-gpus or give at least {ranks}"
        )
    root = str(Path(__file__).resolve().parents[2])
    params = dict(name="bench-sweep", timeout_min=int(s.time_min), nodes=1,
                  tasks_per_node=ranks, cpus_per_task=cpus)  # fmt: skip
    if int(gpus) > 0:  # some clusters refuse an explicit --gpus-per-node=0
        params["gpus_per_node"] = int(gpus)
    setup = [f"export PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if cluster == "slurm":
        params["slurm_setup"] = setup
        params["slurm_additional_parameters"] = dict(s.options)
        if s.partition:
            params["slurm_partition"] = s.partition
        limit = where.jobs or (jobs if jobs > 1 else None)  # most array tasks at once
        if limit:
            params["slurm_array_parallelism"] = int(limit)
    else:
        params["local_setup"] = setup
    return params, cpus


def _wait(submitit, submitted, todo, out: Path, quiet: bool, poll: float) -> Tally:
    """Wait for the jobs, print each run's line; the runs trained, counted from the files."""
    failed, outcome = [], Tally()
    labels = {run_id(s.to_dict()): label for label, s in todo}
    for job in submitit.helpers.as_completed(submitted, poll_frequency=poll):
        try:
            briefs = job.results()[0]  # task 0 is rank 0 when the job's tasks are DDP ranks
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            failed.append(f"job {job.job_id} ({job.paths.stderr}): {first}")
            continue
        for b in briefs:
            report(labels.get(b["run_id"], b["run_id"]), b, quiet)
            if b["status"] == "failed":
                outcome.failed.append(f"{labels.get(b['run_id'], b['run_id'])} ({b['error']})")
    # counted from the files: a requeued job reports only what it ran after its restart
    outcome.ran = sum(run_file(out, rid).exists() for rid in labels)
    if failed:
        raise WorkerDied(
            f"{len(failed)} of {len(submitted)} job(s) failed, first: {failed[0]}; finished "
            "runs are kept, rerun the same command to resume"
        )
    return outcome
