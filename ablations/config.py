"""The sweep's one config object: what a command asks for, from flags, a TOML file, or both.

    python ablations/run.py --config my_sweep.toml                 # the file says it all
    python ablations/run.py --config my_sweep.toml --seeds 5       # a flag overrides the file

Configs flow one way: file -> flags -> `SweepConfig` -> (over the task's recipe) `Plan` ->
`RunSpec`s -> records. A field left unset (None) takes the task's recipe value, or the
training default; the resolved config is written beside the results as `config.toml`, which
`--config` takes back to rerun the same sweep. A file is read strictly: an unknown section or
key, or a value of the wrong type, is one line naming the file and the key, never ignored.

    variants = ["rope", "swiglu"]
    [task]
    name = "addition"
    options = { n_digits = 4 }
    # (text tasks: data = "corpus/", data_field = "text", tokenizer = "bpe:1024")
    [model]
    size = "tiny"
    n_layer = 6            # any ModelConfig field
    [budget]
    steps = 2000           # or tokens = ..., or seconds = ...
    [train]
    lr = 2e-3
    weight_decay = 0.05
    betas = [0.9, 0.95]    # beta1, beta2
    [comparison]
    seeds = 5
    [executor]
    jobs = 2
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from bench.analysis import tuning as tune_defaults
from bench.core.spec import BUDGET_FLAGS, TrainConfig
from bench.exec.placement import ExecutorConfig as ExecutorSection
from bench.exec.placement import SlurmConfig as SlurmSection  # noqa: F401 (the [executor.slurm] table)
from bench.exec.placement import check_fan_out  # the one check, shared with execute()
from bench.exec.trackers import check_trackers  # the same


class ConfigError(ValueError):
    """A config file or a --set value that cannot be taken; one line saying what and where."""


# --------------------------------------------------------------------------- the sections


@dataclass
class TaskSection:
    name: str | None = None  # None: the default task (bench.tasks.DEFAULT_TASK)
    data: str | None = None  # the text tasks' data: a file, a folder or a glob
    data_field: str | None = None  # the field/column of .jsonl/.json/.parquet/.csv ("text")
    tokenizer: str | None = None  # the text tasks': char (default), bpe:N or a tokenizer.json
    options: dict = field(default_factory=dict)  # the task's own options (bench.tasks)

    def all_options(self) -> dict:
        """The task's options with `data_field` and `tokenizer` among them, where set."""
        named = {"data_field": self.data_field, "tokenizer": self.tokenizer}
        return {**self.options, **{k: v for k, v in named.items() if v is not None}}


@dataclass
class ModelSection:
    size: str | None = None  # a preset (variants.config.PRESETS); None: the recipe's model
    # ModelConfig fields to change over that preset (n_layer, n_embd, dropout, ...)
    fields: dict = field(default_factory=dict)
    # the chosen blocks' own options, {slot: {key: value}} ([model.options.mlp] hidden_mult = 3;
    # variants.options): applied to every arm after its variant, checked by the block
    options: dict = field(default_factory=dict)


@dataclass
class BudgetSection:
    """At most one of the three; none: the recipe's steps."""

    steps: int | None = None
    tokens: float | None = None
    seconds: float | None = None

    def given(self) -> tuple[str, float] | None:
        set_ = [(m, v) for m, v in (("steps", self.steps), ("tokens", self.tokens),
                                    ("seconds", self.seconds)) if v is not None]  # fmt: skip
        if len(set_) > 1:
            names = " and ".join(BUDGET_FLAGS[m] for m, _ in set_)
            raise ConfigError(f"give one budget, not {names}")
        return set_[0] if set_ else None


def _train_section() -> type:
    """Every TrainConfig field, in its order, as an optional one (None: the recipe's value, or
    TrainConfig's default), with the two the plan resolves itself as lists: probes, and the
    optimizer arms to compare (`optimizers`; empty: AdamW). Derived, so a new TrainConfig field
    is a [train] key, a --train.KEY flag and a config.toml line with nothing written here."""
    hints = get_type_hints(TrainConfig)
    specs = []
    for f in fields(TrainConfig):
        if f.name == "probes":
            specs.append(("probes", list[str], field(default_factory=list)))
        elif f.name == "optimizer":
            specs.append(("optimizers", list[str], field(default_factory=list)))
        else:
            specs.append((f.name, hints[f.name] | None, field(default=None)))
    section = dataclasses.make_dataclass("TrainSection", specs)
    section.__module__ = __name__  # for repr and pickling, like a class written here
    return section


TrainSection = _train_section()


@dataclass
class ComparisonSection:
    seeds: int | None = None  # seeds per variant; None: the recipe's
    ci_width: float | None = None  # add seeds until every Δ val loss CI is this narrow
    max_seeds: int = 10
    ladder: list[float] | None = None  # the baseline also at these budget factors (and 1x)


