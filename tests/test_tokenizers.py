"""Real tokens, comparable across tokenisers (bench.tasks.tokenizers): BPE learns from the train
split alone, a saved tokenizer.json loads, the tokeniser names the run, bits per byte is
loss x tokens/byte / ln 2, a table that mixes tokenisers gives its verdict in bits per byte,
and the overfitting guard flags a val loss that rose at the end."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ablations.config import SweepConfig
from ablations.plan import build_plan
from bench.analysis import compare
from bench.analysis.display import display_frame, headline_frame
from bench.analysis.summary import format_summary
from bench.core.records import run_id
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.tasks import TaskError, build_task

pytest.importorskip("tokenizers")

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"context": 8, "eval_batches": 2, "eval_batch_size": 4}
TRAIN = "the cat sat on the mat; then the cat ran. " * 120  # 5,040 characters
VAL = "zq xk zq xk " * 46 + "zq xk zq"  # 560: the last 10%, pairs the train text never has


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TRANSFORMER_BENCH_CACHE", str(d))
    return d


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


@pytest.fixture
def corpus(tmp_path) -> Path:
    assert len(VAL) * 9 == len(TRAIN)  # so the split falls exactly between the two
    path = tmp_path / "corpus.txt"
    path.write_text(TRAIN + VAL, encoding="utf-8")
    return path


def test_bpe_learns_from_the_train_split_only(corpus):
    task = build_task("text", data=str(corpus), tokenizer="bpe:2000", **SMALL)
    vocab = task.tokenizer.tok.get_vocab()  # token string -> id (byte-level: a space is 'Ġ')
    assert len(vocab) == task.vocab_size < 2000  # the train text ran out of pairs first
    assert "Ġcat" in vocab and "Ġthe" in vocab  # its frequent words are merged
    assert not [t for t in vocab if "zq" in t or "xk" in t]  # never a merge of held-out text
    assert task.decode(task.tokens[: task.n_train]) == TRAIN  # the split is by text
    assert task.decode(task.tokens[task.n_train :]) == VAL
    held_out = task.tokenizer.encode("zq")
    assert len(held_out) == 2  # two bytes: z, q
    assert task.val_tokens_per_byte == pytest.approx(task.n_val / len(VAL.encode()))


def test_bpe_is_trained_once_and_gives_the_same_tokens_from_any_format(tmp_path, corpus, cache):
    task = build_task("text", data=str(corpus), tokenizer="bpe:300", **SMALL)
    saved = list((cache / "tokenizers").iterdir())
    assert len(saved) == 1
    again = build_task("text", data=str(corpus), tokenizer="bpe:300", **SMALL)
    assert again.tokenizer.sha256 == task.tokenizer.sha256  # read back, same bytes
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": TRAIN + VAL}) + "\n", encoding="utf-8")
    other = build_task("text", data=str(rows), tokenizer="bpe:300", **SMALL)
    assert np.array_equal(np.asarray(other.tokens), np.asarray(task.tokens))
    assert other.tokenizer.sha256 == task.tokenizer.sha256  # trained on the same text


def test_a_saved_tokenizer_json_loads(tmp_path, corpus):
    trained = build_task("text", data=str(corpus), tokenizer="bpe:300", **SMALL)
    path = tmp_path / "tokenizer.json"
    trained.tokenizer.tok.save(str(path))
    task = build_task("text", data=str(corpus), tokenizer=str(path), **SMALL)
    assert task.vocab_size == trained.vocab_size
    assert np.array_equal(np.asarray(task.tokens), np.asarray(trained.tokens))
    ident = task.run_identity(str(corpus), {"tokenizer": str(path)})
    assert ident["tokenizer"] == str(path.resolve())
    assert ident["tokenizer_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert task.decode(task.encode("the cat")) == "the cat"


@pytest.mark.parametrize(
    "tokenizer, words",
    [
        ("bpe:100", ["bpe:N", "[257,"]),
        ("bpe:many", ["bpe:N", "integer"]),
        ("missing/tokenizer.json", ["does not exist", "bpe:N"]),
        ("NOT_JSON", ["is not a tokenizer.json"]),
    ],
)
def test_bad_tokenizers_are_one_line(tmp_path, corpus, tokenizer, words):
    if tokenizer == "NOT_JSON":
        tokenizer = str(tmp_path / "bad.json")
        Path(tokenizer).write_text('{"not": "a tokenizer"}', encoding="utf-8")
    with pytest.raises(TaskError) as e:
        build_task("text", data=str(corpus), tokenizer=tokenizer, **SMALL)
    assert all(w in one_line(e) for w in words), one_line(e)


def plan_ids(data: Path, tokenizer: str | None) -> tuple[list[str], dict]:
    cfg = SweepConfig()
    cfg.task.name, cfg.task.data, cfg.task.tokenizer = "text", str(data), tokenizer
    cfg.budget.steps, cfg.comparison.seeds, cfg.device, cfg.model.size = 20, 1, "cpu", "micro"
    cfg.train.eval_batch_size = 4
    plan, task = build_plan(cfg.validate())
    assert plan.variants[0][1].vocab_size == task.vocab_size  # the model's vocab: the tokeniser's
    return [run_id(s.to_dict()) for s in plan.specs(1)], plan.task_spec


def test_the_tokeniser_and_field_come_from_flags_and_sweep_files(tmp_path):
    from ablations import config
    from ablations.flags import parse_args, resolve_config

    cfg = resolve_config(parse_args(["--tokenizer", "bpe:512", "--data-field", "body"]))
    assert (cfg.task.tokenizer, cfg.task.data_field) == ("bpe:512", "body")
    assert cfg.task.all_options() == {"tokenizer": "bpe:512", "data_field": "body"}
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('[task]\nname = "text"\ntokenizer = "bpe:300"\n', encoding="utf-8")
    assert config.load(sweep).task.tokenizer == "bpe:300"


def test_the_tokeniser_names_the_run(corpus):
    default, spec = plan_ids(corpus, None)
    assert "tokenizer" not in spec and "tokenizer_sha256" not in spec  # char adds nothing
    assert plan_ids(corpus, "char")[0] == default
    bpe, spec = plan_ids(corpus, "bpe:300")
    assert spec["tokenizer"] == "bpe:300" and len(spec["tokenizer_sha256"]) == 64
    assert plan_ids(corpus, "bpe:300")[0] == bpe  # the same tokeniser: the same runs
    other, _ = plan_ids(corpus, "bpe:320")
    assert len({*default, *bpe, *other}) == 3


# ---------------------------------------------------------------------------------------------
# bits per byte
# ---------------------------------------------------------------------------------------------


def test_bits_per_byte_of_a_char_run(tmp_path):
    """On text with multi-byte characters, so characters per byte is not 1."""
    text = "naïve café, déjà vu — señor " * 40
    path = tmp_path / "accents.txt"
    path.write_text(text, encoding="utf-8")
    task = build_task("text", data=str(path), **SMALL)
    val_text = text[task.n_train :]
    chars_per_byte = len(val_text) / len(val_text.encode("utf-8"))
    assert chars_per_byte < 1
    assert task.bits_per_byte(1.5) == pytest.approx(1.5 * chars_per_byte / math.log(2))

    from bench.core.train import run
    from variants.config import preset

    spec = RunSpec(
        "baseline",
        preset("micro", vocab_size=task.vocab_size, block_size=8, dropout=0.0),
        {"name": "text", "data": str(path)},
        Budget("steps", 6),
        TrainConfig(batch_size=4, eval_every=3, eval_batches=2, eval_batch_size=4),
    )
    rec = run(spec)
    loss = rec.metrics["val_loss"]
    assert rec.metrics["val_bpb"] == pytest.approx(loss * chars_per_byte / math.log(2))
    for point in rec.curve:
        assert point["val_bpb"] == pytest.approx(point["val_loss"] * chars_per_byte / math.log(2))
    assert "train_split_loss" in rec.evals  # the train-val gap's other half


# ---------------------------------------------------------------------------------------------
# tables: mixed tokenisers compare bits per byte; the overfitting guard
# ---------------------------------------------------------------------------------------------


def _template() -> dict:
    path = ROOT / "results/reference/ablations/shakespeare_tiny_1400steps_cpu/runs.jsonl"
    return json.loads(path.read_text().splitlines()[0])


def fake_run(seed: int, tokenizer: str | None, loss: float, bpb: float, rise: float = 0.0):
    """A finished baseline run of `tokenizer` with final `loss` (nats/token) and `bpb`; its
    curve falls to `loss`, then (with `rise`) climbs by that fraction over the last points."""
    rec = copy.deepcopy(_template())
    rec["seed"], rec["spec"]["seed"] = seed, seed
    if tokenizer:
        rec["spec"]["task"]["tokenizer"] = tokenizer
    rec["run_id"] = run_id(rec["spec"])
    steps = [round(i * 1400 / 24) for i in range(25)]
    losses = [loss * (1 + 2 * (1 - i / 20)) if i < 20 else loss for i in range(25)]
    losses[-3:] = [loss * (1 + rise * k / 3) for k in (1, 2, 3)] if rise else losses[-3:]
    rec["curve"] = [
        {**rec["curve"][0], "step": s, "val_loss": v, "val_bpb": v * bpb / loss}
        for s, v in zip(steps, losses, strict=True)
    ]
    # a frequency floor well above the loss: the learning guard passes
    rec["metrics"].update(val_loss=losses[-1], val_bpb=bpb * losses[-1] / loss, freq_loss=3 * loss)
    return rec


def test_a_table_that_mixes_tokenisers_gives_its_verdict_in_bits_per_byte():
    # BPE: a higher loss per token (each token carries more text) but fewer bits per byte
    records = [fake_run(s, None, 1.50 + 0.01 * s, 2.16 + 0.01 * s) for s in range(3)]
    records += [fake_run(s, "bpe:1024", 3.30 + 0.01 * s, 2.00 + 0.012 * s) for s in range(3)]
    [(meta, df)] = compare.summaries(records)
    assert df.attrs["primary"] == compare.BPB and meta["tokenizers"] == ["char", "bpe:1024"]
    row = df.set_index("variant").loc["baseline · bpe:1024"]
    char_bpb, bpe_bpb = (
        [r["metrics"]["val_bpb"] for r in part] for part in (records[:3], records[3:])
    )
    assert row["d_val_loss"] == pytest.approx(np.mean(bpe_bpb) - np.mean(char_bpb))
    assert row["verdict"] == "better"  # in bits per byte; per token it would read worse
    head = headline_frame(df)
    assert "Δ val bpb [95% CI]" in head.columns
    text = format_summary(df, meta)
    assert "mix tokenisers" in text and "bits per byte" in text
    # one tokeniser: the verdict stays in nats per token, and nothing is said
    [(meta1, df1)] = compare.summaries(records[3:])
    assert df1.attrs["primary"] == compare.PRIMARY and "mix tokenisers" not in format_summary(
        df1, meta1
    )


def test_the_overfitting_guard_flags_a_val_loss_that_rose():
    flat = [fake_run(s, None, 1.5, 2.1) for s in range(2)]
    rising = [fake_run(s, None, 1.5, 2.1, rise=3 * compare.OVERFIT_RISE) for s in range(2)]
    [(_, df)] = compare.summaries(flat)
    assert df["overfit"].tolist() == [False] and "overfit" not in display_frame(df).columns
    [(_, df)] = compare.summaries(rising)
    assert df["overfit"].tolist() == [True]
    assert display_frame(df)["overfit"].tolist() == ["yes"]
    slight = [fake_run(s, None, 1.5, 2.1, rise=compare.OVERFIT_RISE / 2) for s in range(2)]
    assert compare.summaries(slight)[0][1]["overfit"].tolist() == [False]


def test_the_overfitting_guard_reads_a_near_zero_loss_in_nats_not_percent():
    """A solved task whose val loss wobbles from 0.0002 to 0.0003 rose by 50%, not by 0.01
    nats: no overfitting. The same wobble above 1 nat is judged relative to the loss."""
    from bench.analysis.columns import late_rise

    curve = [{"step": s, "val_loss": v} for s, v in [(0, 3.0), (80, 0.0002), (100, 0.0003)]]
    assert late_rise(curve) == pytest.approx(0.0001)
    assert late_rise(curve) < compare.OVERFIT_RISE
    high = [{"step": s, "val_loss": v} for s, v in [(0, 3.0), (80, 2.0), (100, 2.05)]]
    assert late_rise(high) == pytest.approx(0.025)
    assert late_rise(high) > compare.OVERFIT_RISE
