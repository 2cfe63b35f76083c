"""Checkpoint and resume inside a run.

A run that is killed (SIGKILL, preemption, a time limit) and started again by the same command
goes on from its latest checkpoint, and its final record is bit-identical to an uninterrupted
run's on CPU in fp32: the checkpoint holds everything the next step reads.

  model and optimizer state (AdamW, Muon: every optimizer of the run's group)
  the loop's position: step, training seconds (the clock of time budgets and of the lr
      schedule, which is a function of progress), last train loss, the validation curve so far
  every random stream: torch's global CPU (dropout) and CUDA states, numpy's, Python's, and
      the generator that draws the training batches (the data order's position)
  the probes' state (`Probe.state_dict`) and what the loop measured: peak memory, the timing
      of each earlier segment of the run

Files live in the run's own folder, `<out>/checkpoints/<run id>/step-NNNNNNNN.pt`, written
atomically (to a temporary name, fsync'ed, then renamed), so a kill during a write leaves the
previous checkpoint intact. The latest `KEEP` are kept; after the record is written the
executor removes the folder unless `--keep-checkpoints`.

A file that cannot be read (truncated, corrupt), of a newer format, or of another run (its
run id differs) is refused with one line, renamed to `*.refused` (never overwritten, never
deleted) and the next older one is tried; with none left the run starts from step 0. Loading
uses `torch.load(weights_only=True)`: a checkpoint is data, never code.

A stop request (`request_stop`, set by a SLURM job's preemption or time-limit signal, see
bench.exec.preemption) is served at the next step boundary: the run saves a checkpoint there
(unless checkpoints are "off") and raises `Preempted`; the requeued job resumes from it.

Timing: a resumed run is made of segments (one per process that trained it). Step times from
different processes are never pooled into one figure: the record's step-time columns come
from the one segment with the most timed steps, and `metrics["segments"]` lists them all.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.exec import distributed

FORMAT = 1  # bump when what a checkpoint holds changes; a newer one is refused, not misread
KEEP = 2  # checkpoints kept per run: the latest, and one before it in case the latest is bad
AUTO_SECONDS = 600.0  # "auto": one every 10 minutes, so a run shorter than that writes none
_NAME = re.compile(r"^step-(\d{8})\.pt$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Preempted(BaseException):
    """A run stopped at a step boundary on a stop request, its checkpoint saved. Not an
    Exception: like KeyboardInterrupt it is no fault of the run, and nothing that records
    failed runs may catch it."""

    def __init__(self, step: int):
        super().__init__(f"stopped at step {step} on a preemption or time-limit signal")
        self.step = step


_stop = {"requested": False, "armed": False}


def arm_stop() -> None:
    """Say that stop requests may come (a signal handler is installed): only then do DDP ranks
    agree on the flag every step, a collective that runs without a handler do not pay."""
    _stop["armed"] = True


def request_stop() -> None:
    """Ask the run in progress to save and stop at its next step boundary (safe to call from
    a signal handler: it only sets a flag)."""
    _stop["requested"] = True


def stop_requested() -> bool:
    return _stop["requested"]


def clear_stop() -> None:
    _stop["requested"] = False


@dataclass(frozen=True)
class Checkpointing:
    """When a run writes checkpoints (`--checkpoint-every`) and whether they outlive the run
    (`--keep-checkpoints`). Not part of a run's identity: the same run, saved more or less
    often, trains the same numbers."""

    every: str = "auto"  # "auto", "off", N (steps), or Ns / Nm / Nh (seconds of wall time)
    keep: bool = False

    def interval(self) -> tuple[int | None, float | None]:
        """(every N steps, every S seconds); both None for "off". One-line ValueError for a
        value it cannot read."""
        text = str(self.every).strip().lower()
        if text == "off":
            return None, None
        if text == "auto":
            return None, AUTO_SECONDS
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", text)
        if m is None or float(m.group(1)) <= 0:
            raise ValueError(
                f"--checkpoint-every {self.every!r}: give a number of steps (500), a time "
                "(90s, 10m, 2h), 'auto' (every 10 minutes) or 'off'"
            )
        if not m.group(2):
            if "." in m.group(1):
                raise ValueError(f"--checkpoint-every {self.every!r}: steps must be a whole number")
            return int(m.group(1)), None
        return None, float(m.group(1)) * _UNITS[m.group(2)]


def run_dir(checkpoint_dir, rid: str) -> Path:
    return Path(checkpoint_dir) / rid


def _say(message: str) -> None:
    print(f"checkpoint: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# random streams
# ---------------------------------------------------------------------------------------------


def rng_state(data_gen: torch.Generator) -> dict:
    """Every random stream a step may read, as tensors and plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "python": {"version": version, "state": list(mt), "gauss_next": gauss_next},
        "data": data_gen.get_state(),
    }


