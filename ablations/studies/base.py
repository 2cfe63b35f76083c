"""What a study is: a named experiment that runs through the same harness as the ablation CLI
(same RunSpecs, records, resume) and writes its own report section with a table and a figure.

    python ablations/run.py --study residual            # results/local/studies/residual/
    python ablations/run.py --study residual --scale 0.05   # a toy budget (what tests use)

A study file defines one `Study` subclass with only what is particular to it: its specs, its
tables, its figure and its text. What every study does alike lives here: `run` makes the output
folder, starts the clock (`elapsed`) and sets the threads; `ctx.execute` trains specs and returns
their records; `spec_task` builds a spec's task; `write_table` writes a table as CSV and as
Markdown; `canvas` and `save_figure` open and close a figure, `image` puts it in the report.
`ablations/studies/__init__.py` registers the studies by name (a plugin file can add one).
"""

from __future__ import annotations

import abc
import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ablations.config import TaskSection
from bench.analysis.tables import markdown_table
from bench.core.records import load_records, run_id
from bench.exec.executor import ExecutorConfig, execute
from bench.tasks import build_task


@dataclass
class StudyContext:
    out: Path  # the study's directory: runs.jsonl, checkpoints/, its tables and figures
    device: str = "cpu"  # "cpu" or "cuda" (already resolved)
    seeds: int = 2
    scale: float = 1.0  # multiplies the study's training budgets; tests use ~0.01–0.05
    force: bool = False
    quiet: bool = False
    variants: tuple[str, ...] = ()  # --variant: the arms of a study that takes them (scaling)
    sizes: str | None = None  # --sizes: a study's model ladder (scaling)
    preset: str | None = None  # --preset: a study's named grid (scaling: cpu, h100)
    dry_run: bool = False  # --dry-run: print the plan, train nothing
    # --task/--data/--tokenizer/--data-field/--task-option, for a study that takes "--task"
    # (scaling); None: the study's own task
    task: TaskSection | None = None
    jobs: int = 1  # runs at once for a study that fans out (each in its own process)
    # where the runs happen, as for any sweep: the command's [executor] section, as given
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    plugins: tuple[str, ...] = ()  # plugin files a cluster job imports before training

    def steps(self, full: int, minimum: int = 5) -> int:
        """A budget of `full` steps at scale 1, scaled (never below `minimum`)."""
        return max(minimum, round(full * self.scale))

    def command(self, name: str, seeds: bool = True) -> str:
        """The command line that reproduces this study as run (for its report)."""
        parts = [f"python ablations/run.py --study {name}"]
        if self.scale != 1.0:
            parts.append(f"--scale {self.scale:g}")
        if seeds:
            parts.append(f"--seeds {self.seeds}")
        parts.append(f"--device {self.device}")
        return " ".join(parts)

    def execute(self, specs, task=None, jobs: int = 1, force: bool | None = None):
        """Run the specs (skipping finished ones, unless `force`, default --force) where the
        command's executor says, wait for them, and return their records in spec order."""
        execute(
            specs, self.out, force=self.force if force is None else force, quiet=self.quiet,
            task=task, jobs=jobs, where=self.executor, plugins=self.plugins,
        )  # fmt: skip
        by_id = {r.run_id: r for r in load_records(self.out)}  # runs.jsonl and runs/*.json
        return [by_id[run_id(s.to_dict())] for s in specs if run_id(s.to_dict()) in by_id]


