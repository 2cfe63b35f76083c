"""`selective-copy`: copy the data tokens of a noisy region, in order, skipping the noise (MAD's
selective copying, Poli et al. 2024; the task Mamba's selection was built for, Gu & Dao 2023).

A row of `seq_len` tokens (N = n_tokens, R = seq_len - N, the region)::

    . . a . . . b c . . . . d . . | a b c d
    <- region: N data tokens at random places among noise '.' -> SEP <- the copy ->

The N data tokens are drawn with replacement from the vocabulary less its two markers (the
noise token and SEP), at N distinct random places of the region, kept in order. After SEP the
row repeats them in that order: the targets are the N copied tokens (SEP predicts the first,
each copied token the next); nothing else carries a loss. A model must find the data among the
noise and keep its order: no position of the copy can be read off at a fixed offset. Accuracy:
the fraction of copied tokens right (argmax, teacher-forced).

Longer rows (the 2x and 4x evaluations): factor x the region and the tokens to copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.spec import Recipe

from .base import IGNORE_INDEX, option, register_task
from .synthetic import MAX_VOCAB, SyntheticTask, check_fits, distinct


@dataclass(frozen=True)
class SelectiveCopyOptions:
    vocab_size: int = option(32, lo=3, hi=MAX_VOCAB)  # data tokens + the noise token + SEP
    n_tokens: int = option(4, lo=1)  # data tokens to copy per row (N)
    seq_len: int = option(32, lo=3)  # the trained row length (tokens)


@register_task
class SelectiveCopyTask(SyntheticTask):
    """Data tokens among noise, then SEP and the data tokens in order; see the docstring."""

    name = "selective-copy"
    description = (
        "selective copying (MAD): data tokens scattered among noise, copied in order after a"
        " separator; accuracy on the copy, at 1, 2 and 4x the trained length"
    )
    capability = "selective copying"
    heldout_seed = 27_182_000
    Options = SelectiveCopyOptions
    recipe = Recipe(
        model="tiny",
        model_overrides=(("n_layer", 2), ("n_embd", 64), ("block_size", 32)),
        batch_size=32,
        lr=3e-3,
        steps=2000,
        eval_batches=4,
        eval_batch_size=64,
        note="2 layers, d=64, 4 data tokens among 28 copied after the separator",
    )

    def _build(self, data) -> None:
        self._no_data(data)
        o = self.options
        self._set_vocab(o.vocab_size)
        self.noise, self.sep = o.vocab_size - 2, o.vocab_size - 1  # the data ids come first
        self.seq_len, self.n_tokens = o.seq_len, o.n_tokens
        self.region = max(0, o.seq_len - o.n_tokens)
        fix = "raise seq_len or lower n_tokens"
        check_fits(self.name, o.n_tokens, self.region, "a place in the region per token", fix)
        self._check_context()

    def rows(self, n: int, factor: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        N, R = self.n_tokens * factor, self.region * factor
        data = torch.randint(0, self.noise, (n, N), generator=generator)  # (n, N)
        places = distinct(n, N, R, generator).sort(dim=1).values  # (n, N) in order
        region = torch.full((n, R), self.noise, dtype=torch.int64)
        region.scatter_(1, places, data)
        sep = torch.full((n, 1), self.sep, dtype=torch.int64)
        row = torch.cat([region, sep, data], dim=1)  # (n, R + 1 + N)
        x, y = row[:, :-1], row[:, 1:].clone()
        y[:, :R] = IGNORE_INDEX  # targets: the N copied tokens only
        return x.contiguous(), y

    def describe(self) -> dict:
        return {**self._describe_probe(), "n_tokens": self.n_tokens, "region": self.region}
