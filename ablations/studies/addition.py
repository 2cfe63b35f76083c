"""Study `addition`: does a small transformer learn a+b=c, and does it generalise to longer sums?

    python ablations/run.py --study addition            # results/local/studies/addition/

Design (what is trained, what is tested, and why)
-------------------------------------------------
A problem of *d digits* is written in the `addition` task's format for n_digits = d: both
operands zero-padded to d digits, the sum to d+1 digits (least significant first when
`reverse`), then '$'. "d digits" is the width of the operands, so the d-digit problems are all
pairs (a, b) in [0, 10^d)² (e.g. "005+012=7100$" is a 3-digit problem).

Training mixes widths 1, 2 and 3 (uniformly per row; shorter rows are padded at the END with '$'
tokens whose targets are ignored, which a causal model cannot see from earlier positions).
Testing covers widths 1 to 5: 1-3 are in-distribution lengths, 4 and 5 are longer than any row
seen in training. A single fixed-width zero-padded format (train n_digits=3, pad 1-digit
problems to "001+002=...") would make "1-digit" problems just a subset of the 3-digit training
distribution and could not express a longer problem at all, so the widths vary instead.

What "length generalisation" can mean for each position scheme:
  * `learned`: the embedding rows for positions beyond the longest training row (12 tokens for
    3 digits; a 5-digit problem needs 18) receive no gradient, only weight decay. Failure at
    4-5 digits is expected by construction; the column is there to show it, not to test it.
  * `rope`: no per-position parameters, but the distances between an answer digit and the
    operand digits it depends on grow with d, so longer problems need relative offsets never
    seen in training.
  * `none` (NoPE): a causal model can still infer positions (e.g. by counting); it has no
    per-position table to run out of.

Held-out problems: for each width d the held-out set is exactly the `addition` task's own
held-out set for n_digits=d (fixed seed, the same for every run). Training redraws any pair
(a, b) that is held out at ANY width, compared by value, so neither a held-out string nor the
same sum written at another width is ever trained on (this leaves 79 of the 100 one-digit
problems for training). Widths 4 and 5 are never trained at all.

Compared (one change at a time from the reference): answer digits reversed vs normal order;
loss masked on the prompt vs not; positions learned vs rope vs none. Metrics per width: exact
match (every answer digit and '$' right, greedy decoding) and digit accuracy (fraction of the
d+1 answer digits right at their position), on up to 500 held-out problems per width
(only 10 exist for d=1: the task keeps 90% of the 100 one-digit problems for training).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ablations.studies.base import Study, StudyContext, save_figure
from bench.executor import execute
from bench.spec import Budget, RunSpec, TrainConfig
from bench.tables import markdown_table
from bench.tasks.addition import END, EQUALS, PLUS, VOCAB, AdditionTask
from bench.tasks.base import IGNORE_INDEX, CharVocab, Task, TaskError
from bench.train import load_checkpoint
from variants.config import preset
from variants.model import GPT
from variants.registry import get_variant

TASK_NAME = "addition-lengths"
TRAIN_DIGITS = (1, 2, 3)
TEST_DIGITS = (1, 2, 3, 4, 5)
N_HELDOUT = 1000  # per width, as in the addition task (capped at 10% of the width's problems)
EVAL_PROBLEMS = 500  # held-out problems decoded per width at scale 1
_DECODE_BATCH = 256


# ----------------------------------------------------------------------------------------------
# the mixed-length addition task


def problem_tokens(a: Tensor, b: Tensor, d: int, reverse: bool) -> Tensor:
    """(B,) operands below 10^d -> (B, 3d+4) token ids of "a+b=c$" in the addition format."""
    B = a.shape[0]
    pow_n = 10 ** torch.arange(d - 1, -1, -1, dtype=torch.int64)  # (d,) most significant first
    pow_c = 10 ** torch.arange(d, -1, -1, dtype=torch.int64)  # (d+1,)
    da = (a[:, None] // pow_n) % 10
    db = (b[:, None] // pow_n) % 10
    dc = ((a + b)[:, None] // pow_c) % 10
    if reverse:
        dc = dc.flip(1)

    def col(v):
        return torch.full((B, 1), v, dtype=torch.int64)

    return torch.cat([da, col(PLUS), db, col(EQUALS), dc, col(END)], dim=1)


class LengthMixAddition(Task):
    """Addition with operand widths mixed in training (`train_digits`) and tested per width
    (`test_digits`, which may be longer). See the module docstring for the format and the
    held-out guarantee. `seq_len` is the longest training row (3·max(train_digits)+3)."""

    name = TASK_NAME
    has_accuracy = True

    def __init__(
        self,
        *,
        context: int,
        data: str | None = None,
        eval_batches: int = 8,
        eval_batch_size: int = 64,
        train_digits=TRAIN_DIGITS,
        test_digits=TEST_DIGITS,
        reverse: bool = True,
        mask_prompt: bool = True,
        n_heldout: int = N_HELDOUT,
    ):
        super().__init__(
            context=context, eval_batches=eval_batches, eval_batch_size=eval_batch_size
        )
        if data is not None:
            raise TaskError(f"task {TASK_NAME!r} generates its own problems (got data={data!r})")
        self.train_digits = tuple(sorted({int(d) for d in train_digits}))
        self.test_digits = tuple(sorted({int(d) for d in test_digits}))
        widths = sorted(set(self.train_digits) | set(self.test_digits))
        if not self.train_digits or widths[0] < 1 or widths[-1] > 9:
            raise TaskError(f"digit counts must be in [1, 9], got {widths}")
        self.reverse, self.mask_prompt = bool(reverse), bool(mask_prompt)
        need = 3 * widths[-1] + 3
        if need > self.context:
            raise TaskError(
                f"{widths[-1]}-digit problems need a context of {need} tokens, got {self.context}"
            )
        self.vocab = CharVocab(VOCAB)
        self.vocab_size = len(self.vocab)
        self.seq_len = 3 * self.train_digits[-1] + 3
        self._key_base = 10 ** widths[-1]  # a*base + b identifies a pair by value at any width
        # one plain addition task per width: its held-out set is ours for that width
        self.by_width = {
            d: AdditionTask(
                context=self.context, n_digits=d, reverse=self.reverse, n_heldout=n_heldout
            )
            for d in widths
        }
        keys = []
        for sub in self.by_width.values():
            a, b = sub.heldout_problems()
            keys.append(a * self._key_base + b)
        self._heldout_keys = torch.unique(torch.cat(keys))  # sorted, every width together

    def heldout(self, d: int) -> tuple[Tensor, Tensor]:
        return self.by_width[d].heldout_problems()

    def is_heldout(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.isin(a * self._key_base + b, self._heldout_keys)

    def _sample(self, d: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        base = 10**d
        a = torch.randint(0, base, (n,), generator=g)
        b = torch.randint(0, base, (n,), generator=g)
        bad = self.is_heldout(a, b)
        while bad.any():
            m = int(bad.sum())
            a[bad] = torch.randint(0, base, (m,), generator=g)
            b[bad] = torch.randint(0, base, (m,), generator=g)
            bad = self.is_heldout(a, b)
        return a, b

    def _rows(self, a: Tensor, b: Tensor, d: int, mask_prompt: bool) -> tuple[Tensor, Tensor]:
        """Next-token rows of width-d problems, padded at the end to seq_len."""
        tok = problem_tokens(a, b, d, self.reverse)
        x, y = tok[:, :-1], tok[:, 1:].clone()
        if mask_prompt:
            y[:, : 2 * d + 1] = IGNORE_INDEX  # targets inside "a+b=" (prompt_len - 1 of them)
        pad = self.seq_len - x.shape[1]
        if pad > 0:
            x = torch.cat([x, torch.full((x.shape[0], pad), END, dtype=torch.int64)], dim=1)
            y = torch.cat([y, torch.full((y.shape[0], pad), IGNORE_INDEX, dtype=torch.int64)], 1)
        return x.contiguous(), y

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        n = self._check_batch_size(batch_size)
        pick = torch.randint(0, len(self.train_digits), (n,), generator=generator)
        xs = torch.empty(n, self.seq_len, dtype=torch.int64)
        ys = torch.empty_like(xs)
        for i, d in enumerate(self.train_digits):
            where = (pick == i).nonzero().flatten()
            if len(where):
                a, b = self._sample(d, len(where), generator)
                xs[where], ys[where] = self._rows(a, b, d, self.mask_prompt)
        return xs, ys

    def _build_val_batches(self) -> list[tuple[Tensor, Tensor]]:
        """Held-out problems of the training widths, answer-only loss, one width per batch."""
        per_width = max(1, self.eval_batches * self.eval_batch_size // len(self.train_digits))
        out = []
        for d in self.train_digits:
            a, b = self.heldout(d)
            a, b = a[:per_width], b[:per_width]
            for i in range(0, len(a), self.eval_batch_size):
                sl = slice(i, i + self.eval_batch_size)
                out.append(self._rows(a[sl], b[sl], d, mask_prompt=True))
        return out

    def evaluate_width(self, model, device, d: int, max_problems: int | None = None) -> dict:
        """Greedy-decode held-out width-d problems: exact-match and per-digit accuracy."""
        return decode_accuracy(model, device, *self.heldout(d), d, self.reverse, max_problems)

    def accuracy(self, model, device, max_problems: int | None = None) -> float:
        """Exact match averaged over the training widths (each width weighs the same)."""
        accs = [
            self.evaluate_width(model, device, d, max_problems)["exact"] for d in self.train_digits
        ]
        return float(np.mean(accs))

    def encode(self, s: str) -> list[int]:
        return self.vocab.encode(s)

    def decode(self, ids) -> str:
        return self.vocab.decode(ids)

    def describe(self) -> dict:
        return {
            "task": self.name,
            "train_digits": list(self.train_digits),
            "test_digits": list(self.test_digits),
            "reverse": self.reverse,
            "mask_prompt": self.mask_prompt,
            "n_heldout": {d: sub.n_heldout for d, sub in self.by_width.items()},
            "heldout": "the addition task's held-out set per width; excluded from training by "
            "value at every width",
            "seq_len": self.seq_len,
            "context": self.context,
            "vocab": VOCAB,
            "example": self.by_width[self.train_digits[-1]].format_problem(12, 345 % 10**3),
        }


@torch.no_grad()
def decode_accuracy(model, device, a, b, d, reverse, max_problems=None) -> dict:
    """Exact-match and digit accuracy of greedy answers to the problems (a, b) of width d.

    `model(idx)` returns logits (or a tuple whose first item is logits). Exact match needs all
    d+1 digits and the end marker; digit accuracy counts the d+1 digits position by position.
    """
    n = len(a) if max_problems is None else min(len(a), int(max_problems))
    prompt_len, answer_len = 2 * d + 2, d + 2
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    exact = digits = 0
    try:
        for i in range(0, n, _DECODE_BATCH):
            j = min(i + _DECODE_BATCH, n)
            tok = problem_tokens(a[i:j], b[i:j], d, reverse).to(device)
            idx = tok[:, :prompt_len]
            for _ in range(answer_len):
                out = model(idx)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                idx = torch.cat([idx, logits[:, -1, :].argmax(-1, keepdim=True)], dim=1)
            right = idx[:, prompt_len:] == tok[:, prompt_len:]  # (b, d+2)
            exact += int(right.all(dim=1).sum())
            digits += int(right[:, : d + 1].sum())
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return {"exact": exact / max(n, 1), "digit": digits / max(n * (d + 1), 1), "n": n}


# ----------------------------------------------------------------------------------------------
# the study

# (label, model variant, reverse, mask_prompt): the reference first, then one change each
CONFIGS = (
    ("reference", "baseline", True, True),
    ("normal order", "baseline", False, True),
    ("no prompt mask", "baseline", True, False),
    ("rope", "rope", True, True),
    ("no position", "no-position", True, True),
)
MODEL = dict(n_layer=2, n_head=4, n_embd=64, block_size=32)  # `micro` depth, 2x its width
STEPS = 1500
TRAIN = TrainConfig(
    batch_size=64, lr=3e-3, eval_every=100, timing_warmup=5, eval_batches=6, save_checkpoint=True
)


def _describe_config(label: str, variant: str, reverse: bool, mask: bool) -> dict:
    cfg = get_variant(variant).apply(preset("micro"))
    return {
        "config": label,
        "position": cfg.position,
        "answer order": "reversed" if reverse else "normal",
        "loss mask": "answer only" if mask else "every token",
    }


class AdditionStudy(Study):
    name = "addition"
    description = (
        "a+b=c accuracy by digit count (train 1-3, test 1-5 digits): reversed vs normal answer,"
        " prompt mask, learned/rope/no positions"
    )
    one_thread = True

    def __init__(self, model=None, steps=STEPS, train=TRAIN, configs=CONFIGS, eval_problems=None):
        """The defaults are the study; tests pass a smaller model or fewer configurations."""
        self.model = dict(MODEL if model is None else model)
        self.steps, self.train, self.configs = steps, train, tuple(configs)
        self.eval_problems = EVAL_PROBLEMS if eval_problems is None else eval_problems

    def specs(self, ctx: StudyContext) -> list[tuple[tuple, list[RunSpec]]]:
        base = preset("micro", **self.model, vocab_size=len(VOCAB))
        budget = Budget("steps", ctx.steps(self.steps, minimum=20))
        every = max(5, round(self.train.eval_every * min(1.0, ctx.scale)))
        train = dataclasses.replace(self.train, eval_every=every, save_checkpoint=True)
        out = []
        for conf in self.configs:
            label, variant, reverse, mask = conf
            task = {
                "name": TASK_NAME,
                "data": None,
                "train_digits": list(TRAIN_DIGITS),
                "test_digits": list(TEST_DIGITS),
                "reverse": reverse,
                "mask_prompt": mask,
                "n_heldout": N_HELDOUT,
            }
            cfg = get_variant(variant).apply(base).validate()
            specs = [
                RunSpec(variant, cfg, task, budget, train, seed, ctx.device, None)
                for seed in range(ctx.seeds)
            ]
            out.append((conf, specs))
        return out

    def _run(self, ctx: StudyContext) -> str:
        t0 = time.perf_counter()
        ctx.out.mkdir(parents=True, exist_ok=True)
        n_eval = max(20, round(self.eval_problems * min(1.0, ctx.scale)))
        rows, curves = [], []
        for conf, specs in self.specs(ctx):
            label, _, reverse, mask = conf
            task = build_mixed_task(specs[0])
            records = _execute_with_checkpoints(ctx, specs, task)
            for spec, rec in zip(specs, records, strict=True):
                for point in rec.curve:
                    curves.append({"config": label, "seed": spec.seed, **point})
                evals = _evaluate_run(ctx, spec, rec, task, n_eval)
                for d, ev in evals.items():
                    rows.append(
                        {
                            **_describe_config(*conf),
                            "seed": spec.seed,
                            "run_id": rec.run_id,
                            "status": rec.status,
                            "digits": int(d),
                            "trained_length": int(d) in TRAIN_DIGITS,
                            "exact_match": ev["exact"],
                            "digit_accuracy": ev["digit"],
                            "n_problems": ev["n"],
                            "val_loss": rec.metrics["val_loss"],
                            "steps": rec.metrics["steps"],
                            "wall_s": rec.metrics["wall_s"],
                            "device_name": rec.device_name,
                        }
                    )
        long = pd.DataFrame(rows)
        long.to_csv(ctx.out / "addition_by_digits.csv", index=False)
        table = summary_table(long)
        table.to_csv(ctx.out / "addition.csv", index=False)
        md_table = markdown_table(_display(table))
        (ctx.out / "addition.md").write_text(md_table + "\n")
        spec0 = self.specs(ctx)[0][1][0]
        context = (
            f"{long['device_name'].iloc[0]} · {spec0.model.n_layer} layers, n_embd "
            f"{spec0.model.n_embd} · {spec0.budget.describe()} · {ctx.seeds} seed(s)"
        )
        figure(long, pd.DataFrame(curves), ctx.out / "addition.png", context, self.configs)
        dev = f"{long['device_name'].iloc[0]} ({ctx.device}, {torch.get_num_threads()} thread(s))"
        return self.section(ctx, table, long, md_table, spec0, dev, time.perf_counter() - t0)

    def section(self, ctx, table, long, md_table, spec, device, wall) -> str:
        m = spec.model
        runs = long.drop_duplicates("run_id")
        train_s, n_runs = float(runs["wall_s"].sum()), len(runs)
        return "\n".join(
            [
                "## Addition: accuracy by number of digits, and longer than trained",
                "",
                "A GPT with "
                f"{m.n_layer} layers, {m.n_head} heads, n_embd {m.n_embd} learns a+b=c from "
                f"problems of 1-3 digits (widths mixed per row, zero-padded within a width) and"
                " is tested on held-out problems of 1-5 digits; 4 and 5 digits are longer than "
                "any training row. Held-out pairs are excluded from training by value at every "
                "width. Compared, one change at a time from the reference (learned positions, "
                "answer reversed, loss on the answer only): the answer in normal order, the "
                "loss on every token, RoPE, and no position information. Exact match: all "
                "answer digits and '$' right under greedy decoding (mean ± std over seeds; the "
                "digit-accuracy columns count answer digits right at their position). Learned "
                "positions cannot represent the positions of a 4- or 5-digit row (their "
                "embedding rows were never trained), so their failure there is by design.",
                "",
                md_table,
                "",
                findings(table, long),
                "",
                "![accuracy by number of digits](addition.png)",
                "",
                f"Command: `{ctx.command('addition')}` · device: "
                f"{device} · budget: {spec.budget.describe()} per run, batch "
                f"{spec.train.batch_size}, lr {spec.train.lr:g}, {ctx.seeds} seed(s) · training "
                f"time {train_s / 60:.1f} min summed over {n_runs} runs (this invocation: "
                f"{wall / 60:.1f} min; finished runs are reused). Per-seed numbers: "
                "`addition_by_digits.csv`.",
                "",
            ]
        )


def build_mixed_task(spec: RunSpec) -> LengthMixAddition:
    opts = {k: v for k, v in spec.task.items() if k not in ("name", "data")}
    return LengthMixAddition(
        context=spec.model.block_size,
        eval_batches=spec.train.eval_batches,
        eval_batch_size=spec.train.eval_batch_size,
        **opts,
    )


def _execute_with_checkpoints(ctx: StudyContext, specs, task) -> list[dict]:
    """Run the specs (their final weights are saved); a finished run whose checkpoint is gone
    and whose evaluation is not cached either is trained again."""
    records = ctx.execute(specs, task=task)
    if len(records) != len(specs):
        raise RuntimeError("some addition runs left no record")
    cache = _load_cache(ctx.out)
    missing = [
        s
        for s, r in zip(specs, records, strict=True)
        if r.status == "ok"
        and not (ctx.out / "checkpoints" / f"{r.run_id}.pt").is_file()
        and (ctx.force or not any(k.startswith(r.run_id + ":") for k in cache))
    ]
    if missing:
        execute(missing, ctx.out, force=True, quiet=ctx.quiet, task=task)
        records = ctx.execute(specs, task=task)
    return records


def _load_cache(out: Path) -> dict:
    path = out / "addition_eval.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _evaluate_run(ctx, spec, record, task, n_eval) -> dict:
    """Per-width accuracies of a finished run (cached in addition_eval.json by run id)."""
    key = f"{record.run_id}:{n_eval}"
    cache = _load_cache(ctx.out)
    if key in cache and not ctx.force:
        return cache[key]
    if record.status != "ok":
        res = {str(d): {"exact": math.nan, "digit": math.nan, "n": 0} for d in TEST_DIGITS}
    else:
        model = GPT(spec.model).to(ctx.device)
        model.load_state_dict(load_checkpoint(record.run_id, ctx.out / "checkpoints", ctx.device))
        res = {str(d): task.evaluate_width(model, ctx.device, d, n_eval) for d in TEST_DIGITS}
    cache = _load_cache(ctx.out)
    cache[key] = res
    (ctx.out / "addition_eval.json").write_text(json.dumps(cache, indent=1))
    return res


# ----------------------------------------------------------------------------------------------
# table, figure, text


def summary_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: mean and std over seeds of exact match per width, digit
    accuracy per width, and the final validation loss (answer tokens, trained widths)."""
    rows = []
    keys = ["config", "position", "answer order", "loss mask"]
    for key, g in long.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True))
        per_seed = g.drop_duplicates("seed")
        row["seeds"] = len(per_seed)
        row["diverged"] = int((per_seed["status"] != "ok").sum())
        row["val_loss_mean"] = per_seed["val_loss"].mean()
        row["val_loss_std"] = per_seed["val_loss"].std(ddof=1) if len(per_seed) > 1 else np.nan
        for d, gd in g.groupby("digits"):
            row[f"exact_{d}d_mean"] = gd["exact_match"].mean()
            row[f"exact_{d}d_std"] = gd["exact_match"].std(ddof=1) if len(gd) > 1 else np.nan
        for d, gd in g.groupby("digits"):
            row[f"digit_acc_{d}d_mean"] = gd["digit_accuracy"].mean()
        row["n_problems"] = "/".join(str(int(v)) for v in g.groupby("digits")["n_problems"].first())
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean, std, pct=True) -> str:
    if not np.isfinite(mean):
        return "—"
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    return f(mean) + (f" ± {f(std)}" if np.isfinite(std) else "")


