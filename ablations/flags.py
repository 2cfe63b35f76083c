"""The command line of ablations/run.py, read into one `SweepConfig`.

Every config field is a flag, generated from the config's dataclasses: `--section.key=VALUE`
(VALUE in TOML syntax, as in a sweep file; `--train.lr=3e-3`, `--model.n_layer=6`,
`--budget.tokens=1e6`, `--executor.slurm.time_min=30`, `--train.compile` for true). A new
setting is a field in its dataclass and nothing here. The short flags (`--lr`, `--steps`,
`--jobs`, ...) are aliases of those keys, kept so that every command of before still runs;
`_ALIASES` says which key each one sets.

Order: the --config file, then the aliases, then --set and --section.key flags in the order
given; validated once (one line for the first thing wrong).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from dataclasses import fields
from typing import get_args, get_origin, get_type_hints

from ablations import config
from ablations.aliases import add_alias_flags
from ablations.config import BudgetSection, ModelSection, SweepConfig
from variants.config import ModelConfig


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other bad-input error here
        self.exit(2, f"error: {message} (see --help)\n")


class _SetField(argparse.Action):
    """`--section.key=VALUE`: queued as `--set section.key=VALUE`, in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "set", None) or [])
        items.append(f"{option_string}={values}")  # "--train.lr=3e-3": errors name it so
        namespace.set = items


def config_keys() -> list[tuple[str, object]]:
    """(dotted key, type) of every settable field of a section of SweepConfig, walked from the
    dataclasses; [model] takes its preset `size` and every ModelConfig field."""
    keys = []

    def walk(cls, prefix: str) -> None:
        hints = get_type_hints(cls)
        for f in fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif cls is ModelSection and f.name == "fields":
                model = get_type_hints(ModelConfig)
                keys.extend(
                    (f"model.{m.name}", model[m.name])
                    for m in fields(ModelConfig)
                    if m.name != "block_options"
                )  # set through model.options
            elif prefix:  # the top-level fields have their own flags (--variant, --out, ...)
                keys.append((f"{prefix}{f.name}", tp))

    walk(SweepConfig, "")
    return keys


def _metavar(tp) -> str:
    inner = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) is None or get_origin(tp) in (list, tuple, dict):
        base = get_origin(tp) or tp
    else:  # X | None
        return _metavar(inner[0])
    return {int: "INT", float: "NUMBER", bool: "true|false", str: "TEXT", list: "[...]",
            tuple: "[...]", dict: "{...}"}.get(base, "VALUE")  # fmt: skip


def _add_field_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "every config field, as in a sweep file (TOML values; applied after the flags above, "
        "in order with --set)"
    )
    for key, tp in config_keys():
        boolean = tp is bool or bool in get_args(tp)
        g.add_argument(f"--{key}", action=_SetField, dest=f"field:{key}", metavar=_metavar(tp),
                       nargs="?" if boolean else None, const="true" if boolean else None,
                       default=argparse.SUPPRESS)  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    """The flags as given: every default is None (or empty), so `resolve_config` can tell a
    flag that was given, which overrides the --config file, from one that was not."""

    def parser(usage=None) -> _Parser:
        return _Parser(
            prog="ablations/run.py",
            usage=usage,
            description="Train variants against the baseline and compare speed, memory and loss.",
            argument_default=None,
        )

    short = parser()  # the usage line shows the short flags, and the dotted ones in one item
    add_alias_flags(short)
    usage = short.format_usage().removeprefix("usage: ").rstrip()
    p = parser(usage + "\n                        [--SECTION.KEY=VALUE ...]")
    add_alias_flags(p)
    _add_field_flags(p)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- flags -> config


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


def _floats(flag: str, example: str):
    def read(text: str) -> list[float]:
        try:
            return [float(f) for f in text.split(",") if f.strip()]
        except ValueError:
            raise ValueError(f"{flag} {text!r} is not a list of numbers (e.g. {example})") from None

    return read


def _tune_keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise ValueError("--tune needs a setting to tune, e.g. --tune lr")
    return keys


def _betas(text: str) -> tuple[float, float]:
    betas = _floats("--betas", "0.9,0.95")(text)
    if len(betas) != 2:
        raise ValueError(f"--betas takes two numbers B1,B2 (e.g. 0.9,0.95), got {text!r}")
    return betas[0], betas[1]


