"""Residual wiring: how a block's output F(x) is combined with its input x.

`on` is the "gradient superhighway": x + F(x) lets the gradient reach early layers unchanged, and
with small output projections each block starts near the identity. `off` returns F(x) alone, the
plain deep network the residual study compares against.
"""


def residual_add(x, fx):
    return x + fx


def no_residual(x, fx):
    return fx
