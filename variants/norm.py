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
    """x / sqrt(mean(x²) + eps) · weight over the last dimension, computed in float32."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)
