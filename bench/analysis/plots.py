"""Figures of a sweep, as PNG files.

Figures are drawn on ``matplotlib.figure.Figure`` objects directly instead of through pyplot:
that needs no display, never switches the global backend under somebody else's code, and
leaves no open figures behind (PNG output goes through the Agg canvas). Seaborn styling is
applied with context managers for the same reason.

Every title names the device, task and budget, because a throughput number or a loss curve
without those is not interpretable. Diverged runs are left out of means and bands (they are
counted in the summary table) and the caption says how many were left out.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from bench.analysis.fmt import budget_label, variant_order
from bench.analysis.frame import GROUP_COLS, records_frame
from bench.core.records import RunRecord, as_record

CURVE_X = {"steps": ("step", "step"), "tokens": ("tokens", "tokens"), "seconds": ("time_s", "s")}
_DPI = 120


def _style():
    return sns.axes_style("whitegrid")


def _uniq(values: Iterable) -> list[str]:
    return [str(v) for v in dict.fromkeys(values) if v is not None and str(v) != "nan"]


def _context_line(frame: pd.DataFrame) -> str:
    """'device · task · budget' for the suptitle; lists every value if the frame mixes them."""
    devices = ", ".join(_uniq(frame["device_name"])) or "unknown device"
    tasks = ", ".join(_uniq(frame["task"])) or "?"
    budgets = []
    for (mode, value), _ in frame.groupby(["budget_mode", "budget_value"], sort=False):
        budgets.append(budget_label({"budget_mode": mode, "budget_value": value}))
    return f"{devices} · {tasks} · {'; '.join(budgets) or '?'}"


def _label_column(frame: pd.DataFrame) -> pd.Series:
    """Variant name, suffixed by device when the frame spans devices (never mix them silently)."""
    if frame["device_name"].nunique() > 1:
        return frame["variant"] + " @ " + frame["device_name"].astype(str)
    return frame["variant"]


def _label_order(frame: pd.DataFrame) -> list[str]:
    order = variant_order(frame["variant"])
    labels = list(dict.fromkeys(frame["label"]))
    rank = {v: i for i, v in enumerate(order)}
    return sorted(labels, key=lambda lab: (rank.get(lab.split(" @ ")[0], 99), labels.index(lab)))


def _finish(fig: Figure, path, title: str, context: str, caption: str | None = None) -> Path:
    fig.suptitle(f"{title}\n{context}", fontsize=11)
    if caption:
        caption = textwrap.fill(caption, width=int(fig.get_figwidth() * 14))
        n_lines = caption.count("\n") + 1
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, color="0.35")
    else:
        n_lines = 0
    fig.tight_layout(rect=(0, 0.035 * n_lines + 0.01 * bool(n_lines), 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def _frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    frame = records_frame(records)
    if frame.empty:
        raise ValueError("no records to plot")
    frame["label"] = _label_column(frame)
    return frame


def _diverged_note(frame: pd.DataFrame) -> str | None:
    n = int((~frame["ok"]).sum())
    return f"{n} diverged run(s) excluded." if n else None


def _empty_panel(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------- loss curves


def _curve_rows(records: Sequence[RunRecord], ok_ids: set, labels: dict) -> pd.DataFrame:
    rows = []
    for rec in map(as_record, records):
        if rec.run_id not in ok_ids:
            continue
        for point in rec.curve:
            val = point.get("val_loss")
            if val is None or not math.isfinite(float(val)):
                continue
            rows.append(
                {
                    "label": labels[rec.run_id],
                    "seed": rec.seed,
                    "step": point.get("step"),
                    "tokens": point.get("tokens"),
                    "time_s": point.get("time_s"),
                    "val_loss": float(val),
                }
            )
    return pd.DataFrame(rows)


def _align(curves: pd.DataFrame, x: str, n_points: int = 40) -> pd.DataFrame:
    """Put every seed of a variant on common x values so the band over seeds is defined.

    With a step or token budget the eval points coincide already; with a wall-clock budget
    they do not, and each run is linearly interpolated onto a grid over the shared x range.
    """
    parts = []
    for label, g in curves.groupby("label", sort=False):
        per_seed = {s: tuple(sorted(gs[x])) for s, gs in g.groupby("seed")}
        if len(set(per_seed.values())) <= 1:
            parts.append(g)
            continue
        lo = max(min(v) for v in per_seed.values())
        hi = min(max(v) for v in per_seed.values())
        if not hi > lo:
            parts.append(g)
            continue
        grid = np.linspace(lo, hi, n_points)
        for seed, gs in g.groupby("seed"):
            gs = gs.sort_values(x)
            y = np.interp(grid, gs[x].to_numpy(float), gs["val_loss"].to_numpy(float))
            parts.append(pd.DataFrame({"label": label, "seed": seed, x: grid, "val_loss": y}))
    return pd.concat(parts, ignore_index=True)


def loss_curves(records: Sequence[RunRecord], path) -> Path:
    """Validation loss against training progress, mean over seeds with a ±1 std band: the whole
    run, and beside it the last half zoomed (an early spike, e.g. post-norm's, would otherwise
    stretch the y axis and squash every final curve into one band).

    The x axis follows the budget: steps for a step budget, tokens for a token budget,
    seconds for a wall-clock budget, so that the last point is where the budget ran out.
    """
    frame = _frame(records)
    mode = str(frame["budget_mode"].iloc[0])
    x, unit = CURVE_X.get(mode, ("step", "step"))
    ok = frame[frame["ok"]]
    labels = dict(zip(frame["run_id"], frame["label"], strict=False))
    curves = _curve_rows(records, set(ok["run_id"]), labels)
    with _style():
        fig = Figure(figsize=(12, 4.8))
        ax_all, ax_late = fig.subplots(1, 2)
        if curves.empty or curves[x].isna().all():
            for ax in (ax_all, ax_late):
                _empty_panel(ax, "no validation curve recorded")
        else:
            curves = _align(curves.dropna(subset=[x]), x)
            order = [lab for lab in _label_order(frame) if lab in set(curves["label"])]
            xlabel = f"training {unit}" if unit != "s" else "training time (s)"
            _curve_panel(ax_all, curves, x, order, xlabel, "whole run")
            vals = curves["val_loss"].to_numpy()
            if vals.min() > 0 and vals.max() / vals.min() > 10:
                ax_all.set_yscale("log")
            late = late_half(curves, x)
            _curve_panel(ax_late, late, x, order, xlabel, "last half, zoomed")
            ax_late.set_ylim(*zoom_limits(late, x))
            ax_late.get_legend().remove()
        caption = "Line: mean over seeds; band: ±1 std. Right: the last half of training only."
        note = _diverged_note(frame)
        caption += f" {note}" if note else ""
        return _finish(fig, path, "Validation loss", _context_line(frame), caption)


def _curve_panel(ax, curves: pd.DataFrame, x: str, order: list[str], xlabel: str, title: str):
    sns.lineplot(
        data=curves, x=x, y="val_loss", hue="label", hue_order=order,
        errorbar="sd", ax=ax, marker="o", markersize=3,
    )  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation loss")
    ax.set_title(title, fontsize=10)
    ax.legend(title="variant", fontsize=8)


def late_half(curves: pd.DataFrame, x: str) -> pd.DataFrame:
    """The points of the aligned curves in the last half of the x range."""
    lo, hi = curves[x].min(), curves[x].max()
    return curves[curves[x] >= lo + (hi - lo) / 2]


def zoom_limits(late: pd.DataFrame, x: str, pad: float = 0.08) -> tuple[float, float]:
    """y limits that hold every variant's mean ± std over `late`, padded by `pad` of the span."""
    stats = late.groupby(["label", x])["val_loss"].agg(["mean", "std"]).fillna(0.0)
    lo = float((stats["mean"] - stats["std"]).min())
    hi = float((stats["mean"] + stats["std"]).max())
    span = max(hi - lo, 1e-6)
    return lo - pad * span, hi + pad * span


