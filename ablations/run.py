"""Train variants against the baseline on the same data, budget and seeds; write the comparison.

    python ablations/run.py --variant rope                  # baseline vs rope, the task's recipe
    python ablations/run.py --variant all --seeds 3         # every named variant
    python ablations/run.py --list                          # variants, tasks, recipes, sizes
    python ablations/run.py --variant rope --ci-width 0.01  # add seeds until every CI is narrow
    python ablations/run.py --variant rope --ladder         # + baseline at 0.5x and 2x budget
    python ablations/run.py --variant all --executor slurm --slurm-partition gpu   # a cluster
    torchrun --nproc_per_node 4 ablations/run.py --variant rope   # each run on 4 ranks (DDP)

CLI (over the task's default recipe) -> RunSpecs -> run(spec) -> one record each in
<out>/runs.jsonl (cluster jobs: <out>/runs/<run_id>.json) -> summary table. Rerunning the same
command skips runs whose record exists and was measured on this machine (resume); --force
reruns them. Without --out, results go to results/local/ (not committed); the committed
reference results live in results/reference/.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

# runnable as a script from anywhere: make the repository root importable
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import distributed  # noqa: E402
from bench.executor import EXECUTORS, WorkerDied, cpu_cores, execute  # noqa: E402
from bench.records import RUNS_FILE, load_records, run_id  # noqa: E402
from bench.spec import Budget, Recipe, RunSpec, TrainConfig  # noqa: E402
from bench.tasks import DEFAULT_TASK  # noqa: E402
from variants.config import PRESETS, ModelConfig  # noqa: E402
from variants.registry import VARIANTS, get_variant  # noqa: E402

LOCAL_RESULTS = ROOT / "results" / "local"  # where runs write by default (git-ignored)
DEFAULT_MAX_SEEDS = 10
STUDY_SEEDS = 3  # --study without --seeds
DEFAULT_LADDER = (0.5, 2.0)


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
    p.add_argument(
        "--task", default=DEFAULT_TASK, help=f"task name (see --list); default {DEFAULT_TASK}"
    )
    p.add_argument("--data", default=None, help="data file for the text/shakespeare tasks")
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, e.g. n_digits=4 (repeatable)",
    )
    r = p.add_argument_group("recipe: each task has a default one (--list); these override it")
    b = r.add_mutually_exclusive_group()
    b.add_argument("--steps", type=int, help="budget in optimizer steps")
    b.add_argument("--tokens", type=float, help="budget in training tokens")
    b.add_argument("--time", type=float, metavar="SECONDS", help="budget in training seconds")
    r.add_argument("--seeds", type=int, default=None, help="seeds per variant")
    r.add_argument("--model", default=None, help=f"size preset: {', '.join(PRESETS)}")
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--lr", type=float, default=None)
    r.add_argument("--eval-every", type=int, default=None, help="steps between validation points")
    r.add_argument("--dropout", type=float, default=0.0)
    r.add_argument(
        "--optimizer",
        action="append",
        default=[],
        metavar="NAME",
        help="adamw (default) or muon: Muon for the blocks' 2-D matrices, AdamW for embeddings, "
        "norms and biases, one --lr and schedule for both. Repeat it to compare optimizers: "
        "'--optimizer adamw --optimizer muon' trains every variant with each; the table names "
        "the Muon arms 'NAME · muon' and reads them against the AdamW baseline",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--probe",
        action="append",
        default=[],
        metavar="NAME",
        help="extra measurement in every run's record (repeatable): 'lengths' = val loss at 1, "
        "2, 4 and 8x the trained context (a length-generalisation table in the summary); "
        "'grad_norms' = per-block gradient norms",
    )
    s = p.add_argument_group("precision and compute multipliers")
    s.add_argument(
        "--ci-width",
        type=float,
        default=None,
        metavar="W",
        help="add seeds until the 95%% CI of every Δ val loss is narrower than W (nats), "
        "or --max-seeds is reached",
    )
    s.add_argument(
        "--max-seeds",
        type=int,
        default=DEFAULT_MAX_SEEDS,
        help=f"cap for --ci-width (default {DEFAULT_MAX_SEEDS})",
    )
    s.add_argument(
        "--ladder",
        nargs="?",
        const=",".join(f"{f:g}" for f in DEFAULT_LADDER),
        default=None,
        metavar="FACTORS",
        help="also train the baseline with its own schedule at these multiples of the budget "
        f"(default {','.join(f'{f:g}' for f in DEFAULT_LADDER)}) and read each variant as "
        "'the baseline would need k x the steps'",
    )
    t = p.add_argument_group("tuned comparisons: every arm at its own best (bench/tune.py)")
    t.add_argument(
        "--tune",
        default=None,
        metavar="KEYS",
        help="tune these training settings per arm before comparing: lr, or lr,weight_decay "
        "(a log grid around the default, on tuning seeds 1000+ that no verdict uses)",
    )
    t.add_argument(
        "--tune-grid",
        default="0.25,0.5,1,2,4",
        metavar="FACTORS",
        help="the grid as factors of the default (default 0.25,0.5,1,2,4; 1 always included); "
        "a best value at an edge adds one point past it, once",
    )
    t.add_argument(
        "--tune-frac", type=float, default=0.25, help="budget of a tuning run (default 0.25)"
    )
    t.add_argument("--tune-seeds", type=int, default=1, help="tuning seeds per value (default 1)")
    p.add_argument("--out", default=None, help="output directory (default results/local/...)")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="a Python file that registers your own blocks/variants (repeatable)",
    )
    p.add_argument("--study", default=None, help="run a ready-made study (see --list)")
    p.add_argument(
        "--sizes",
        default=None,
        metavar="LxD,...",
        help="--study scaling: the model ladder as n_layer x n_embd, e.g. 1x64,2x64,3x96,4x128 "
        "(default: the device's ladder)",
    )
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
        help="runs at once: local worker processes (each cores/N threads; default on CPU: one "
        "one-thread worker per core, else 1), or the SLURM array's parallelism (default: no "
        "limit)",
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
    """Import a plugin file; any error in it is one line naming the file, line and error."""
    if not os.path.isfile(path):
        raise ValueError(f"plugin file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ValueError(f"plugin {path}, line {err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:  # whatever the user's code raises at import
        tb = traceback.extract_tb(err.__traceback__)
        lines = [f for f in tb if Path(f.filename).resolve() == Path(path).resolve()]
        where = f", line {lines[-1].lineno}" if lines else ""
        raise ValueError(
            f"plugin {path}{where} raised {type(err).__name__} at import: {err}"
        ) from None


def check_output(out: Path) -> None:
    """Before anything trains: the output folder can be made and its runs.jsonl appended to,
    so no finished run is lost to an unwritable output. One line if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if (out / RUNS_FILE).exists():
            with open(out / RUNS_FILE, "a", encoding="utf-8"):
                pass
        else:  # a probe, so that a cluster sweep's folder gets no empty runs.jsonl
            with tempfile.TemporaryFile(dir=out):
                pass
    except FileExistsError:
        raise ValueError(f"--out {out} is a file, not a folder; name a folder") from None
    except NotADirectoryError:
        raise ValueError(f"--out {out}: a part of that path is a file, not a folder") from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(
            f"--out {out} cannot be written ({reason}); name a folder you can write to"
        ) from None


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
    lines.append("tasks (and the default recipe of each; flags override any part):")
    for name, (cls, desc) in TASKS.items():
        lines.append(f"  {name:<{width}}  {desc}")
        note = f" ({cls.recipe.note})" if cls.recipe.note else ""
        lines.append(f"  {'':<{width}}    recipe: {cls.recipe.describe()}{note}")
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


