"""`ablations/run.py --tune lr`: every arm at its own best learning rate (the choice and its
tables: bench.analysis.tuning), then the comparison at those bests and at the shared default.

Three stages, each an ordinary batch of runs through the same executor as any sweep (so resume,
claims, fan-out and SLURM work unchanged, and a rerun trains nothing twice): (1) each arm's
grid at a fraction of the budget on the tuning seeds, (2) one more point past the edge for
arms whose best was at an edge, (3) the full comparison at the verdict's seeds with every arm
at its own best and again at the shared default. With several keys (`--tune
lr,weight_decay`), stages 1-2 run per key, each at the values chosen before it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ablations.commands.common import default_jobs, run_specs, write_command
from ablations.config import SweepConfig
from ablations.plan import Plan
from bench.analysis.tables import arm_label
from bench.analysis.tuning import (
    MAX_EXTENSIONS,
    Choice,
    TuneConfig,
    beyond,
    check,
    mean_losses,
    parse_grid,
    parse_keys,
)
from bench.core.records import RunRecord, load_records, run_id
from bench.core.spec import RunSpec, TrainConfig
from bench.exec.executor import Tally
from variants.config import ModelConfig


class NotYet(Exception):
    """Runs were submitted without waiting (--no-wait): the next stage needs their results."""


@dataclass(frozen=True)
class Arm:
    label: str  # its name in the tables: the variant, or 'NAME · muon' beside AdamW arms
    variant: str
    model: ModelConfig
    train: TrainConfig  # the shared default training config, with the arm's optimizer


@dataclass
class Outcome:
    choices: dict[str, list[Choice]]  # arm label -> one Choice per tuned key
    tuned_ids: set[str]  # the verdict runs at each arm's best
    default_ids: set[str]  # the verdict runs at the shared default
    tuning_ids: set[str]  # every tuning run
    reused: list[RunRecord]  # tuning runs read from the recipe's sweep, not in `out`


def arms(plan) -> list[Arm]:
    mixed = len(plan.optimizers) > 1
    return [
        Arm(arm_label(name, train.optimizer, mixed), name, cfg, train)
        for train in plan.trains()
        for name, cfg in plan.variants
    ]


def _value(x: float) -> float:
    """Grid values to 6 significant digits: tidy in tables and stable in run ids."""
    return float(f"{x:.6g}")


def _without(spec: dict, key: str) -> dict:
    """A spec dict with training setting `key` and the seed left out: what two runs of one
    sweep over `key` share."""
    return {**spec, "seed": None, "train": {**spec["train"], key: None}}


class Tuner:
    """Runs the stages for `plan` with `run_specs(specs)` (which trains what is not finished
    and returns how many runs it trained or submitted) and reads results from `out`. Tuning runs
    that `pool` (committed records, e.g. the recipe's baseline sweep; `pool_name` says where)
    already holds are copied into `out` rather than trained."""

    def __init__(self, cfg: TuneConfig, plan, tokens_per_step: int, out, run_specs: Callable,
                 wait: bool = True, pool: list[RunRecord] = (), pool_name: str = ""):  # fmt: skip
        self.cfg, self.plan, self.out, self.wait = cfg, plan, out, wait
        self.tokens_per_step = tokens_per_step
        self.run_specs = run_specs
        self.arms = arms(plan)
        self.chosen = {a.label: a.train for a in self.arms}  # updated key by key
        self.tuning_ids: set[str] = set()
        self.pool = {r.run_id: r for r in pool if r.ok}
        self.pool_name = pool_name
        self.reused: dict[str, RunRecord] = {}  # the pool's runs this tune read

    def _snap(self, spec: RunSpec, key: str, value: float) -> float:
        """`value`, or the pool's value of `key` within 0.01% of it for a run that differs from
        `spec` in nothing else (grid values are rounded, so a default taken from a sweep may
        land a hair off that sweep's own points)."""
        same = _without(spec.to_dict(), key)
        for r in self.pool.values():
            theirs = r.spec["train"].get(key)
            if theirs and abs(theirs / value - 1) < 1e-4 and _without(r.spec, key) == same:
                return theirs
        return value

    def _tuning_specs(self, key: str, values: dict[str, list[float]]):
        """Tuning runs of `key` at each arm's `values`; returns (specs, arm -> value -> ids)."""
        specs, ids = [], {}
        for a in self.arms:
            for v in values.get(a.label, []):
                train = replace(self.chosen[a.label], **{key: v})
                budget, train = self.plan.scaled(train, self.cfg.frac, self.tokens_per_step)
                probe = RunSpec(a.variant, a.model, self.plan.task_spec, budget, train, 0,
                                self.plan.device)  # fmt: skip
                v = self._snap(probe, key, v)  # the value itself, then, is the pool's
                train = replace(train, **{key: v})
                for seed in self.cfg.tune_seeds:
                    spec = replace(probe, train=train, seed=seed)
                    specs.append(spec)
                    ids.setdefault(a.label, {}).setdefault(v, []).append(run_id(spec.to_dict()))
        return specs, ids

    def _reuse(self, ids: list[str]) -> bool:
        """Take the pool's records of `ids` (read for their losses, never copied into `out`:
        they may come from another machine); True when the pool holds every one of them."""
        if not all(i in self.pool for i in ids):
            return False
        self.reused.update({i: self.pool[i] for i in ids})
        return True

    def _train(self, specs: list[RunSpec]) -> list[RunRecord]:
        unique = {run_id(s.to_dict()): s for s in specs}
        todo = [s for i, s in unique.items() if i not in self.reused]
        if self.run_specs(todo) and not self.wait:
            raise NotYet(f"{len(todo)} run(s) of this stage submitted")
        return [*self.reused.values(), *load_records(self.out)]  # out's own copy read last

    def _stage(self, key: str, values: dict[str, list[float]], choices: dict[str, Choice]):
        specs, ids = self._tuning_specs(key, values)
        self.tuning_ids.update(i for by_value in ids.values() for v in by_value.values() for i in v)
        for label, by_value in ids.items():
            for v, value_ids in by_value.items():
                if self._reuse(value_ids):
                    choices[label].reused.add(v)
                    choices[label].reused_from = self.pool_name
        records = self._train(specs)
        for label, by_value in ids.items():
            choices[label].losses.update(mean_losses(records, by_value))

    def tune_key(self, key: str) -> dict[str, Choice]:
        """Grid, then points past an edge, one at a time, while the best sits on it."""
        choices = {a.label: Choice(key, getattr(a.train, key)) for a in self.arms}
        grid = {
            a.label: [_value(getattr(a.train, key) * f) for f in self.cfg.factors]
            for a in self.arms
        }
        self._stage(key, grid, choices)
        for _ in range(MAX_EXTENSIONS):
            more = {}
            for label, c in choices.items():
                if c.edge and c.extended in (None, c.edge):
                    c.extended, c.added = c.edge, c.added + 1
                    more[label] = [_value(beyond(list(c.losses), c.edge))]
            if not more:
                break
            self._stage(key, more, choices)
        for label, c in choices.items():
            self.chosen[label] = replace(self.chosen[label], **{key: c.best})
        return choices

    def run(self) -> Outcome:
        per_key = [self.tune_key(key) for key in self.cfg.keys]
        choices = {a.label: [c[a.label] for c in per_key] for a in self.arms}
        tuned, default = [], []
        for a in self.arms:
            for seed in range(self.plan.seeds):
                common = (a.variant, a.model, self.plan.task_spec, self.plan.budget)
                tuned.append(RunSpec(*common, self.chosen[a.label], seed, self.plan.device))
                default.append(RunSpec(*common, a.train, seed, self.plan.device))
        self._train(tuned + default)
        return Outcome(
            choices,
            {run_id(s.to_dict()) for s in tuned},
            {run_id(s.to_dict()) for s in default},
            self.tuning_ids,
            list(self.reused.values()),
        )


# --------------------------------------------------------------------------- results


def _comparison(records: list[RunRecord], ids: set[str], title: str) -> tuple[str, object]:
    """The standard table (verdicts, MDE, multipliers) of one subset of the runs."""
    from bench.analysis import tables

    groups = tables.summaries([r for r in records if r.run_id in ids])
    (meta, df), *rest = groups
    assert not rest, "one budget, size and device: one group"
    return f"## {title}\n\n" + tables.format_summary(df, meta), df


def write_results(outcome: Outcome, cfg: TuneConfig, plan, out) -> str:
    """tune.md (the tuned table, then both comparisons in full), tune.csv (its table, which
    `python -m bench.report` shows), tune.json (every arm's grid and losses) and
    figures/lr_sweep.png; summary.md is every run's generic table, as for any sweep. Returns
    tune.md's text."""
    import json

    from bench.analysis import plots, tables
    from bench.analysis import tuning as tune
    from bench.core.records import write_bytes_atomic

    records = load_records(out)
    tuned_md, tuned = _comparison(records, outcome.tuned_ids, "Every arm at its own best")
    default_md, default = _comparison(records, outcome.default_ids, "Every arm at the default")
    frame = tune.tune_frame(outcome.choices, tuned, default)
    verdict_seeds = plan.seeds
    budget = f"{plan.budget.value * cfg.frac:g} {tables.BUDGET_UNITS[plan.budget.mode]}"
    text = (
        f"# Tuned comparison ({', '.join(cfg.keys)})\n\n{tables.markdown_table(frame)}\n\n"
        f"_{tune.footnote(cfg, budget, verdict_seeds)}_\n\n{tuned_md}\n{default_md}"
    )
    tuning = {r.run_id: r for r in [*outcome.reused, *records] if r.run_id in outcome.tuning_ids}
    tuning = list(tuning.values())
    if plots.lr_sweep(tuning, out / "figures" / "lr_sweep.png") is not None:
        text += "\n![Final loss vs learning rate](figures/lr_sweep.png)\n"
    write_bytes_atomic(out / "tune.md", text.encode("utf-8"))
    tables.write_summary(records, out)
    write_bytes_atomic(out / "tune.csv", frame.to_csv(index=False).encode("utf-8"))
    choices = {
        arm: [{"key": c.key, "default": c.default, "best": c.best, "extended": c.extended,
               "added": c.added, "still_at_edge": c.edge is not None,
               "losses": sorted(c.losses.items()), "reused": sorted(c.reused),
               "reused_from": c.reused_from}
              for c in cs]
        for arm, cs in outcome.choices.items()
    }  # fmt: skip
    write_bytes_atomic(out / "tune.json", json.dumps(choices, indent=1).encode("utf-8"))
    return text


# ------------------------------------------------------------------------- the command


def tune_config(cfg: SweepConfig, plan: Plan):
    """The tuning settings, checked at the edge (one line each), or None without --tune."""
    t = cfg.tune
    if not t.keys:
        return None
    grid = parse_grid(",".join(repr(float(f)) for f in t.grid))
    tune = TuneConfig(parse_keys(",".join(t.keys)), grid, t.frac, t.seeds)
    lone_baseline = cfg.variants == ["baseline"]  # asked for by name: its own sweep
    if len(plan.variants) * len(plan.optimizers) < 2 and not lone_baseline:
        raise ValueError(
            "--tune compares arms, each at its own best: add --variant NAME or a second "
            "--optimizer (or --variant baseline alone: the baseline's own lr sweep)"
        )
    return check(tune, plan.seeds)


def tune_command(cfg: SweepConfig, tune, plan: Plan, task, out: Path, world: int, argv) -> int:
    """--tune: the tuning stages, then the comparison at each arm's best and at the default."""
    jobs = default_jobs(cfg, plan.device, world)
    counts = Tally()

    def train(specs):  # a failed run is retried by the next command, not by the next stage
        got = run_specs(cfg, specs, out, task, jobs, force=cfg.force, retry_failed=not counts.ran)
        counts.add(got)
        return got.ran

    tokens_per_step = plan.train.batch_size * task.seq_len
    sweep = task.recipe.lr_sweep_dir()  # the recipe's own baseline sweep: its runs are reused
    pool = load_records(sweep) if sweep else []
    tuner = Tuner(tune, plan, tokens_per_step, out, train, wait=cfg.executor.wait, pool=pool,
                  pool_name=task.recipe.lr_sweep)  # fmt: skip
    write_command(out, cfg, argv, world, plan.specs(plan.seeds), plan.seeds)
    try:
        outcome = tuner.run()
    except NotYet as err:
        print(f"{err}; rerun this command when they are done", file=sys.stderr)
        return 0
    print(write_results(outcome, tune, plan, out))
    print(
        f"{counts.words()}; records in {out}, tables in {out / 'tune.md'}",
        file=sys.stderr,
    )
    return 0