# --------------------------------------------------------------------------- lr sweeps


def _lr_sweep_points(frame: pd.DataFrame, min_lrs: int = 3) -> pd.DataFrame:
    """Finished runs of the arms trained at >= `min_lrs` learning rates within one group."""
    ok = frame[frame["ok"] & np.isfinite(frame["lr"].to_numpy(float))]
    if ok.empty:
        return ok
    keys = [ok[c].astype(str) for c in (*GROUP_COLS, "arm")]
    return ok[ok.groupby(keys)["lr"].transform("nunique") >= min_lrs]


def lr_sweep_points(records: Sequence[RunRecord]) -> tuple[pd.DataFrame, str]:
    """The runs an lr figure draws, and over which seeds its means are: where the folder holds
    `--tune` runs (seeds from TUNE_SEED_OFFSET on), those alone, not the verdict's runs at the
    chosen and default values (their seeds did not choose, and adding them can move the best
    mean to another lr than the one chosen)."""
    from bench.analysis.tuning import TUNE_SEED_OFFSET

    frame = _frame(records)
    tuning = frame["seed"] >= TUNE_SEED_OFFSET
    if tuning.any():
        return _lr_sweep_points(frame[tuning]), "the tuning seeds (the runs that chose each lr)"
    return _lr_sweep_points(frame), "seeds"