@dataclass(frozen=True)
class Plan:
    """What a command asks for, resolved over the task's recipe: the variants' model configs,
    the task, budget, training config and device. `specs(n)` gives the runs for seeds 0..n-1,
    so --ci-width can ask for more seeds of the same comparison."""

    variants: tuple[tuple[str, ModelConfig], ...]
    task_spec: dict
    budget: Budget
    train: TrainConfig
    device: str
    recipe: Recipe
    eval_every_given: bool  # --eval-every was set: ladder budgets keep it
    seeds: int  # the number to start with (--seeds, else the recipe's)
    # one arm per optimizer, the reference (AdamW when it is among them) first; `train` is
    # the reference's training config
    optimizers: tuple[str, ...] = ("adamw",)

    def trains(self) -> list[TrainConfig]:
        """The training config of each optimizer arm, the reference's first."""
        return [replace(self.train, optimizer=name) for name in self.optimizers]

    def specs(self, seeds: int) -> list[RunSpec]:
        return [
            RunSpec(name, cfg, self.task_spec, self.budget, train, seed, self.device)
            for train in self.trains()
            for name, cfg in self.variants
            for seed in range(seeds)
        ]

    def scaled(self, train: TrainConfig, factor: float, tokens_per_step: int):
        """(budget, train) for `factor` x the budget with its own full schedule: the validation
        points spaced for that budget unless --eval-every was given."""
        budget = Budget(self.budget.mode, self.budget.value * factor)
        if budget.mode == "steps":
            budget = Budget("steps", max(1, round(budget.value)))
        if not self.eval_every_given and budget.mode != "seconds":
            steps = budget.value if budget.mode == "steps" else budget.value / tokens_per_step
            train = replace(train, eval_every=self.recipe.eval_every(math.ceil(steps)))
        return budget, train

    def ladder_specs(self, factors: tuple[float, ...], seeds: int, tokens_per_step: int):
        """The baseline at each factor x the budget, each with its own full schedule."""
        name, cfg = self.variants[0]
        out = []
        for f in factors:
            budget, train = self.scaled(self.train, f, tokens_per_step)
            out += [
                RunSpec(name, cfg, self.task_spec, budget, train, seed, self.device)
                for seed in range(seeds)
            ]
        return out


