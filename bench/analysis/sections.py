"""Sections a probe (or anything else) adds to summary.md and to the report, through one list:
`SECTIONS`. The summary writer and the report iterate it, so neither knows any probe by name.

    SECTIONS.register("lengths", Section("Length generalisation", table=length_table,
                                         footnote=footnote, figure=figure))

Each callable takes the records of the whole folder (RunRecords); `table` returns None when no
record carries what the section is about, and the section is then left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.analysis.fmt import markdown_table
from variants.named import Registry


@dataclass(frozen=True)
class Section:
    title: str  # the heading in summary.md and the report
    table: Callable  # records -> DataFrame of strings, or None: nothing to show
    footnote: Callable = lambda records: ""  # records -> how to read the table
    figure: Callable | None = None  # (records, path) -> the PNG written, or None (report only)
    alt: str = ""  # the figure's alt text
    slug: str = ""  # the figure's file name (without .png); default: the registered name

    def markdown(self, records) -> str:
        """The summary.md section, or '' when there is nothing to show."""
        table = self.table(records)
        if table is None:
            return ""
        return f"\n## {self.title}\n\n{markdown_table(table)}\n\n{self.footnote(records)}\n"


SECTIONS: Registry[Section] = Registry("section")
