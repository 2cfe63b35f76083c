"""What a block costs against the fastest path torch offers for it, and what it costs a step.

    python bench/micro/bench_block_paths.py                     # tiny's shapes, one thread
    python bench/micro/bench_block_paths.py --out results/local/bench/block_paths.md

Two tables. Blocks: forward + backward of each norm and MLP as the model builds it (`ours`),
beside the other torch paths for the same function (`F.rms_norm`, torch's fused RMSNorm op; the
SwiGLU gate and value as two matmuls or one), so a slow block is seen to be our implementation
or the function itself. Steps: one training step (forward, backward, AdamW) of the whole tiny
model for the baseline, `rmsnorm` and `swiglu`, and the ratio to the baseline with the targets
of issue 19 (rmsnorm within 3% of layernorm, swiglu within 10% of gelu at equal parameters).
One thread; median of `--rounds` timings of `--iters` calls, the candidates interleaved round
by round so that drift in the machine's speed hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.measure import device_name
from variants import GPT, preset
from variants.mlp import GeluMLP, SwiGLU
from variants.norm import LayerNorm, RMSNorm
from variants.registry import VARIANTS

ROOT = Path(__file__).resolve().parents[2]

TARGETS = {"rmsnorm": 1.03, "swiglu": 1.10}  # step time over the baseline's, at most


def _interleaved(fns: dict, iters: int, rounds: int) -> dict[str, float]:
    """Median ms per call of each function, timed round-robin."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: allocations, first-call dispatch
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            samples[name].append((time.perf_counter() - t0) / iters * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


def _fwd_bwd(fn, x):
    def call():
        fn(x).sum().backward()

    return call


def _swiglu_one_matmul(mlp: SwiGLU):
    """The same SwiGLU with its gate and value weights stacked into one matmul."""
    w = torch.cat([mlp.w_gate.weight, mlp.w_up.weight]).detach().requires_grad_()

    def forward(x):
        gate, value = F.linear(x, w).chunk(2, dim=-1)
        return mlp.c_proj(F.silu(gate) * value)

    return forward


def block_rows(cfg, batch: int, iters: int, rounds: int) -> list[tuple[str, str, float]]:
    x = torch.randn(batch, cfg.block_size, cfg.n_embd, requires_grad=True)
    ln, rms = LayerNorm(cfg), RMSNorm(cfg)
    gelu, swiglu = GeluMLP(cfg), SwiGLU(cfg)
    C = (cfg.n_embd,)
    paths = {
        ("layernorm", "ours (F.layer_norm)"): _fwd_bwd(ln, x),
        ("rmsnorm", "ours"): _fwd_bwd(rms, x),
        ("rmsnorm", "F.rms_norm"): _fwd_bwd(lambda t: F.rms_norm(t, C, rms.weight, rms.eps), x),
        ("rmsnorm", "aten._fused_rms_norm"): _fwd_bwd(
            lambda t: torch.ops.aten._fused_rms_norm(t, list(C), rms.weight, rms.eps)[0], x
        ),
        ("gelu", "ours"): _fwd_bwd(gelu, x),
        ("swiglu", "ours"): _fwd_bwd(swiglu, x),
        ("swiglu", "gate+value in one matmul"): _fwd_bwd(_swiglu_one_matmul(swiglu), x),
    }
    ms = _interleaved(paths, iters, rounds)
    return [(block, path, t) for (block, path), t in ms.items()]


def _train_step(cfg, batch: int):
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    idx = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size))

    def step():
        _, loss = model(idx, targets=idx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_rows(cfg, batch: int, iters: int, rounds: int) -> list[tuple[str, float, float]]:
    names = ["baseline", *TARGETS]
    steps = {n: _train_step(VARIANTS[n].apply(cfg), batch) for n in names}
    ms = _interleaved(steps, iters, rounds)
    return [(n, ms[n], ms[n] / ms["baseline"]) for n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="size preset (default tiny)")
    ap.add_argument("--batch", type=int, default=12, help="batch (default 12, the recipe's)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", help="also write the tables to this markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = preset(args.model, vocab_size=65)
    lines = [
        f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, 1 thread; "
        f"{args.model} (C={cfg.n_embd}, T={cfg.block_size}), batch {args.batch}; median of "
        f"{args.rounds} rounds x {args.iters} calls, interleaved",
        "",
        "| block | path | fwd+bwd ms |",
        "|---|---|---:|",
    ]
    lines += [f"| {b} | {p} | {t:.3f} |" for b, p, t in block_rows(cfg, args.batch, args.iters,
                                                                     args.rounds)]  # fmt: skip
    lines += ["", "| variant | train step ms | × baseline | target |", "|---|---:|---:|---:|"]
    for name, ms, ratio in step_rows(cfg, args.batch, max(2, args.iters // 4), args.rounds):
        target = f"≤ {TARGETS[name]:.2f}×" if name in TARGETS else "—"
        met = "" if name not in TARGETS else (" (met)" if ratio <= TARGETS[name] else " (missed)")
        lines.append(f"| {name} | {ms:.2f} | {ratio:.3f}× | {target}{met} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
