"""Train variants against the baseline on the same data, budget and seeds; write the comparison.

    python ablations/run.py --variant rope                  # baseline vs rope, defaults
    python ablations/run.py --variant all --seeds 3         # every named variant
    python ablations/run.py --list                          # variants, tasks and model sizes
    python ablations/run.py --variant all --jobs 2          # two runs at once on this machine
    python ablations/run.py --variant all --executor slurm --slurm-partition gpu   # a cluster
    torchrun --nproc_per_node 4 ablations/run.py --variant rope   # each run on 4 ranks (DDP)

CLI -> RunSpecs -> run(spec) -> one record each in <out>/runs.jsonl (cluster jobs:
<out>/runs/<run_id>.json) -> summary table. Rerunning the same command skips runs whose record
exists (resume); --force reruns them.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
from pathlib import Path

# runnable as a script from anywhere: make the repository root importable
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import distributed  # noqa: E402
from bench.executor import EXECUTORS, WorkerDied, execute  # noqa: E402
from bench.records import load_records  # noqa: E402
from bench.spec import Budget, RunSpec, TrainConfig  # noqa: E402
from variants.config import PRESETS, preset  # noqa: E402
from variants.registry import VARIANTS, get_variant  # noqa: E402

DEFAULT_STEPS = 400


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other bad-input error here
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(
        prog="ablations/run.py",
        description="Train variants against the baseline and compare speed, memory and loss.",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME",
        help="variant to compare with the baseline (repeatable, or 'all')",
    )
    p.add_argument("--task", default="addition", help="task name (see --list); default addition")
    p.add_argument("--data", default=None, help="data file for the text/shakespeare tasks")
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, e.g. n_digits=4 (repeatable)",
    )
    b = p.add_mutually_exclusive_group()
    b.add_argument("--steps", type=int, help=f"budget in optimizer steps (default {DEFAULT_STEPS})")
    b.add_argument("--tokens", type=float, help="budget in training tokens")
    b.add_argument("--time", type=float, metavar="SECONDS", help="budget in training seconds")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--model", default="tiny", help=f"size preset: {', '.join(PRESETS)}")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--out", default=None, help="output directory (default results/ablations/...)")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="a Python file that registers your own blocks/variants (repeatable)",
    )
    p.add_argument("--study", default=None, help="run a ready-made study (see --list)")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply a study's training budgets (e.g. 0.1 for a quick look)",
    )
    p.add_argument("--list", action="store_true", help="list variants, tasks, sizes and studies")
    p.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    x = p.add_argument_group("where the runs happen (one run on several ranks: use torchrun)")
    x.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local processes (default), a SLURM job array, or submitit's local executor",
    )
    x.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs at once: local worker processes (each cores/N threads; default 1), or "
        "the SLURM array's parallelism (default: no limit)",
    )
    x.add_argument("--runs-per-job", type=int, default=1, metavar="K", help="runs per SLURM job")
    x.add_argument(
        "--ranks-per-run",
        type=int,
        default=1,
        metavar="N",
        help="DDP inside each job: N tasks (one GPU each on cuda, gloo on cpu) train every run "
        "together (slurm / submitit-local; on this machine use torchrun)",
    )
    x.add_argument("--slurm-partition", default=None)
    x.add_argument("--slurm-time", type=int, default=60, metavar="MIN", help="minutes per job")
    x.add_argument("--slurm-cpus", type=int, default=4, help="CPUs per job (= torch threads)")
    x.add_argument(
        "--slurm-gpus", type=int, default=None, help="GPUs per job (default: 1 on cuda, else 0)"
    )
    x.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra #SBATCH option, e.g. account=proj, qos=low, mem=16G (repeatable)",
    )
    x.add_argument(
        "--no-wait", action="store_true", help="submit the SLURM jobs and return at once"
    )
    return p.parse_args(argv)


def slurm_options(args) -> dict:
    extra = {}
    for item in args.slurm_option:
        if "=" not in item:
            raise ValueError(f"--slurm-option {item!r} is not KEY=VALUE (e.g. account=myproj)")
        key, value = item.split("=", 1)
        extra[key.strip().lstrip("-")] = value
    return {
        "partition": args.slurm_partition,
        "time_min": args.slurm_time,
        "cpus": args.slurm_cpus,
        "gpus": args.slurm_gpus,
        "runs_per_job": args.runs_per_job,
        "ranks_per_run": args.ranks_per_run,
        "parallelism": args.jobs,  # --jobs on a cluster: most array tasks running at once
        "additional": extra,
    }


def check_torchrun(args, world: int) -> None:
    """Under torchrun every rank runs this same command: each run is trained by all ranks."""
    if args.study:
        raise ValueError("--study runs in one process; start it without torchrun")
    if args.executor != "local" or (args.jobs or 1) > 1:
        raise ValueError(
            "under torchrun every rank trains the same run: --jobs and --executor are for "
            "sweeps of single-process runs"
        )
    if args.batch_size % world:
        raise ValueError(
            f"--batch-size {args.batch_size} is the global batch and must divide by the {world} "
            f"ranks; use a multiple of {world}"
        )


def load_plugin(path: str) -> None:
    if not os.path.isfile(path):
        raise ValueError(f"plugin file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def parse_task_options(items: list[str]) -> dict:
    opts = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--task-option {item!r} is not KEY=VALUE (e.g. n_digits=4)")
        key, value = item.split("=", 1)
        try:
            opts[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            opts[key] = value  # a plain string
    return opts


def list_everything() -> str:
    from bench.tasks import TASKS

    lines = ["variants (each is the baseline plus the change shown):"]
    width = max(len(n) for n in VARIANTS)
    for name, v in VARIANTS.items():
        lines.append(f"  {name:<{width}}  {v.description}  [{v.diff()}]")
    lines.append("tasks:")
    for name, (_, desc) in TASKS.items():
        lines.append(f"  {name:<{width}}  {desc}")
    from ablations.studies import STUDIES

    lines.append("studies (--study NAME):")
    for name, (_, desc) in STUDIES.items():
        lines.append(f"  {name:<{width}}  {desc}")
    lines.append("model sizes:")
    for name, p in PRESETS.items():
        lines.append(f"  {name:<{width}}  " + ", ".join(f"{k}={v}" for k, v in p.items()))
    return "\n".join(lines)


def resolve_variants(requested: list[str], base) -> list[str]:
    """Baseline first, then the requested variants. 'all' means every variant that can run on
    this machine: one that cannot (the Triton kernel without a GPU) is named and left out. A
    variant asked for by name that cannot run is an error."""
    names = ["baseline"]
    for r in requested or []:
        for name in VARIANTS if r == "all" else [r]:
            variant = get_variant(name)  # one-line error for unknown names
            if name in names:
                continue
            if r == "all":
                try:
                    variant.apply(base).validate()
                except ValueError as err:
                    print(f"note: --variant all leaves out {name}: {err}", file=sys.stderr)
                    continue
            names.append(name)
    return names


def build_specs(args) -> tuple[list[RunSpec], object]:
    """The runs this command asks for, and the task they share (built once, validated here)."""
    from bench.tasks import build_task
    from bench.train import resolve_device

    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    device = resolve_device(args.device).type
    if args.steps is not None:
        budget = Budget("steps", args.steps)
    elif args.tokens is not None:
        budget = Budget("tokens", args.tokens)
    elif args.time is not None:
        budget = Budget("seconds", args.time)
    else:
        budget = Budget("steps", DEFAULT_STEPS)
    budget.validate()
    train = TrainConfig(
        batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every, compile=args.compile
    ).validate()
    base = preset(args.model, dropout=args.dropout)
    options = parse_task_options(args.task_option)
    task = build_task(
        args.task,
        context=base.block_size,
        data=args.data,
        eval_batches=train.eval_batches,
        eval_batch_size=train.eval_batch_size,
        **options,
    )
    base = base.replace(vocab_size=task.vocab_size)
    task_spec = {"name": args.task, "data": _data_identity(args.data), **options}
    specs = []
    for name in resolve_variants(args.variant, base):
        cfg = get_variant(name).apply(base).validate()  # e.g. triton on CPU fails here, one line
        for seed in range(args.seeds):
            specs.append(RunSpec(name, cfg, task_spec, budget, train, seed, device))
    return specs, task


def _data_identity(path: str | None) -> str | None:
    """A data file enters the run id by its absolute path, so moving it is a new run."""
    return None if path is None else str(Path(path).resolve())


def default_out(args, specs: list[RunSpec]) -> Path:
    b = specs[0].budget
    name = f"{args.task}_{args.model}_{b.describe().replace(' ', '')}_{specs[0].device}"
    return ROOT / "results" / "ablations" / name


def run_study(args) -> int:
    from ablations.studies import StudyContext, get_study
    from bench.train import resolve_device

    study = get_study(args.study)
    if not args.scale > 0:
        raise ValueError(f"--scale must be positive, got {args.scale}")
    out = Path(args.out) if args.out else ROOT / "results" / "studies" / args.study
    ctx = StudyContext(
        out=out,
        device=resolve_device(args.device).type,
        seeds=args.seeds,
        scale=args.scale,
        force=args.force,
        quiet=args.quiet,
    )
    out.mkdir(parents=True, exist_ok=True)
    section = study.run(ctx)
    (out / "report.md").write_text(section)
    print(section)
    print(f"study {args.study}: report in {out / 'report.md'}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    world = distributed.env_world_size()  # > 1 under torchrun: every rank runs this
    rank0 = os.environ.get("RANK", "0") == "0"
    try:
        for plugin in args.plugin:
            load_plugin(plugin)
        if args.list:
            print(list_everything())
            return 0
        if world > 1:
            check_torchrun(args, world)
        if args.study:
            return run_study(args)
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
        if args.ranks_per_run != 1 and args.executor == "local":
            raise ValueError(
                "--ranks-per-run is for --executor slurm or submitit-local; on this machine "
                "start DDP with torchrun --nproc_per_node N ablations/run.py ..."
            )
        specs, task = build_specs(args)  # the same on every rank: a pure function of argv
        out = Path(args.out) if args.out else default_out(args, specs)
        distributed.setup(specs[0].device)
        if rank0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "command.json").write_text(
                json.dumps(
                    {
                        "argv": sys.argv[1:] if argv is None else argv,
                        "world_size": world,
                        "specs": [s.to_dict() for s in specs],
                    },
                    indent=1,
                )
            )
        ran, skipped = execute(
            specs,
            out,
            force=args.force,
            quiet=args.quiet,
            task=task,
            jobs=args.jobs or 1,
            executor=args.executor,
            plugins=[str(Path(p).resolve()) for p in args.plugin],
            slurm=slurm_options(args),
            wait=not args.no_wait,
        )
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
    finally:
        distributed.teardown()

    if not rank0:
        return 0
    if args.no_wait and args.executor != "local" and ran:
        print(
            f"{ran} run(s) submitted, {skipped} skipped (finished earlier); when the jobs are "
            f"done: python -m bench.report {out}  (or rerun this command for the table)",
            file=sys.stderr,
        )
        return 0
    from bench.tables import write_summary

    write_summary(load_records(out), out)  # runs.jsonl and runs/*.json, from every worker
    print((out / "summary.md").read_text())
    print(
        f"{ran} run(s) trained, {skipped} skipped (finished earlier); records in "
        f"{out / ('runs.jsonl' if args.executor == 'local' else 'runs')}, "
        f"table in {out / 'summary.md'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
