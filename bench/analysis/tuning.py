"""Tuned comparisons: each arm at its own best learning rate (or other training setting).

A variant that needs another lr than the baseline's loses a comparison at the baseline's lr for
a reason that has nothing to do with the block. `--tune lr` gives every arm a sweep of its own:
a log grid around the shared default (``default × factors``, steps of √2 by default), trained at
the full budget with 3 seeds set aside for choosing (the standard a task's recipe lr is chosen
by), the best value picked by mean final val loss. A pick at an edge of the grid extends it in
that direction, point by point, until the best is interior (at most `MAX_EXTENSIONS` points).
Then the full comparison is trained with every arm at its own best, and once more at the shared
default, so both differences are measured.

A task's recipe lr is itself such a sweep of the baseline, committed under results/reference
(`Recipe.lr_sweep`); when an arm's tuning runs are runs of that sweep (same task, model, budget
and training config but the lr; the same seeds) they are read from it, not trained again.

The rule against fooling ourselves: the tuning seeds (offset by `TUNE_SEED_OFFSET`) are
disjoint from the verdict's seeds, so the verdict is never taken on the runs that chose.

This module holds the choice and the table; it reads finished losses and records only (the
training is `ablations/commands/tune.py`'s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.analysis import tables
from bench.core.records import RunRecord, as_record

TUNABLE = ("lr", "weight_decay")  # TrainConfig fields a sweep may tune (multiplicative grids)
SQRT2 = math.sqrt(2.0)
DEFAULT_GRID = (0.5, 1 / SQRT2, 1.0, SQRT2, 2.0)  # steps of √2 around the default
DEFAULT_FRAC = 1.0
DEFAULT_SEEDS = 3
MAX_EXTENSIONS = 4  # points added past an edge, one at a time, before giving up
TUNE_SEED_OFFSET = 1000  # tuning runs use seeds 1000, 1001, ...; verdicts use 0, 1, ...


@dataclass(frozen=True)
class TuneConfig:
    keys: tuple[str, ...]  # tuned one after another, each at the values chosen before it
    factors: tuple[float, ...] = DEFAULT_GRID  # sorted, with 1 (the default) among them
    frac: float = DEFAULT_FRAC  # of the main budget, per tuning run
    seeds: int = DEFAULT_SEEDS  # tuning seeds per grid point

    @property
    def tune_seeds(self) -> range:
        return range(TUNE_SEED_OFFSET, TUNE_SEED_OFFSET + self.seeds)


def parse_keys(text: str) -> tuple[str, ...]:
    """--tune's keys, e.g. "lr" or "lr,weight_decay"; one-line ValueError otherwise."""
    keys = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    bad = [k for k in keys if k not in TUNABLE]
    if not keys or bad:
        raise ValueError(
            f"--tune {text!r}: can tune {', '.join(TUNABLE)} (comma-separated, e.g. lr), "
            f"not {', '.join(bad) or 'nothing'}"
        )
    return keys


def parse_grid(text: str) -> tuple[float, ...]:
    """--tune-grid's factors of the default, e.g. "0.25,0.5,1,2,4"; 1 is always a point."""
    try:
        factors = {float(f) for f in text.split(",") if f.strip()}
    except ValueError:
        raise ValueError(f"--tune-grid {text!r} is not a list of factors (e.g. 0.5,1,2)") from None
    if not all(math.isfinite(f) and f > 0 for f in factors):
        raise ValueError(f"--tune-grid factors must be positive numbers, got {text!r}")
    factors.add(1.0)
    if len(factors) < 3:
        raise ValueError(f"--tune-grid needs at least two factors besides 1, got {text!r}")
    return tuple(sorted(factors))


def check(cfg: TuneConfig, verdict_seeds: int) -> TuneConfig:
    """One-line ValueError for settings that cannot give a fair choice."""
    if not (math.isfinite(cfg.frac) and 0 < cfg.frac <= 1):
        raise ValueError(f"--tune-frac must be in (0, 1], got {cfg.frac}")
    if cfg.seeds < 1:
        raise ValueError(f"--tune-seeds must be at least 1, got {cfg.seeds}")
    if verdict_seeds > TUNE_SEED_OFFSET:
        raise ValueError(
            f"--seeds {verdict_seeds} would reach the tuning seeds ({TUNE_SEED_OFFSET}+); "
            f"use at most {TUNE_SEED_OFFSET}"
        )
    return cfg


def beyond(values: list[float], side: str) -> float:
    """The next point of a log grid past its `side` ("up" or "down") edge: one more step of
    the size of the edge's own step."""
    lo, hi = sorted(values)[:2], sorted(values)[-2:]
    return hi[1] ** 2 / hi[0] if side == "up" else lo[0] ** 2 / lo[1]


