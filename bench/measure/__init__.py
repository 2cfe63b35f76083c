"""Measuring side of the bench: timing, peak memory, FLOPs/MFU and the environment, one
module each (`timing`, `memory`, `flops`, `env`); their public names are re-exported here.

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

from bench.measure.env import WORKERS_ENV, device_name, environment, sync, usable_cores
from bench.measure.flops import attended_keys, flops_per_token, measured_peak_flops, mfu, peak_flops
from bench.measure.memory import MemoryPeak, memory_peak, peak_memory_bytes
from bench.measure.timing import StepTimer, time_fn

__all__ = [
    "WORKERS_ENV",
    "MemoryPeak",
    "StepTimer",
    "device_name",
    "environment",
    "attended_keys",
    "flops_per_token",
    "measured_peak_flops",
    "mfu",
    "peak_flops",
    "peak_memory_bytes",
    "memory_peak",
    "sync",
    "time_fn",
    "usable_cores",
]
