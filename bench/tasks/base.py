"""What a task is: the data interface the harness trains and evaluates against.

A task owns its vocabulary and yields fixed-length rows of token ids. Everything random in
training comes from the `torch.Generator` the harness passes in, so two model variants trained
with the same seed see exactly the same batches; everything held out (validation batches,
accuracy problems) comes from a seed fixed inside the task, so it is the same for every variant
*and* every run seed and losses are comparable across the whole study.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from bench.core.spec import Recipe
from variants.model import IGNORE_INDEX  # target value on positions that carry no loss
from variants.named import Registry

_FREQ_SEED = 4242  # training rows counted for the frequency floor (never a run's own stream)


class TaskError(ValueError):
    """Bad task input. `str(err)` is one line saying what is wrong and how to fix it."""


# ---------------------------------------------------------------------------------------------
# option parsing: options may arrive as Python values or as strings from a command line
# ---------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def option_int(name: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """`value` as an int in [lo, hi], accepting "12"-style strings; TaskError otherwise."""
    if isinstance(value, bool):
        raise TaskError(f"{name} must be an integer, got {value!r}")
    try:
        out = int(value) if isinstance(value, (int, str)) else int(_exact_int(value))
    except (TypeError, ValueError):
        raise TaskError(f"{name} must be an integer, got {value!r}") from None
    if lo is not None and out < lo or hi is not None and out > hi:
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise TaskError(f"{name} must be in {rng}, got {out}")
    return out


def _exact_int(value: Any) -> int:
    # floats like 3.0 are fine, 3.5 is not
    f = float(value)
    if not f.is_integer():
        raise ValueError(value)
    return int(f)


def option_bool(name: str, value: Any) -> bool:
    """`value` as a bool, accepting "true"/"false"/"1"/"0"-style strings; TaskError otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise TaskError(f"{name} must be true or false, got {value!r}")


def option(
    default: Any,
    *,
    lo: int | None = None,
    hi: int | None = None,
    choices: tuple | None = None,
    parse: Callable[[str, Any], Any] | None = None,
):
    """A task option, as a field of the task's `Options` dataclass: its default, the range
    [lo, hi] of an int, the choices of a str, or its own `parse(name, value)` for anything
    else (e.g. digit lists like "1,2,3"). The field's type (int, bool, str, X | None) says how
    a value is read; defaults are trusted as written."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "parse": parse}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a task that has none of its own."""