def set_rng_state(state: dict, data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    data_gen.set_state(state["data"])


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def _steps_on_disk(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in `folder`, newest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found, reverse=True)


def latest_step(checkpoint_dir, rid: str) -> int | None:
    """The step of run `rid`'s newest checkpoint file (not read: a status), or None."""
    found = _steps_on_disk(run_dir(checkpoint_dir, rid))
    return found[0][0] if found else None


def save(folder: Path, state: dict) -> Path:
    """Write `state` as the checkpoint of its step, atomically, and keep the latest KEEP."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state['step']:08d}.pt"
    if path.exists():  # a refused file of the same step is set aside, never overwritten
        _set_aside(path, "a checkpoint of this step already exists")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for _, old in _steps_on_disk(folder)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def _set_aside(path: Path, why: str) -> None:
    target = path.with_name(path.name + ".refused")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.refused{n}")
    os.replace(path, target)
    _say(f"{path} refused ({why}); kept as {target.name}")


def _refusal(state, rid: str) -> str | None:
    """Why a loaded checkpoint cannot be resumed from, or None."""
    if not isinstance(state, dict) or not isinstance(state.get("format"), int):
        return "not a checkpoint of this suite"
    if state["format"] > FORMAT:
        return f"format {state['format']} is newer than this version's {FORMAT}; upgrade"
    if state["format"] < FORMAT:
        return f"format {state['format']} is older than this version's {FORMAT}"
    if state.get("run_id") != rid:
        return f"it belongs to run {state.get('run_id')}, not {rid}"
    return None


def load_latest(folder: Path, rid: str, device) -> dict | None:
    """The newest checkpoint of run `rid` in `folder` that can be resumed from, or None.
    Bad files are refused one line each and set aside; older ones are tried in turn."""
    for tmp in folder.glob("*.pt.tmp") if folder.is_dir() else []:
        tmp.unlink(missing_ok=True)  # a write that a kill interrupted: never renamed, never used
    for _, path in _steps_on_disk(folder):
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # truncated, corrupt, or not a torch file at all
            _set_aside(path, f"unreadable: {type(e).__name__}")
            continue
        why = _refusal(state, rid)
        if why is None:
            return state
        _set_aside(path, why)
    return None


def discard(checkpoint_dir, rid: str) -> None:
    """Remove a finished run's checkpoints (its record is written). Refused files stay."""
    folder = run_dir(checkpoint_dir, rid)
    for _, path in _steps_on_disk(folder):
        path.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the loop's side: when to write, resuming, and the timing of a run made of segments
# ---------------------------------------------------------------------------------------------


class Saver:
    """Checkpoints of one run: where, how often, and the reading and writing. Rank 0 writes and
    chooses which file to resume from; every rank reads that file."""

    def __init__(self, policy: Checkpointing, folder: Path):
        self.every_steps, self.every_s = policy.interval()
        # "off": no checkpoint, not even on a stop request
        self.enabled = self.every_steps is not None or self.every_s is not None
        self.folder = folder
        self.last = time.perf_counter()
        self.stopping = False  # a stop request reached this run: save (if enabled) and stop

    def restore(self, s, loop) -> bool:
        """Resume from the latest good checkpoint; False when there is none (start at 0)."""
        state = load_latest(self.folder, self.folder.name, s.device) if s.rank == 0 else None
        step = distributed.broadcast_object(None if state is None else state["step"])
        if step is None:
            return False
        if state is None:  # another rank: the file rank 0 chose
            path = self.folder / f"step-{step:08d}.pt"
            state = torch.load(path, map_location=s.device, weights_only=True)
        restore(s, loop, state)
        if s.rank == 0:
            print(f"checkpoint: resuming {self.folder.name} from step {step}", file=sys.stderr)
        return True

    def due(self, s, loop) -> bool:
        """Whether a checkpoint is due after this step; also sets `stopping` when a stop was
        requested (rank 0's flag decides for every rank, as its clock does)."""
        if s.progress(loop.step, loop.train_time) >= 1.0:
            return False  # the run is over: its record comes next
        due = bool(self.every_steps and loop.step % self.every_steps == 0)
        stop = stop_requested()
        if self.every_s is not None:
            due = time.perf_counter() - self.last >= self.every_s
        if s.world > 1 and (self.every_s is not None or _stop["armed"]):
            # one clock and one signal decide, or the ranks would disagree
            due, stop = distributed.broadcast_object((due, stop))
        self.stopping = stop
        return due or (stop and self.enabled)

    def save(self, s, loop, timer, seg_wall: float) -> None:
        t0 = time.perf_counter()
        if s.rank == 0:
            segment = loop.segment(timer.summary(), seg_wall)
            save(self.folder, capture(s, loop, self.folder.name, segment))
        distributed.barrier()  # the file exists before any rank could need it
        self.last = time.perf_counter()
        loop.checkpoint_s += self.last - t0
        loop.checkpoints += 1


def step_timing(s, loop) -> dict:
    """Step time (median, p10, p90 of the timed steps) and tokens/s. A resumed run's come from
    its one segment with the most timed steps, never pooled across processes; `segments` then
    lists every segment and `timed_segment` says which one the figures are."""
    timing = dict(loop.timing)
    if s.world > 1:
        keys = ("median_ms", "p10_ms", "p90_ms")
        timing.update(
            zip(keys, distributed.max_over_ranks(*(timing[k] for k in keys)), strict=True)
        )
    segments = [*loop.segments, loop.segment(timing, loop.wall - loop.wall_before)]
    best = max(segments, key=lambda g: g["timed_steps"])
    warm = s.tcfg.timing_warmup  # the memory-tracked step's index, slower and left out
    tracked = loop.tracked_s if best["from_step"] <= warm < best["to_step"] else 0.0
    steps = best["to_step"] - best["from_step"] - (tracked > 0)
    out = {
        "step_ms": best["median_ms"],
        "step_ms_p10": best["p10_ms"],
        "step_ms_p90": best["p90_ms"],
        "tokens_per_s": _throughput(steps, s.tokens_per_step, best["train_s"] - tracked),
    }
    if len(segments) > 1:
        out.update(segments=segments, timed_segment=segments.index(best))
    if loop.checkpoints:
        out.update(checkpoints=loop.checkpoints, checkpoint_s=round(loop.checkpoint_s, 4))
    return out


def _throughput(steps: int, tokens_per_step: int, seconds: float) -> float | None:
    return steps * tokens_per_step / seconds if steps > 0 and seconds > 0 else None


# ---------------------------------------------------------------------------------------------
# what a checkpoint holds (the training loop's `_Setup` and `_Loop`, read and written here)
# ---------------------------------------------------------------------------------------------

# the loop's fields a checkpoint carries over (bench.core.train._Loop)
LOOP_FIELDS = (
    "step", "train_time", "train_loss", "peak_mem", "tracked_s", "wall_before", "curve",
    "segments", "checkpoint_s", "checkpoints",
)  # fmt: skip


def capture(s, loop, rid: str, segment: dict) -> dict:
    """The state after `loop.step` steps of run `rid`. `segment` is the running segment's
    timing so far: a resumed run lists it among its earlier segments."""
    fields = {k: getattr(loop, k) for k in LOOP_FIELDS}
    fields["segments"] = [*loop.segments, segment]
    fields["wall_before"] = loop.wall_before + segment["wall_s"]
    return {
        "format": FORMAT,
        "run_id": rid,
        "step": loop.step,
        "model": s.model.state_dict(),
        "optimizer": [opt.state_dict() for opt in _optimizers(s.opt)],
        "rng": rng_state(s.gen),
        "loop": fields,
        "probes": {name: p.state_dict() for name, p in s.probes.items()},
    }


def restore(s, loop, state: dict) -> None:
    """Put the run back where `state` was taken: weights, optimizer, loop, probes, RNG last
    (loading touches no random stream, but nothing may draw between this and the next step)."""
    s.model.load_state_dict(state["model"])
    optimizers = _optimizers(s.opt)
    if len(optimizers) != len(state["optimizer"]):
        raise ValueError("checkpoint holds another number of optimizers than this run builds")
    for opt, saved in zip(optimizers, state["optimizer"], strict=True):
        opt.load_state_dict(saved)
    for k in LOOP_FIELDS:
        setattr(loop, k, state["loop"][k])
    for name, probe in s.probes.items():
        probe.load_state_dict(state["probes"][name])
    set_rng_state(state["rng"], s.gen)


def _optimizers(opt) -> list:
    return list(getattr(opt, "optimizers", [opt]))
