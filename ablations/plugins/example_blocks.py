"""One plugin block for every slot: what `--plugin` can add without editing the suite.

    python ablations/run.py --plugin ablations/plugins/example_blocks.py --variant geglu

Each block has the constructor and shapes of its siblings (see `variants/registry.py`), so one
`register` line makes it a choice and one `register_variant` line a named variant. None of them
defines `init_weights`: the model gives such blocks a default init (`variants.init.default_init`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from variants.attention import allowed_keys, repeat_kv
from variants.position import NoRotation, PositionScheme
from variants.registry import register, register_variant


@register("heads", "shared-qk")
class SharedQKHeads(nn.Module):
    """Keys are the queries (Reformer's shared-QK attention): one projection fewer."""

    def __init__(self, cfg, attend, qk):
        super().__init__()
        self.n_head, self.attend, self.qk = cfg.n_head, attend, qk
        self.c_attn = nn.Linear(cfg.n_embd, 2 * cfg.n_embd, bias=cfg.bias)  # q (= k) and v
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in self.c_attn(x).split(C, -1))
        q, k = self.qk(q, q)
        y = self.attend(q, k, v, 0.0)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


@register("attention", "sigmoid")
def sigmoid_attention(q, k, v, dropout_p=0.0, mods=None):
    """Sigmoid attention (Ramapuram et al., 2024): sigmoid(s - ln T) in place of the softmax."""
    k, v = repeat_kv(q, k), repeat_kv(q, v)
    T = q.size(-2)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, T)
    if mods is not None and mods.bias is not None:
        s = s + mods.bias
    window = mods.window if mods is not None else 0
    w = torch.sigmoid(s - math.log(T)) * allowed_keys(T, window, q.device)
    return w @ v


class SinusoidalPositions(nn.Module):
    """The 2017 Transformer's fixed sine/cosine table, computed for any length."""

    def __init__(self, cfg):
        super().__init__()
        half = torch.arange(0, cfg.n_embd, 2, dtype=torch.float32)
        self.register_buffer("inv_freq", 10000.0 ** (-half / cfg.n_embd), persistent=False)

    def forward(self, x):  # (B, T, C)
        pos = torch.arange(x.size(1), device=x.device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq)  # (T, C/2)
        return x + torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)


register("position", "sinusoidal")(PositionScheme(embedding=SinusoidalPositions, rotary=NoRotation))


@register("qk_norm", "l2")
class L2QKNorm(nn.Module):
    """Cosine attention: unit q and k per head, scaled by a learned temperature."""

    def __init__(self, cfg):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(math.sqrt(cfg.head_size)))

    def forward(self, q, k):
        return F.normalize(q, dim=-1) * self.scale, F.normalize(k, dim=-1)


@register("norm", "scalenorm")
class ScaleNorm(nn.Module):
    """ScaleNorm (Nguyen & Salazar, 2019): g · x / ||x||, one learned scalar."""

    def __init__(self, cfg):
        super().__init__()
        self.g = nn.Parameter(torch.tensor(math.sqrt(cfg.n_embd)))

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        return self.g * x / x.norm(dim=-1, keepdim=True).clamp_min(1e-5)


@register("norm_placement", "sandwich")
class SandwichBlock(nn.Module):
    """Sandwich norm (CogView): a norm before and after each branch, x + norm(F(norm(x)))."""

    final_norm = True

    def __init__(self, cfg, attn, mlp, make_norm, residual):
        super().__init__()
        self.attn, self.mlp, self.residual = attn, mlp, residual
        self.norms = nn.ModuleList(make_norm(cfg) for _ in range(4))

    def forward(self, x):
        x = self.residual(x, self.norms[1](self.attn(self.norms[0](x))))
        return self.residual(x, self.norms[3](self.mlp(self.norms[2](x))))


@register("mlp", "geglu")
class GeGLU(nn.Module):
    """GeGLU (Shazeer, 2020): GELU-gated, hidden 8d/3 so that it has the GELU MLP's size."""

    def __init__(self, cfg):
        super().__init__()
        h = round(8 * cfg.n_embd / 3)
        self.c_fc = nn.Linear(cfg.n_embd, 2 * h, bias=cfg.bias)  # gate and value in one matmul
        self.c_proj = nn.Linear(h, cfg.n_embd, bias=cfg.bias)

    def forward(self, x):
        gate, value = self.c_fc(x).chunk(2, dim=-1)
        return self.c_proj(F.gelu(gate) * value)


@register("residual", "half")
def half_residual(x, fx):
    """x + F(x)/2: a damped skip path, each branch's write halved."""
    return x + 0.5 * fx


@register("init", "small")
def small_init(cfg):
    """Small init (Nguyen & Salazar, 2019): std √(2/(5d)) everywhere, GPT-2's depth scaling on
    the residual projections."""
    std = math.sqrt(2 / (5 * cfg.n_embd))
    return std, std / math.sqrt(2 * cfg.n_layer)


# one named variant per block above: (name, description, slot, choice)
for name, description, slot, choice in (
    ("shared-qk", "keys are the queries (Reformer)", "heads", "shared-qk"),
    ("sigmoid-attention", "sigmoid(s - ln T) instead of softmax", "attention", "sigmoid"),
    ("sinusoidal", "fixed sine/cosine positions", "position", "sinusoidal"),
    ("cosine-attention", "unit q, k with a learned temperature", "qk_norm", "l2"),
    ("scalenorm", "ScaleNorm instead of LayerNorm", "norm", "scalenorm"),
    ("sandwich-norm", "a norm before and after each branch", "norm_placement", "sandwich"),
    ("geglu", "GeGLU MLP, hidden 8d/3", "mlp", "geglu"),
    ("half-residual", "x + F(x)/2", "residual", "half"),
    ("small-init", "std √(2/(5d)) (small init)", "init", "small"),
):
    register_variant(name, description, **{slot: choice})
