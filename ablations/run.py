"""Train variants against the baseline on the same data, budget and seeds; write the comparison.

    python ablations/run.py --variant rope                  # baseline vs rope, the task's recipe
    python ablations/run.py --variant all --seeds 3         # every named variant
    python ablations/run.py --list                          # variants, tasks, recipes, sizes
    python ablations/run.py --variant rope --ci-width 0.01  # add seeds until every CI is narrow
    python ablations/run.py --variant rope --ladder         # + baseline at 0.5x, 2x, 4x budget
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

from ablations import config  # noqa: E402
from ablations.config import BudgetSection, SweepConfig  # noqa: E402
from bench import distributed  # noqa: E402
from bench.distributed import check_batch_split  # noqa: E402
from bench.executor import EXECUTORS, WorkerDied, check_fan_out, cpu_cores, execute  # noqa: E402
from bench.records import RUNS_FILE, load_records, run_id, write_bytes_atomic  # noqa: E402
from bench.spec import Budget, Recipe, RunSpec, TrainConfig  # noqa: E402
from bench.tasks import DEFAULT_TASK  # noqa: E402
from variants.config import PRESETS, ModelConfig  # noqa: E402
from variants.registry import VARIANTS, get_variant  # noqa: E402

LOCAL_RESULTS = ROOT / "results" / "local"  # where runs write by default (git-ignored)
STUDY_SEEDS = 3  # --study without --seeds
DEFAULT_LADDER = (0.5, 2.0, 4.0)  # with the main budget: 4 rungs, the power law's fit


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other bad-input error here
        self.exit(2, f"error: {message} (see --help)\n")


def _repeatable(group, flag: str, metavar: str, help: str) -> None:
    """A flag that may be given several times; its values arrive as a list ([] if never)."""
    group.add_argument(flag, action="append", default=[], metavar=metavar, help=help)


def parse_args(argv=None) -> argparse.Namespace:
    """The flags as given: every default is None (or empty), so `resolve_config` can tell a
    flag that was given, which overrides the --config file, from one that was not."""
    p = _Parser(
        prog="ablations/run.py",
        description="Train variants against the baseline and compare speed, memory and loss.",
        argument_default=None,
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="a sweep file (see ablations/config.py); flags given as well override it. Every "
        "result folder has the resolved one, config.toml, to rerun it",
    )
    _repeatable(
        p,
        "--set",
        "KEY=VALUE",
        "any config field, e.g. train.beta2=0.95 or executor.slurm.time_min=30 "
        "(repeatable; after the file and the flags)",
    )
    _repeatable(
        p, "--variant", "NAME", "variant to compare with the baseline (repeatable, or 'all')"
    )
    p.add_argument("--task", help=f"task name (see --list); default {DEFAULT_TASK}")
    p.add_argument("--data", help="data file for the text/shakespeare tasks")
    _repeatable(p, "--task-option", "KEY=VALUE", "task option, e.g. n_digits=4 (repeatable)")
    r = p.add_argument_group("recipe: each task has a default one (--list); these override it")
    b = r.add_mutually_exclusive_group()
    b.add_argument("--steps", type=int, help="budget in optimizer steps")
    b.add_argument("--tokens", type=float, help="budget in training tokens")
    b.add_argument("--time", type=float, metavar="SECONDS", help="budget in training seconds")
    r.add_argument("--seeds", type=int, help="seeds per variant")
    r.add_argument("--model", help=f"size preset: {', '.join(PRESETS)}")
    r.add_argument("--batch-size", type=int)
    r.add_argument("--lr", type=float)
    r.add_argument("--warmup-frac", type=float, help="linear warm-up, fraction of the budget")
    r.add_argument("--weight-decay", type=float)
    r.add_argument("--betas", metavar="B1,B2", help="AdamW's betas, e.g. 0.9,0.95")
    r.add_argument("--grad-clip", type=float, help="gradient norm clip")
    r.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    r.add_argument("--eval-every", type=int, help="steps between validation points")
    r.add_argument("--dropout", type=float)
    _repeatable(
        r,
        "--optimizer",
        "NAME",
        "adamw (default) or muon: Muon for the blocks' 2-D matrices, AdamW for embeddings, "
        "norms and biases, one --lr and schedule for both. Repeat it to compare optimizers: "
        "'--optimizer adamw --optimizer muon' trains every variant with each; the table names "
        "the Muon arms 'NAME · muon' and reads them against the AdamW baseline",
    )
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    _repeatable(
        p,
        "--probe",
        "NAME",
        "extra measurement in every run's record (repeatable): 'lengths' = val loss at 1, "
        "2, 4 and 8x the trained context (a length-generalisation table in the summary); "
        "'grad_norms' = per-block gradient norms",
    )
    s = p.add_argument_group("precision and compute multipliers")
    s.add_argument(
        "--ci-width",
        type=float,
        metavar="W",
        help="add seeds until the 95%% CI of every Δ val loss is narrower than W (nats), "
        "or --max-seeds is reached",
    )
    s.add_argument("--max-seeds", type=int, help="cap for --ci-width (default 10)")
    s.add_argument(
        "--ladder",
        nargs="?",
        const=",".join(f"{f:g}" for f in DEFAULT_LADDER),
        metavar="FACTORS",
        help="also train the baseline with its own schedule at these multiples of the budget "
        f"(default {','.join(f'{f:g}' for f in DEFAULT_LADDER)}) and read each variant as "
        "'the baseline would need k x the steps': a power law fitted on 4 or more budgets, "
        "log-linear on fewer; the table checks the ladder by reading its 2x rung, left out of "
        "the fit, back as 2x",
    )
    t = p.add_argument_group("tuned comparisons: every arm at its own best (bench/tune.py)")
    t.add_argument(
        "--tune",
        metavar="KEYS",
        help="tune these training settings per arm before comparing: lr, or lr,weight_decay "
        "(a log grid around the default, on tuning seeds 1000+ that no verdict uses)",
    )
    t.add_argument(
        "--tune-grid",
        metavar="FACTORS",
        help="the grid as factors of the default (default 0.5,0.707,1,1.41,2: steps of √2; 1 "
        "always included); a best value at an edge adds points past it until it is interior",
    )
    t.add_argument(
        "--tune-frac", type=float, help="budget of a tuning run, fraction of the budget (default 1)"
    )
    t.add_argument("--tune-seeds", type=int, help="tuning seeds per value (default 3)")
    p.add_argument("--out", help="output directory (default results/local/...)")
    _repeatable(
        p,
        "--plugin",
        "FILE.py",
        "a Python file that registers your own blocks/variants (repeatable)",
    )
    p.add_argument("--study", help="run a ready-made study (see --list)")
    p.add_argument(
        "--sizes",
        metavar="LxD,...",
        help="--study scaling: the model ladder as n_layer x n_embd, e.g. 1x64,2x64,3x96,4x128 "
        "(default: the preset's)",
    )
    p.add_argument(
        "--preset",
        help="--study scaling: the grid of sizes and token budgets, cpu (about 15 min on two "
        "cores) or h100 (about an hour on one H100); default: h100 on cuda, else cpu; "
        "--dry-run shows it",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="--study scaling: print every run of the plan with its FLOPs and estimated time, "
        "and train nothing",
    )
    p.add_argument(
        "--scale", type=float, help="multiply a study's training budgets (e.g. 0.1 for a look)"
    )
    p.add_argument("--list", action="store_true", help="list variants, tasks, sizes and studies")
    p.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    x = p.add_argument_group("where the runs happen (one run on several ranks: use torchrun)")
    x.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="local processes (default), a SLURM job array, or submitit's local executor",
    )
    x.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="runs at once: local worker processes (each cores/N threads; default on CPU: one "
        "one-thread worker per core, else 1), or the SLURM array's parallelism (default: no "
        "limit)",
    )
    x.add_argument("--runs-per-job", type=int, metavar="K", help="runs per SLURM job")
    x.add_argument(
        "--ranks-per-run",
        type=int,
        metavar="N",
        help="DDP inside each job: N tasks (one GPU each on cuda, gloo on cpu) train every run "
        "together (slurm / submitit-local; on this machine use torchrun)",
    )
    x.add_argument("--slurm-partition")
    x.add_argument("--slurm-time", type=int, metavar="MIN", help="minutes per job (default 60)")
    x.add_argument("--slurm-cpus", type=int, help="CPUs per job (= torch threads; default 4)")
    x.add_argument("--slurm-gpus", type=int, help="GPUs per job (default: 1 on cuda, else 0)")
    _repeatable(
        x,
        "--slurm-option",
        "KEY=VALUE",
        "an extra #SBATCH option, e.g. account=proj, qos=low, mem=16G (repeatable)",
    )
    x.add_argument(
        "--no-wait", action="store_true", help="submit the SLURM jobs and return at once"
    )
    return p.parse_args(argv)


def _key_values(flag: str, items: list[str], example: str, literal: bool) -> dict:
    """KEY=VALUE flags as a dict; a value is a Python literal where it parses as one."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{flag} {item!r} is not KEY=VALUE (e.g. {example})")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("-")
        try:
            out[key] = ast.literal_eval(value) if literal else value
        except (ValueError, SyntaxError):
            out[key] = value  # a plain string
    return out


