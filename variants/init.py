"""Weight initialisation: the schemes of slot `init`, and the helpers the blocks share.

A scheme maps the config to (std, proj_std): the std of every weight matrix, and the std of the
projections that write into the residual stream (each block's `c_proj`).
"""

import math

import torch.nn as nn


def init_linear(layer: nn.Linear, std: float) -> None:
    """normal(0, std) weights (zeros at std 0) and zero bias, GPT-2 style."""
    if std == 0.0:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def default_init(module: nn.Module, std: float, proj_std: float) -> None:
    """For a plugin block without `init_weights`: every Linear as `init_linear(std)`, except those
    named `c_proj` (our name for a projection into the residual stream), which get `proj_std`;
    every Embedding normal(0, std). Norms keep the init their constructor gave them."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            init_linear(m, proj_std if name.rsplit(".", 1)[-1] == "c_proj" else std)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)


def gpt2_init(cfg) -> tuple[float, float]:
    """N(0, 0.02), and 0.02/√(2·n_layer) for the residual projections, so the stream's variance
    does not grow with depth and each block starts close to the identity."""
    return 0.02, 0.02 / math.sqrt(2 * cfg.n_layer)


def zero_proj_init(cfg) -> tuple[float, float]:
    """modded-nanogpt's choice: the residual projections start at exactly zero, so every block
    starts as the identity and the model as embeddings -> head."""
    return 0.02, 0.0