def _display(table: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    for col in ("config", "position", "answer order", "loss mask"):
        out[col] = table[col]
    out["val loss"] = [
        _pm(m, s, pct=False)
        for m, s in zip(table["val_loss_mean"], table["val_loss_std"], strict=True)
    ]
    for d in TEST_DIGITS:
        mark = "" if d in TRAIN_DIGITS else "*"
        out[f"exact {d}d{mark} %"] = [
            _pm(m, s)
            for m, s in zip(table[f"exact_{d}d_mean"], table[f"exact_{d}d_std"], strict=True)
        ]
    for d in TEST_DIGITS:
        if d not in TRAIN_DIGITS:
            out[f"digits {d}d* %"] = [_pm(m, np.nan) for m in table[f"digit_acc_{d}d_mean"]]
    return out


def findings(table: pd.DataFrame, long: pd.DataFrame) -> str:
    """Plain-language reading of the numbers (whatever they turn out to be)."""
    t = table.set_index("config")
    in_dist = [f"exact_{d}d_mean" for d in TRAIN_DIGITS]
    longer = [f"exact_{d}d_mean" for d in TEST_DIGITS if d not in TRAIN_DIGITS]
    t["in_dist"] = t[in_dist].mean(axis=1)
    t["longer"] = t[longer].mean(axis=1) if longer else np.nan
    if "reference" not in t.index:
        return ""
    ref = t.loc["reference"]
    lines = []

    def cmp(label, what):
        if label not in t.index:
            return
        r = t.loc[label]
        lines.append(
            f"- {what}: exact match on 1-{TRAIN_DIGITS[-1]} digits "
            f"{100 * r['in_dist']:.1f}% vs {100 * ref['in_dist']:.1f}% for the reference; "
            f"{TRAIN_DIGITS[-1]} digits alone {100 * r[f'exact_{TRAIN_DIGITS[-1]}d_mean']:.1f}%"
            f" vs {100 * ref[f'exact_{TRAIN_DIGITS[-1]}d_mean']:.1f}%."
        )

    lines.append(
        f"- Reference: {100 * ref['in_dist']:.1f}% exact match on trained lengths "
        f"(mean of 1-{TRAIN_DIGITS[-1]} digits), {100 * ref['longer']:.1f}% on longer ones."
    )
    cmp("normal order", "Answer in normal order (most significant digit first)")
    cmp("no prompt mask", "Loss on every token (prompt not masked)")
    cmp("rope", "RoPE")
    cmp("no position", "No position information")
    per_seed = long[long["digits"] == TRAIN_DIGITS[-1]].groupby("config", sort=False)
    lines.append(
        f"- Per seed, {TRAIN_DIGITS[-1]}-digit exact match (%): "
        + "; ".join(
            f"{c} " + "/".join(f"{100 * v:.0f}" for v in g.sort_values("seed")["exact_match"])
            for c, g in per_seed
        )
        + "."
    )
    split = [c for c, g in per_seed if g["exact_match"].max() - g["exact_match"].min() > 0.5]
    if split:
        lines.append(
            f"- {', '.join(split)}: some seeds learned {TRAIN_DIGITS[-1]}-digit addition and "
            "others had not yet, so this budget ends in the middle of their learning "
            "transition: they learn more slowly than the reference, which does not show they "
            "cannot learn it."
        )
    best = t["longer"].idxmax()
    lines.append(
        f"- Longer than trained ({', '.join(str(d) for d in TEST_DIGITS if d not in TRAIN_DIGITS)}"
        f" digits): exact match at most {100 * t.loc[best, 'longer']:.2f}% ({best}); digit "
        "accuracy there: "
        + ", ".join(
            f"{c} {100 * t.loc[c, [f'digit_acc_{d}d_mean' for d in TEST_DIGITS if d not in TRAIN_DIGITS]].mean():.0f}%"  # noqa: E501
            for c in t.index
        )
        + " (chance per digit is 10%)."
    )
    return "\n".join(lines)


def figure(long, curves, path: Path, context: str, configs=CONFIGS) -> Path:
    order = [c[0] for c in configs if c[0] in set(long["config"])]
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(14, 4.6))
        axes = fig.subplots(1, 3)
        for ax, col, ylabel in (
            (axes[0], "exact_match", "exact match (all answer tokens)"),
            (axes[1], "digit_accuracy", "digit accuracy (per answer digit)"),
        ):
            sns.lineplot(
                data=long, x="digits", y=col, hue="config", hue_order=order, style="config",
                style_order=order, markers=True, dashes=False, errorbar=("pi", 100), ax=ax,
                legend=ax is axes[0],
            )  # fmt: skip
            ax.axvspan(TRAIN_DIGITS[-1] + 0.5, TEST_DIGITS[-1] + 0.3, color="0.9", zorder=0)
            ax.text(
                (TRAIN_DIGITS[-1] + 0.5 + TEST_DIGITS[-1]) / 2 + 0.1, 1.02, "longer than trained",
                ha="center", va="bottom", fontsize=8, color="0.3",
            )  # fmt: skip
            ax.set_xticks(list(TEST_DIGITS))
            ax.set_ylim(-0.03, 1.08)
            ax.set_xlabel("digits per operand")
            ax.set_ylabel(ylabel)
        axes[0].legend(fontsize=8, title=None, loc="lower left")
        ax = axes[2]
        if not curves.empty:
            c = curves.dropna(subset=["val_loss"])
            sns.lineplot(
                data=c, x="step", y="val_loss", hue="config", hue_order=order, errorbar=("pi", 100),
                ax=ax, legend=False,
            )  # fmt: skip
            ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("validation loss (answer tokens, 1-3 digits)")
        fig.suptitle(f"Addition: held-out accuracy by number of digits\n{context}", fontsize=11)
        caption = (
            "Line: mean over seeds; band: range over seeds (min to max). Trained on 1-3 digit "
            "problems; shaded: longer than any training row (learned positions have no trained "
            "embedding there)."
        )
        return save_figure(fig, path, caption, bottom=0.04)


STUDY = AdditionStudy()
