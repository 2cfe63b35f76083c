"""QK-norm: normalise each head's query and key vectors before the scores are taken.

Without it the attention logits q·k grow with the norms of q and k, and a few of them can blow up
the softmax (one cause of loss spikes at scale; Dehghani et al., 2023). Normalising q and k per
head bounds the logits by the learned gains. Built once per layer, applied by `QKTransform`
before the rotation of RoPE, on either head layout: (…, T, hs) x2 -> x2.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from variants.config import ModelConfig
from variants.norm import rms_normalise


class IdentityQK(nn.Module):
    """Leaves q and k as they are: the `none` choice of the q/k hooks (no QK-norm here, and no
    rotation as `variants.position.NoRotation`)."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()

    def forward(self, q, k):
        return q, k


NoQKNorm = IdentityQK


class QKRMSNorm(nn.Module):
    """RMSNorm over the head dimension of q and of k, each with its own gain of size hs shared by
    the heads of the layer (as OLMo 2 and Qwen 3 do; modded-nanogpt uses no gain)."""

    def __init__(self, cfg: ModelConfig, eps: float = 1e-6):
        super().__init__()
        self.q_weight = nn.Parameter(torch.ones(cfg.head_size))
        self.k_weight = nn.Parameter(torch.ones(cfg.head_size))
        self.eps = eps

    def forward(self, q, k):  # (B, nh, T, hs), (B, nkv, T, hs)
        return rms_normalise(q, self.q_weight, self.eps), rms_normalise(k, self.k_weight, self.eps)
