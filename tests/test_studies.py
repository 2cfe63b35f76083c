"""The addition, residual and heads studies: their data generator, their measurements, and each
study end to end at a toy budget (table, figure, report section, records)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from ablations.run import main as run_main
from ablations.studies import STUDIES, StudyContext, get_study
from ablations.studies import addition as add_study
from ablations.studies import heads as heads_study
from ablations.studies import residual as res_study
from bench.core.records import load_records
from bench.exec.placement import ExecutorConfig, SlurmConfig
from bench.tasks import build_task
from bench.tasks.addition import END, AdditionTask, format_problem, problem_tokens
from bench.tasks.base import IGNORE_INDEX

PNG = b"\x89PNG\r\n\x1a\n"
TOY_MODEL = dict(n_layer=1, n_head=2, n_embd=16, block_size=32)


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


# ------------------------------------------------------------------ the mixed-length addition task


def _mixed(**kw) -> AdditionTask:
    """The study's task: the addition task trained on widths 1-3, evaluated on 1-5."""
    return AdditionTask(context=32, min_digits=1, eval_digits=5, **kw)


def _parse_rows(task, x, y):
    """Rebuild each row's problem string and (a, b, width) from the model input and targets."""
    out = []
    for xr, yr in zip(x.tolist(), y.tolist(), strict=True):
        text = task.decode(xr)
        d = text.index("+")
        end = 3 * d + 3  # x covers the problem up to (not including) the final '$'
        problem = task.decode(xr[:end]) + "$"
        a, b = int(problem[:d]), int(problem[d + 1 : 2 * d + 1])
        out.append((problem, a, b, d, xr, yr))
    return out


