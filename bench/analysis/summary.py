"""summary.md and summary.csv of a folder of runs: one comparison table per group
(bench.analysis.compare for the numbers, bench.analysis.display for the tables,
bench.analysis.notes for the words under them), then every registered section
(bench.analysis.sections: the probes' tables).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import probes  # noqa: F401  (registers the built-in probes' sections)
from bench.analysis import panel  # noqa: F401  (registers the capability panel's sections)
from bench.analysis.compare import summaries
from bench.analysis.display import display_frame, frame_shows, headline_frame, summary_header
from bench.analysis.fmt import BASELINE, group_title, markdown_table
from bench.analysis.notes import footnote, ladder_control_text, left_out_text, tokenizer_text
from bench.analysis.sections import SECTIONS
from bench.core.records import as_record, write_bytes_atomic


def format_summary(df: pd.DataFrame, meta: dict, notes: list[str] = ()) -> str:
    """Markdown: a title, the header line, the headline table, the full table, the footnote."""
    lines = [f"### {group_title(meta)}", "", summary_header(meta), ""]
    mixed = tokenizer_text(meta)
    lines += [f"**{mixed}**", ""] if mixed else []
    head = headline_frame(df)
    if not head.empty:
        control = ladder_control_text(meta)
        lines += [markdown_table(head), ""] + ([control, ""] if control else [])
        lines += ["Full table:", ""]
    lines += [markdown_table(display_frame(df)), ""]
    left = left_out_text(meta)  # diverged and failed runs, named
    lines += [f"**{left}**", ""] if left else []
    lines += [f"_{footnote(meta, frame_shows(df))}_"]
    lines += [f"\n_{n}_" for n in notes]
    if BASELINE not in set(df["variant"]):
        lines += ["", f"_No '{BASELINE}' runs in this group: no deltas or verdicts._"]
    return "\n".join(lines) + "\n"


def summary_csv_frame(groups: list[tuple[dict, pd.DataFrame]]) -> pd.DataFrame:
    """All groups' raw numbers in one frame, with the group keys as trailing columns."""
    parts = []
    for meta, df in groups:
        df = df.copy()
        df["task"] = meta["task"]
        df["budget_mode"] = meta["budget_mode"]
        df["budget_value"] = meta["budget_value"]
        df["model_size"] = meta["model_size"]
        df["device_name"] = ", ".join(meta["device_names"])
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def sections_markdown(records) -> str:
    """Every registered section that has something to show, in registration order."""
    return "".join(section.markdown(records) for _, section in SECTIONS.items())


def write_summary(records: list[dict], out_dir, notes: list[str] = ()) -> pd.DataFrame:
    """Write summary.csv (raw numbers, all groups) and summary.md (one table per group, then
    the sections). Returns the frame written to summary.csv."""
    records = [as_record(r) for r in records]  # validated once, for the tables and sections
    groups = summaries(records)
    if not groups:
        raise ValueError("no run records to summarise")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = summary_csv_frame(groups)
    # atomic: sweeps sharing the folder may write their tables at the same moment
    write_bytes_atomic(out / "summary.csv", frame.to_csv(index=False).encode("utf-8"))
    text = "\n".join(format_summary(df, meta, notes) for meta, df in groups)
    text += sections_markdown(records)
    write_bytes_atomic(out / "summary.md", text.encode("utf-8"))
    return frame
