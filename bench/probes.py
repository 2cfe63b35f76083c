"""Measurements a run can take besides its loss curve, chosen by `TrainConfig.probes` and stored
in the record's `probes`. Each reads the trained model and the task; none changes training.

  lengths   val loss at 1, 2, 4 and 8 times the trained context, on the same held-out text
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LENGTH_FACTORS = (1, 2, 4, 8)
LENGTH_TOKENS = 16384  # held-out targets scored at every length (tiny's eval: 4 x 64 x 64)


@torch.no_grad()
def length_losses(model, task, device, amp_ctx, factors=LENGTH_FACTORS, tokens=LENGTH_TOKENS):
    """Val loss when the model reads its held-out text in rows of L = f·T tokens, T = the
    context it was trained at, for each factor f.

    The same characters are scored at every length: spans of max(f)·T + 1 ids are cut into rows
    of L, so a longer L means longer contexts for the same targets, nothing else. A model whose
    positions end at T (a learned table) gets None beyond T, with the reason."""
    T = model.cfg.block_size
    longest = max(factors) * T
    spans = task.held_out_spans(max(1, tokens // longest), longest).to(device)  # (S, longest+1)
    x_all, y_all = spans[:, :-1], spans[:, 1:]
    was_training = model.training
    model.eval()
    points = []
    for f in factors:
        L = f * T
        if model.max_len is not None and L > model.max_len:
            points.append({"factor": f, "length": L, "val_loss": None, "why": "positions end at T"})
            continue
        x, y = x_all.reshape(-1, L), y_all.reshape(-1, L)  # rows of L: the same targets
        total = 0.0
        for xb, yb in zip(x.split(64), y.split(64), strict=True):  # bounded memory at 8T
            with amp_ctx():
                logits, _ = model(xb)
            total += F.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(), reduction="sum")
        points.append({"factor": f, "length": L, "val_loss": float(total) / y.numel()})
    model.train(was_training)
    return {"context": T, "tokens": int(y_all.numel()), "points": points}
