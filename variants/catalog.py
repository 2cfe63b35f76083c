"""README's variant table, made from the registry: every named variant, what it changes, and its
parameter count at the `tiny` size, so a new variant appears without editing the table by hand.

    python -m variants.catalog                 # print the table
    python -m variants.catalog --write README.md   # replace the table between its markers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from variants.config import preset
from variants.model import GPT
from variants.registry import VARIANTS

BEGIN, END = "<!-- variants:begin -->", "<!-- variants:end -->"
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


def replace_block(text: str, table: str) -> str:
    """`text` with everything between the markers replaced by `table`."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the file has no {BEGIN} ... {END} markers to write the table between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m variants.catalog", description=__doc__)
    p.add_argument("--write", metavar="FILE", help="replace the table between the markers")
    args = p.parse_args(argv)
    table = markdown()
    if args.write is None:
        print(table)
        return 0
    path = Path(args.write)
    try:
        path.write_text(replace_block(path.read_text(), table))
    except (OSError, ValueError) as err:
        print(f"error: {args.write}: {err}", file=sys.stderr)
        return 2
    print(f"wrote the variant table ({len(VARIANTS)} variants) into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