def _false(_given) -> bool:
    return False


def _tracker_names(given: list[str]) -> list[str]:
    """--log's names, from repeated flags and comma lists alike, each once, in order."""
    names = [n.strip() for item in given for n in item.split(",") if n.strip()]
    return list(dict.fromkeys(names))


# alias (argparse dest) -> the config key it sets, or (key, what the flag's value becomes);
# the budget flags, --task-option and --slurm-option are applied in `resolve_config`
_ALIASES = {
    "task": "task.name", "data": "task.data", "data_field": "task.data_field",
    "tokenizer": "task.tokenizer", "seeds": "comparison.seeds", "model": "model.size",
    "batch_size": "train.batch_size", "lr": "train.lr", "warmup_frac": "train.warmup_frac",
    "weight_decay": "train.weight_decay", "grad_clip": "train.grad_clip",
    "eval_every": "train.eval_every", "dropout": "model.dropout", "compile": "train.compile",
    "no_amp": ("train.amp", _false), "betas": ("train.beta1,beta2", _betas),
    "variant": ("variants", list), "plugin": ("plugins", list),
    "probe": ("train.probes", list), "optimizer": ("train.optimizers", list),
    "ci_width": "comparison.ci_width", "max_seeds": "comparison.max_seeds",
    "ladder": ("comparison.ladder", _floats("--ladder", "0.5,2,4")),
    "tune": ("tune.keys", _tune_keys), "tune_grid": ("tune.grid", _floats("--tune-grid",
    "0.25,0.5,1,2,4")), "tune_frac": "tune.frac", "tune_seeds": "tune.seeds",
    "out": "out", "device": "device", "force": "force", "quiet": "quiet",
    "study": "study.name", "scale": "study.scale", "sizes": "study.sizes",
    "preset": "study.preset", "dry_run": "study.dry_run",
    "executor": "executor.kind", "jobs": "executor.jobs", "no_wait": ("executor.wait", _false),
    "runs_per_job": "executor.runs_per_job", "ranks_per_run": "executor.ranks_per_run",
    "slurm_partition": "executor.slurm.partition", "slurm_time": "executor.slurm.time_min",
    "slurm_cpus": "executor.slurm.cpus", "slurm_gpus": "executor.slurm.gpus",
    "checkpoint_every": "executor.checkpoint_every",
    "keep_checkpoints": "executor.keep_checkpoints", "log": ("executor.log", _tracker_names),
}  # fmt: skip


def _put(cfg: SweepConfig, dotted: str, value) -> None:
    """Set config key `dotted` ("train.beta1,beta2" sets two from a pair; "model.X" is a
    ModelConfig field over the preset)."""
    *path, last = dotted.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    if "," in last:
        for name, v in zip(last.split(","), value, strict=True):
            setattr(node, name, v)
    elif isinstance(node, ModelSection) and last != "size":
        node.fields[last] = value
    else:
        setattr(node, last, value)


def resolve_config(args: argparse.Namespace) -> SweepConfig:
    """The one config of this command: the --config file (if any), then the flags that were
    given, then --set and the --section.key flags; validated (one line for the first thing
    wrong)."""
    cfg = config.load(args.config) if args.config else SweepConfig()
    for dest, alias in _ALIASES.items():
        value = getattr(args, dest)
        if value is None or value is False or value == []:
            continue  # not given
        key, convert = alias if isinstance(alias, tuple) else (alias, None)
        _put(cfg, key, convert(value) if convert else value)
    if any(getattr(args, m) is not None for m in ("steps", "tokens", "time")):
        given = {"steps": args.steps, "tokens": args.tokens, "seconds": args.time}
        cfg.budget = BudgetSection(**given)  # a budget flag replaces the file's budget
    cfg.task.options.update(_key_values("--task-option", args.task_option, "n_digits=4", True))
    if args.block_option:
        config.merge_block_options(cfg.model.options, args.block_option, "--block-option")
    slurm_extra = _key_values("--slurm-option", args.slurm_option, "account=myproj", False)
    cfg.executor.slurm.options.update(slurm_extra)
    for item in args.set:
        if item.startswith("--"):  # a --section.key flag
            config.set_value(cfg, item[2:], flag="")
        else:
            config.set_value(cfg, item)
    return cfg.validate()
