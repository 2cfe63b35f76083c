"""Rebuild the benchmark report from run records alone: ``python -m bench.report DIR``.

The report never trains anything. It reads every ``runs.jsonl`` below DIR (so results copied
from several machines or workers into subfolders merge), then writes into DIR (or ``--out``):

* ``summary.csv`` / ``summary.md``: the tables of :mod:`bench.analysis.summary`;
* ``figures/*.png``: the figures of :mod:`bench.analysis.plots`;
* ``report.md``: header, method, tables and figures (linked), and the rebuild command;
* ``report.html``: the same, self-contained (PNGs embedded as base64 data URIs), so it can be
  mailed or archived as one file.

Records are split into comparable groups (task, budget, model size, device; see
:mod:`bench.analysis.tables`), each with its own table and figures: speed measured on two devices is
not a like-for-like comparison, and the header says so when more than one device is present.

Bad input (missing DIR, no records) exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pandas as pd

from bench.analysis import compare, display, fmt, notes, plots, plots_micro
from bench.analysis.document import Block, render_html, render_markdown
from bench.analysis.frame import records_frame
from bench.analysis.sections import SECTIONS
from bench.analysis.summary import write_summary
from bench.core.records import RunRecord, load_records, write_bytes_atomic

MICRO_SUBDIR = "micro"


class ReportError(ValueError):
    """Input the report cannot be built from; the CLI prints it as one line and exits 2."""


# --------------------------------------------------------------------------- content


def _load(run_dir: Path) -> list[RunRecord]:
    """Every record below run_dir, merged and de-duplicated by the records module."""
    return load_records(run_dir)


def _uniq(values) -> list[str]:
    return [str(v) for v in dict.fromkeys(values) if v is not None and not pd.isna(v)]


_VERSIONS = [("torch", "torch", "?"), ("triton", "triton", "n/a"), ("python", "python", "?")]


def _joined(values, none: str = "?") -> str:
    return ", ".join(_uniq(values)) or none


def _setup_items(frame: pd.DataFrame) -> list[str]:
    machines = []
    for (host, dev, name), _ in frame.groupby(
        [frame["hostname"].fillna("?"), frame["device"].fillna("?"), "device_name"], sort=False
    ):
        machines.append(f"{host}: {name} ({dev})")
    tasks = ", ".join(_uniq(frame["task"]))
    budgets = []
    for (mode, value), _ in frame.groupby(["budget_mode", "budget_value"], sort=False):
        budgets.append(fmt.budget_label({"budget_mode": mode, "budget_value": value}))
    seeds = frame.groupby("variant", sort=False)["seed"].nunique()
    seed_counts = sorted(set(seeds.tolist()))
    versions = [f"{name}: {_joined(frame[col], none)}" for name, col, none in _VERSIONS]
    n_failed = int((frame["status"] == "failed").sum())
    n_div = int((~frame["ok"]).sum()) - n_failed
    return [
        "Machines / devices: " + "; ".join(machines),
        "; ".join(versions),
        "git commit(s): " + _joined(c[:12] for c in _uniq(frame["git_commit"])),
        f"Task(s): {tasks}",
        "Budget: " + "; ".join(budgets),
        f"Variants: {', '.join(fmt.variant_order(frame['variant']))}",
        f"Seeds per variant: {_joined(seed_counts)} ({len(frame)} runs, {n_div} diverged, "
        f"{n_failed} failed)",
    ]


def _warnings(frame: pd.DataFrame) -> list[str]:
    notes = []
    if frame["device_name"].nunique() > 1:
        notes.append(
            "Runs come from several devices. Each device gets its own tables and figures: "
            "a speed or memory comparison across devices is not like with like."
        )
    if len(_uniq(frame["git_commit"])) > 1:
        notes.append("Runs come from several git commits; code changes may confound results.")
    if len(_uniq(frame["torch"])) > 1 or len(_uniq(frame["triton"])) > 1:
        notes.append("Runs used several torch/triton versions.")
    return notes


METHOD = (
    "Each variant is trained under the same budget as the baseline, with the same seeds "
    "(a seed fixes the data order and initialisation stream). A learning guard comes first: "
    "if the baseline's loss is not clearly below what token frequencies alone give (or, on "
    "tasks with exact answers, it gets almost none right), every verdict is 'inconclusive'. "
    "Otherwise the verdict compares final validation loss with a paired t-test by seed "
    "(scipy.stats): 'better'/'worse' only when the 95% confidence interval of the mean "
    "difference excludes zero, 'no significant difference' otherwise, 'too few seeds' below "
    "two shared seeds; the minimum detectable effect (MDE) says how large a difference these "
    "seeds could have seen. Differences are also given as compute multipliers: where the "
    "validation curves cross, and, with --ladder, against the baseline trained at other "
    "budgets. Diverged runs are counted and excluded from means and tests. Speed deltas are "
    "marked (n.s.) when Welch's t-test cannot separate them from timing noise. summary.csv "
    "also carries p-values and a bootstrap CI as a cross-check."
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "group"


def _group_figures(group_records: list[RunRecord], fig_dir: Path, prefix: str) -> list[Block]:
    made = [
        ("Validation loss curves", plots.loss_curves, "loss_curves"),
        ("Throughput and peak memory", plots.throughput_memory, "throughput_memory"),
        ("Loss vs. step time trade-off", plots.tradeoff, "tradeoff"),
    ]
    blocks = []
    for alt, fn, name in made:
        path = fn(group_records, fig_dir / f"{prefix}{name}.png")
        blocks.append(Block("img", text=alt, path=path))
    lr_png = plots.lr_sweep(group_records, fig_dir / f"{prefix}lr_sweep.png")  # --tune lr
    if lr_png is not None:
        blocks.append(Block("img", text="Final loss vs learning rate", path=lr_png))
    return blocks


def _section_blocks(records: list[RunRecord], fig_dir: Path) -> list[Block]:
    """Every registered section with something to show (bench.analysis.sections): its table, its
    footnote and, where it draws one, its figure."""
    blocks = []
    for name, section in SECTIONS.items():
        table = section.table(records)
        if table is None:
            continue
        blocks += [
            Block("h2", section.title),
            Block("table", table=table),
            Block("note", section.footnote(records)),
        ]
        path = None
        if section.figure is not None:
            path = section.figure(records, fig_dir / f"{section.slug or name}.png")
        if path is not None:
            blocks.append(Block("img", text=section.alt or section.title, path=path))
    return blocks


def _group_records(records: list[RunRecord], positions: list[int]) -> list[RunRecord]:
    """The records behind a group's rows (records_frame keeps one row per record, in order)."""
    keep = set(positions)
    return [r for i, r in enumerate(records) if i in keep]


