"""Formatting for the analysis: numbers, intervals, verdicts and markdown tables. A leaf: it
imports nothing of ours, so every table, section and report may use it without a cycle.

Every helper returns '—' for a value that was not measured (NaN or None), so a table never
shows 'nan'.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

BASELINE = "baseline"  # the variant every other one is compared against
BUDGET_UNITS = {"steps": "steps", "tokens": "tokens", "seconds": "s"}
NO_DIFFERENCE = "no significant difference"


def num(value) -> float:
    """A value as float; None, booleans, strings and missing values become NaN."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def num_or_nan(row: pd.Series, col: str) -> float:
    """`row[col]` as float, NaN where the column is absent or empty."""
    value = row.get(col)
    return float(value) if value is not None and pd.notna(value) else math.nan


def variant_order(variants: Iterable[str]) -> list[str]:
    """Baseline first, then the others in first-seen order (the order the sweep ran them)."""
    seen = list(dict.fromkeys(variants))
    return ([BASELINE] if BASELINE in seen else []) + [v for v in seen if v != BASELINE]


def ci(lo: float, hi: float) -> str | None:
    """'[-0.012, +0.034]'; None where either end is missing."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return f"[{lo:+.4g}, {hi:+.4g}]"


def pm(mean: float, std: float, fmt: str) -> str:
    """'mean ± std' in format `fmt`; the mean alone without a std."""
    if not np.isfinite(mean):
        return "—"
    if not np.isfinite(std):
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(std, fmt)}"


def decimals(value: float, sig: int = 3) -> int:
    """Decimals that show `sig` significant digits of `value` (at least 0)."""
    if not np.isfinite(value) or value == 0:
        return sig - 1
    return max(0, sig - 1 - int(math.floor(math.log10(abs(value)))))


def pm_sig(mean: float, std: float, sig: int = 3) -> str:
    """'mean ± std' with the mean to `sig` significant digits and std to the same decimals."""
    return pm(mean, std, f",.{decimals(mean, sig)}f")


def signed(value: float, fmt: str, suffix: str = "") -> str:
    """'+1.23%': a difference with its sign."""
    return "—" if not np.isfinite(value) else f"{format(value, '+' + fmt)}{suffix}"


def short_verdict(verdict) -> str:
    return {NO_DIFFERENCE: "n.s."}.get(verdict, verdict or "—")


def ns(verdict) -> str:
    """Marks a difference the test could not separate from noise."""
    return " (n.s.)" if verdict in (NO_DIFFERENCE, "too few seeds") else ""


def _x(value: float) -> str:
    return "∞" if value == math.inf else f"{value:.2f}"


def times(value: float, lo: float = math.nan, hi: float = math.nan) -> str:
    """A multiplier with its interval: '1.32× [1.10, 1.58]'; an unreachable budget is '∞'."""
    if np.isnan(value):
        return "—"
    text = f"{_x(value)}×"
    if not (np.isnan(lo) or np.isnan(hi)):
        text += f" [{_x(lo)}, {_x(hi)}]"
    return text


def budget_text(mode: str, value: float) -> str:
    """'2,000 steps', '30 s'."""
    v = int(value) if np.isfinite(value) and float(value).is_integer() else value
    unit = BUDGET_UNITS.get(mode, mode)
    return f"{v:,} {unit}" if isinstance(v, int) else f"{v} {unit}"


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table of a frame of strings (no tabulate dependency)."""

    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(df.columns))) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


BUDGET_WORDS = {
    "steps": "equal budget: same steps",
    "tokens": "equal budget: same tokens",
    "seconds": "equal budget: same wall-clock seconds",
}


def budget_label(meta: dict) -> str:
    """E.g. '2,000 steps (equal budget: same steps)'."""
    mode = meta.get("budget_mode", "?")
    words = BUDGET_WORDS.get(mode, f"equal budget: same {mode}")
    return f"{budget_text(mode, meta.get('budget_value', math.nan))} ({words})"


def group_title(meta: dict) -> str:
    """One-line name of a group: task · budget · model size · device."""
    mode = meta.get("budget_mode", "?")
    parts = [meta.get("task", "?"), budget_text(mode, meta.get("budget_value", math.nan))]
    parts += [meta.get("model_size", "?"), ", ".join(meta.get("device_names") or ["?"])]
    return " · ".join(str(p) for p in parts)
