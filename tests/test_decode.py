"""The one greedy decoder (bench.tasks.decode) and the evaluations built on it: a hand-checked
case, and the tasks' numbers pinned to what the four decoders it replaced gave (captured from
the code before the change, on the same seeded model and data)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from test_studies_calc import Oracle

from bench.tasks import build_task
from bench.tasks.addition import AdditionTask, format_problem
from bench.tasks.decode import greedy_decode
from variants.config import preset
from variants.model import GPT


class _NextPlusOne(torch.nn.Module):
    """Logits that are a fixed function of the last token: token t is followed by t + 1 (mod
    V); records the length of every input it is given."""

    def __init__(self, vocab: int = 10, max_len: int | None = None):
        super().__init__()
        self.vocab, self.max_len, self.seen = vocab, max_len, []

    def forward(self, idx):
        self.seen.append(idx.shape[1])
        return torch.nn.functional.one_hot((idx + 1) % self.vocab, self.vocab).float(), None


def test_greedy_decode_by_hand():
    prompts = torch.tensor([[0, 1, 2], [5, 6, 7]])
    gen = greedy_decode(_NextPlusOne(), prompts, max_new=4)
    assert gen.tolist() == [[3, 4, 5, 6], [8, 9, 0, 1]]
    assert gen.dtype == prompts.dtype and prompts.tolist() == [[0, 1, 2], [5, 6, 7]]
    # stop: row 0 writes 9 at its 7th token, row 1 at its 2nd; decoding ends when both have
    gen = greedy_decode(_NextPlusOne(), prompts, max_new=20, stop_id=9)
    assert gen.tolist() == [[3, 4, 5, 6, 7, 8, 9], [8, 9, 0, 1, 2, 3, 4]]
    assert greedy_decode(_NextPlusOne(), prompts, max_new=0).shape == (2, 0)


def test_greedy_decode_crops_to_the_models_context_and_restores_its_mode():
    model = _NextPlusOne(max_len=4)
    model.train()
    gen = greedy_decode(model, torch.tensor([[0, 1, 2]]), max_new=4)
    assert gen.tolist() == [[3, 4, 5, 6]]
    assert model.seen == [3, 4, 4, 4]  # never more than max_len tokens
    assert model.training
    with pytest.raises(ValueError, match="max_new"):
        greedy_decode(model, torch.tensor([[0]]), max_new=-1)


def _sha(*tensors) -> str:
    m = hashlib.sha256()
    for t in tensors:
        m.update(t.contiguous().numpy().tobytes())
    return m.hexdigest()[:16]


@pytest.mark.parametrize(
    "reverse, mask, train_sha, val_sha",
    [
        (True, True, "f9cc7101388888fe", "5bf51b6f5c9fbeea"),
        (False, True, "d5f06f03650def25", "a8dad9f6246fe066"),
        (True, False, "d3990cd7149fccec", "5bf51b6f5c9fbeea"),
    ],
)
def test_mixed_widths_are_the_old_study_task_batch_for_batch(reverse, mask, train_sha, val_sha):
    """The addition study's own task (LengthMixAddition, removed) gave these batches; the
    addition task with min_digits=1, eval_digits=5 gives the same, so the study trains as it
    did."""
    task = AdditionTask(context=32, reverse=reverse, mask_prompt=mask, eval_batches=6,
                        eval_batch_size=64, min_digits=1, eval_digits=5)  # fmt: skip
    g = torch.Generator().manual_seed(7)
    batches = [task.train_batch(64, g) for _ in range(3)]
    assert _sha(*[t for b in batches for t in b]) == train_sha
    assert _sha(*[t for b in task.val_batches() for t in b]) == val_sha
    plain = build_task("addition", context=32, eval_batch_size=64)
    g = torch.Generator().manual_seed(7)
    assert _sha(*[t for _ in range(3) for t in plain.train_batch(64, g)]) == "06b0ae0f3c0aad08"
    assert _sha(*[t for b in plain.val_batches() for t in b]) == "5ace8aebbec3f63b"


def test_addition_scores_are_the_old_decoders():
    """A seeded GPT (weights x3, so its argmaxes vary): digit accuracy per width as the
    study's decoder gave it, and exact match as the task's own decoder gave it."""
    torch.manual_seed(0)
    model = GPT(preset("micro", vocab_size=13, block_size=32))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    task = AdditionTask(context=32, min_digits=1, eval_digits=5, eval_batch_size=64)
    old = {1: (0.0, 10), 2: (0.056666666666666664, 200), 3: (0.03125, 200), 4: (0.048, 200),
           5: (0.0425, 200)}  # fmt: skip
    for d, (digit, n) in old.items():
        assert task.score_width(model, "cpu", d, 200) == {"exact": 0.0, "digit": digit, "n": n}
    assert build_task("addition", context=32, n_digits=1).accuracy(model, "cpu") == 0.0


def test_calculator_scores_are_the_old_decoders():
    task = build_task("calculator", context=64, trace=True, n_heldout=30)
    model = Oracle(task, flaky=23)  # wrong where a hash of the row says so
    generated = task.accuracy_breakdown(model, "cpu")
    assert [r["correct"] for r in generated] == [10, 29, 25, 5, 25, 26, 8, 25, 21, 9, 24, 25]
    assert [round(30 * r["trace_correct"]) for r in generated[:3]] == [27, 27, 22]
    given = task.accuracy_breakdown(model, "cpu", trace_given=True)
    assert [r["correct"] for r in given] == [10, 29, 23, 5, 25, 24, 8, 26, 25, 9, 23, 27]
    # the same numbers land in the run's evals, one list per way of scoring
    evals = task.evaluate(model, "cpu")
    assert evals == {"by_cell": {"generated": generated, "given": given}}


def test_a_finished_run_keeps_its_tasks_evaluation_in_its_record():
    from bench.core.spec import Budget, RunSpec, TrainConfig
    from bench.core.train import run

    train = TrainConfig(batch_size=8, lr=1e-3, eval_every=5, eval_batches=1, timing_warmup=1)
    cfg = preset("micro", vocab_size=13, block_size=32)
    task = {"name": "addition", "data": None, "n_digits": 2, "eval_digits": 3,
            "eval_problems": 7}  # fmt: skip
    rec = run(RunSpec("baseline", cfg, task, Budget("steps", 3), train, 0, "cpu"))
    assert list(rec.evals["by_digits"]) == ["2", "3"]
    assert {v["n"] for v in rec.evals["by_digits"].values()} == {7}
    line = list(rec.to_dict())  # written right after the probes
    assert line.index("evals") == line.index("probes") + 1
    cfg = preset("micro", vocab_size=65, block_size=16)
    text = {"name": "shakespeare", "data": None}
    # a text task decodes nothing: its one evaluation is the loss on fixed train-split windows
    # (the overfitting guard's train-val gap)
    evals = run(RunSpec("baseline", cfg, text, Budget("steps", 2), train, 0, "cpu")).evals
    assert list(evals) == ["train_split_loss"] and evals["train_split_loss"] > 0


class AdditionOracle(torch.nn.Module):
    """A fake model that writes each problem's right answer, except on rows where a hash of the
    prompt is divisible by `flaky`: there its first answer digit is off by one."""

    def __init__(self, task: AdditionTask, flaky: int):
        super().__init__()
        self.task, self.flaky = task, flaky

    def forward(self, idx, targets=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.task.vocab_size)
        for i in range(B):
            prompt, _, written = self.task.decode(idx[i]).partition("=")
            a, b = (int(x) for x in prompt.split("+"))
            answer = format_problem(a, b, len(prompt.split("+")[0]), self.task.reverse)
            answer = answer.split("=")[1]  # the digits and '$'
            nxt = answer[len(written)] if len(written) < len(answer) else "$"
            h = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
            if not written and h % self.flaky == 0:
                nxt = str((int(nxt) + 1) % 10)
            logits[i, -1, self.task.vocab.stoi[nxt]] = 1.0
        return logits, None


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("calculator", {"trace": True, "n_heldout": 30}),  # generated trace
        ("calculator", {"trace": True, "mask_trace": True, "n_heldout": 30}),  # given
        ("calculator", {"n_heldout": 30}),  # no trace
        ("addition", {"n_digits": 2, "min_digits": 1, "eval_digits": 3}),
    ],
)
def test_accuracy_read_off_the_evaluation_equals_decoding_again(name, options):
    """A run decodes its held-out set once: the accuracy read off `evaluate`'s result is
    exactly what `accuracy` decodes itself, on a model that gets some answers wrong; a partial
    evaluation (eval_problems) is not used for it."""
    task = build_task(name, context=64, **options)
    model = Oracle(task, flaky=7) if name == "calculator" else AdditionOracle(task, flaky=5)
    want = task.accuracy(model, "cpu")
    assert task.accuracy_from(task.evaluate(model, "cpu")) == want
    assert 0.5 < want < 1  # most right, some wrong: the equality can fail
    partial = build_task(name, context=64, eval_problems=5, **options)
    assert partial.accuracy_from(partial.evaluate(model, "cpu")) is None
