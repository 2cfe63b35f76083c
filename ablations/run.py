"""Train variants against the baseline on the same data, budget and seeds; write the comparison.

    python ablations/run.py --variant rope                  # baseline vs rope, the task's recipe
    python ablations/run.py --variant all --seeds 3         # every named variant
    python ablations/run.py --list                          # variants, tasks, recipes, sizes
    python ablations/run.py --variant rope --ci-width 0.01  # add seeds until every CI is narrow
    python ablations/run.py --variant rope --ladder         # + baseline at 0.5x, 2x, 4x budget
    python ablations/run.py --variant rope --train.lr=3e-3 --model.n_layer=6   # any config key
    python ablations/run.py --variant all --executor slurm --slurm-partition gpu   # a cluster
    torchrun --nproc_per_node 4 ablations/run.py --variant rope   # each run on 4 ranks (DDP)

parse (ablations/flags.py: every config field is a flag, the short ones are aliases) ->
resolve (one SweepConfig; over the task's recipe, ablations/plan.py) -> dispatch to a command
(ablations/commands/: sweep, list, study, tune). A sweep writes one record per run to
<out>/runs.jsonl (cluster jobs: <out>/runs/<run_id>.json), then the summary table. Rerunning
the same command skips runs whose record exists and was measured on this machine (resume);
--force reruns them. Without --out, results go to results/local/ (not committed); the
committed reference results live in results/reference/.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# runnable as a script from anywhere: make the repository root importable
from ablations.commands import list as list_command
from ablations.commands import study, sweep, tune
from ablations.commands.common import check_output, format_seconds, storage_error
from ablations.config import SweepConfig
from ablations.flags import parse_args, resolve_config
from ablations.plan import build_plan, default_out
from bench.exec import distributed
from bench.exec.distributed import check_batch_split
from bench.exec.executor import WorkerDied, check_fan_out
from bench.exec.plugins import load_plugin

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    """The command, then its wall time (every sweep, tune and study says how long it took)."""
    start = time.perf_counter()
    code = _main(argv)
    if code == 0 and _rank0(distributed.env_world_size(), tell=False):
        print(f"wall time: {format_seconds(time.perf_counter() - start)}", file=sys.stderr)
    return code


def check_torchrun(cfg: SweepConfig, world: int) -> None:
    """Under torchrun every rank runs this same command: each run is trained by all ranks."""
    if cfg.study.name:
        raise ValueError("--study runs in one process; start it without torchrun")
    check_fan_out(cfg.executor.jobs or 1, cfg.executor.kind, under_torchrun=True)
    if cfg.train.batch_size is not None:
        check_batch_split(cfg.train.batch_size, world)


def _rank0(world: int, tell: bool = True) -> bool:
    """Whether this process prints and writes the tables: rank 0 under torchrun, and the only
    process otherwise, whatever a stray RANK in the environment says (`tell`: say so)."""
    rank = os.environ.get("RANK", "0")
    if world == 1 and rank != "0" and tell:
        print(f"note: RANK={rank} without torchrun (WORLD_SIZE unset or 1) is ignored: this is "
              "the only process", file=sys.stderr)  # fmt: skip
    return world == 1 or rank == "0"


def _main(argv=None) -> int:
    args = parse_args(argv)
    world = distributed.env_world_size()  # > 1 under torchrun: every rank runs this
    rank0 = _rank0(world)
    try:
        cfg = resolve_config(args)  # the file, the flags, --set: one config, validated
        for plugin in cfg.plugins:
            load_plugin(plugin)
        return _dispatch(cfg, args.list, world, rank0, argv)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: every finished run is kept; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError) as err:
        if rank0:
            print(f"error: {err}", file=sys.stderr)
        elif distributed.is_active():  # checks before the group is up fail alike on every rank
            print(f"error (rank {distributed.rank()}): {err}", file=sys.stderr)
        return 2
    except WorkerDied as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a file the command writes: disk full, folder read-only
        print(f"error: {storage_error(err)}", file=sys.stderr)
        return 1
    finally:
        distributed.teardown()


def _dispatch(cfg: SweepConfig, listing: bool, world: int, rank0: bool, argv) -> int:
    """The one command this config asks for: --list, a study, a tuned comparison, or a sweep."""
    if listing:
        print(list_command.list_everything())
        return 0
    if world > 1:
        check_torchrun(cfg, world)
    if cfg.study.name:
        return study.run_study(cfg)
    plan, task = build_plan(cfg)  # the same on every rank: a pure function of argv
    if world > 1:
        check_batch_split(plan.train.batch_size, world)
    tuning = tune.tune_config(cfg, plan)
    out = Path(cfg.out) if cfg.out else default_out(plan)
    if rank0:
        check_output(out)
    distributed.setup(plan.device)
    if tuning is not None:
        return tune.tune_command(cfg, tuning, plan, task, out, world, argv)
    outcome, notes = sweep.sweep(cfg, plan, task, out, world, argv)
    distributed.teardown()  # the records are written: rank 0 alone writes the table
    if rank0:
        sweep.report(cfg, out, outcome, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
