"""Peak memory: the peak of allocated tensor bytes during one call or block.

On CUDA the caching allocator counts it; on CPU, where nothing does, tensor storages are tracked
through the dispatcher (MemTracker, or a small fallback tracker of live storages).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from bench.measure.env import as_device, sync


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
    device = as_device(device)
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
