"""The loss surface L(N, D) = E + A·N^(−α) + B·D^(−β) and its robust least-squares fit: (α, β) on a
grid refined twice, E, A, B ≥ 0 solved exactly for each pair (see `bench.analysis.scaling_law`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXPONENTS = np.linspace(0.02, 3.0, 50)  # the coarse grid searched for α and for β
REFINE = 21  # points per exponent in each refinement, spanning ± one step of the grid before


@dataclass(frozen=True)
class Surface:
    """L(N, D) = e + a·N^(−alpha) + b·D^(−beta). `at_edge`: an exponent ended on the edge of the
    searched range (the least-squares optimum lies beyond it)."""

    e: float
    a: float
    alpha: float
    b: float
    beta: float
    at_edge: bool = False

    def predict(self, n, d):
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.e + self.a * n**-self.alpha + self.b * d**-self.beta

    def tokens_for(self, n, loss):
        """The tokens at which N parameters reach `loss` on the surface: inf where no number of
        tokens does (the loss is at or below that N's floor E + A·N^(−α)); nan without a D term."""
        floor = self.e + self.a * np.asarray(n, dtype=float) ** -self.alpha
        gap = np.asarray(loss, dtype=float) - floor
        if not self.b > 0:
            return np.full(np.shape(gap), np.nan)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            d = (gap / self.b) ** (-1.0 / self.beta)
        return np.where(gap > 0, d, np.where(np.isnan(gap), np.nan, np.inf))


@dataclass
class _Best:
    sse: float
    alpha: float
    beta: float
    a: float  # in the normalised units of _search (N / n0, D / d0)
    b: float
    e: float


def _supports(u, v, y, w) -> list:
    """Weighted least squares of y on a·u + b·v for every pair of rows of u and v, on each
    support of (a, b): {a, b}, {a}, {b}, {}; per support (sse, a, b) as (rows of u, rows of v)
    arrays, sse inf where a coefficient would be negative (or the pair is collinear)."""
    shape = (len(u), len(v))
    syy = float(w @ y**2)
    suu, svv, suy, svy = (u**2) @ w, (v**2) @ w, u @ (w * y), v @ (w * y)
    suv = (u * w) @ v.T
    det = np.outer(suu, svv) - suv**2
    with np.errstate(divide="ignore", invalid="ignore"):
        a2 = (svv[None, :] * suy[:, None] - suv * svy[None, :]) / det
        b2 = (suu[:, None] * svy[None, :] - suv * suy[:, None]) / det
        a1, b1 = suy / suu, svy / svv
    both = (det > 1e-12 * np.outer(suu, svv)) & (a2 >= 0) & (b2 >= 0)
    zero = np.zeros(shape)
    only_a = np.where((suu > 0) & (a1 >= 0), syy - a1 * suy, np.inf)[:, None]
    only_b = np.where((svv > 0) & (b1 >= 0), syy - b1 * svy, np.inf)[None, :]
    return [
        (np.where(both, syy - a2 * suy[:, None] - b2 * svy[None, :], np.inf), a2, b2),
        (np.broadcast_to(only_a, shape), np.broadcast_to(a1[:, None], shape), zero),
        (np.broadcast_to(only_b, shape), zero, np.broadcast_to(b1[None, :], shape)),
        (np.full(shape, syy), zero, zero),
    ]


def _search(x, z, y, w, alphas, betas) -> _Best:
    """The best pair of `alphas` x `betas`, with E, A, B ≥ 0 solved exactly for each by
    non-negative least squares: every support of (E, A, B) in closed form (with E: regression
    on the centred columns, E from the means; without: on the raw ones), infeasible solutions
    (a negative coefficient) dropped, the least squared error kept. x = ln(N/n0),
    z = ln(D/d0) per point, w the weights summing to 1."""
    u = np.exp(-np.outer(alphas, x))
    v = np.exp(-np.outer(betas, z))
    u_mean, v_mean, y_mean = u @ w, v @ w, float(w @ y)
    cands = []
    for sse, a, b in _supports(u - u_mean[:, None], v - v_mean[:, None], y - y_mean, w):
        with np.errstate(invalid="ignore"):
            e = y_mean - a * u_mean[:, None] - b * v_mean[None, :]
            cands.append((np.where(e >= 0, sse, np.inf), a, b, e))
    cands += [(sse, a, b, np.zeros_like(sse)) for sse, a, b in _supports(u, v, y, w)]
    sse = np.stack([c[0] for c in cands])
    k, i, j = np.unravel_index(np.argmin(sse), sse.shape)
    a, b, e = (float(cands[k][m][i, j]) for m in (1, 2, 3))
    return _Best(float(sse[k, i, j]), float(alphas[i]), float(betas[j]), a, b, e)


def _around(value: float, step: float) -> np.ndarray:
    return np.linspace(max(value - step, 1e-3), value + step, REFINE)


def fit_surface(params, tokens, losses, weights=None) -> Surface:
    """Least-squares fit of L(N, D) over the points (one per run, or per-cell means weighted by
    their runs). Raises ValueError with fewer than 3 sizes or 3 budgets (α and β each need
    three points beside their coefficient and E)."""
    n, d, y = (np.asarray(v, dtype=float) for v in (params, tokens, losses))
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    keep = np.isfinite(n) & np.isfinite(d) & np.isfinite(y) & (n > 0) & (d > 0) & (w > 0)
    n, d, y, w = n[keep], d[keep], y[keep], w[keep] / w[keep].sum()
    if len(np.unique(n)) < 3 or len(np.unique(d)) < 3:
        raise ValueError("the L(N, D) fit needs losses at 3 or more sizes and 3 or more budgets")
    n0, d0 = math.exp(w @ np.log(n)), math.exp(w @ np.log(d))  # units that keep it conditioned
    x, z = np.log(n / n0), np.log(d / d0)
    best = _search(x, z, y, w, EXPONENTS, EXPONENTS)
    edge = {best.alpha, best.beta} & {EXPONENTS[0], EXPONENTS[-1]}
    step = EXPONENTS[1] - EXPONENTS[0]
    for _ in range(2):
        best = _search(x, z, y, w, _around(best.alpha, step), _around(best.beta, step))
        step /= (REFINE - 1) / 2
    return Surface(
        e=best.e, a=float(best.a * n0**best.alpha), alpha=best.alpha,
        b=float(best.b * d0**best.beta), beta=best.beta, at_edge=bool(edge),
    )  # fmt: skip