def build_plan(args) -> tuple[Plan, object]:
    """The comparison this command asks for, and the task its runs share (built once, here)."""
    from bench.tasks import build_task, task_recipe
    from bench.train import resolve_device

    recipe = task_recipe(args.task)  # one-line error for an unknown task
    seeds = recipe.seeds if args.seeds is None else args.seeds
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    device = resolve_device(args.device).type
    if args.steps is not None:
        budget = Budget("steps", args.steps)
    elif args.tokens is not None:
        budget = Budget("tokens", args.tokens)
    elif args.time is not None:
        budget = Budget("seconds", args.time)
    else:
        budget = Budget("steps", recipe.steps)
    budget.validate()
    base = recipe.model_config(args.model, dropout=args.dropout)
    batch_size = recipe.batch_size if args.batch_size is None else args.batch_size
    if args.eval_every is not None:
        eval_every = args.eval_every
    elif budget.mode == "steps":
        eval_every = recipe.eval_every(int(budget.value))
    elif budget.mode == "tokens":  # rows are at most the context long: an upper bound on steps
        eval_every = recipe.eval_every(math.ceil(budget.value / (batch_size * base.block_size)))
    else:
        eval_every = recipe.eval_every(recipe.steps)
    optimizers = resolve_optimizers(args.optimizer)
    train = TrainConfig(
        optimizer=optimizers[0],
        batch_size=batch_size,
        lr=recipe.lr if args.lr is None else args.lr,
        min_lr_frac=recipe.min_lr_frac,
        warmup_frac=recipe.warmup_frac,
        eval_every=eval_every,
        eval_batches=recipe.eval_batches,
        eval_batch_size=recipe.eval_batch_size,
        compile=args.compile,
        probes=tuple(dict.fromkeys(args.probe)),
    ).validate()
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
    budget.validate(tokens_per_step=train.batch_size * task.seq_len)  # before anything is written
    if "lengths" in train.probes and not task.has_spans:
        task.held_out_spans(1, 1)  # raises the task's one-line reason
    task_spec = {"name": args.task, "data": _data_identity(args.data), **options}
    variants = tuple(
        # e.g. triton on CPU fails here, one line
        (name, get_variant(name).apply(base).validate())
        for name in resolve_variants(args.variant, base)
    )
    given_eval = args.eval_every is not None
    plan = Plan(variants, task_spec, budget, train, device, recipe, given_eval, seeds, optimizers)
    return plan, task


