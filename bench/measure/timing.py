"""Step times: `StepTimer` around the training loop's steps, `time_fn` around any call.

Times are milliseconds of wall time per step, from CUDA events on CUDA (read once, at the end,
so measuring never stalls the loop) and from ``time.perf_counter`` elsewhere; summaries are
robust statistics (median, p10/p90, IQR) because single steps are noisy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from bench.measure.env import as_device

_SUMMARY_KEYS = ("median_ms", "p10_ms", "p90_ms", "iqr_ms", "mean_ms")


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
        self.device = as_device(device)
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
