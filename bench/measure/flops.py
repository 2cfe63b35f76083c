"""FLOPs and MFU: training FLOPs per token counted from a model's matmul shapes, the device's
peak (measured once per machine, and the datasheet's as a cross-check), and their ratio."""

from __future__ import annotations

import json
import math
import re
import time

import torch

from bench.measure.env import as_device, device_name, sync


def attended_keys(seq_len: int, window: int = 0) -> float:
    """Mean number of keys a query attends to in causal attention over `seq_len` positions:
    position t (1-based) sees min(t, window) keys (all t without a window), so (T + 1) / 2
    causal (about T/2), and about the window once T is much longer than it."""
    w = seq_len if window <= 0 else min(window, seq_len)
    return (w * (w + 1) / 2 + (seq_len - w) * w) / seq_len


def flops_per_token(model: torch.nn.Module, seq_len: int) -> int:
    """Training FLOPs per token (forward + backward = 3 x forward) of a GPT, counted from its
    module shapes so that a variant is charged what it computes.

    Forward, 2 FLOPs per multiply-add:
    * ``2 x`` the weights of every ``nn.Linear`` (each multiplies every token once): the
      attention projections as built (GQA/MQA's narrower k/v), the MLP's matrices (SwiGLU's
      three), and the output head (``2 * d * vocab``, tied or not);
    * ``2 * n_layer * keys * d`` for QK^T and as much again for AV, ``keys`` the mean number of
      keys a query attends to (`attended_keys`: (T + 1) / 2 causal, about the window with a
      sliding window) and d = heads x head size = n_embd. For causal attention this is Kaplan et
      al.'s ``2 * n_layer * n_ctx * d_attn``.
    Embedding lookups (gathers), norms, activations, softmax and rotary embeddings are not
    matmuls and are left out. A block whose matmuls are not ``nn.Linear`` (a plugin's raw
    parameters) is not seen. `model` needs a ``cfg`` with n_layer, n_embd and attn_window (a
    `variants.model.GPT`; build it on the meta device to count without memory).
    """
    cfg = model.cfg
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = 4 * cfg.n_layer * cfg.n_embd * attended_keys(seq_len, cfg.attn_window)
    return round(3 * (2 * weights + attention))


def _rates(half: float | None, tf32: float | None, fp32: float, bf16: bool = True) -> dict:
    """Peak table row from TFLOP/s numbers; ``bf16=False`` for parts without bf16 units."""
    t = 1e12
    return {
        "bf16": half * t if (bf16 and half is not None) else None,
        "fp16": half * t if half is not None else None,
        "tf32": tf32 * t if tf32 is not None else None,
        "fp32": fp32 * t,
    }


# Dense (no structured sparsity) peak FLOP/s from NVIDIA datasheets. "bf16"/"fp16" are tensor
# core rates with fp32 accumulation (what PyTorch uses); "tf32" is the tensor-core rate used for
# fp32 matmuls when TF32 is allowed; "fp32" the plain CUDA-core rate. First match wins, so the
# more specific names come first. Unknown entries are None (e.g. no bf16 on V100/T4).
_PEAK_TABLE: list[tuple[str, dict[str, float | None]]] = [
    (r"\bGH200\b", _rates(989.4, 494.7, 67)),
    (r"\bH200 NVL\b", _rates(835.5, 417.5, 60)),
    (r"\bH200\b", _rates(989.4, 494.7, 67)),
    (r"\bH100 NVL\b", _rates(835.5, 417.5, 60)),
    (r"\bH100 PCIe\b", _rates(756.5, 378, 51.2)),
    (r"\bH100\b", _rates(989.4, 494.7, 67)),  # e.g. "NVIDIA H100 80GB HBM3": the SXM part
    (r"\bA100\b", _rates(312, 156, 19.5)),
    (r"\bA10\b", _rates(125, 62.5, 31.2)),  # not "A10G", whose clocks differ
    (r"\bL40S\b", _rates(362.05, 183, 91.6)),
    (r"\bL40\b", _rates(181, 90.5, 90.5)),
    (r"\bL4\b", _rates(121, 60, 30.3)),
    (r"\bRTX 4090\b", _rates(165.2, 82.6, 82.6)),
    (r"\bRTX 3090 Ti\b", _rates(80, 40, 40)),
    (r"\bRTX 3090\b", _rates(71, 35.6, 35.6)),
    (r"\bV100\b", _rates(125, None, 15.7, bf16=False)),
    (r"\bT4\b", _rates(65, None, 8.1, bf16=False)),
]

