"""The report as a document: a list of `Block`s, rendered to markdown and to self-contained
HTML (figures embedded as base64 data URIs), so `bench.analysis.report` only says what is in it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.analysis import fmt


@dataclass
class Block:
    """One piece of the report, rendered both to markdown and to HTML.

    kind: "h1" | "h2" | "h3" | "p" | "note" | "ul" | "table" | "img" | "code".
    """

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    path: Path | None = None


def _md(block: Block, out_dir: Path) -> str:
    if block.kind in ("h1", "h2", "h3"):
        return "#" * int(block.kind[1]) + " " + block.text
    if block.kind == "p":
        return block.text
    if block.kind == "note":
        return f"> {block.text}"
    if block.kind == "ul":
        return "\n".join(f"- {item}" for item in block.items)
    if block.kind == "table":
        return fmt.markdown_table(block.table)
    if block.kind == "img":
        return f"![{block.text}]({block.path.relative_to(out_dir).as_posix()})"
    if block.kind == "code":
        return f"```\n{block.text}\n```"
    raise ValueError(f"unknown block kind {block.kind!r}")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html(block: Block) -> str:
    esc = html.escape
    if block.kind in ("h1", "h2", "h3"):
        return f"<{block.kind}>{esc(block.text)}</{block.kind}>"
    if block.kind == "p":
        return f"<p>{esc(block.text)}</p>"
    if block.kind == "note":
        return f'<p class="note">{esc(block.text)}</p>'
    if block.kind == "ul":
        return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block.items) + "</ul>"
    if block.kind == "table":  # wide tables scroll inside the page instead of overflowing it
        table = block.table.to_html(index=False, escape=True, border=0, classes="summary")
        return f'<div class="scroll">{table}</div>'

    if block.kind == "img":
        alt = esc(block.text)
        return f'<figure><img alt="{alt}" src="{_data_uri(block.path)}"></figure>'
    if block.kind == "code":
        return f"<pre><code>{esc(block.text)}</code></pre>"
    raise ValueError(f"unknown block kind {block.kind!r}")


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
div.scroll { overflow-x: auto; max-width: 100%; }
table.summary { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
table.summary th, table.summary td { padding: 0.3em 0.6em; border-bottom: 1px solid #ddd;
       text-align: right; white-space: nowrap; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
p.note { color: #555; font-size: 0.85em; border-left: 3px solid #ccc; padding-left: 0.8em; }
img { max-width: 100%; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; }
"""


def render_markdown(blocks: list[Block], out_dir: Path) -> str:
    return "\n\n".join(_md(b, out_dir) for b in blocks) + "\n"


def render_html(blocks: list[Block], title: str) -> str:
    body = "\n".join(_html(b) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
