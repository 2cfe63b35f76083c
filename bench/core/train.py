"""The one training loop: run(spec) -> record.

A run is a pure function of its `RunSpec`: the seed fixes the model init and the order of the
training batches, the task fixes the held-out set, so two variants with the same seed see the
same data in the same order and differ only by the variant. Measurement goes through
`bench.measure`; nothing here knows about particular variants.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import measure
from bench.core import evaluation, resume
from bench.core.checkpoint import load_checkpoint, save_checkpoint
from bench.core.evaluation import evaluate
from bench.core.optim import as_list, make_optimizer
from bench.core.records import RunRecord, run_id
from bench.core.spec import Budget, RunSpec, TrainConfig
from bench.exec import distributed
from bench.measure.env import resolve_device
from bench.probes import PROBES
from bench.tasks import build_task
from variants.model import GPT

# Offsets so that init, data order and dropout draw from different streams of the same seed.
_DATA_STREAM = 1_000_003
_RANK_STREAM = 7_919  # per-rank dropout streams under DDP (rank r > 0)


class Diverged(Exception):
    pass


def lr_at(progress: float, cfg) -> float:
    """Linear warm-up over the first warmup_frac of the budget, then cosine to min_lr_frac·lr.
    `progress` in [0, 1] is the fraction of the budget used (steps, tokens or seconds alike)."""
    if cfg.warmup_frac > 0 and progress < cfg.warmup_frac:
        return cfg.lr * max(progress, 1e-3) / cfg.warmup_frac
    p = min(1.0, (progress - cfg.warmup_frac) / max(1e-9, 1.0 - cfg.warmup_frac))
    lo = cfg.lr * cfg.min_lr_frac
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * p))


@dataclass
class _Setup:
    """What set-up builds; the loop and the final measurements only read it."""

    spec: RunSpec
    tcfg: TrainConfig
    budget: Budget
    device: torch.device
    world: int  # ranks under torchrun (1 without)
    rank: int
    task: object
    model: GPT  # what is evaluated, probed and saved
    step_model: torch.nn.Module  # what the loop calls: `model`, DDP-wrapped and/or compiled
    opt: object
    gen: torch.Generator  # the training batches' stream
    tokens_per_step: int
    use_amp: bool
    probes: dict = field(default_factory=dict)  # name -> this run's Probe (bench.core.probing)

    def amp(self):
        """bf16 autocast on CUDA when asked for; nothing on CPU."""
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def progress(self, step: int, elapsed: float) -> float:
        """The fraction of the budget used after `step` steps and `elapsed` training seconds."""
        if self.budget.mode == "steps":
            return step / self.budget.value
        if self.budget.mode == "tokens":
            return step * self.tokens_per_step / self.budget.value
        return elapsed / self.budget.value


@dataclass
class _Loop:
    """The training loop's running state, and what it measured on the way."""

    step: int = 0
    train_time: float = 0.0  # seconds inside training steps (the clock of a time budget)
    train_loss: float | None = None
    status: str = "ok"
    diverged_at: int | None = None
    peak_mem: int | None = None  # bytes, from one tracked step after the warm-up
    tracked_s: float = 0.0  # that step's time, left out of tokens/s
    wall: float = 0.0  # the whole run's, earlier segments included
    timing: dict = field(default_factory=dict)  # StepTimer's summary of this segment's steps
    curve: list[dict] = field(default_factory=list)
    # A resumed run is made of segments, one per process (bench.core.resume): the earlier ones'
    # timing, and where this one began.
    segments: list[dict] = field(default_factory=list)
    wall_before: float = 0.0
    seg_step: int = 0
    seg_time: float = 0.0
    checkpoint_s: float = 0.0  # seconds spent writing checkpoints, all segments
    checkpoints: int = 0

    def segment(self, timing: dict, wall: float) -> dict:
        """This segment's timing so far: steps, training seconds, the timed steps' summary."""
        return {
            "from_step": self.seg_step,
            "to_step": self.step,
            "train_s": self.train_time - self.seg_time,
            "wall_s": round(wall, 4),
            "timed_steps": timing.get("n", 0),
            **{k: timing.get(k) for k in ("median_ms", "p10_ms", "p90_ms")},
        }

    def add_point(self, s: _Setup, val_loss: float, acc=None) -> None:
        point = {
            "step": self.step,
            "tokens": self.step * s.tokens_per_step,
            "time_s": round(self.train_time, 4),
            "train_loss": self.train_loss,
            "val_loss": val_loss,
            "accuracy": acc,
        }
        bpb = s.task.bits_per_byte(val_loss)  # language modelling only (Task.bits_per_byte)
        self.curve.append(point if bpb is None else {**point, "val_bpb": bpb})