def _floats(flag: str, text: str, example: str) -> list[float]:
    try:
        return [float(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not a list of numbers (e.g. {example})") from None


# flag (argparse dest) -> where it lands in the SweepConfig (flags override the file)
_FLAG_FIELDS = {
    "task": "task.name", "data": "task.data", "steps": "budget.steps", "tokens": "budget.tokens",
    "time": "budget.seconds", "seeds": "comparison.seeds", "model": "model.size",
    "batch_size": "train.batch_size", "lr": "train.lr", "warmup_frac": "train.warmup_frac",
    "weight_decay": "train.weight_decay", "grad_clip": "train.grad_clip",
    "eval_every": "train.eval_every", "ci_width": "comparison.ci_width",
    "max_seeds": "comparison.max_seeds", "tune_frac": "tune.frac", "tune_seeds": "tune.seeds",
    "out": "out", "scale": "study.scale", "sizes": "study.sizes", "preset": "study.preset",
    "study": "study.name",
    "device": "device", "executor": "executor.kind", "jobs": "executor.jobs",
    "runs_per_job": "executor.runs_per_job", "ranks_per_run": "executor.ranks_per_run",
    "slurm_partition": "executor.slurm.partition", "slurm_time": "executor.slurm.time_min",
    "slurm_cpus": "executor.slurm.cpus", "slurm_gpus": "executor.slurm.gpus",
}  # fmt: skip


def _put(cfg: SweepConfig, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    setattr(node, last, value)


def resolve_config(args: argparse.Namespace) -> SweepConfig:
    """The one config of this command: the --config file (if any), then the flags that were
    given, then --set; validated (one line for the first thing wrong)."""
    cfg = config.load(args.config) if args.config else SweepConfig()
    for dest, dotted in _FLAG_FIELDS.items():
        if getattr(args, dest) is not None:
            _put(cfg, dotted, getattr(args, dest))
    if any(getattr(args, m) is not None for m in ("steps", "tokens", "time")):
        given = {"steps": args.steps, "tokens": args.tokens, "seconds": args.time}
        cfg.budget = BudgetSection(**given)  # a budget flag replaces the file's budget
    lists = {"variant": "variants", "plugin": "plugins", "probe": "train.probes",
             "optimizer": "train.optimizers"}  # fmt: skip
    for dest, dotted in lists.items():
        if getattr(args, dest):
            _put(cfg, dotted, list(getattr(args, dest)))
    cfg.task.options.update(_key_values("--task-option", args.task_option, "n_digits=4", True))
    slurm_extra = _key_values("--slurm-option", args.slurm_option, "account=myproj", False)
    cfg.executor.slurm.options.update(slurm_extra)
    if args.dropout is not None:
        cfg.model.fields["dropout"] = args.dropout
    if args.betas is not None:
        betas = _floats("--betas", args.betas, "0.9,0.95")
        if len(betas) != 2:
            raise ValueError(f"--betas takes two numbers B1,B2 (e.g. 0.9,0.95), got {args.betas!r}")
        cfg.train.beta1, cfg.train.beta2 = betas
    flags = (("compile", "train.compile"), ("force", "force"), ("quiet", "quiet"),
             ("dry_run", "study.dry_run"))  # fmt: skip
    for flag, dotted in flags:
        if getattr(args, flag):
            _put(cfg, dotted, True)
    if args.no_amp:
        cfg.train.amp = False
    if args.no_wait:
        cfg.executor.wait = False
    if args.ladder is not None:
        cfg.comparison.ladder = _floats("--ladder", args.ladder, "0.5,2,4")
    if args.tune is not None:
        cfg.tune.keys = [k.strip() for k in args.tune.split(",") if k.strip()]
        if not cfg.tune.keys:
            raise ValueError("--tune needs a setting to tune, e.g. --tune lr")
    if args.tune_grid is not None:
        cfg.tune.grid = _floats("--tune-grid", args.tune_grid, "0.25,0.5,1,2,4")
    for item in args.set:
        config.set_value(cfg, item)
    return cfg.validate()


def slurm_options(cfg: SweepConfig) -> dict:
    x = cfg.executor
    return {
        "partition": x.slurm.partition,
        "time_min": x.slurm.time_min,
        "cpus": x.slurm.cpus,
        "gpus": x.slurm.gpus,
        "runs_per_job": x.runs_per_job,
        "ranks_per_run": x.ranks_per_run,
        "parallelism": x.jobs,  # --jobs on a cluster: most array tasks running at once
        "additional": dict(x.slurm.options),
    }


def check_torchrun(cfg: SweepConfig, world: int) -> None:
    """Under torchrun every rank runs this same command: each run is trained by all ranks."""
    if cfg.study.name:
        raise ValueError("--study runs in one process; start it without torchrun")
    check_fan_out(cfg.executor.jobs or 1, cfg.executor.kind, under_torchrun=True)
    if cfg.train.batch_size is not None:
        check_batch_split(cfg.train.batch_size, world)


def load_plugin(path: str) -> None:
    """Import a plugin file; any error in it is one line naming the file, line and error."""
    if not os.path.isfile(path):
        raise ValueError(f"plugin file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    # a @dataclass in the plugin looks its module up by name while the class is made; it is
    # taken out again after, so nothing of the plugin's pickles by a name workers cannot import
    added = sys.modules.setdefault(spec.name, module) is module
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
    finally:
        if added:
            del sys.modules[spec.name]


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


def list_everything() -> str:
    from bench.tasks import TASKS

    lines = ["variants (each is the baseline plus the change shown):"]
    width = max(len(n) for n in VARIANTS)
    for name, v in VARIANTS.items():
        lines.append(f"  {name:<{width}}  {v.description}  [{v.diff()}]")
    lines.append("tasks (and the default recipe of each; flags override any part):")
    for name, cls in TASKS.items():
        lines.append(f"  {name:<{width}}  {cls.description}")
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


def build_plan(cfg: SweepConfig) -> tuple[Plan, object]:
    """The comparison this config asks for (over the task's recipe), and the task its runs
    share (built once, here)."""
    from bench.tasks import build_task, task_recipe
    from bench.train import resolve_device

    task_name = cfg.task.name or DEFAULT_TASK
    recipe = task_recipe(task_name)  # one-line error for an unknown task
    seeds = recipe.seeds if cfg.comparison.seeds is None else cfg.comparison.seeds
    device = resolve_device(cfg.device).type
    given = cfg.budget.given()
    budget = Budget(*given) if given else Budget("steps", recipe.steps)
    budget.validate()
    base = recipe.model_config(cfg.model.size, **{"dropout": 0.0, **cfg.model.fields})
    t = cfg.train
    batch_size = recipe.batch_size if t.batch_size is None else t.batch_size
    if t.eval_every is not None:
        eval_every = t.eval_every
    elif budget.mode == "steps":
        eval_every = recipe.eval_every(int(budget.value))
    elif budget.mode == "tokens":  # rows are at most the context long: an upper bound on steps
        eval_every = recipe.eval_every(math.ceil(budget.value / (batch_size * base.block_size)))
    else:
        eval_every = recipe.eval_every(recipe.steps)
    optimizers = resolve_optimizers(t.optimizers)
    recipe_fields = {
        "lr": recipe.lr, "min_lr_frac": recipe.min_lr_frac, "warmup_frac": recipe.warmup_frac,
        "eval_batches": recipe.eval_batches, "eval_batch_size": recipe.eval_batch_size,
    }  # fmt: skip
    train = TrainConfig(
        **{**recipe_fields, **cfg.train_fields()},  # what the config sets wins
        optimizer=optimizers[0],
        batch_size=batch_size,
        eval_every=eval_every,
        probes=tuple(dict.fromkeys(t.probes)),
    ).validate()
    task = build_task(
        task_name,
        context=base.block_size,
        data=cfg.task.data,
        eval_batches=train.eval_batches,
        eval_batch_size=train.eval_batch_size,
        **cfg.task.options,
    )
    base = base.replace(vocab_size=task.vocab_size)
    budget.validate(tokens_per_step=train.batch_size * task.seq_len)  # before anything is written
    if "lengths" in train.probes and not task.has_spans:
        task.held_out_spans(1, 1)  # raises the task's one-line reason
    # the options as the task typed them ("4" and 4 are one run), those given only
    options = json.loads(json.dumps({k: getattr(task.options, k) for k in cfg.task.options}))
    task_spec = {"name": task_name, "data": _data_identity(cfg.task.data), **options}
    variants = tuple(
        # e.g. triton on CPU fails here, one line
        (name, get_variant(name).apply(base).validate())
        for name in resolve_variants(cfg.variants, base)
    )
    given_eval = t.eval_every is not None
    plan = Plan(variants, task_spec, budget, train, device, recipe, given_eval, seeds, optimizers)
    return plan, task


def resolve_optimizers(requested: list[str]) -> tuple[str, ...]:
    """--optimizer's arms, each checked (one line for an unknown name or a torch without
    Muon), the reference first: AdamW when it is among them, which is also the arm the tables
    leave unlabelled and read the others against."""
    from bench.optim import DEFAULT_OPTIMIZER, check_available

    names = list(dict.fromkeys(requested or [DEFAULT_OPTIMIZER]))
    for name in names:
        check_available(name)
    return tuple(sorted(names, key=lambda n: n != DEFAULT_OPTIMIZER))


def ladder_factors(given: list[float] | None) -> tuple[float, ...]:
    """--ladder's factors, e.g. [0.5, 2, 4] -> (0.5, 1.0, 2.0, 4.0): the main budget is always a
    rung. Without a 2x rung the table says its control could not be run."""
    if given is None:
        return ()
    text = ",".join(f"{f:g}" for f in given)
    if not given or not all(math.isfinite(f) and f > 0 for f in given):
        raise ValueError(f"--ladder factors must be positive numbers (e.g. 0.5,2,4), got {text!r}")
    factors = {*given, 1.0}
    if len(factors) < 3:
        raise ValueError(
            f"--ladder needs at least two budgets besides the main one (e.g. 0.5,2,4), got {text!r}"
        )
    return tuple(sorted(factors))


def _data_identity(path: str | None) -> str | None:
    """A data file enters the run id by its absolute path, so moving it is a new run."""
    return None if path is None else str(Path(path).resolve())


def _size_label(cfg: ModelConfig) -> str:
    """The preset's name when the model is one, else its sizes (e.g. L2-H4-d64-ctx32)."""
    for name, sizes in PRESETS.items():
        if all(getattr(cfg, k) == v for k, v in sizes.items()):
            return name
    return f"L{cfg.n_layer}-H{cfg.n_head}-d{cfg.n_embd}-ctx{cfg.block_size}"


def default_out(plan: Plan) -> Path:
    b = plan.budget
    size = _size_label(plan.variants[0][1])
    name = f"{plan.task_spec['name']}_{size}_{b.describe().replace(' ', '')}_{plan.device}"
    return LOCAL_RESULTS / "ablations" / name


def run_study(cfg: SweepConfig) -> int:
    from ablations.studies import StudyContext, get_study
    from bench.train import resolve_device

    name = cfg.study.name
    study = get_study(name)
    out = Path(cfg.out) if cfg.out else LOCAL_RESULTS / "studies" / name
    device = resolve_device(cfg.device).type
    seeds = cfg.comparison.seeds
    ctx = StudyContext(
        out=out,
        device=device,
        seeds=STUDY_SEEDS if seeds is None else seeds,
        scale=cfg.study.scale,
        force=cfg.force,
        quiet=cfg.quiet,
        variants=tuple(cfg.variants),
        sizes=cfg.study.sizes,
        preset=cfg.study.preset,
        dry_run=cfg.study.dry_run,
        jobs=default_jobs(cfg, device, 1),
        executor=cfg.executor.kind,
        slurm=slurm_options(cfg),
        plugins=tuple(str(Path(p).resolve()) for p in cfg.plugins),
    )
    study.check(ctx)
    if ctx.dry_run:
        print(study.plan(ctx))  # nothing trained, nothing written
        return 0
    check_output(out)
    section = study.run(ctx)
    (out / "report.md").write_text(section)
    print(section)
    print(f"study {name}: report in {out / 'report.md'}", file=sys.stderr)
    return 0


def default_jobs(cfg: SweepConfig, device: str, world: int) -> int:
    """--jobs when not given: on a CPU, one one-thread worker process per core (two such
    processes beat one two-thread process on a 2-core machine); one run at a time elsewhere."""
    if cfg.executor.jobs is not None:
        return cfg.executor.jobs
    if device == "cpu" and cfg.executor.kind == "local" and world == 1:
        return cpu_cores()
    return 1


def write_command(out: Path, cfg: SweepConfig, argv, world: int, specs: list[RunSpec],
                  seeds: int) -> None:  # fmt: skip
    """Beside the results: the resolved config (config.toml, which --config takes back) and
    the command with every resolved spec (command.json; rewritten when seeds grow)."""
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "config.toml", config.dumps(cfg).encode("utf-8"))
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


def run_specs(cfg: SweepConfig, specs: list[RunSpec], out: Path, task, jobs: int, force: bool):
    """Train what of `specs` is not finished, where the config's executor says; returns
    (runs trained or submitted, runs skipped)."""
    return execute(
        specs,
        out,
        force=force,
        quiet=cfg.quiet,
        task=task,
        jobs=jobs,
        executor=cfg.executor.kind,
        plugins=[str(Path(p).resolve()) for p in cfg.plugins],
        slurm=slurm_options(cfg),
        wait=cfg.executor.wait,
    )


def sweep(cfg: SweepConfig, plan: Plan, task, out: Path, world: int, argv):
    """Train the plan's runs (and the ladder's); with --ci-width, add seeds until the 95% CI
    of every Δ val loss is narrower than the target or --max-seeds is reached. Whether to add
    seeds is decided from the CI widths alone, never from the sign or size of a difference.
    Returns (runs trained, runs skipped as finished earlier, notes for the table)."""
    from bench.tables import ci_widths

    c = cfg.comparison
    seeds = plan.seeds
    if c.ci_width is not None:
        seeds = max(seeds, 2)  # a CI needs two seeds
    factors = [f for f in ladder_factors(c.ladder) if f != 1.0]
    tokens_per_step = plan.train.batch_size * task.seq_len
    rank0 = not distributed.is_active() or distributed.is_main()
    jobs = default_jobs(cfg, plan.device, world)
    ran_total, skipped_first, notes = 0, None, []
    while True:
        specs = plan.specs(seeds)
        specs += plan.ladder_specs(tuple(factors), seeds, tokens_per_step) if factors else []
        if rank0:
            write_command(out, cfg, argv, world, specs, seeds)
        first = skipped_first is None
        # --force retrains once, not every round of seeds
        ran, skipped = run_specs(cfg, specs, out, task, jobs, force=cfg.force and first)
        ran_total += ran
        skipped_first = skipped if first else skipped_first
        if c.ci_width is None or not cfg.executor.wait:
            return ran_total, skipped_first, notes
        ids = {run_id(s.to_dict()) for s in plan.specs(seeds)}
        records = [r for r in load_records(out) if r.run_id in ids]
        widths = ci_widths(records)  # variant -> (CI width, sd of the paired differences)
        worst = max((w for w, _ in widths.values()), default=math.inf)
        if worst <= c.ci_width or seeds >= c.max_seeds:
            reached = "reached" if worst <= c.ci_width else "not reached"
            notes.append(
                f"Seeds were added until the 95% CI of every Δ val loss was narrower than "
                f"{c.ci_width:g} (--ci-width) or --max-seeds {c.max_seeds} was hit; the "
                f"rule looks at CI widths only, never at the sign or size of a difference. "
                f"Target {reached} at {seeds} seeds (widest CI {worst:.4g})."
            )
            return ran_total, skipped_first, notes
        seeds = min(c.max_seeds, max(seeds + 1, seeds_for_width(widths, c.ci_width)))
        if rank0 and not cfg.quiet:
            print(
                f"widest 95% CI of Δ val loss is {worst:.4g} > {c.ci_width:g}: "
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


def tune_config(cfg: SweepConfig, plan: Plan):
    """The tuning settings, checked at the edge (one line each), or None without --tune."""
    from bench.tune import TuneConfig, check, parse_grid, parse_keys

    t = cfg.tune
    if not t.keys:
        return None
    grid = parse_grid(",".join(repr(float(f)) for f in t.grid))
    tune = TuneConfig(parse_keys(",".join(t.keys)), grid, t.frac, t.seeds)
    lone_baseline = cfg.variants == ["baseline"]  # asked for by name: its own sweep
    if len(plan.variants) * len(plan.optimizers) < 2 and not lone_baseline:
        raise ValueError(
            "--tune compares arms, each at its own best: add --variant NAME or a second "
            "--optimizer (or --variant baseline alone: the baseline's own lr sweep)"
        )
    return check(tune, plan.seeds)


def tune_command(cfg: SweepConfig, tune, plan: Plan, task, out: Path, world: int, argv) -> int:
    """--tune: the tuning stages, then the comparison at each arm's best and at the default."""
    from ablations.tune import NotYet, Tuner, write_results

    jobs = default_jobs(cfg, plan.device, world)
    counts = [0, 0]

    def train(specs):
        ran, skipped = run_specs(cfg, specs, out, task, jobs, force=cfg.force)
        counts[0], counts[1] = counts[0] + ran, counts[1] + skipped
        return ran

    tokens_per_step = plan.train.batch_size * task.seq_len
    sweep = task.recipe.lr_sweep_dir()  # the recipe's own baseline sweep: its runs are reused
    pool = load_records(sweep) if sweep else []
    tuner = Tuner(tune, plan, tokens_per_step, out, train, wait=cfg.executor.wait, pool=pool,
                  pool_name=task.recipe.lr_sweep)  # fmt: skip
    write_command(out, cfg, argv, world, plan.specs(plan.seeds), plan.seeds)
    try:
        outcome = tuner.run()
    except NotYet as err:
        print(f"{err}; rerun this command when they are done", file=sys.stderr)
        return 0
    print(write_results(outcome, tune, plan, out))
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
        cfg = resolve_config(args)  # the file, the flags, --set: one config, validated
        for plugin in cfg.plugins:
            load_plugin(plugin)
        if args.list:
            print(list_everything())
            return 0
        if world > 1:
            check_torchrun(cfg, world)
        if cfg.study.name:
            return run_study(cfg)
        plan, task = build_plan(cfg)  # the same on every rank: a pure function of argv
        if world > 1:
            check_batch_split(plan.train.batch_size, world)
        tune = tune_config(cfg, plan)
        out = Path(cfg.out) if cfg.out else default_out(plan)
        if rank0:
            check_output(out)
        distributed.setup(plan.device)
        if tune is not None:
            return tune_command(cfg, tune, plan, task, out, world, argv)
        ran, skipped, notes = sweep(cfg, plan, task, out, world, argv)
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
    if not cfg.executor.wait and cfg.executor.kind != "local" and ran:
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
        f"{out / ('runs.jsonl' if cfg.executor.kind == 'local' else 'runs')}, "
        f"table in {out / 'summary.md'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
