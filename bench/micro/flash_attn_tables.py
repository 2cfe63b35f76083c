"""What bench_flash_attn.py writes: the CSV rows, the markdown tables, and the lines that check
the kernel against its targets (SDPA's time over ours at T >= 2048 on an H100)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

PROVIDERS = ("triton", "sdpa", "naive")
MODES = ("fwd", "fwd+bwd")
CSV_COLUMNS = [
    "device",
    "torch",
    "triton",
    "provider",
    "mode",
    "causal",
    "T",
    "D",
    "B",
    "H",
    "ms",
    "tflops",
    "peak_mem_mb",
    "ratio_vs_sdpa",
    "status",
]
TARGET_T = 2048  # the targets hold for T >= 2048
TARGETS = {"fwd": 1.1, "fwd+bwd": 1.0}  # SDPA ms / our ms, on an H100


def target_lines(rows: list[dict]) -> list[str]:
    """The worst speed-up over SDPA (SDPA ms / ours) for T >= TARGET_T, per mode and head dim,
    against TARGETS; one line each."""
    lines = []
    for mode, goal in TARGETS.items():
        for D in sorted({r["D"] for r in rows}):
            ratios = [
                1.0 / r["ratio_vs_sdpa"]
                for r in rows
                if r["provider"] == "triton"
                and r["mode"] == mode
                and r["D"] == D
                and r["T"] >= TARGET_T
                and r["status"] == "ok"
                and not math.isnan(r["ratio_vs_sdpa"])
            ]
            if not ratios:
                lines.append(f"- {mode}, D={D}: no T >= {TARGET_T} measured against SDPA")
                continue
            worst = min(ratios)
            verdict = "meets" if worst >= goal else f"misses by {(goal - worst) / goal:.0%}"
            lines.append(
                f"- {mode}, D={D}: worst speed-up over SDPA for T >= {TARGET_T} "
                f"{worst:.2f}x over {len(ratios)} shape(s) (target {goal}x: {verdict})"
            )
    return lines


def attention_flops(B: int, H: int, T: int, D: int, causal: bool, mode: str) -> float:
    """4*B*H*T^2*D for the forward (QK^T and PV), halved when causal; x3.5 for fwd+bwd."""
    flops = 4.0 * B * H * T * T * D * (0.5 if causal else 1.0)
    return flops * (3.5 if mode == "fwd+bwd" else 1.0)


def gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_tables(rows: list[dict], header_lines: list[str]) -> str:
    """One table per mode: a row per (D, causal, T), per provider ms / TFLOP/s / peak MB."""
    providers = [p for p in PROVIDERS if any(r["provider"] == p for r in rows)]
    lines = list(header_lines)
    for mode in MODES:
        mode_rows = [r for r in rows if r["mode"] == mode]
        if not mode_rows:
            continue
        cols = ["D", "causal", "T", "B", "H"]
        for p in providers:
            cols += [f"{p} ms", f"{p} TFLOP/s", f"{p} peak MB"]
        if "triton" in providers and "sdpa" in providers:
            cols.append("triton/sdpa time")
        lines += [
            "",
            f"### {mode}",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "|".join("---" for _ in cols) + "|",
        ]
        shapes = sorted(
            {(r["D"], r["causal"], r["T"], r["B"], r["H"]) for r in mode_rows},
            key=lambda s: (s[0], not s[1], s[2]),
        )
        for D, causal, T, B, H in shapes:
            cells = [str(D), "yes" if causal else "no", str(T), str(B), str(H)]
            by_provider = {
                r["provider"]: r
                for r in mode_rows
                if (r["D"], r["causal"], r["T"]) == (D, causal, T)
            }
            for p in providers:
                r = by_provider.get(p)
                if r is None:
                    cells += ["-", "-", "-"]
                elif r["status"] != "ok":
                    cells += [r["status"].split(":")[0].upper(), "-", "-"]
                else:
                    cells += [_fmt(r["ms"]), _fmt(r["tflops"]), _fmt(r["peak_mem_mb"], 4)]
            if "triton" in providers and "sdpa" in providers:
                cells.append(_fmt(by_provider.get("triton", {}).get("ratio_vs_sdpa")))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, "") for c in CSV_COLUMNS})
