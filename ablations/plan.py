"""What a command asks for, resolved over its task's recipe: the `Plan` (the variants' model
configs, the task, budget, training config, device and seeds) and the RunSpecs it gives.

    plan, task = build_plan(resolve_config(parse_args(["--variant", "rope"])))
    plan.specs(3)   # baseline and rope, seeds 0..2

A pure function of the config (the same on every torchrun rank); importable, unlike the script.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

from ablations.checks import check_budget_size
from ablations.config import SweepConfig
from bench.core.probing import PROBES
from bench.core.spec import REPO_ROOT, Budget, Recipe, RunSpec, TrainConfig
from bench.tasks import DEFAULT_TASK
from variants.config import PRESETS, ModelConfig
from variants.options import with_block_options
from variants.registry import VARIANTS, get_variant

LOCAL_RESULTS = REPO_ROOT / "results" / "local"  # where runs write by default (git-ignored)


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
    from bench.measure.env import resolve_device
    from bench.tasks import build_task, task_recipe

    task_name = cfg.task.name or DEFAULT_TASK
    recipe = task_recipe(task_name)  # one-line error for an unknown task
    seeds = recipe.seeds if cfg.comparison.seeds is None else cfg.comparison.seeds
    device = resolve_device(cfg.device).type
    given = cfg.budget.given()
    budget = Budget(*given) if given else Budget("steps", recipe.steps)
    budget.validate()
    base = recipe.model_config(cfg.model.size, **{"dropout": 0.0, **cfg.model.fields})
    optimizers = resolve_optimizers(cfg.train.optimizers)
    train = train_config(cfg, recipe, budget, base.block_size, optimizers[0])
    given = cfg.task.all_options()
    task = build_task(
        task_name,
        context=base.block_size,
        data=cfg.task.data,
        eval_batches=train.eval_batches,
        eval_batch_size=train.eval_batch_size,
        **given,
    )
    base = base.replace(vocab_size=task.vocab_size)
    budget.validate(tokens_per_step=train.batch_size * task.seq_len)  # before anything is written
    for probe in train.probes:  # a probe the task cannot serve: its one-line reason, now
        PROBES.get(probe)().check(task)
    options = given_options(task.options, given)
    check_heldout(task, options)
    # the data by path (a text task: also by content), the options given (Task.run_identity)
    task_spec = {"name": task_name, **task.run_identity(cfg.task.data, options)}
    variants = tuple(
        # e.g. triton on CPU fails here, one line
        (name, _with_options(name, get_variant(name).apply(base), cfg.model.options).validate())
        for name in resolve_variants(cfg.variants, base)
    )
    given_eval = cfg.train.eval_every is not None
    plan = Plan(variants, task_spec, budget, train, device, recipe, given_eval, seeds, optimizers)
    factors = ladder_factors(cfg.comparison.ladder)
    check_budget_size(plan, train.batch_size * task.seq_len, factors, cfg.force)
    return plan, task


def train_config(cfg: SweepConfig, recipe: Recipe, budget: Budget, context: int,
                 optimizer: str) -> TrainConfig:  # fmt: skip
    """The recipe's training fields, what the config sets over them, the batch, and validation
    points spaced for the budget (unless the config gives --eval-every); validated."""
    t = cfg.train
    batch_size = recipe.batch_size if t.batch_size is None else t.batch_size
    if t.eval_every is not None:
        eval_every = t.eval_every
    elif budget.mode == "steps":
        eval_every = recipe.eval_every(int(budget.value))
    elif budget.mode == "tokens":  # rows are at most the context long: an upper bound on steps
        eval_every = recipe.eval_every(math.ceil(budget.value / (batch_size * context)))
    else:
        eval_every = recipe.eval_every(recipe.steps)
    resolved = {"optimizer": optimizer, "batch_size": batch_size, "eval_every": eval_every,
                "probes": tuple(dict.fromkeys(t.probes))}  # fmt: skip
    # the other fields the config sets (not None) win over the recipe's
    given = {f.name: getattr(t, f.name) for f in fields(TrainConfig)
             if f.name not in resolved and getattr(t, f.name) is not None}  # fmt: skip
    return TrainConfig(**{**recipe.train_fields(), **given, **resolved}).validate()


def given_options(options, given) -> dict:
    """The task options `given` as the task typed them ("4" and 4 are one run), less those at
    the task's default: `n_digits=3` spelled out is the same run as the recipe's, one run id."""
    typed = json.loads(json.dumps({k: getattr(options, k) for k in given}))
    defaults = {f.name: f.default for f in fields(options) if f.default is not MISSING}
    defaults = json.loads(json.dumps(defaults))
    return {k: v for k, v in typed.items() if k not in defaults or defaults[k] != v}


def check_heldout(task, options: dict) -> None:
    """An `n_heldout` the task caps (at 10% of a width's or cell's problems) would train under
    the asked value's run id: refuse it, naming the most the task holds out here."""
    if "n_heldout" not in options:
        return
    info = task.describe()
    counts = info.get("n_heldout_by_width") or info.get("n_heldout_per_cell") or {}
    held = min([*counts.values(), info.get("n_heldout", math.inf)])
    if held < options["n_heldout"]:
        raise ValueError(
            f"--task-option n_heldout={options['n_heldout']}: task {task.name!r} holds out at "
            f"most {held} problem(s) here (10% of the smallest width's or cell's); ask for at "
            f"most {held}"
        )


def _with_options(variant: str, model: ModelConfig, options: dict) -> ModelConfig:
    """The sweep's block options on one arm's model; one line naming the arm if they do not
    fit its blocks."""
    try:
        return with_block_options(model, options)
    except ValueError as err:
        raise ValueError(f"variant {variant!r}: {err}") from None


def resolve_optimizers(requested: list[str]) -> tuple[str, ...]:
    """--optimizer's arms, each checked (one line for an unknown name or a torch without
    Muon), the reference first: AdamW when it is among them, which is also the arm the tables
    leave unlabelled and read the others against."""
    from bench.core.optim import DEFAULT_OPTIMIZER, check_available

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


def _size_label(cfg: ModelConfig) -> str:
    """The preset's name when the model is one, else its sizes (e.g. L2-H4-d64-ctx32)."""
    for name, sizes in PRESETS.items():
        if all(getattr(cfg, k) == v for k, v in sizes.items()):
            return name
    return f"L{cfg.n_layer}-H{cfg.n_head}-d{cfg.n_embd}-ctx{cfg.block_size}"


def default_out(plan: Plan) -> Path:
    b = plan.budget
    size = _size_label(plan.variants[0][1])
    task = plan.task_spec["name"]
    tokenizer = plan.task_spec.get("tokenizer")  # runs of two tokenisers: two folders
    if tokenizer:
        sha = plan.task_spec.get("tokenizer_sha256") or ""
        task += "-" + (
            tokenizer.replace(":", "") if tokenizer.startswith("bpe:") else f"tok{sha[:8]}"
        )
    name = f"{task}_{size}_{b.describe().replace(' ', '')}_{plan.device}"
    return LOCAL_RESULTS / "ablations" / name
