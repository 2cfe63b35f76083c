"""Transformer blocks: where the norms sit relative to the residual path.

A block keeps its attention and MLP as `self.attn` and `self.mlp` (the model initialises them
there). Every wiring takes the same parts (attention, MLP, a norm builder and a residual
function), so the `residual` slot (on/off) composes with any placement.
"""

from __future__ import annotations

import torch.nn as nn

from variants.config import ModelConfig


class PreNormBlock(nn.Module):
    """GPT-2 wiring: x + F(norm(x)). The residual stream itself is never normalised, which keeps
    a clean identity path from the output back to the embeddings."""

    final_norm = True  # the stream is un-normalised at the top, so the model adds a last norm

    def __init__(self, cfg: ModelConfig, attn: nn.Module, mlp: nn.Module, make_norm, residual):
        super().__init__()
        self.ln_1, self.attn = make_norm(cfg), attn
        self.ln_2, self.mlp = make_norm(cfg), mlp
        self.residual = residual

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        x = self.residual(x, self.attn(self.ln_1(x)))
        return self.residual(x, self.mlp(self.ln_2(x)))


class PostNormBlock(nn.Module):
    """Original Transformer wiring: norm(x + F(x)). Every block ends in a norm, so no final one."""

    final_norm = False

    def __init__(self, cfg: ModelConfig, attn: nn.Module, mlp: nn.Module, make_norm, residual):
        super().__init__()
        self.attn, self.ln_1 = attn, make_norm(cfg)
        self.mlp, self.ln_2 = mlp, make_norm(cfg)
        self.residual = residual

    def forward(self, x):
        x = self.ln_1(self.residual(x, self.attn(x)))
        return self.ln_2(self.residual(x, self.mlp(x)))


class ParallelBlock(nn.Module):
    """GPT-J / PaLM wiring: attention and MLP both read the same normed input and their outputs
    are summed into one residual add, x + Attn(norm(x)) + MLP(norm(x)). One norm per block, and
    the two branches can run at once (a speed trick on large models)."""

    final_norm = True

    def __init__(self, cfg: ModelConfig, attn: nn.Module, mlp: nn.Module, make_norm, residual):
        super().__init__()
        self.ln_1, self.attn, self.mlp = make_norm(cfg), attn, mlp
        self.residual = residual

    def forward(self, x):
        h = self.ln_1(x)
        return self.residual(x, self.attn(h) + self.mlp(h))
