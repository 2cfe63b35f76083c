"""Causal self-attention: two ways to organise the heads, three kernels to compute them.

Heads (slot `heads`) own the weights and map (B, T, C) -> (B, T, C):
  * `SeparateHeads`: the lecture's `Head` modules in an `nn.ModuleList`, run one after another and
    joined with `torch.cat(..., dim=-1)`.
  * `FusedHeads`: one qkv projection; heads become a batch dimension, so one kernel call does all.

Kernels (slot `attention`) are plain functions (q, k, v, dropout_p) -> y on (B, nh, T, hs), always
causal. Both head layouts call the same kernel, so the two slots vary independently.

Weight mapping between the two layouts (what `to_fused_qkv` / `load_fused_qkv` implement):
the fused `c_attn.weight` has shape (3C, C); rows [0, C) are the queries, [C, 2C) the keys,
[2C, 3C) the values, and inside each block head h owns rows [h*hs, (h+1)*hs). So separate head h's
`query.weight` is `c_attn.weight[h*hs:(h+1)*hs]`, its `key.weight` is
`c_attn.weight[C + h*hs : C + (h+1)*hs]`, and its `value.weight` starts at row 2C + h*hs.
This is the order in which `FusedHeads` splits its output into (q, k, v) and then into heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from variants.config import ModelConfig
from variants.init import init_linear

# ----------------------------------------------------------------------------------------------
# kernels: (B, nh, T, hs) x3 -> (B, nh, T, hs), causal


def naive_attention(q, k, v, dropout_p: float = 0.0):
    """The textbook formula, materialising the (T, T) score matrix: softmax(QKᵀ/√d + mask) V."""
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, nh, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~causal, float("-inf"))
    att = F.softmax(att, dim=-1)
    if dropout_p > 0.0:
        att = F.dropout(att, p=dropout_p)
    return att @ v  # (B, nh, T, hs)


def sdpa_attention(q, k, v, dropout_p: float = 0.0):
    """PyTorch's fused scaled_dot_product_attention (flash / memory-efficient backends)."""
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


def triton_attention(q, k, v, dropout_p: float = 0.0):
    """Our FlashAttention-2 kernel in Triton (variants/kernels/flash_attn.py)."""
    from variants.kernels.flash_attn import flash_attention

    return flash_attention(q, k, v, causal=True)


def _check_triton(cfg: ModelConfig) -> None:
    """Fail at model build, with one line, when the Triton kernel cannot run here."""
    if cfg.dropout > 0.0:
        raise ValueError(
            f"attention 'triton' has no attention dropout, got dropout={cfg.dropout}; "
            "set dropout=0 or use attention 'sdpa'"
        )
    try:
        from variants.kernels.flash_attn import triton_available
    except ImportError as err:  # triton is not installed (e.g. not Linux)
        raise ValueError(f"attention 'triton' needs the triton package ({err})") from None
    ok, why = triton_available()
    if not ok:
        raise ValueError(why)


triton_attention.check = _check_triton


def _dropout_p(module: nn.Module, p: float) -> float:
    return p if module.training else 0.0


# ----------------------------------------------------------------------------------------------
# heads


class Head(nn.Module):
    """One head of causal self-attention (the lecture's `Head`): (B, T, C) -> (B, T, hs)."""

    def __init__(self, cfg: ModelConfig, kernel, rotary: nn.Module):
        super().__init__()
        hs = cfg.head_size
        self.key = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.query = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.value = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.kernel = kernel
        self.rotary = rotary  # shared with the sibling heads; holds no parameters
        self.dropout = cfg.dropout

    def forward(self, x):
        # a kernel works on (B, nh, T, hs): this head is a batch of one head
        q = self.query(x).unsqueeze(1)  # (B, 1, T, hs)
        k = self.key(x).unsqueeze(1)
        v = self.value(x).unsqueeze(1)
        q, k = self.rotary(q, k)
        y = self.kernel(q, k, v, _dropout_p(self, self.dropout))
        return y.squeeze(1)  # (B, T, hs)


class SeparateHeads(nn.Module):
    """Multi-head attention as a list of independent `Head` modules, concatenated."""

    def __init__(self, cfg: ModelConfig, kernel, rotary: nn.Module):
        super().__init__()
        self.heads = nn.ModuleList(Head(cfg, kernel, rotary) for _ in range(cfg.n_head))
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        y = torch.cat([h(x) for h in self.heads], dim=-1)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    # --- the mapping to and from the fused layout (see module docstring) ---
    def to_fused_qkv(self) -> torch.Tensor:
        """The equivalent fused (3C, C) weight (and (3C,) bias if any) as a tuple."""
        parts = [[h.query, h.key, h.value][i] for i in range(3) for h in self.heads]
        w = torch.cat([p.weight for p in parts], dim=0)
        b = torch.cat([p.bias for p in parts], dim=0) if parts[0].bias is not None else None
        return w, b

    @torch.no_grad()
    def load_fused_qkv(self, w: torch.Tensor, b: torch.Tensor | None = None) -> None:
        C = w.size(1)
        hs = C // len(self.heads)
        for i, name in enumerate(("query", "key", "value")):
            for h, head in enumerate(self.heads):
                rows = slice(i * C + h * hs, i * C + (h + 1) * hs)
                getattr(head, name).weight.copy_(w[rows])
                if b is not None:
                    getattr(head, name).bias.copy_(b[rows])

    @torch.no_grad()
    def init_weights(self, std: float, proj_std: float) -> None:
        # Draw the weights in the fused layout and scatter them, so that with the same RNG state
        # separate and fused heads start bit-identical.
        C = self.c_proj.in_features
        w = torch.empty(3 * C, C, device=self.c_proj.weight.device).normal_(0.0, std)
        b = torch.zeros(3 * C, device=w.device) if self.heads[0].query.bias is not None else None
        self.load_fused_qkv(w, b)
        init_linear(self.c_proj, proj_std)


class FusedHeads(nn.Module):
    """All heads in one module: one qkv matmul, heads as a batch dimension, one kernel call."""

    def __init__(self, cfg: ModelConfig, kernel, rotary: nn.Module):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.kernel = kernel
        self.rotary = rotary
        self.dropout = cfg.dropout

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        qkv = self.c_attn(x)  # (B, T, 3C)
        q, k, v = rearrange(qkv, "b t (three nh hs) -> three b nh t hs", three=3, nh=self.n_head)
        q, k = self.rotary(q, k)
        y = self.kernel(q, k, v, _dropout_p(self, self.dropout))  # (B, nh, T, hs)
        y = rearrange(y, "b nh t hs -> b t (nh hs)")  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))

    def to_fused_qkv(self):
        return self.c_attn.weight, self.c_attn.bias

    @torch.no_grad()
    def load_fused_qkv(self, w: torch.Tensor, b: torch.Tensor | None = None) -> None:
        self.c_attn.weight.copy_(w)
        if b is not None:
            self.c_attn.bias.copy_(b)

    @torch.no_grad()
    def init_weights(self, std: float, proj_std: float) -> None:
        init_linear(self.c_attn, std)
        init_linear(self.c_proj, proj_std)
