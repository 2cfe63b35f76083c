"""bench/micro/bench_overhead.py end to end on the micro model (its figures are only meaningful
on a quiet machine at `tiny`; here the point is that the script runs and reports what it
says)."""

from __future__ import annotations

import pytest
import torch

from bench.micro import bench_overhead as bo  # the script, imported as a module


def test_eager_run_prints_both_loops_and_writes_the_file(tmp_path, capsys):
    out = tmp_path / "overhead.md"
    args = ["--model", "micro", "--steps", "8", "--warmup", "2", "--rounds", "1",
            "--variant", "baseline", "--variant", "rmsnorm", "--out", str(out)]  # fmt: skip
    assert bo.main(args) == 0
    printed = capsys.readouterr().out
    for variant in ("baseline", "rmsnorm"):
        assert f"{variant}: device cpu, model micro" in printed
    text = out.read_text()
    assert text.startswith("`python bench/micro/bench_overhead.py --model micro")
    assert text.count("harness/bare") == 2 and "torch " + torch.__version__ in text


def test_operator_classes_split_a_step_into_gemm_sdpa_and_rest():
    from bench.tasks import build_task
    from variants import preset

    base = preset("micro")
    task = build_task("addition", context=base.block_size)
    cfg = base.replace(vocab_size=task.vocab_size)
    parts = bo.op_classes(cfg, task, torch.device("cpu"), steps=3, batch=8)
    assert set(parts) == {"GEMM", "SDPA", "rest"}
    assert all(v > 0 for v in parts.values())  # the baseline uses all three
    naive = bo.op_classes(cfg.replace(attention="naive"), task, torch.device("cpu"), 3, 8)
    assert naive["SDPA"] == 0 and naive["GEMM"] > 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "huge"], "unknown model size 'huge'"),
        (["--steps", "5", "--warmup", "10"], "need --steps > --warmup"),
        (["--variant", "nope"], "unknown variant 'nope'"),
    ],
)
def test_bad_input_is_one_line(args, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        bo.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert words in err[-1] and not any("Traceback" in line for line in err)
