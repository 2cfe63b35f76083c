"""The `lengths` probe, whole: val loss at 1, 2, 4 and 8 times the trained context, on the same
held-out text (the measurement, taken at the end of a run), and what the analysis makes of it:
a table (summary.md and the report) and a figure (the report).

    python ablations/run.py --variant rope --variant alibi --variant no-position --probe lengths
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from bench.analysis.fmt import variant_order
from bench.analysis.sections import SECTIONS, Section
from bench.core.probing import PROBES, Probe

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


NOT_READ = "n/a: positions end at T"


def length_frame(records: Sequence) -> pd.DataFrame:
    """One row per (run, length) of the finished runs that carry the probe (RunRecords: the
    summary and the report hand every section validated records)."""
    rows = []
    for rec in records:
        probe = rec.probes.get("lengths")
        if not rec.ok or not probe:
            continue
        for p in probe["points"]:
            rows.append(
                {
                    "variant": rec.variant,
                    "seed": rec.seed,
                    "context": probe["context"],
                    "tokens": probe["tokens"],
                    "factor": p["factor"],
                    "length": p["length"],
                    "val_loss": p["val_loss"],
                }
            )
    return pd.DataFrame(rows)


def _stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and seed count of the val loss per (variant, factor); NaN where not read."""
    g = frame.groupby(["variant", "factor", "length"], sort=False)["val_loss"]
    return g.agg(mean="mean", sd="std", n="count").reset_index()


def length_table(records: Sequence) -> pd.DataFrame | None:
    """Variants x eval lengths: mean ± sd over seeds, with the change from L = T; None when no
    record carries the probe."""
    frame = length_frame(records)
    if frame.empty:
        return None
    stats = _stats(frame)
    at_t = stats[stats["factor"] == 1].set_index("variant")["mean"]
    table = {}
    for (variant, factor, length), r in stats.set_index(["variant", "factor", "length"]).iterrows():
        col = f"L = {length}" + (" (T)" if factor == 1 else f" ({factor}T)")
        if r["n"] == 0:
            cell = NOT_READ
        else:
            sd = "" if pd.isna(r["sd"]) else f" ± {r['sd']:.3f}"
            change = "" if factor == 1 else f" ({r['mean'] - at_t.get(variant, float('nan')):+.3f})"
            cell = f"{r['mean']:.3f}{sd}{change}"
        table.setdefault(variant, {})[col] = cell
    out = pd.DataFrame.from_dict(table, orient="index")
    out = out.loc[[v for v in variant_order(out.index) if v in out.index]]
    out.insert(0, "seeds", frame.groupby("variant")["seed"].nunique().reindex(out.index))
    return out.rename_axis("variant").reset_index()


def footnote(records: Sequence) -> str:
    frame = length_frame(records)
    contexts = sorted(frame["context"].unique())
    tokens = sorted(frame["tokens"].unique())
    return (
        f"Val loss when the trained model reads held-out text in rows of L tokens (trained at "
        f"T = {', '.join(map(str, contexts))}), mean ± sd over seeds; in brackets the change from "
        f"L = T. The same {', '.join(f'{t:,}' for t in tokens)} held-out characters are scored "
        "at every length (spans of 8T + 1 cut into rows of L), so a longer L only gives longer "
        "contexts. Learned positions have no vector past T, so that model cannot read longer "
        "rows at all."
    )


def figure(records: Sequence, path) -> Path | None:
    """Val loss against eval length (log2 axis), one line per variant with ±sd bars."""
    import seaborn as sns  # late: training imports this module, and needs no plotting
    from matplotlib.figure import Figure

    frame = length_frame(records)
    if frame.empty:
        return None
    stats = _stats(frame).dropna(subset=["mean"])
    with sns.axes_style("whitegrid"):  # the style applies to axes made inside the block
        fig = Figure(figsize=(7, 4.5))
        ax = fig.add_subplot()
    for i, variant in enumerate(variant_order(stats["variant"])):
        s = stats[stats["variant"] == variant]
        only_t = " (learned: T only)" if len(s) == 1 else ""
        ax.errorbar(
            s["length"], s["mean"], yerr=s["sd"].fillna(0), marker="o", capsize=3,
            label=variant + only_t, color=sns.color_palette()[i % 10],
        )  # fmt: skip
    T = int(frame["context"].min())
    ax.axvline(T, color="0.5", linestyle="--", linewidth=1)
    ax.text(T, ax.get_ylim()[1], " trained context", va="top", fontsize=8, color="0.4")
    ax.set_xscale("log", base=2)
    ax.set_xticks(
        sorted(stats["length"].unique()), [str(v) for v in sorted(stats["length"].unique())]
    )
    ax.set_xlabel("eval length L (tokens)")
    ax.set_ylabel("val loss")
    ax.legend(fontsize=8)
    fig.suptitle("Length generalisation: the same held-out text read in rows of L", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


class LengthsProbe(Probe):
    """Reads the held-out text at several lengths once the run has finished."""

    def check(self, task) -> None:
        if not task.has_spans:
            task.held_out_spans(1, 1)  # one line: this task cannot be read at other lengths

    def result(self, s):
        return length_losses(s.model, s.task, s.device, s.amp)


PROBES.register("lengths", LengthsProbe, description="val loss at 1, 2, 4 and 8x the context")
SECTIONS.register(
    "lengths",
    Section("Length generalisation", table=length_table, footnote=footnote, figure=figure,
            alt="Val loss against eval length", slug="length_generalisation"),
)  # fmt: skip
