"""The micro-benchmarks figure: median time per pytest-benchmark test, one panel per group,
machines side by side (the report's last figure)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from bench.analysis.plots import _finish, _style


def _micro_source(data: dict, path: Path) -> str:
    info = data.get("machine_info") or {}
    cpu = (info.get("cpu") or {}).get("brand_raw")
    for bench in data.get("benchmarks") or []:
        extra = bench.get("extra_info") or {}
        if extra.get("device_name"):
            return str(extra["device_name"])
    return str(info.get("device_name") or cpu or info.get("node") or path.stem)


def load_micro(paths: Iterable) -> pd.DataFrame:
    """Rows (source, group, name, median_ms, iqr_ms) from pytest-benchmark JSON files.

    Files that are not pytest-benchmark output (no "benchmarks" list) are skipped.
    """
    rows = []
    for p in paths:
        p = Path(p)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
            continue
        source = _micro_source(data, p)
        for b in data["benchmarks"]:
            st = b.get("stats") or {}
            if st.get("median") is None:
                continue
            rows.append(
                {
                    "source": source,
                    "group": b.get("group") or "ungrouped",
                    "name": b.get("name") or b.get("fullname") or "?",
                    "median_ms": 1e3 * float(st["median"]),
                    "iqr_ms": 1e3 * float(st.get("iqr") or 0.0),
                }
            )
    return pd.DataFrame(rows)


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
