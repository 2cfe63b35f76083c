"""Where runs happen: one settings object, from the `[executor]` section of a sweep file (or
its flags) through a study's context to `bench.exec.executor.execute`, unchanged on the way.

    ExecutorConfig()                                        # local processes (the default)
    ExecutorConfig("slurm", jobs=8, slurm=SlurmConfig(partition="gpu", time_min=30))

A new cluster setting is one field here: the config file, `--executor.KEY=VALUE` /
`--executor.slurm.KEY=VALUE` and config.toml take it from the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXECUTORS = ("local", "slurm", "submitit-local")


@dataclass
class SlurmConfig:
    partition: str | None = None
    time_min: int = 60  # minutes per job
    cpus: int = 4  # CPUs per job (= torch threads)
    gpus: int | None = None  # GPUs per job; None: one per rank on cuda, else 0
    options: dict = field(default_factory=dict)  # extra #SBATCH keys, e.g. account, qos


@dataclass
class ExecutorConfig:
    kind: str = "local"  # one of EXECUTORS
    jobs: int | None = None  # runs at once (local workers, or the array's parallelism)
    runs_per_job: int = 1  # runs per SLURM job
    ranks_per_run: int = 1  # DDP ranks (tasks of one job) that train each run together
    wait: bool = True  # False: submit the cluster jobs and return
    # checkpoints inside each run (bench.core.resume): "auto" (every 10 minutes), "off", N
    # steps or a time (90s, 10m, 2h); kept after the record is written only when asked
    checkpoint_every: str = "auto"
    keep_checkpoints: bool = False
    # experiment trackers each run is logged to once its record is written (--log;
    # bench.exec.trackers.TRACKERS: tensorboard, wandb); the records stay the source of truth
    log: list[str] = field(default_factory=list)

    def checkpointing(self):
        from bench.core.resume import Checkpointing

        policy = Checkpointing(str(self.checkpoint_every), self.keep_checkpoints)
        policy.interval()  # a value it cannot read: one line, before any run
        return policy

    slurm: SlurmConfig = field(default_factory=SlurmConfig)


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
