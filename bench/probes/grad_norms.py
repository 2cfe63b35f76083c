"""The grad_norms probe: per-block gradient norms at the first step and every validation point
(the residual study's measurement)."""

from __future__ import annotations

from bench.core.probing import PROBES, Probe


def block_grad_norms(model) -> list[float]:
    """L2 norm of the gradient of each transformer block's parameters, first block first: how
    much signal reaches each depth (the residual study's measurement)."""
    norms = []
    for blk in model.blocks:
        sq = sum(float(p.grad.float().pow(2).sum()) for p in blk.parameters() if p.grad is not None)
        norms.append(sq**0.5)
    return norms


@PROBES.register("grad_norms", description="per-block gradient norms at the validation points")
class GradNormsProbe(Probe):
    on_diverged = True  # where a run blew up is what the norms are for

    def __init__(self):
        self.history: list[dict] = []

    def after_backward(self, s, step: int) -> None:
        if step == 0 or (step + 1) % s.tcfg.eval_every == 0:
            self.history.append({"step": step + 1, "norms": block_grad_norms(s.model)})

    def result(self, s):
        return self.history
