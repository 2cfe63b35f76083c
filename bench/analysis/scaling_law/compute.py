"""Compute on the surface: training FLOPs per token as a function of N through the baseline's
sizes, the least compute that reaches a loss (the compute-optimal N), and its inverse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.analysis.scaling_law.surface import Surface

N_SPAN = 100.0  # the compute-optimal N is searched within [smallest / N_SPAN, largest x N_SPAN]


@dataclass(frozen=True, eq=False)
class FlopsCurve:
    """Training FLOPs per token as a function of N, through the baseline's sizes: piecewise
    linear in ln F against ln N, the end segments extended past them (one size: F ∝ N). The
    compute-optimal search needs F between and beyond the sizes that were trained."""

    ln_n: np.ndarray
    ln_f: np.ndarray

    @classmethod
    def through(cls, params, flops) -> FlopsCurve:
        ln_n, idx = np.unique(np.log(np.asarray(params, dtype=float)), return_index=True)
        return cls(ln_n, np.log(np.asarray(flops, dtype=float))[idx])

    def __call__(self, n):
        ln = np.log(np.asarray(n, dtype=float))
        xs, ys = self.ln_n, self.ln_f
        if len(xs) == 1:
            return np.exp(ys[0] + ln - xs[0])
        lo = ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (ln - xs[0])
        hi = ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (ln - xs[-1])
        return np.exp(np.where(ln < xs[0], lo, np.where(ln > xs[-1], hi, np.interp(ln, xs, ys))))


def _n_grid(n_range: tuple[float, float], points: int = 1601) -> np.ndarray:
    lo, hi = n_range
    return np.linspace(math.log(lo / N_SPAN), math.log(hi * N_SPAN), points)


def _parabola_min(ln_y: np.ndarray, i: np.ndarray, step: float):
    """Refine each row's grid minimum at index i by the parabola through it and its two
    neighbours: (offset in grid units x step, refined value). Rows at an edge stay put."""
    rows = np.arange(len(i))
    inner = (i > 0) & (i < ln_y.shape[1] - 1)
    j = np.clip(i, 1, ln_y.shape[1] - 2)
    y0, y1, y2 = ln_y[rows, j - 1], ln_y[rows, j], ln_y[rows, j + 1]
    curv = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = inner & np.isfinite(curv) & (curv > 0)
        off = np.where(ok, 0.5 * (y0 - y2) / curv, 0.0)
        val = np.where(ok, y1 - 0.125 * (y0 - y2) ** 2 / curv, ln_y[rows, i])
    return off * step, val


def least_compute(surface: Surface, flops: FlopsCurve, losses, n_range: tuple[float, float]):
    """For each target loss, the least training compute F(N)·D on the surface that reaches it
    and the N that does: minimised over N on a log grid spanning the sizes' range widened N_SPAN
    times each way, refined by a parabola. Returns (compute, n_opt, at_edge): inf compute where
    no N reaches the loss; at_edge where the minimum sits on the grid's edge."""
    ln_n = _n_grid(n_range)
    n = np.exp(ln_n)
    d = surface.tokens_for(n[None, :], np.atleast_1d(np.asarray(losses, dtype=float))[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_c = np.log(flops(n))[None, :] + np.log(d)
    ln_c = np.where(np.isfinite(ln_c), ln_c, np.inf)
    i = np.argmin(ln_c, axis=1)
    off, best = _parabola_min(ln_c, i, ln_n[1] - ln_n[0])
    edge = (i == 0) | (i == len(ln_n) - 1)
    return np.exp(best), np.exp(ln_n[i] + off), edge


def optimal_loss(surface: Surface, flops: FlopsCurve, compute, n_range: tuple[float, float]):
    """The least loss the surface reaches with each training compute C, min over N of
    L(N, C / F(N)): the compute-optimal frontier (the figure's iso-multiplier lines)."""
    n = np.exp(_n_grid(n_range))
    c = np.atleast_1d(np.asarray(compute, dtype=float))[:, None]
    return np.min(surface.predict(n[None, :], c / flops(n)[None, :]), axis=1)
