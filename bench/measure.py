"""Measuring side of the bench: timing, peak memory, FLOPs/MFU and the environment.

Nothing here knows about files, and of models only their shapes (`flops_per_token`). The
training loop owns the model and calls these helpers around its steps, so every variant is
measured by exactly the same code.

Conventions, chosen so numbers from different machines stay comparable:

* Times are milliseconds of wall time per step. On CUDA they come from CUDA events recorded
  around the step and read only at the end, so measuring never forces a synchronisation inside
  the hot loop (which would itself change the timing). On CPU they come from
  ``time.perf_counter``.
* Step-time summaries are robust statistics (median, p10/p90, IQR) because single steps are
  noisy (GC, allocator growth, other processes); the mean is reported too.
* Peak memory is the peak of *allocated tensor bytes* during one call, including whatever was
  already allocated before the call (parameters, optimizer state). It is not the process RSS.
* FLOPs per token are counted from the model's matmul shapes (`flops_per_token`): 6 x the
  nn.Linear weights (head included) + the causal attention actually attended, fwd + bwd.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    "StepTimer",
    "device_name",
    "environment",
    "attended_keys",
    "flops_per_token",
    "mfu",
    "peak_flops",
    "peak_memory_bytes",
    "memory_peak",
    "sync",
    "time_fn",
]


def _as_device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def sync(device: torch.device | str) -> None:
    """Wait for queued device work, so a host-side clock or counter read afterwards is honest.

    A no-op on CPU, where ops run synchronously.
    """
    device = _as_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

_SUMMARY_KEYS = ("median_ms", "p10_ms", "p90_ms", "iqr_ms", "mean_ms")
WORKERS_ENV = "TRANSFORMER_BENCH_WORKERS"  # set in worker processes: runs trained at once


def _summarise(times_ms: Iterable[float]) -> dict:
    """Robust summary of per-step times; NaNs (not an exception) when nothing was kept.

    NaN rather than raising because a run that diverged or was cut short still produces a
    record, and the record must stay JSON-able with the same keys.
    """
    arr = np.asarray(list(times_ms), dtype=np.float64)
    if arr.size == 0:
        out = {k: math.nan for k in _SUMMARY_KEYS}
        out["n"] = 0
        return out
    p10, p25, p50, p75, p90 = np.percentile(arr, [10, 25, 50, 75, 90])
    return {
        "median_ms": float(p50),
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "iqr_ms": float(p75 - p25),
        "mean_ms": float(arr.mean()),
        "n": int(arr.size),
    }


class StepTimer:
    """Collects per-step wall times around ``start()``/``stop()``.

    The first ``warmup`` steps are counted but not kept: they include torch.compile, autotuning,
    allocator growth and cold caches, which are not what a variant costs in steady state.

    On CUDA each kept step records a pair of CUDA events on the current stream; the elapsed
    times are read lazily in :meth:`summary` (one synchronisation at the end), so the training
    loop is never stalled per step. On other devices ``time.perf_counter`` is used (after a
    :func:`sync` on MPS, the only asynchronous non-CUDA device we might meet).
    """

    def __init__(self, device: torch.device | str, warmup: int = 0):
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.device = _as_device(device)
        self.warmup = int(warmup)
        self._use_events = self.device.type == "cuda"
        self._steps_seen = 0  # every stop(), warm-up included
        self._pending: list[tuple[Any, Any]] = []  # CUDA event pairs not yet read
        self._times_ms: list[float] = []
        self._start: Any = None

    @property
    def steps_seen(self) -> int:
        """All completed steps, warm-up included."""
        return self._steps_seen

    def start(self) -> None:
        """Mark the beginning of one step."""
        if self._use_events:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._start = ev
        else:
            self._start = time.perf_counter()

    def stop(self) -> None:
        """Mark the end of the step begun by the last :meth:`start`."""
        if self._start is None:
            raise RuntimeError("StepTimer.stop() called without a matching start()")
        keep = self._steps_seen >= self.warmup
        if self._use_events:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            if keep:
                self._pending.append((self._start, end))
        else:
            elapsed_ms = (time.perf_counter() - self._start) * 1e3
            if keep:
                self._times_ms.append(elapsed_ms)
        self._start = None
        self._steps_seen += 1

    def times_ms(self) -> list[float]:
        """Kept per-step times in ms (synchronises on CUDA to read the events)."""
        if self._pending:
            self._pending[-1][1].synchronize()
            self._times_ms.extend(s.elapsed_time(e) for s, e in self._pending)
            self._pending.clear()
        return list(self._times_ms)

    def summary(self) -> dict:
        """``{"median_ms", "p10_ms", "p90_ms", "iqr_ms", "mean_ms", "n"}`` over kept steps."""
        return _summarise(self.times_ms())


def time_fn(
    fn: Callable[[], object],
    device: torch.device | str,
    warmup: int = 3,
    iters: int = 10,
) -> dict:
    """Latency of ``fn()`` (e.g. a forward pass under ``torch.no_grad()``), as a StepTimer summary.

    ``fn`` is called ``warmup + iters`` times; only the last ``iters`` are summarised.
    """
    timer = StepTimer(device, warmup=warmup)
    for _ in range(warmup + iters):
        timer.start()
        fn()
        timer.stop()
    return timer.summary()


# --------------------------------------------------------------------------------------------
# Peak memory
# --------------------------------------------------------------------------------------------


def peak_memory_bytes(
    fn: Callable[[], object],
    device: torch.device | str,
    *,
    modules: Iterable[torch.nn.Module] | torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | list[torch.optim.Optimizer] | None = None,
) -> int:
    """Peak allocated tensor bytes during ONE call of ``fn`` (e.g. forward+backward+step).

    The number includes memory that was already allocated when ``fn`` started (parameters,
    gradients, optimizer state, ...), because that is what the model really needs resident;
    subtract a baseline yourself if you want only the transient part.

    CUDA: ``torch.cuda.reset_peak_memory_stats``; ``fn()``; sync; ``max_memory_allocated``.
    This is the caching allocator's count of bytes handed to tensors (rounded to its 512-byte
    blocks), i.e. everything allocated on that device, not only this model's tensors. It
    excludes allocator cache/fragmentation (``max_memory_reserved``) and the CUDA context.
    ``modules``/``optimizer`` are not needed there and are ignored.

    CPU: there is no allocator counter, so tensor storages are tracked with
    ``torch.distributed._tools.mem_tracker.MemTracker`` (a TorchDispatchMode): every storage
    produced by an op inside ``fn`` is added when created and removed when it is freed, and
    the running total's maximum is the peak. Tensors that existed before the call are only
    seen if they are passed in (``modules``: parameters, buffers and existing ``.grad``;
    ``optimizer``: its state tensors, or a list of optimizers), are touched by an op inside
    ``fn`` (e.g. an in-place update), or belong to a module called inside ``fn``
    (MemTracker's module hooks register its parameters). Pass ``modules`` and ``optimizer``
    so the baseline is complete; an input batch created before the call is not counted
    unless ``fn`` creates it. Only ops on the calling thread are seen. A new tracker is used
    per call, so one call = one iteration.
    Measure the eager (uncompiled) step on CPU: the tracker sees dispatcher ops, and compiled
    regions do not go through it op by op. If MemTracker cannot be imported, a small
    dispatch-mode tracker of live storages is used instead (same counting, but without module
    hooks, so pass ``modules`` for parameters to be counted before they are touched).
    """
    with memory_peak(device, modules=modules, optimizer=optimizer) as peak:
        fn()
    return peak.bytes


@dataclass
class MemoryPeak:
    """What `memory_peak` measured: filled in when its block ends."""

    bytes: int | None = None


@contextlib.contextmanager
def memory_peak(
    device: torch.device | str,
    *,
    modules: Iterable[torch.nn.Module] | torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | list[torch.optim.Optimizer] | None = None,
):
    """``with memory_peak(device, modules=[model], optimizer=opt) as peak: step()``, then
    ``peak.bytes``: the peak allocated tensor bytes of the block, counted as
    ``peak_memory_bytes`` describes (that function is this block around one call)."""
    device = _as_device(device)
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    modules = list(modules or [])
    optimizers = optimizer if isinstance(optimizer, list) else [optimizer]
    optimizers = [o for o in optimizers if o is not None]
    result = MemoryPeak()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        sync(device)
        result.bytes = int(torch.cuda.max_memory_allocated(device))
        return
    if device.type != "cpu":
        raise NotImplementedError(f"peak memory is measured on cuda and cpu, not {device.type}")
    with _cpu_block(modules, optimizers, result, _memtracker_class()):
        yield result


@contextlib.contextmanager
def _cpu_block(modules, optimizers, result: MemoryPeak, tracker_cls: Any = None):
    """Track CPU storages inside the block with (a subclass of) MemTracker, or with the
    fallback live-storage tracker when `tracker_cls` is None; the peak goes to `result`."""
    if tracker_cls is None:
        tracker = _dispatch_tracker(modules, optimizers)
        with tracker:
            yield
        result.bytes = int(tracker.peak)
        return
    tracker = tracker_cls()
    # Registered before entering, so the starting snapshot (and hence the peak) includes them.
    if modules or optimizers:
        tracker.track_external(*modules, *optimizers)
    with tracker:
        yield
    result.bytes = _memtracker_total(tracker)


_MEMTRACKER_CLS: Any = None


def _memtracker_class() -> Any:
    """MemTracker subclass (built once), or None when torch.distributed's tools are missing."""
    global _MEMTRACKER_CLS
    if _MEMTRACKER_CLS is None:
        try:
            from torch.distributed._tools.mem_tracker import MemTracker
        except Exception:  # torch built without distributed, or the private module moved
            _MEMTRACKER_CLS = False
            return None

        class _OneCallMemTracker(MemTracker):
            """MemTracker that tolerates a root module being called several times in one call.

            Stock MemTracker refuses a second top-level forward of the same module (it treats
            it as a second iteration), which would break gradient accumulation inside one
            training step. We only need the global peak, not per-module stats, so the
            per-module bookkeeping is reset instead; the global running total and peak are
            untouched by that reset.
            """

            def _pre_fw_hook(self, module, inputs):
                tracker = self._mod_tracker
                if module in self.memory_tracking and not tracker.is_bw:
                    name = tracker.get_known_fqn(module)
                    if set(tracker.parents) - {name} == {"Global"}:
                        self.reset_mod_stats()
                super()._pre_fw_hook(module, inputs)

            def _post_fw_hook(self, module, inputs, outputs):
                if module in self.memory_tracking:
                    super()._post_fw_hook(module, inputs, outputs)

            def _pre_bw_hook(self, module, args):
                if module is not None and module in self.memory_tracking:
                    super()._pre_bw_hook(module, args)

            def _post_bw_hook(self, module, args):
                if module is not None and module in self.memory_tracking:
                    super()._post_bw_hook(module, args)

        _MEMTRACKER_CLS = _OneCallMemTracker
    return _MEMTRACKER_CLS or None


def _memtracker_total(tracker) -> int:
    """The CPU bytes of a finished MemTracker's peak snapshot."""
    total = 0
    for dev, snap in tracker.get_tracker_snapshot("peak").items():
        if torch.device(dev).type != "cpu":
            continue
        # Snapshots hold one entry per category plus a "Total" entry; use it, do not re-sum it.
        total += snap["Total"] if "Total" in snap else sum(snap.values())
    return int(total)


def _cpu_peak_memtracker(fn, modules, optimizers, tracker_cls: Any = None) -> int:
    """Peak CPU tensor bytes of one ``fn()`` call measured with (a subclass of) MemTracker."""
    tracker_cls = tracker_cls or _memtracker_class()
    if tracker_cls is None:
        raise RuntimeError("torch.distributed._tools.mem_tracker is not available")
    result = MemoryPeak()
    with _cpu_block(modules, optimizers, result, tracker_cls):
        fn()
    return result.bytes


class _LiveStorageTracker(TorchDispatchMode):
    """Fallback CPU tracker: running total of bytes of live CPU storages seen by the dispatcher.

    Each storage produced by an op (or registered up front) is counted once at its ``nbytes``
    and uncounted by a weakref finalizer when the storage object dies, which happens when
    its memory is released. The maximum of the running total is the peak.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen = WeakIdKeyDictionary()  # storage -> nbytes, keyed by identity
        self.current = 0
        self.peak = 0

    def _release(self, nbytes: int) -> None:
        self.current -= nbytes

    def add_tensor(self, t: torch.Tensor) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
            return
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):  # sparse, nested, subclasses
            return
        if st in self._seen:
            return
        nbytes = int(st.nbytes())
        self._seen[st] = nbytes
        weakref.finalize(st, self._release, nbytes)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self.add_tensor(t)
        return out


def _dispatch_tracker(modules, optimizers) -> _LiveStorageTracker:
    """The fallback tracker with the tensors that exist before the call registered."""
    tracker = _LiveStorageTracker()
    for m in modules:
        for p in m.parameters():
            tracker.add_tensor(p)
            if p.grad is not None:
                tracker.add_tensor(p.grad)
        for b in m.buffers():
            tracker.add_tensor(b)
    for optimizer in optimizers:
        for state in optimizer.state.values():
            for v in state.values():
                tracker.add_tensor(v)
    return tracker


def _cpu_peak_dispatch(fn, modules, optimizers) -> int:
    """Peak CPU tensor bytes of one ``fn()`` call with the fallback live-storage tracker."""
    result = MemoryPeak()
    with _cpu_block(modules, optimizers, result, None):
        fn()
    return result.bytes


# --------------------------------------------------------------------------------------------
# FLOPs and MFU
# --------------------------------------------------------------------------------------------


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
    device = _as_device(device)
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
    from bench.records import cache_dir, write_json_atomic

    device = _as_device(device)
    key = _peak_key(device, dtype)
    if key in _peak_memo:
        return _peak_memo[key]
    path = cache_dir() / _PEAK_CACHE_FILE
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict) or not isinstance(cached.get(key), int | float):
        cached = cached if isinstance(cached, dict) else {}
        cached[key] = _time_matmul(device, dtype)
        try:
            write_json_atomic(path, cached)
        except OSError:
            pass  # an unwritable cache only means measuring again next time
    _peak_memo[key] = float(cached[key])
    return _peak_memo[key]


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the device peak (None if unknown)."""
    if peak is None or not peak > 0 or tokens_per_s is None:
        return None
    return float(flops_per_token) * float(tokens_per_s) / float(peak)


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what a cgroup or taskset allows this process
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_name(device: torch.device | str) -> str:
    """Human-readable device model: the GPU name on CUDA; on CPU the model and the cores this
    process may use (a 2-core and a 64-core slice of one CPU model are different machines)."""
    device = _as_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model_name()} ({usable_cores()} cores)"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        res = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def _git_commit() -> str | None:
    """HEAD of the checkout holding this file, "-dirty" if it has local changes; never raises."""
    try:
        here = Path(__file__).resolve().parent
        head = _git(["rev-parse", "HEAD"], here)
        if not head or not head.strip():
            return None
        commit = head.strip()
        status = _git(["status", "--porcelain"], here)
        if status is None or status.strip():
            # Unknown status is reported as dirty: claiming a clean tree we could not check
            # would make the record look more reproducible than it is.
            commit += "-dirty"
        return commit
    except Exception:
        return None


def _triton_version() -> str | None:
    try:
        import triton
    except Exception:
        return None
    return str(getattr(triton, "__version__", None) or "unknown")


def environment(device: torch.device | str) -> dict:
    """JSON-able description of where a measurement was taken, stored with every record."""
    device = _as_device(device)
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "triton": _triton_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "git_commit": _git_commit(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # runs trained at once on this machine (worker processes of one sweep): timings of
        # concurrent runs share the machine, so the table says how they were taken
        "workers": int(os.environ.get(WORKERS_ENV, "1")),
    }
