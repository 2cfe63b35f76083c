"""Summary tables of a sweep, under the names callers have always used. The work is split by
concern; this module only gathers their public names:

  bench.analysis.frame    run records -> one flat frame; comparable groups
  bench.analysis.compare  one group -> the comparison frame (verdicts, multipliers, ladder)
  bench.analysis.columns  the metrics, declared once (every table below iterates them)
  bench.analysis.display  the headline and the full table (strings)
  bench.analysis.notes    the footnote under every table
  bench.analysis.summary  summary.md / summary.csv, with the sections of bench.analysis.sections
  bench.analysis.fmt      number, interval and markdown formatting (a leaf)

:func:`summary` wants exactly one group and raises ``ValueError`` otherwise; :func:`summaries`
returns all groups and :func:`write_summary` writes them all.
"""

from __future__ import annotations

from bench.analysis.columns import COLUMNS, PRIMARY, Column, metric_names
from bench.analysis.compare import (
    DID_NOT_LEARN,
    INCONCLUSIVE,
    LEARN_LOSS_FRAC,
    LEARN_MIN_ACCURACY,
    ci_widths,
    frame_columns,
    learned,
    summaries,
    summary,
)
from bench.analysis.display import display_frame, headline_frame, summary_header
from bench.analysis.display import verdict_text as _verdict_text
from bench.analysis.fmt import (
    BASELINE,
    BUDGET_UNITS,
    BUDGET_WORDS,
    budget_label,
    group_title,
    markdown_table,
    variant_order,
)
from bench.analysis.fmt import num as _num
from bench.analysis.frame import (
    ARM_SEP,
    DEFAULT_OPTIMIZER,
    GROUP_COLS,
    ROW_COLS,
    arm_label,
    group_meta,
    records_frame,
    split_groups,
)
from bench.analysis.notes import (
    LADDER_FORM_WORDS,
    MUON_WORDS,
    footnote,
    guard_text,
    ladder_control_text,
    ladder_text,
    lr_text,
    multiplier_text,
    optimizer_text,
)
from bench.analysis.summary import format_summary, summary_csv_frame, write_summary

METRIC_COLS = metric_names()  # the record metrics a row carries (bench.analysis.columns)

__all__ = [
    "ARM_SEP", "BASELINE", "BUDGET_UNITS", "BUDGET_WORDS", "COLUMNS", "Column",
    "DEFAULT_OPTIMIZER", "DID_NOT_LEARN", "GROUP_COLS", "INCONCLUSIVE", "LADDER_FORM_WORDS",
    "LEARN_LOSS_FRAC", "LEARN_MIN_ACCURACY", "METRIC_COLS", "MUON_WORDS", "PRIMARY", "ROW_COLS",
    "_num", "_verdict_text", "arm_label", "budget_label", "ci_widths", "display_frame",
    "footnote", "format_summary", "frame_columns", "group_meta", "group_title", "guard_text",
    "headline_frame", "ladder_control_text", "ladder_text", "learned", "lr_text",
    "markdown_table", "multiplier_text", "optimizer_text", "records_frame", "split_groups",
    "summaries", "summary", "summary_csv_frame", "summary_header", "variant_order",
    "write_summary",
]  # fmt: skip
