"""README stays true: its variant table lists every named variant with the right change."""

from pathlib import Path

from variants.registry import VARIANTS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_variant_is_in_the_readme_table():
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in README.splitlines()
        if line.startswith("| `")
    }
    for name, variant in VARIANTS.items():
        assert name in rows, f"README's variant table lacks {name}"
        if len(variant.overrides) == 1:
            ((slot, value),) = variant.overrides.items()
            assert f"{slot}: " in rows[name] and f"→ {value}" in rows[name], rows[name]


def test_readme_names_the_two_commands():
    assert "python ablations/run.py --variant rope" in README
    assert "nox -s tests" in README
    assert "nox -s tests" in (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
