"""The optimizers a run can train with: AdamW (the default) or Muon for the blocks' matrices.

`OPTIMIZERS` is a registry of builders `(model, train_cfg) -> optimizer`, so a plugin file adds
one the way a block is added (and `--optimizer NAME` accepts it):

    @OPTIMIZERS.register("sgd", description="plain SGD, momentum 0.9")
    def sgd(model, cfg):
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)

A builder may carry `check()`, raising a one-line ValueError where it cannot run (Muon on a
torch without it). The training loop sets `lr` on `param_groups` each step, then `step()` and
`zero_grad()`.

`--optimizer muon` follows the speedruns' split: Muon (momentum, then each update
orthogonalised by a Newton–Schulz iteration) for the 2-D weight matrices inside the
transformer blocks, AdamW for everything else (token embedding and the head tied to it,
position table, norms' gains, biases). Both take the harness's one warm-up + cosine schedule.

Attention's query, key and value projections are orthogonalised as three matrices, as
modded-nanogpt does, whether the model stores them fused (one 3C x C weight) or per head (the
lecture's Head modules): heads modules name the rows of each in `qkv_rows()`. Orthogonalising
the fused matrix as one would let the value part dominate its spectrum and scale its lr by
sqrt(3C) instead of sqrt(C).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from variants.named import Registry

OPTIMIZERS = Registry("optimizer")
DEFAULT_OPTIMIZER = "adamw"  # the reference arm: tables read the others against it
MUON_MIN_TORCH = "2.9"  # torch.optim.Muon first shipped in torch 2.9

# Muon's lr scaling. "match_rms_adamw" (Moonshot, "Muon is Scalable for LLM Training", 2025)
# scales each matrix's orthogonalised update by 0.2·sqrt(max(rows, cols)), which gives it about
# the RMS of a typical AdamW update, so the lr tuned for AdamW carries over and ONE --lr drives
# both groups at a fixed ratio of 1 (the schedule sets the same lr on every group). "original"
# (Keller Jordan's) keeps the update's RMS near 1/sqrt(cols) and wants an lr ~10-50x AdamW's,
# i.e. a second lr to tune and keep in ratio.
MUON_ADJUST_LR = "match_rms_adamw"


def check_available(name: str) -> None:
    """One-line ValueError for an unknown optimizer or one that cannot run here (its `check`)."""
    check = getattr(OPTIMIZERS.get(name), "check", None)
    if check is not None:
        check()


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


Matrix = list[tuple[torch.nn.Parameter, slice]]  # rows of one or more weights, stacked


def muon_matrices(model: torch.nn.Module) -> list[Matrix]:
    """The matrices Muon orthogonalises: Q, K and V of every attention layer apart (from each
    heads module's `qkv_rows()`), and every other block matrix whole."""
    matrices: list[Matrix] = []
    for module in model.blocks.modules():
        if hasattr(module, "qkv_rows"):
            matrices += [m for m in module.qkv_rows() if m[0][0].requires_grad]
    taken = {id(p) for m in matrices for p, _ in m}
    return matrices + [[(p, slice(None))] for p in muon_params(model) if id(p) not in taken]


# Before torch 2.9 there is no Muon to build on; check_available refuses the optimizer there.
_MuonBase = getattr(torch.optim, "Muon", torch.optim.Optimizer)


class SplitMuon(_MuonBase):
    """torch's Muon, with the orthogonalisation (and Muon's shape-dependent lr scale) applied
    to `matrices` (row ranges of the parameters) rather than to each parameter whole. Momentum
    is elementwise, so its buffers stay per parameter, as torch keeps them."""

    def __init__(self, matrices: list[Matrix], **kwargs):
        params = list({id(p): p for m in matrices for p, _ in m}.values())
        super().__init__(params, **kwargs)
        self.matrices = matrices

    @torch.no_grad()
    def step(self, closure=None):
        from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz

        assert closure is None, "the harness steps without a closure"
        (group,) = self.param_groups
        lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
        updates = {}  # parameter -> its momentum update, before orthogonalisation
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:  # not setdefault: no new tensor every step
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - momentum)
            updates[p] = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
        for matrix in self.matrices:
            if any(p not in updates for p, _ in matrix):
                continue
            u = torch.cat([updates[p][rows] for p, rows in matrix])
            o = _zeropower_via_newtonschulz(
                u, group["ns_coefficients"], group["ns_steps"], group["eps"]
            )
            scaled_lr = _adjust_lr(lr, group["adjust_lr_fn"], u.shape)
            for (p, rows), part in zip(matrix, o.split([p[rows].size(0) for p, rows in matrix]),
                                       strict=True):  # fmt: skip
                p[rows].mul_(1 - lr * wd).add_(part, alpha=-scaled_lr)
        return None


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
    """The run's optimizer: the builder registered as `cfg.optimizer` (AdamW by default)."""
    name = getattr(cfg, "optimizer", DEFAULT_OPTIMIZER)
    check_available(name)
    return OPTIMIZERS.get(name)(model, cfg)


@OPTIMIZERS.register("adamw", description="AdamW over every trainable parameter (the default)")
def adamw(model: torch.nn.Module, cfg) -> torch.optim.AdamW:
    """A plain AdamW over every trainable parameter (exactly as before Muon existed here)."""
    return _adamw([p for p in model.parameters() if p.requires_grad], cfg)


@OPTIMIZERS.register(
    "muon", description="Muon for the blocks' matrices (Q, K, V apart), AdamW for the rest"
)
def muon(model: torch.nn.Module, cfg) -> OptimizerGroup:
    """An `OptimizerGroup` of Muon for the blocks' matrices and AdamW for the rest."""
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = muon_matrices(model)
    chosen = {id(p) for m in matrices for p, _ in m}
    rest = [p for p in params if id(p) not in chosen]
    split = SplitMuon(
        matrices,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,  # decoupled, lr·wd per step: the same rule as AdamW's
        momentum=cfg.muon_momentum,
        nesterov=True,
        adjust_lr_fn=MUON_ADJUST_LR,
    )
    return OptimizerGroup([split, _adamw(rest, cfg)])


def _check_muon() -> None:
    if not hasattr(torch.optim, "Muon"):
        raise ValueError(
            f"--optimizer muon needs torch >= {MUON_MIN_TORCH} (torch.optim.Muon); this is "
            f"torch {torch.__version__}"
        )


muon.check = _check_muon


def as_list(opt) -> list[torch.optim.Optimizer]:
    """The torch optimizers behind `opt` (one, or an OptimizerGroup's)."""
    return list(getattr(opt, "optimizers", [opt]))
