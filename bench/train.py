"""The one training loop: run(spec) -> record.

A run is a pure function of its `RunSpec`: the seed fixes the model init and the order of the
training batches, the task fixes the held-out set, so two variants with the same seed see the
same data in the same order and differ only by the variant. Measurement goes through
`bench.measure`; nothing here knows about particular variants.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import distributed, measure
from bench.optim import as_list, make_optimizer  # noqa: F401  (make_optimizer: re-exported)
from bench.probes import length_losses
from bench.records import run_id
from bench.spec import RunSpec
from bench.tasks import build_task
from variants.model import GPT, IGNORE_INDEX

# Offsets so that init, data order and dropout draw from different streams of the same seed.
_DATA_STREAM = 1_000_003
_RANK_STREAM = 7_919  # per-rank dropout streams under DDP (rank r > 0)


class Diverged(Exception):
    pass


def _call_into(out: list, fn, *args):
    out.append(fn(*args))


def lr_at(progress: float, cfg) -> float:
    """Linear warm-up over the first warmup_frac of the budget, then cosine to min_lr_frac·lr.
    `progress` in [0, 1] is the fraction of the budget used (steps, tokens or seconds alike)."""
    if cfg.warmup_frac > 0 and progress < cfg.warmup_frac:
        return cfg.lr * max(progress, 1e-3) / cfg.warmup_frac
    p = min(1.0, (progress - cfg.warmup_frac) / max(1e-9, 1.0 - cfg.warmup_frac))
    lo = cfg.lr * cfg.min_lr_frac
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * p))


@torch.no_grad()
def evaluate(model, task, device, amp_ctx) -> float:
    """Mean loss over the task's fixed held-out batches (the same for every variant and seed).
    Under DDP each rank takes every world_size-th batch and the sums are all-reduced, so every
    rank returns the loss over all held-out batches."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    batches = task.val_batches()
    if distributed.is_active():
        batches = batches[distributed.rank() :: distributed.world_size()]
    for x, y in batches:
        with amp_ctx():
            _, loss = model(x.to(device), y.to(device))
        n = int((y != IGNORE_INDEX).sum())
        total += loss.float().item() * n
        count += n
    if distributed.is_active():
        total, count = distributed.all_reduce_sum([total, count])
    model.train(was_training)
    return total / max(count, 1)


def _throughput(steps: int, tokens_per_step: int, seconds: float) -> float | None:
    return steps * tokens_per_step / seconds if steps > 0 and seconds > 0 else None


def block_grad_norms(model) -> list[float]:
    """L2 norm of the gradient of each transformer block's parameters, first block first: how
    much signal reaches each depth (the residual study's measurement)."""
    norms = []
    for blk in model.blocks:
        sq = sum(float(p.grad.float().pow(2).sum()) for p in blk.parameters() if p.grad is not None)
        norms.append(sq**0.5)
    return norms


def _checkpoint_path(rid: str, checkpoint_dir) -> Path:
    if checkpoint_dir is None:
        raise ValueError("saving or loading a checkpoint needs a checkpoint_dir")
    return Path(checkpoint_dir) / f"{rid}.pt"


