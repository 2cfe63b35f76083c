"""A plugin file can add a study: `--plugin FILE --list` lists it, `--plugin FILE --study NAME`
runs it through the same harness as a built-in and writes its table and report section."""

from __future__ import annotations

import re
import textwrap

import pandas as pd
import pytest

from ablations.run import main as run_main
from ablations.studies import STUDIES, Study, get_study, register_study

NAME = "two-micro-runs"

PLUGIN = textwrap.dedent(
    f'''
    """A tiny study: two micro runs (baseline and rope) on 2-digit addition, final losses."""

    import pandas as pd

    from ablations.studies import Study, register_study
    from ablations.studies.base import spec_task
    from bench.core.spec import Budget, RunSpec, TrainConfig
    from variants.config import preset
    from variants.registry import get_variant

    TASK = {{"name": "addition", "data": None, "n_digits": 2, "n_heldout": 50}}


    @register_study(description="baseline vs rope, one micro run each, final validation loss")
    class TwoMicroRuns(Study):
        name = "{NAME}"
        one_thread = True

        def _run(self, ctx):
            base = preset("micro", n_embd=16, n_head=2, block_size=16, vocab_size=13)
            train = TrainConfig(batch_size=8, lr=3e-3, eval_every=5, eval_batches=2)
            budget = Budget("steps", ctx.steps(10))
            specs = [
                RunSpec(v, get_variant(v).apply(base).validate(), TASK, budget, train, 0,
                        ctx.device)
                for v in ("baseline", "rope")
            ]
            records = ctx.execute(specs, task=spec_task(specs[0]))
            table = pd.DataFrame(
                [{{"variant": r.variant, "val_loss": r.val_loss}} for r in records]
            )
            shown = table.assign(val_loss=[f"{{v:.3f}}" for v in table["val_loss"]])
            md = self.write_table(ctx.out, "two_runs", table, shown)
            return f"## Two micro runs\\n\\n{{md}}\\n"
    '''
)


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "my_study.py"
    path.write_text(PLUGIN)
    yield path
    if NAME in STUDIES:
        STUDIES.remove(NAME)


def test_a_plugin_study_is_listed(plugin, capsys):
    assert run_main(["--plugin", str(plugin), "--list"]) == 0
    listed = capsys.readouterr().out
    line = f"  {NAME} +baseline vs rope, one micro run each, final validation loss\n"
    assert re.search(line, listed.split("studies (--study NAME):")[1])
    assert isinstance(get_study(NAME), Study)


def test_a_plugin_study_runs_and_writes_its_report(plugin, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--plugin", str(plugin), "--study", NAME, "--seeds", "1", "--out", str(out)]
    assert run_main([*argv, "--device", "cpu", "--quiet"]) == 0
    report = (out / "report.md").read_text()
    assert report.startswith("## Two micro runs")
    table = pd.read_csv(out / "two_runs.csv")
    assert list(table["variant"]) == ["baseline", "rope"]
    assert table["val_loss"].notna().all()
    assert (out / "two_runs.md").read_text() in report


def test_a_study_name_is_taken_once(plugin):
    class Again(Study):
        name = "heads"

        def _run(self, ctx):
            return ""

    with pytest.raises(ValueError, match="already registered"):
        register_study(Again())
    with pytest.raises(TypeError, match="takes a Study"):
        register_study(object())
    with pytest.raises(ValueError, match="valid studies: calculator, pretraining"):
        get_study("nope")