def _tune_table(path: Path) -> pd.DataFrame | None:
    """tune.csv as a table; None if there is none, or (with one warning line) if it is no CSV
    table: the rest of the report does not depend on it."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:  # pandas' parser errors too
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"warning: {path}: not a CSV table ({reason}); its section is left out",
              file=sys.stderr)  # fmt: skip
        return None


def _micro_paths(run_dir: Path, micro) -> list[Path]:
    found = sorted((run_dir / MICRO_SUBDIR).glob("*.json"))
    given = [Path(p) for p in (micro or [])]
    missing = [str(p) for p in given if not p.is_file()]
    if missing:
        raise ReportError(f"micro-benchmark file(s) not found: {', '.join(missing)}")
    return list(dict.fromkeys(found + given))


def rebuild_command(run_dir: Path, out_dir: Path | None, micro, plugins=()) -> str:
    args = ["python", "-m", "bench.report", str(run_dir)]
    if out_dir is not None:
        args += ["--out", str(out_dir)]
    for p in micro or []:
        args += ["--micro", str(p)]
    for p in plugins:
        args += ["--plugin", str(p)]
    return shlex.join(args)


def _build_blocks(run_dir, out_dir, fig_dir, records, micro_paths, command) -> list[Block]:
    frame = records_frame(records)
    summaries = compare.summaries(records)  # a budget ladder's baseline-only groups folded in
    blocks = [
        Block("h1", "Transformer variant benchmark"),
        Block("p", f"Built from {len(records)} run record(s) under {run_dir}."),
        Block("h2", "Setup"),
        Block("ul", items=_setup_items(frame)),
        *[Block("note", n) for n in _warnings(frame)],
        Block("h2", "Method"),
        Block("p", METHOD),
    ]
    for i, (meta, df) in enumerate(summaries):
        prefix = "" if len(summaries) == 1 else f"{i + 1:02d}-{_slug(fmt.group_title(meta))}-"
        blocks += [
            Block("h2", f"Results: {fmt.group_title(meta)}"),
            Block("p", display.summary_header(meta)),
        ]
        blocks += [Block("note", t) for t in [notes.tokenizer_text(meta)] if t]  # mixed tokenisers
        head = display.headline_frame(df)
        if not head.empty:
            blocks += [Block("h3", "At a glance"), Block("table", table=head)]
        control = notes.ladder_control_text(meta)  # '' without a budget ladder
        blocks += [Block("p", control)] if control else []
        blocks += [
            Block("h3", "Full table"),
            Block("table", table=display.display_frame(df)),
        ]
        left = notes.left_out_text(meta)  # diverged and failed runs, named
        blocks += [Block("p", left)] if left else []
        blocks += [Block("note", notes.footnote(meta, display.frame_shows(df)))]
        if fmt.BASELINE not in set(df["variant"]):
            blocks.append(Block("note", "No baseline runs in this group: no deltas or verdicts."))
        blocks += _group_figures(_group_records(records, meta["positions"]), fig_dir, prefix)
    blocks += _section_blocks(records, fig_dir)
    tuned = _tune_table(run_dir / "tune.csv")  # written by ablations/run.py --tune
    if tuned is not None:
        blocks += [
            Block("h2", "Tuned comparison (every arm at its own best)"),
            Block("table", table=tuned.fillna("—")),
            Block("note", "How each value was chosen, and both comparisons in full: tune.md."),
        ]
    micro_png = plots_micro.micro_benchmarks(micro_paths, fig_dir / "micro_benchmarks.png")
    if micro_png is not None:
        blocks += [
            Block("h2", "Micro-benchmarks"),
            Block("p", "Sources: " + ", ".join(str(p) for p in micro_paths)),
            Block("img", text="Micro-benchmarks", path=micro_png),
        ]
    blocks += [Block("h2", "Rebuild"), Block("code", command)]
    return blocks


def build_report(run_dir, out_dir=None, micro=None, plugins=()) -> Path:
    """Build report.md, report.html, summary.csv/md and figures; returns the report.md path.

    ``micro``: extra pytest-benchmark JSON files, on top of any found in ``run_dir/micro``.
    ``plugins``: the plugin files already loaded (python -m bench.report --plugin), for the rebuild
    line.
    Raises ReportError when run_dir is missing or holds no records.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory not found: {run_dir}")
    records = _load(run_dir)
    if not records:
        raise ReportError(f"no run records (runs.jsonl) found under {run_dir}")
    out = Path(out_dir) if out_dir is not None else run_dir
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    micro_paths = _micro_paths(run_dir, micro)
    write_summary(records, out)
    command = rebuild_command(
        run_dir, Path(out_dir) if out_dir is not None else None, micro, plugins
    )
    blocks = _build_blocks(run_dir, out, fig_dir, records, micro_paths, command)
    md_path = out / "report.md"
    write_bytes_atomic(md_path, render_markdown(blocks, out).encode("utf-8"))
    html = render_html(blocks, "Transformer variant benchmark").encode("utf-8")
    write_bytes_atomic(out / "report.html", html)
    return md_path


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Rebuild report.md/report.html from the runs.jsonl records under DIR.",
    )
    p.add_argument("run_dir", metavar="DIR", help="directory holding runs.jsonl (searched below)")
    p.add_argument("--out", metavar="DIR2", default=None, help="write the report here instead")
    p.add_argument(
        "--micro", metavar="JSON", nargs="+", action="extend", default=None,
        help="pytest-benchmark JSON file(s), in addition to DIR/micro/*.json",
    )  # fmt: skip
    p.add_argument(
        "--plugin", metavar="FILE", action="append", default=[],
        help="a plugin file whose columns and sections the report should show (repeatable)",
    )  # fmt: skip
    return p


def _load_plugins(paths: list[str]) -> None:
    """Import the plugin files that registered columns or sections when the runs were made."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ReportError(f"plugin file(s) not found: {', '.join(missing)}")
    from bench.exec.executor import load_plugins  # late: the report alone needs no executor

    load_plugins(paths)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _load_plugins(args.plugin)
        md_path = build_report(args.run_dir, args.out, args.micro, args.plugin)
    except (ReportError, OSError, ValueError) as exc:
        print(f"bench.report: error: {exc}", file=sys.stderr)
        return 2
    print((md_path.parent / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote {md_path} and {md_path.with_name('report.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