def run(
    spec: RunSpec,
    progress: Callable[[dict], None] | None = None,
    task=None,
    checkpoint_dir: str | Path | None = None,
    checkpointing: resume.Checkpointing | None = None,
) -> RunRecord:
    """Train `spec` and return its record. `progress(info)` is called every few steps for a
    progress bar; `task` may pass an already built task (it must match spec.task).
    `checkpoint_dir` is where `bench.core.checkpoint.save_checkpoint` writes the final weights as
    `<run_id>.pt` and where `spec.init_from` (a run id) is looked up; where files live is not
    part of a run's identity, so it is an argument, not a spec field. With `checkpointing`
    (and a checkpoint_dir) the run resumes from its latest checkpoint in
    `<checkpoint_dir>/<run_id>/` and writes new ones as it goes (bench.core.resume).

    Four steps: set up (task, model, optimizer), the loop, the final measurements, the record.
    """
    s = _set_up(spec, task, checkpoint_dir)
    saver = None
    if checkpointing is not None and checkpoint_dir is not None:
        saver = resume.Saver(checkpointing, resume.run_dir(checkpoint_dir, run_id(spec.to_dict())))
    loop = _train(s, progress if s.rank == 0 else None, saver)  # rank 0 alone shows progress
    evals = evaluation.task_evals(s, loop)  # first: the final accuracy may be read off it
    metrics, probes = evaluation.final_measurements(s, loop, evals)
    if spec.train.save_checkpoint and loop.status == "ok" and s.rank == 0:
        save_checkpoint(s.model, run_id(spec.to_dict()), checkpoint_dir)
    distributed.barrier()  # a later run may start from that checkpoint on any rank
    return _record(s, loop, metrics, probes, evals)


def _set_up(spec: RunSpec, task, checkpoint_dir) -> _Setup:
    device = distributed.local_device(resolve_device(spec.device))
    tcfg = spec.train.validate()
    budget = spec.budget.validate()
    # Under torchrun (bench.exec.distributed): batch_size is the GLOBAL batch, split over the ranks.
    world, rank = distributed.world_size(), distributed.rank()
    distributed.check_batch_split(tcfg.batch_size, world)
    if task is None:
        task = build_task(
            spec.task["name"],
            context=spec.model.block_size,
            data=spec.task.get("data"),
            eval_batches=tcfg.eval_batches,
            eval_batch_size=tcfg.eval_batch_size,
            **{k: v for k, v in spec.task.items() if k not in ("name", "data")},
        )
    tokens_per_step = tcfg.batch_size * task.seq_len
    budget.validate(tokens_per_step)

    torch.manual_seed(spec.seed)  # model init (and dropout, if any)
    model = GPT(spec.model).to(device)
    if spec.init_from is not None:
        model.load_state_dict(load_checkpoint(spec.init_from, checkpoint_dir, device))
    opt = make_optimizer(model, tcfg)
    train_model = model
    if world > 1:
        train_model = distributed.wrap(model, device)
        if rank > 0:  # dropout (if any) draws different masks on each rank's rows
            torch.manual_seed(spec.seed + _RANK_STREAM * rank)
    s = _Setup(
        spec=spec,
        tcfg=tcfg,
        budget=budget,
        device=device,
        world=world,
        rank=rank,
        task=task,
        model=model,
        step_model=torch.compile(train_model) if tcfg.compile else train_model,
        opt=opt,
        gen=torch.Generator().manual_seed(spec.seed + _DATA_STREAM),
        tokens_per_step=tokens_per_step,
        use_amp=tcfg.amp and device.type == "cuda",
        # in the registry's order, so a record lists its probes the same way every time
        probes={name: PROBES[name]() for name in PROBES if name in tcfg.probes},
    )
    for probe in s.probes.values():
        probe.check(task)  # one line, before any training, when a probe cannot read this task
    return s


def _train_step(s: _Setup, loop: _Loop, x, y, weight=None):
    """Forward, backward (the probes read the gradients), clip, optimizer step."""
    with s.amp():
        _, loss = s.step_model(x, y)
    (loss if weight is None else loss * weight).backward()
    for probe in s.probes.values():
        probe.after_backward(s, loop.step)
    if s.tcfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), s.tcfg.grad_clip)
    s.opt.step()
    s.opt.zero_grad(set_to_none=True)
    return loss


