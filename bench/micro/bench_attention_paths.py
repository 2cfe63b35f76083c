"""Time the attention paths a block can take, forward + backward, on this machine.

    python bench/micro/bench_attention_paths.py                      # tiny's shapes, T = 64 and 256
    python bench/micro/bench_attention_paths.py --out results/local/bench/attention_paths.md

The paths: SDPA's own causal path (the plain case: baseline, RoPE, GQA); SDPA with an additive
float mask (ALiBi, sliding window); the explicit scores of `naive_attention` (attention
soft-capping); and torch's `flex_attention`, the general candidate, which is reported as it
behaves here (on CPU, torch 2.13 has no backward for it, so it cannot train). One thread, median
of `--rounds` timings of `--iters` calls each; the kernels come from `variants.attention`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.measure import device_name
from variants.attention import ScoreMods, naive_attention, sdpa_attention
from variants.config import ModelConfig
from variants.position import AlibiBias

ROOT = Path(__file__).resolve().parents[2]


def _time(fn, iters: int, rounds: int) -> float:
    """Median ms per call."""
    fn()  # warm-up (allocations, first-call dispatch)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        samples.append((time.perf_counter() - t0) / iters * 1e3)
    return statistics.median(samples)


def _flex(q, k, v, slopes, window):
    """flex_attention with ALiBi + window as score and mask modifiers, forward and backward."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    def score_mod(s, b, h, qi, ki):
        return s - slopes[h] * (qi - ki)

    def mask_mod(b, h, qi, ki):
        return (qi >= ki) & (qi - ki < window)

    T = q.size(-2)
    block = create_block_mask(mask_mod, None, None, T, T, device="cpu")
    flex_attention(q, k, v, score_mod=score_mod, block_mask=block).sum().backward()


def measure(T: int, batch: int, iters: int, rounds: int) -> list[tuple[str, str, str]]:
    cfg = ModelConfig()  # tiny's heads: 4 heads of 32
    B, nh, hs = batch, cfg.n_head, cfg.head_size
    q, k, v = (torch.randn(B, nh, T, hs, requires_grad=True) for _ in range(3))
    alibi = AlibiBias(cfg)
    window = T // 4
    paths = [
        ("SDPA, causal (plain: baseline, RoPE)", lambda: sdpa_attention(q, k, v)),
        (
            "SDPA + float mask (ALiBi and window)",
            lambda: sdpa_attention(q, k, v, 0.0, ScoreMods(bias=alibi(T), window=window)),
        ),
        (
            "explicit scores (ALiBi, window and attention cap)",
            lambda: sdpa_attention(q, k, v, 0.0, ScoreMods(30.0, alibi(T), window)),
        ),
        ("explicit scores, plain causal (naive-attention)", lambda: naive_attention(q, k, v)),
    ]
    rows = []
    base = None
    for name, fn in paths:
        ms = _time(lambda fn=fn: fn().sum().backward(), iters, rounds)
        base = base or ms
        rows.append((name, f"{ms:.2f}", f"{ms / base:.2f}×"))
    try:
        ms = _time(lambda: _flex(q, k, v, alibi.slopes, window), iters, rounds)
        rows.append(("flex_attention (ALiBi and window)", f"{ms:.2f}", f"{ms / base:.2f}×"))
    except Exception as err:  # noqa: BLE001 - reported as the result, it is what we measure
        why = str(err).split(".")[0]
        rows.append(("flex_attention (ALiBi and window)", f"cannot train: {why}", "—"))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, action="append", help="sequence lengths (default 64, 256)")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if any(t < 2 for t in args.T or []) or args.batch < 1 or args.iters < 1 or args.rounds < 1:
        p.exit(2, "error: --T must be >= 2; --batch, --iters, --rounds >= 1\n")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lines = [
        f"# Attention paths, forward + backward, on {device_name(torch.device('cpu'))}",
        "",
        f"torch {torch.__version__}, one thread, batch {args.batch}, 4 heads of 32, median of "
        f"{args.rounds} rounds × {args.iters} calls. Command: "
        "`python bench/micro/bench_attention_paths.py"
        + "".join(f" --T {t}" for t in args.T or [])
        + "`",
        "",
        "| T | path | ms | vs plain |",
        "|---|---|---|---|",
    ]
    for T in args.T or [64, 256]:
        rows = measure(T, args.batch, args.iters, args.rounds)
        lines += [f"| {T} | {name} | {ms} | {ratio} |" for name, ms, ratio in rows]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
