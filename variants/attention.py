"""Causal self-attention: how the heads are organised, and the kernels that compute them.

Heads (slot `heads`) own the weights and map (B, T, C) -> (B, T, C):
  * `SeparateHeads`: the lecture's `Head` modules in an `nn.ModuleList`, run one after another and
    joined with `torch.cat(..., dim=-1)`.
  * `FusedHeads`: one qkv projection; heads become a batch dimension, so one kernel call does all.
    It also builds fewer k/v heads than query heads (GQA/MQA, `n_kv_head`).
Every heads module is built as `heads(cfg, attend, qk)`, and between its projections and the
kernel it calls `qk(q, k)`: the per-head transforms of q and k (QK-norm, then RoPE), composed in
`QKTransform`. The kernel call is `attend(q, k, v, dropout_p)`.

Kernels (slot `attention`) are functions
    kernel(q, k, v, dropout_p=0.0, mods=None) -> y
on q (B, nh, T, hs) and k, v (B, nkv, T, hs), where nkv divides nh (query head h reads k/v head
h // (nh/nkv)); always causal. `mods` (a `ScoreMods`, or None for plain causal attention) carries
what a block changes about the scores: soft-capping, an additive bias (ALiBi), a window. The
model binds them once in `Attend`, so the plain case calls the kernel exactly as before and still
reaches SDPA's fused kernels (or our Triton kernel) at no extra cost.

Why SDPA with a float mask for bias and window, and an explicit path for soft-capping: torch's
`flex_attention` would take all three as a score modifier, but on CPU it has no backward
("FlexAttention does not support backward on CPU", torch 2.13), so it cannot train here. SDPA
takes a bias and a window as an additive float mask; only the (non-linear) cap needs the scores
materialised (`python bench/micro/bench_attention_paths.py` times the paths).

Weight mapping between the two layouts (what `to_fused_qkv` / `load_fused_qkv` implement):
the fused `c_attn.weight` has shape (3C, C); rows [0, C) are the queries, [C, 2C) the keys,
[2C, 3C) the values, and inside each block head h owns rows [h*hs, (h+1)*hs). So separate head h's
`query.weight` is `c_attn.weight[h*hs:(h+1)*hs]`, its `key.weight` is
`c_attn.weight[C + h*hs : C + (h+1)*hs]`, and its `value.weight` starts at row 2C + h*hs.
This is the order in which `FusedHeads` splits its output into (q, k, v) and then into heads.
With nkv k/v heads the key and value blocks have nkv*hs rows each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from variants.config import ModelConfig
from variants.init import init_linear

# ----------------------------------------------------------------------------------------------
# what a block changes about the scores


@dataclass(frozen=True)
class ScoreMods:
    """Changes to the causal scores s = q·kᵀ/√hs, applied in this order: soft-capping
    s -> softcap·tanh(s/softcap); adding `bias` (broadcastable to (nh, T, T), e.g. ALiBi); keeping
    key j for query i only when i - window < j <= i. Zero or None means "not used"."""

    softcap: float = 0.0
    bias: torch.Tensor | None = None
    window: int = 0


def allowed_keys(T: int, window: int, device) -> torch.Tensor:
    """(T, T) bool: True where query i may read key j (causal, and within the window if any)."""
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    ok = j <= i
    if window:
        ok &= j > i - window
    return ok


def additive_mask(mods: ScoreMods, T: int, device, dtype) -> torch.Tensor:
    """The bias and window of `mods` as one float mask for SDPA: bias where allowed, -inf
    elsewhere; (nh, T, T) with a bias, (T, T) without."""
    ok = allowed_keys(T, mods.window, device)
    bias = torch.zeros((), device=device, dtype=dtype) if mods.bias is None else mods.bias
    return bias.to(dtype).masked_fill(~ok, float("-inf"))


def repeat_kv(q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """k or v (B, nkv, T, hs) repeated to q's nh heads: head h reads k/v head h // (nh/nkv)."""
    n_rep = q.size(1) // kv.size(1)
    return kv if n_rep == 1 else kv.repeat_interleave(n_rep, dim=1)


# ----------------------------------------------------------------------------------------------
# kernels: q (B, nh, T, hs), k and v (B, nkv, T, hs) -> (B, nh, T, hs), causal


