"""Data and compute multipliers across model sizes, read off a loss surface L(N, D) fitted to the
baseline (Chinchilla's approach 3), with the controls that say whether to believe them.

The baseline is trained on a grid of sizes (N = non-embedding parameters) x token budgets (D =
training tokens). Its final losses are fitted with

    L(N, D) = E + A·N^(−α) + B·D^(−β)

the robust way (Besiroglu et al. 2024, "Chinchilla scaling: a replication attempt", found
Chinchilla's own nonlinear fit unstable): (α, β) are searched on a grid, refined twice around
the best pair, and for each pair E, A, B solve a linear least-squares problem exactly, all
≥ 0 (non-negative least squares, as the best feasible solution over the eight supports of
(E, A, B); E ≥ 0 because a loss is, and a free E runs off to large negative values with
exponents near 0 where the losses look log-linear); the pair of least squared error wins. One
run per (size, budget, seed) is one point; the fit uses the means per (size, budget) weighted
by their number of seeds, which is the same least-squares problem.

Every other arm is read off the surface at every size, from its mean final loss over seeds:

* **data multiplier**: the tokens the baseline of the same N (the baseline's at that size)
  needs to reach the arm's loss, over the tokens the arm used;
* **compute multiplier**: the least compute C = F(N)·D anywhere on the surface that reaches the
  arm's loss (minimised over N: the compute-optimal allocation; F = training FLOPs per token,
  log-log interpolated between the baseline's sizes), over the compute the arm used.

Trends: the slope of ln(multiplier) on ln(N) across sizes. Intervals: percentile bootstrap
over seeds, everything refitted on every resample. A seed's luck at a size is its runs' losses
there minus the means over seeds (every budget and arm: the same seed's runs move together),
scaled by √(n/(n−1)); a resample gives each size its number of seeds drawn with replacement
from the luck of every size's seeds. (Drawing a size's own seeds only, with the 2 or 3 seeds a
CPU study affords, gives 3 or 10 distinct resamples: on losses made from a known surface with
seed noise, the 2x control below then passed in only 15-70% of simulated 4-size studies; with
the luck pooled and the controls' level below, in 77-93%.)

Controls: (a) an arm that is the baseline trained on k x the tokens but charged 1 x must read
a data multiplier of k at every size; (b) leave one size out: fit on the other sizes, predict
the left-out size's losses; the mean of observed − predicted over its budgets must be 0 within
its interval, for every size in turn. Both read intervals at the level that holds for all sizes
together (Bonferroni: 98.75% each at 4 sizes for 95% in all), since 95% at each of 4 sizes
fails a right method 19% of the time. Verdicts are given only when every control passes.

Everything here reads a plain frame of COLUMNS rows; no torch, no record I/O. The modules:
`surface` (the L(N, D) fit), `compute` (FLOPs per token across N, the compute-optimal search),
`readings` (cells, seed luck, one reading of every arm off a fitted surface) and `controls`
(the bootstrap, the tables, the controls and the verdicts); their public names are
re-exported here.
"""

from __future__ import annotations

from bench.analysis.scaling_law.compute import N_SPAN, FlopsCurve, least_compute, optimal_loss
from bench.analysis.scaling_law.controls import Control, ScalingResult, compute_multipliers, verdict
from bench.analysis.scaling_law.readings import BASELINE, COLUMNS, KINDS
from bench.analysis.scaling_law.surface import EXPONENTS, REFINE, Surface, fit_surface

__all__ = [
    "BASELINE",
    "COLUMNS",
    "EXPONENTS",
    "KINDS",
    "N_SPAN",
    "REFINE",
    "Control",
    "FlopsCurve",
    "ScalingResult",
    "Surface",
    "compute_multipliers",
    "fit_surface",
    "least_compute",
    "optimal_loss",
    "verdict",
]
