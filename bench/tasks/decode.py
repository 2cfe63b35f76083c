"""Greedy decoding: the one decoder every task's exact-match evaluation uses.

    gen = greedy_decode(model, prompts, max_new=5)            # (B, 5) generated ids
    gen = greedy_decode(model, prompts, max_new=40, stop_id=END)  # stops once every row has END

`model(idx)` returns logits (B, T, V), or a tuple whose first item is the logits (GPT returns
(logits, loss)); fakes in tests only need that. Batched: every row of `prompts` has the same
length, so one forward per new token serves the whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def greedy_decode(
    model, prompts: Tensor, max_new: int, stop_id: int | None = None, device=None
) -> Tensor:
    """Append the argmax token `max_new` times to each row of `prompts` (B, T) and return the
    generated ids (B, n), n <= max_new: with `stop_id`, decoding ends early once every row has
    produced it (what a row writes after its stop token is left to the caller to ignore).

    The model sees at most its context: a model with a table of positions (`model.max_len`)
    is fed the last max_len tokens, like nanoGPT's `generate`. The model is put in eval mode
    for the call and given back in the mode it was in.
    """
    if max_new < 0:
        raise ValueError(f"max_new must be >= 0, got {max_new}")
    idx = prompts if device is None else prompts.to(device)  # (B, T)
    limit = getattr(model, "max_len", None)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)  # (B,)
    start = idx.shape[1]
    try:
        for _ in range(max_new):
            ctx = idx if limit is None or idx.shape[1] <= limit else idx[:, -limit:]
            out = model(ctx)
            logits = out[0] if isinstance(out, (tuple, list)) else out  # (B, t, V)
            nxt = logits[:, -1, :].argmax(dim=-1)  # (B,)
            idx = torch.cat([idx, nxt.to(idx.dtype)[:, None]], dim=1)
            if stop_id is not None:
                done |= nxt == stop_id
                if bool(done.all()):
                    break
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return idx[:, start:]
