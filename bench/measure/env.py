"""Where a measurement was taken: the device (its name, the cores this process may use), the
software versions and the checkout, stored with every record; and `sync`, which every clock and
counter in this package calls before reading a device that runs asynchronously."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

WORKERS_ENV = "TRANSFORMER_BENCH_WORKERS"  # set in worker processes: runs trained at once


def as_device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def sync(device: torch.device | str) -> None:
    """Wait for queued device work, so a host-side clock or counter read afterwards is honest.

    A no-op on CPU, where ops run synchronously.
    """
    device = as_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    device = as_device(device)
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
    device = as_device(device)
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)