def resolve_optimizers(requested: list[str]) -> tuple[str, ...]:
    """--optimizer's arms, each checked (one line for an unknown name or a torch without
    Muon), the reference first: AdamW when it is among them, which is also the arm the tables
    leave unlabelled and read the others against."""
    from bench.optim import OPTIMIZERS, check_available

    names = list(dict.fromkeys(requested or [OPTIMIZERS[0]]))
    for name in names:
        check_available(name)
    return tuple(sorted(names, key=lambda n: n != OPTIMIZERS[0]))


def parse_ladder(text: str | None) -> tuple[float, ...]:
    """--ladder's factors, e.g. "0.5,2" -> (0.5, 1.0, 2.0): the main budget is always a rung."""
    if text is None:
        return ()
    try:
        factors = {float(f) for f in text.split(",") if f.strip()}
    except ValueError:
        raise ValueError(
            f"--ladder {text!r} is not a list of budget factors (e.g. 0.5,2)"
        ) from None
    if not factors or not all(math.isfinite(f) and f > 0 for f in factors):
        raise ValueError(f"--ladder factors must be positive numbers (e.g. 0.5,2), got {text!r}")
    factors.add(1.0)
    if len(factors) < 3:
        raise ValueError(
            f"--ladder needs at least two budgets besides the main one (e.g. 0.5,2), got {text!r}"
        )
    return tuple(sorted(factors))


def check_precision_args(args) -> None:
    if args.ci_width is not None and not (math.isfinite(args.ci_width) and args.ci_width > 0):
        raise ValueError(
            f"--ci-width must be a positive width in nats (e.g. 0.01), got {args.ci_width}"
        )
    if args.ci_width is not None and not args.variant:
        raise ValueError("--ci-width compares variants with the baseline: add --variant NAME")
    if args.max_seeds < 2:
        raise ValueError(f"--max-seeds must be at least 2, got {args.max_seeds}")
    if args.ci_width is not None and args.seeds is not None and args.seeds > args.max_seeds:
        raise ValueError(
            f"--seeds {args.seeds} is more than --max-seeds {args.max_seeds}; raise --max-seeds"
        )
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive finite number, got {args.lr}")


def _data_identity(path: str | None) -> str | None:
    """A data file enters the run id by its absolute path, so moving it is a new run."""
    return None if path is None else str(Path(path).resolve())


def _size_label(cfg: ModelConfig) -> str:
    """The preset's name when the model is one, else its sizes (e.g. L2-H4-d64-ctx32)."""
    for name, sizes in PRESETS.items():
        if all(getattr(cfg, k) == v for k, v in sizes.items()):
            return name
    return f"L{cfg.n_layer}-H{cfg.n_head}-d{cfg.n_embd}-ctx{cfg.block_size}"


def default_out(args, plan: Plan) -> Path:
    b = plan.budget
    size = _size_label(plan.variants[0][1])
    name = f"{args.task}_{size}_{b.describe().replace(' ', '')}_{plan.device}"
    return LOCAL_RESULTS / "ablations" / name