def lr_sweep(records: Sequence[RunRecord], path) -> Path | None:
    """Final validation loss against learning rate, one line per arm (mean over seeds; every
    run a dot; a star at each arm's lowest mean). A `--tune` folder also holds the verdict's
    runs (seeds below TUNE_SEED_OFFSET) at the chosen and default values: only the tuning runs
    are drawn, so the star sits where `--tune` chose. None when no arm was trained at three or
    more learning rates (nothing to draw)."""
    pts, seeds = lr_sweep_points(records)
    if pts.empty:
        return None
    order = list(dict.fromkeys(variant_order(pts["arm"])))
    with _style():
        fig = Figure(figsize=(7.0, 4.6))
        ax = fig.subplots()
        sns.lineplot(
            data=pts, x="lr", y="val_loss", hue="arm", hue_order=order, estimator="mean",
            errorbar=None, marker="o", ax=ax,
        )  # fmt: skip
        sns.scatterplot(data=pts, x="lr", y="val_loss", hue="arm", hue_order=order, alpha=0.35,
                        s=18, legend=False, ax=ax)  # fmt: skip
        means = pts.groupby(["arm", "lr"])["val_loss"].mean().reset_index()
        best = means.loc[means.groupby("arm")["val_loss"].idxmin()]
        ax.scatter(best["lr"], best["val_loss"], marker="*", s=160, color="k", zorder=5)
        ax.set_xscale("log")
        lrs = sorted(pts["lr"].unique())
        ax.set_xticks(lrs, [f"{v:g}" for v in lrs], rotation=30 if len(lrs) > 6 else 0)
        ax.minorticks_off()
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("final validation loss")
        ax.legend(title="arm", fontsize=8)
        caption = f"Line: mean over {seeds}; dots: runs; star: each arm's lowest mean."
        return _finish(fig, path, "Final loss vs learning rate", _context_line(pts), caption)


# --------------------------------------------------------------------------- throughput


def _bar_panel(ax, ok: pd.DataFrame, col: str, order: list[str], ylabel: str, fmt: str) -> None:
    if not np.isfinite(ok[col].to_numpy(float)).any():
        _empty_panel(ax, f"{ylabel.split(' (')[0]}\nnot measured")
        return
    sns.barplot(
        data=ok, x="label", y=col, order=order, hue="label", hue_order=order,
        errorbar="sd", capsize=0.2, ax=ax, legend=False,
    )  # fmt: skip
    for container in ax.containers:
        ax.bar_label(container, fmt=fmt, fontsize=7, label_type="center", color="white")
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30 if len(order) > 3 else 0)


def throughput_memory(records: Sequence[RunRecord], path) -> Path:
    """Training throughput and peak memory per variant: bars are means, whiskers ±1 std."""
    frame = _frame(records)
    ok = frame[frame["ok"]]
    order = _label_order(ok) if not ok.empty else []
    with _style():
        fig = Figure(figsize=(max(7.5, 1.3 * len(order) + 3), 4.6))
        ax_tok, ax_mem = fig.subplots(1, 2)
        if ok.empty:
            _empty_panel(ax_tok, "no finished runs")
            _empty_panel(ax_mem, "no finished runs")
        else:
            fmt = "{:,.0f}"
            _bar_panel(ax_tok, ok, "tokens_per_s", order, "tokens / s (higher is better)", fmt)
            _bar_panel(ax_mem, ok, "peak_mem_mb", order, "peak memory MB (lower is better)", fmt)
        caption = "Bars: mean over seeds; whiskers: ±1 std."
        if frame["device_name"].nunique() > 1:
            caption += " Different devices: do not compare speed across them."
        note = _diverged_note(frame)
        caption += f" {note}" if note else ""
        return _finish(fig, path, "Throughput and memory", _context_line(frame), caption)


# --------------------------------------------------------------------------- trade-off


def pareto_front(points: pd.DataFrame, x: str, y: str) -> list:
    """Index labels of points no other point beats on both x and y (lower is better for both)."""
    pts = points.dropna(subset=[x, y]).sort_values([x, y])
    front, best_y = [], math.inf
    for idx, row in pts.iterrows():
        if row[y] < best_y:
            front.append(idx)
            best_y = row[y]
    return front


