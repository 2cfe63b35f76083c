"""`addition`: n-digit integer addition, generated on the fly (no download).

Format (n = n_digits, every row has the same length, so there is no padding)::

    a (n digits, zero-padded) '+' b (n digits, zero-padded) '=' c (n+1 digits) '$'

c = a + b is zero-padded to n+1 digits and, with `reverse=True` (the default), written least
significant digit first, so a left-to-right model produces each digit after the carries that
decide it. With n = 3, 12 + 345 = 357::

    reverse=True:   "012+345=7530$"      (357 -> "0357" -> reversed "7530")
    reverse=False:  "012+345=0357$"

The full problem is 3n+4 characters; a row is the next-token pair x = problem[:-1],
y = problem[1:], so `seq_len` = 3n+3 (12 for n = 3) and must fit in the model context.

Vocabulary (13 tokens): ids 0-9 are the digits '0'-'9' (so a digit's id is its value),
10 is '+', 11 is '=', 12 is the end marker '$'.

Loss mask (`mask_prompt=True`, the default): y[t] is IGNORE_INDEX wherever the next token
problem[t+1] belongs to the prompt "a+b=", i.e. for t < 2n+1; the n+1 answer digits and '$'
are real targets (n+2 targets per row). `mask_prompt=False` trains on every position (the
prompt digits are random, so they only add an irreducible ln(10) term).

Held-out set: `n_heldout` (default 1000, at most 10% of all 10^(2n) problems) distinct (a, b)
pairs drawn from a fixed internal seed, identical for every run and variant. Training sampling
redraws any held-out pair, so train and held-out are disjoint. `val_batches()` is the first
eval_batches * eval_batch_size held-out problems; its loss is always taken on the answer only
(whatever `mask_prompt` is), so validation losses stay comparable between masking settings.
`accuracy()` greedy-decodes the n+2 answer tokens for held-out prompts and counts a problem
right only if all of them (digits and '$') are exact.

Mixed widths (the addition study): `min_digits` < n_digits trains on every width from
min_digits to n_digits, drawn uniformly per row; a d-digit problem is the n_digits=d format,
padded at the END with '$' tokens whose targets are ignored (a causal model cannot see them from
earlier positions), so `seq_len` is the widest row's. `eval_digits` > n_digits also evaluates
wider problems than any trained (length generalisation). Every width has its own held-out set,
the one the plain task with n_digits=d holds out, and training redraws a pair held out at ANY
width (compared by value), so the same sum is never trained on at another width.

Evaluations (`evaluate`, kept in a run's record under "evals"): for each width from
min_digits to max(n_digits, eval_digits), on the first `eval_problems` held-out problems (all
by default), exact match (every answer digit and '$') and digit accuracy (answer digits right
at their position): {"by_digits": {"3": {"exact": 1.0, "digit": 1.0, "n": 1000}, ...}}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.core.spec import Recipe

from .base import IGNORE_INDEX, CharVocab, Task, TaskError, option, option_int, register_task
from .decode import greedy_decode

VOCAB = "0123456789+=$"
PLUS, EQUALS, END = 10, 11, 12
MAX_DIGITS = 9  # keeps the pair key a * 10^n + b inside int64

_HELDOUT_SEED = 20240917  # fixed: the held-out problems never depend on the run seed
_DECODE_BATCH = 256  # problems greedy-decoded at once in accuracy()


def format_problem(a: int, b: int, n_digits: int, reverse: bool = True) -> str:
    """The full problem string, e.g. (12, 345, 3) -> "012+345=7530$"."""
    c = f"{a + b:0{n_digits + 1}d}"
    return f"{a:0{n_digits}d}+{b:0{n_digits}d}={c[::-1] if reverse else c}$"


def answer_decode(text: str, reverse: bool = True) -> int | None:
    """The integer an answer string stands for, or None if it is not a well-formed answer.

    `text` is what follows '=': the answer digits, optionally followed by '$' and anything
    after it (ignored), e.g. "7530$" -> 357 (reverse=True), "0357$" -> 357 (reverse=False).
    """
    digits = text.split("$", 1)[0]
    if not digits or not digits.isdigit() or not digits.isascii():
        return None
    return int(digits[::-1] if reverse else digits)


def problem_tokens(a: Tensor, b: Tensor, d: int, reverse: bool) -> Tensor:
    """(B,) operands below 10^d -> (B, 3d+4) token ids of the full problems "a+b=c$"."""
    B = a.shape[0]
    pow_n = 10 ** torch.arange(d - 1, -1, -1, dtype=torch.int64)  # (d,) most significant first
    pow_c = 10 ** torch.arange(d, -1, -1, dtype=torch.int64)  # (d+1,)
    da = (a[:, None] // pow_n) % 10  # (B, d)
    db = (b[:, None] // pow_n) % 10  # (B, d)
    dc = ((a + b)[:, None] // pow_c) % 10  # (B, d+1), most significant first
    if reverse:
        dc = dc.flip(1)
    plus = torch.full((B, 1), PLUS, dtype=torch.int64)
    eq = torch.full((B, 1), EQUALS, dtype=torch.int64)
    end = torch.full((B, 1), END, dtype=torch.int64)
    return torch.cat([da, plus, db, eq, dc, end], dim=1)


def _width(name: str, value) -> int:
    return option_int(name, value, lo=1, hi=MAX_DIGITS)


@dataclass(frozen=True)
class AdditionOptions:
    n_digits: int = option(3, lo=1, hi=MAX_DIGITS)  # operand width (the widest trained)
    reverse: bool = option(True)  # answer least significant digit first
    mask_prompt: bool = option(True)  # loss on the answer only
    n_heldout: int = option(1000, lo=1)  # per width, capped at 10% of its problems
    min_digits: int | None = option(None, parse=_width)  # narrowest trained width (n_digits)
    eval_digits: int | None = option(None, parse=_width)  # widest evaluated width (n_digits)
    eval_problems: int | None = option(None, lo=1)  # decoded per width by evaluate (all)


@register_task
class AdditionTask(Task):
    """a + b = c with n-digit operands; see the module docstring for the exact format."""

    name = "addition"
    description = (
        "n-digit addition a+b=c, answer reversed, loss on the answer only; mixed and longer"
        " widths (min_digits, eval_digits); has accuracy"
    )
    has_accuracy = True
    Options = AdditionOptions
    # The addition study's model and lr. Trained on 3-digit problems only (the study mixes 1-3
    # digits), 1,500 steps left one seed in three on a plateau (exact match 0.69 ± 0.53 over
    # seeds 0-2); 3,000 steps reach 100% on all three (`--task addition --steps 3000`).
    recipe = Recipe(
        model="tiny",
        model_overrides=(("n_layer", 2), ("n_embd", 64), ("block_size", 32)),
        batch_size=64,
        lr=3e-3,  # the baseline's best of 1.5e-3 to 6e-3 in steps of sqrt(2), 3 seeds each
        steps=3000,
        note="2 layers, d=64: 100% exact match on held-out problems (3 seeds)",
        lr_sweep="results/reference/ablations/lr_sweep_addition_L2-H4-d64-ctx32_3000steps_cpu",
    )

    def _build(self, data) -> None:
        self._no_data(data)
        o = self.options
        self.n_digits = n = o.n_digits
        self.reverse, self.mask_prompt = o.reverse, o.mask_prompt
        lo = n if o.min_digits is None else o.min_digits
        hi = n if o.eval_digits is None else o.eval_digits
        if lo > n or hi < n:
            raise TaskError(
                f"addition widths must satisfy min_digits <= n_digits <= eval_digits, got"
                f" {lo} <= {n} <= {hi}; n_digits is the widest trained width"
            )
        self.train_digits = tuple(range(lo, n + 1))
        self.eval_widths = tuple(range(lo, hi + 1))

        self.vocab = CharVocab(VOCAB)
        self.vocab_size = len(self.vocab)
        self.prompt_len = 2 * n + 2  # "a+b="
        self.answer_len = n + 2  # n+1 digits and '$'
        self.seq_len = self.prompt_len + self.answer_len - 1  # 3n+3
        need = 3 * hi + 3  # a decoded problem of the widest evaluated width
        if need > self.context:
            raise TaskError(
                f"addition with {hi}-digit problems needs rows of {need} tokens but the model"
                f" context is {self.context}; raise the context to >= {need}"
                f" or lower n_digits (eval_digits)"
            )

        self._base = 10**n
        # one held-out set per width: the plain n_digits=d task's (fixed seed, prefix-stable)
        self._heldout = {d: self._draw_heldout(d, o.n_heldout) for d in self.eval_widths}
        self._heldout_a, self._heldout_b = self._heldout[n]  # (H,) int64 each
        self.n_heldout = len(self._heldout_a)
        # a pair held out at any width, by value: key a * 10^widest + b, sorted for isin
        self._key_base = 10**hi
        keys = [a * self._key_base + b for a, b in self._heldout.values()]
        self._heldout_keys = torch.unique(torch.cat(keys))

    # --- problem generation -------------------------------------------------------------------

    def _draw_heldout(self, d: int, requested: int) -> tuple[Tensor, Tensor]:
        """Distinct width-d (a, b) pairs from the fixed seed, in draw order; at most 10% of the
        width's problems (matters only for d = 1), so 90% are left for training."""
        base = 10**d
        k = min(requested, max(1, base * base // 10))
        g = torch.Generator().manual_seed(_HELDOUT_SEED + d)
        seen: set[int] = set()
        keys: list[int] = []
        while len(keys) < k:
            draw = torch.randint(0, base * base, (2 * k,), generator=g).tolist()
            for key in draw:
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
                    if len(keys) == k:
                        break
        kt = torch.tensor(keys, dtype=torch.int64)
        return kt // base, kt % base

    def _is_heldout(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.isin(a * self._key_base + b, self._heldout_keys)

    def _sample_pairs(self, d: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """n width-d training pairs, none of them held out (collisions are redrawn)."""
        base = 10**d
        a = torch.randint(0, base, (n,), generator=g)
        b = torch.randint(0, base, (n,), generator=g)
        bad = self._is_heldout(a, b)
        while bad.any():
            m = int(bad.sum())
            a[bad] = torch.randint(0, base, (m,), generator=g)
            b[bad] = torch.randint(0, base, (m,), generator=g)
            bad = self._is_heldout(a, b)
        return a, b

    def _tokens(self, a: Tensor, b: Tensor) -> Tensor:
        """(B,) operands -> (B, 3n+4) token ids of the full n_digits problems."""
        return problem_tokens(a, b, self.n_digits, self.reverse)

    def _rows(self, a: Tensor, b: Tensor, d: int, mask_prompt: bool) -> tuple[Tensor, Tensor]:
        """Next-token rows of width-d problems, padded at the end to seq_len."""
        tok = problem_tokens(a, b, d, self.reverse)  # (B, 3d+4)
        x = tok[:, :-1].contiguous()  # (B, 3d+3)
        y = tok[:, 1:].clone()  # (B, 3d+3)
        if mask_prompt:
            y[:, : 2 * d + 1] = IGNORE_INDEX  # y[t] = tok[t+1] is in the prompt "a+b="
        pad = self.seq_len - x.shape[1]
        if pad > 0:
            x = torch.cat([x, torch.full((x.shape[0], pad), END, dtype=torch.int64)], dim=1)
            y = torch.cat([y, torch.full((y.shape[0], pad), IGNORE_INDEX, dtype=torch.int64)], 1)
        return x, y

    # --- Task API -----------------------------------------------------------------------------

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        n = self._check_batch_size(batch_size)
        if len(self.train_digits) == 1:  # one width: no draw of widths (the plain stream)
            a, b = self._sample_pairs(self.n_digits, n, generator)
            return self._rows(a, b, self.n_digits, self.mask_prompt)
        pick = torch.randint(0, len(self.train_digits), (n,), generator=generator)
        xs = torch.empty(n, self.seq_len, dtype=torch.int64)
        ys = torch.empty_like(xs)
        for i, d in enumerate(self.train_digits):
            where = (pick == i).nonzero().flatten()
            if len(where):
                a, b = self._sample_pairs(d, len(where), generator)
                xs[where], ys[where] = self._rows(a, b, d, self.mask_prompt)
        return xs, ys

    def _build_val_batches(self) -> list[tuple[Tensor, Tensor]]:
        """Held-out problems of the trained widths, answer-only loss, one width per batch."""
        per_width = max(1, self.eval_batches * self.eval_batch_size // len(self.train_digits))
        out = []
        for d in self.train_digits:
            a, b = (t[:per_width] for t in self._heldout[d])
            for i in range(0, len(a), self.eval_batch_size):
                j = i + self.eval_batch_size
                out.append(self._rows(a[i:j], b[i:j], d, mask_prompt=True))
        return out

    def heldout_problems(self, d: int | None = None) -> tuple[Tensor, Tensor]:
        """The held-out operands (a, b) of width d (n_digits by default), each (H,) int64,
        in their fixed order."""
        a, b = self._heldout[self.n_digits if d is None else d]
        return a.clone(), b.clone()

    def score_width(self, model, device, d: int, max_problems: int | None = None) -> dict:
        """Greedy answers to the first `max_problems` held-out width-d problems: exact match
        (all d+1 digits and '$'), digit accuracy (the d+1 digits at their position), n."""
        a, b = self._heldout[d]
        n = (
            len(a)
            if max_problems is None
            else min(len(a), option_int("max_problems", max_problems, lo=1))
        )
        exact = digits = 0
        for i in range(0, n, _DECODE_BATCH):
            j = min(i + _DECODE_BATCH, n)
            tok = problem_tokens(a[i:j], b[i:j], d, self.reverse).to(device)  # (b, 3d+4)
            gen = greedy_decode(model, tok[:, : 2 * d + 2], max_new=d + 2)  # (b, d+2)
            right = gen == tok[:, 2 * d + 2 :]  # (b, d+2)
            exact += int(right.all(dim=1).sum())
            digits += int(right[:, : d + 1].sum())
        return {"exact": exact / max(n, 1), "digit": digits / max(n * (d + 1), 1), "n": n}

    def accuracy(self, model, device, max_problems: int | None = None) -> float:
        """Exact match on the first `max_problems` held-out problems (all by default) of each
        trained width, averaged over those widths (each weighs the same)."""
        accs = [
            self.score_width(model, device, d, max_problems)["exact"] for d in self.train_digits
        ]
        return sum(accs) / len(accs)

    def accuracy_from(self, evals: dict) -> float | None:
        if self.options.eval_problems is not None:
            return None  # evaluate decoded a part of each width; accuracy decodes them all
        accs = [evals["by_digits"][str(d)]["exact"] for d in self.train_digits]
        return sum(accs) / len(accs)  # as `accuracy` averages them

    def evaluate(self, model, device) -> dict:
        """Exact match and digit accuracy per width, trained and longer (module docstring)."""
        n = self.options.eval_problems
        return {
            "by_digits": {str(d): self.score_width(model, device, d, n) for d in self.eval_widths}
        }

    def answer_decode(self, text: str) -> int | None:
        """The integer an answer string (what follows '=') stands for in this task's order."""
        return answer_decode(text, reverse=self.reverse)

    def format_problem(self, a: int, b: int) -> str:
        return format_problem(a, b, self.n_digits, self.reverse)

    def describe(self) -> dict:
        out = {
            "task": self.name,
            "n_digits": self.n_digits,
            "reverse": self.reverse,
            "mask_prompt": self.mask_prompt,
            "n_heldout": self.n_heldout,
            "n_val_problems": sum(len(y) for _, y in self.val_batches()),
            "heldout_seed": _HELDOUT_SEED + self.n_digits,
            "vocab": VOCAB,
            **self._describe_rows(),
            "example": self.format_problem(12 % self._base, 345 % self._base),
        }
        if self.eval_widths != (self.n_digits,):
            out["train_digits"] = list(self.train_digits)
            out["eval_digits"] = list(self.eval_widths)
            out["n_heldout_by_width"] = {str(d): len(a) for d, (a, _) in self._heldout.items()}
        return out
