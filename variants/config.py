"""Model configuration: sizes plus one field per pluggable slot.

A `ModelConfig` is frozen and plain data, so it can be hashed into a run id, dumped beside every
result and rebuilt from JSON. `validate()` is the one place where a user's mistake in the model
config turns into a one-line `ValueError`; everything downstream may assume a valid config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The slot fields of ModelConfig, in the order they are listed to users.
SLOT_FIELDS = ("heads", "attention", "position", "norm", "norm_placement", "mlp", "residual")


# Fields added after records were first committed: each is written into a config's dict (and so
# into the run id) only when it differs from its default, so every run that does not use it
# keeps the id it always had and committed records stay resumable.
LATE_FIELDS: tuple[str, ...] = ()


def drop_late_defaults(obj, late: tuple[str, ...]) -> dict:
    """`dataclasses.asdict(obj)` without the fields of `late` that hold their default value."""
    d = dataclasses.asdict(obj)
    for f in dataclasses.fields(obj):
        if f.name in late and d[f.name] == f.default:
            del d[f.name]
    return d


@dataclass(frozen=True)
class ModelConfig:
    # sizes
    vocab_size: int = 65
    block_size: int = 64  # context length: the longest sequence the model accepts
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # bias in Linear and LayerNorm layers
    tie_weights: bool = True  # share the token embedding with the output head
    # slots: the first choice listed in the registry is the baseline
    heads: str = "fused"
    attention: str = "sdpa"
    position: str = "learned"
    norm: str = "layernorm"
    norm_placement: str = "pre"
    mlp: str = "gelu"
    residual: str = "on"

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def replace(self, **changes) -> ModelConfig:
        """A copy with `changes` applied; unknown keys are an error, never silently ignored."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown model config key(s) {unknown}; valid keys: {valid}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return drop_late_defaults(self, LATE_FIELDS)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls().replace(**d)

    def validate(self) -> ModelConfig:
        """Raise a one-line ValueError naming the bad value and what is valid; return self."""
        from variants.registry import SLOTS  # late import: registry imports the block modules

        for slot in SLOT_FIELDS:
            value = getattr(self, slot)
            if value not in SLOTS[slot]:
                choices = ", ".join(SLOTS[slot])
                raise ValueError(f"unknown {slot} {value!r}; valid choices: {choices}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"choose n_head among the divisors of {self.n_embd}"
            )
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(
                f"rope needs an even head size, got n_embd/n_head = {self.head_size}; "
                "change n_embd or n_head"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        check = getattr(SLOTS["attention"][self.attention], "check", None)
        if check is not None:
            check(self)  # e.g. the Triton kernel: is there a GPU or an interpreter?
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
