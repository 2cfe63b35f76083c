"""A SweepConfig as the TOML file `ablations.config.load` reads back to an equal config: the
config.toml written beside every result."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields
from typing import Any

from ablations.config import ModelSection, SweepConfig


def _toml_key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted one."""
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML form for {value!r}")


# how this invocation behaves, not what the sweep is: never written into config.toml, so that
# rerunning it does not retrain everything because the first command said --force
_PER_INVOCATION = ("force", "quiet", "dry_run")


def _lines(obj, header: str) -> list[str]:
    scalars, tables = [], []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            tables += _lines(value, f"{header}.{f.name}" if header else f.name)
        elif isinstance(obj, ModelSection) and f.name == "fields":
            scalars += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(obj, ModelSection) and f.name == "options":
            scalars += [f"options = {_toml_value(value)}"] if value else []
        elif value is not None and f.name not in _PER_INVOCATION:
            scalars.append(f"{f.name} = {_toml_value(value)}")
    head = [f"[{header}]"] if header and scalars else []
    return ([*head, *scalars, ""] if scalars else []) + tables


def dumps(cfg: SweepConfig) -> str:
    """The config as TOML that `load` reads back to an equal config (unset fields left out:
    they take the recipe's values, which command.json lists for every run)."""
    body = "\n".join(_lines(cfg, "")).rstrip() + "\n"
    return (
        "# The sweep as this command resolved it (file, then flags). Rerun it with\n"
        "#   python ablations/run.py --config THIS_FILE\n"
        "# Fields not shown take the task's recipe (command.json lists every run's spec).\n\n"
        + body
    )