def _tradeoff_points(ok: pd.DataFrame) -> pd.DataFrame:
    agg = ok.groupby("label", sort=False).agg(
        loss=("val_loss", "mean"),
        loss_sd=("val_loss", "std"),
        ms=("step_ms", "mean"),
        ms_sd=("step_ms", "std"),
        device=("device_name", "first"),
    )
    return agg.reindex([lab for lab in _label_order(ok) if lab in agg.index])


def tradeoff(records: Sequence[RunRecord], path) -> Path:
    """Final validation loss against step time, one point per variant, Pareto front marked.

    The front is computed per device: a faster step on a faster machine is not a better variant.
    """
    frame = _frame(records)
    ok = frame[frame["ok"]]
    with _style():
        fig = Figure(figsize=(7.5, 5.2))
        ax = fig.subplots()
        pts = _tradeoff_points(ok) if not ok.empty else pd.DataFrame()
        if pts.empty or pts[["loss", "ms"]].isna().all().any():
            _empty_panel(ax, "no finished runs with loss and step time")
        else:
            _draw_tradeoff(ax, pts)
        caption = "Points: mean over seeds; error bars: ±1 std. Front: no other variant has both "
        caption += "lower loss and lower step time."
        note = _diverged_note(frame)
        caption += f" {note}" if note else ""
        return _finish(fig, path, "Loss vs. step time", _context_line(frame), caption)


def _draw_tradeoff(ax, pts: pd.DataFrame) -> None:
    palette = dict(zip(pts.index, sns.color_palette(n_colors=len(pts)), strict=False))
    on_front = set()
    for _, dev in pts.groupby("device", sort=False):
        front = pareto_front(dev, "ms", "loss")
        on_front.update(front)
        fx, fy = dev.loc[front, "ms"], dev.loc[front, "loss"]
        ax.step(fx, fy, where="post", color="0.5", ls="--", lw=1, zorder=1)
    for label, p in pts.iterrows():
        ax.errorbar(
            p["ms"], p["loss"], xerr=np.nan_to_num(p["ms_sd"]), yerr=np.nan_to_num(p["loss_sd"]),
            fmt="o", ms=8, capsize=3, color=palette[label], zorder=2,
            mec="black" if label in on_front else palette[label],
        )  # fmt: skip
    ax.plot([], [], color="0.5", ls="--", lw=1, label="Pareto front")
    ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("step time, ms (median per run; lower is better)")
    ax.set_ylabel("final validation loss (lower is better)")
    ax.margins(0.15)
    texts = {lab: f"{lab} (Pareto)" if lab in on_front else lab for lab in pts.index}
    lifts = _label_lifts(ax, pts, texts, fontsize=8)
    for label, p in pts.iterrows():
        lift = lifts[label]
        ax.annotate(
            texts[label], (p["ms"], p["loss"]), xytext=(6, 6 + lift), textcoords="offset points",
            fontsize=8, fontweight="bold" if label in on_front else "normal",
            arrowprops=dict(arrowstyle="-", color="0.6", lw=0.6) if lift else None,
        )  # fmt: skip


def _label_lifts(ax, pts: pd.DataFrame, texts: dict, fontsize: float) -> dict:
    """Points to raise each point's label by so that no two labels overlap.

    Variants often cluster (same loss, same speed) and their labels would print on top of each
    other. Labels are placed from the lowest point up, each at the first height at or above its
    own point that clears every label already placed; a raised label gets a thin leader line.
    Sizes are estimated from the font size (no renderer needed): height ~1.3 em, width ~0.6 em
    a character, which errs on the side of more space."""
    ax.autoscale_view()  # apply the margins now, so that transData maps to the final limits
    to_pt = 72.0 / ax.figure.dpi
    xy = ax.transData.transform(pts[["ms", "loss"]].to_numpy(dtype=float)) * to_pt  # (n, 2) pt
    height = 1.3 * fontsize
    placed: list[tuple[float, float, float]] = []  # (x0, x1, y0) of labels placed so far
    lifts = {}
    for i in np.argsort(xy[:, 1], kind="stable"):
        label = pts.index[i]
        x0 = xy[i, 0] + 6
        x1 = x0 + 0.6 * fontsize * len(texts[label])
        y = xy[i, 1] + 6
        for px0, px1, py in sorted(placed, key=lambda b: b[2]):
            if px0 < x1 and x0 < px1 and py < y + height and y < py + height:
                y = py + height  # overlaps this one: go just above it, then check the rest
        placed.append((x0, x1, y))
        lifts[label] = float(y - xy[i, 1] - 6)
    return lifts
