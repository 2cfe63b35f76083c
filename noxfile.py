"""Sessions: `nox -s tests` (the test suite), `nox -s lint`, `nox -s bench` (benchmarks + report),
`nox -s probes` (the capability probe panel + report), `nox -s triton_compat` (the Triton
kernel's tests under older Triton releases).

Each session installs the project into a fresh virtualenv, so a green run proves the install.
CI pins torch's CPU wheel through PIP_CONSTRAINT (see .ci/run); users are not pinned.
"""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "venv"

# The default sweep on the default task (tiny Shakespeare, its recipe): every one-change
# variant whose effect on the loss is the question, plus `modern`, 3 seeds, 600 steps each
# (the recipe's 1,400 steps would take ~30 minutes for 24 runs on a 2-core CPU). The
# equal-function variants (separate-heads, naive-attention) change speed, not the function:
# the micro-benchmarks time them, and `--variant all` after `--` puts them in the sweep too.
BENCH_STEPS = 600
BENCH_VARIANTS = [
    "rope", "no-position", "rmsnorm", "post-norm", "swiglu", "no-residual", "modern",
]  # fmt: skip


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


# Triton releases the kernel must run on besides the newest: the GPU machines carry 3.6.
OLDER_TRITONS = ["3.6.0"]


@nox.session
@nox.parametrize("triton", OLDER_TRITONS)
def triton_compat(session: nox.Session, triton: str) -> None:
    """The kernel's tests (interpreter on CPU, or the GPU) under an older Triton release.
    Triton before 3.9 needs numpy < 2.4 in its interpreter (see flash_attn._interpreter_works)."""
    session.install("-e", ".[test]", f"triton=={triton}", "numpy<2.4")
    # numpy < 2.4 still warns once per converted array; thousands of lines that say nothing new
    quiet = "ignore:Conversion of an array with ndim > 0:DeprecationWarning"
    session.run("pytest", "tests/test_flash_attn.py", "-q", "-W", quiet, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    paths = ["variants", "bench", "ablations", "tests", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


def _flag(args: list[str], name: str, default: str) -> str:
    """The value of `name` in a list of CLI args (`--name V` or `--name=V`), else default."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


@nox.session
def bench(session: nox.Session) -> None:
    """Micro-benchmarks per slot, the ablation sweep (BENCH_VARIANTS against the baseline on the
    default task's recipe at BENCH_STEPS, 3 seeds), then the report, under
    results/local/bench/sweep/. Arguments after `--` reach the sweep (ablations/run.py), e.g.
    `nox -s bench -- --model small --device cuda --steps 5000` or `-- --variant all`."""
    session.install("-e", ".[test]")
    sweep_args = list(session.posargs)
    device = _flag(sweep_args, "--device", "auto")
    out = _flag(sweep_args, "--out", "results/local/bench/sweep")
    if not any(a.startswith("--out") for a in sweep_args):
        sweep_args += ["--out", out]
    micro_json = f"{out}/micro/micro.json"
    session.run("python", "-c", f"import os; os.makedirs('{out}/micro', exist_ok=True)")
    model = _flag(sweep_args, "--model", "")
    micro_model = ["--micro-model", model] if model else []
    session.run(
        "pytest",
        "bench/micro",
        "-q",
        "-o",
        "addopts=",
        "-p",
        "no:cacheprovider",
        "--benchmark-only",
        f"--benchmark-json={micro_json}",
        "--micro-device",
        device,
        *micro_model,
    )
    given = {a.split("=")[0] for a in sweep_args}
    defaults = [] if "--variant" in given else [f"--variant={v}" for v in BENCH_VARIANTS]
    if not {"--steps", "--tokens", "--time"} & given:
        defaults += ["--steps", str(BENCH_STEPS)]
    session.run("python", "ablations/run.py", *defaults, *sweep_args)
    session.run("python", "-m", "bench.report", out)  # picks up out/micro/*.json


@nox.session
def probes(session: nox.Session) -> None:
    """The capability panel: `--study probes` (the baseline and every variant on mqar,
    selective-copy and induction, each at its recipe, 3 seeds: the scoreboard of paired
    Δ accuracy and its heatmap), then the full report of those runs in <out>/report/. Default
    <out>: results/local/studies/probes. Arguments after `--` reach the study, e.g.
    `nox -s probes -- --variant gqa --variant no-position --seeds 5`."""
    session.install("-e", ".[test]")
    args = list(session.posargs)
    out = _flag(args, "--out", "results/local/studies/probes")
    if not any(a.startswith("--out") for a in args):
        args += ["--out", out]
    session.run("python", "ablations/run.py", "--study", "probes", *args)
    # beside the study's own report.md: the tables of every probe's runs and its sections
    session.run("python", "-m", "bench.report", out, "--out", f"{out}/report")
