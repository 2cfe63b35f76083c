"""Task registry: name -> task class, and `build_task` to make one from harness options.

    task = build_task("addition", context=64, n_digits=4)
    x, y = task.train_batch(256, generator)         # (256, task.seq_len) int64 each

See `base.Task` for the interface every task implements.
"""

from __future__ import annotations

import inspect

from .addition import AdditionTask
from .base import IGNORE_INDEX, Task, TaskError
from .calculator import CalculatorTask
from .corpus import CorpusTask
from .text import ShakespeareTask, TextTask

DEFAULT_TASK = "shakespeare"

TASKS: dict[str, tuple[type, str]] = {
    "addition": (
        AdditionTask,
        "n-digit addition a+b=c, answer reversed, loss on the answer only; has accuracy",
    ),
    "text": (TextTask, "character-level language modelling on a local UTF-8 file (--data PATH)"),
    "shakespeare": (
        ShakespeareTask,
        "character-level tiny Shakespeare (char-rnn input.txt, ships with the package)",
    ),
    "calculator": (CalculatorTask, "+ - * / (quotient r remainder), optional traces; accuracy"),
    "corpus": (CorpusTask, "char-level LM on local files (files=[...]), optional shared vocab"),
}

# keyword arguments every task constructor takes from build_task itself
_COMMON = {"context", "data", "eval_batches", "eval_batch_size"}


def task_names() -> list[str]:
    return list(TASKS)


def task_options(name: str) -> dict[str, object]:
    """The task-specific options of `name` and their defaults (e.g. n_digits for addition)."""
    cls = _task_class(name)
    params = inspect.signature(cls.__init__).parameters
    return {
        p.name: p.default
        for p in params.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _COMMON
    }


def task_recipe(name: str):
    """The default recipe (model, batch, lr, schedule, budget, seeds) of task `name`."""
    return _task_class(name).recipe


def _task_class(name: str) -> type:
    try:
        return TASKS[name][0]
    except (KeyError, TypeError):
        raise TaskError(
            f"unknown task {name!r}; valid tasks are: {', '.join(task_names())}"
        ) from None


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
    cls = _task_class(name)
    allowed = task_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise TaskError(
            f"task {name!r} has no option {', '.join(unknown)}; its options are: {valid}"
        )
    return cls(
        context=context,
        data=data,
        eval_batches=eval_batches,
        eval_batch_size=eval_batch_size,
        **options,
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
    "task_names",
    "task_options",
    "task_recipe",
]
