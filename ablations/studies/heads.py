"""Study `heads`: the lecture's separate `Head` modules vs one fused qkv projection.

    python ablations/run.py --study heads               # results/local/studies/heads/

Two questions, no training:
  1. Are they the same function? The fused weights are mapped into the separate layout with
     `SeparateHeads.load_fused_qkv` (see variants/attention.py for the row mapping); every other
     parameter is copied by name. Then one batch goes through both models and we report the
     largest absolute difference of the logits and of every parameter's gradient (the separate
     heads' q/k/v gradients mapped back to the fused layout), in float32 and in float64 — if the
     float64 difference is at round-off level, the float32 one is arithmetic order, not a bug.
  2. What does the loop over heads cost? Median latency of forward and of forward+backward, at
     the level of one attention sublayer and of the whole model, for 1, 2, 4, 8 and 16 heads at
     fixed width (n_embd 128, so the head size shrinks from 128 to 8), timed with
     `bench.measure.time_fn`. Fused and separate are measured alternately, several repeats, and
     the median of the repeats is kept, to damp drift on a shared machine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
import torch

from ablations.studies.base import Study, StudyContext, canvas, image, save_figure
from bench.measure import device_name, environment, time_fn
from variants.attention import FusedHeads, SeparateHeads
from variants.config import preset
from variants.model import GPT

N_HEADS = (1, 2, 4, 8, 16)
MODEL = dict(n_layer=4, n_embd=128, block_size=64, vocab_size=65)
BATCH = 16
ITERS = 20  # timed calls per measurement at scale 1 (after warm-up)
REPEATS = 3  # alternating fused/separate measurements per configuration at scale 1


def copy_fused_into_separate(fused: GPT, separate: GPT) -> None:
    """Make `separate` compute the same function as `fused` (weights of the same config)."""
    sd = fused.state_dict()
    own = separate.state_dict()
    shared = {k: v for k, v in sd.items() if k in own and ".attn.c_attn." not in k}
    missing = set(own) - set(shared)
    separate.load_state_dict(shared, strict=False)
    for fb, sb in zip(fused.blocks, separate.blocks, strict=True):
        w, b = fb.attn.to_fused_qkv()
        sb.attn.load_fused_qkv(w, b)
    qkv = {k for k in missing if ".attn.heads." in k}
    if missing - qkv:
        raise RuntimeError(f"parameters not mapped: {sorted(missing - qkv)}")


def separate_qkv_grad(attn: SeparateHeads) -> torch.Tensor:
    """The q/k/v weight gradients of separate heads in the fused (3C, C) row order."""
    parts = [[h.query, h.key, h.value][i] for i in range(3) for h in attn.heads]
    return torch.cat([p.weight.grad for p in parts], dim=0)


def equivalence(n_head: int, dtype=torch.float32, device="cpu", model=None) -> dict:
    """Max |difference| of logits, loss and gradients between fused and separate heads."""
    cfg = preset("micro", **(MODEL if model is None else model), n_head=n_head)
    torch.manual_seed(0)
    fused = GPT(cfg.replace(heads="fused")).to(device, dtype)
    torch.manual_seed(1)  # deliberately another init: only the mapping can make them agree
    separate = GPT(cfg.replace(heads="separate")).to(device, dtype)
    copy_fused_into_separate(fused, separate)
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, cfg.vocab_size, (4, cfg.block_size), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (4, cfg.block_size), generator=g).to(device)
    lf, loss_f = fused(x, y)
    ls, loss_s = separate(x, y)
    loss_f.backward()
    loss_s.backward()
    grad_diff, grad_max = 0.0, 0.0
    sp = dict(separate.named_parameters())
    for name, p in fused.named_parameters():
        if ".attn.c_attn." in name:
            i = int(name.split(".")[1])
            gs = separate_qkv_grad(separate.blocks[i].attn)
        else:
            gs = sp[name].grad
        grad_diff = max(grad_diff, float((p.grad - gs).abs().max()))
        grad_max = max(grad_max, float(p.grad.abs().max()))
    return {
        "logits_max_abs_diff": float((lf - ls).detach().abs().max()),
        "logits_max_abs": float(lf.detach().abs().max()),
        "loss_abs_diff": float((loss_f - loss_s).detach().abs()),
        "grad_max_abs_diff": grad_diff,
        "grad_max_abs": grad_max,
    }


def _timed(fn, device, iters) -> dict:
    return time_fn(fn, device, warmup=max(2, iters // 5), iters=iters)


def _calls(model: GPT, attn, x, y, h) -> dict:
    """The four timed calls of one layout: (level, mode) -> a function of no arguments."""
    hg = h.clone().requires_grad_(True)

    def model_fwd():
        with torch.no_grad():
            model(x)

    def model_fwdbwd():
        model.zero_grad(set_to_none=True)
        model(x, y)[1].backward()

    def attn_fwd():
        with torch.no_grad():
            attn(h)

    def attn_fwdbwd():
        attn.zero_grad(set_to_none=True)
        attn(hg).sum().backward()

    return {
        ("model", "forward"): model_fwd,
        ("model", "forward+backward"): model_fwdbwd,
        ("attention", "forward"): attn_fwd,
        ("attention", "forward+backward"): attn_fwdbwd,
    }


def timings(
    n_head: int, device: str, iters: int, repeats: int, model=None, batch: int = BATCH
) -> list[dict]:
    """Long-format timing rows for one head count: level × mode × layout × repeat."""
    cfg = preset("micro", **(MODEL if model is None else model), n_head=n_head)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)
    h = torch.randn(batch, cfg.block_size, cfg.n_embd, generator=g).to(device)
    table = {}
    for layout in ("fused", "separate"):
        torch.manual_seed(0)
        gpt = GPT(cfg.replace(heads=layout)).to(device)
        attn = gpt.blocks[0].attn  # one attention sublayer of that model, used on its own
        assert isinstance(attn, FusedHeads if layout == "fused" else SeparateHeads)
        table[layout] = _calls(gpt, attn, x, y, h)
    rows = []
    for rep in range(repeats):
        for key in table["fused"]:
            for layout in ("fused", "separate") if rep % 2 == 0 else ("separate", "fused"):
                s = _timed(table[layout][key], device, iters)
                rows.append(
                    {
                        "level": key[0],
                        "mode": key[1],
                        "heads": layout,
                        "n_head": n_head,
                        "head_size": cfg.head_size,
                        "repeat": rep,
                        "median_ms": s["median_ms"],
                        "p10_ms": s["p10_ms"],
                        "p90_ms": s["p90_ms"],
                        "iters": iters,
                    }
                )
    return rows


class HeadsStudy(Study):
    name = "heads"
    description = (
        "separate Head modules vs fused qkv: equal outputs/gradients and the speed ratio for"
        " 1-16 heads"
    )
    one_thread = True

    def __init__(self, n_heads=N_HEADS, model=None, batch: int = BATCH):
        """The defaults are the study; tests pass a smaller model or fewer head counts."""
        self.n_heads, self.batch = tuple(n_heads), batch
        self.model = dict(MODEL if model is None else model)

    def _run(self, ctx: StudyContext) -> str:
        device = torch.device(ctx.device)
        iters = max(3, round(ITERS * ctx.scale))
        repeats = REPEATS if ctx.scale >= 0.5 else 1
        env = environment(device)
        dev_name = device_name(device)
        eq_rows, time_rows = [], []
        M, B = self.model, self.batch
        for n_head in self.n_heads:
            e32 = equivalence(n_head, torch.float32, device, M)
            e64 = equivalence(n_head, torch.float64, device, M)
            eq_rows.append({"n_head": n_head, **e32, **{f"{k}_fp64": v for k, v in e64.items()}})
            time_rows += timings(n_head, ctx.device, iters, repeats, M, B)
        long = pd.DataFrame(time_rows)
        ident = {
            "device": ctx.device,
            "device_name": dev_name,
            "torch": env["torch"],
            "torch_threads": env["torch_threads"],
            "git_commit": env["git_commit"],
            "batch": B,
            "seq_len": M["block_size"],
            "n_embd": M["n_embd"],
            "n_layer": M["n_layer"],
        }
        for k, v in ident.items():
            long[k] = v
        long.to_csv(ctx.out / "heads_timings.csv", index=False)
        eq = pd.DataFrame(eq_rows)
        eq.to_csv(ctx.out / "heads_equivalence.csv", index=False)
        table = summary_table(long, eq)
        md = self.write_table(ctx.out, "heads", table, _display(table))
        context = (
            f"{dev_name} · {ctx.device}, {env['torch_threads']} thread(s) · n_embd "
            f"{M['n_embd']}, {M['n_layer']} layers, batch {B} × {M['block_size']}"
            " tokens"
        )
        png = figure(long, ctx.out / "heads.png", context)
        timing = (
            f"{dev_name} ({ctx.device}, torch {env['torch']}, {env['torch_threads']} thread(s)) · "
            f"{iters} timed calls × {repeats} alternating repeat(s) per cell"
        )
        return self.section(ctx, md, findings(table, long), png, timing)

    def section(self, ctx: StudyContext, md: str, found: str, png: Path, timing: str) -> str:
        M, B = self.model, self.batch
        return "\n".join(
            [
                "## Separate vs fused attention heads",
                "",
                "The lecture's multi-head attention (a list of `Head` modules, each with its own "
                "query/key/value `Linear`, outputs concatenated) against one fused qkv "
                "projection with the heads as a batch dimension, at fixed width n_embd "
                f"{M['n_embd']} for {', '.join(map(str, self.n_heads))} heads. Equality: "
                "the fused model's weights are loaded into the separate one through the weight "
                "mapping (`SeparateHeads.load_fused_qkv`; the two models were initialised from "
                "different seeds, so only the mapping can make them agree) and one batch goes "
                "through both: max |Δ| of the logits and of all parameter gradients, in float32 "
                "and float64. Speed: median latency (ms) of the whole model "
                f"({M['n_layer']} layers, batch {B} × {M['block_size']} tokens) and "
                "of one attention sublayer alone, forward and forward+backward; ratio = "
                "separate / fused (> 1: the loop over heads is slower). No training runs.",
                "",
                md,
                "",
                found,
                "",
                image(png, "separate/fused time ratio by number of heads"),
                "",
                f"Command: `{ctx.command(self.name, seeds=False)}` · device: {timing} · study "
                f"wall time {self.elapsed() / 60:.1f} min. Raw timings (long format): "
                "`heads_timings.csv`; equality details: `heads_equivalence.csv`.",
                "",
            ]
        )


def summary_table(long: pd.DataFrame, eq: pd.DataFrame) -> pd.DataFrame:
    """One row per number of heads: the equality numbers and, per level × mode, the median
    over repeats of fused and separate latency and their ratio."""
    med = long.groupby(["n_head", "level", "mode", "heads"])["median_ms"].median().unstack("heads")
    rows = []
    for _, e in eq.iterrows():
        n = int(e["n_head"])
        row = {
            "n_head": n,
            "head_size": int(long.loc[long["n_head"] == n, "head_size"].iloc[0]),
            "logits_max_abs_diff": e["logits_max_abs_diff"],
            "grad_max_abs_diff": e["grad_max_abs_diff"],
            "logits_max_abs_diff_fp64": e["logits_max_abs_diff_fp64"],
            "grad_max_abs_diff_fp64": e["grad_max_abs_diff_fp64"],
        }
        for level in ("model", "attention"):
            for mode, short in (("forward", "fwd"), ("forward+backward", "fwdbwd")):
                f, s = med.loc[(n, level, mode), "fused"], med.loc[(n, level, mode), "separate"]
                row[f"{level}_{short}_fused_ms"] = f
                row[f"{level}_{short}_separate_ms"] = s
                row[f"{level}_{short}_ratio"] = s / f
        rows.append(row)
    return pd.DataFrame(rows)


def _display(t: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "heads": t["n_head"],
            "head size": t["head_size"],
            "max |Δ logits| fp32": [f"{v:.1e}" for v in t["logits_max_abs_diff"]],
            "max |Δ grad| fp32": [f"{v:.1e}" for v in t["grad_max_abs_diff"]],
            "max |Δ| fp64 (logits / grad)": [
                f"{a:.0e} / {b:.0e}"
                for a, b in zip(
                    t["logits_max_abs_diff_fp64"], t["grad_max_abs_diff_fp64"], strict=True
                )
            ],
        }
    )
    for level in ("model", "attention"):
        for short, label in (("fwd", "fwd"), ("fwdbwd", "fwd+bwd")):
            out[f"{level} {label} ms (fused → separate)"] = [
                f"{f:.2f} → {s:.2f}"
                for f, s in zip(
                    t[f"{level}_{short}_fused_ms"], t[f"{level}_{short}_separate_ms"], strict=True
                )
            ]
            out[f"{level} {label} ratio"] = [f"{v:.2f}×" for v in t[f"{level}_{short}_ratio"]]
    return out


def ratio_spread(long: pd.DataFrame) -> float:
    """Largest (max - min) over repeats of the per-repeat separate/fused ratio of one cell: how
    much of a ratio is measurement noise (NaN with a single repeat)."""
    per = long.pivot_table(
        index=["n_head", "level", "mode", "repeat"], columns="heads", values="median_ms"
    )
    ratio = (per["separate"] / per["fused"]).groupby(level=["n_head", "level", "mode"])
    spread = ratio.max() - ratio.min()
    return float(spread.max()) if long["repeat"].nunique() > 1 else float("nan")


def findings(t: pd.DataFrame, long: pd.DataFrame) -> str:
    lo, hi = t.iloc[0], t.iloc[-1]
    spread = ratio_spread(long)
    noise = (
        f"- Noise: across the {long['repeat'].nunique()} alternating repeats, one cell's "
        f"separate/fused ratio varied by up to {spread:.2f} (max − min); smaller differences "
        "than that are not resolved on this machine."
        if spread == spread
        else "- One repeat per cell: no estimate of the timing noise (run at --scale ≥ 0.5)."
    )
    worst32 = max(t["logits_max_abs_diff"].max(), t["grad_max_abs_diff"].max())
    worst64 = max(t["logits_max_abs_diff_fp64"].max(), t["grad_max_abs_diff_fp64"].max())
    return "\n".join(
        [
            f"- Same function: the largest difference of logits or gradients over all head "
            f"counts is {worst32:.1e} in float32 and {worst64:.1e} in float64 (round-off; "
            "the layouts differ only in the order of the arithmetic).",
            f"- Whole model, forward+backward: separate/fused = "
            f"{lo['model_fwdbwd_ratio']:.2f}× with {int(lo['n_head'])} head(s), "
            f"{hi['model_fwdbwd_ratio']:.2f}× with {int(hi['n_head'])}; forward only "
            f"{lo['model_fwd_ratio']:.2f}× → {hi['model_fwd_ratio']:.2f}×.",
            f"- One attention sublayer, forward+backward: {lo['attention_fwdbwd_ratio']:.2f}× → "
            f"{hi['attention_fwdbwd_ratio']:.2f}×; forward {lo['attention_fwd_ratio']:.2f}× → "
            f"{hi['attention_fwd_ratio']:.2f}×.",
            noise,
        ]
    )


def figure(long: pd.DataFrame, path: Path, context: str) -> Path:
    med = (
        long.groupby(["n_head", "level", "mode", "heads"])["median_ms"]
        .median()
        .unstack("heads")
        .reset_index()
    )
    med["ratio"] = med["separate"] / med["fused"]
    ticks = sorted(int(n) for n in med["n_head"].unique())
    with canvas((12, 4.6)) as fig:
        ax_r, ax_ms = fig.subplots(1, 2)
        sns.lineplot(
            data=med, x="n_head", y="ratio", hue="mode", style="level", markers=True, ax=ax_r,
        )  # fmt: skip
        ax_r.axhline(1.0, color="0.4", lw=0.8, ls=":")
        ax_r.set_xscale("log", base=2)
        ax_r.set_xticks(ticks, [str(n) for n in ticks])
        ax_r.set_xlabel("number of heads (n_embd fixed)")
        ax_r.set_ylabel("time ratio separate / fused")
        ax_r.set_title("cost of looping over heads", fontsize=10)
        per = long.copy()
        per["what"] = per["level"] + ", " + per["mode"]
        sns.lineplot(
            data=per[per["level"] == "model"], x="n_head", y="median_ms", hue="mode",
            style="heads", markers=True, estimator="median", errorbar=("pi", 100), ax=ax_ms,
        )  # fmt: skip
        ax_ms.set_xscale("log", base=2)
        ax_ms.set_yscale("log")
        ax_ms.set_xticks(ticks, [str(n) for n in ticks])
        ax_ms.set_xlabel("number of heads (n_embd fixed)")
        ax_ms.set_ylabel("whole-model latency, ms (median)")
        ax_ms.set_title("absolute time, whole model", fontsize=10)
        fig.suptitle(f"Separate vs fused heads\n{context}", fontsize=11)
        caption = (
            "Each point: median over alternating repeats of the median of the timed calls; "
            "band (right): range over repeats."
        )
        return save_figure(fig, path, caption)


STUDY = HeadsStudy()
