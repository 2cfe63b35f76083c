"""Feed-forward blocks, (B, T, C) -> (B, T, C)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from variants.config import ModelConfig
from variants.init import init_linear


@dataclass(frozen=True)
class MLPOptions:
    """The two-matrix MLPs' own knob (`mlp.hidden_mult=2`): hidden width = hidden_mult·C."""

    hidden_mult: int = 4  # GPT-2's 4C


class GeluMLP(nn.Module):
    """The GPT-2 MLP: C -> hidden_mult·C (4C) -> GELU -> C."""

    Options = MLPOptions  # the registry registers it with the block

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.options_for("mlp").hidden_mult * cfg.n_embd
        self.c_fc = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    @staticmethod
    def check(cfg: ModelConfig) -> None:
        mult = cfg.options_for("mlp").hidden_mult
        if mult < 1:
            raise ValueError(
                f"mlp.hidden_mult must be at least 1 (hidden = mult·n_embd), got {mult}"
            )

    @staticmethod
    def act(h):
        return F.gelu(h)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))

    def init_weights(self, std: float, proj_std: float) -> None:
        init_linear(self.c_fc, std)
        init_linear(self.c_proj, proj_std)


class ReLU2MLP(GeluMLP):
    """ReLU² (So et al., 2021, "Primer"): C -> 4C -> ReLU(h)² -> C. The same two matrices as the
    GELU MLP, so the same parameters (and the same `hidden_mult` option); modded-nanogpt and
    nanochat use it."""

    @staticmethod
    def act(h):
        return F.relu(h).square()


def swiglu_hidden(n_embd: int, bias: bool = False) -> int:
    """Hidden width that gives SwiGLU (three C×h matrices) the parameters of the 4C GELU MLP
    (two C×4C matrices): 3·C·h = 8·C² → h = 8C/3. With biases both sides gain terms
    (GELU: 4C + C; SwiGLU: 2h + C), so solve 3Ch + 2h = 8C² + 4C instead. Rounded to the
    nearest integer, which keeps the counts within 1% for any C ≥ 16."""
    C = n_embd
    return round((8 * C * C + 4 * C * bias) / (3 * C + 2 * bias))


class SwiGLU(nn.Module):
    """SwiGLU (Shazeer, 2020): (SiLU(x W) ⊙ x V) W2, with h = 8C/3 to match the GELU MLP's size."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = swiglu_hidden(cfg.n_embd, cfg.bias)
        self.w_gate = nn.Linear(cfg.n_embd, h, bias=cfg.bias)
        self.w_up = nn.Linear(cfg.n_embd, h, bias=cfg.bias)
        self.c_proj = nn.Linear(h, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.silu(self.w_gate(x)) * self.w_up(x)))

    def init_weights(self, std: float, proj_std: float) -> None:
        init_linear(self.w_gate, std)
        init_linear(self.w_up, std)
        init_linear(self.c_proj, proj_std)
