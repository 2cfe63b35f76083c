"""A plugin file that adds one of each thing a plugin can add: a block with its own option, a
variant built on it, a task and an optimizer. tests/test_extending.py loads it with --plugin;
it is also the shortest worked example of each extension point."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.core.optim import OPTIMIZERS
from bench.tasks import Task, register_task
from bench.tasks.base import CharVocab
from variants.registry import register, register_variant


@dataclass(frozen=True)
class GatedOptions:
    gate_init: float = 1.0  # the gate's starting value, per channel


@register("mlp", "plugin-gated", options=GatedOptions)
class GatedMLP(nn.Module):
    """One C x C matrix times a learned per-channel gate: a block with its own knob."""

    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.gate = nn.Parameter(torch.full((cfg.n_embd,), cfg.options_for("mlp").gate_init))

    @staticmethod
    def check(cfg):
        if cfg.options_for("mlp").gate_init <= 0:
            raise ValueError("mlp.gate_init must be > 0")

    def forward(self, x):
        return self.gate * self.fc(x)


register_variant(
    "plugin-gated",
    "a gated one-matrix MLP from a plugin",
    mlp="plugin-gated",
    options={"mlp": {"gate_init": 0.5}},
)


@register_task
class CopyTask(Task):
    """Random digits, then the same digits again: the second half is learnable."""

    name = "plugin-copy"
    description = "copy a random digit string (a plugin task)"

    def _build(self, data) -> None:
        self._no_data(data)
        self.vocab = CharVocab("0123456789")
        self.vocab_size = len(self.vocab)
        self.seq_len = min(self.context, 16)

    def train_batch(self, batch_size, generator):
        half = torch.randint(0, 10, (batch_size, self.seq_len // 2 + 1), generator=generator)
        row = torch.cat([half, half], dim=1)[:, : self.seq_len + 1]
        return row[:, :-1].contiguous(), row[:, 1:].contiguous()

    def _build_val_batches(self):
        g = torch.Generator().manual_seed(1234)  # fixed: the same held-out rows for every run
        return [self.train_batch(self.eval_batch_size, g) for _ in range(self.eval_batches)]

    def describe(self) -> dict:
        return {"task": self.name, **self._describe_rows()}


@OPTIMIZERS.register("plugin-sgd", description="SGD with momentum 0.9 (a plugin optimizer)")
def sgd(model, cfg):
    return torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=0.9
    )
