"""Normalisation layers, (B, T, C) -> (B, T, C), built from the model config."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from variants.config import ModelConfig


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's always has one when affine)."""

    def __init__(self, cfg: ModelConfig, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(cfg.n_embd))
        self.bias = nn.Parameter(torch.zeros(cfg.n_embd)) if cfg.bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich, 2019): x / sqrt(mean(x²) + eps) · w — no centring, no bias.

    Computed in float32 so that low-precision inputs do not lose the mean of squares.
    """

    def __init__(self, cfg: ModelConfig, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(cfg.n_embd))
        self.eps = eps

    def forward(self, x):
        return rms_normalise(x, self.weight, self.eps)


def rms_normalise(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x²) + eps) · weight over the last dimension, computed in float32.

    torch's `F.rms_norm`, the fastest path it offers (`python bench/micro/bench_block_paths.py`: on
    a CPU 7% faster than the five elementwise ops it replaces, and equal to them to the bit, values
    and gradients, in float32; `tests/test_variants.py` checks it against that formula). It is still
    about twice ATen's fused LayerNorm on a CPU, where torch has no fused RMSNorm kernel."""
    return F.rms_norm(x.float(), (x.size(-1),), weight.float(), eps).to(x.dtype)
