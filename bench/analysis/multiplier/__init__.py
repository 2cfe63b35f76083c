"""Turn a loss gap into "how many steps / how much compute is this change worth".

A final validation-loss difference of 0.01 nats is hard to weigh. This package re-expresses it as
a multiplier on the baseline's budget, in two ways. Everything here reads plain lists and dicts
(the ``record["curve"]`` points and per-seed losses); there is no torch and no record I/O.

Two modules, one per way: `crossing` (where the two curves reach the same loss, for every
comparison) and `ladder` (the baseline trained at several budgets, fitted and inverted). Their
public names are re-exported here.
"""

from __future__ import annotations

from bench.analysis.multiplier.crossing import (
    crossing,
    crossing_multipliers,
    first_crossing,
    geometric_summary,
)
from bench.analysis.multiplier.ladder import (
    BETA_GRID,
    CONTROL_FACTOR,
    FORMS,
    LOG_LINEAR,
    POWER_LAW,
    POWER_LAW_MIN_BUDGETS,
    LadderFit,
    LogLinearFit,
    PowerLawFit,
    fit_ladder,
    ladder_control,
    ladder_form,
    ladder_multiplier,
)

__all__ = [
    "BETA_GRID",
    "CONTROL_FACTOR",
    "FORMS",
    "LOG_LINEAR",
    "POWER_LAW",
    "POWER_LAW_MIN_BUDGETS",
    "LadderFit",
    "LogLinearFit",
    "PowerLawFit",
    "crossing",
    "crossing_multipliers",
    "first_crossing",
    "fit_ladder",
    "geometric_summary",
    "ladder_control",
    "ladder_form",
    "ladder_multiplier",
]
