"""The report rebuilds from records alone: tables with verdicts, valid PNGs, self-contained HTML."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from bench.analysis import plots, plots_micro, tables
from bench.analysis.report import ReportError, build_report, main
from bench.core.records import append_record

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]

# variant -> (final val loss offset vs baseline, step ms)
VARIANTS = {"baseline": (0.0, 10.0), "rope": (-0.4, 11.0), "swiglu": (0.01, 12.0)}
SEEDS = (0, 1, 2)


def make_record(variant, seed, *, diverged=False, device_name="AMD EPYC test", task="addition"):
    """A record shaped like the harness's, with a decreasing validation curve."""
    rng = np.random.default_rng(1000 * seed + len(variant))
    offset, step_ms = VARIANTS[variant]
    final = 1.5 + offset + 0.02 * seed + rng.normal(0, 0.005)
    curve = []
    for i, step in enumerate(range(0, 201, 50)):
        val = final + 2.0 * math.exp(-step / 60) if not (diverged and i >= 3) else None
        curve.append(
            {"step": step, "tokens": step * 512, "time_s": step * step_ms / 1e3,
             "train_loss": (val or 9.0) + 0.05, "val_loss": val,
             "accuracy": None if val is None else max(0.0, 1 - val / 4)}
        )  # fmt: skip
    nan = float("nan")
    metrics = {
        "val_loss": nan if diverged else final,
        "accuracy": None if diverged else max(0.0, 1 - final / 4),
        "train_loss": nan if diverged else final + 0.05,
        "step_ms": step_ms + rng.normal(0, 0.2), "step_ms_p10": step_ms - 0.5,
        "step_ms_p90": step_ms + 0.5, "tokens_per_s": 512e3 / step_ms + rng.normal(0, 300),
        "fwd_ms": step_ms / 3, "peak_mem_mb": 100.0 + 10 * len(variant) + rng.normal(0, 1),
        "params": 100_000 + 1000 * len(variant), "flops_per_token": 600_000, "mfu": None,
        "steps": 200, "tokens": 200 * 512, "wall_s": 2.0,
    }  # fmt: skip
    model = {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 32, "position": variant}
    budget = {"mode": "steps", "value": 200}
    return {
        "run_id": f"{variant}-{seed}-{device_name}"[:40],
        "variant": variant,
        "seed": seed,
        "task": task,
        "spec": {
            "variant": variant,
            "seed": seed,
            "model": model,
            "task": {"name": task},
            "budget": budget,
            "train": {"lr": 1e-3, "batch_size": 16},
        },
        "budget": budget,
        "status": "diverged" if diverged else "ok",
        "diverged_at_step": 150 if diverged else None,
        "env": {
            "device": "cpu",
            "device_name": device_name,
            "torch": "2.13.0+cpu",
            "triton": "3.9.0",
            "python": "3.11.7",
            "hostname": "node1",
            "git_commit": "abc123def4567890",
            "platform": "Linux",
        },
        "metrics": metrics,
        "curve": curve,
        "created": f"2026-11-24T23:1{seed}:00+00:00",
    }


def write_sweep(run_dir: Path, device_name="AMD EPYC test") -> Path:
    path = run_dir / "runs.jsonl"
    for variant in VARIANTS:
        for seed in SEEDS:
            diverged = variant == "swiglu" and seed == 2
            record = make_record(variant, seed, diverged=diverged, device_name=device_name)
            append_record(path, record)
    return path