def naive_attention(q, k, v, dropout_p: float = 0.0, mods: ScoreMods | None = None):
    """The textbook formula, materialising the (T, T) score matrix: softmax(QKᵀ/√d + mask) V.
    Every score change is applied explicitly, so this is the reference for all of them."""
    T = q.size(-2)
    k, v = repeat_kv(q, k), repeat_kv(q, v)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, nh, T, T)
    mods = mods or ScoreMods()
    if mods.softcap:
        att = mods.softcap * torch.tanh(att / mods.softcap)
    if mods.bias is not None:
        att = att + mods.bias
    att = att.masked_fill(~allowed_keys(T, mods.window, q.device), float("-inf"))
    att = F.softmax(att, dim=-1)
    if dropout_p > 0.0:
        att = F.dropout(att, p=dropout_p)
    return att @ v  # (B, nh, T, hs)


def sdpa_attention(q, k, v, dropout_p: float = 0.0, mods: ScoreMods | None = None):
    """PyTorch's fused scaled_dot_product_attention (flash / memory-efficient backends)."""
    gqa = {"enable_gqa": True} if k.size(1) != q.size(1) else {}
    if mods is None:  # the plain case: SDPA's own causal path
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, **gqa)
    if mods.softcap:  # a non-linear change of the scores: SDPA cannot take it
        return naive_attention(q, k, v, dropout_p, mods)
    mask = additive_mask(mods, q.size(-2), q.device, q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, **gqa)


def triton_attention(q, k, v, dropout_p: float = 0.0, mods: ScoreMods | None = None):
    """Our FlashAttention-2 kernel in Triton (variants/kernels/flash_attn.py); plain causal
    attention only (`plain_only`: the registry refuses a config with score changes before a
    model is built, and a call with them is an error, never silently ignored)."""
    from variants.kernels.flash_attn import flash_attention

    if mods is not None:
        raise ValueError("attention 'triton' computes plain causal attention only")
    return flash_attention(q, repeat_kv(q, k), repeat_kv(q, v), causal=True)


def _check_triton(cfg: ModelConfig) -> None:
    """Fail at model build, with one line, when the Triton kernel cannot run here."""
    if cfg.dropout > 0.0:
        raise ValueError(
            f"attention 'triton' has no attention dropout, got dropout={cfg.dropout}; "
            "set dropout=0 or use attention 'sdpa'"
        )
    # imports without triton too (stand-ins there); triton_available says what is missing
    from variants.kernels.flash_attn import triton_available

    ok, why = triton_available()
    if not ok:
        raise ValueError(why)


triton_attention.check = _check_triton
triton_attention.plain_only = True  # no ScoreMods: see registry.check_slots
# off CUDA it runs under Triton's interpreter: correct, but no timing of it means anything
triton_attention.cuda_timings_only = True


class Attend(nn.Module):
    """A kernel with this model's score changes bound to it: (q, k, v, dropout_p) -> y.

    One per model, shared by every layer like the rotary cache. Heads call it exactly as they
    would call a bare kernel; without score changes it is that call, nothing more."""

    def __init__(self, cfg: ModelConfig, kernel, bias: nn.Module | None = None):
        super().__init__()
        self.kernel = kernel
        self.bias = bias  # T -> (nh, T, T) additive scores, e.g. ALiBi; None for most schemes
        self.softcap = cfg.attn_softcap
        self.window = cfg.attn_window

    @property
    def plain(self) -> bool:
        return self.bias is None and not self.softcap and not self.window

    def forward(self, q, k, v, dropout_p: float = 0.0):
        if self.plain:
            return self.kernel(q, k, v, dropout_p)
        bias = None if self.bias is None else self.bias(q.size(-2))
        return self.kernel(q, k, v, dropout_p, ScoreMods(self.softcap, bias, self.window))


class QKTransform(nn.Module):
    """The per-head transforms of q and k between projection and kernel, in order: a norm
    (QK-norm) and then the rotation of the position scheme (RoPE). (…, T, hs) x2 -> x2."""

    def __init__(self, norm: nn.Module, rotary: nn.Module):
        super().__init__()
        self.norm = norm  # per layer: it may hold parameters
        self.rotary = rotary  # shared by the whole model: only the cos/sin cache

    def forward(self, q, k):
        return self.rotary(*self.norm(q, k))