@dataclass
class TuneSection:
    keys: list[str] = field(default_factory=list)  # e.g. ["lr"]; empty: no tuning
    grid: list[float] = field(default_factory=lambda: list(tune_defaults.DEFAULT_GRID))
    frac: float = tune_defaults.DEFAULT_FRAC
    seeds: int = tune_defaults.DEFAULT_SEEDS


@dataclass
class StudySection:
    name: str | None = None
    scale: float = 1.0
    sizes: str | None = None  # --study scaling's ladder, "LxD,..."
    preset: str | None = None  # --study scaling's grid: cpu, h100 (None: the device's)
    dry_run: bool = False  # print the study's plan and its estimated cost; train nothing


@dataclass
class SweepConfig:
    variants: list[str] = field(default_factory=list)  # besides the baseline; "all": every one
    device: str = "auto"
    out: str | None = None  # None: results/local/...
    plugins: list[str] = field(default_factory=list)
    force: bool = False
    quiet: bool = False
    task: TaskSection = field(default_factory=TaskSection)
    model: ModelSection = field(default_factory=ModelSection)
    budget: BudgetSection = field(default_factory=BudgetSection)
    train: TrainSection = field(default_factory=TrainSection)
    comparison: ComparisonSection = field(default_factory=ComparisonSection)
    tune: TuneSection = field(default_factory=TuneSection)
    study: StudySection = field(default_factory=StudySection)
    executor: ExecutorSection = field(default_factory=ExecutorSection)

    def validate(self) -> SweepConfig:
        """The checks that need no task or model (those come with the plan): one line each."""
        from ablations.checks import check_config  # empty values, flags that do nothing

        check_config(self)
        budget = self.budget.given()
        if budget is not None:
            mode, value = budget
            _positive(BUDGET_FLAGS[mode], value)
        c, x, tu = self.comparison, self.executor, self.tune
        if c.seeds is not None and c.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {c.seeds}")
        if c.ci_width is not None:
            _positive("--ci-width", c.ci_width, "a positive width in nats (e.g. 0.01)")
            if not self.variants and not self.study.name:  # a study says what it takes below
                raise ConfigError(
                    "--ci-width compares variants with the baseline: add --variant NAME"
                )
        if c.max_seeds < 2:
            raise ConfigError(f"--max-seeds must be at least 2, got {c.max_seeds}")
        if c.ci_width is not None and c.seeds is not None and c.seeds > c.max_seeds:
            raise ConfigError(
                f"--seeds {c.seeds} is more than --max-seeds {c.max_seeds}; raise --max-seeds"
            )
        # the training fields are checked where they are built (TrainConfig.validate)
        check_fan_out(1 if x.jobs is None else x.jobs, x.kind, under_torchrun=False)
        check_trackers(x.log)  # an unknown name or a missing package: before any training
        if x.ranks_per_run != 1 and x.kind == "local":
            raise ConfigError(
                "--ranks-per-run is for --executor slurm or submitit-local; on this machine "
                "start DDP with torchrun --nproc_per_node N ablations/run.py ..."
            )
        if not self.study.scale > 0:
            raise ConfigError(f"--scale must be positive, got {self.study.scale}")
        if self.study.name:
            self._check_study()
        else:
            self._check_study_flags()
        if tu.keys and (c.ci_width is not None or c.ladder is not None):
            flag = "--ci-width" if c.ci_width is not None else "--ladder"
            raise ConfigError(f"--tune does not combine with {flag} yet; run them separately")
        return self

    def _check_study(self) -> None:
        """A study brings its own tasks, models, budgets and training: a setting of those next
        to --study would be silently ignored, so it is an error instead."""
        default = SweepConfig()
        own = ("model", "budget", "train", "tune")
        if "--task" not in _study_takes(self.study.name):  # scaling fits any text's loss
            own = ("task", *own)
        unused = [name for name in own if getattr(self, name) != getattr(default, name)]
        c = self.comparison
        if (c.ci_width, c.ladder, c.max_seeds) != (None, None, default.comparison.max_seeds):
            unused.append("comparison (other than seeds)")
        if not self.executor.wait:
            raise ConfigError(
                f"--study {self.study.name} reads its runs' records when they finish: drop "
                "--no-wait (on a cluster the command waits for its jobs)"
            )
        if unused:
            raise ConfigError(
                f"--study {self.study.name} sets its own {', '.join(unused)}: leave those out "
                "(a study takes --seeds, --scale, --device, --out, --jobs, and --variant/--sizes/"
                "--preset/--dry-run/--task/--data/--tokenizer for scaling)"
            )

    def _check_study_flags(self) -> None:
        """--sizes, --preset and --dry-run shape a study: without --study they would do nothing."""
        s = self.study
        given = [flag for flag, used in (("--sizes", s.sizes is not None),
                 ("--preset", s.preset is not None), ("--dry-run", s.dry_run)) if used]  # fmt: skip
        if given:
            raise ConfigError(f"{given[0]} is for --study scaling; add --study scaling")


