"""`--list`: the variants (each with its difference from the baseline), the tasks with their
default recipes, the studies and the model sizes."""

from __future__ import annotations

from variants.config import PRESETS
from variants.registry import VARIANTS


def list_everything() -> str:
    from bench.tasks import TASKS

    lines = ["variants (each is the baseline plus the change shown):"]
    width = max(len(n) for n in VARIANTS)
    for name, v in VARIANTS.items():
        lines.append(f"  {name:<{width}}  {v.description}  [{v.diff()}]")
    lines.append("tasks (and the default recipe of each; flags override any part):")
    for name, cls in TASKS.items():
        lines.append(f"  {name:<{width}}  {cls.description}")
        note = f" ({cls.recipe.note})" if cls.recipe.note else ""
        lines.append(f"  {'':<{width}}    recipe: {cls.recipe.describe()}{note}")
    from ablations.studies import STUDIES

    lines.append("studies (--study NAME):")
    for name in STUDIES.names():
        lines.append(f"  {name:<{width}}  {STUDIES.description(name)}")
    lines.append("model sizes:")
    for name, p in PRESETS.items():
        lines.append(f"  {name:<{width}}  " + ", ".join(f"{k}={v}" for k, v in p.items()))
    return "\n".join(lines)
