"""Every pluggable block by name, and the named variants built from them.

`SLOTS[slot][name]` is the builder for one choice of one slot; the first entry of each slot is
the baseline. A user adds their own block without editing this file:

    from variants.registry import register
    @register("norm", "scalenorm")
    class ScaleNorm(nn.Module):
        def __init__(self, cfg): ...

and a named variant with `register_variant("scalenorm", "ScaleNorm instead of LayerNorm",
norm="scalenorm")`. A block with knobs of its own declares them as a small frozen dataclass,
`@register("mlp", "wide", options=WideOptions)`, reads them with `cfg.options_for("mlp")`, and a
variant sets them with `register_variant(..., mlp="wide", options={"mlp": {"mult": 8}})` (see
variants/options.py). Each slot is a `variants.named.Registry`, and so is `VARIANTS`.

Every builder of a slot takes the same arguments as its siblings:
  heads(cfg, attend, qk)       nn.Module (B, T, C) -> (B, T, C); calls qk(q, k) on (B, nh, T, hs)
                               and attend(q, k, v, dropout_p) -> (B, nh, T, hs)
  attention                    kernel (q, k, v, dropout_p=0.0, mods=None) -> y, causal; k and v
                               may have fewer heads than q; `mods` is an attention.ScoreMods
                               (a kernel that takes none sets `plain_only = True`)
  position                     PositionScheme(embedding(cfg), rotary(cfg), optional bias(cfg))
  qk_norm(cfg)                 nn.Module (q, k) -> (q, k), per head, before the rotation
  norm(cfg)                    nn.Module (B, T, C) -> (B, T, C)
  norm_placement(cfg, attn, mlp, make_norm, residual)   the block wiring (see block.py)
  mlp(cfg)                     nn.Module (B, T, C) -> (B, T, C)
  residual                     function (x, fx) -> y
  init                         function cfg -> (std, proj_std)
Any choice may carry `check(cfg)`, which raises a one-line ValueError for a config it cannot
build (the Triton kernel without a GPU, RoPE with an odd head size, ...); a heads or mlp block
may carry `init_weights(std, proj_std)` and otherwise gets `init.default_init`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from variants import attention, block, config, init, mlp, norm, options, position, qk_norm, residual
from variants.config import SLOT_FIELDS, ModelConfig
from variants.named import Registry

# slot -> Registry of its choices; plural "choices" keeps the one-line error users know:
# "unknown mlp 'gleu'; valid choices: gelu, swiglu, relu2"
SLOTS: dict[str, Registry] = {slot: Registry(slot, plural="choices") for slot in SLOT_FIELDS}


def register(slot: str, name: str, *, options: type | None = None, description: str = "",
             replace: bool = True):  # fmt: skip
    """Decorator: make `obj` available as choice `name` of `slot`. `options` is the block's own
    frozen dataclass of knobs (see variants/options.py); the block reads them with
    `cfg.options_for(slot)`. A name registered again is replaced, except that a plugin file
    (`--plugin`) can never replace a built-in's or another plugin's (see `Registry`)."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; valid slots: {', '.join(SLOTS)}")

    def deco(obj):
        SLOTS[slot].register(name, obj, description=description, replace=replace)
        config.OPTION_CLASSES.pop((slot, name), None)
        if options is not None:
            config.OPTION_CLASSES[(slot, name)] = options
        return obj

    return deco


for _slot, _choices in {
    "heads": {"fused": attention.FusedHeads, "separate": attention.SeparateHeads},
    "attention": {
        "sdpa": attention.sdpa_attention,
        "naive": attention.naive_attention,
        "triton": attention.triton_attention,
    },
    "position": {
        "learned": position.LEARNED,
        "rope": position.ROPE,
        "none": position.NO_POSITION,
        "alibi": position.ALIBI,
    },
    "qk_norm": {"none": qk_norm.NoQKNorm, "rmsnorm": qk_norm.QKRMSNorm},
    "norm": {"layernorm": norm.LayerNorm, "rmsnorm": norm.RMSNorm},
    "norm_placement": {
        "pre": block.PreNormBlock,
        "post": block.PostNormBlock,
        "parallel": block.ParallelBlock,
    },
    "mlp": {"gelu": mlp.GeluMLP, "swiglu": mlp.SwiGLU, "relu2": mlp.ReLU2MLP},
    "residual": {"on": residual.residual_add, "off": residual.no_residual},
    "init": {"gpt2": init.gpt2_init, "zero-proj": init.zero_proj_init},
}.items():
    for _name, _obj in _choices.items():
        register(_slot, _name, options=getattr(_obj, "Options", None))(_obj)


def check_slots(cfg: ModelConfig) -> None:
    """Every slot names a registered choice, every block option belongs to a chosen block that
    declares it, and every chosen block accepts the config."""
    for slot in SLOT_FIELDS:
        SLOTS[slot].get(getattr(cfg, slot))
    options.check_block_options(cfg)
    _check_score_changes(cfg)  # a config error on any machine: before the hardware checks
    _check_per_head_bias(cfg)
    for slot in SLOT_FIELDS:
        check = getattr(SLOTS[slot][getattr(cfg, slot)], "check", None)
        if check is not None:
            check(cfg)


