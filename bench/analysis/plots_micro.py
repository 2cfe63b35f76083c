"""The micro-benchmarks figure: median time per pytest-benchmark test, one panel per group,
machines side by side (the report's last figure)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from bench.analysis.plots import _finish, _style


def _micro_source(data: dict, path: Path) -> str:
    info = _dict(data.get("machine_info"))
    cpu = _dict(info.get("cpu")).get("brand_raw")
    for bench in data.get("benchmarks") or []:
        extra = _dict(_dict(bench).get("extra_info"))
        if extra.get("device_name"):
            return str(extra["device_name"])
    return str(info.get("device_name") or cpu or info.get("node") or path.stem)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def load_micro(paths: Iterable) -> pd.DataFrame:
    """Rows (source, group, name, median_ms, iqr_ms) from pytest-benchmark JSON files.

    A file that is not pytest-benchmark output (unreadable, no "benchmarks" list) and
    benchmark entries without a median time are left out, each file with one warning line.
    """
    rows = []
    for p in map(Path, paths):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            _skipped(p, f"not readable JSON ({getattr(err, 'strerror', None) or err})")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
            _skipped(p, "not pytest-benchmark output (no 'benchmarks' list)")
            continue
        found = [_micro_row(b) for b in data["benchmarks"]]
        if None in found:
            _skipped(p, f"{found.count(None)} of {len(found)} benchmark(s) without a median time")
        rows += [{"source": _micro_source(data, p), **r} for r in found if r is not None]
    return pd.DataFrame(rows)


def _micro_row(bench) -> dict | None:
    """One benchmark entry's row, or None when it is no benchmark with a median time."""
    stats = bench.get("stats") if isinstance(bench, dict) else None
    median = stats.get("median") if isinstance(stats, dict) else None
    if not isinstance(median, int | float) or isinstance(median, bool):
        return None
    iqr = stats.get("iqr")
    return {
        "group": str(bench.get("group") or "ungrouped"),
        "name": str(bench.get("name") or bench.get("fullname") or "?"),
        "median_ms": 1e3 * float(median),
        "iqr_ms": 1e3 * float(iqr if isinstance(iqr, int | float) else 0.0),
    }


def _skipped(path: Path, why: str) -> None:
    print(f"warning: micro-benchmark file {path}: {why}; left out", file=sys.stderr)


def micro_benchmarks(bench_json_paths: Iterable, path) -> Path | None:
    """Median time per micro-benchmark, one panel per benchmark group; None if there are none.

    Several files (e.g. two machines) are shown side by side as hue, labelled by device.
    """
    df = load_micro(bench_json_paths)
    if df.empty:
        return None
    groups = list(dict.fromkeys(df["group"]))
    sources = list(dict.fromkeys(df["source"]))
    heights = [max(1.5, 0.35 * df[df.group == g]["name"].nunique() * len(sources) + 0.8)
               for g in groups]  # fmt: skip
    with _style():
        fig = Figure(figsize=(8, sum(heights) + 1.2))
        axes = fig.subplots(len(groups), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, g in zip(axes, groups, strict=True):
            sub = df[df["group"] == g]
            sns.barplot(
                data=sub, y="name", x="median_ms", hue="source", hue_order=sources,
                errorbar=None, orient="h", ax=ax, legend=len(sources) > 1,
            )  # fmt: skip
            for container in ax.containers:
                ax.bar_label(container, fmt="{:.3g}", fontsize=7, padding=2)
            ax.set_title(g, fontsize=10, loc="left")
            ax.set_xlabel("median time, ms (lower is better)")
            ax.set_ylabel("")
        context = f"{', '.join(sources)} · fixed-shape kernels (no task, no training budget)"
        caption = "Bars: median over pytest-benchmark rounds."
        return _finish(fig, path, "Micro-benchmarks", context, caption)
