"""Every check a lent GPU should run, as one command that fits in about 8 minutes:

    python bench/gpu_checks.py                  # on the GPU: writes results/gpu/<device>/
    python bench/gpu_checks.py --dry-run        # on a CPU: the same steps at toy size

The steps, each a subprocess with its own time limit, in this order (a step that fails or runs
out of time is recorded and the next one still runs, so one bad step costs no other figure):

1. ``kernel-tests``: the Triton kernel's tests, bf16 included (tests/test_flash_attn.py);
2. ``kernel-bench``: our kernel against SDPA's flash backend and eager attention, forward and
   forward+backward, T = 1024 ... 8192, head dims 64 and 128, causal, bf16, with the target
   check (bench/micro/bench_flash_attn.py);
3. ``train-eager`` and ``train-compile``: the ``small`` model on tiny Shakespeare, baseline and
   ``flash-triton``, one seed, eager and with ``--compile``;
4. ``seams``: the blocks that reach the kernels through the attention seams (GQA, ALiBi, a
   window, the speedrun set with QK-norm and the logit cap), ``small``, a short run each on CUDA
   with bf16 autocast.

Everything lands in ``results/gpu/<device-slug>/`` (``--dry-run``: ``results/local/gpu-dry-run/``):
``checks.md`` (each step's command, wall time, exit status and the tail of its output), the
benchmark's CSV and Markdown, and the runs' records and tables. ``--dry-run`` runs the same
steps on the CPU at toy size (a few kernel tests under Triton's interpreter, a 64-token
benchmark, the micro model for a few steps) so that the script itself is tested without a GPU.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAIL_LINES = 25  # of each step's output, in checks.md


def _seams() -> dict:
    """The attention seams a block reaches the kernels through: name -> does config `c` use it."""
    from variants.config import ModelConfig
    from variants.registry import SLOTS

    base = ModelConfig()
    return {
        "k/v groups": lambda c: c.kv_heads != c.n_head,
        "score bias": lambda c: SLOTS["position"][c.position].bias is not None,
        "window": lambda c: c.attn_window > 0,
        "q/k transform and caps": lambda c: (
            c.qk_norm != base.qk_norm or c.attn_softcap > 0 or c.logit_softcap > 0
        ),
    }


def seam_variants() -> tuple[str, ...]:
    """One registered variant per seam, read off the registry rather than named here: the one
    that changes the most (so the speedrun set covers QK-norm and the logit cap at once; a tie
    goes to the first registered), each listed once, in the seams' order."""
    from variants.config import ModelConfig
    from variants.registry import VARIANTS

    applied = {name: v.apply(ModelConfig()) for name, v in VARIANTS.items()}
    size = {name: len(v.overrides) + len(v.options) for name, v in VARIANTS.items()}
    chosen: list[str] = []
    for uses in _seams().values():
        users = [name for name, cfg in applied.items() if uses(cfg)]
        if users:
            best = max(users, key=lambda n: size[n])  # max keeps the first of equals
            chosen += [best] if best not in chosen else []
    return tuple(chosen)


