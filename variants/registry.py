"""Every pluggable block by name, and the named variants built from them.

`SLOTS[slot][name]` is the builder for one choice of one slot; the first entry of each slot is
the baseline. A user adds their own block without editing this file:

    from variants.registry import register
    @register("norm", "scalenorm")
    class ScaleNorm(nn.Module):
        def __init__(self, cfg): ...

and a named variant with `register_variant("scalenorm", "ScaleNorm instead of LayerNorm",
norm="scalenorm")`. Every builder of a slot takes the same arguments as its siblings:
  heads(cfg, kernel, rotary)   nn.Module (B, T, C) -> (B, T, C)
  attention                    function (q, k, v, dropout_p) -> y, all (B, nh, T, hs), causal;
                               may carry a `.check(cfg)` that raises a one-line ValueError
  position                     PositionScheme(embedding(cfg), rotary(cfg))
  norm(cfg)                    nn.Module (B, T, C) -> (B, T, C)
  norm_placement(cfg, attn, mlp, make_norm, residual)   the block wiring (see model.py)
  mlp(cfg)                     nn.Module (B, T, C) -> (B, T, C), with init_weights(std, proj_std)
  residual                     function (x, fx) -> y
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from variants import attention, block, mlp, norm, position, residual
from variants.config import SLOT_FIELDS, ModelConfig

SLOTS: dict[str, dict[str, object]] = {
    "heads": {"fused": attention.FusedHeads, "separate": attention.SeparateHeads},
    "attention": {
        "sdpa": attention.sdpa_attention,
        "naive": attention.naive_attention,
        "triton": attention.triton_attention,
    },
    "position": {"learned": position.LEARNED, "rope": position.ROPE, "none": position.NO_POSITION},
    "norm": {"layernorm": norm.LayerNorm, "rmsnorm": norm.RMSNorm},
    "norm_placement": {"pre": block.PreNormBlock, "post": block.PostNormBlock},
    "mlp": {"gelu": mlp.GeluMLP, "swiglu": mlp.SwiGLU},
    "residual": {"on": residual.residual_add, "off": residual.no_residual},
}
assert tuple(SLOTS) == SLOT_FIELDS


def register(slot: str, name: str):
    """Decorator: make `obj` available as choice `name` of `slot`."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; valid slots: {', '.join(SLOTS)}")

    def deco(obj):
        SLOTS[slot][name] = obj
        return obj

    return deco


def build(slot: str, name: str):
    """The builder registered for `name` in `slot` (one-line ValueError if there is none)."""
    if name not in SLOTS[slot]:
        raise ValueError(f"unknown {slot} {name!r}; valid choices: {', '.join(SLOTS[slot])}")
    return SLOTS[slot][name]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: dict = field(default_factory=dict)

    def apply(self, cfg: ModelConfig) -> ModelConfig:
        return cfg.replace(**self.overrides)

    def diff(self, base: ModelConfig | None = None) -> str:
        """One line: what this variant changes relative to the baseline config."""
        base = base or ModelConfig()
        if not self.overrides:
            return "(the reference)"
        return ", ".join(f"{k}: {getattr(base, k)} → {v}" for k, v in self.overrides.items())


VARIANTS: dict[str, Variant] = {}


def register_variant(name: str, description: str, **overrides) -> Variant:
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ValueError(f"variant {name!r} overrides unknown config key(s) {unknown}")
    VARIANTS[name] = Variant(name, description, dict(overrides))
    return VARIANTS[name]


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    return VARIANTS[name]


# The named variants: the baseline plus exactly one change each, then combinations.
register_variant("baseline", "GPT-2: fused heads, SDPA, learned positions, pre-LayerNorm, GELU")
register_variant("separate-heads", "the lecture's Head modules, concatenated", heads="separate")
register_variant("naive-attention", "explicit masked softmax(QKᵀ/√d)V", attention="naive")
register_variant("flash-triton", "our FlashAttention-2 Triton kernel", attention="triton")
register_variant("rope", "rotary position embeddings on q and k", position="rope")
register_variant("no-position", "no position information at all", position="none")
register_variant("rmsnorm", "RMSNorm instead of LayerNorm", norm="rmsnorm")
register_variant(
    "post-norm", "norm after the residual add (2017 Transformer)", norm_placement="post"
)
register_variant("swiglu", "SwiGLU MLP, hidden 8d/3 to match GELU's parameters", mlp="swiglu")
register_variant("no-residual", "blocks compute x → F(x), no skip path", residual="off")
register_variant("modern", "rope + rmsnorm + swiglu", position="rope", norm="rmsnorm", mlp="swiglu")
