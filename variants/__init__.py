"""The model side: configs, pluggable blocks, the registry and the GPT built from them.

No timing, no files, no CLI here: measurement lives in `bench/`.
"""

from variants.config import PRESETS, ModelConfig, preset
from variants.model import GPT, build_model
from variants.options import parse_block_options, with_block_options
from variants.registry import SLOTS, VARIANTS, get_variant, register, register_variant

__all__ = [
    "GPT",
    "PRESETS",
    "SLOTS",
    "VARIANTS",
    "ModelConfig",
    "build_model",
    "get_variant",
    "parse_block_options",
    "preset",
    "register",
    "register_variant",
    "with_block_options",
]
