"""README's variant and task tables, made from the registries: every named variant, what it
changes and its parameter count at the `tiny` size; every task, what it is and its default
recipe. A new variant or task appears without editing a table by hand.

    python -m variants.catalog                 # print the tables
    python -m variants.catalog --write README.md   # replace each table between its markers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from variants.config import preset
from variants.model import GPT
from variants.registry import VARIANTS

BEGIN, END = "<!-- variants:begin -->", "<!-- variants:end -->"
TASKS_BEGIN, TASKS_END = "<!-- tasks:begin -->", "<!-- tasks:end -->"
SIZE, VOCAB = "tiny", 65  # the default task's model: character-level Shakespeare


def count_params(name: str) -> int:
    """Parameters of variant `name` at the tiny size. Kernels hold no parameters, so the count is
    taken with SDPA (the Triton kernel cannot be built on every machine)."""
    cfg = VARIANTS[name].apply(preset(SIZE, vocab_size=VOCAB)).replace(attention="sdpa")
    return GPT(cfg).num_params()


def markdown() -> str:
    base = count_params("baseline")
    rows = [
        f"| variant | what changes | config: baseline → variant | params ({SIZE}) | Δ params |",
        "|---|---|---|---|---|",
    ]
    for name, variant in VARIANTS.items():
        n = count_params(name)
        delta = "—" if n == base else f"{n - base:+,} ({(n - base) / base:+.2%})"
        change = variant.diff() if variant.overrides else "—"
        rows.append(f"| `{name}` | {variant.description} | {change} | {n:,} | {delta} |")
    return "\n".join(rows)


def task_markdown() -> str:
    """README's task table: each registered task, its one-line description and default recipe."""
    # imported here: the model side never needs the harness, only this table does
    from bench.tasks import DEFAULT_TASK, TASKS

    rows = ["| task | what | default recipe | note |", "|---|---|---|---|"]
    for name, cls in TASKS.items():
        label = f"`{name}`" + (" (default)" if name == DEFAULT_TASK else "")
        recipe = cls.recipe
        rows.append(f"| {label} | {cls.description} | {recipe.describe()} | {recipe.note or '—'} |")
    return "\n".join(rows)


def replace_block(text: str, table: str, begin: str = BEGIN, end: str = END) -> str:
    """`text` with everything between the markers `begin` and `end` replaced by `table`."""
    if begin not in text or end not in text:
        raise ValueError(f"the file has no {begin} ... {end} markers to write the table between")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{table}\n{end}{tail}"


def write_tables(text: str) -> str:
    """`text` (README) with both tables brought up to date."""
    text = replace_block(text, markdown())
    return replace_block(text, task_markdown(), TASKS_BEGIN, TASKS_END)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m variants.catalog", description=__doc__)
    p.add_argument("--write", metavar="FILE", help="replace the tables between their markers")
    args = p.parse_args(argv)
    if args.write is None:
        print(f"{markdown()}\n\n{task_markdown()}")
        return 0
    path = Path(args.write)
    try:
        path.write_text(write_tables(path.read_text()))
    except (OSError, ValueError) as err:
        print(f"error: {args.write}: {err}", file=sys.stderr)
        return 2
    print(f"wrote the variant table ({len(VARIANTS)} variants) and the task table into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
