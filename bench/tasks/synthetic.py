"""What the capability probes share (`mqar`, `selective-copy`, `induction`): synthetic rows with
exact answers, scored where they test the capability, at the trained length and beyond.

A loss averaged over every position hides what a block changes most: whether a model can
recall a key seen many tokens ago, copy in order, or keep working past its trained length.
Each probe task generates rows whose targets are IGNORE_INDEX except at the positions that
test one capability (a recalled value, a copied token, the second occurrence of a repeated
sequence); the loss is taken there only, and so is the accuracy: the fraction of those
positions where the model's argmax (teacher-forced, one forward per row) is the right token.
A row holds many such answers, so a handful of held-out rows already give thousands of them.

Lengths: `rows(n, factor, generator)` makes rows `factor` times as long as the trained ones,
with `factor` times as many problems in them (each task's docstring says what scales), so the
question stays the same and only the distances grow. `evaluate` scores the held-out rows at
each of LENGTH_FACTORS, with 1/factor as many rows at factor x (the same number of scored
positions at every length); a model whose positions end at its block_size (learned positions)
cannot read the longer rows, and those lengths read None with the reason, instead of failing.

Held-out rows come from a fixed seed per task and length (never a run's stream), the same for
every variant and seed; training rows are drawn from the run's generator. Both are random
draws from a space far larger than the rows ever drawn, so the two do not overlap in practice
(and the answers cannot be memorised: every row's keys, values and tokens are new).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import IGNORE_INDEX, CharVocab, Task, TaskError

LENGTH_FACTORS = (1, 2, 4)  # trained length, 2x and 4x
NOT_READ = "positions end at T"  # why a longer length has no accuracy (learned positions)
FIRST_SYMBOL = 0x4E00  # token i is chr(FIRST_SYMBOL + i): 20,992 distinct printable characters
MAX_VOCAB = 8192  # zoology's largest MQAR vocabulary


def symbols(n: int) -> str:
    """n distinct printable characters for tokens whose text means nothing (ids are what
    matter): a CharVocab for vocabularies far beyond ASCII."""
    return "".join(chr(FIRST_SYMBOL + i) for i in range(n))


class SyntheticTask(Task):
    """A probe task: subclasses set `vocab`, `vocab_size` and `seq_len` in `_build` and write
    `rows(n, factor, generator)`; the rest (training batches, held-out rows, scoring at every
    length, the record's evals) is here."""

    has_accuracy = True
    capability: ClassVar[str] = ""  # what the scored positions test, for tables and --list
    heldout_seed: ClassVar[int] = 0  # the task's fixed held-out stream (+ the length factor)

    @abc.abstractmethod
    def rows(self, n: int, factor: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x, y), int64 (n, factor * seq_len) each: inputs and next-token targets,
        IGNORE_INDEX except at the positions that test the capability."""

    def _set_vocab(self, size: int) -> None:
        self.vocab = CharVocab(symbols(size))
        self.vocab_size = size

    def _check_context(self) -> None:
        if self.seq_len > self.context:
            raise TaskError(
                f"task {self.name!r} has rows of {self.seq_len} tokens but the model context is"
                f" {self.context}; raise the context (--model.block_size) to >= {self.seq_len}"
                f" or lower the task's seq_len"
            )

    # --- Task API -----------------------------------------------------------------------------

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.rows(self._check_batch_size(batch_size), 1, generator)

    def heldout(self, factor: int = 1) -> tuple[Tensor, Tensor]:
        """The fixed held-out rows at `factor` x the trained length: eval_batches x
        eval_batch_size rows at 1x, 1/factor as many at factor x. Cached; do not modify."""
        cache = self.__dict__.setdefault("_heldout_rows", {})
        if factor not in cache:
            n = max(1, self.eval_batches * self.eval_batch_size // factor)
            g = torch.Generator().manual_seed(self.heldout_seed + factor)
            cache[factor] = self.rows(n, factor, g)
        return cache[factor]

    def _build_val_batches(self) -> list[tuple[Tensor, Tensor]]:
        x, y = self.heldout(1)
        size = self.eval_batch_size
        return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]

    @torch.no_grad()
    def score(self, model, device, factor: int = 1) -> dict:
        """Accuracy and loss at the scored positions of the held-out rows at `factor` x the
        trained length; accuracy None (and the reason) where the model cannot read them."""
        length = factor * self.seq_len
        limit = getattr(model, "max_len", None)
        if limit is not None and length > limit:
            return {"length": length, "accuracy": None, "loss": None, "why": NOT_READ}
        x, y = self.heldout(factor)
        was_training = model.training
        model.eval()
        right = total = 0
        loss = 0.0
        size = self.eval_batch_size
        for xb, yb in zip(x.split(size), y.split(size), strict=True):
            logits = model(xb.to(device))[0].float()  # (b, L, V)
            yb = yb.to(device)
            keep = yb != IGNORE_INDEX  # (b, L)
            right += int((logits.argmax(-1) == yb)[keep].sum())
            total += int(keep.sum())
            loss += float(F.cross_entropy(logits[keep], yb[keep], reduction="sum"))
        model.train(was_training)
        return {"length": length, "accuracy": right / total, "loss": loss / total, "n": total}

    def accuracy(self, model, device, max_problems: int | None = None) -> float:
        """Accuracy at the scored positions of every held-out row at the trained length."""
        return self.score(model, device, 1)["accuracy"]

    def accuracy_from(self, evals: dict) -> float | None:
        return evals["by_length"]["1"]["accuracy"]  # `evaluate` scored the very same rows

    def evaluate(self, model, device) -> dict:
        """{"capability": ..., "by_length": {"1": {"length", "accuracy", "loss", "n"}, "2": ...,
        "4": ...}}; a length the model cannot read has accuracy None and a "why"."""
        by_length = {str(f): self.score(model, device, f) for f in LENGTH_FACTORS}
        return {"capability": self.capability, "by_length": by_length}

    def _describe_probe(self) -> dict:
        """The part of `describe` every probe task shares."""
        x, y = self.heldout(1)
        return {
            "task": self.name,
            "capability": self.capability,
            "length_factors": list(LENGTH_FACTORS),
            "scored_per_row": float((y != IGNORE_INDEX).sum(1).float().mean()),
            "heldout_seed": self.heldout_seed,
            **self._describe_rows(),
            "example_ids": x[0].tolist(),
        }


def distinct(n: int, k: int, pool: int, g: torch.Generator) -> Tensor:
    """(n, k) int64: per row, k distinct ids drawn uniformly from range(pool)."""
    return torch.rand(n, pool, generator=g).argsort(dim=1)[:, :k]


def check_fits(task: str, need: int, have: int, what: str, fix: str) -> None:
    """One line when a task's options leave too few tokens or positions for `what`."""
    if need > have:
        raise TaskError(f"task {task!r}: {what} needs {need} but there are {have}; {fix}")
