"""The lecture's experiments as ready-made studies, by name. Each module defines one Study."""

from __future__ import annotations

import importlib

from ablations.studies.base import Study, StudyContext

# name -> (module path, one-line description); modules are imported only when a study runs
STUDIES: dict[str, tuple[str, str]] = {
    "calculator": (
        "ablations.studies.calculator",
        "+ - * / per operator and operand length, with vs without chain-of-thought traces",
    ),
    "pretraining": (
        "ablations.studies.pretraining",
        "pretrain on a large corpus, finetune on a small one vs training from scratch",
    ),
    "addition": (
        "ablations.studies.addition",
        "a+b=c accuracy by digit count, longer than trained: answer order, prompt mask, positions",
    ),
    "residual": (
        "ablations.studies.residual",
        "per-block gradient norms and loss, residual on vs off, depths 2-16",
    ),
    "scaling": (
        "ablations.studies.scaling",
        "data and compute multipliers per model size (--variant NAME, --sizes LxD,..., "
        "--preset cpu|h100, --dry-run) from an L(N, D) surface fitted to the baseline",
    ),
    "heads": (
        "ablations.studies.heads",
        "separate vs fused heads: equal outputs and gradients, speed ratio for 1-16 heads",
    ),
}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; valid studies: {', '.join(STUDIES) or 'none'}")
    module = importlib.import_module(STUDIES[name][0])
    return module.STUDY


__all__ = ["STUDIES", "Study", "StudyContext", "get_study"]
