"""What a study is: a named experiment that runs through the same harness as the ablation CLI
(same RunSpecs, records, resume) and writes its own report section with a table and a figure.

    python ablations/run.py --study residual            # results/local/studies/residual/
    python ablations/run.py --study residual --scale 0.05   # a toy budget (what tests use)

A study file defines one `Study` subclass; `ablations/studies/__init__.py` lists them by name.
"""

from __future__ import annotations

import abc
import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.executor import ExecutorConfig, execute
from bench.records import load_records, run_id


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
    takes: frozenset[str] = frozenset()  # of --sizes, --preset, --dry-run: the ones it takes

    def check(self, ctx: StudyContext) -> None:
        """One-line ValueError for options this study cannot take, before anything trains."""
        given = {"--sizes": ctx.sizes is not None, "--preset": ctx.preset is not None,
                 "--dry-run": ctx.dry_run}  # fmt: skip
        for flag, used in given.items():
            if used and flag not in self.takes:
                raise ValueError(f"{flag} is for --study scaling, not --study {self.name}")

    def plan(self, ctx: StudyContext) -> str:
        """--dry-run: every run the study would train and what it would cost, as text."""
        raise ValueError(f"--dry-run is for --study scaling, not --study {self.name}")

    def run(self, ctx: StudyContext) -> str:
        """Run the study's experiments and write its table(s) and figure(s) into ctx.out.
        Returns the study's report section as Markdown (also written to ctx.out/report.md)."""
        with cpu_threads(ctx.device) if self.one_thread else contextlib.nullcontext():
            return self._run(ctx)

    @abc.abstractmethod
    def _run(self, ctx: StudyContext) -> str:
        """The study itself (see `run`)."""


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


def wall_times(records, wall: float) -> str:
    """Wall time of this invocation and of the runs' training (the latter includes runs
    trained by earlier, resumed invocations)."""
    recs = list(records)
    train = sum(r.metric("wall_s") for r in recs if math.isfinite(r.metric("wall_s")))
    return (
        f"Training wall time {train:.0f} s over {len(recs)} run(s) (their records'"
        f" wall_s, earlier invocations included); this invocation took {wall:.0f} s"
    )


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
