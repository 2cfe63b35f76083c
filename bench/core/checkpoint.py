"""A run's saved weights, by run id: written atomically, read back for finetuning."""

from __future__ import annotations

import os
from pathlib import Path

import torch


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
