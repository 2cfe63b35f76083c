"""The calculator task's problems and their format: operands, answers, traces, cells.

Pure functions of the numbers (tests recompute them independently); the task that draws,
pads, masks and scores them is `bench/tasks/calculator.py`.

Operands (written without leading zeros, so an L-digit operand has exactly L digits):

* ``+``, ``*``: a and b both have L digits ("L digits" means [10^(L-1), 10^L), and [0, 10)
  for L = 1, so 0 is a 1-digit number).
* ``-``: a and b both have L digits and a >= b (a drawn pair is swapped if needed), so the
  difference is never negative.
* ``/``: the dividend a has L digits, the divisor b has m = min(divisor_digits, L) digits and
  is never 0 (for m = 1 it is 1-9). The answer is the quotient and the remainder:
  ``17/5=3r2``.

Row format, without trace (``trace=False``)::

    a op b '=' answer '$'              e.g. "57+68=125$", "68-57=11$", "12*34=408$", "17/5=3r2$"

The answer is written most significant digit first, without leading zeros; for ÷ it is
``q 'r' rem`` (q and rem without leading zeros, "0" when zero).

With trace (``trace=True``) the worked steps come between '=' and a '|', then the answer::

    a op b '=' trace '|' answer '$'

Numbers inside a +, − or × trace are written least significant digit first, in the order the
paper-and-pencil algorithm produces them, so each trace token depends only on tokens already
written; the answer then copies them back in the usual order. Steps are separated by ','.

* ``+`` — one step per column i = 0..L-1 (units first): the column digit s_i then the carry
  c_{i+1} out of that column, where a_i + b_i + c_i = s_i + 10·c_{i+1} and c_0 = 0::

      57+68=51,21|125$        7+8+0 = 15 -> "51";  5+6+1 = 12 -> "21";  answer 125

* ``-`` — one step per column (units first): the column digit d_i then the borrow w_{i+1},
  where a_i − b_i − w_i = d_i − 10·w_{i+1} and w_0 = 0::

      62-17=51,40|45$         2-7-0 = -5 -> "51";  6-1-1 = 4 -> "40";  answer 45

* ``*`` — long multiplication by the digits b_j of b, units first. P_j = a·b_j is written
  reversed and zero-padded to L+1 digits; from the second digit on, it is followed by '>' and
  the running sum S_j = Σ_{k<=j} P_k·10^k, reversed and zero-padded to L+j+1 digits. The last
  running sum (or P_0 when L = 1) is the product::

      123*456=8370,5160>88860,2940>880650|56088$
          P_0 = 123·6 = 738 -> "8370";  P_1 = 123·5 = 615 -> "5160", S_1 = 6888 -> "88860";
          P_2 = 123·4 = 492 -> "2940", S_2 = 56088 -> "880650";  answer 56088
      7*8=65|56$

* ``/`` — long division, one step per dividend digit, *most* significant first (the order
  long division goes in): the quotient digit q_i then the remainder r_i zero-padded to m
  digits, where 10·r_{i-1} + a_i = q_i·b + r_i and r_{-1} = 0. The quotient is the q_i
  without leading zeros, the remainder the last r_i::

      17/5=01,32|3r2$         1 = 0·5 + 1 -> "01";  17 = 3·5 + 2 -> "32";  answer 3r2
      7/3=21|2r1$

Tokens (vocabulary of 21): ids 0-9 are the digits (a digit's id is its value), then
``+ - * / = r , > | $`` and the pad token ``.`` (id 20).
"""

from __future__ import annotations

import numpy as np

from .base import TaskError, option_int

OPS = "+-*/"
VOCAB = "0123456789+-*/=r,>|$."
EQUALS, BAR, END, PAD = 14, 18, 19, 20
MAX_LENGTH = 9  # operand digits; keeps every number well inside int64

HELDOUT_SEED = 20241121  # fixed: the held-out problems never depend on the run seed

LUT = np.full(256, -1, dtype=np.int64)  # ASCII byte -> token id
for _i, _c in enumerate(VOCAB):
    LUT[ord(_c)] = _i


# ---------------------------------------------------------------------------------------------
# the format (pure functions of the numbers; tests recompute them independently)
# ---------------------------------------------------------------------------------------------


