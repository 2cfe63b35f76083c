"""The capability probe tasks (mqar, selective-copy, induction): every row's answers are the
capability's exact answers, scored where they should be, on fixed held-out rows, at the trained
length and 2x and 4x it (learned positions: n/a, no crash); what a run records of them."""

from __future__ import annotations

import math

import pytest
import torch

from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.core.train import run
from bench.tasks import IGNORE_INDEX, TaskError, build_task
from bench.tasks.synthetic import LENGTH_FACTORS, NOT_READ
from variants import build_model, preset

PROBES = ("mqar", "selective-copy", "induction")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scored(y: torch.Tensor) -> torch.Tensor:
    return y != IGNORE_INDEX


# ---------------------------------------------------------------------------------------------
# the rows: the right answers at the right places


@pytest.mark.parametrize("factor", [1, 2])
def test_mqar_rows_ask_every_key_once_and_answer_with_its_value(factor):
    task = build_task("mqar", context=64, n_pairs=8, seq_len=64, max_gap=12)
    x, y = task.rows(16, factor, gen(0))
    D, T, V = 8 * factor, 64 * factor, 256
    assert x.shape == y.shape == (16, T)
    for xr, yr in zip(x.tolist(), y.tolist(), strict=True):
        keys, values = xr[0 : 2 * D : 2], xr[1 : 2 * D : 2]
        assert len(set(keys)) == D and all(0 < k < V // 2 for k in keys)  # 0: the filler
        assert len(set(values)) == D and all(V // 2 <= v < V for v in values)
        asked = [t for t in range(T) if yr[t] != IGNORE_INDEX]
        assert sorted(xr[t] for t in asked) == sorted(keys)  # every key once
        for t in asked:
            assert yr[t] == values[keys.index(xr[t])]  # the value of the key asked
            slot = (t - 2 * D) // 2
            assert t % 2 == 0 and 0 <= slot < 12 * factor  # an even offset, within max_gap
    assert task.max_distance() == 2 * 8 + 2 * (12 - 1)


def test_mqar_queries_come_soon_after_the_pairs_more_often_than_late():
    """zoology's power law over the query slots: early slots are drawn far more often."""
    task = build_task("mqar", context=64, n_pairs=8, seq_len=64)
    x, y = task.rows(2000, 1, gen(1))
    slots = (scored(y).nonzero()[:, 1] - 16) // 2
    counts = torch.bincount(slots, minlength=24)
    assert counts[:4].sum() > 2 * counts[-4:].sum() and counts[-1] > 0


def test_selective_copy_targets_are_the_data_tokens_in_order():
    task = build_task("selective-copy", context=64, n_tokens=8, seq_len=64)
    x, y = task.rows(32, 2, gen(2))
    assert x.shape == (32, 128)
    for xr, yr in zip(x.tolist(), y.tolist(), strict=True):
        region = xr[: 2 * task.region]
        data = [t for t in region if t != task.noise]
        assert len(data) == 16 and xr[2 * task.region] == task.sep
        assert [t for t in yr if t != IGNORE_INDEX] == data  # SEP predicts the first, and on


def test_induction_scores_the_second_occurrence_after_its_first_token():
    task = build_task("induction", context=64, seq_len=64, vocab_size=256)
    x, y = task.rows(64, 1, gen(3))
    lengths = set()
    for xr, yr in zip(x.tolist(), y.tolist(), strict=True):
        at = [t for t in range(64) if yr[t] != IGNORE_INDEX]
        ell = len(at) + 1
        lengths.add(ell)
        assert 16 <= ell <= 32 and at == list(range(64 - ell + 1, 64))  # a suffix of the row
        first, second = xr[64 - 2 * ell + 1 : 64 - ell + 1], xr[64 - ell + 1 :] + [yr[-1]]
        assert first == second and len(set(first)) == ell  # s, distinct, repeated
        for t in at:  # the target follows the current token's earlier occurrence
            assert yr[t] == first[first.index(xr[t]) + 1]
    assert len(lengths) > 5  # the repeat length varies: no fixed offset solves it


@pytest.mark.parametrize("name", PROBES)
def test_held_out_rows_are_fixed_and_the_val_batches(name):
    a, b = build_task(name, context=64), build_task(name, context=64)
    xa, ya = a.heldout(1)
    assert torch.equal(xa, b.heldout(1)[0]) and torch.equal(ya, b.heldout(1)[1])
    assert torch.equal(torch.cat([v[0] for v in a.val_batches()]), xa)
    assert torch.equal(torch.cat([v[1] for v in a.val_batches()]), ya)
    x4, y4 = a.heldout(4)
    assert x4.shape == (len(xa) // 4, 4 * a.seq_len)
    assert int(scored(y4).sum()) == pytest.approx(int(scored(ya).sum()), rel=0.25)  # about as many
    # a training batch is another draw, from the run's generator
    assert not torch.equal(a.train_batch(len(xa), gen(0))[0], xa)


@pytest.mark.parametrize(
    "name, answers", [("mqar", 128), ("selective-copy", 30), ("induction", 32)]
)
def test_no_position_tells_the_answer(name, answers):
    """The learning guard's floor (a per-position frequency table, add-one smoothed) is no
    better than a uniform guess among the possible answers, and no worse than one among every
    token: only the row itself tells the answer."""
    task = build_task(name, context=64)
    assert math.log(answers) - 0.05 < task.frequency_loss() < math.log(task.vocab_size)


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("mqar", {"n_pairs": 40}, ["4x rows' distinct keys", "160", "127"]),
        ("mqar", {"n_pairs": 30, "vocab_size": 1024}, ["query slot per key", "raise seq_len"]),
        ("mqar", {"max_gap": 30}, ["max_gap", "between n_pairs (2)", "14 query slots"]),
        ("mqar", {"random_non_queries": "sometimes"}, ["random_non_queries", "true or false"]),
        ("mqar", {"power_a": 0}, ["power_a", "(0, 1]"]),
        ("mqar", {"seq_len": 128}, ["128 tokens", "context is 64"]),
        ("selective-copy", {"n_tokens": 64}, ["n_tokens", "raise seq_len"]),
        ("induction", {"seq_len": 63}, ["even"]),
        ("induction", {"vocab_size": 20}, ["4x rows' distinct tokens", "32", "19"]),
    ],
)
def test_bad_options_are_one_line(name, options, words):
    with pytest.raises(TaskError) as e:
        build_task(name, context=64, **options)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


# ---------------------------------------------------------------------------------------------
# scoring: accuracy at the scored positions, every length, n/a past learned positions


class Oracle(torch.nn.Module):
    """Knows the held-out answers of one task (by row): logits one-hot on the target, or on
    the token after it (`wrong`)."""

    def __init__(self, task, vocab, wrong=False, max_len=None):
        super().__init__()
        self.answers = {}
        for f in LENGTH_FACTORS:
            for xr, yr in zip(*task.heldout(f), strict=True):
                self.answers[tuple(xr.tolist())] = yr
        self.vocab, self.wrong, self.max_len = vocab, wrong, max_len

    def forward(self, x):
        y = torch.stack([self.answers[tuple(r.tolist())] for r in x])
        y = torch.where(y == IGNORE_INDEX, 0, (y + int(self.wrong)) % self.vocab)
        return torch.nn.functional.one_hot(y, self.vocab).float() * 20, None


@pytest.mark.parametrize("name", PROBES)
def test_accuracy_counts_the_scored_positions_only(name):
    task = build_task(name, context=64, eval_batches=2, eval_batch_size=16)
    right = task.evaluate(Oracle(task, task.vocab_size), "cpu")
    assert right["capability"] == task.capability
    assert [right["by_length"][str(f)]["accuracy"] for f in LENGTH_FACTORS] == [1.0, 1.0, 1.0]
    assert right["by_length"]["1"]["loss"] < 1e-6
    assert right["by_length"]["1"]["n"] == int(scored(task.heldout(1)[1]).sum())
    wrong = task.score(Oracle(task, task.vocab_size, wrong=True), "cpu", 2)
    assert wrong["accuracy"] == 0.0 and wrong["length"] == 2 * task.seq_len


def test_learned_positions_read_n_a_past_their_table_and_others_read_on():
    task = build_task("mqar", context=32, eval_batches=2, eval_batch_size=16)
    cfg = preset("tiny", n_layer=1, n_embd=32, block_size=32, vocab_size=task.vocab_size)
    learned = task.evaluate(build_model("baseline", cfg), "cpu")["by_length"]
    assert learned["1"]["accuracy"] is not None
    assert learned["2"] == {"length": 64, "accuracy": None, "loss": None, "why": NOT_READ}
    rope = task.evaluate(build_model("rope", cfg), "cpu")["by_length"]
    assert all(0 <= rope[str(f)]["accuracy"] <= 1 for f in LENGTH_FACTORS)


def test_a_run_records_accuracy_by_length():
    """Through the harness: the record's accuracy is the trained length's, and its evals keep
    every length (None past the learned table)."""
    task = build_task("induction", context=32, seq_len=32, vocab_size=129, eval_batches=1)
    cfg = preset("micro", vocab_size=task.vocab_size)
    train = TrainConfig(batch_size=8, eval_every=5, eval_batches=1, eval_batch_size=32)
    spec = RunSpec("baseline", cfg, {"name": "induction", "data": None, "seq_len": 32,
                                     "vocab_size": 129}, Budget("steps", 5), train)  # fmt: skip
    rec = run(spec, task=task)
    lengths = rec.evals["by_length"]
    assert rec.metrics["accuracy"] == lengths["1"]["accuracy"]
    assert [lengths[k]["length"] for k in ("1", "2", "4")] == [32, 64, 128]
    assert lengths["4"]["accuracy"] is None and rec.task_info["capability"].startswith("induct")
