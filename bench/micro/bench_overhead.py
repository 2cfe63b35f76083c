"""Does the harness cost anything? Baseline `tiny` at batch 12 through `bench.core.train.run`
against a bare PyTorch loop over the same model, side by side in one process, plus
`--compile`.

    python bench/micro/bench_overhead.py                 # eager: harness vs bare loop
    python bench/micro/bench_overhead.py --compile       # also both with torch.compile
    python bench/micro/bench_overhead.py --compile --variant separate-heads

Prints the median step time and tokens/s of each, and the ratios. Rounds alternate (bare,
harness, bare, harness, ...) so that drift of the machine hits both alike.

It also splits an eager step by operator class with torch.profiler: GEMMs (mm/addmm/bmm) and
SDPA are library kernels that inductor calls unchanged on CPU, so `torch.compile` can only shrink
the rest (pointwise ops, norms, the optimizer, Python overhead). The script prints the best
speed-up compile could give if that rest vanished entirely: eager / (GEMM + SDPA).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.core.optim import make_optimizer
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.measure.env import resolve_device
from bench.tasks import build_task
from variants import GPT, preset
from variants.registry import get_variant

ROOT = Path(__file__).resolve().parents[2]

# Operator classes of the breakdown: library kernels that inductor leaves as they are on CPU.
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
SDPA_PREFIX = "aten::_scaled_dot_product"


def synthetic_text(path: Path, n_chars: int = 400_000) -> None:
    g = torch.Generator().manual_seed(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz ,.\n"
    idx = torch.randint(0, len(alphabet), (n_chars,), generator=g)
    path.write_text("".join(alphabet[i] for i in idx.tolist()))


def fresh(cfg, device):
    """The same start for every loop here: model from seed 0, the harness's AdamW, and the
    batch generator at seed 1."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    return model, make_optimizer(model, TrainConfig()), torch.Generator().manual_seed(1)