def _dropout_p(module: nn.Module, p: float) -> float:
    return p if module.training else 0.0


# ----------------------------------------------------------------------------------------------
# heads


class Head(nn.Module):
    """One head of causal self-attention (the lecture's `Head`): (B, T, C) -> (B, T, hs)."""

    def __init__(self, cfg: ModelConfig, attend, qk: nn.Module):
        super().__init__()
        hs = cfg.head_size
        self.key = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.query = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.value = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.kernel = attend
        self.qk = qk  # shared with the sibling heads
        self.dropout = cfg.dropout

    def forward(self, x):
        # a kernel works on (B, nh, T, hs): this head is a batch of one head
        q = self.query(x).unsqueeze(1)  # (B, 1, T, hs)
        k = self.key(x).unsqueeze(1)
        v = self.value(x).unsqueeze(1)
        q, k = self.qk(q, k)
        y = self.kernel(q, k, v, _dropout_p(self, self.dropout))
        return y.squeeze(1)  # (B, T, hs)


class SeparateHeads(nn.Module):
    """Multi-head attention as a list of independent `Head` modules, concatenated."""

    # the kernel sees one head at a time, so a per-head attention bias cannot reach it (the
    # registry refuses such a config: registry._check_per_head_bias)
    one_head_at_a_time = True

    def __init__(self, cfg: ModelConfig, attend, qk: nn.Module):
        super().__init__()
        self.heads = nn.ModuleList(Head(cfg, attend, qk) for _ in range(cfg.n_head))
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    @staticmethod
    def check(cfg: ModelConfig) -> None:
        if cfg.kv_heads != cfg.n_head:
            raise ValueError(
                f"heads 'separate' gives every head its own key and value, got "
                f"n_kv_head={cfg.n_kv_head}; use heads 'fused' for grouped k/v heads"
            )

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        y = torch.cat([h(x) for h in self.heads], dim=-1)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def qkv_rows(self) -> list[list[tuple[nn.Parameter, slice]]]:
        """Q, K and V as three matrices, each the rows of several weights stacked in the fused
        layout's order (head 0 first): what an optimizer that treats them apart (Muon) reads."""
        names = ("query", "key", "value")
        return [[(getattr(h, n).weight, slice(None)) for h in self.heads] for n in names]

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
    """All heads in one module: one qkv matmul, heads as a batch dimension, one kernel call.

    With n_kv_head < n_head (GQA; MQA at 1) the projection makes fewer keys and values, and each
    group of n_head/n_kv_head query heads reads one k/v head."""

    def __init__(self, cfg: ModelConfig, attend, qk: nn.Module):
        super().__init__()
        self.n_head, self.n_kv_head = cfg.n_head, cfg.kv_heads
        kv_dim = cfg.kv_heads * cfg.head_size
        self.split = (cfg.n_embd, kv_dim, kv_dim)  # widths of q, k, v in the projection
        self.c_attn = nn.Linear(cfg.n_embd, sum(self.split), bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.kernel = attend
        self.qk = qk
        self.dropout = cfg.dropout

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        q, k, v = self.c_attn(x).split(self.split, dim=-1)  # (B, T, C), (B, T, kv_dim) x2
        q = rearrange(q, "b t (nh hs) -> b nh t hs", nh=self.n_head)
        k = rearrange(k, "b t (nh hs) -> b nh t hs", nh=self.n_kv_head)
        v = rearrange(v, "b t (nh hs) -> b nh t hs", nh=self.n_kv_head)
        q, k = self.qk(q, k)
        y = self.kernel(q, k, v, _dropout_p(self, self.dropout))  # (B, nh, T, hs)
        y = rearrange(y, "b nh t hs -> b t (nh hs)")  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))

    def qkv_rows(self) -> list[list[tuple[nn.Parameter, slice]]]:
        """Q, K and V as three matrices: row ranges of the one fused weight (see SeparateHeads)."""
        C, kv, _ = self.split
        w = self.c_attn.weight
        return [[(w, slice(0, C))], [(w, slice(C, C + kv))], [(w, slice(C + kv, C + 2 * kv))]]

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
