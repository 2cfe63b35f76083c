"""Benchmark the Triton FlashAttention kernel against torch SDPA (flash backend) and eager code.

GPU only. For every head dim D, sequence length T and masking mode it times the forward and the
forward+backward of three providers on the same bf16 (or fp16) inputs:

* ``triton``: ``variants.kernels.flash_attn.flash_attention`` (ours, autotuned on first call);
* ``sdpa``:   ``torch.nn.functional.scaled_dot_product_attention`` restricted to the flash backend;
* ``naive``:  eager ``softmax(q k^T * scale) v`` that materialises the T x T scores (skipped with
  status ``oom`` where it runs out of memory).

Shapes keep the work per step constant-ish: ``B = tokens // T`` sequences (default 16384 tokens per
batch) and ``H = model_dim // D`` heads (default model dim 2048), i.e. a 2048-wide model seeing
16k tokens per step. Before timing, each shape is checked once against SDPA (max abs difference
of the output and of dq, dk, dv is printed).

Timing: ``triton.testing.do_bench`` (CUDA events, median). The forward is timed with autograd
enabled (a training forward). FLOPs: forward = 4*B*H*T^2*D (two GEMMs), halved when causal;
forward+backward = 3.5x forward (the backward does 2.5x the forward's GEMM work), the convention of
the FlashAttention papers. Peak memory: ``torch.cuda.max_memory_allocated`` over one call after
``reset_peak_memory_stats``, inputs included.

Writes ``results/flash_attn/flash_attn_<gpu-slug>.csv`` (long format, one row per provider x mode
x T x D x causal) and ``.md`` (the printed tables), ending with the issue's target check: the
worst speed-up of ours over SDPA (SDPA ms / our ms, i.e. the TFLOP/s ratio) for T >= 2048 per
mode and head dim (target on an H100: fwd >= 1.1, fwd+bwd >= 1.0).

Usage::

    python bench/micro/bench_flash_attn.py                      # full sweep
    python bench/micro/bench_flash_attn.py --seq-lens 1024 4096 --head-dims 128 --causal causal

``--device cpu`` runs the same script on CPU under Triton's interpreter (set TRITON_INTERPRET=1
before Python starts) with wall-clock timing and MemTracker memory: meaningless as a speed
figure, but it proves the script end to end without a GPU (the tests do this on tiny shapes).
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from pathlib import Path

from bench.micro.flash_attn_tables import (
    MODES,
    PROVIDERS,
    attention_flops,
    gpu_slug,
    markdown_tables,
    target_lines,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time the Triton FlashAttention kernel against torch SDPA (flash backend) and "
        "eager attention: forward and forward+backward, ms, TFLOP/s and peak memory. "
        "Needs a CUDA GPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--seq-lens",
        type=int,
        nargs="+",
        default=[512, 1024, 2048, 4096, 8192, 16384],
        help="sequence lengths T",
    )
    p.add_argument("--head-dims", type=int, nargs="+", default=[64, 128], help="head dims D")
    p.add_argument(
        "--causal", choices=["both", "causal", "full"], default="both", help="masking modes to run"
    )
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    p.add_argument(
        "--tokens",
        type=int,
        default=16384,
        help="tokens per batch B*T: the batch size is max(1, tokens // T)",
    )
    p.add_argument(
        "--model-dim", type=int, default=2048, help="H*D: the number of heads is model_dim // D"
    )
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--warmup", type=int, default=25, help="do_bench warm-up time, ms")
    p.add_argument("--rep", type=int, default=200, help="do_bench measuring time, ms")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=ROOT / "results" / "flash_attn",
        help="where the CSV and Markdown files go",
    )
    p.add_argument(
        "--device",
        choices=["cuda", "cpu"],
        default="cuda",
        help="cpu: a smoke run under TRITON_INTERPRET=1 (no meaningful speed)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    import torch

    on_gpu = args.device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        print(
            "error: needs a CUDA GPU (for a CPU smoke run of the script: TRITON_INTERPRET=1 "
            "python bench/micro/bench_flash_attn.py --device cpu --dtype fp16 --seq-lens 64)"
        )
        return 1

    import torch.nn.functional as F
    import triton
    import triton.testing
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from bench.measure import device_name as name_of
    from bench.measure import peak_memory_bytes
    from variants.kernels.flash_attn import flash_attention, triton_available

    if not on_gpu:
        ok, why = triton_available()
        if not ok:
            print(f"error: {why}")
            return 1
        if args.dtype == "bf16":
            print(
                "error: Triton's interpreter computes bf16 tl.dot wrongly; use --dtype fp16 on CPU"
            )
            return 1

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = torch.device(args.device)
    device_name = name_of(device)
    causal_modes = {"both": [True, False], "causal": [True], "full": [False]}[args.causal]

    def naive_attention(q, k, v, causal):
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, T)
        if causal:
            T = q.shape[-2]
            mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v

    def sdpa_flash(q, k, v, causal):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    impls = {
        "triton": lambda q, k, v, c: flash_attention(q, k, v, causal=c),
        "sdpa": sdpa_flash,
        "naive": naive_attention,
    }

    def free():
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    def time_ms(call, inputs) -> float:
        """Median ms of `call`: CUDA events through do_bench on a GPU, wall clock on CPU."""
        if on_gpu:
            return triton.testing.do_bench(
                call,
                warmup=args.warmup,
                rep=args.rep,
                grad_to_none=list(inputs),
                return_mode="median",
            )
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1e3)
            for t in inputs:
                t.grad = None
        return statistics.median(times)

    def measure(fn, q, k, v, do, causal, mode) -> dict:
        """Peak memory of one call, then the do_bench median; OOM and failures are recorded."""

        def call():
            out = fn(q, k, v, causal)
            if mode == "fwd+bwd":
                out.backward(do)

        try:
            free()
            sync()
            # Inputs count too: on CUDA they are allocated already; on CPU MemTracker sees
            # them as buffers of a throwaway module.
            inputs = torch.nn.Module()
            for i, t in enumerate((q, k, v, do)):
                inputs.register_buffer(f"t{i}", t)
            peak = peak_memory_bytes(call, device, modules=[inputs]) / 2**20
            for t in (q, k, v):
                t.grad = None
            ms = time_ms(call, (q, k, v))
            return {"ms": ms, "peak_mem_mb": peak, "status": "ok"}
        except torch.cuda.OutOfMemoryError:
            return {"status": "oom"}
        except Exception as exc:  # a provider failing must not end the sweep
            return {"status": "error: " + str(exc).splitlines()[0][:200]}
        finally:
            for t in (q, k, v):
                t.grad = None
            free()

    rows: list[dict] = []
    for D in args.head_dims:
        H = max(1, args.model_dim // D)
        for T in args.seq_lens:
            B = max(1, args.tokens // T)
            for causal in causal_modes:
                q, k, v = (
                    torch.randn(B, H, T, D, device=device, dtype=dtype, requires_grad=True)
                    for _ in range(3)
                )
                do = torch.randn(B, H, T, D, device=device, dtype=dtype)
                tag = f"D={D} T={T} B={B} H={H} causal={causal}"

                # Correctness once per shape (this also autotunes our kernels for the shape).
                results = {}
                for name in ("triton", "sdpa"):
                    try:
                        out = impls[name](q, k, v, causal)
                        out.backward(do)
                        results[name] = [out.detach()] + [t.grad.detach() for t in (q, k, v)]
                    except Exception as exc:  # e.g. no flash SDPA kernel for this GPU / dtype
                        print(f"[check] {tag}: {name} failed: {str(exc).splitlines()[0]}")
                    finally:
                        for t in (q, k, v):
                            t.grad = None
                if len(results) == 2:
                    diffs = [
                        (a.float() - b.float()).abs().max().item()
                        for a, b in zip(results["triton"], results["sdpa"], strict=True)
                    ]
                    print(
                        f"[check] {tag}: max|triton - sdpa| out {diffs[0]:.2e} "
                        f"dq {diffs[1]:.2e} dk {diffs[2]:.2e} dv {diffs[3]:.2e}",
                        flush=True,
                    )
                results.clear()
                free()

                for provider in args.providers:
                    for mode in args.modes:
                        row = {
                            "device": device_name,
                            "torch": torch.__version__,
                            "triton": triton.__version__,
                            "provider": provider,
                            "mode": mode,
                            "causal": causal,
                            "T": T,
                            "D": D,
                            "B": B,
                            "H": H,
                            "ms": float("nan"),
                            "tflops": float("nan"),
                            "peak_mem_mb": float("nan"),
                            "ratio_vs_sdpa": float("nan"),
                        }
                        row.update(measure(impls[provider], q, k, v, do, causal, mode))
                        if row["status"] == "ok":
                            flops = attention_flops(B, H, T, D, causal, mode)
                            row["tflops"] = flops / row["ms"] * 1e-9
                        print(
                            f"  {provider:>6} {mode:<7} {tag}: "
                            + (
                                f"{row['ms']:.3f} ms {row['tflops']:.1f} TFLOP/s "
                                f"{row['peak_mem_mb']:.0f} MB"
                                if row["status"] == "ok"
                                else row["status"]
                            ),
                            flush=True,
                        )
                        rows.append(row)
                del q, k, v, do
                free()

    # Time relative to SDPA for the same (mode, T, D, causal): < 1 means faster than SDPA.
    sdpa_ms = {
        (r["mode"], r["T"], r["D"], r["causal"]): r["ms"]
        for r in rows
        if r["provider"] == "sdpa" and r["status"] == "ok"
    }
    for r in rows:
        ref = sdpa_ms.get((r["mode"], r["T"], r["D"], r["causal"]))
        if ref and r["status"] == "ok":
            r["ratio_vs_sdpa"] = r["ms"] / ref

    header = [
        f"## FlashAttention benchmark: {device_name}",
        "",
        f"torch {torch.__version__}, triton {triton.__version__}, {args.dtype}, "
        f"B = {args.tokens} // T, H = {args.model_dim} // D.",
        (
            "ms: median of triton.testing.do_bench (CUDA events); "
            if on_gpu
            else "CPU SMOKE RUN under Triton's interpreter: ms are wall clock and say nothing "
            "about the kernel's speed; "
        )
        + "fwd timed with autograd on. "
        "TFLOP/s: fwd = 4*B*H*T^2*D (halved when causal), fwd+bwd = 3.5x fwd. "
        "Peak MB: peak allocated over one call, inputs included. "
        "triton/sdpa time: < 1 means ours is faster.",
    ]
    table = markdown_tables(rows, header)
    table += "\n### Target check\n\n" + "\n".join(target_lines(rows)) + "\n"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"flash_attn_{gpu_slug(device_name)}"
    write_csv(args.out_dir / f"{stem}.csv", rows)
    (args.out_dir / f"{stem}.md").write_text(table)
    print()
    print(table)
    print(f"wrote {args.out_dir / (stem + '.csv')} and {args.out_dir / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