@pytest.mark.parametrize("reverse", [True, False])
@pytest.mark.parametrize("mask", [True, False])
def test_mixed_rows_are_well_formed_problems(reverse, mask):
    task = _mixed(reverse=reverse, mask_prompt=mask)
    assert task.seq_len == 12
    x, y = task.train_batch(300, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (300, 12)
    widths = set()
    for problem, a, b, d, xr, yr in _parse_rows(task, x, y):
        widths.add(d)
        assert problem == format_problem(a, b, d, reverse)  # the addition task's own format
        n = 3 * d + 3  # real tokens in x; the rest is padding
        assert xr[n:] == [END] * (12 - n)
        assert yr[n:] == [IGNORE_INDEX] * (12 - n)
        tokens = task.encode(problem)
        if mask:
            assert yr[: 2 * d + 1] == [IGNORE_INDEX] * (2 * d + 1)
            assert yr[2 * d + 1 : n] == tokens[2 * d + 2 :]  # the d+1 digits and '$'
        else:
            assert yr[:n] == tokens[1:]
    assert widths == {1, 2, 3}


def test_mixed_heldout_is_the_addition_tasks_and_never_trained():
    task = _mixed()
    for d in add_study.TEST_DIGITS:
        a, b = task.heldout_problems(d)
        ra, rb = AdditionTask(context=32, n_digits=d).heldout_problems()
        assert torch.equal(a, ra) and torch.equal(b, rb)
    held = set()
    for d in add_study.TEST_DIGITS:
        a, b = task.heldout_problems(d)
        held |= set(zip(a.tolist(), b.tolist(), strict=True))
    g = torch.Generator().manual_seed(1)
    seen, per_width = set(), {1: 0, 2: 0, 3: 0}
    for _ in range(20):
        x, y = task.train_batch(1024, g)
        for _, a, b, d, *_ in _parse_rows(task, x, y):
            seen.add((a, b))
            per_width[d] += 1
    # ~6800 one-digit rows over <100 trainable pairs, ~6800 two-digit rows over ~9000: without
    # the exclusion hundreds of held-out pairs would show up
    assert min(per_width.values()) > 6000
    assert not (seen & held)
    # every one-digit pair not held out at some width (by value) is trained on
    one_digit = {(a, b) for a in range(10) for b in range(10)}
    assert {(a, b) for a, b in seen if a < 10 and b < 10} == one_digit - held
    assert len(one_digit & held) > 10  # width 1 holds out 10, wider widths hold out more


def test_mixed_task_rejects_a_short_context():
    with pytest.raises(ValueError, match="5-digit problems needs rows of 18 tokens"):
        AdditionTask(context=16, min_digits=1, eval_digits=5)


class _Oracle:
    """A 'model' whose logits put all mass on the correct next token (optionally corrupting the
    most significant digit of the sum), to check the decoder and the metrics."""

    def __init__(self, d, reverse, corrupt=False):
        self.d, self.reverse, self.corrupt = d, reverse, corrupt

    def __call__(self, idx):
        d = self.d
        pow_n = 10 ** torch.arange(d - 1, -1, -1)
        a = (idx[:, :d] * pow_n).sum(1)
        b = (idx[:, d + 1 : 2 * d + 1] * pow_n).sum(1)
        full = problem_tokens(a, b, d, self.reverse)
        if self.corrupt:
            msd = 2 * d + 2 + (d if self.reverse else 0)
            full[:, msd] = (full[:, msd] + 1) % 10
        t = idx.shape[1]
        logits = torch.zeros(idx.shape[0], t, 13)
        logits[torch.arange(idx.shape[0]), -1, full[:, t]] = 1.0
        return logits, None


@pytest.mark.parametrize("reverse", [True, False])
def test_decode_accuracy_with_an_oracle(reverse):
    task = _mixed(reverse=reverse)
    for d in add_study.TEST_DIGITS:
        res = task.score_width(_Oracle(d, reverse), "cpu", d, max_problems=40)
        assert res == {"exact": 1.0, "digit": 1.0, "n": min(40, len(task.heldout_problems(d)[0]))}
        bad = task.score_width(_Oracle(d, reverse, corrupt=True), "cpu", d, max_problems=40)
        assert bad["exact"] == 0.0
        assert bad["digit"] == pytest.approx(d / (d + 1))
    # the same problems and format as the addition task's own accuracy
    assert AdditionTask(context=32, n_digits=3, reverse=reverse).accuracy(
        _Oracle(3, reverse), "cpu", 40
    ) == pytest.approx(1.0)


# --------------------------------------------------------------------------------- the studies


def _ctx(tmp_path, name, scale=0.02):
    return StudyContext(out=tmp_path / name, device="cpu", seeds=1, scale=scale, quiet=True)


def test_studies_are_registered():
    for name, cls in (
        ("addition", add_study.AdditionStudy),
        ("residual", res_study.ResidualStudy),
        ("heads", heads_study.HeadsStudy),
    ):
        assert name in STUDIES
        assert isinstance(get_study(name), cls)


def test_addition_study_end_to_end(tmp_path):
    study = add_study.AdditionStudy(model=TOY_MODEL, eval_problems=20)
    ctx = _ctx(tmp_path, "addition")
    md = study.run(ctx)
    out = ctx.out
    table = pd.read_csv(out / "addition.csv")
    labels = [c[0] for c in add_study.CONFIGS]
    assert list(table["config"]) == labels  # a row per configuration
    for d in add_study.TEST_DIGITS:
        assert table[f"exact_{d}d_mean"].between(0, 1).all()
    assert set(table["position"]) == {"learned", "rope", "none"}
    long = pd.read_csv(out / "addition_by_digits.csv")
    assert len(long) == len(labels) * len(add_study.TEST_DIGITS)
    assert set(long["trained_length"]) == {True, False}
    assert _is_png(out / "addition.png")
    assert (out / "addition.md").read_text().startswith("| config |")
    assert "![accuracy by number of digits](addition.png)" in md
    assert "python ablations/run.py --study addition --scale 0.02 --seeds 1" in md
    for label in labels:
        assert f"| {label} |" in md
    records = load_records(out / "runs.jsonl")
    assert len(records) == len(labels)
    # the addition task, registered like every task; each run evaluated itself: no weights
    # were saved to evaluate later, and the table is the records' evals
    assert all(r.task == "addition" and r.spec["task"]["min_digits"] == 1 for r in records)
    assert not (out / "checkpoints").exists() and not list(out.glob("*_eval.json"))
    for r in records:
        by_digits = r.evals["by_digits"]
        assert list(by_digits) == [str(d) for d in add_study.TEST_DIGITS]
        assert all(
            v["n"]
            == min(
                20, len(build_task("addition", context=32, n_digits=int(d)).heldout_problems()[0])
            )
            for d, v in by_digits.items()
        )
    rebuilt, _ = add_study.frames(records)
    pd.testing.assert_frame_equal(rebuilt, long, check_dtype=False)
    # rerunning resumes: no new training, the same table
    before = (out / "runs.jsonl").read_text()
    study.run(ctx)
    assert (out / "runs.jsonl").read_text() == before
    pd.testing.assert_frame_equal(pd.read_csv(out / "addition.csv"), table)


def test_residual_study_end_to_end(tmp_path):
    study = res_study.ResidualStudy(depths=(2, 4), model=dict(n_embd=16, n_head=2, block_size=16))
    ctx = _ctx(tmp_path, "residual")
    md = study.run(ctx)
    out = ctx.out
    table = pd.read_csv(out / "residual.csv")
    assert list(zip(table["depth"], table["residual"], strict=True)) == [
        (2, "on"), (2, "off"), (4, "on"), (4, "off"),
    ]  # fmt: skip
    for col in ("grad_first_init", "grad_last_init", "ratio_init", "ratio_end"):
        assert (table[col] > 0).all(), col
    norms = pd.read_csv(out / "residual_grad_norms.csv")
    init = norms[norms["probe"] == 0]
    assert (
        init.groupby("run_id")["block"].count() == init.groupby("run_id")["depth"].first()
    ).all()
    spec = load_records(out / "runs.jsonl")[0].spec
    steps, every = int(spec["budget"]["value"]), spec["train"]["eval_every"]
    assert steps >= 2 * every  # step 1, then every evaluation point
    assert set(norms["step"]) == {1, *range(every, steps + 1, every)}
    # the table's init ratio is the first block's norm over the last block's at step 1
    row = init[(init["depth"] == 4) & (init["residual"] == "off")].sort_values("block")
    want = row["norm"].iloc[0] / row["norm"].iloc[-1]
    got = table[(table["depth"] == 4) & (table["residual"] == "off")]["ratio_init"].iloc[0]
    assert got == pytest.approx(want)
    assert _is_png(out / "residual.png")
    assert "![gradient norm ratio and loss curves by depth](residual.png)" in md
    assert "| 4 | off |" in md and "--study residual" in md
    records = load_records(out / "runs.jsonl")
    assert {r.variant for r in records} == {"baseline", "no-residual"}
    assert all(r.spec["train"]["probes"] == ["grad_norms"] for r in records)


def test_heads_mapping_makes_outputs_and_gradients_equal():
    small = dict(n_layer=2, n_embd=32, block_size=16, vocab_size=17)
    for n_head in (1, 4):
        e32 = heads_study.equivalence(n_head, torch.float32, model=small)
        e64 = heads_study.equivalence(n_head, torch.float64, model=small)
        assert e32["logits_max_abs_diff"] < 1e-5 and e32["grad_max_abs_diff"] < 1e-5
        assert e64["logits_max_abs_diff"] < 1e-12 and e64["grad_max_abs_diff"] < 1e-12
        assert e32["logits_max_abs"] > 1e-3 and e32["grad_max_abs"] > 1e-4  # not all zeros


def test_heads_equality_check_has_teeth(monkeypatch):
    # without the q/k/v mapping the two models differ: the check would catch a wrong mapping
    def skip_qkv(fused, separate):
        sd = separate.state_dict()
        separate.load_state_dict(
            {k: v for k, v in fused.state_dict().items() if k in sd}, strict=False
        )

    monkeypatch.setattr(heads_study, "copy_fused_into_separate", skip_qkv)
    small = dict(n_layer=1, n_embd=32, block_size=16, vocab_size=17)
    e = heads_study.equivalence(4, torch.float64, model=small)
    assert e["logits_max_abs_diff"] > 1e-4


def test_heads_study_end_to_end(tmp_path):
    small = dict(n_layer=1, n_embd=32, block_size=16, vocab_size=17)
    study = heads_study.HeadsStudy(n_heads=(1, 2, 4), model=small, batch=4)
    ctx = _ctx(tmp_path, "heads", scale=0.05)
    md = study.run(ctx)
    out = ctx.out
    table = pd.read_csv(out / "heads.csv")
    assert list(table["n_head"]) == [1, 2, 4]
    assert list(table["head_size"]) == [32, 16, 8]
    for level in ("model", "attention"):
        for mode in ("fwd", "fwdbwd"):
            ratio = table[f"{level}_{mode}_ratio"]
            want = table[f"{level}_{mode}_separate_ms"] / table[f"{level}_{mode}_fused_ms"]
            assert ratio.to_numpy() == pytest.approx(want.to_numpy())
            assert (ratio > 0).all()
    assert (table["logits_max_abs_diff"] < 1e-5).all()
    timings = pd.read_csv(out / "heads_timings.csv")
    # long format: n_heads x 2 levels x 2 modes x 2 layouts x 1 repeat, with the device named
    assert len(timings) == 3 * 2 * 2 * 2
    assert {"device_name", "heads", "mode", "level", "median_ms"} <= set(timings.columns)
    assert timings["device_name"].notna().all() and (timings["median_ms"] > 0).all()
    assert _is_png(out / "heads.png")
    assert "![separate/fused time ratio by number of heads](heads.png)" in md
    assert "--study heads --scale 0.05" in md and "| 4 | 8 |" in md


def test_studies_cli_lists_and_runs(tmp_path, monkeypatch, capsys):
    assert run_main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {n}" in listed for n in ("addition", "residual", "heads"))
    # the CLI path writes report.md from the study's section (a small heads study, for speed)
    monkeypatch.setattr(
        heads_study,
        "STUDY",
        heads_study.HeadsStudy(
            n_heads=(2,), model=dict(n_layer=1, n_embd=16, block_size=8, vocab_size=11), batch=2
        ),
    )
    out = tmp_path / "cli"
    argv = ["--study", "heads", "--scale", "0.01", "--out", str(out), "--device", "cpu"]
    assert run_main([*argv, "--quiet"]) == 0
    report = (out / "report.md").read_text()
    assert report.startswith("## Separate vs fused attention heads")
    assert _is_png(out / "heads.png")


def test_toy_budgets_scale_down():
    ctx = StudyContext(out=None, seeds=1, scale=0.02)
    specs = add_study.AdditionStudy().specs(ctx)
    assert [c[0] for c, _ in specs] == [c[0] for c in add_study.CONFIGS]
    s = specs[0][1][0]
    assert s.budget.value == 30 and not s.train.save_checkpoint
    assert s.task["eval_problems"] == 20 and s.task["name"] == "addition"
    full = add_study.AdditionStudy().specs(dataclasses.replace(ctx, scale=1.0))
    assert full[0][1][0].budget.value == add_study.STEPS
    res = res_study.ResidualStudy().specs(dataclasses.replace(ctx, scale=1.0))
    assert sorted({s.model.n_layer for s in res}) == list(res_study.DEPTHS)
    assert {s.model.residual for s in res} == {"on", "off"}


def test_a_study_runs_through_a_cluster_executor_like_any_sweep(tmp_path):
    """A study's runs go where the command's executor says (here submitit's local executor, the
    same code path as SLURM): one record file per run under runs/, and the study's table is
    read from those records."""
    pytest.importorskip("submitit")
    study = res_study.ResidualStudy(depths=(2,), model=dict(n_embd=16, n_head=2, block_size=16))
    where = ExecutorConfig(
        "submitit-local", runs_per_job=2, slurm=SlurmConfig(time_min=5, cpus=1, gpus=0)
    )
    ctx = dataclasses.replace(_ctx(tmp_path, "residual"), executor=where)
    study.run(ctx)
    files = sorted((ctx.out / "runs").glob("*.json"))
    assert len(files) == 2 and not (ctx.out / "runs.jsonl").exists()  # baseline + no-residual
    table = pd.read_csv(ctx.out / "residual.csv")
    assert list(table["residual"]) == ["on", "off"] and (table["seeds"] == 1).all()