@dataclass
class Choice:
    """One arm's sweep of one key: the mean final val loss at each value (inf: diverged or
    not finished), the best value, how far the grid was extended, and which values were read
    from a committed sweep instead of trained."""

    key: str
    default: float
    losses: dict[float, float] = field(default_factory=dict)
    extended: str | None = None  # "up" / "down": points were added past that edge ...
    added: int = 0  # ... this many
    reused: set[float] = field(default_factory=set)  # values whose runs came from `reused_from`
    reused_from: str = ""

    @property
    def best(self) -> float:
        """Lowest mean loss; a tie goes to the value nearest the default (log scale)."""
        return min(self.losses, key=lambda v: (self.losses[v], abs(math.log(v / self.default))))

    @property
    def edge(self) -> str | None:
        """ "up"/"down" when the best value is the largest/smallest tried, else None."""
        if not math.isfinite(self.losses[self.best]):
            return None  # nothing finished: no direction to extend in
        values = sorted(self.losses)
        return "up" if self.best == values[-1] else "down" if self.best == values[0] else None

    def text(self) -> str:
        """E.g. 'lr 0.004 (×2)', with '↑ grid extended' / 'still at the edge' notes."""
        out = f"{self.best:.3g} (×{self.best / self.default:.3g})"
        if self.extended:
            out += f", grid extended {self.extended} ({self.added} point{'s' * (self.added > 1)})"
        if self.edge:
            out += ", still at the edge"
        if self.reused:
            out += f", {len(self.reused)}/{len(self.losses)} points reused from the recipe's sweep"
        return out


def mean_losses(
    records: Sequence[RunRecord], ids_by_value: dict[float, list[str]]
) -> dict[float, float]:
    """value -> mean final val loss over its runs (inf if any run diverged or is missing)."""
    by_id = {r.run_id: r for r in map(as_record, records)}
    out = {}
    for value, ids in ids_by_value.items():
        losses = [_final(by_id.get(rid)) for rid in ids]
        out[value] = float(np.mean(losses)) if losses else math.inf
    return out


def _final(rec: RunRecord | None) -> float:
    loss = math.nan if rec is None else rec.val_loss  # NaN for a diverged run
    return loss if math.isfinite(loss) else math.inf


# --------------------------------------------------------------------------- the table


def _delta(df: pd.DataFrame, arm: str) -> tuple[str, str]:
    """(Δ val loss [95% CI], verdict) of `arm` in a summary frame; '—' for the reference."""
    rows = df[df["variant"] == arm]
    if rows.empty or arm == tables.BASELINE:
        return "—", "reference" if arm == tables.BASELINE else "—"
    r = rows.iloc[0]
    d = tables._num(r.get("d_val_loss"))
    ci = r.get("d_val_loss_ci")
    text = "—" if not math.isfinite(d) else f"{d:+.4f}" + (f" {ci}" if ci else "")
    return text, tables._verdict_text(r)


def tune_frame(choices: dict[str, list[Choice]], tuned: pd.DataFrame, default: pd.DataFrame):
    """One row per arm: its chosen value of each key, Δ val loss against the baseline with
    both at their own best, and Δ with both at the shared default."""
    rows = []
    for arm, arm_choices in choices.items():
        row = {"arm": arm}
        for c in arm_choices:
            row[f"chosen {c.key}"] = c.text()
        mean = tuned.loc[tuned["variant"] == arm, "val_loss_mean"]
        row["val loss (tuned)"] = f"{float(mean.iloc[0]):.4f}" if len(mean) else "—"
        row["Δ tuned vs tuned [95% CI]"], row["verdict (tuned)"] = _delta(tuned, arm)
        row["Δ at the default [95% CI]"], row["verdict (default)"] = _delta(default, arm)
        rows.append(row)
    return pd.DataFrame(rows)


def footnote(cfg: TuneConfig, budget_text: str, verdict_seeds: int) -> str:
    keys = " and ".join(cfg.keys)
    grid = ", ".join(f"{f:g}" for f in cfg.factors)
    seeds = ", ".join(str(s) for s in cfg.tune_seeds)
    return (
        f"Each arm's {keys} was chosen by the lowest mean final val loss over {cfg.seeds} "
        f"tuning run(s) per value at {cfg.frac:g}× the budget ({budget_text}), on a log grid "
        f"of the shared default × {{{grid}}}"
        + (", one key after another" if len(cfg.keys) > 1 else "")
        + "; a choice at an edge of the grid added points past it one at a time until the best "
        f"was interior ('grid extended', at most {MAX_EXTENSIONS} points; 'still at the edge' "
        "means the best may lie further out). 'Points reused': those values' tuning runs are "
        "runs of the task recipe's committed baseline sweep (same spec and seeds), read from "
        "it instead of trained again. The tuning runs "
        f"used seeds {seeds}, disjoint from the verdict's seeds 0–{verdict_seeds - 1}: no run "
        "that chose a value is part of a verdict. 'Δ tuned vs tuned': each arm at its own best "
        "against the baseline at its own best; 'Δ at the default': every arm at the shared "
        "default. Both are paired t-tests over the verdict seeds, as in the tables below."
    )
