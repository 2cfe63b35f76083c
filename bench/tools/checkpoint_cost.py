"""What a checkpoint costs: its size on disk, the time to write one (bench.core.resume.save,
fsync included), a training step's time, and the overhead at an interval, as a share of
training time, per model preset.

    python -m bench.tools.checkpoint_cost --model tiny --model small [--interval 600]

The step is timed on a batch of the char-level recipe (batch 12, the preset's context) with
AdamW; the checkpoint holds what a run's does (model, optimizer with its moments, RNG, a
curve of 20 points). One process, the torch threads it is given.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.core import resume
from bench.core.optim import make_optimizer
from bench.core.spec import TrainConfig
from variants import preset
from variants.model import GPT


def measure(size: str, interval_s: float, steps: int = 12, writes: int = 5) -> dict:
    cfg = preset(size, vocab_size=65)
    model = GPT(cfg)
    opt = make_optimizer(model, TrainConfig(batch_size=12))
    x = torch.randint(0, 65, (12, cfg.block_size))
    times = []
    for _ in range(steps):  # the first steps fill AdamW's moments: a checkpoint's real size
        t0 = time.perf_counter()
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    state = {
        "format": resume.FORMAT, "run_id": "cost", "step": 0, "model": model.state_dict(),
        "optimizer": [opt.state_dict()], "rng": resume.rng_state(torch.Generator()),
        "loop": {"curve": [{"step": i, "val_loss": 1.0, "train_loss": 1.0} for i in range(20)]},
    }  # fmt: skip
    write_s = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(writes):
            t0 = time.perf_counter()
            path = resume.save(Path(d), {**state, "step": i})
            write_s.append(time.perf_counter() - t0)
        size_mb = path.stat().st_size / 2**20
    step_s = statistics.median(times[2:])
    write = statistics.median(write_s)
    return {
        "model": size,
        "params_M": model.num_params() / 1e6,
        "size_MB": size_mb,
        "write_ms": write * 1e3,
        "step_ms": step_s * 1e3,
        "overhead_pct": 100 * write / interval_s,
        "steps_per_write": write / step_s,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="size preset (repeatable); default tiny")
    ap.add_argument("--interval", type=float, default=resume.AUTO_SECONDS, help="seconds")
    args = ap.parse_args(argv)
    print(f"torch threads {torch.get_num_threads()}; interval {args.interval:g} s")
    print("| model | params | checkpoint | write | step | overhead at the interval |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in args.model or ["tiny"]:
        r = measure(size, args.interval)
        print(f"| {r['model']} | {r['params_M']:.2f}M | {r['size_MB']:.1f} MB | "
              f"{r['write_ms']:.0f} ms (= {r['steps_per_write']:.1f} steps) | "
              f"{r['step_ms']:.0f} ms | {r['overhead_pct']:.3f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
