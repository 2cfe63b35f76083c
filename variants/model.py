"""A GPT-style decoder assembled from the slots named in a `ModelConfig`.

The model knows nothing of measurement or data: it maps token ids to logits (and a loss when
targets are given), initialises itself GPT-2 style, and samples.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from variants.attention import Attend, QKTransform
from variants.config import ModelConfig
from variants.init import default_init
from variants.registry import SLOTS, get_variant

IGNORE_INDEX = -100


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        scheme = SLOTS["position"][cfg.position]
        block_cls = SLOTS["norm_placement"][cfg.norm_placement]
        make_norm = SLOTS["norm"][cfg.norm]
        # the longest sequence the model accepts: a table of positions ends at block_size
        self.max_len = cfg.block_size if scheme.bounded else None

        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = scheme.embedding(cfg)  # learned: adds wpe; rope/alibi/none: identity
        self.drop = nn.Dropout(cfg.dropout)
        # one rotary module and one bound kernel for the whole model: they hold no parameters
        self.rotary = scheme.rotary(cfg)
        bias = scheme.bias(cfg) if scheme.bias is not None else None
        self.attend = Attend(cfg, SLOTS["attention"][cfg.attention], bias)
        self.blocks = nn.ModuleList(
            block_cls(
                cfg,
                SLOTS["heads"][cfg.heads](
                    cfg, self.attend, QKTransform(SLOTS["qk_norm"][cfg.qk_norm](cfg), self.rotary)
                ),
                SLOTS["mlp"][cfg.mlp](cfg),
                make_norm,
                SLOTS["residual"][cfg.residual],
            )
            for _ in range(cfg.n_layer)
        )
        self.ln_f = make_norm(cfg) if block_cls.final_norm else nn.Identity()
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            # the input embedding and the output head share one matrix (Press & Wolf, 2017)
            self.lm_head.weight = self.wte.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """N(0, std) for embeddings and weights; the projections that write into the residual
        stream get proj_std (slot `init`: GPT-2's std/√(2·n_layer), or zero). A block without
        its own `init_weights` (a plugin) gets `default_init`."""
        std, proj_std = SLOTS["init"][self.cfg.init](self.cfg)
        nn.init.normal_(self.wte.weight, mean=0.0, std=std)
        for m in self.pos_emb.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=std)
        for blk in self.blocks:
            for part in (blk.attn, blk.mlp):
                if hasattr(part, "init_weights"):
                    part.init_weights(std, proj_std)
                else:
                    default_init(part, std, proj_std)
        if not self.cfg.tie_weights:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=std)

    def forward(self, idx, targets=None):
        """idx (B, T) int64 -> logits (B, T, vocab); loss (mean over targets != -100) or None.

        T may exceed block_size when the position scheme extends (RoPE, ALiBi, none): that is
        how the length study evaluates longer-than-trained contexts."""
        B, T = idx.shape
        if self.max_len is not None and T > self.max_len:
            raise ValueError(
                f"sequence length {T} is longer than the context block_size={self.cfg.block_size}; "
                "crop the input or build the model with a larger block_size"
            )
        x = self.drop(self.pos_emb(self.wte(idx)))  # (B, T, C)
        for blk in self.blocks:
            x = blk(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        if self.cfg.logit_softcap:
            # bounded logits, cap·tanh(z/cap): no token can become arbitrarily certain
            cap = self.cfg.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return logits, loss

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (shared weights once). Non-embedding excludes token and position
        embeddings — the N of the scaling study's L(N, D) — but keeps a tied head, which does
        compute (bench.measure.flops_per_token counts the FLOPs from the module shapes)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for p in self.pos_emb.parameters())
            if not self.cfg.tie_weights:
                n -= self.wte.weight.numel()
        return n

    @torch.no_grad()
    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ):
        """Extend idx (B, T) by sampling; temperature 0 means greedy. The context is cropped to
        the last block_size tokens, as the model cannot see further back."""
        for _ in range(max_new_tokens):
            ctx = idx[:, -self.cfg.block_size :]
            logits = self(ctx)[0][:, -1, :]  # (B, vocab)
            if temperature == 0.0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


def build_model(variant: str = "baseline", base: ModelConfig | None = None, **overrides) -> GPT:
    """The named variant applied to `base` (default config) with `overrides` on top."""
    cfg = get_variant(variant).apply(base or ModelConfig()).replace(**overrides)
    return GPT(cfg)
