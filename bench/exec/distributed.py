"""Data parallelism for one run: the process group, rank helpers and the few collectives the
training loop needs.

    torchrun --nproc_per_node 2 ablations/run.py --variant rope ...     # 2 ranks, one run each

torchrun starts one process per rank and sets RANK, LOCAL_RANK and WORLD_SIZE (plus the
rendezvous address). `setup(device)` turns those into a process group: NCCL on CUDA (one GPU
per rank, the LOCAL_RANK-th), gloo on CPU. Without those variables (or with WORLD_SIZE=1)
nothing is initialised and every helper here answers for a single process (rank 0 of 1), so
the training loop runs exactly as it does without torchrun.

What the training loop does with it (bench/core/train.py):

* the global batch is `batch_size`; every rank draws that whole batch from the same seeded
  generator and keeps its own slice of `batch_size / world_size` rows (`shard`), so the ranks
  see disjoint shards and together exactly the batch a single process would see;
* each rank's loss is weighted by its share of the batch's targets before backward, so DDP's
  gradient average is the gradient of the global-batch mean: the same step as one process;
* metrics are reduced over ranks: train and validation loss are summed over ranks (each rank
  evaluates its share of the held-out batches), times and peak memory are the max over ranks,
  tokens/s counts the global batch.
"""

from __future__ import annotations

import datetime
import inspect
import math
import os

import torch
import torch.distributed as dist

from variants.model import IGNORE_INDEX

__all__ = [
    "all_gather_floats",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "env_world_size",
    "info",
    "is_active",
    "is_main",
    "local_device",
    "rank",
    "setup",
    "shard",
    "teardown",
    "world_size",
    "wrap",
]

# A collective that waits longer than this means a rank is gone or stuck: fail instead of
# hanging (torchrun then stops every rank). Steps and evaluations are far shorter.
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("BENCH_DIST_TIMEOUT_MIN", "10")))


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (or a SLURM/submitit launcher); 1 when not launched so."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_active() -> bool:
    """True when a process group of more than one rank is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes records and shows progress."""
    return rank() == 0


def backend() -> str | None:
    return str(dist.get_backend()) if is_active() else None


def info() -> dict:
    """What the record says about it: {"world_size": N, "backend": "gloo" | "nccl" | None}."""
    return {"world_size": world_size(), "backend": backend()}


def check_batch_split(batch_size: int, world: int) -> None:
    """Under DDP `batch_size` is the GLOBAL batch, split evenly over the ranks: one line if it
    cannot be (the one check, for the CLI and for `bench.core.train.run` alike)."""
    if batch_size % world:
        raise ValueError(
            f"--batch-size {batch_size} is the global batch and must divide by the {world} "
            f"ranks; use a multiple of {world}"
        )


def setup(device: str) -> bool:
    """Initialise the default process group from torchrun's environment variables, if they ask
    for more than one rank. `device` is "cpu" or "cuda": NCCL and one GPU per rank on CUDA,
    gloo on CPU. Returns True if a group is (now) up. Idempotent."""
    if env_world_size() <= 1:
        return False
    if is_active():
        return True
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"rank with LOCAL_RANK={local} has no GPU: {torch.cuda.device_count()} visible; "
                "use --nproc_per_node at most the number of GPUs"
            )
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return True


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The rank's own device: `cuda` becomes `cuda:LOCAL_RANK` (set by `setup`)."""
    if device.type == "cuda" and device.index is None and is_active():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` (which stays the one to evaluate and save).
    Buffers are not broadcast at every forward: they are built deterministically from the
    config on every rank, and skipping it keeps no-grad forwards free of collectives."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:  # torch >= 2.13
        return DDP(model, device_ids=ids, forward_sync_buffers=False)
    return DDP(model, device_ids=ids, broadcast_buffers=False)


def shard(n: int) -> slice:
    """This rank's rows of a global batch of `n` rows (n must divide by the world size)."""
    w = world_size()
    if n % w:
        raise ValueError(f"a batch of {n} rows does not split over {w} ranks")
    k = n // w
    return slice(rank() * k, (rank() + 1) * k)


def _tensor_device() -> torch.device:
    if backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum of each value over ranks, in float64; the values themselves in one process."""
    if not is_active():
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=_tensor_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather_floats(values: list[float]) -> list[list[float]]:
    """Every rank's `values` (float64), rank 0's first: one collective for sums and maxima
    alike. NaN stands for "none" and survives the trip."""
    if not is_active():
        return [[float(v) for v in values]]
    t = torch.tensor(values, dtype=torch.float64, device=_tensor_device())
    out = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return [o.tolist() for o in out]


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s `obj` on every rank (picklable objects); `obj` itself in one process."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if is_active():
        dist.barrier()


def shard_batch(x, y) -> tuple:
    """Under DDP: this rank's rows of the global batch (x, y), the weight its mean loss gets
    before backward, and its share of the batch's targets. The weight (share × world_size)
    makes DDP's gradient average exactly the gradient of the global-batch mean loss, even when
    ranks hold different numbers of targets."""
    rows = shard(len(x))
    mine = y[rows]
    share = int((mine != IGNORE_INDEX).sum()) / max(int((y != IGNORE_INDEX).sum()), 1)
    return x[rows], mine, share * world_size(), share


def max_over_ranks(*values):
    """Each value's maximum over ranks (None stays None): the slowest rank's time, the largest
    rank's memory."""
    ranks = all_gather_floats([math.nan if v is None else float(v) for v in values])
    out = []
    for i in range(len(values)):
        vals = [r[i] for r in ranks if not math.isnan(r[i])]
        out.append(max(vals) if vals else None)
    return out