def _tracked_step(s: _Setup, loop: _Loop, x, y, weight):
    """One (untimed) step under the memory tracker, after compile and allocator warm-up."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # MemTracker's global module hooks make torch.compile warn that they fire once more
        # for the compiled wrapper; that wrapper is not among `modules`, and the peak counts
        # tensors, not hook calls, so the warning is moot here.
        warnings.filterwarnings("ignore", message=r"Using `torch\.compile\(module\)`")
        with measure.memory_peak(s.device, modules=[s.model], optimizer=as_list(s.opt)) as mem:
            loss = _train_step(s, loop, x, y, weight)
    loop.peak_mem = mem.bytes
    loop.tracked_s = time.perf_counter() - t0  # the tracker slows this step down
    return loss


def _train(s: _Setup, progress: Callable[[dict], None] | None, saver: resume.Saver | None) -> _Loop:
    """The loop: until the budget is used, one step and, every eval_every steps, a validation
    point; a checkpoint when one is due. A non-finite loss ends it as diverged, keeping what
    was measured so far."""
    loop = _Loop()
    timer = measure.StepTimer(s.device, warmup=s.tcfg.timing_warmup)
    s.model.train()
    if saver is None or not saver.restore(s, loop):
        loop.add_point(s, evaluate(s.model, s.task, s.device, s.amp))
    loop.seg_step, loop.seg_time = loop.step, loop.train_time
    t_start = time.perf_counter()
    try:
        while s.progress(loop.step, loop.train_time) < 1.0:
            lr = lr_at(s.progress(loop.step, loop.train_time), s.tcfg)
            for g in s.opt.param_groups:
                g["lr"] = lr
            x, y = s.task.train_batch(s.tcfg.batch_size, s.gen)
            weight = share = None
            if s.world > 1:  # every rank draws the global batch from the shared stream
                x, y, weight, share = distributed.shard_batch(x, y)
            t0 = time.perf_counter()
            x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
            if loop.step == s.tcfg.timing_warmup and loop.peak_mem is None:
                loss = _tracked_step(s, loop, x, y, weight)
            else:
                timer.start()
                loss = _train_step(s, loop, x, y, weight)
                timer.stop()
            loop.step += 1
            loop.train_loss = loss.item()  # syncs; the timer already stopped
            loop.train_time += time.perf_counter() - t0
            if s.world > 1:  # the global-batch loss on every rank, so all stop on the same step
                ranks = distributed.all_gather_floats([loop.train_loss * share, loop.train_time])
                loop.train_loss = sum(r[0] for r in ranks)
                if s.budget.mode == "seconds":  # one clock for the budget and the lr schedule
                    loop.train_time = max(r[1] for r in ranks)
            if not math.isfinite(loop.train_loss):
                raise Diverged()
            if progress is not None and (loop.step % 10 == 0 or loop.step == 1):
                progress(
                    {
                        "step": loop.step,
                        "loss": loop.train_loss,
                        "progress": s.progress(loop.step, loop.train_time),
                        "tokens_per_s": loop.step * s.tokens_per_step / max(loop.train_time, 1e-9),
                    }
                )
            if loop.step % s.tcfg.eval_every == 0:
                loop.add_point(s, evaluate(s.model, s.task, s.device, s.amp))
            if saver is not None and saver.due(s, loop):
                saver.save(s, loop, timer, time.perf_counter() - t_start)
            if saver is not None and saver.stopping:  # preempted: the job requeues itself
                raise resume.Preempted(loop.step)
    except Diverged:
        loop.status, loop.diverged_at = "diverged", loop.step
    loop.wall = loop.wall_before + time.perf_counter() - t_start
    if s.world > 1:
        loop.train_time, loop.wall, loop.peak_mem = distributed.max_over_ranks(
            loop.train_time, loop.wall, loop.peak_mem
        )
    loop.timing = timer.summary()
    return loop


def _record(s: _Setup, loop: _Loop, metrics: dict, probes: dict, evals: dict) -> RunRecord:
    spec_dict = s.spec.to_dict()
    return RunRecord(
        run_id=run_id(spec_dict),
        variant=s.spec.variant,
        seed=s.spec.seed,
        task=s.spec.task["name"],
        budget={"mode": s.budget.mode, "value": s.budget.value},
        spec=spec_dict,
        task_info=s.task.describe(),
        status=loop.status,
        diverged_at_step=loop.diverged_at,
        env=measure.environment(s.device),
        distributed=distributed.info(),  # {"world_size": 1, "backend": None} without DDP
        metrics=metrics,
        curve=loop.curve,
        probes=probes,
        evals=evals,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
