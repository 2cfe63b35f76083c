"""Tests for bench.tasks: addition format/masking/held-out/accuracy, text loading, shakespeare
download and caching (with a patched fetch: no network), and the registry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import socket

import pytest
import torch
from torch import nn

from bench.tasks import (
    IGNORE_INDEX,
    TASKS,
    Task,
    TaskError,
    build_task,
    datafiles,
    task_names,
    task_options,
)
from bench.tasks import text as text_mod
from bench.tasks.addition import AdditionTask, answer_decode, format_problem


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fresh_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, ()).item())


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------
# addition
# ---------------------------------------------------------------------------------------------


def parse_row(task: AdditionTask, x: torch.Tensor, y: torch.Tensor) -> tuple[str, int, int]:
    """Full problem string of a row (x plus the last target), and its operands a, b."""
    full = task.decode(x) + task.decode(y[-1:])
    n = task.n_digits
    assert full[n] == "+" and full[2 * n + 1] == "=" and full[-1] == "$"
    return full, int(full[:n]), int(full[n + 1 : 2 * n + 1])


@pytest.mark.parametrize("n_digits", [1, 3, 5])
def test_addition_format_and_mask(n_digits):
    task = build_task("addition", context=64, n_digits=n_digits)
    n = n_digits
    assert task.seq_len == 3 * n + 3
    assert task.vocab_size == 13 and task.has_accuracy
    x, y = task.train_batch(64, gen(fresh_seed()))
    assert x.shape == y.shape == (64, task.seq_len)
    assert x.dtype == y.dtype == torch.int64
    prompt_len = 2 * n + 2
    for xi, yi in zip(x, y, strict=True):
        full, a, b = parse_row(task, xi, yi)
        assert full == format_problem(a, b, n, reverse=True)
        # y[t] targets full[t+1]: ignored exactly where full[t+1] is in the prompt "a+b="
        for t in range(task.seq_len):
            if t + 1 < prompt_len:
                assert yi[t] == IGNORE_INDEX
            else:
                assert yi[t] == task.encode(full[t + 1])[0]
        # the reversed answer decodes back to a + b
        answer = full[prompt_len:]
        assert len(answer) == n + 2
        assert answer_decode(answer) == a + b
        assert task.answer_decode(answer) == a + b
        assert answer[: n + 1][::-1] == f"{a + b:0{n + 1}d}"


def test_addition_format_example():
    assert format_problem(12, 345, 3) == "012+345=7530$"
    assert format_problem(12, 345, 3, reverse=False) == "012+345=0357$"
    assert format_problem(999, 999, 3) == "999+999=8991$"
    assert answer_decode("7530$") == 357
    assert answer_decode("0357$", reverse=False) == 357
    assert answer_decode("7530$junk") == 357
    assert answer_decode("75x0$") is None and answer_decode("$") is None


def test_addition_reverse_false_and_unmasked():
    n = 3
    plain = build_task("addition", context=32, reverse=False, mask_prompt="false")
    assert not plain.reverse and not plain.mask_prompt
    x, y = plain.train_batch(32, gen(fresh_seed()))
    assert (y != IGNORE_INDEX).all()  # every position is a target
    assert torch.equal(x[:, 1:], y[:, :-1])
    for xi, yi in zip(x, y, strict=True):
        full, a, b = parse_row(plain, xi, yi)
        assert full[2 * n + 2 : -1] == f"{a + b:0{n + 1}d}"  # most significant digit first
        assert plain.answer_decode(full[2 * n + 2 :]) == a + b
    # same problems for the same seed; only the answer order changes
    rev = build_task("addition", context=32)
    xr, yr = rev.train_batch(32, gen(7))
    xp, yp = plain.train_batch(32, gen(7))
    assert torch.equal(xr[:, : 2 * n + 2], xp[:, : 2 * n + 2])
    assert torch.equal(yr[:, -1], yp[:, -1])  # '$'
    assert torch.equal(yr[:, 2 * n + 1 : -1].flip(1), yp[:, 2 * n + 1 : -1])
    # validation loss is answer-only either way, so the two settings stay comparable
    vx, vy = plain.val_batches()[0]
    assert (vy[:, : 2 * n + 1] == IGNORE_INDEX).all() and (vy[:, 2 * n + 1 :] >= 0).all()


def test_addition_heldout_disjoint_from_training():
    task = build_task("addition", context=16, n_digits=2)  # 1000 of 10^4 problems held out
    base = 10**task.n_digits
    ha, hb = task.heldout_problems()
    assert len(set((ha * base + hb).tolist())) == task.n_heldout == 1000
    held = torch.sort(ha * base + hb).values
    g = gen(fresh_seed())
    for _ in range(200):
        x, _ = task.train_batch(256, g)
        a = x[:, :2] @ torch.tensor([10, 1])
        b = x[:, 3:5] @ torch.tensor([10, 1])
        assert not torch.isin(a * base + b, held).any()


def test_addition_heldout_capped_for_one_digit():
    task = build_task("addition", context=8, n_digits=1)
    assert task.n_heldout == 10  # 10% of the 100 problems
    x, _ = task.train_batch(512, gen(0))
    ha, hb = task.heldout_problems()
    held = set((ha * 10 + hb).tolist())
    assert not held & set((x[:, 0] * 10 + x[:, 2]).tolist())


def test_addition_determinism():
    task = build_task("addition", context=16)
    s = fresh_seed()
    x1, y1 = task.train_batch(128, gen(s))
    x2, y2 = task.train_batch(128, gen(s))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # another instance gives the same batches from the same seed
    x3, _ = build_task("addition", context=16).train_batch(128, gen(s))
    assert torch.equal(x1, x3)
    x4, _ = task.train_batch(128, gen(s + 1))
    assert not torch.equal(x1, x4)


def test_addition_val_batches_fixed():
    task = build_task("addition", context=16, eval_batches=3, eval_batch_size=20)
    v1, v2 = task.val_batches(), task.val_batches()
    assert len(v1) == 3 and all(x.shape == (20, task.seq_len) for x, _ in v1)
    other = build_task("addition", context=16, eval_batches=3, eval_batch_size=20)
    for (x1, y1), (x2, y2), (x3, y3) in zip(v1, v2, other.val_batches(), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1, x3) and torch.equal(y1, y3)
    # the run's generator plays no part in them
    task.train_batch(64, gen(fresh_seed()))
    assert torch.equal(task.val_batches()[0][0], v1[0][0])
    # validation rows are held-out problems
    ha, hb = task.heldout_problems()
    x, y = v1[0]
    full, a, b = parse_row(task, x[0], y[0])
    assert (a, b) == (int(ha[0]), int(hb[0]))


class OracleModel(nn.Module):
    """Puts all mass on the right next token, computed from the prompt it reads: a + b."""

    def __init__(self, n_digits: int, reverse: bool, vocab_size: int = 13):
        super().__init__()
        self.n, self.reverse, self.V = n_digits, reverse, vocab_size
        self.calls = 0

    def forward(self, idx):
        assert not self.training and not torch.is_grad_enabled()
        self.calls += 1
        B, T = idx.shape
        n = self.n
        place = 10 ** torch.arange(n - 1, -1, -1)
        a = idx[:, :n] @ place
        b = idx[:, n + 1 : 2 * n + 1] @ place
        logits = torch.zeros(B, T, self.V)
        for i in range(B):
            c = f"{int(a[i] + b[i]):0{n + 1}d}"
            answer = (c[::-1] if self.reverse else c) + "$"
            nxt = "0123456789+=$".index(answer[T - (2 * n + 2)])
            logits[i, -1, nxt] = 1.0
        return logits, None


class ConstantModel(nn.Module):
    def forward(self, idx):
        logits = torch.zeros(*idx.shape, 13)
        logits[..., 0] = 1.0  # always '0', never '$'
        return logits, None


@pytest.mark.parametrize("reverse", [True, False])
def test_addition_accuracy(reverse):
    task = build_task("addition", context=16, reverse=reverse)
    oracle = OracleModel(3, reverse)
    oracle.train()
    assert task.accuracy(oracle, "cpu", max_problems=300) == 1.0
    assert oracle.training  # mode restored
    assert oracle.calls == 2 * (3 + 2)  # 300 problems in 2 batches, n+2 greedy steps each
    assert task.accuracy(ConstantModel(), "cpu", max_problems=300) == 0.0
    # the oracle of the other order gets (almost) nothing right
    assert task.accuracy(OracleModel(3, not reverse), "cpu", max_problems=300) < 0.1


def test_addition_accuracy_all_heldout():
    task = build_task("addition", context=8, n_digits=1)
    assert task.accuracy(OracleModel(1, True), torch.device("cpu")) == 1.0


def test_addition_context_too_short_and_bad_options():
    with pytest.raises(TaskError) as e:
        build_task("addition", context=11)  # needs 12 for n_digits=3
    assert "12" in one_line_error(e)
    assert build_task("addition", context=12).seq_len == 12
    with pytest.raises(TaskError) as e:
        build_task("addition", context=64, n_digits=0)
    one_line_error(e)
    with pytest.raises(TaskError) as e:
        build_task("addition", context=64, reverse="maybe")
    one_line_error(e)
    with pytest.raises(TaskError) as e:
        build_task("addition", context=64, digits=3)
    assert "n_digits" in one_line_error(e)
    with pytest.raises(TaskError):
        build_task("addition", context=64, data="x.txt")
    assert build_task("addition", context=64, n_digits="4").n_digits == 4


def test_addition_describe_is_json():
    d = build_task("addition", context=16).describe()
    assert json.loads(json.dumps(d)) == d
    assert d["n_digits"] == 3 and d["example"] == "012+345=7530$"


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------

SAMPLE = "".join(f"Line {i}: the quick brown fox — naïve café {i * 7 % 13}!\n" for i in range(60))


def write(tmp_path, content: str | bytes, name: str = "data.txt"):
    p = tmp_path / name
    if isinstance(content, str):
        p.write_text(content, encoding="utf-8")
    else:
        p.write_bytes(content)
    return p


def test_text_vocab_split_and_windows(tmp_path):
    path = write(tmp_path, SAMPLE)
    task = build_task("text", context=16, data=str(path), eval_batches=2, eval_batch_size=5)
    assert not task.has_accuracy and task.accuracy(None, "cpu") is None
    chars = sorted(set(SAMPLE))
    assert task.vocab_size == len(chars)
    assert task.decode(range(task.vocab_size)) == "".join(chars)
    assert task.tokens.dtype.itemsize == 1  # < 256 distinct characters
    assert task.decode(task.encode("naïve — fox")) == "naïve — fox"
    n = len(SAMPLE)
    assert task.n_train == (9 * n) // 10 and task.n_train + task.n_val == n
    train_text, val_text = SAMPLE[: task.n_train], SAMPLE[task.n_train :]
    assert task.decode(task.tokens[: task.n_train].tolist()) == train_text

    assert task.seq_len == 16
    x, y = task.train_batch(32, gen(fresh_seed()))
    assert x.shape == y.shape == (32, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    for xi, yi in zip(x, y, strict=True):
        assert task.decode(xi) + task.decode(yi[-1:]) in train_text

    val = task.val_batches()
    assert len(val) == 2
    for vx, vy in val:
        assert vx.shape == (5, 16) and torch.equal(vx[:, 1:], vy[:, :-1])
        for xi, yi in zip(vx, vy, strict=True):
            assert task.decode(xi) + task.decode(yi[-1:]) in val_text
    again = build_task("text", context=16, data=path, eval_batches=2, eval_batch_size=5)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(val, again.val_batches(), strict=True)
    )
    s = fresh_seed()
    assert torch.equal(task.train_batch(8, gen(s))[0], again.train_batch(8, gen(s))[0])
    d = task.describe()
    assert json.loads(json.dumps(d)) == d
    assert d["sha256"] == hashlib.sha256(SAMPLE.encode()).hexdigest()


def test_text_chunked_reading(tmp_path, monkeypatch):
    # tiny read chunks split multi-byte characters across reads; a fresh cache, so it reads
    monkeypatch.setenv("TRANSFORMER_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datafiles, "_READ_CHUNK", 7)
    path = write(tmp_path, SAMPLE)
    task = build_task("text", context=8, data=path)
    assert task.decode(task.tokens.tolist()) == SAMPLE


def test_text_wide_vocab(tmp_path):
    content = "".join(chr(0x4E00 + i) for i in range(400)) * 3
    task = build_task("text", context=8, data=write(tmp_path, content))
    assert task.vocab_size == 400 and task.tokens.dtype.itemsize == 2
    assert task.decode(task.tokens.tolist()) == content


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "does not exist"),
        ("", "empty"),
        (b"abc\xff\xfedef" * 50, "UTF-8"),
        ("x" * 100, "too short"),  # val split 10 chars < context + 1
    ],
)
def test_text_errors(tmp_path, content, words):
    path = tmp_path / "missing.txt" if content is None else write(tmp_path, content)
    with pytest.raises(TaskError) as e:
        build_task("text", context=16, data=str(path))
    assert words in one_line_error(e)


def test_text_needs_data():
    with pytest.raises(TaskError) as e:
        build_task("text", context=16)
    assert "--data" in one_line_error(e)


# ---------------------------------------------------------------------------------------------
# shakespeare: ships with the package, unpacked into the cache, no network
# ---------------------------------------------------------------------------------------------

FAKE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 20).encode()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TRANSFORMER_BENCH_CACHE", str(d))
    return d


def test_shipped_shakespeare_loads_offline_with_its_hash(cache, monkeypatch):
    """The real corpus from the package: unpacked once, hash-checked, no socket opened."""

    def no_network(*args, **kwargs):
        raise AssertionError("the shakespeare task must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    task = build_task("shakespeare", context=64)
    cached = cache / text_mod.SHAKESPEARE_FILENAME
    assert task.describe()["source"] == "package"
    assert task.describe()["sha256"] == text_mod.SHAKESPEARE_SHA256
    assert cached.stat().st_size == text_mod.SHAKESPEARE_BYTES == task.tokens.size
    assert task.vocab_size == 65 and task.decode(task.tokens[:14]) == "First Citizen:"
    # the corpus and its ids (bench.tasks.tokens), no temp files left
    assert sorted(p.name for p in cache.iterdir()) == [cached.name, "tokens"]
    assert not [p for p in (cache / "tokens").iterdir() if p.name.startswith(".")]

    again = build_task("shakespeare", context=32)
    assert again.describe()["source"] == "cache"
    x, y = again.train_batch(4, gen(fresh_seed()))
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])

    cached.write_bytes(b"garbage")  # a damaged cache is unpacked again from the package
    assert build_task("shakespeare", context=32).describe()["source"] == "package"
    assert text_mod._sha256_file(cached) == text_mod.SHAKESPEARE_SHA256


def test_damaged_shipped_copy_is_one_line(cache, tmp_path, monkeypatch):
    broken = tmp_path / "broken.xz"
    broken.write_bytes(lzma.compress(FAKE))  # valid xz, wrong text
    monkeypatch.setattr(text_mod, "SHIPPED_SHAKESPEARE", broken)
    with pytest.raises(TaskError) as e:
        build_task("shakespeare", context=32)
    msg = one_line_error(e)
    assert hashlib.sha256(FAKE).hexdigest() in msg and "--data PATH" in msg
    broken.write_bytes(b"not xz at all")
    with pytest.raises(TaskError) as e:
        build_task("shakespeare", context=32)
    assert "cannot be read" in one_line_error(e)


def test_unwritable_cache_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("TRANSFORMER_BENCH_CACHE", str(blocker / "sub"))
    with pytest.raises(TaskError) as e:
        build_task("shakespeare", context=32)
    assert "TRANSFORMER_BENCH_CACHE" in one_line_error(e)


def test_shakespeare_local_copy(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(text_mod, "SHAKESPEARE_SHA256", hashlib.sha256(FAKE).hexdigest())
    good = write(tmp_path, FAKE, "input.txt")
    task = build_task("shakespeare", context=32, data=str(good))
    assert task.describe()["source"] == "data"
    assert not (cache / text_mod.SHAKESPEARE_FILENAME).exists()  # data= never unpacks it
    bad = write(tmp_path, FAKE[:-1], "other.txt")
    with pytest.raises(TaskError) as e:
        build_task("shakespeare", context=32, data=str(bad))
    msg = one_line_error(e)
    assert hashlib.sha256(FAKE[:-1]).hexdigest() in msg and "--task text" in msg


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFORMER_BENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert text_mod.cache_dir() == tmp_path / ".cache" / "transformer-bench"


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


def test_registry():
    # the built-ins first, in the order --list has always shown them
    assert task_names()[:5] == ["addition", "text", "shakespeare", "calculator", "corpus"]
    for name, cls in TASKS.items():
        desc = TASKS.description(name)
        assert issubclass(cls, Task) and cls.name == name and desc and "\n" not in desc
        assert desc == cls.description  # written once, on the class
        cls.Options()  # every option has a default, so `--task NAME` alone is a valid run
    assert dataclasses.asdict(task_options("addition")) == {
        "n_digits": 3,
        "reverse": True,
        "mask_prompt": True,
        "n_heldout": 1000,
        "min_digits": None,
        "eval_digits": None,
        "eval_problems": None,
    }
    assert dataclasses.asdict(task_options("text")) == {
        "tokenizer": "char",
        "data_field": "text",
        "data_sha256": None,
        "tokenizer_sha256": None,
    }
    assert task_options("calculator").lengths == (1, 2, 3)


def test_a_task_registers_itself_with_a_decorator():
    """One class with `@register_task`, its name written once, is a task everywhere."""
    from bench.tasks import register_task
    from bench.tasks.base import CharVocab

    class Ones(Task):
        name = "ones-test"
        description = "every token is 1 (test only)"

        def _build(self, data):
            self.vocab, self.vocab_size, self.seq_len = CharVocab("01"), 2, self.context

        def train_batch(self, batch_size, generator):
            ones = torch.ones(batch_size, self.seq_len, dtype=torch.long)
            return ones, ones

        def _build_val_batches(self):
            return [self.train_batch(self.eval_batch_size, None)]

        def describe(self):
            return {"task": self.name}

    assert register_task(Ones) is Ones
    try:
        assert (
            task_names()[-1] == "ones-test" and TASKS.description("ones-test") == Ones.description
        )
        assert build_task("ones-test", context=8).train_batch(3, gen(0))[0].shape == (3, 8)
    finally:
        TASKS.remove("ones-test")
    with pytest.raises(TaskError) as e:
        build_task("ones-test", context=8)
    assert "valid tasks: addition" in one_line_error(e)

    class Nameless(Ones):
        name, description = "nameless-test", ""

    with pytest.raises(TaskError, match="one-line `description`"):
        register_task(Nameless)
    assert "nameless-test" not in TASKS


# ---------------------------------------------------------------------------------------------
# typed options: parsed once, in the base, from command-line strings or typed values


@pytest.mark.parametrize(
    "name, given, attr, value",
    [
        ("addition", {"n_digits": "4"}, "n_digits", 4),  # --task-option n_digits=4
        ("addition", {"n_digits": 4.0}, "n_digits", 4),  # a TOML float that is whole
        ("addition", {"reverse": "false"}, "reverse", False),
        ("addition", {"mask_prompt": 0}, "mask_prompt", False),
        ("addition", {"min_digits": "1"}, "min_digits", 1),
        ("calculator", {"lengths": "1-2"}, "lengths", (1, 2)),
        ("calculator", {"lengths": [2, 1]}, "lengths", (1, 2)),
        ("calculator", {"ops": "*+"}, "ops", "+*"),
        ("calculator", {"trace": "yes"}, "trace", True),
        ("calculator", {"eval_problems": "40"}, "eval_problems", 40),
    ],
)
def test_options_are_parsed_once_into_their_types(name, given, attr, value):
    task = build_task(name, context=64, **given)
    opts = task.options
    assert type(opts) is TASKS[name].Options and getattr(opts, attr) == value
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.n_heldout = 3  # frozen: what a task was built with never changes
    # left-out options keep their defaults
    defaults = dataclasses.asdict(task_options(name))
    assert {k: v for k, v in dataclasses.asdict(opts).items() if k != attr} == {
        k: v for k, v in defaults.items() if k != attr
    }


@pytest.mark.parametrize(
    "name, given, words",
    [
        ("addition", {"n_digits": "three"}, ["n_digits", "integer", "three"]),
        ("addition", {"n_digits": 10}, ["n_digits", "[1, 9]"]),
        ("addition", {"n_digits": True}, ["n_digits", "integer"]),
        ("addition", {"n_digits": 2.5}, ["n_digits", "integer"]),
        ("addition", {"reverse": "maybe"}, ["reverse", "true or false"]),
        ("addition", {"eval_problems": 0}, ["eval_problems", "[1, inf]"]),
        ("addition", {"n_digits": 3, "min_digits": 4}, ["min_digits <= n_digits"]),
        ("addition", {"n_digits": 3, "eval_digits": 2}, ["n_digits <= eval_digits"]),
        ("addition", {"eval_digits": 9}, ["30 tokens", "context is 16"]),
        ("addition", {"digits": 3}, ["no option digits", "n_digits, reverse"]),
        ("calculator", {"lengths": "0-3"}, ["lengths", "[1, 9]"]),
        ("calculator", {"ops": "+%"}, ["ops", "+-*/"]),
        ("calculator", {"divisor_digits": "x"}, ["divisor_digits", "integer"]),
        ("text", {"n_digits": 3}, ["no option n_digits", "tokenizer, data_field"]),
    ],
)
def test_bad_options_are_one_line(name, given, words):
    with pytest.raises(TaskError) as e:
        build_task(name, context=16 if name == "addition" else 64, data=None, **given)
    msg = one_line_error(e)
    assert all(w in msg for w in words), msg


def test_unknown_task():
    with pytest.raises(TaskError) as e:
        build_task("multiplication", context=16)
    msg = one_line_error(e)
    assert "multiplication" in msg
    assert all(name in msg for name in task_names())
