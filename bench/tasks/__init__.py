"""Task registry: name -> task class, and `build_task` to make one from harness options.

    task = build_task("addition", context=64, n_digits=4)
    x, y = task.train_batch(256, generator)         # (256, task.seq_len) int64 each

See `base.Task` for the interface every task implements. A task is one file in this folder (or
a `--plugin` file) whose class carries `@register_task`, a `name` and a one-line `description`;
every module here is imported below, so nothing in this file changes for a new task.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import IGNORE_INDEX, TASKS, Task, TaskError, register_task

# Importing a module registers its tasks. The built-ins go first, in the order --list has always
# shown them (addition, text, shakespeare, calculator, corpus); any other module in this folder
# registers after them, in file-name order.
BUILT_IN_MODULES = ("addition", "text", "calculator", "corpus")
for _name in (*BUILT_IN_MODULES, *sorted(m.name for m in pkgutil.iter_modules(__path__))):
    importlib.import_module(f"{__name__}.{_name}")

AdditionTask, TextTask, ShakespeareTask = TASKS["addition"], TASKS["text"], TASKS["shakespeare"]

DEFAULT_TASK = "shakespeare"


def task_names() -> list[str]:
    return TASKS.names()


def task_options(name: str):
    """The options of task `name` at their defaults: an instance of its frozen `Options`
    dataclass (`dataclasses.asdict` for a dict, `dataclasses.fields` for the types)."""
    return TASKS.get(name).Options()


def task_recipe(name: str):
    """The default recipe (model, batch, lr, schedule, budget, seeds) of task `name`."""
    return TASKS.get(name).recipe


def build_task(
    name: str,
    *,
    context: int,
    data: str | None = None,
    eval_batches: int = 8,
    eval_batch_size: int = 32,
    **options,
) -> Task:
    """Make task `name` for a model of context length `context` (its block size).

    `options` are task-specific (see `task_options`); values may be strings as they come from
    a command line ("4", "false"). Raises TaskError (one line) for an unknown task or option,
    a missing or bad data file, a context too short for the task, and the like.
    """
    return TASKS.get(name)(
        context=context,
        data=data,
        eval_batches=eval_batches,
        eval_batch_size=eval_batch_size,
        **options,  # parsed and checked once, by the task's Options (base.parse_options)
    )


__all__ = [
    "DEFAULT_TASK",
    "IGNORE_INDEX",
    "TASKS",
    "AdditionTask",
    "ShakespeareTask",
    "Task",
    "TaskError",
    "TextTask",
    "build_task",
    "register_task",
    "task_names",
    "task_options",
    "task_recipe",
]
