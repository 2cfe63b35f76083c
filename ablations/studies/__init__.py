"""The lecture's experiments as ready-made studies, by name, in one registry.

A built-in study's entry names its module, imported only when the study runs (they pull in
pandas, seaborn and their own dependencies; `--list` should not pay for that). A plugin file
(`--plugin FILE`) adds its own study the same way it adds a variant:

    from ablations.studies import Study, register_study

    @register_study(description="two micro runs, their final losses")
    class Tiny(Study):
        name = "tiny"
        def _run(self, ctx): ...

after which `--list` shows it and `--study tiny` runs it like a built-in.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from ablations.studies.base import Study, StudyContext
from variants.named import Registry


class StudyEntry(NamedTuple):
    """What the registry holds: the study, or the module whose STUDY it is, and its line."""

    source: str | Study  # a module path (imported by `load`) or the study itself
    description: str

    def load(self) -> Study:
        if isinstance(self.source, str):
            return importlib.import_module(self.source).STUDY
        return self.source


STUDIES: Registry[StudyEntry] = Registry("study", "studies")


def _builtin(name: str, module: str, description: str) -> None:
    STUDIES.register(name, StudyEntry(module, description), description=description)


def register_study(study: Study | type[Study] | None = None, *, description: str = "",
                   replace: bool = False):  # fmt: skip
    """Register a study under its `name`: `register_study(MyStudy())`, or `@register_study()`
    on a Study subclass that takes no arguments (it is instantiated once). `description` (the
    line `--list` shows) defaults to the study's own."""

    def add(item):
        instance = item() if isinstance(item, type) else item
        if not isinstance(instance, Study):
            raise TypeError(f"register_study takes a Study, got {type(instance).__name__}")
        line = description or instance.description
        STUDIES.register(instance.name, StudyEntry(instance, line), description=line,
                         replace=replace)  # fmt: skip
        return item

    return add if study is None else add(study)


_builtin(
    "calculator",
    "ablations.studies.calculator",
    "+ - * / per operator and operand length, with vs without chain-of-thought traces",
)
_builtin(
    "pretraining",
    "ablations.studies.pretraining",
    "pretrain on a large corpus, finetune on a small one vs training from scratch",
)
_builtin(
    "addition",
    "ablations.studies.addition",
    "a+b=c accuracy by digit count, longer than trained: answer order, prompt mask, positions",
)
_builtin(
    "residual",
    "ablations.studies.residual",
    "per-block gradient norms and loss, residual on vs off, depths 2-16",
)
_builtin(
    "scaling",
    "ablations.studies.scaling",
    "data and compute multipliers per model size (--variant NAME, --sizes LxD,..., "
    "--preset cpu|h100, --dry-run) from an L(N, D) surface fitted to the baseline",
)
_builtin(
    "heads",
    "ablations.studies.heads",
    "separate vs fused heads: equal outputs and gradients, speed ratio for 1-16 heads",
)
_builtin(
    "probes",
    "ablations.studies.probes",
    "capability probes: every --variant x mqar, selective-copy, induction (recall, copying,"
    " 2x and 4x the trained length), a scoreboard of paired Δ accuracy and a heatmap",
)


def get_study(name: str) -> Study:
    """The study registered as `name`; one-line ValueError listing the valid names if none."""
    return STUDIES.get(name).load()


__all__ = ["STUDIES", "Study", "StudyContext", "StudyEntry", "get_study", "register_study"]