def _check_per_head_bias(cfg: ModelConfig) -> None:
    """Heads that call the kernel one head at a time cannot give each head its own slice of a
    position scheme's (nh, T, T) bias."""
    heads = SLOTS["heads"][cfg.heads]
    scheme = SLOTS["position"][cfg.position]
    if getattr(heads, "one_head_at_a_time", False) and scheme.bias is not None:
        raise ValueError(
            f"heads {cfg.heads!r} calls the kernel one head at a time, so it cannot give each "
            f"head its own {scheme.label or 'attention'} bias (position {cfg.position!r}); "
            "use heads 'fused'"
        )


def _check_score_changes(cfg: ModelConfig) -> None:
    """A kernel marked `plain_only` takes no ScoreMods: refuse any config that would give it
    some (a position scheme with a bias, a window, an attention cap), whatever their source."""
    if not getattr(SLOTS["attention"][cfg.attention], "plain_only", False):
        return
    changes = [
        what
        for what, used in (
            (
                f"the attention bias of position {cfg.position!r}",
                SLOTS["position"][cfg.position].bias,
            ),
            (f"a window (attn_window={cfg.attn_window})", cfg.attn_window),
            (f"a score cap (attn_softcap={cfg.attn_softcap})", cfg.attn_softcap),
        )
        if used
    ]
    if changes:
        raise ValueError(
            f"attention {cfg.attention!r} computes plain causal attention only, and this config "
            f"adds {', '.join(changes)}; use attention 'sdpa'"
        )


config.VALIDATORS.append(check_slots)  # ModelConfig.validate() runs it; config imports nothing


def build(slot: str, name: str):
    """The builder registered for `name` in `slot` (one-line ValueError if there is none)."""
    return SLOTS[slot].get(name)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # slot -> {key: value}: the blocks' own knobs

    def apply(self, cfg: ModelConfig) -> ModelConfig:
        cfg = cfg.replace(**self.overrides)
        return options.with_block_options(cfg, self.options) if self.options else cfg

    def diff(self, base: ModelConfig | None = None) -> str:
        """One line: what this variant changes relative to the baseline config."""
        base = base or ModelConfig()
        if not self.overrides and not self.options:
            return "(the reference)"
        changes = [f"{k}: {getattr(base, k)} → {v}" for k, v in self.overrides.items()]
        new = self.apply(base)
        for slot, values in self.options.items():
            before = new.replace(block_options=()).options_for(slot)
            changes += [f"{slot}.{k}: {getattr(before, k)} → {v}" for k, v in values.items()]
        return ", ".join(changes)


VARIANTS: Registry[Variant] = Registry("variant")


def register_variant(name: str, description: str, *, options: dict | None = None,
                     replace: bool = True, **overrides) -> Variant:  # fmt: skip
    """A named variant: the baseline with `overrides` (ModelConfig fields) and `options`
    ({slot: {key: value}}, the chosen blocks' own knobs) applied. Both are checked here, so a
    typo fails where it is written. Registering a name again replaces it, except that a plugin
    can never replace a built-in's or another plugin's (see `Registry`)."""
    unknown = sorted(set(overrides) - set(ModelConfig.__dataclass_fields__) - {"block_options"})
    if unknown or "block_options" in overrides:
        bad = unknown or ["block_options"]
        raise ValueError(
            f"variant {name!r} overrides unknown config key(s) {bad}"
            + ("; pass a block's own knobs as options={slot: {key: value}}" if not unknown else "")
        )
    variant = Variant(name, description, dict(overrides), _nested(options or {}))
    variant.apply(ModelConfig())  # unknown slot, key or a wrong type: one line, now
    return VARIANTS.register(name, variant, description=description, replace=replace)


def _nested(opts: dict) -> dict:
    return {slot: dict(values) for slot, values in opts.items()}


def get_variant(name: str) -> Variant:
    return VARIANTS.get(name)


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
# The blocks of current speedruns and open models, one change each, then their combination.
register_variant("qk-norm", "RMSNorm on each head's q and k (learned gain)", qk_norm="rmsnorm")
register_variant("relu2", "ReLU² MLP (Primer), same 4d hidden width and parameters", mlp="relu2")
register_variant("gqa", "grouped-query attention: 2 k/v heads (4 query heads on tiny)", n_kv_head=2)
register_variant("mqa", "multi-query attention: one k/v head for all query heads", n_kv_head=1)
register_variant("alibi", "ALiBi linear distance biases, no position embedding", position="alibi")
register_variant("softcap", "output logits soft-capped at 15 (15·tanh(z/15))", logit_softcap=15.0)
register_variant("sliding-window", "each query sees only the last 16 tokens", attn_window=16)
register_variant(
    "parallel-block", "attention and MLP read one normed input (GPT-J)", norm_placement="parallel"
)
register_variant("zero-init", "residual projections start at zero", init="zero-proj")
register_variant(
    "speedrun",
    "rope + qk-norm + relu2 + rmsnorm + zero-init + softcap (modded-nanogpt's set)",
    position="rope",
    qk_norm="rmsnorm",
    mlp="relu2",
    norm="rmsnorm",
    init="zero-proj",
    logit_softcap=15.0,
)