def parse_options(cls: type, values: dict, task: str):
    """`values` (strings from a command line, or values from a TOML file or a spec) as an
    instance of the options dataclass `cls`; TaskError (one line) for an unknown key or a bad
    value. Keys left out take their defaults."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(fields) if fields else "none"
        raise TaskError(
            f"task {task!r} has no option {', '.join(unknown)}; its options are: {valid}"
        )
    hints = typing.get_type_hints(cls)
    return cls(**{k: _parse_value(k, v, hints[k], fields[k]) for k, v in values.items()})


def _parse_value(name: str, value: Any, hint, field: dataclasses.Field):
    meta = field.metadata
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    if value is None and optional:
        return None
    if meta.get("parse") is not None:
        return meta["parse"](name, value)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if kind is bool:
        return option_bool(name, value)
    if kind is int:
        return option_int(name, value, lo=meta.get("lo"), hi=meta.get("hi"))
    if kind is str:
        choices = meta.get("choices")
        if not isinstance(value, str) or choices is not None and value not in choices:
            what = f"one of {', '.join(choices)}" if choices else "a string"
            raise TaskError(f"{name} must be {what}, got {value!r}")
        return value
    raise TypeError(f"option {name!r}: type {hint} needs a parse= function")  # a task's bug


# ---------------------------------------------------------------------------------------------
# character vocabulary
# ---------------------------------------------------------------------------------------------


class CharVocab:
    """A character <-> id table: id i is character `chars[i]`.

    `decode` skips IGNORE_INDEX (so a target row can be printed directly) and shows ids outside
    the vocabulary as U+FFFD (a model may have more output logits than the task has tokens).
    """

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> list[int]:
        try:
            return [self.stoi[c] for c in s]
        except KeyError as e:
            raise TaskError(
                f"character {e.args[0]!r} is not in this task's vocabulary {self.chars[:40]!r}"
            ) from None

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        if isinstance(ids, Tensor):
            ids = ids.reshape(-1).tolist()
        n = len(self.chars)
        return "".join(
            self.chars[i] if 0 <= i < n else "\ufffd" for i in map(int, ids) if i != IGNORE_INDEX
        )


# ---------------------------------------------------------------------------------------------
# the task interface
# ---------------------------------------------------------------------------------------------


class Task(abc.ABC):
    """One source of training rows plus a fixed held-out set.

    Subclasses declare their options as a frozen dataclass `Options` (fields made with
    `option`), set `vocab`, `vocab_size` and `seq_len` in `_build`, and implement
    `train_batch`, `_build_val_batches`, `describe` (and `accuracy` when `has_accuracy`;
    `evaluate` for evaluations kept in a run's record).
    """

    name: str = ""  # the registry's name for the task (`@register_task` reads it)
    description: str = ""  # one line, for --list and README's task table
    vocab_size: int
    seq_len: int  # length T of every row; <= the model context the task was built for
    has_accuracy: bool = False
    recipe: Recipe = Recipe()  # the default comparison on this task (model, batch, lr, budget)
    Options: ClassVar[type] = NoOptions  # the task's own options (a frozen dataclass)

    def __init__(
        self,
        *,
        context: int,
        data: str | None = None,
        eval_batches: int = 8,
        eval_batch_size: int = 32,
        **options,
    ):
        self.context = option_int("context", context, lo=1)
        self.eval_batches = option_int("eval_batches", eval_batches, lo=1)
        self.eval_batch_size = option_int("eval_batch_size", eval_batch_size, lo=1)
        self._val_cache: list[tuple[Tensor, Tensor]] | None = None
        self.options = parse_options(self.Options, options, self.name)  # parsed once, here
        self._build(data)

    @abc.abstractmethod
    def _build(self, data) -> None:
        """Set the task up from `self.options`, `self.context` and the data path `data`."""

    def _no_data(self, data) -> None:
        """For tasks that generate their own problems: a data path is a mistake."""
        if data is not None:
            raise TaskError(
                f"task {self.name!r} generates its own problems and takes no data file (got"
                f" {data!r}); drop --data or use --task text"
            )

    @abc.abstractmethod
    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x, y), int64 CPU tensors of shape (batch_size, seq_len); y[i, t] is the target for
        x[i, t] (the next token) or IGNORE_INDEX. All randomness comes from `generator`."""

    def val_batches(self) -> list[tuple[Tensor, Tensor]]:
        """The fixed held-out batches, built once (from a task-internal seed) and cached.

        Returns a new list each call but the same tensors: do not modify them in place.
        """
        if self._val_cache is None:
            self._val_cache = self._build_val_batches()
        return list(self._val_cache)

    @abc.abstractmethod
    def _build_val_batches(self) -> list[tuple[Tensor, Tensor]]:
        """Build the held-out batches; called once by `val_batches`."""

    def frequency_loss(self, batches: int = 64, batch_size: int = 64) -> float:
        """The learning floor: mean held-out loss (nats) of the best predictor that knows only
        how often each token is the target at each position of a row, and nothing of the
        input. A model whose loss is not clearly below this has learned nothing a frequency
        table would not know (e.g. the digit frequencies of the answers on `addition`).

        Frequencies are counted over `batches` training batches drawn from a fixed seed, with
        add-one smoothing; the loss is taken on the same held-out targets as `val_batches`.
        Cached: it is a property of the task."""
        if getattr(self, "_freq_loss", None) is None:
            gen = torch.Generator().manual_seed(_FREQ_SEED)
            counts = torch.ones(self.seq_len, self.vocab_size, dtype=torch.float64)  # (T, V)
            for _ in range(batches):
                _, y = self.train_batch(batch_size, gen)  # (B, T)
                pos = torch.arange(y.shape[1]).expand_as(y)
                keep = y != IGNORE_INDEX
                one = torch.ones((), dtype=counts.dtype)
                counts.index_put_((pos[keep], y[keep]), one, accumulate=True)
            logp = (counts / counts.sum(dim=1, keepdim=True)).log()  # (T, V)
            total, n = 0.0, 0
            for _, y in self.val_batches():
                pos = torch.arange(y.shape[1]).expand_as(y)
                keep = y != IGNORE_INDEX
                total -= float(logp[pos[keep], y[keep]].sum())
                n += int(keep.sum())
            self._freq_loss = total / n if n else math.nan
        return self._freq_loss

    def accuracy(self, model, device, max_problems: int | None = None) -> float | None:
        """Exact-match accuracy on held-out problems by greedy decoding; None if undefined."""
        return None

    def accuracy_from(self, evals: dict) -> float | None:
        """`accuracy(model, device)` read off this task's `evaluate` result, when that decoded
        the very problems `accuracy` would (so a run decodes its held-out set once); None when
        it did not, and the harness decodes again."""
        return None

    def evaluate(self, model, device) -> dict:
        """Evaluations beyond the loss (exact match by width, per cell, ...), run once at the
        end of a finished run and kept in its record under "evals": JSON-able, {} if none.
        Studies read them from the records instead of reloading saved weights."""
        return {}

    # Tasks whose held-out data is one running text can cut it into spans of any length; the
    # length probe (bench.probes) needs that. Others say so in one line.
    has_spans: bool = False

    def held_out_spans(self, n_spans: int, span: int) -> Tensor:
        """(n_spans, span + 1) int64 ids of running held-out text, at fixed positions."""
        raise ValueError(
            f"task {self.name!r} has no running held-out text to cut at other lengths; the "
            "'lengths' probe needs a text task (shakespeare, text, corpus)"
        )

    # `self.vocab` maps text <-> ids: a CharVocab, or a tokeniser with the same `len`,
    # `encode` and `decode` (bench.tasks.tokenizers)
    vocab: CharVocab

    # Language-modelling tasks set this: validation tokens per UTF-8 byte of the held-out text,
    # which turns nats per token into bits per byte (comparable across tokenisers).
    val_tokens_per_byte: float | None = None

    def bits_per_byte(self, loss: float | None) -> float | None:
        """`loss` (nats per token on the validation split) in bits per byte of its text:
        loss x tokens/byte / ln 2. None for a task that is not language modelling."""
        tpb = self.val_tokens_per_byte
        if tpb is None or loss is None or not math.isfinite(loss):
            return None
        return loss * tpb / math.log(2)

    def run_identity(self, data, given: dict) -> dict:
        """What a run's spec says about this task besides its name: the data path (absolute:
        moving the file is another run) and the options given, as the task typed them. A task
        may name its data by content instead, or leave out what cannot change its runs."""
        return {"data": None if data is None else str(Path(data).resolve()), **given}

    def encode(self, s: str) -> list[int]:
        return self.vocab.encode(s)

    def decode(self, ids) -> str:
        return self.vocab.decode(ids)

    @abc.abstractmethod
    def describe(self) -> dict:
        """JSON-able description of the task's parameters, recorded beside results."""

    def _describe_rows(self) -> dict:
        """The part of `describe` every task shares: row length, context, held-out batches."""
        return {
            "seq_len": self.seq_len,
            "context": self.context,
            "vocab_size": self.vocab_size,
            "eval_batches": self.eval_batches,
            "eval_batch_size": self.eval_batch_size,
        }

    def _check_batch_size(self, batch_size: int) -> int:
        return option_int("batch_size", batch_size, lo=1)


# ---------------------------------------------------------------------------------------------
# the registry: a task file registers its class with `@register_task`, and it is a task
# ---------------------------------------------------------------------------------------------

TASKS: Registry[type[Task]] = Registry("task", error=TaskError)


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make `cls` available as task `cls.name`, listed with `cls.description`.
    The name is written once, on the class; a plugin file registers the same way."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"@register_task takes a Task subclass, got {cls!r}")
    if not cls.description or "\n" in cls.description:
        raise TaskError(f"task {cls.name!r} needs a one-line `description` for --list")
    return TASKS.register(cls.name, cls, description=cls.description, replace=True)
