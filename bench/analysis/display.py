"""The comparison frame (bench.analysis.compare) as tables a person reads: the headline (one row per
variant against the baseline) and the full table. Both iterate `bench.analysis.columns.COLUMNS`, so
a registered column shows up in them without an edit here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis import fmt
from bench.analysis.columns import COLUMNS, PRIMARY, Column
from bench.analysis.fmt import BASELINE


def _seeds_text(seeds: dict) -> str:
    counts = set(seeds.values())
    if len(counts) == 1:
        return str(counts.pop())
    return ", ".join(f"{v} {n}" for v, n in seeds.items())


def summary_header(meta: dict) -> str:
    """The line that states what was compared, under which budget and on what."""
    parts = [
        f"Task: {meta.get('task', '?')}",
        f"budget: {fmt.budget_label(meta)}",
        f"model: {meta.get('model_size', '?')}",
        f"seeds per variant: {_seeds_text(meta.get('seeds') or {})}",
        f"device: {', '.join(meta.get('device_names') or ['?'])}",
        f"torch {', '.join(meta.get('torch') or ['?'])}",
        f"triton {', '.join(meta.get('triton') or ['n/a'])}",
        f"git {', '.join(c[:10] for c in meta.get('git_commits') or ['?'])}",
    ]
    return "; ".join(parts) + "."


def frame_shows(df: pd.DataFrame) -> list[Column]:
    """The columns a comparison frame carries, in COLUMNS' order."""
    return [c for _, c in COLUMNS.items() if c.label and (f"{c.name}_mean" in df or c.name in df)]


def value_cell(c: Column, r: pd.Series) -> str:
    """A column's value in one row: 'mean ± std' in its format, or the median integer."""
    if c.agg == "median":
        value = fmt.num_or_nan(r, c.name)
        return "—" if not np.isfinite(value) else f"{int(value):,}"
    mean, std = fmt.num_or_nan(r, f"{c.name}_mean"), fmt.num_or_nan(r, f"{c.name}_std")
    return fmt.pm_sig(mean, std) if c.fmt == "sig3" else fmt.pm(mean, std, c.fmt)


def delta_cell(c: Column, r: pd.Series) -> str:
    """A column's difference to the baseline: '+1.2% (n.s.)' (Welch), '+0.010 (better)'
    (paired: the test's short verdict), '+3.0%' (untested)."""
    text = fmt.signed(fmt.num_or_nan(r, c.d), c.delta_fmt, "%" if c.delta == "pct" else "")
    if text == "—" or c.test is None:
        return text
    if c.test == "paired":
        return f"{text} ({fmt.short_verdict(r.get(c.verdict))})"
    return text + fmt.ns(r.get(c.verdict))


def primary_label(df: pd.DataFrame) -> str:
    """The header of the verdict's difference: 'Δ val loss', or 'Δ val bpb' where the group
    mixes tokenisers and the verdict is in bits per byte (bench.analysis.compare)."""
    return "Δ val bpb" if df.attrs.get("primary", PRIMARY) != PRIMARY else COLUMNS[PRIMARY].headline


def _primary_cells(r: pd.Series, delta_label: str) -> dict:
    c = COLUMNS[PRIMARY]
    return {
        c.label: value_cell(c, r),
        delta_label: fmt.signed(fmt.num_or_nan(r, c.d), c.delta_fmt),
        "95% CI (Δ)": r.get("d_val_loss_ci") or "—",
        "verdict": r.get("verdict") or "—",
    }


def _overfit_shown(df: pd.DataFrame) -> bool:
    """The overfitting guard gets a column where it flags a variant."""
    return "overfit" in df and bool((df["overfit"] == True).any())  # noqa: E712 (None too)


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Human-readable table (strings): 'mean ± std', signed deltas, '—' where not applicable."""
    cols = frame_shows(df)
    overfit, delta_label = _overfit_shown(df), primary_label(df)
    rows = []
    for _, r in df.iterrows():
        n, div = int(r["n_seeds"]), int(r["n_diverged"]) + int(r.get("n_failed") or 0)
        out = {
            "variant": r["variant"],
            "ok/seeds": f"{n - div}/{n}",
            "learned": {True: "yes", False: "no"}.get(r.get("learned"), "?"),
        }
        if overfit:
            out["overfit"] = {True: "yes", False: "no"}.get(r.get("overfit"), "?")
        for c in cols:
            if c.name == PRIMARY:
                out.update(_primary_cells(r, delta_label))
                continue
            out[c.label] = value_cell(c, r)
            if c.delta:
                out[c.delta_label] = delta_cell(c, r)
        rows.append(out)
    return pd.DataFrame(rows)


def _ladder_cell(r: pd.Series) -> str:
    """The ladder multiplier as the headline shows it: with its interval, whether it lies
    outside the ladder, and, where the ladder's control failed, that it is no finding."""
    lo, hi = fmt.num_or_nan(r, "x_ladder_ci_low"), fmt.num_or_nan(r, "x_ladder_ci_high")
    text = fmt.times(fmt.num_or_nan(r, "x_ladder"), lo, hi)
    if r.get("x_ladder_unreachable"):
        text += " unreachable"
    elif r.get("x_ladder_extrapolated"):
        text += " extrap."
    if r.get("x_ladder_control") == "failed":
        text += " (control failed)"
    return text


def verdict_text(r: pd.Series) -> str:
    """The verdict, short enough for the headline: 'n.s.' plus the seeds that would resolve
    the observed Δ where there is no significant difference."""
    verdict = fmt.short_verdict(r.get("verdict"))
    need = r.get("seeds_needed")
    if verdict == "n.s." and need is not None and pd.notna(need):
        verdict += f" (≈{int(need)} seeds to resolve)"
    return verdict


def _multiplier_cells(r: pd.Series, ladder: bool) -> dict:
    def times(key):
        return fmt.times(*(fmt.num_or_nan(r, k) for k in (key, f"{key}_ci_low", f"{key}_ci_high")))

    out = {"× steps (crossing)": times("x_steps"), "× time (crossing)": times("x_time")}
    if ladder:
        out["× steps (ladder)"] = _ladder_cell(r)
    return out


def headline_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The compact table a person reads first: one row per variant against the baseline."""
    cols = [c for c in frame_shows(df) if c.headline and c.name != PRIMARY]
    ladder = "x_ladder" in df.columns and df["x_ladder"].astype(float).notna().any()
    rows = []
    for _, r in df.iterrows():
        if r["variant"] == BASELINE:
            continue
        primary = COLUMNS[PRIMARY]
        ci = r.get("d_val_loss_ci")
        delta = fmt.signed(fmt.num_or_nan(r, primary.d), primary.delta_fmt)
        mde = fmt.num_or_nan(r, "mde")
        out = {
            "variant": r["variant"],
            f"{primary_label(df)} [95% CI]": delta + (f" {ci}" if ci else ""),
            "verdict": verdict_text(r),
            "MDE": "—" if not np.isfinite(mde) else f"{mde:.4f}",
            **_multiplier_cells(r, ladder),
        }
        out.update({c.headline: delta_cell(c, r) for c in cols})
        rows.append(out)
    return pd.DataFrame(rows)
