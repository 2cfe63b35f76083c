"""Per-block options: a block's own knobs, declared where the block is (zoology-style).

A registered block may carry a small frozen dataclass of options:

    @dataclass(frozen=True)
    class MLPOptions:
        hidden_mult: int = 4

    @register("mlp", "wide", options=MLPOptions)
    class WideMLP(nn.Module):
        def __init__(self, cfg):
            h = cfg.options_for("mlp").hidden_mult * cfg.n_embd

`ModelConfig` holds them in ONE field, `block_options`: a sorted tuple of
(slot, ((key, value), ...)) with only the values that differ from the block's defaults, so a run
that sets none keeps the run id it always had (the id rule in variants/config.py). They are set
from `register_variant(..., options={"mlp": {"hidden_mult": 3}})`, from a sweep file's
`[model.options.mlp]` table and from the command line (`"mlp.hidden_mult=3"`):

    nested = parse_block_options(["mlp.hidden_mult=3"])   # or the TOML table, a dict
    cfg = with_block_options(cfg, nested)                 # typed, checked, defaults dropped

Every user mistake is one ValueError line: an unknown slot, a block that takes no options, an
unknown key (the valid keys listed), a value of the wrong type. The block's `check(cfg)` then
judges the values themselves.
"""

from __future__ import annotations

import dataclasses
import typing

from variants.config import OPTION_CLASSES, SLOT_FIELDS, ModelConfig


def parse_block_options(given) -> dict[str, dict]:
    """`["slot.key=value", ...]` (values stay strings; `with_block_options` types them) or a
    nested `{slot: {key: value}}` (a TOML `[model.options.<slot>]` table) -> the nested dict."""
    if isinstance(given, dict):
        out = {}
        for slot, values in given.items():
            if not isinstance(values, dict):
                raise ValueError(
                    f"options for {slot!r} must be a table of key = value, got {values!r}"
                )
            out[str(slot)] = dict(values)
        return out
    out: dict[str, dict] = {}
    for item in given:
        path, sep, value = str(item).partition("=")
        slot, dot, key = path.strip().partition(".")
        if not (sep and dot and slot and key.strip()):
            raise ValueError(
                f"block option {item!r} must read slot.key=value, e.g. mlp.hidden_mult=3"
            )
        out.setdefault(slot, {})[key.strip()] = value.strip()
    return out


def with_block_options(cfg: ModelConfig, nested: dict) -> ModelConfig:
    """`cfg` with `nested` ({slot: {key: value}}) merged into its block options: each value
    typed by the chosen block's options dataclass (strings as from a command line are parsed),
    and values equal to the default dropped, so the field holds only what differs."""
    merged = {slot: dict(values) for slot, values in cfg.block_options}
    for slot, values in parse_block_options(nested).items():
        cls = options_class(cfg, slot)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values.items():
            f = _field(cls, slot, fields, key)
            typed = _coerce(slot, key, value, _type_of(cls, key))
            slot_values = merged.setdefault(slot, {})
            if typed == f.default:
                slot_values.pop(key, None)
            else:
                slot_values[key] = typed
    return cfg.replace(block_options=merged)


def check_block_options(cfg: ModelConfig) -> None:
    """One-line ValueError for options that no chosen block declares or of the wrong type."""
    for slot, values in cfg.block_options:
        cls = options_class(cfg, slot)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values:
            _field(cls, slot, fields, key)
            if _coerce(slot, key, value, _type_of(cls, key), strict=True) != value:
                raise ValueError(
                    f"{slot}.{key} must be {_type_of(cls, key).__name__}, got {value!r}"
                )


def options_class(cfg: ModelConfig, slot: str) -> type:
    """The options dataclass of the block chosen for `slot` (one line if it has none)."""
    if slot not in SLOT_FIELDS:
        raise ValueError(
            f"block options for unknown slot {slot!r}; valid slots: {', '.join(SLOT_FIELDS)}"
        )
    name = getattr(cfg, slot)
    cls = OPTION_CLASSES.get((slot, name))
    if cls is None:
        takes = [f"{s} {n!r}" for (s, n) in OPTION_CLASSES] or ["none"]
        raise ValueError(
            f"{slot} {name!r} takes no options; blocks with options: {', '.join(takes)}"
        )
    return cls


def _field(cls, slot, fields, key):
    if key not in fields:
        raise ValueError(f"unknown option {slot}.{key}; valid keys: {', '.join(fields)}")
    return fields[key]


def _type_of(cls, key) -> type:
    hint = typing.get_type_hints(cls)[key]
    return hint if hint in (int, float, bool, str) else object


def _coerce(slot, key, value, typ, strict=False):
    """`value` as `typ`: bool from true/false/1/0, int from a whole number, float from a number;
    `strict` (a config already built) takes no strings for non-strings."""
    where = f"{slot}.{key}"
    if typ is object or (isinstance(value, typ) and not (typ is int and isinstance(value, bool))):
        return value
    if isinstance(value, str) and not strict:
        text = value.strip().lower()
        if typ is bool and text in ("true", "false", "1", "0", "yes", "no"):
            return text in ("true", "1", "yes")
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is not None and typ is float:
            return number
        if number is not None and typ is int and number.is_integer():
            return int(number)
    elif typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif typ is int and isinstance(value, float) and value.is_integer() and not strict:
        return int(value)
    raise ValueError(f"{where} must be {typ.__name__}, got {value!r}")