def _digits_lsb(x: int, width: int) -> list[int]:
    return [(x // 10**i) % 10 for i in range(width)]


def _rev(x: int, width: int) -> str:
    """x zero-padded to `width` digits, least significant digit first."""
    return "".join(str(d) for d in _digits_lsb(x, width))


def answer(op: str, a: int, b: int) -> str:
    """The answer string, e.g. ("/", 17, 5) -> "3r2", ("+", 57, 68) -> "125"."""
    if op == "-" and a < b:
        raise ValueError(f"the calculator task writes a-b only for a >= b, got {a}-{b}")
    if op == "/" and b == 0:
        raise ValueError(f"division by zero: {a}/{b}")
    if op == "+":
        return str(a + b)
    if op == "-":
        return str(a - b)
    if op == "*":
        return str(a * b)
    if op == "/":
        return f"{a // b}r{a % b}"
    raise ValueError(f"unknown operator {op!r}")


def trace(op: str, a: int, b: int, length: int, divisor_len: int = 1) -> str:
    """The worked steps for an operand length `length` (see the module docstring)."""
    L = length
    if op in "+-":
        da, db = _digits_lsb(a, L), _digits_lsb(b, L)
        steps, c = [], 0
        for i in range(L):
            if op == "+":
                s = da[i] + db[i] + c
                digit, c = s % 10, s // 10
            else:
                s = da[i] - db[i] - c
                digit, c = s % 10, int(s < 0)
            steps.append(f"{digit}{c}")
        return ",".join(steps)
    if op == "*":
        db = _digits_lsb(b, L)
        steps = [_rev(a * db[0], L + 1)]
        running = a * db[0]
        for j in range(1, L):
            p = a * db[j]
            running += p * 10**j
            steps.append(f"{_rev(p, L + 1)}>{_rev(running, L + j + 1)}")
        return ",".join(steps)
    if op == "/":
        steps, r = [], 0
        for ch in str(a).zfill(L):
            r = 10 * r + int(ch)
            q, r = divmod(r, b)
            steps.append(f"{q}{r:0{divisor_len}d}")
        return ",".join(steps)
    raise ValueError(f"unknown operator {op!r}")


def format_problem(
    op: str, a: int, b: int, length: int, with_trace: bool, divisor_len: int = 1
) -> str:
    """The full problem string, e.g. ("+", 57, 68, 2, True) -> "57+68=51,21|125$"."""
    head = f"{a}{op}{b}="
    if with_trace:
        return f"{head}{trace(op, a, b, length, divisor_len)}|{answer(op, a, b)}$"
    return f"{head}{answer(op, a, b)}$"


def parse_lengths(value) -> tuple[int, ...]:
    """Operand lengths from 3, "3", "1,2,3", "1-3" or a list; sorted, distinct, in [1, 9]."""
    if isinstance(value, bool):
        raise TaskError(f"lengths must be digits counts like '1,2,3', got {value!r}")
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = []
        for part in value.replace(" ", "").split(","):
            if "-" in part and part.count("-") == 1 and part[0] != "-":
                lo, hi = part.split("-")
                items.extend(range(option_int("lengths", lo), option_int("lengths", hi) + 1))
            elif part:
                items.append(option_int("lengths", part))
    elif isinstance(value, (list, tuple)):
        items = [option_int("lengths", v) for v in value]
    else:
        raise TaskError(f"lengths must be digit counts like '1,2,3', got {value!r}")
    out = tuple(sorted(set(items)))
    if not out or out[0] < 1 or out[-1] > MAX_LENGTH:
        raise TaskError(
            f"lengths must be digit counts in [1, {MAX_LENGTH}] like '1,2,3' or '1-3',"
            f" got {value!r}"
        )
    return out


def parse_ops(value) -> str:
    """Operators from a string like "+-*/" or "+*": distinct, in the canonical order +-*/."""
    if not isinstance(value, str) or not value or set(value) - set(OPS):
        raise TaskError(f"ops must be a non-empty string of operators from {OPS!r}, got {value!r}")
    if len(set(value)) != len(value):
        raise TaskError(f"ops lists an operator twice: {value!r}")
    return "".join(o for o in OPS if o in value)


# ---------------------------------------------------------------------------------------------
# cells: one (operator, operand length) each
# ---------------------------------------------------------------------------------------------


class Cell:
    """One (operator, operand length): its operand ranges, lengths and held-out problems."""

    def __init__(self, op: str, length: int, divisor_digits: int):
        self.op, self.length = op, length
        L = length
        self.lo_a = 0 if L == 1 else 10 ** (L - 1)
        self.n_a = 10**L - self.lo_a
        if op == "/":
            self.m = min(divisor_digits, L)
            self.lo_b = 1 if self.m == 1 else 10 ** (self.m - 1)
            self.n_b = 10**self.m - self.lo_b
        else:
            self.m = L
            self.lo_b, self.n_b = self.lo_a, self.n_a
        if op == "-":
            self.total = self.n_a * (self.n_a + 1) // 2  # unordered pairs a >= b
        else:
            self.total = self.n_a * self.n_b
        self.prompt_len = L + 1 + self.m + 1
        self.trace_len = len(trace(op, self.lo_a, self.lo_b, L, self.m))
        self.max_answer = {"+": L + 1, "-": L, "*": 2 * L, "/": L + 1 + self.m}[op]

    @property
    def key(self) -> str:
        return f"{self.op}{self.length}"

    def seed(self) -> int:
        extra = 1000 * self.m if self.op == "/" else 0
        return HELDOUT_SEED + 100 * OPS.index(self.op) + self.length + extra

    def full_len(self, with_trace: bool) -> int:
        """The longest full problem string of this cell."""
        t = self.trace_len + 1 if with_trace else 0
        return self.prompt_len + t + self.max_answer + 1

    def canon(self, a: int, b: int) -> tuple[int, int]:
        return (max(a, b), min(a, b)) if self.op == "-" else (a, b)

    def draw(self, u_a: float, u_b: float) -> tuple[int, int]:
        """A problem from two uniforms in [0, 1)."""
        a = self.lo_a + min(int(u_a * self.n_a), self.n_a - 1)
        b = self.lo_b + min(int(u_b * self.n_b), self.n_b - 1)
        return self.canon(a, b)
