"""Transformer blocks: where the norms sit relative to the residual path.

Both wirings take the same parts — attention, MLP, a norm builder and a residual function — so
the `residual` slot (on/off) composes with either placement.
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