class Study(abc.ABC):
    name: str = ""
    description: str = ""  # one line, shown by --list
    one_thread: bool = False  # on CPU, run with one intra-op thread (see cpu_threads)
    # of --sizes, --preset, --dry-run, --task (the task section: --task, --data, --tokenizer,
    # --data-field, --task-option): the ones it takes
    takes: frozenset[str] = frozenset()

    def check(self, ctx: StudyContext) -> None:
        """One-line ValueError for options this study cannot take, before anything trains."""
        given = {"--sizes": ctx.sizes is not None, "--preset": ctx.preset is not None,
                 "--dry-run": ctx.dry_run, "--task": ctx.task is not None}  # fmt: skip
        for flag, used in given.items():
            if used and flag not in self.takes:
                raise ValueError(f"{flag} is for --study scaling, not --study {self.name}")

    def plan(self, ctx: StudyContext) -> str:
        """--dry-run: every run the study would train and what it would cost, as text."""
        raise ValueError(f"--dry-run is for --study scaling, not --study {self.name}")

    def run(self, ctx: StudyContext) -> str:
        """Run the study's experiments and write its table(s) and figure(s) into ctx.out.
        Returns the study's report section as Markdown (also written to ctx.out/report.md)."""
        self.started = time.perf_counter()
        ctx.out.mkdir(parents=True, exist_ok=True)
        with cpu_threads(ctx.device) if self.one_thread else contextlib.nullcontext():
            return self._run(ctx)

    @abc.abstractmethod
    def _run(self, ctx: StudyContext) -> str:
        """The study itself (see `run`): ctx.out exists, the clock is running."""

    def elapsed(self) -> float:
        """Seconds since `run` began: the report's 'this invocation took'."""
        return time.perf_counter() - self.started

    @staticmethod
    def write_table(out: Path, stem: str, table, shown, footer: str = "") -> str:
        """`table` (the numbers) as <stem>.csv and `shown` (as printed) as <stem>.md, with an
        optional footer after a blank line; returns the Markdown table."""
        table.to_csv(out / f"{stem}.csv", index=False)
        md = markdown_table(shown)
        (out / f"{stem}.md").write_text(f"{md}\n\n{footer}\n" if footer else md + "\n")
        return md


def spec_task(spec):
    """The task a spec trains on, built once in this process for all of its runs (they share
    it instead of each loading the data again)."""
    kwargs = {k: v for k, v in spec.task.items() if k not in ("name", "data")}
    return build_task(
        spec.task["name"], context=spec.model.block_size, eval_batches=spec.train.eval_batches,
        eval_batch_size=spec.train.eval_batch_size, **kwargs,
    )  # fmt: skip


@contextlib.contextmanager
def cpu_threads(device: str, n: int = 1):
    """Run with `n` intra-op threads on CPU (restored afterwards). These models are tiny: a
    second thread buys little, and on a shared machine oversubscribed threads made training
    steps several times slower."""
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plus_minus(mean: float, std: float, fmt: str) -> str:
    """A table cell 'mean ± std' in `fmt`; just the mean when std is not finite (one seed),
    '—' when the mean is not (no finished run)."""
    if not math.isfinite(mean):
        return "—"
    return format(mean, fmt) + (f" ± {format(std, fmt)}" if math.isfinite(std) else "")


def wall_times(records, wall: float) -> str:
    """Wall time of this invocation and of the runs' training (the latter includes runs
    trained by earlier, resumed invocations)."""
    recs = list(records)
    train = sum(r.metric("wall_s") for r in recs if math.isfinite(r.metric("wall_s")))
    return (
        f"Training wall time {train:.0f} s over {len(recs)} run(s) (their records'"
        f" wall_s, earlier invocations included); this invocation took {wall:.0f} s"
    )


@contextlib.contextmanager
def canvas(figsize: tuple[float, float], style: str = "whitegrid"):
    """A study figure's opening: a matplotlib Figure (not pyplot's: nothing global is left
    open) drawn in a seaborn style (heatmaps want "white"). Close it with `save_figure`."""
    import seaborn as sns  # here, not at the top: --list imports this module
    from matplotlib.figure import Figure

    with sns.axes_style(style):
        yield Figure(figsize=figsize)


def image(path: Path, alt: str) -> str:
    """The report's line that shows a figure saved next to it."""
    return f"![{alt}]({path.name})"


def save_figure(
    fig, path: Path, caption: str, bottom: float = 0.03, title: str | None = None
) -> Path:
    """A study figure's tail: its `title` on top, the caption in small grey type under the
    panels, the panels laid out between (`bottom` = the figure fraction left for the caption),
    PNG at 120 dpi."""
    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path