def bare_loop(
    cfg, task, device, steps: int, warmup: int, compile_: bool, batch: int
) -> list[float]:
    """The plain nanoGPT-style loop: batch, forward, backward, clip, step. Returns step ms."""
    model, opt, gen = fresh(cfg, device)
    fwd = torch.compile(model) if compile_ else model
    times = []
    for i in range(steps):
        x, y = task.train_batch(batch, gen)
        t0 = time.perf_counter()
        _, loss = fwd(x.to(device), y.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def breakdown(cfg, task, device, steps: int, warmup: int, batch: int) -> dict[str, float]:
    """Median ms of the parts of an eager step: where the time goes (and what compile can fuse)."""
    model, opt, gen = fresh(cfg, device)
    parts: dict[str, list[float]] = {"forward": [], "backward + clip": [], "AdamW": []}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(steps):
        x, y = (t.to(device) for t in task.train_batch(batch, gen))
        t0 = time.perf_counter()
        _, loss = model(x, y)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        sync()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i >= warmup:
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                parts[key].append(dt * 1e3)
    return {k: statistics.median(v) for k, v in parts.items()}


def op_classes(cfg, task, device, steps: int, batch: int) -> dict[str, float]:
    """ms a step by operator class (profiler self time averaged over `steps` eager steps):
    GEMM, SDPA and everything else. Profiler overhead inflates "rest" a little, so the bound
    derived from it is generous."""
    from torch.profiler import ProfilerActivity, profile

    model, opt, gen = fresh(cfg, device)

    def step():
        x, y = (t.to(device) for t in task.train_batch(batch, gen))
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals = {"GEMM": 0.0, "SDPA": 0.0, "rest": 0.0}
    for ev in prof.key_averages():
        key = "GEMM" if ev.key in GEMM_OPS else "SDPA" if ev.key.startswith(SDPA_PREFIX) else "rest"
        totals[key] += ev.self_cpu_time_total / 1e3 / steps  # µs over all steps → ms a step
    return totals


def harness(
    variant, cfg, task_spec, task, device, steps, warmup, compile_, batch
) -> tuple[float, float]:
    from bench.core.train import run

    train = TrainConfig(batch_size=batch, compile=compile_, timing_warmup=warmup, eval_every=10**9)
    spec = RunSpec(variant, cfg, task_spec, Budget("steps", steps), train, 0, device.type)
    m = run(spec, task=task).metrics
    return m["step_ms"], m["tokens_per_s"]


def measure_variant(variant, args, device, task, task_spec, base, emit=print) -> None:
    """Bare vs harness (eager, and compiled with --compile) for one variant; prints its table."""
    cfg = get_variant(variant).apply(base).replace(vocab_size=task.vocab_size)
    tokens_per_step = args.batch_size * task.seq_len
    modes = [False, True] if args.compile else [False]
    rows = {}
    for compile_ in modes:
        bare_ms, harness_ms = [], []
        for _ in range(args.rounds):
            t = bare_loop(cfg, task, device, args.steps, args.warmup, compile_, args.batch_size)
            bare_ms.append(statistics.median(t))
            harness_ms.append(
                harness(
                    variant,
                    cfg,
                    task_spec,
                    task,
                    device,
                    args.steps,
                    args.warmup,
                    compile_,
                    args.batch_size,
                )[0]
            )
        rows[compile_] = (statistics.median(bare_ms), statistics.median(harness_ms))
    emit(
        f"\n{variant}: device {device.type}, model {args.model}, batch {args.batch_size} × T "
        f"{task.seq_len} = {tokens_per_step} tokens/step, {args.steps} steps ({args.warmup} "
        f"untimed), median of {args.rounds} alternating rounds"
    )
    emit(
        f"{'mode':<10}{'bare ms':>10}{'harness ms':>12}{'bare tok/s':>13}{'harness tok/s':>15}"
        f"{'harness/bare':>14}"
    )
    for compile_, (b, h) in rows.items():
        name = "compile" if compile_ else "eager"
        emit(
            f"{name:<10}{b:>10.2f}{h:>12.2f}{tokens_per_step / b * 1e3:>13,.0f}"
            f"{tokens_per_step / h * 1e3:>15,.0f}{h / b:>14.3f}"
        )
    parts = breakdown(cfg, task, device, args.steps, args.warmup, args.batch_size)
    emit("eager step breakdown (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    if args.compile:
        speedup = rows[False][1] / rows[True][1]
        emit(f"compile speed-up (harness, eager ms / compiled ms): {speedup:.2f}×")
        if device.type == "cpu":
            ops = op_classes(cfg, task, device, min(args.steps, 40), args.batch_size)
            total = sum(ops.values())
            floor = ops["GEMM"] + ops["SDPA"]
            emit(
                "eager step by operator class (profiler self time, ms): "
                + ", ".join(f"{k} {v:.1f} ({v / total:.0%})" for k, v in ops.items())
            )
            emit(
                f"best compile speed-up if everything but GEMM and SDPA vanished: "
                f"{total:.1f} / {floor:.1f} = {total / floor:.2f}×"
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--model", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--variant",
        action="append",
        help="named variant to measure (repeatable; default baseline)",
    )
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument(
        "--out", metavar="FILE.md", help="also write the output there, with command and machine"
    )
    args = p.parse_args(argv)
    if args.steps <= args.warmup or args.warmup < 0 or args.rounds < 1 or args.batch_size < 1:
        p.error(
            f"need --steps > --warmup >= 0, --rounds >= 1 and --batch-size >= 1 (got --steps "
            f"{args.steps}, --warmup {args.warmup}, --rounds {args.rounds}, --batch-size "
            f"{args.batch_size})"
        )
    try:
        device = resolve_device(args.device)
        preset(args.model)
    except ValueError as e:
        p.error(str(e))
    variants = args.variant or ["baseline"]
    for v in variants:
        try:
            get_variant(v)  # unknown names fail before anything is timed
        except ValueError as e:
            p.error(str(e))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text.txt"
        synthetic_text(path)
        base = preset(args.model)
        task = build_task("text", context=base.block_size, data=str(path))
        task_spec = {"name": "text", "data": str(path)}
        lines: list[str] = []

        def emit(*parts):
            text = " ".join(str(x) for x in parts)
            print(text)
            lines.append(text)

        for v in variants:
            measure_variant(v, args, device, task, task_spec, base, emit)
    if args.out:
        from bench.measure import environment

        env = environment(device)
        command = " ".join(["python bench/micro/bench_overhead.py", *(argv or sys.argv[1:])])
        header = [
            f"`{command}`",
            "",
            f"{env.get('device_name')} ({env.get('cpu_count')} cores, {env.get('torch_threads')}"
            f" torch threads) · torch {env.get('torch')} · git {str(env.get('git_commit'))[:10]}"
            f" · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        ]
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(header) + "\n\n```\n" + "\n".join(lines).strip() + "\n```\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