def _study_takes(name: str) -> frozenset[str]:
    """The flags study `name` takes beyond the common ones; none for a name not registered yet
    (a --plugin study registers when its file is imported, after this check: the command then
    names an unknown study itself)."""
    from ablations.studies import get_study  # the studies import the harness, not this module

    try:
        return get_study(name).takes
    except ValueError:
        return frozenset()


def _positive(flag: str, value: float, what: str = "a positive number") -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag} must be {what}, got {value:g}")


# --------------------------------------------------------------------------- from a file


def _type_name(tp) -> str:
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) is list:
        plural = {str: "strings", int: "integers", float: "numbers"}
        return f"a list of {plural.get(args[0], 'values')}" if args else "a list"
    if args:  # X | None
        return _type_name(args[0])
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            dict: "a table"}.get(tp, getattr(tp, "__name__", str(tp)))  # fmt: skip


def _coerce(value: Any, tp, where: str) -> Any:
    """`value` (as TOML parsed it) as type `tp`; ConfigError naming `where` if it is not."""
    args = get_args(tp)
    if type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return _coerce(value, inner, where)
    if get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }.get(tp)
    if not ok:
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _fill(obj, table: dict, where: str) -> None:
    """Set `obj`'s fields from a TOML table, strictly (unknown keys are errors)."""
    hints = get_type_hints(type(obj))
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if isinstance(obj, ModelSection) and key == "options":
            merge_block_options(obj.options, value, name)
            continue
        if isinstance(obj, ModelSection) and key != "size":
            obj.fields[key] = value  # a ModelConfig field: checked by name below
            continue
        if isinstance(obj, TrainSection) and key == "betas":
            betas = _coerce(value, list[float], name)
            if len(betas) != 2:
                raise ConfigError(f"{name} must be two numbers [beta1, beta2], got {value!r}")
            obj.beta1, obj.beta2 = betas
            continue
        if key not in hints:
            valid = ", ".join(f.name for f in fields(obj))
            raise ConfigError(f"unknown key {name!r}; valid: {valid}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a table ([{name}]), got {value!r}")
            _fill(current, value, name)
        else:
            setattr(obj, key, _coerce(value, hints[key], name))
    if isinstance(obj, ModelSection):
        _check_model_fields(obj.fields, where)


def merge_block_options(into: dict, value, where: str) -> None:
    """Add a `[model.options]` table ({slot: {key: value}}) or "slot.key=value" strings."""
    from variants.options import parse_block_options

    try:
        nested = parse_block_options(value if isinstance(value, dict | list) else [value])
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    for slot, values in nested.items():
        into.setdefault(slot, {}).update(values)


def _check_model_fields(changes: dict, where: str) -> None:
    from variants.config import ModelConfig  # torch-free

    # block options have their own table ([model.options.SLOT]), not the flat field
    names = {f.name for f in fields(ModelConfig)} - {"block_options"}
    for key in changes:
        if key not in names:
            raise ConfigError(
                f"unknown key '{where}.{key}'; [model] takes size and ModelConfig fields: "
                f"{', '.join(sorted(names))}"
            )


def load(path: str | Path, into: SweepConfig | None = None) -> SweepConfig:
    """A SweepConfig from a TOML file (over `into`, else the defaults)."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would hang
            raise ConfigError(f"--config {path} is not a regular file; name a .toml file")
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a folder; name a .toml file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text (TOML) file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--config {path}: not valid TOML ({err})") from None
    except OSError as err:  # a symlink loop, no permission, ...
        raise ConfigError(f"--config {path} cannot be read ({err.strerror or err})") from None
    cfg = into if into is not None else SweepConfig()
    try:
        _fill(cfg, table, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return cfg


def set_value(cfg: SweepConfig, item: str, flag: str = "--set") -> None:
    """`--set section.key=VALUE` (VALUE in TOML syntax; a bare word is a string); errors name
    `flag` ("": the item is the flag itself, `--section.key=VALUE`)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} is not KEY=VALUE (e.g. train.beta2=0.95)")
    key, text = (s.strip() for s in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a plain word: a string
    table: dict = {}
    node = table
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    try:
        _fill(cfg, table, "")
    except ConfigError as err:
        raise ConfigError(f"{flag} {item}: {err}" if flag else f"--{item}: {err}") from None