def run_study(args) -> int:
    from ablations.studies import StudyContext, get_study
    from bench.train import resolve_device

    study = get_study(args.study)
    if not args.scale > 0:
        raise ValueError(f"--scale must be positive, got {args.scale}")
    out = Path(args.out) if args.out else LOCAL_RESULTS / "studies" / args.study
    ctx = StudyContext(
        out=out,
        device=resolve_device(args.device).type,
        seeds=STUDY_SEEDS if args.seeds is None else args.seeds,
        scale=args.scale,
        force=args.force,
        quiet=args.quiet,
        variants=tuple(args.variant),
        sizes=args.sizes,
        jobs=default_jobs(args, resolve_device(args.device).type, 1),
    )
    study.check(ctx)
    check_output(out)
    section = study.run(ctx)
    (out / "report.md").write_text(section)
    print(section)
    print(f"study {args.study}: report in {out / 'report.md'}", file=sys.stderr)
    return 0


def default_jobs(args, device: str, world: int) -> int:
    """--jobs when not given: on a CPU, one one-thread worker process per core (two such
    processes beat one two-thread process on a 2-core machine); one run at a time elsewhere."""
    if args.jobs is not None:
        return args.jobs
    if device == "cpu" and args.executor == "local" and world == 1:
        return cpu_cores()
    return 1


def write_command(out: Path, argv, world: int, specs: list[RunSpec], seeds: int) -> None:
    """The command and every resolved spec beside the results (rewritten when seeds grow)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.json").write_text(
        json.dumps(
            {
                "argv": sys.argv[1:] if argv is None else argv,
                "world_size": world,
                "seeds": seeds,
                "specs": [s.to_dict() for s in specs],
            },
            indent=1,
        )
    )


def run_specs(args, specs: list[RunSpec], out: Path, task, jobs: int, force: bool):
    """Train what of `specs` is not finished, where the command's executor options say;
    returns (runs trained or submitted, runs skipped)."""
    return execute(
        specs,
        out,
        force=force,
        quiet=args.quiet,
        task=task,
        jobs=jobs,
        executor=args.executor,
        plugins=[str(Path(p).resolve()) for p in args.plugin],
        slurm=slurm_options(args),
        wait=not args.no_wait,
    )


def sweep(args, plan: Plan, task, out: Path, world: int, argv) -> tuple[int, int, list[str]]:
    """Train the plan's runs (and the ladder's); with --ci-width, add seeds until the 95% CI
    of every Δ val loss is narrower than the target or --max-seeds is reached. Whether to add
    seeds is decided from the CI widths alone, never from the sign or size of a difference.
    Returns (runs trained, runs skipped as finished earlier, notes for the table)."""
    from bench.tables import ci_widths

    seeds = plan.seeds
    if args.ci_width is not None:
        seeds = max(seeds, 2)  # a CI needs two seeds
    factors = [f for f in parse_ladder(args.ladder) if f != 1.0]
    tokens_per_step = plan.train.batch_size * task.seq_len
    rank0 = not distributed.is_active() or distributed.is_main()
    jobs = default_jobs(args, plan.device, world)
    ran_total, skipped_first, notes = 0, None, []
    while True:
        specs = plan.specs(seeds)
        specs += plan.ladder_specs(tuple(factors), seeds, tokens_per_step) if factors else []
        if rank0:
            write_command(out, argv, world, specs, seeds)
        first = skipped_first is None
        # --force retrains once, not every round of seeds
        ran, skipped = run_specs(args, specs, out, task, jobs, force=args.force and first)
        ran_total += ran
        skipped_first = skipped if first else skipped_first
        if args.ci_width is None or args.no_wait:
            return ran_total, skipped_first, notes
        ids = {run_id(s.to_dict()) for s in plan.specs(seeds)}
        records = [r for r in load_records(out) if r.run_id in ids]
        widths = ci_widths(records)  # variant -> (CI width, sd of the paired differences)
        worst = max((w for w, _ in widths.values()), default=math.inf)
        if worst <= args.ci_width or seeds >= args.max_seeds:
            reached = "reached" if worst <= args.ci_width else "not reached"
            notes.append(
                f"Seeds were added until the 95% CI of every Δ val loss was narrower than "
                f"{args.ci_width:g} (--ci-width) or --max-seeds {args.max_seeds} was hit; the "
                f"rule looks at CI widths only, never at the sign or size of a difference. "
                f"Target {reached} at {seeds} seeds (widest CI {worst:.4g})."
            )
            return ran_total, skipped_first, notes
        seeds = min(args.max_seeds, max(seeds + 1, seeds_for_width(widths, args.ci_width)))
        if rank0 and not args.quiet:
            print(
                f"widest 95% CI of Δ val loss is {worst:.4g} > {args.ci_width:g}: "
                f"going to {seeds} seeds",
                file=sys.stderr,
            )


def seeds_for_width(widths: dict, target: float) -> int:
    """Seeds whose 95% t interval would be `target` wide at each variant's observed spread."""
    from scipy import stats as st

    need = 2
    for _, sd in widths.values():
        if not math.isfinite(sd):
            continue
        n = 2
        while n < 10_000 and 2 * st.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > target:
            n += 1
        need = max(need, n)
    return need


