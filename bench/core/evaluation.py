"""Reading a model during and after training: the validation loss (`evaluate`, every curve
point), the final measurements that become a record's metrics and probes, and the task's own
evaluations. `s` and `loop` are the training loop's set-up and running state
(bench.core.train._Setup, _Loop); nothing here trains.
"""

from __future__ import annotations

import torch

from bench import measure
from bench.core import resume
from bench.exec import distributed
from variants.model import IGNORE_INDEX


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


def final_measurements(s, loop, evals: dict) -> tuple[dict, dict]:
    """The record's metrics and probes: sizes, speed, memory, the final val loss and accuracy
    (finished runs), the forward time, MFU against the measured peak."""
    model = s.model
    flops_tok = measure.flops_per_token(model, s.task.seq_len)
    metrics: dict = {
        "params": model.num_params(),
        "flops_per_token": flops_tok,
        "steps": loop.step,
        "tokens": loop.step * s.tokens_per_step,
        "wall_s": round(loop.wall, 3),
        "train_loss": loop.train_loss,
        "peak_mem_mb": None if loop.peak_mem is None else loop.peak_mem / 2**20,
        # the loss of a token-frequency table: the learning guard's floor (bench.analysis.tables)
        "freq_loss": s.task.frequency_loss(),
    }
    metrics.update(resume.step_timing(s, loop))
    if loop.status == "ok":
        metrics.update(_finished_metrics(s, loop, evals))
    else:
        metrics.update(val_loss=None, accuracy=None, fwd_ms=None)
    dtype = torch.bfloat16 if s.use_amp else torch.float32
    peak = measure.measured_peak_flops(s.device, dtype) * s.world  # tokens/s: the whole group's
    table = measure.peak_flops(s.device, dtype)  # the datasheet's, a cross-check on known GPUs
    metrics["peak_flops"] = peak
    metrics["mfu"] = measure.mfu(flops_tok, metrics["tokens_per_s"], peak)
    metrics["mfu_datasheet"] = measure.mfu(
        flops_tok, metrics["tokens_per_s"], None if table is None else table * s.world
    )
    return metrics, _probe_results(s, loop)


def _probe_results(s, loop) -> dict:
    """Each probe's value for the record: finished runs only, unless the probe keeps its
    value for diverged runs too (`on_diverged`)."""
    ok = loop.status == "ok"
    return {name: p.result(s) for name, p in s.probes.items() if ok or p.on_diverged}


def _finished_metrics(s, loop, evals: dict) -> dict:
    """Final val loss and accuracy (also the curve's last point) and the forward time."""
    val_loss = evaluate(s.model, s.task, s.device, s.amp)
    acc = None
    if s.task.has_accuracy:  # from the task's evaluation when it decoded the same problems
        acc = s.task.accuracy_from(evals)
        acc = s.task.accuracy(s.model, s.device) if acc is None else acc
    if not loop.curve or loop.curve[-1]["step"] != loop.step:
        loop.add_point(s, val_loss, acc)
    else:
        loop.curve[-1]["accuracy"] = acc
    x, _ = s.task.train_batch(s.tcfg.batch_size, s.gen)
    if s.world > 1:
        x = x[distributed.shard(len(x))]  # the forward of one rank's share of the batch
    x = x.to(s.device)
    s.model.eval()
    with torch.no_grad():
        fwd = measure.time_fn(lambda: s.step_model(x), s.device, warmup=2, iters=10)
    s.model.train()
    if s.world > 1:
        (fwd["median_ms"],) = distributed.max_over_ranks(fwd["median_ms"])
    bpb = s.task.bits_per_byte(val_loss)  # None unless the task models language
    return {"val_loss": val_loss, "val_bpb": bpb, "accuracy": acc, "fwd_ms": fwd["median_ms"]}


def task_evals(s, loop) -> dict:
    """The task's own evaluations of the final model (exact match by width, per cell, ...),
    kept in the record so that studies read them instead of reloading saved weights; {} for
    a diverged run or a task without any."""
    if loop.status != "ok":
        return {}
    return s.task.evaluate(s.model, s.device) or {}
