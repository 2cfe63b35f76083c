"""The attention-path timing script runs end to end and reports every path, flex included."""

from bench.micro import bench_attention_paths as bap  # the script, imported as a module


def test_script_times_every_path_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "paths.md"
    args = ["--T", "8", "--batch", "2", "--iters", "1", "--rounds", "1", "--out", str(out)]
    assert bap.main(args) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 8 |")]
    assert len(rows) == 5 and rows[0].endswith("| 1.00× |")
    assert "flex_attention" in rows[-1]
    assert out.read_text() == capsys.readouterr().out


def test_bad_sizes_are_one_line(capsys):
    try:
        bap.main(["--T", "1"])
    except SystemExit as e:
        assert e.code == 2
    assert "--T must be" in capsys.readouterr().err
