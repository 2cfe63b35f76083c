"""The scaling study: the power-law fit and its inversion on constructed losses (exact answers),
the study's one-line errors, and the controls on real training at micro scale."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench import scaling

LAW = scaling.PowerLaw(l_inf=1.5, a=2.0, alpha=0.3, c0=1e9)
SIZES = {"s1": 1e9, "s2": 4e9, "s3": 1.6e10, "s4": 6.4e10}


def _frame(arms: dict, noise: float = 0.0, seeds: int = 3) -> pd.DataFrame:
    """Rows on the law: arm -> (compute factor on the loss side, factor on the spent side)."""
    rng = np.random.default_rng(0)
    rows = []
    for size, c in SIZES.items():
        for seed in range(seeds):
            luck = noise * rng.standard_normal()  # shared by every arm of this seed
            for arm, worth in arms.items():
                k = worth(c) if callable(worth) else worth
                loss = float(LAW.predict(c * k)) + luck
                rows.append({"arm": arm, "size": size, "seed": seed, "compute": c, "loss": loss})
    return pd.DataFrame(rows)


def test_fit_recovers_the_law_and_inverts():
    c = np.array(list(SIZES.values()))
    fit = scaling.fit_power_law(c, LAW.predict(c))
    assert fit.alpha == pytest.approx(0.3, rel=1e-3) and fit.l_inf == pytest.approx(1.5, rel=1e-3)
    assert fit.invert(float(LAW.predict(3e9))) == pytest.approx(3e9, rel=1e-3)
    assert fit.invert(1.0) == math.inf  # below the asymptote: no compute reaches it
    with pytest.raises(ValueError, match="3 or more sizes"):
        scaling.fit_power_law(c[:2], LAW.predict(c[:2]))


def test_multipliers_read_what_was_built_in():
    """An arm whose loss is the baseline's at 2x its compute reads 2 at every size, the
    baseline's twin reads 1; with seed noise the intervals contain them; neither is flagged,
    while an arm worth more at every larger size is flagged as growing."""
    frame = _frame({"baseline": 1.0, "twice": 2.0, "twin": 1.0, "grows": lambda c: c / 1e9},
                   noise=0.01)  # fmt: skip
    res = scaling.compute_multipliers(frame, n_boot=300)
    m = res.multipliers.set_index(["arm", "size"])
    for size in SIZES:
        assert 1.6 < m.loc[("twice", size), "multiplier"] < 2.5
        assert m.loc[("twice", size), "ci_low"] <= 2 <= m.loc[("twice", size), "ci_high"]
        assert m.loc[("twin", size), "ci_low"] <= 1 <= m.loc[("twin", size), "ci_high"]
    flags = res.trends.set_index("arm")["flag"]
    assert flags["twice"] == "" and flags["twin"] == "" and flags["grows"] == "grows with size"
    lo, hi = res.fit_ci["alpha"]
    assert lo <= 0.3 <= hi
    exact = scaling.compute_multipliers(_frame({"baseline": 1.0, "twice": 2.0}), n_boot=20)
    assert np.allclose(exact.multipliers["multiplier"], 2.0, rtol=1e-3)


def test_a_worse_arm_reads_below_one():
    frame = _frame({"baseline": 1.0, "worse": 0.25})
    m = scaling.compute_multipliers(frame, n_boot=50).multipliers
    assert (m["multiplier"] < 0.3).all()


# ---------------------------------------------------------------------------------------------
# the study: one-line errors, and the controls on real training (micro ladders, tiny Shakespeare)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sizes", "2x64,3x96,4x128"], ["--sizes", "4 or more"]),
        (["--sizes", "2x64,3x96,4x128,big"], ["--sizes 'big'", "LAYERSxWIDTH"]),
        (["--sizes", "1x64,2x64,3x96,4x100"], ["--sizes '4x100'", "multiple of 8"]),
        (["--variant", "nope"], ["nope"]),
        (["--seeds", "1"], ["--seeds 2"]),
    ],
)
def test_bad_scaling_args_are_one_line(tmp_path, args, words):
    from test_harness import cli, one_line_error

    one_line_error(cli("--study", "scaling", "--out", str(tmp_path / "s"), *args), *words)
    assert not (tmp_path / "s").exists()


def test_sizes_belong_to_the_scaling_study(tmp_path):
    from test_harness import cli

    r = cli("--study", "heads", "--sizes", "1x64,2x64,3x96,4x128", "--out", str(tmp_path / "h"))
    assert r.returncode == 2 and "--sizes is for --study scaling" in r.stderr


def _study(tmp_path, sizes, tpp, variants, control):
    from ablations.studies.base import StudyContext
    from ablations.studies.scaling import Ladder, ScalingStudy

    study = ScalingStudy(Ladder(sizes, 32, 16, tpp, 3e-3), n_boot=300, control=control)
    ctx = StudyContext(out=tmp_path, seeds=2, quiet=True, variants=variants, jobs=2)
    report = study.run(ctx)
    frame = pd.read_csv(tmp_path / "scaling.csv")
    return report, {(r.arm, r.size): r for r in frame.itertuples()}


@pytest.mark.slow
def test_baseline_on_twice_the_tokens_reads_about_two(tmp_path):
    """The control arm of the study: the baseline on 2x the tokens reads about 2 at every size
    (micro ladder, 10 tokens/param: measured 2.25, 2.48, 2.05 inside the curve's range and 3.7
    extrapolated past the largest baseline). The fixed-tokens-per-parameter curve is not the
    2x-data direction, so 'about': within a factor 1.5 of 2 inside the range, > 1.33 outside."""
    report, cells = _study(tmp_path, ((1, 16), (1, 32), (2, 32), (2, 48)), 10, ("baseline",),
                           True)  # fmt: skip
    print(report)
    control = [c for (arm, _), c in cells.items() if arm == "baseline ×2 tokens"]
    assert len(control) == 4
    for c in control:
        assert 1.33 < c.multiplier < (6.0 if c.extrapolated else 3.0), c
    assert (tmp_path / "scaling.png").stat().st_size > 10_000 and "α =" in report


@pytest.mark.slow
def test_no_residual_at_depth_8_reads_below_one(tmp_path):
    """Without the residual an 8-block model barely learns: it is worth less than the baseline's
    compute at every width (and the study flags its multiplier's trend, if any)."""
    report, cells = _study(tmp_path, ((8, 16), (8, 24), (8, 32), (8, 40)), 1.5,
                           ("no-residual",), False)  # fmt: skip
    print(report)
    nores = [c for (arm, _), c in cells.items() if arm == "no-residual"]
    assert len(nores) == 4 and all(c.multiplier < 1 for c in nores), nores