_DTYPE_KEYS = {
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float32: "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "tf32": "tf32",
}


def _tf32_enabled() -> bool:
    try:
        return torch.get_float32_matmul_precision() != "highest"
    except Exception:  # pragma: no cover - very old/new torch
        return bool(torch.backends.cuda.matmul.allow_tf32)


def peak_flops(device: torch.device | str, dtype: torch.dtype | str) -> float | None:
    """Dense peak FLOP/s of a known GPU for ``dtype``, or None (unknown GPU, CPU, no such unit).

    ``torch.float32`` maps to the TF32 tensor-core rate when PyTorch currently allows TF32 for
    fp32 matmuls (``torch.set_float32_matmul_precision("high"/"medium")``), otherwise to the
    plain fp32 rate; pass ``"tf32"``/``"fp32"`` to choose explicitly.
    """
    device = as_device(device)
    if device.type != "cuda":
        return None
    key = _DTYPE_KEYS.get(dtype)
    if key is None:
        return None
    if key == "fp32" and dtype is torch.float32 and _tf32_enabled():
        key = "tf32"
    return _peak_for_name(device_name(device), key)


def _peak_for_name(name: str, key: str) -> float | None:
    for pattern, rates in _PEAK_TABLE:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return rates.get(key)
    return None


# Square matmul sizes for the measured peak: large enough to reach the GEMM library's best rate
# (a 1-thread 2-core Xeon: 127 GFLOP/s at 512, 156 at 1024, 158 at 2048), small enough to take
# well under a second once per machine.
_PEAK_N = {"cpu": 1024, "cuda": 8192}
_PEAK_REPEATS = 5
_PEAK_CACHE_FILE = "peak_flops.json"
_peak_memo: dict[str, float] = {}


def _peak_key(device: torch.device, dtype: torch.dtype) -> str:
    threads = f" x{torch.get_num_threads()} threads" if device.type == "cpu" else ""
    return f"{device_name(device)} | {str(dtype).replace('torch.', '')}{threads}"


def _time_matmul(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of `_PEAK_REPEATS` dense (n x n) @ (n x n) products after two warm-ups."""
    n = _PEAK_N[device.type]
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    best = math.inf
    for i in range(2 + _PEAK_REPEATS):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        if i >= 2:
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def measured_peak_flops(device: torch.device | str, dtype: torch.dtype) -> float:
    """The dense matmul FLOP/s this device reaches in `dtype` (on CPU with this process's torch
    threads): the best of a few large square matmuls, measured once per machine and cached in
    the cache folder (`peak_flops.json`, keyed by device name, dtype and threads). MFU is
    reported against this; the datasheet table (`peak_flops`) stays as a labelled cross-check
    on GPUs, where it once gave an MFU above 100%."""
    from bench.core.records import cache_dir, write_json_atomic

    device = as_device(device)
    key = _peak_key(device, dtype)
    if key in _peak_memo:
        return _peak_memo[key]
    path = cache_dir() / _PEAK_CACHE_FILE
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict) or not _a_peak(cached.get(key)):  # measure it (again)
        cached = cached if isinstance(cached, dict) else {}
        cached[key] = _time_matmul(device, dtype)
        try:
            write_json_atomic(path, cached)
        except OSError:
            pass  # an unwritable cache only means measuring again next time
    _peak_memo[key] = float(cached[key])
    return _peak_memo[key]


def _a_peak(value) -> bool:
    """A cached peak worth using: a finite positive number (a hand-edited or corrupt cache
    entry, negative, zero, NaN or a string, is measured again)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value) and value > 0


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the device peak (None if unknown)."""
    if peak is None or not peak > 0 or tokens_per_s is None:
        return None
    return float(flops_per_token) * float(tokens_per_s) / float(peak)
