"""README stays true: its variant table is the one the registry makes, its commands are CI's."""

from pathlib import Path

import pytest

from variants import catalog
from variants.registry import VARIANTS, register_variant

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_variant_table_is_the_registrys():
    """A new variant shows up in the table by `python -m variants.catalog --write README.md`,
    never by hand; this fails until that is run."""
    assert catalog.replace_block(README, catalog.markdown()) == README, (
        "README's variant table is stale: run python -m variants.catalog --write README.md"
    )
    block = README[README.index(catalog.BEGIN) : README.index(catalog.END)]  # other tables
    rows = [line for line in block.splitlines() if line.startswith("| `")]  # name arms too
    for name, variant in VARIANTS.items():
        row = next(r for r in rows if r.startswith(f"| `{name}` |"))
        for key, value in variant.overrides.items():
            assert f"{key}: " in row and f"→ {value}" in row, row


def test_readme_task_table_is_the_registrys():
    """A new task (one file under bench/tasks, or a plugin) shows up in README's task table by
    `python -m variants.catalog --write README.md`; this fails until that is run."""
    from bench.tasks import TASKS

    table = catalog.task_markdown()
    assert catalog.replace_block(README, table, catalog.TASKS_BEGIN, catalog.TASKS_END) == README, (
        "README's task table is stale: run python -m variants.catalog --write README.md"
    )
    for name, cls in TASKS.items():
        assert any(line.startswith(f"| `{name}`") and cls.description in line
                   for line in table.splitlines()), name  # fmt: skip


def test_a_registered_variant_appears_in_the_table_with_its_parameters():
    register_variant("wide-test", "test only", n_embd=256)
    try:
        row = next(r for r in catalog.markdown().splitlines() if r.startswith("| `wide-test`"))
        assert "n_embd: 128 → 256" in row and f"{catalog.count_params('wide-test'):,}" in row
        assert "+" in row.split("|")[5]  # more parameters than the baseline
    finally:
        del VARIANTS["wide-test"]


def test_catalog_write_needs_the_markers(tmp_path, capsys):
    f = tmp_path / "x.md"
    f.write_text("no markers here\n")
    assert catalog.main(["--write", str(f)]) == 2
    assert "markers" in capsys.readouterr().err
    with pytest.raises(ValueError):
        catalog.replace_block("text", "table")


def test_readme_names_the_two_commands():
    assert "python ablations/run.py --variant rope" in README
    assert "nox -s tests" in README
    assert "nox -s tests" in (ROOT / ".ci" / "run").read_text()
