"""Model configuration: sizes plus one field per pluggable slot.

A `ModelConfig` is frozen and plain data, so it can be hashed into a run id, dumped beside every
result and rebuilt from JSON. `validate()` is the one place where a user's mistake in the model
config turns into a one-line `ValueError`; everything downstream may assume a valid config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

# The slot fields of ModelConfig, in the order they are listed to users.
SLOT_FIELDS = (
    "heads",
    "attention",
    "position",
    "qk_norm",
    "norm",
    "norm_placement",
    "mlp",
    "residual",
    "init",
)

# The run-id rule, in one place. The id scheme was frozen with these fields of each dataclass a
# run id covers; any field added since is written into the id's dict only while it differs from
# its default. A new field therefore needs no list entry: every run that leaves it alone keeps
# the id it always had, and committed records stay resumable. These tuples are never edited.
ID_SCHEME_FIELDS: dict[str, tuple[str, ...]] = {
    "ModelConfig": (
        "vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias",
        "tie_weights", "heads", "attention", "position", "norm", "norm_placement", "mlp",
        "residual",
    ),
    "TrainConfig": (
        "batch_size", "lr", "min_lr_frac", "warmup_frac", "weight_decay", "beta1", "beta2",
        "grad_clip", "eval_every", "eval_batches", "eval_batch_size", "compile", "amp",
        "timing_warmup", "probes", "save_checkpoint",
    ),
}  # fmt: skip


def id_dict(obj) -> dict:
    """`dataclasses.asdict(obj)` less the fields added after the id scheme was frozen (those
    not in `ID_SCHEME_FIELDS[type(obj).__name__]`) that hold their default value."""
    frozen = ID_SCHEME_FIELDS[type(obj).__name__]
    d = dataclasses.asdict(obj)
    for f in dataclasses.fields(obj):
        if f.name not in frozen and d[f.name] == f.default:
            del d[f.name]
    return d


def late_fields(cls) -> tuple[str, ...]:
    """The fields of dataclass `cls` added after the id scheme was frozen."""
    frozen = ID_SCHEME_FIELDS[cls.__name__]
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in frozen)


# Checks that need more than this file knows (the registry adds its own: are the slot names
# registered, does each chosen block accept this config). Keeping them as a list that others
# append to means this module imports nothing from the registry.
VALIDATORS: list[Callable[[ModelConfig], None]] = []

# (slot, block name) -> the block's frozen options dataclass; the registry fills it (see
# variants/options.py), so `options_for` needs no import of the registry.
OPTION_CLASSES: dict[tuple[str, str], type] = {}


def _canonical_options(given) -> tuple:
    """{slot: {key: value}} or its tuple form -> the sorted, hashable tuple form, empty slots
    dropped (a record read back from JSON gives dicts or lists; both land here)."""
    try:
        slots = given.items() if isinstance(given, dict) else given
        out = []
        for slot, values in slots:
            pairs = values.items() if isinstance(values, dict) else values
            pairs = tuple(
                sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in pairs)
            )
            if pairs:
                out.append((str(slot), pairs))
        return tuple(sorted(out))
    except (TypeError, ValueError):
        raise ValueError(f"block_options must be {{slot: {{key: value}}}}, got {given!r}") from None


@dataclass(frozen=True)
class ModelConfig:
    # sizes
    vocab_size: int = 65
    block_size: int = 64  # context length the model is trained at (and learned positions cover)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_kv_head: int = 0  # k/v heads (GQA/MQA); 0: one per query head, plain multi-head attention
    dropout: float = 0.0
    bias: bool = False  # bias in Linear and LayerNorm layers
    tie_weights: bool = True  # share the token embedding with the output head
    # attention scores and output logits
    attn_window: int = 0  # >0: each query sees only the last attn_window keys (itself included)
    attn_softcap: float = 0.0  # >0: attention scores s -> cap·tanh(s/cap) (Gemma 2)
    logit_softcap: float = 0.0  # >0: output logits z -> cap·tanh(z/cap) (Gemma 2, modded-nanogpt)
    # slots: the first choice listed in the registry is the baseline
    heads: str = "fused"
    attention: str = "sdpa"
    position: str = "learned"
    qk_norm: str = "none"
    norm: str = "layernorm"
    norm_placement: str = "pre"
    mlp: str = "gelu"
    residual: str = "on"
    init: str = "gpt2"
    # the chosen blocks' own options, non-default values only (see variants/options.py)
    block_options: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "block_options", _canonical_options(self.block_options))

    def options_for(self, slot: str):
        """The options dataclass of the block chosen for `slot`, defaults filled in (None for a
        block that declares none)."""
        cls = OPTION_CLASSES.get((slot, getattr(self, slot)))
        given = dict(dict(self.block_options).get(slot, ()))
        return cls(**given) if cls is not None else None

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """The number of k/v heads actually built (n_kv_head, or n_head when it is 0)."""
        return self.n_kv_head or self.n_head

    def replace(self, **changes) -> ModelConfig:
        """A copy with `changes` applied; unknown keys are an error, never silently ignored."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown model config key(s) {unknown}; valid keys: {valid}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = id_dict(self)
        if "block_options" in d:  # as a readable table in records: {slot: {key: value}}
            d["block_options"] = {slot: dict(values) for slot, values in self.block_options}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls().replace(**d)

    def validate(self) -> ModelConfig:
        """Raise a one-line ValueError naming the bad value and what is valid; return self."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"choose n_head among the divisors of {self.n_embd}"
            )
        if (
            not isinstance(self.n_kv_head, int)
            or self.n_kv_head < 0
            or (self.n_head % self.kv_heads)
        ):
            raise ValueError(
                f"n_kv_head={self.n_kv_head!r} must divide n_head={self.n_head} (each k/v head "
                "serves a group of query heads); 0 means one per query head"
            )
        if not isinstance(self.attn_window, int) or self.attn_window < 0:
            raise ValueError(
                f"attn_window must be a whole number of tokens >= 0 (0: no window), "
                f"got {self.attn_window!r}"
            )
        for name in ("attn_softcap", "logit_softcap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (0: off), got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for check in VALIDATORS:
            check(self)
        return self


# Size presets. `tiny` trains on a laptop CPU in minutes; `small` is the classic char-level GPU
# config. `micro` exists for fast tests.
PRESETS: dict[str, dict] = {
    "micro": dict(n_layer=2, n_head=2, n_embd=32, block_size=32),
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    "medium": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
}


def preset(name: str, **overrides) -> ModelConfig:
    """The named size preset with `overrides` applied (e.g. vocab_size from the task)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model size {name!r}; valid choices: {', '.join(PRESETS)}")
    return ModelConfig().replace(**PRESETS[name]).replace(**overrides)
