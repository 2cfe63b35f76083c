"""The optimizers a run can train with: AdamW (the default) or Muon for the blocks' matrices.

`--optimizer muon` follows the speedruns' split: `torch.optim.Muon` (momentum, then each
update orthogonalised by a Newton–Schulz iteration) for the 2-D weight matrices inside the
transformer blocks, AdamW for everything else (token embedding and the head tied to it,
position table, norms' gains, biases). Both take the harness's one warm-up + cosine schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPTIMIZERS = ("adamw", "muon")
MUON_MIN_TORCH = "2.9"  # torch.optim.Muon first shipped in torch 2.9

# Muon's lr scaling. "match_rms_adamw" (Moonshot, "Muon is Scalable for LLM Training", 2025)
# scales each matrix's orthogonalised update by 0.2·sqrt(max(rows, cols)), which gives it about
# the RMS of a typical AdamW update, so the lr tuned for AdamW carries over and ONE --lr drives
# both groups at a fixed ratio of 1 (the schedule sets the same lr on every group). "original"
# (Keller Jordan's) keeps the update's RMS near 1/sqrt(cols) and wants an lr ~10-50x AdamW's,
# i.e. a second lr to tune and keep in ratio.
MUON_ADJUST_LR = "match_rms_adamw"


def check_available(name: str) -> None:
    """One-line ValueError for an unknown optimizer or a Muon this torch does not have."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if name == "muon" and not hasattr(torch.optim, "Muon"):
        raise ValueError(
            f"--optimizer muon needs torch >= {MUON_MIN_TORCH} (torch.optim.Muon); this is "
            f"torch {torch.__version__}"
        )


@dataclass
class OptimizerGroup:
    """Several optimizers stepped as one: the training loop sets `lr` on `param_groups`,
    calls `step()` and `zero_grad()`; `optimizers` lists them (the memory tracker wants each)."""

    optimizers: list[torch.optim.Optimizer]

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)


def muon_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The 2-D weight matrices inside the transformer blocks (attention and MLP projections).
    The token embedding (and the head tied to it) and the position table live outside
    `model.blocks`; norms and biases are 1-D."""
    return [p for p in model.blocks.parameters() if p.requires_grad and p.dim() == 2]


def _adamw(params: list, cfg) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: norms' gains, biases and nothing 1-D decay."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel (one pass over every parameter) exists for CUDA and, since torch 2.4, for
    # CPU; on the tiny model it cuts AdamW from ~2.8 ms to ~0.5 ms a step on a 2-core CPU.
    fused = params[0].device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def make_optimizer(model: torch.nn.Module, cfg):
    """The run's optimizer for `cfg.optimizer`: a plain AdamW over every trainable parameter
    (exactly as before Muon existed here), or an `OptimizerGroup` of Muon for the blocks'
    matrices and AdamW for the rest."""
    params = [p for p in model.parameters() if p.requires_grad]
    if getattr(cfg, "optimizer", "adamw") == "adamw":
        return _adamw(params, cfg)
    check_available(cfg.optimizer)
    matrices = muon_params(model)
    chosen = {id(p) for p in matrices}
    rest = [p for p in params if id(p) not in chosen]
    muon = torch.optim.Muon(
        matrices,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,  # decoupled, lr·wd per step: the same rule as AdamW's
        momentum=cfg.muon_momentum,
        nesterov=True,
        adjust_lr_fn=MUON_ADJUST_LR,
    )
    return OptimizerGroup([muon, _adamw(rest, cfg)])


def as_list(opt) -> list[torch.optim.Optimizer]:
    """The torch optimizers behind `opt` (one, or an OptimizerGroup's)."""
    return list(getattr(opt, "optimizers", [opt]))