def save_checkpoint(model, rid: str, checkpoint_dir) -> Path:
    path = _checkpoint_path(rid, checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # never a half-written checkpoint under the real name
    return path


def load_checkpoint(rid: str, checkpoint_dir, device) -> dict:
    path = _checkpoint_path(rid, checkpoint_dir)
    if not path.is_file():
        raise ValueError(f"no checkpoint for run {rid} at {path}; train that run first")
    return torch.load(path, map_location=device, weights_only=True)


def _shard_batch(x, y) -> tuple:
    """Under DDP: this rank's rows of the global batch (x, y), the weight its mean loss gets
    before backward, and its share of the batch's targets. The weight (share × world_size)
    makes DDP's gradient average exactly the gradient of the global-batch mean loss, even when
    ranks hold different numbers of targets."""
    rows = distributed.shard(len(x))
    mine = y[rows]
    share = int((mine != IGNORE_INDEX).sum()) / max(int((y != IGNORE_INDEX).sum()), 1)
    return x[rows], mine, share * distributed.world_size(), share


def _max_over_ranks(*values):
    """Each value's maximum over ranks (None stays None): the slowest rank's time, the largest
    rank's memory."""
    ranks = distributed.all_gather_floats([math.nan if v is None else float(v) for v in values])
    out = []
    for i in range(len(values)):
        vals = [r[i] for r in ranks if not math.isnan(r[i])]
        out.append(max(vals) if vals else None)
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def run(
    spec: RunSpec,
    progress: Callable[[dict], None] | None = None,
    task=None,
    checkpoint_dir: str | Path | None = None,
) -> dict:
    """Train `spec` and return its record. `progress(info)` is called every few steps for a
    progress bar; `task` may pass an already built task (it must match spec.task).
    `checkpoint_dir` is where `train.save_checkpoint` writes the final weights as
    `<run_id>.pt` and where `spec.init_from` (a run id) is looked up; where files live is not
    part of a run's identity, so it is an argument, not a spec field."""
    device = distributed.local_device(resolve_device(spec.device))
    tcfg = spec.train.validate()
    budget = spec.budget.validate()
    # Under torchrun (bench.distributed): batch_size is the GLOBAL batch, split over the ranks.
    world, rank = distributed.world_size(), distributed.rank()
    if tcfg.batch_size % world:
        raise ValueError(
            f"--batch-size {tcfg.batch_size} is the global batch and must divide by the "
            f"{world} ranks; use a multiple of {world}"
        )
    if rank != 0:
        progress = None  # rank 0 alone shows progress
    opts = {k: v for k, v in spec.task.items() if k not in ("name", "data")}
    if task is None:
        task = build_task(
            spec.task["name"],
            context=spec.model.block_size,
            data=spec.task.get("data"),
            eval_batches=tcfg.eval_batches,
            eval_batch_size=tcfg.eval_batch_size,
            **opts,
        )

    if "lengths" in tcfg.probes and not task.has_spans:
        task.held_out_spans(1, 1)  # one line: this task cannot be read at other lengths
    torch.manual_seed(spec.seed)  # model init (and dropout, if any)
    model = GPT(spec.model).to(device)
    if spec.init_from is not None:
        model.load_state_dict(load_checkpoint(spec.init_from, checkpoint_dir, device))
    n_params = model.num_params()
    flops_tok = measure.flops_per_token(
        model.num_params(non_embedding=True), spec.model.n_layer, spec.model.n_embd, task.seq_len
    )
    opt = make_optimizer(model, tcfg)
    train_model = model  # `model` itself is what is evaluated, probed and saved
    if world > 1:
        train_model = distributed.wrap(model, device)
        if rank > 0:  # dropout (if any) draws different masks on each rank's rows
            torch.manual_seed(spec.seed + _RANK_STREAM * rank)
    step_model = torch.compile(train_model) if tcfg.compile else train_model
    use_amp = tcfg.amp and device.type == "cuda"

    def amp_ctx():
        if use_amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    gen = torch.Generator().manual_seed(spec.seed + _DATA_STREAM)
    tokens_per_step = tcfg.batch_size * task.seq_len
    budget.validate(tokens_per_step)

    def budget_progress(step: int, elapsed: float) -> float:
        if budget.mode == "steps":
            return step / budget.value
        if budget.mode == "tokens":
            return step * tokens_per_step / budget.value
        return elapsed / budget.value

    timer = measure.StepTimer(device, warmup=tcfg.timing_warmup)
    curve: list[dict] = []
    status, diverged_at = "ok", None
    peak_mem = None
    step, train_time, train_loss = 0, 0.0, None
    tracked_s = 0.0  # time of the memory-tracked step, left out of tokens/s

    grad_history: list[dict] = []  # per-block gradient norms at step 1 and every eval point
    probes: dict = {"grad_norms": grad_history} if "grad_norms" in tcfg.probes else {}

    def train_step(x, y, weight=None):
        with amp_ctx():
            _, loss = step_model(x, y)
        (loss if weight is None else loss * weight).backward()
        if "grad_norms" in tcfg.probes and (step == 0 or (step + 1) % tcfg.eval_every == 0):
            grad_history.append({"step": step + 1, "norms": block_grad_norms(model)})
        if tcfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def add_point(val_loss, acc=None):
        point = {
            "step": step,
            "tokens": step * tokens_per_step,
            "time_s": round(train_time, 4),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "accuracy": acc,
        }
        curve.append(point)

    model.train()
    add_point(evaluate(model, task, device, amp_ctx))
    t_start = time.perf_counter()
    try:
        while budget_progress(step, train_time) < 1.0:
            lr = lr_at(budget_progress(step, train_time), tcfg)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = task.train_batch(tcfg.batch_size, gen)
            weight = share = None
            if world > 1:  # every rank draws the global batch from the shared stream
                x, y, weight, share = _shard_batch(x, y)
            t0 = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if step == tcfg.timing_warmup and peak_mem is None:
                # one (untimed) step under the memory tracker, after compile/warm-up
                out: list = []
                with warnings.catch_warnings():
                    # MemTracker's global module hooks make torch.compile warn that they fire
                    # once more for the compiled wrapper; that wrapper is not among `modules`,
                    # and the peak counts tensors, not hook calls, so the warning is moot here.
                    warnings.filterwarnings("ignore", message=r"Using `torch\.compile\(module\)`")
                    peak_mem = measure.peak_memory_bytes(
                        functools.partial(_call_into, out, train_step, x, y, weight),
                        device,
                        modules=[model],
                        optimizer=as_list(opt),
                    )
                loss = out[0]
                tracked_s = time.perf_counter() - t0  # the tracker slows this step down
            else:
                timer.start()
                loss = train_step(x, y, weight)
                timer.stop()
            step += 1
            train_loss = loss.item()  # syncs; the timer already stopped
            train_time += time.perf_counter() - t0
            if world > 1:  # the global-batch loss on every rank, so all stop on the same step
                ranks = distributed.all_gather_floats([train_loss * share, train_time])
                train_loss = sum(r[0] for r in ranks)
                if budget.mode == "seconds":  # one clock for the budget and the lr schedule
                    train_time = max(r[1] for r in ranks)
            if not math.isfinite(train_loss):
                raise Diverged()
            if progress is not None and (step % 10 == 0 or step == 1):
                progress(
                    {
                        "step": step,
                        "loss": train_loss,
                        "progress": budget_progress(step, train_time),
                        "tokens_per_s": step * tokens_per_step / max(train_time, 1e-9),
                    }
                )
            if step % tcfg.eval_every == 0:
                add_point(evaluate(model, task, device, amp_ctx))
    except Diverged:
        status, diverged_at = "diverged", step
    wall = time.perf_counter() - t_start
    if world > 1:
        train_time, wall, peak_mem = _max_over_ranks(train_time, wall, peak_mem)

    metrics: dict = {
        "params": n_params,
        "flops_per_token": flops_tok,
        "steps": step,
        "tokens": step * tokens_per_step,
        "wall_s": round(wall, 3),
        "train_loss": train_loss,
        "peak_mem_mb": None if peak_mem is None else peak_mem / 2**20,
        # the loss of a token-frequency table: the learning guard's floor (bench.tables)
        "freq_loss": task.frequency_loss(),
    }
    timing = timer.summary()
    if world > 1:
        keys = ("median_ms", "p10_ms", "p90_ms")
        timing = dict(zip(keys, _max_over_ranks(*(timing[k] for k in keys)), strict=True))
    metrics.update(
        step_ms=timing["median_ms"],
        step_ms_p10=timing["p10_ms"],
        step_ms_p90=timing["p90_ms"],
        tokens_per_s=_throughput(step - (tracked_s > 0), tokens_per_step, train_time - tracked_s),
    )
    if status == "ok":
        val_loss = evaluate(model, task, device, amp_ctx)
        acc = task.accuracy(model, device) if task.has_accuracy else None
        if not curve or curve[-1]["step"] != step:
            add_point(val_loss, acc)
        else:
            curve[-1]["accuracy"] = acc
        x, _ = task.train_batch(tcfg.batch_size, gen)
        if world > 1:
            x = x[distributed.shard(len(x))]  # the forward of one rank's share of the batch
        x = x.to(device)
        model.eval()
        with torch.no_grad():
            fwd = measure.time_fn(lambda: step_model(x), device, warmup=2, iters=10)
        model.train()
        if world > 1:
            (fwd["median_ms"],) = _max_over_ranks(fwd["median_ms"])
        metrics.update(val_loss=val_loss, accuracy=acc, fwd_ms=fwd["median_ms"])
        if "lengths" in tcfg.probes:
            probes["lengths"] = length_losses(model, task, device, amp_ctx)
    else:
        metrics.update(val_loss=None, accuracy=None, fwd_ms=None)
    dtype = torch.bfloat16 if use_amp else torch.float32
    peak = measure.measured_peak_flops(device, dtype) * world  # tokens/s is the whole group's
    table = measure.peak_flops(device, dtype)  # the datasheet's, a cross-check on known GPUs
    metrics["peak_flops"] = peak
    metrics["mfu"] = measure.mfu(flops_tok, metrics["tokens_per_s"], peak)
    metrics["mfu_datasheet"] = measure.mfu(
        flops_tok, metrics["tokens_per_s"], None if table is None else table * world
    )
    spec_dict = spec.to_dict()
    if tcfg.save_checkpoint and status == "ok" and rank == 0:
        save_checkpoint(model, run_id(spec_dict), checkpoint_dir)
    distributed.barrier()  # a later run may start from that checkpoint on any rank
    return {
        "run_id": run_id(spec_dict),
        "variant": spec.variant,
        "seed": spec.seed,
        "task": spec.task["name"],
        "budget": {"mode": budget.mode, "value": budget.value},
        "spec": spec_dict,
        "task_info": task.describe(),
        "status": status,
        "diverged_at_step": diverged_at,
        "env": measure.environment(device),
        "distributed": distributed.info(),  # {"world_size": 1, "backend": None} without DDP
        "metrics": metrics,
        "curve": curve,
        "probes": probes,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
