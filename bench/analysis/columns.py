"""The metrics of a run, declared once: every row of `records_frame`, every column of the
comparison frame (summary.csv), the full table, the headline and the footnote iterate `COLUMNS`.

Adding a metric is one entry, from a plugin file too:

    from bench.analysis.columns import COLUMNS, Column
    COLUMNS.register("wnorm", Column("wnorm", label="weight norm", fmt=".3f", delta="abs",
                                     test="paired", read=lambda rec: rec.probes["wnorm"]))

A column with a `label` gets mean ± std per variant in the tables; one with a `delta` also its
difference to the baseline ('abs': variant − baseline, 'pct': relative to the baseline mean),
tested by seed ('paired': the seed fixes data and init, so differences pair) or with Welch's
test ('welch': timing noise has nothing to do with the seed), or untested (None). Without a
label it is a raw record metric: a row of `records_frame`, in no table.

The frame's column names keep the names committed summary.csv files use: `d_<key>` and
`d_<key>_ci` and `<key>_verdict` for a paired difference, `d_<key>_pct` and `d_<key>_verdict`
for a relative one. `PRIMARY` (val loss) is the comparison itself: its verdict, interval and
MDE get their own columns (bench.analysis.compare).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from variants.named import Registry

PRIMARY = "val_loss"  # the metric every verdict is about


@dataclass(frozen=True)
class Column:
    name: str  # the record's metric key, and the stem of the frame's columns
    label: str = ""  # the full table's header; '' = a raw metric, in no table
    fmt: str = ".4g"  # format of mean ± std; 'sig3': three significant digits
    agg: str = "mean"  # 'mean': mean ± std over finished runs; 'median': one integer
    delta: str | None = None  # None | 'abs' | 'pct'
    delta_label: str = ""  # the full table's header of the difference
    delta_fmt: str = ".1f"
    test: str | None = None  # None | 'paired' | 'welch'
    lower_is_better: bool = True
    headline: str = ""  # the difference's header in the headline table; '' = not there
    optional: bool = False  # in the tables only when some run of the group measured it
    key: str = ""  # stem of the difference's columns, where it differs from `name`
    footnote: str = ""  # said under every table that shows the column
    read: Callable | None = None  # RunRecord -> value; default: the record's metric `name`

    @property
    def stem(self) -> str:
        return self.key or self.name

    @property
    def d(self) -> str:
        """The difference's column: 'd_accuracy', 'd_step_ms_pct'."""
        return f"d_{self.stem}" + ("_pct" if self.delta == "pct" else "")

    @property
    def d_ci(self) -> str:
        return f"d_{self.stem}_ci"

    @property
    def verdict(self) -> str:
        """The test's verdict column: '<key>_verdict' paired, 'd_<key>_verdict' Welch."""
        return f"{self.stem}_verdict" if self.test == "paired" else f"d_{self.stem}_verdict"

    def value(self, rec) -> float:
        if self.read is None:
            return rec.metric(self.name)
        try:
            value = self.read(rec)
        except (KeyError, TypeError, IndexError):  # a record without that measurement
            return math.nan
        return math.nan if value is None else float(value)


COLUMNS: Registry[Column] = Registry("column")


def _add(col: Column, description: str = "") -> None:
    COLUMNS.register(col.name, col, description=description)


# In the order a row of records_frame lays them out; the labelled ones are the tables' columns,
# in this same order.
_add(Column(PRIMARY, "val loss", ".4f", delta="abs", delta_label="Δ val loss", delta_fmt=".4f",
            test="paired", headline="Δ val loss"), "final validation loss")  # fmt: skip
_add(Column("accuracy", "accuracy", ".3f", delta="abs", delta_label="Δ acc (verdict)",
            delta_fmt=".3f", test="paired", lower_is_better=False, optional=True),
     "exact match on held-out problems (tasks with exact answers)")  # fmt: skip
_add(Column("train_loss"), "the last training step's loss")
_add(Column("step_ms", "step ms", "sig3", delta="pct", delta_label="Δ step", test="welch",
            headline="Δ step time"), "median training step time")  # fmt: skip
_add(Column("step_ms_p10"))
_add(Column("step_ms_p90"))
_add(Column("tokens_per_s", "tokens/s", ",.0f", delta="pct", delta_label="Δ tok/s",
            test="welch", lower_is_better=False), "training throughput")  # fmt: skip
_add(Column("fwd_ms"), "median forward time")
_add(Column("peak_mem_mb", "peak MB", ",.1f", delta="pct", delta_label="Δ mem",
            headline="Δ memory", key="peak_mem"), "peak memory of one training step")  # fmt: skip
_add(Column("params", "params", agg="median"), "parameter count")
for _name in ("flops_per_token", "mfu", "steps", "tokens", "wall_s", "freq_loss"):
    _add(Column(_name))
_add(Column("val_bpb", "val bpb", ".4f", delta="abs", delta_label="Δ bpb", delta_fmt=".4f",
            test="paired", optional=True),
     "validation loss in bits per byte of the held-out text (language modelling): loss x "
     "tokens per byte / ln 2, comparable across tokenisers")  # fmt: skip
_add(Column("val_gap", "val − train", ".4f", optional=True,
            read=lambda rec: rec.metrics["val_loss"] - rec.evals["train_split_loss"]),
     "final val loss minus the loss on fixed windows of the train split (text tasks): the "
     "train-val gap")  # fmt: skip


def late_rise(curve: list) -> float | None:
    """How far the val loss rose over the last quarter of a curve: its final value minus the
    lowest one from 75% of the run on, relative to that lowest, or to 1 nat where the lowest is
    below 1 (0.0 when the end is the lowest); None for a curve with fewer than two points there.
    The floor keeps a loss near 0 that wobbles by 1e-4 (a solved arithmetic task) from reading
    as a rise of 50%: below 1 nat the guard's 1% means 0.01 nats."""
    points = [(p.get("step"), p.get("val_loss")) for p in curve]
    points = [(s, v) for s, v in points if s is not None and v is not None and math.isfinite(v)]
    if not points:
        return None
    late = [v for s, v in points if s >= 0.75 * points[-1][0]]
    if len(late) < 2:
        return None
    return (late[-1] - min(late)) / max(min(late), 1.0)


_add(
    Column("val_rise", read=lambda rec: late_rise(rec.curve)),
    "the val loss's rise over the last quarter of its curve (the overfitting guard)",
)


def metric_names() -> list[str]:
    """Every column's record metric, in the order records_frame lays them out."""
    return COLUMNS.names()


def shown(present: Callable[[str], bool] = lambda name: True) -> list[Column]:
    """The columns the tables show, in order; an optional one only where `present(name)`."""
    return [c for _, c in COLUMNS.items() if c.label and (not c.optional or present(c.name))]