def _micro_json(path: Path) -> Path:
    def bench(group, name, median):
        return {"group": group, "name": name, "fullname": f"tests/x.py::{name}", "params": {},
                "stats": {"median": median, "iqr": median / 10, "mean": median,
                          "stddev": median / 20}, "extra_info": {}}  # fmt: skip

    data = {
        "machine_info": {"node": "node1", "cpu": {"brand_raw": "AMD EPYC test"}},
        "benchmarks": [
            bench("attention", "test_attention[naive-fwd]", 2e-3),
            bench("attention", "test_attention[sdpa-fwd]", 1e-3),
            bench("norm", "test_norm[rmsnorm]", 1e-4),
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sweep")
    write_sweep(run_dir)
    _micro_json(run_dir / "micro" / "bench.json")
    md = build_report(run_dir)
    return run_dir, md


def test_report_files_and_figures(built):
    run_dir, md = built
    assert md == run_dir / "report.md" and md.is_file()
    assert (run_dir / "report.html").is_file()
    figs = sorted((run_dir / "figures").glob("*.png"))
    names = {p.stem for p in figs}
    assert names == {"loss_curves", "throughput_memory", "tradeoff", "micro_benchmarks"}
    for p in figs:
        _assert_png(p)
    text = md.read_text(encoding="utf-8")
    for p in figs:
        assert f"figures/{p.name}" in text
    assert "python -m bench.report" in text
    assert "AMD EPYC test" in text and "equal budget: same steps" in text


def test_html_is_self_contained(built):
    run_dir, _ = built
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 4
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in page and "url(" not in page and "http" not in page
    assert "<table" in page and "verdict" in page


def test_summary_table_verdicts_and_diverged(built):
    run_dir, _ = built
    df = pd.read_csv(run_dir / "summary.csv")
    assert list(df["variant"]) == ["baseline", "rope", "swiglu"]
    row = df.set_index("variant")
    assert row.loc["swiglu", "n_diverged"] == 1 and row.loc["swiglu", "n_seeds"] == 3
    assert row.loc["baseline", "n_diverged"] == 0
    assert row.loc["rope", "verdict"] == "better"
    # swiglu: tiny offset, one seed diverged -> two pairs left, must not be called a win
    assert row.loc["swiglu", "verdict"] != "better"
    assert pd.isna(row.loc["baseline", "verdict"]) and pd.isna(row.loc["baseline", "d_val_loss"])
    assert row.loc["rope", "d_val_loss"] == pytest.approx(-0.4, abs=0.02)
    md = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "| verdict |" in md and "—" in md
    assert "diverged" in md  # the footnote says diverged runs are excluded


def test_summary_api_and_mixed_groups(tmp_path):
    recs = [make_record(v, s) for v in VARIANTS for s in SEEDS]
    df = tables.summary(recs)
    assert list(df["variant"]) == list(VARIANTS)
    assert {"verdict", "d_val_loss_ci", "accuracy_mean", "d_accuracy", "params"} <= set(df.columns)
    other = [make_record(v, s, device_name="NVIDIA H100") for v in VARIANTS for s in SEEDS]
    with pytest.raises(ValueError, match="incomparable"):
        tables.summary(recs + other)
    assert len(tables.summaries(recs + other)) == 2


def test_two_devices_split_tables_and_figures(tmp_path):
    write_sweep(tmp_path / "machine_a", device_name="AMD EPYC test")
    write_sweep(tmp_path / "machine_b", device_name="NVIDIA H100")
    out = tmp_path / "report"
    build_report(tmp_path, out_dir=out)
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "not like with like" in text
    assert text.count("## Results:") == 2
    assert len(pd.read_csv(out / "summary.csv")) == 6
    assert len(list((out / "figures").glob("*.png"))) == 6


def test_micro_benchmarks_without_files_returns_none(tmp_path):
    assert plots_micro.micro_benchmarks([], tmp_path / "m.png") is None
    assert not (tmp_path / "m.png").exists()


def test_missing_or_empty_dir_is_a_clean_error(tmp_path):
    with pytest.raises(ReportError):
        build_report(tmp_path / "nope")
    with pytest.raises(ReportError, match="no run records"):
        build_report(tmp_path)
    assert main([str(tmp_path)]) == 2


def test_cli_missing_dir_exits_nonzero_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.report", str(tmp_path / "missing")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_tradeoff_labels_of_clustered_points_do_not_overlap():
    # Three variants at the same (ms, loss) and one far away: the three labels must be stacked
    # at least a label height apart; the lone point's label stays where it is.
    from matplotlib.figure import Figure

    pts = pd.DataFrame(
        {"ms": [40.0, 40.0, 40.2, 60.0], "loss": [1.3, 1.3, 1.3, 2.0]},
        index=["baseline", "rope", "no-position", "no-residual"],
    )
    ax = Figure(figsize=(7.5, 5.2)).subplots()
    ax.plot(pts["ms"], pts["loss"], "o")
    lifts = plots._label_lifts(ax, pts, {k: k for k in pts.index}, fontsize=8)
    stacked = sorted(lifts[k] for k in ("baseline", "rope", "no-position"))
    assert stacked[0] == 0.0
    assert all(b - a >= 1.3 * 8 - 1e-9 for a, b in zip(stacked, stacked[1:], strict=False))
    assert lifts["no-residual"] == 0.0


def test_the_loss_figure_zooms_on_the_last_half_past_an_early_spike():
    """An early spike (post-norm's, to 6 nats) sets the whole-run panel's y range; the zoomed
    panel's limits hold only the last half's mean ± std, so final curves stay apart."""
    import pandas as pd

    from bench.analysis.plots import late_half, zoom_limits

    rows = []
    for label, end in (("baseline", 1.90), ("rope", 1.84)):
        for seed in (0, 1):
            for step in range(0, 101, 10):
                loss = 6.0 if step == 10 else end + (100 - step) / 200 + 0.005 * seed
                rows.append({"label": label, "seed": seed, "step": step, "val_loss": loss})
    curves = pd.DataFrame(rows)
    late = late_half(curves, "step")
    assert late["step"].min() == 50 and late["step"].max() == 100
    lo, hi = zoom_limits(late, "step")
    assert 1.8 < lo < 1.84 and 2.15 < hi < 2.3  # the spike at step 10 is outside
