"""Task registry: name -> task class, and `build_task` to make one from harness options.

    task = build_task("addition", context=64, n_digits=4)
    x, y = task.train_batch(256, generator)         # (256, task.seq_len) int64 each

See `base.Task` for the interface every task implements.
"""

from __future__ import annotations

from .addition import AdditionTask
from .base import IGNORE_INDEX, Task, TaskError
from .calculator import CalculatorTask
from .corpus import CorpusTask
from .text import ShakespeareTask, TextTask

DEFAULT_TASK = "shakespeare"

TASKS: dict[str, tuple[type, str]] = {
    "addition": (
        AdditionTask,
        "n-digit addition a+b=c, answer reversed, loss on the answer only; mixed and longer"
        " widths (min_digits, eval_digits); has accuracy",
    ),
    "text": (TextTask, "character-level language modelling on a local UTF-8 file (--data PATH)"),
    "shakespeare": (
        ShakespeareTask,
        "character-level tiny Shakespeare (char-rnn input.txt, ships with the package)",
    ),
    "calculator": (CalculatorTask, "+ - * / (quotient r remainder), optional traces; accuracy"),
    "corpus": (CorpusTask, "char-level LM on local files (files=[...]), optional shared vocab"),
}


def task_names() -> list[str]:
    return list(TASKS)


def task_options(name: str):
    """The options of task `name` at their defaults: an instance of its frozen `Options`
    dataclass (`dataclasses.asdict` for a dict, `dataclasses.fields` for the types)."""
    return _task_class(name).Options()


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
    return _task_class(name)(
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
    "task_names",
    "task_options",
    "task_recipe",
]
