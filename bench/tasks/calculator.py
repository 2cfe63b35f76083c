"""`calculator`: integer + − × ÷ with optional chain-of-thought traces, generated on the fly.

Every problem has an operator `op` in "+-*/" and an operand length L (from `lengths`). The
(op, L) pairs are the task's *cells*; training draws a cell uniformly, then a problem uniformly
inside it, and accuracy is reported per cell.

Options: ``ops`` (default "+-*/", any subset), ``lengths`` (operand digit counts: "1,2,3"
(default), "1-3", 2 or a list; 1 to 9), ``divisor_digits`` (default 1), ``trace`` (default
false), ``mask_trace`` (default false; needs trace), ``n_heldout`` (per cell, default 100).

The problems and their row format (operands, answers, traces) are in
`bench/tasks/calculator_format.py`.

Rows: the full problem string is padded with '.' to the longest problem of the task's cells
(`seq_len` + 1 characters); x = row[:-1], y = row[1:]. Targets are IGNORE_INDEX on

* the prompt (every y[t] whose token row[t+1] is part of "a op b =": the prompt is never
  trained),
* the padding (every y[t] after the target '$'),
* the trace, '|' included, when ``mask_trace=True`` (the model then reads the trace but is
  never trained to write it).

The answer and its '$' always carry a loss; with ``mask_trace=False`` the trace does too.

Held-out set: for each cell, `n_heldout` distinct problems (at most 10% of the cell's
problems, at least 1) drawn from a fixed seed that depends only on the cell (and, for ÷, on
m), so every run, seed and variant is scored on the same problems, whatever other cells the
task has. Training redraws any held-out problem (compared after the − swap), so train and
held-out never share a problem. `val_batches()` takes the held-out problems cell by cell in
turn (round-robin) and puts the loss on the answer and '$' only, with the true trace as
context, so validation losses are comparable between `mask_trace` settings (not between
`trace` settings: with the trace as context the answer is nearly a copy).

Accuracy: greedy decoding in batches (one batch per cell, whose prompts all have the same
length), until every row has written '$' or the longest possible completion is reached. A
problem counts as right when the answer between '|' (or '=') and the first '$' is exactly the
true answer. The trace is *generated* by the model (``trace_given=False``, the default for
``mask_trace=False``) or *given*: the true trace and '|' are part of the prompt and only the
answer is decoded (the default for ``mask_trace=True``, since such a model was never trained
to write a trace). `accuracy()` is the overall fraction over all decoded problems;
`accuracy_breakdown()` returns one dict per cell (op, length, n, correct, accuracy, and with a
generated trace also trace_correct: the trace exactly right).

Evaluations (`evaluate`, kept in a run's record under "evals"): the per-cell breakdown on the
first `eval_problems` held-out problems (all by default), for each way the model can be
scored: {"by_cell": {"none": [...]}} without trace, {"generated": [...], "given": [...]} with
a trace it was trained to write, {"given": [...]} with a masked trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .base import IGNORE_INDEX, CharVocab, Task, TaskError, option, option_int, register_task
from .calculator_format import (
    BAR,
    END,
    EQUALS,
    HELDOUT_SEED,
    LUT,
    MAX_LENGTH,
    OPS,
    VOCAB,
    Cell,
    answer,
    format_problem,
    parse_lengths,
    parse_ops,
    trace,
)
from .decode import greedy_decode

# the format's names, for the callers that import them from here (tests, the study)
__all__ = ["VOCAB", "CalculatorOptions", "CalculatorTask", "answer", "format_problem", "trace"]

_DRAW_CHUNK = 256  # held-out candidates drawn per round (fixed, so the draw is prefix-stable)
_DECODE_BATCH = 256  # problems greedy-decoded at once


@dataclass(frozen=True)
class CalculatorOptions:
    ops: str = option(OPS, parse=lambda name, v: parse_ops(v))  # any subset of "+-*/"
    lengths: tuple[int, ...] = option((1, 2, 3), parse=lambda name, v: parse_lengths(v))
    divisor_digits: int = option(1, lo=1, hi=MAX_LENGTH)
    trace: bool = option(False)
    mask_trace: bool = option(False)  # needs trace
    n_heldout: int = option(100, lo=1)  # per cell, capped at 10% of the cell
    eval_problems: int | None = option(None, lo=1)  # decoded by evaluate (all)


@register_task
class CalculatorTask(Task):
    """+ − × ÷ with optional traces; see the module docstring for the exact format."""

    name = "calculator"
    description = "+ - * / (quotient r remainder), optional traces; accuracy"
    has_accuracy = True
    Options = CalculatorOptions

    def _build(self, data) -> None:
        self._no_data(data)
        o = self.options
        self.ops, self.lengths, self.divisor_digits = o.ops, o.lengths, o.divisor_digits
        self.trace, self.mask_trace = o.trace, o.mask_trace
        if self.mask_trace and not self.trace:
            raise TaskError("mask_trace=true needs trace=true (there is no trace to mask)")
        self.n_heldout_requested = o.n_heldout

        self.vocab = CharVocab(VOCAB)
        self.vocab_size = len(self.vocab)
        self.cells = [Cell(op, L, self.divisor_digits) for op in self.ops for L in self.lengths]
        self.row_len = max(c.full_len(self.trace) for c in self.cells)  # padded row, chars
        self.seq_len = self.row_len - 1
        if self.seq_len > self.context:
            worst = max(self.cells, key=lambda c: c.full_len(self.trace))
            raise TaskError(
                f"calculator rows need {self.seq_len} tokens (the longest is"
                f" {worst.op} with {worst.length}-digit operands"
                f"{', with trace' if self.trace else ''}) but the model context is"
                f" {self.context}; raise the context to >= {self.seq_len} or use shorter lengths"
            )

        # held-out problems per cell, and the set of all of them for the training redraw
        self._heldout: list[list[tuple[int, int]]] = [self._draw_heldout(c) for c in self.cells]
        self._heldout_keys = {
            (c.op, a, b)
            for c, probs in zip(self.cells, self._heldout, strict=True)
            for a, b in probs
        }
        self.n_heldout = sum(len(p) for p in self._heldout)
        # round-robin order over cells: (cell index, problem index)
        order = []
        for i in range(max(len(p) for p in self._heldout)):
            order.extend((ci, i) for ci, p in enumerate(self._heldout) if i < len(p))
        self._order = order

    # --- problem generation -------------------------------------------------------------------

    def _draw_heldout(self, cell: Cell) -> list[tuple[int, int]]:
        k = min(self.n_heldout_requested, max(1, cell.total // 10))
        g = torch.Generator().manual_seed(cell.seed())
        seen: set[tuple[int, int]] = set()
        out: list[tuple[int, int]] = []
        while len(out) < k:
            u = torch.rand(_DRAW_CHUNK, 2, generator=g, dtype=torch.float64).tolist()
            for ua, ub in u:
                p = cell.draw(ua, ub)
                if p not in seen:
                    seen.add(p)
                    out.append(p)
                    if len(out) == k:
                        break
        return out

    def heldout_problems(self) -> list[tuple[str, int, int, int]]:
        """Every held-out problem as (op, length, a, b), cell by cell."""
        return [
            (c.op, c.length, a, b)
            for c, probs in zip(self.cells, self._heldout, strict=True)
            for a, b in probs
        ]

    def is_heldout(self, op: str, a: int, b: int) -> bool:
        return (op, a, b) in self._heldout_keys

    def sample_problems(self, n: int, g: torch.Generator) -> list[tuple[Cell, int, int]]:
        """n training problems (cell, a, b), none held out; all randomness from `g`."""
        cells = torch.randint(0, len(self.cells), (n,), generator=g).tolist()
        u = torch.rand(n, 2, generator=g, dtype=torch.float64).tolist()
        out = []
        for ci, (ua, ub) in zip(cells, u, strict=True):
            cell = self.cells[ci]
            a, b = cell.draw(ua, ub)
            while (cell.op, a, b) in self._heldout_keys:
                ua, ub = torch.rand(2, generator=g, dtype=torch.float64).tolist()
                a, b = cell.draw(ua, ub)
            out.append((cell, a, b))
        return out

    def problem_string(self, cell: Cell, a: int, b: int) -> str:
        return format_problem(cell.op, a, b, cell.length, self.trace, cell.m)

    def _encode_rows(self, strings: list[str], width: int) -> np.ndarray:
        """Strings -> (B, width) int64 ids, each padded with '.' at the end."""
        blob = "".join(s.ljust(width, ".") for s in strings).encode("ascii")
        tok = LUT[np.frombuffer(blob, dtype=np.uint8)].reshape(len(strings), width)
        return tok

    def _rows(self, strings: list[str], answer_only: bool) -> tuple[Tensor, Tensor]:
        tok = self._encode_rows(strings, self.row_len)  # (B, T+1)
        x = tok[:, :-1]
        y = tok[:, 1:].copy()
        T = y.shape[1]
        t = np.arange(T)[None, :]
        eq = np.argmax(tok == EQUALS, axis=1)[:, None]  # first '=' per row
        end = np.argmax(tok == END, axis=1)[:, None]  # first '$'
        # y[t] = tok[t+1]: prompt when t+1 <= eq, padding when t+1 > end
        ignore = (t < eq) | (t >= end)
        if self.trace and (self.mask_trace or answer_only):
            bar = np.argmax(tok == BAR, axis=1)[:, None]
            ignore |= t < bar  # the trace, '|' included (tok[t+1] for t+1 <= bar)
        y[ignore] = IGNORE_INDEX
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    # --- Task API -----------------------------------------------------------------------------

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        probs = self.sample_problems(self._check_batch_size(batch_size), generator)
        return self._rows([self.problem_string(c, a, b) for c, a, b in probs], answer_only=False)

    def _build_val_batches(self) -> list[tuple[Tensor, Tensor]]:
        n_val = min(self.n_heldout, self.eval_batches * self.eval_batch_size)
        strings = [
            self.problem_string(self.cells[ci], *self._heldout[ci][i])
            for ci, i in self._order[:n_val]
        ]
        return [
            self._rows(strings[i : i + self.eval_batch_size], answer_only=True)
            for i in range(0, n_val, self.eval_batch_size)
        ]

    @torch.no_grad()
    def accuracy_breakdown(
        self,
        model,
        device,
        max_problems: int | None = None,
        trace_given: bool | None = None,
    ) -> list[dict]:
        """Exact-match accuracy per cell: one dict per (op, length) with keys op, length, n,
        correct, accuracy, trace_eval ("none", "generated" or "given") and, for a generated
        trace, trace_correct. Decodes the first `max_problems` held-out problems in the
        round-robin order (all by default). `trace_given` defaults to `mask_trace`."""
        if trace_given is None:
            trace_given = self.mask_trace
        trace_given = bool(trace_given) and self.trace
        mode = "none" if not self.trace else ("given" if trace_given else "generated")
        n = self.n_heldout
        if max_problems is not None:
            n = option_int("max_problems", max_problems, lo=1)
        per_cell: dict[int, list[int]] = {}
        for ci, i in self._order[: min(n, self.n_heldout)]:
            per_cell.setdefault(ci, []).append(i)

        out = []
        for ci, cell in enumerate(self.cells):
            idxs = per_cell.get(ci, [])
            correct = trace_ok = 0
            for s in range(0, len(idxs), _DECODE_BATCH):
                probs = [self._heldout[ci][i] for i in idxs[s : s + _DECODE_BATCH]]
                c, t = self._decode_cell(model, device, cell, probs, trace_given)
                correct += c
                trace_ok += t
            row = {
                "op": cell.op,
                "length": cell.length,
                "trace_eval": mode,
                "n": len(idxs),
                "correct": correct,
                "accuracy": correct / len(idxs) if idxs else float("nan"),
            }
            if mode == "generated":
                row["trace_correct"] = trace_ok / len(idxs) if idxs else float("nan")
            out.append(row)
        return out

    def _decode_cell(self, model, device, cell: Cell, probs, trace_given: bool) -> tuple[int, int]:
        """Greedy-decode one batch of same-cell problems; (answers right, traces right)."""
        fulls = [self.problem_string(cell, a, b) for a, b in probs]
        if trace_given:
            cut = cell.prompt_len + cell.trace_len + 1  # prompt, trace and '|'
        else:
            cut = cell.prompt_len
        max_new = cell.full_len(self.trace) - cut
        prompts = torch.from_numpy(self._encode_rows([f[:cut] for f in fulls], cut))  # (b, cut)
        ids = greedy_decode(model, prompts, max_new, stop_id=END, device=device)  # (b, <=max_new)
        gen = [self.vocab.decode(row) for row in ids.cpu()]
        correct = trace_ok = 0
        for full, g in zip(fulls, gen, strict=True):
            if "$" not in g:
                continue
            g = g[: g.index("$")]
            true = full[cut:-1]  # completion without '$'
            if self.trace and not trace_given:
                tr, _, ans = g.partition("|")
                t_tr, _, t_ans = true.partition("|")
                trace_ok += tr == t_tr
                correct += ans == t_ans and "|" in g
            else:
                correct += g == true
        return correct, trace_ok

    def evaluate(self, model, device) -> dict:
        """The per-cell breakdown for each way this model can be scored (module docstring)."""
        modes = (
            ("given",) if self.mask_trace else ("generated", "given") if self.trace else ("none",)
        )
        n = self.options.eval_problems
        return {
            "by_cell": {
                m: self.accuracy_breakdown(model, device, max_problems=n, trace_given=m == "given")
                for m in modes
            }
        }

    def accuracy_from(self, evals: dict) -> float | None:
        if self.options.eval_problems is not None:
            return None  # evaluate decoded a part of the held-out set; accuracy decodes it all
        mode = "none" if not self.trace else ("given" if self.mask_trace else "generated")
        rows = evals["by_cell"][mode]  # what `accuracy` scores: the default trace setting
        n = sum(r["n"] for r in rows)
        return sum(r["correct"] for r in rows) / n if n else float("nan")

    def accuracy(self, model, device, max_problems: int | None = None) -> float:
        """Fraction of decoded held-out problems whose answer is exactly right (over all cells;
        see `accuracy_breakdown` for the trace setting and the per-cell figures)."""
        rows = self.accuracy_breakdown(model, device, max_problems=max_problems)
        n = sum(r["n"] for r in rows)
        return sum(r["correct"] for r in rows) / n if n else float("nan")

    def describe(self) -> dict:
        examples = {
            c.key: self.problem_string(c, *self._heldout[i][0]) for i, c in enumerate(self.cells)
        }
        return {
            "task": self.name,
            "ops": self.ops,
            "lengths": list(self.lengths),
            "divisor_digits": self.divisor_digits,
            "trace": self.trace,
            "mask_trace": self.mask_trace,
            "n_heldout_per_cell": {
                c.key: len(p) for c, p in zip(self.cells, self._heldout, strict=True)
            },
            "n_heldout": self.n_heldout,
            "n_val_problems": min(self.n_heldout, self.eval_batches * self.eval_batch_size),
            "heldout_seed": HELDOUT_SEED,
            "vocab": VOCAB,
            **self._describe_rows(),
            "examples": examples,
        }
