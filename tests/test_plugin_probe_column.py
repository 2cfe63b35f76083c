"""A new metric column and a new probe with its section, from one plugin file: the probe is
measured in the worker processes that train the runs, the column appears in the comparison
table and summary.csv, the section in summary.md and in `python -m bench.report`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.analysis.columns import COLUMNS, Column
from bench.analysis.display import display_frame, headline_frame

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
import pandas as pd

from bench.analysis.columns import COLUMNS, Column
from bench.core.probing import PROBES, Probe
from bench.core.records import as_record
from bench.analysis.sections import SECTIONS, Section


class WeightNorm(Probe):
    """The L2 norm of all weights at the end of the run."""

    def result(self, s):
        sq = sum(float(p.detach().float().pow(2).sum()) for p in s.model.parameters())
        return {"norm": sq**0.5}


def table(records):
    rows = [(r.variant, r.probes["wnorm"]["norm"]) for r in map(as_record, records)
            if r.ok and "wnorm" in r.probes]
    if not rows:
        return None
    frame = pd.DataFrame(rows, columns=["variant", "norm"]).groupby("variant", sort=False)
    return frame["norm"].mean().map("{:.2f}".format).rename("weight norm").reset_index()


PROBES.register("wnorm", WeightNorm, description="L2 norm of the final weights")
COLUMNS.register("wnorm", Column(
    "wnorm", label="weight norm", fmt=".2f", delta="pct", delta_label="Δ wnorm", test="welch",
    headline="Δ weight norm", footnote="Weight norm: L2 norm of all final weights.",
    read=lambda rec: rec.probes["wnorm"]["norm"]))
SECTIONS.register("wnorm", Section("Weight norms", table=table,
                                   footnote=lambda records: "Mean over seeds."))
'''


def _run(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r


def test_a_plugin_adds_a_probe_its_section_and_a_column(tmp_path):
    plugin, out = tmp_path / "wnorm.py", tmp_path / "out"
    plugin.write_text(PLUGIN)
    _run(
        "ablations/run.py", "--plugin", str(plugin), "--probe", "wnorm",
        "--variant", "baseline", "--variant", "rope", "--jobs", "2", "--task", "addition",
        "--model", "micro", "--steps", "6", "--eval-every", "3", "--batch-size", "8",
        "--quiet", "--out", str(out),
    )  # fmt: skip
    csv = pd.read_csv(out / "summary.csv").set_index("variant")
    assert csv.loc["rope", "wnorm_mean"] > 0 and "d_wnorm_pct" in csv.columns
    md = (out / "summary.md").read_text()
    assert "| weight norm |" in md and "Δ wnorm" in md and "Δ weight norm" in md
    assert "Weight norm: L2 norm of all final weights." in md
    assert "\n## Weight norms\n" in md and "Mean over seeds." in md

    r = _run("-m", "bench.report", str(out), "--plugin", str(plugin))
    report = (out / "report.md").read_text()
    assert "## Weight norms" in report and "Mean over seeds." in report
    assert "weight norm" in report and "## Weight norms" in r.stdout
    assert f"--plugin {plugin}" in report  # the rebuild line loads the plugin again


def test_a_registered_column_reaches_every_table_without_an_edit():
    """In process: one entry, and the full table and the headline carry it."""
    toy = Column("toy", label="toy", fmt=".1f", delta="abs", delta_label="Δ toy", delta_fmt=".1f",
                 headline="Δ toy")  # fmt: skip
    COLUMNS.register("toy", toy)
    try:
        df = pd.DataFrame(
            [
                {"variant": "baseline", "n_seeds": 1, "n_diverged": 0, "toy_mean": 1.0},
                {"variant": "rope", "n_seeds": 1, "n_diverged": 0, "toy_mean": 3.0, "d_toy": 2.0},
            ]
        )
        assert list(display_frame(df).set_index("variant").loc["rope", ["toy", "Δ toy"]]) == [
            "3.0", "+2.0"
        ]  # fmt: skip
        assert headline_frame(df).set_index("variant").loc["rope", "Δ toy"] == "+2.0"
    finally:
        COLUMNS.remove("toy")
