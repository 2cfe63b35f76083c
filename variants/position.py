"""Position information: learned absolute embeddings, rotary embeddings (RoPE), ALiBi, or none.

A scheme acts in up to three places, so each slot value is a `PositionScheme` with a builder for
each:
  * `embedding(cfg)`: a module applied to the token embeddings at the model input,
    (B, T, C) -> (B, T, C);
  * `rotary(cfg)`: a module applied to q and k inside attention, (…, T, hs) x2 -> x2;
  * `bias(cfg)` (optional): a module T -> (nh, T, T) added to the attention scores.
Only the parts a scheme uses hold parameters, so every parameter of the model gets a gradient.
A scheme also says whether the model can read sequences longer than the context it was built
for (`bounded`: learned positions have no vector past block_size; the others extend).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from variants.config import ModelConfig
from variants.qk_norm import IdentityQK


class LearnedPositions(nn.Module):
    """GPT-2 style: a learned vector per absolute position, added to the token embedding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)

    def forward(self, x):  # (B, T, C)
        T = x.size(1)
        return x + self.wpe(torch.arange(T, device=x.device))  # broadcast over B


class NoEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()

    def forward(self, x):
        return x


NoRotation = IdentityQK  # schemes that do not rotate q and k


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al., 2021): rotate each pair of channels of q and k by an angle m·θ_i.

    Pair i of a head, (x_{2i}, x_{2i+1}), at position m is rotated by m·θ_i with
    θ_i = base^(-2i/hs). Then <R_m q, R_n k> depends on positions only through m − n, which is
    what makes RoPE a relative encoding. cos/sin are computed once for the whole context and kept
    as non-persistent buffers (they follow .to(device) but are not saved in checkpoints).
    """

    def __init__(self, cfg: ModelConfig, base: float = 10000.0):
        super().__init__()
        hs = cfg.head_size
        inv_freq = base ** (-torch.arange(0, hs, 2, dtype=torch.float32) / hs)  # (hs/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        angles = self._angles(0, cfg.block_size)
        self.register_buffer("cos", angles.cos(), persistent=False)  # (block_size, hs/2)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def _angles(self, start: int, stop: int):
        pos = torch.arange(start, stop, dtype=torch.float32, device=self.inv_freq.device)
        return torch.outer(pos, self.inv_freq)  # (stop - start, hs/2)

    def _cos_sin(self, offset: int, T: int):
        """cos and sin for positions offset..offset+T-1: from the cache within the context the
        model was built for, computed on the spot beyond it (longer-than-trained evaluation)."""
        if offset + T <= self.cos.size(0):
            return self.cos[offset : offset + T], self.sin[offset : offset + T]
        angles = self._angles(offset, offset + T)
        return angles.cos(), angles.sin()

    def rotate(self, x, offset: int = 0):
        """Rotate x (…, T, hs) as if its first row sat at position `offset`.

        Each channel pair (x_2i, x_2i+1) is read as the complex number x_2i + i·x_2i+1 and
        multiplied by e^{i·m·θ_i}: one complex product instead of four real products and a
        stack, ~2× faster forward+backward on CPU; computed in float32 whatever x's dtype."""
        rot = torch.complex(*self._cos_sin(offset, x.size(-2)))
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (…, T, hs/2)
        return torch.view_as_real(pairs * rot).flatten(-2).type_as(x)  # (…, T, hs)

    def forward(self, q, k):
        return self.rotate(q), self.rotate(k)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """The paper's head slopes (Press et al., 2022, sec. 3): for n a power of two, the geometric
    sequence 2^(-8/n), 2^(-16/n), …, 2^(-8); otherwise the slopes of the nearest lower power of
    two m, followed by every other slope of 2m, up to n heads."""
    m = 2 ** math.floor(math.log2(n_head))
    slopes = [2.0 ** (-8.0 * (i + 1) / m) for i in range(m)]
    if m < n_head:
        slopes += [2.0 ** (-8.0 * (i + 1) / (2 * m)) for i in range(0, 2 * m, 2)][: n_head - m]
    return torch.tensor(slopes, dtype=torch.float32)


class AlibiBias(nn.Module):
    """ALiBi: head h adds -slope_h·(i - j) to the score of query i on key j, a penalty linear
    in the distance. No parameters and no position table, so any length works."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(cfg.n_head), persistent=False)  # (nh,)
        self._cache: torch.Tensor | None = None  # the last bias: every layer asks for it

    def forward(self, T: int):
        cached = self._cache
        if cached is not None and cached.size(-1) == T and cached.device == self.slopes.device:
            return cached  # a constant (no parameters): safe to reuse across layers and steps
        pos = torch.arange(T, device=self.slopes.device, dtype=torch.float32)
        distance = pos[None, :] - pos[:, None]  # (T, T): j - i, <= 0 on the causal side
        self._cache = self.slopes[:, None, None] * distance  # (nh, T, T)
        return self._cache


def _check_rope(cfg: ModelConfig) -> None:
    if cfg.head_size % 2:
        raise ValueError(
            f"rope needs an even head size, got n_embd/n_head = {cfg.head_size}; "
            "change n_embd or n_head"
        )


@dataclass(frozen=True)
class PositionScheme:
    embedding: Callable[[ModelConfig], nn.Module]
    rotary: Callable[[ModelConfig], nn.Module]
    bias: Callable[[ModelConfig], nn.Module] | None = None
    bounded: bool = False  # True: no sequence longer than block_size (a table of positions)
    check: Callable[[ModelConfig], None] | None = None
    label: str = ""  # how messages name the scheme's bias ("ALiBi"); default: "attention"


LEARNED = PositionScheme(embedding=LearnedPositions, rotary=NoRotation, bounded=True)
ROPE = PositionScheme(embedding=NoEmbedding, rotary=RotaryEmbedding, check=_check_rope)
NO_POSITION = PositionScheme(embedding=NoEmbedding, rotary=NoRotation)
ALIBI = PositionScheme(embedding=NoEmbedding, rotary=NoRotation, bias=AlibiBias, label="ALiBi")
