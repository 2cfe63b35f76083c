"""The scaling study's grid: its constants, size ladders (the --preset grids), the sizes'
configs and counts, and what one planned run is. See ablations/studies/scaling.py."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from bench import measure
from bench.core.spec import RunSpec
from variants.config import ModelConfig, preset
from variants.model import GPT

TASK = {"name": "shakespeare", "data": None}
VOCAB = 65  # tiny Shakespeare's characters: the task's vocab_size, for checks and estimates
CONTROL = "baseline ×2 tokens"  # the baseline on 2x the variants' tokens, charged 1x
CONTROL_FACTOR = 2.0  # so it must read a data multiplier of 2
DEFAULT_VARIANTS = ("modern",)
HEAD_DIM = 32
EVAL_BATCHES, EVAL_BATCH_SIZE = 8, 64
EVALS_PER_RUN = 2  # at step 0 and the final one: the study reads final losses only

# What the time estimates assume. CPU: one-thread tokens/s of the baseline at batch 16 x 64,
# measured on this 2-core Xeon; other sizes run at the median FLOP rate of these.
CPU_TOKENS_PER_S = {(1, 64): 180e3, (2, 64): 92e3, (3, 96): 26e3, (4, 128): 13e3}
CPU_START_S = 3.0  # per run: worker, data, model and optimizer set-up
H100_PEAK, H100_MFU = 989.4e12, 0.25  # dense bf16 FLOP/s (bench.measure's table); assumed MFU
H100_START_S = 10.0


@dataclass(frozen=True)
class Ladder:
    sizes: tuple[tuple[int, int], ...]  # (n_layer, n_embd), smallest first
    budgets: tuple[float, ...]  # the baseline's tokens per parameter (x --scale)
    arm_budget: float  # every other arm's (x --scale); the control trains CONTROL_FACTOR x it
    block_size: int
    batch_size: int
    lr: float
    hardware: str = "cpu"  # what the time estimate assumes: "cpu" or "h100"
    small_sizes: int = 2  # the first `small_sizes` get --seeds seeds, the others at most 2

    def seeds_at(self, i: int, seeds: int) -> int:
        return seeds if i < self.small_sizes else min(seeds, 2)


PRESETS = {
    # ~15 min on two cores (see the module docstring); lr: the shakespeare recipe's, its
    # baseline's tuned best (at 2e-3 the small sizes were still optimisation-limited, their
    # loss fell faster with each doubling of tokens, and neither control passed)
    "cpu": Ladder(
        sizes=((1, 64), (2, 64), (2, 96), (3, 96)), budgets=(2.0, 4.0, 8.0, 16.0), arm_budget=3.0,
        block_size=64, batch_size=16, lr=5.656854249492381e-3,
    ),
    # `small` (6x384) to `medium`'s shape (12x768) at small's context: ~1 h at 25% MFU, so far
    # below compute-optimal (~20 tokens/param): the data-limited corner of the surface
    "h100": Ladder(
        sizes=((6, 384), (8, 512), (10, 640), (12, 768)), budgets=(0.25, 0.5, 1.0, 2.0),
        arm_budget=0.75, block_size=256, batch_size=64, lr=6e-4, hardware="h100", small_sizes=0,
    ),
}  # fmt: skip


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """--sizes "2x64,3x96,..." -> ((2, 64), (3, 96), ...), smallest compute first; one-line
    ValueError for anything else. Four sizes at least: leaving one out must leave three."""
    sizes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            layers, width = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise ValueError(f"--sizes {part!r} is not LAYERSxWIDTH (e.g. 4x128)") from None
        if layers < 1 or width < 8 or width % 8:
            raise ValueError(f"--sizes {part!r}: layers >= 1 and a width that is a multiple of 8")
        sizes.append((layers, width))
    if len(set(sizes)) < 4:
        raise ValueError(f"--sizes needs 4 or more different sizes for the fit, got {text!r}")
    return tuple(sorted(set(sizes), key=lambda s: s[0] * s[1] ** 2))


def size_config(layers: int, width: int, ladder: Ladder, vocab: int) -> ModelConfig:
    heads = max(1, width // HEAD_DIM) if width % HEAD_DIM == 0 else 1
    return preset("tiny", vocab_size=vocab).replace(
        n_layer=layers, n_embd=width, n_head=heads, block_size=ladder.block_size
    )


def size_label(cfg: ModelConfig) -> str:
    return f"{cfg.n_layer}x{cfg.n_embd}"


@functools.lru_cache(maxsize=256)
def model_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(non-embedding parameters, training FLOPs per token at its context) of a config, from a
    model built on the meta device: the harness's own counts, without memory or training."""
    with torch.device("meta"):
        model = GPT(cfg)
    return model.num_params(non_embedding=True), measure.flops_per_token(model, cfg.block_size)


@dataclass(frozen=True)
class Arm:
    label: str
    variant: str
    token_factor: float = 1.0  # trains this x the tokens it is charged


@dataclass(frozen=True)
class Planned:
    """One run of the study, with what the analysis charges it."""

    arm: Arm
    size: str
    params: int  # the baseline's N at this size: every arm is read at it
    spec: RunSpec
    flops_per_token: int  # of this arm's model
    charged: float  # tokens the arm is charged (the control: trained tokens / its factor)