def tune_config(args, plan: Plan):
    """--tune's settings, checked at the edge (one line each), or None without --tune."""
    from bench.tune import TuneConfig, check, parse_grid, parse_keys

    if args.tune is None:
        return None
    cfg = TuneConfig(parse_keys(args.tune), parse_grid(args.tune_grid), args.tune_frac,
                     args.tune_seeds)  # fmt: skip
    if len(plan.variants) * len(plan.optimizers) < 2:
        raise ValueError(
            "--tune compares arms, each at its own best: add --variant NAME or a second --optimizer"
        )
    for flag, value in (("--ci-width", args.ci_width), ("--ladder", args.ladder)):
        if value is not None:
            raise ValueError(f"--tune does not combine with {flag} yet; run them separately")
    return check(cfg, plan.seeds)


def tune_command(args, cfg, plan: Plan, task, out: Path, world: int, argv) -> int:
    """--tune: the tuning stages, then the comparison at each arm's best and at the default."""
    from ablations.tune import NotYet, Tuner, write_results

    jobs = default_jobs(args, plan.device, world)
    counts = [0, 0]

    def train(specs):
        ran, skipped = run_specs(args, specs, out, task, jobs, force=args.force)
        counts[0], counts[1] = counts[0] + ran, counts[1] + skipped
        return ran

    tokens_per_step = plan.train.batch_size * task.seq_len
    tuner = Tuner(cfg, plan, tokens_per_step, out, train, wait=not args.no_wait)
    write_command(out, argv, world, plan.specs(plan.seeds), plan.seeds)
    try:
        outcome = tuner.run()
    except NotYet as err:
        print(f"{err}; rerun this command when they are done", file=sys.stderr)
        return 0
    print(write_results(outcome, cfg, plan, out))
    print(
        f"{counts[0]} run(s) trained, {counts[1]} skipped (finished earlier); records in "
        f"{out}, tables in {out / 'tune.md'}",
        file=sys.stderr,
    )
    return 0


def main(argv=None) -> int:
    """The command, then its wall time (every sweep, tune and study says how long it took)."""
    start = time.perf_counter()
    code = _main(argv)
    if code == 0 and os.environ.get("RANK", "0") == "0":
        print(f"wall time: {format_seconds(time.perf_counter() - start)}", file=sys.stderr)
    return code


def format_seconds(seconds: float) -> str:
    """E.g. '42 s', '3 min 05 s', '1 h 02 min'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _main(argv=None) -> int:
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
        check_precision_args(args)
        plan, task = build_plan(args)  # the same on every rank: a pure function of argv
        tune_cfg = tune_config(args, plan)
        out = Path(args.out) if args.out else default_out(args, plan)
        if rank0:
            check_output(out)
        distributed.setup(plan.device)
        if tune_cfg is not None:
            return tune_command(args, tune_cfg, plan, task, out, world, argv)
        ran, skipped, notes = sweep(args, plan, task, out, world, argv)
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

    write_summary(load_records(out), out, notes=notes)  # every worker's records
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
