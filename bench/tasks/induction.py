"""`induction`: a random token sequence, then the same sequence again; scored on the second
occurrence (Olsson et al. 2022, "In-context learning and induction heads").

A row of `seq_len` = 2L tokens (L = seq_len / 2, ℓ the repeated length)::

    BOS  n n n n n n  s1 s2 ... sℓ  s1 s2 ... sℓ
         <- noise ->  <- first ->   <- second ->      (noise: 2(L - ℓ) tokens, the rest)

s is ℓ distinct tokens, fresh in every row, so each token of s has one successor; the noise
before it is random tokens of the same vocabulary. The targets are the second occurrence's
tokens after its first (s2 ... sℓ: each predicted from the token before it and the first
occurrence); nothing else carries a loss, so the loss and the accuracy are both "on the second
occurrence". ℓ is drawn per row, uniformly from L/2 to L: with one fixed ℓ, "copy the token
ℓ - 1 places back" would solve the task by position alone, while a varying ℓ leaves only the
content (find the earlier occurrence of the current token, read what followed it) to go by.

Longer rows (the 2x and 4x evaluations): factor x the row and the repeated length. s must be
distinct at 4x too: 4 L <= vocab_size - 1 (BOS is the last id).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.spec import Recipe

from .base import IGNORE_INDEX, TaskError, option, register_task
from .synthetic import LENGTH_FACTORS, MAX_VOCAB, SyntheticTask, check_fits, distinct


@dataclass(frozen=True)
class InductionOptions:
    vocab_size: int = option(33, lo=3, hi=MAX_VOCAB)  # tokens + BOS
    seq_len: int = option(16, lo=4)  # the trained row length (even)


@register_task
class InductionTask(SyntheticTask):
    """A sequence and its repetition; see the module docstring."""

    name = "induction"
    description = (
        "induction: a random sequence repeated, loss and accuracy on the second occurrence, at"
        " 1, 2 and 4x the trained length"
    )
    capability = "induction (in-context copying)"
    heldout_seed = 16_180_000
    Options = InductionOptions
    recipe = Recipe(
        model="tiny",
        model_overrides=(("n_layer", 2), ("n_embd", 64), ("block_size", 16)),
        batch_size=64,
        lr=3e-3,
        steps=2000,
        eval_batches=4,
        eval_batch_size=64,
        note="2 layers, d=64, 32 tokens, repeats of 4-8 in rows of 16",
    )

    def _build(self, data) -> None:
        self._no_data(data)
        o = self.options
        if o.seq_len % 2:
            raise TaskError(f"induction seq_len must be even (two halves), got {o.seq_len}")
        self._set_vocab(o.vocab_size)
        self.bos = o.vocab_size - 1
        self.seq_len, self.half = o.seq_len, o.seq_len // 2
        top = max(LENGTH_FACTORS)
        fix = "raise vocab_size or lower seq_len"
        check_fits(self.name, top * self.half, self.bos, f"{top}x rows' distinct tokens", fix)
        self._check_context()

    def rows(self, n: int, factor: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        L = self.half * factor
        ell = torch.randint((L + 1) // 2, L + 1, (n, 1), generator=generator)  # (n, 1)
        row = torch.randint(0, self.bos, (n, 2 * L + 1), generator=generator)  # noise
        row[:, 0] = self.bos
        seq = distinct(n, L, self.bos, generator)  # (n, L): the first ℓ of each row are s
        pos = torch.arange(2 * L + 1).expand(n, -1)  # (n, 2L+1)
        first, second = 1 + 2 * (L - ell), 1 + 2 * L - ell  # where each occurrence starts
        in_first = (pos >= first) & (pos < second)
        row = torch.where(in_first, seq.gather(1, (pos - first).clamp(0, L - 1)), row)
        row = row.gather(1, torch.where(pos >= second, pos - ell, pos))  # the repetition
        x, y = row[:, :-1], row[:, 1:].clone()
        y[pos[:, :-1] < second] = IGNORE_INDEX  # scored: s2 ... sℓ of the second occurrence
        return x.contiguous(), y

    def describe(self) -> dict:
        return {**self._describe_probe(), "repeat_lengths": [(self.half + 1) // 2, self.half]}