def kernel_variants() -> tuple[str, str]:
    """(the variant on our Triton kernel, its CPU stand-in): the one whose attention kernel is
    marked `plain_only` (ours), and the one on another non-default kernel (the naive one)."""
    from variants.config import ModelConfig
    from variants.registry import SLOTS, VARIANTS

    base = ModelConfig()
    kernels = {n: v.apply(base).attention for n, v in VARIANTS.items()}
    others = {n: k for n, k in kernels.items() if k != base.attention}
    ours = next(n for n, k in others.items() if getattr(SLOTS["attention"][k], "plain_only", 0))
    stand_in = next(
        n for n, k in others.items() if not getattr(SLOTS["attention"][k], "plain_only", 0)
    )
    return ours, stand_in


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    timeout_s: int
    out_dir: Path | None = None  # where the step writes, for the summary


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def steps(out: Path, dry_run: bool) -> list[Step]:
    """The checks, GPU-sized or (dry run) CPU-sized. Time limits add up to under 8 minutes."""
    py = sys.executable
    run = [py, str(ROOT / "ablations" / "run.py"), "--quiet", "--seeds", "1"]
    bench = [py, str(ROOT / "bench" / "micro" / "bench_flash_attn.py"), "--out-dir", str(out)]
    kernel, stand_in = kernel_variants()
    if dry_run:
        tests = ["-k", "test_matches_reference and fp32 and D64 and T33 or test_bfloat16"]
        bench += ["--device", "cpu", "--dtype", "fp16", "--seq-lens", "64", "--head-dims", "16"]
        bench += ["--causal", "causal", "--tokens", "64", "--model-dim", "32"]
        train = ["--model", "micro", "--steps", "6", "--device", "cpu", "--eval-every", "3"]
        train += ["--variant", stand_in]  # the Triton kernel needs a GPU (or interpreter)
        seams = ["--model", "micro", "--steps", "4", "--device", "cpu", "--eval-every", "2"]
    else:
        tests = []
        bench += ["--seq-lens", "1024", "2048", "4096", "8192", "--causal", "causal"]
        train = ["--model", "small", "--steps", "300", "--batch-size", "32", "--device", "cuda"]
        train += ["--variant", kernel]
        seams = ["--model", "small", "--steps", "40", "--batch-size", "32", "--device", "cuda"]
        seams += ["--eval-every", "20"]  # five short runs must fit the step's minute
    for name in seam_variants():
        seams += ["--variant", name]
    pytest = [py, "-m", "pytest", str(ROOT / "tests" / "test_flash_attn.py"), "-q", *tests]
    return [
        Step("kernel-tests", pytest, 120),
        Step("kernel-bench", bench, 130, out),
        Step("train-eager", [*run, *train, "--out", str(out / "train")], 60, out / "train"),
        Step(
            "train-compile",
            [*run, *train, "--compile", "--out", str(out / "train-compile")],
            100,
            out / "train-compile",
        ),
        Step("seams", [*run, *seams, "--out", str(out / "seams")], 60, out / "seams"),
    ]


def run_step(step: Step, env: dict) -> dict:
    """Run one step; never raises: a failure or a time-out is part of the result."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(
            step.argv,
            capture_output=True,
            text=True,
            timeout=step.timeout_s,
            env=env,
            cwd=ROOT,
        )
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        status = f"timed out after {step.timeout_s} s"
        output = "".join(
            x.decode() if isinstance(x, bytes) else x or "" for x in (err.stdout, err.stderr)
        )
    return {"step": step, "status": status, "wall_s": time.perf_counter() - t0, "output": output}


def report(results: list[dict], device: str, dry_run: bool) -> str:
    """checks.md: what ran, how long, whether it passed, and the end of what it printed."""
    lines = [
        f"# GPU checks on {device}"
        + (" (CPU dry run: toy sizes, no speed figures)" if dry_run else ""),
        "",
        f"Command: `python bench/gpu_checks.py{' --dry-run' if dry_run else ''}`",
        "",
        "| step | status | wall s | output |",
        "|---|---|---:|---|",
    ]
    for r in results:
        where = r["step"].out_dir
        rel = where.relative_to(ROOT) if where is not None and where.is_relative_to(ROOT) else where
        status = "ok" if r["status"] == 0 else f"FAILED ({r['status']})"
        lines.append(f"| {r['step'].name} | {status} | {r['wall_s']:.0f} | {rel or '—'} |")
    for r in results:
        tail = r["output"].strip().splitlines()[-TAIL_LINES:]
        lines += [
            "",
            f"## {r['step'].name}",
            "",
            "```",
            shlex.join(r["step"].argv),
            "",
            *tail,
            "```",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU (no GPU needed)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: see above)")
    args = p.parse_args(argv)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU here; on a CPU try: python bench/gpu_checks.py --dry-run")
        return 2
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.dry_run:
        env["TRITON_INTERPRET"] = "1"
        device = "cpu"
        out = args.out or ROOT / "results" / "local" / "gpu-dry-run"
    else:
        device = torch.cuda.get_device_name(0)
        out = args.out or ROOT / "results" / "gpu" / _slug(device)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for step in steps(out, args.dry_run):
        print(f"{step.name}: {shlex.join(step.argv)}", flush=True)
        results.append(run_step(step, env))
        r = results[-1]
        print(f"{step.name}: {'ok' if r['status'] == 0 else r['status']} in {r['wall_s']:.0f} s")
        (out / "checks.md").write_text(report(results, device, args.dry_run))  # kept as it goes
    print(f"wrote {out / 'checks.md'}")
    return 0 if all(r["status"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
