"""Summary tables of a sweep: one row per variant, differences to the baseline with verdicts.

Grouping: a directory of records may hold runs of several tasks, budgets, model sizes or
devices. Comparing a variant against a baseline trained on another task, for another budget,
at another size or timed on another device is meaningless, so records are split into groups
by ``(task, budget mode, budget value, model size, device name)`` and every group gets its own
table. :func:`summary` wants exactly one group and raises ``ValueError`` otherwise;
:func:`summaries` returns all groups and :func:`write_summary` writes them all. The training
config is not a group key (a sweep may tune lr per variant); a table whose runs used several
training configs says so in its footnote, and repeated runs of one variant and seed keep the
latest.

The learning guard (:func:`learned`) comes before any verdict: a comparison whose baseline did
not learn is ``inconclusive``, a variant that did not learn while the baseline did is ``worse
(did not learn)``. Every variant row also carries the minimum detectable effect and the
compute multipliers of :mod:`bench.multiplier` (the crossing always; the budget ladder when
baseline-only groups of the same task, size, device and training config at other budgets are
present: they are folded into the comparison instead of getting tables of their own). A ladder
checks itself: its 2× rung, left out of the fit, is read back off the other rungs
(:func:`bench.multiplier.ladder_control`), the table prints what it reads, and where that
misses 2 the ladder's multipliers are marked '(control failed)' instead of standing as findings.

Diverged runs (any status other than ``"ok"``) are counted in ``n_diverged`` and left out of
every mean, std and test: their metrics are NaN or meaningless. Comparisons on validation loss
and accuracy are paired by seed over the seeds both the variant and the baseline finished
(see :mod:`bench.stats`); speed comparisons use Welch's test because timing noise has nothing
to do with the seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bench import multiplier, stats
from bench.records import RunRecord, as_record, write_bytes_atomic

BASELINE = "baseline"
# The learning guard (see `learned`): a run learned when its val loss is at least 20% below
# the loss of a token-frequency table for the task and, on tasks with exact answers, it gets at
# least 5% of held-out problems exactly right.
LEARN_LOSS_FRAC = 0.8
LEARN_MIN_ACCURACY = 0.05
INCONCLUSIVE = "inconclusive: baseline did not learn"
DID_NOT_LEARN = "worse (did not learn)"
GROUP_COLS = ["task", "budget_mode", "budget_value", "model_size", "device_name"]
METRIC_COLS = [
    "val_loss", "accuracy", "train_loss", "step_ms", "step_ms_p10", "step_ms_p90",
    "tokens_per_s", "fwd_ms", "peak_mem_mb", "params", "flops_per_token", "mfu",
    "steps", "tokens", "wall_s", "freq_loss",
]  # fmt: skip
BUDGET_WORDS = {
    "steps": "equal budget: same steps",
    "tokens": "equal budget: same tokens",
    "seconds": "equal budget: same wall-clock seconds",
}
BUDGET_UNITS = {"steps": "steps", "tokens": "tokens", "seconds": "s"}
DEFAULT_OPTIMIZER = "adamw"  # the reference arm of an optimizer comparison (bench.optim)
ARM_SEP = " · "  # between a variant's name and what else sets its arm apart: 'baseline · muon'


# --------------------------------------------------------------------------- records -> frame


def _num(value) -> float:
    """Metric value as float; None, strings and missing values become NaN."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _model_size(model: dict) -> str:
    """Short size label; variants of one sweep share these fields, so they define comparability."""
    names = {"n_layer": "L", "n_head": "H", "n_embd": "d", "block_size": "ctx"}
    parts = [f"{names[k]}{model[k]}" for k in names if k in model]
    return " ".join(parts) if parts else "?"


def _train_cfg(train: dict) -> str:
    """Stable short hash of the training config, so two sweeps with different lr never pair."""
    if not train:
        return "-"
    blob = json.dumps(train, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def _train_cfg_sans_eval(train: dict) -> str:
    """The training config's hash without `eval_every`: ladder rungs of other budgets space
    their validation points differently but must otherwise be trained alike."""
    return _train_cfg({k: v for k, v in train.items() if k != "eval_every"})


# the environment's entries a row carries (absent from records older than some of them)
_ENV_COLS = ("device", "hostname", "workers", "torch_threads", "torch", "triton", "python",
             "git_commit")  # fmt: skip
ROW_COLS = [
    "run_id", "variant", "seed", "task", "budget_mode", "budget_value", "status",
    "diverged_at_step", "device_name", *_ENV_COLS, "model_size", "optimizer", "lr", "train_cfg",
    "train_cfg_ladder", "created", *METRIC_COLS,
]  # fmt: skip


def _record_row(rec: RunRecord) -> dict:
    row = {
        "run_id": rec.run_id,
        "variant": rec.variant,
        "seed": rec.seed,
        "task": rec.task,
        "budget_mode": rec.budget["mode"],
        "budget_value": float(rec.budget["value"]),
        "status": rec.status,
        "diverged_at_step": rec.diverged_at_step,
        "device_name": rec.device_name,
        **{key: rec.env.get(key) for key in _ENV_COLS},
        "model_size": _model_size(rec.model),
        "optimizer": rec.train.get("optimizer", DEFAULT_OPTIMIZER),
        "lr": _num(rec.train.get("lr")),
        "train_cfg": _train_cfg(rec.train),
        "train_cfg_ladder": _train_cfg_sans_eval(rec.train),
        "created": rec.created,
    }
    for key in METRIC_COLS:
        row[key] = rec.metric(key)
    for key in rec.metrics:  # any extra metric the harness adds later
        if key not in row:
            row[key] = rec.metric(key)
    return row


def records_frame(records: Iterable[RunRecord | dict]) -> pd.DataFrame:
    """One row per run: identity, grouping keys, status, environment and every metric, flat.

    Missing metrics (diverged runs, CPU runs without MFU) are NaN so that means can skip them.
    Records may be given as RunRecords or as their JSON objects (validated: RecordError).
    """
    rows = [_record_row(as_record(r)) for r in records]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*ROW_COLS, "ok", "arm"])
    df["ok"] = df["status"] == "ok"
    return _label_arms(df)


def arm_label(variant: str, optimizer: str, mixed: bool) -> str:
    """A run's name in a table where `mixed` says whether its group mixes optimizers: the
    AdamW arm keeps the variant's name (the reference), another optimizer's is 'NAME · muon'."""
    return variant if not mixed or optimizer == DEFAULT_OPTIMIZER else variant + ARM_SEP + optimizer


def _label_arms(df: pd.DataFrame) -> pd.DataFrame:
    """Within each comparable group, runs of one variant that differ in optimizer or lr are
    separate arms, named so that none silently replaces another as 'the' run of that variant
    and seed: 'baseline · muon' where a group mixes optimizers (see `arm_label`), 'rope · lr
    0.004' where an arm was trained at several lrs in the group (an lr sweep). `arm` keeps the
    name without the lr, `variant` becomes the full label."""
    keys = [df[c].astype(str) for c in GROUP_COLS]
    mixed = df.groupby(keys)["optimizer"].transform("nunique") > 1
    rows = zip(df["variant"], df["optimizer"], mixed, strict=True)
    df = df.assign(arm=[arm_label(v, o, m) for v, o, m in rows])
    n_lr = df.groupby([*keys, df["arm"]])["lr"].transform("nunique")
    lr_text = ARM_SEP + "lr " + df["lr"].map("{:g}".format)
    return df.assign(variant=df["arm"].where(n_lr <= 1, df["arm"] + lr_text))


# --------------------------------------------------------------------------- grouping


def variant_order(variants: Iterable[str]) -> list[str]:
    """Baseline first, then the others in first-seen order (the order the sweep ran them)."""
    seen = list(dict.fromkeys(variants))
    return ([BASELINE] if BASELINE in seen else []) + [v for v in seen if v != BASELINE]


def split_groups(frame: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """Split runs into comparable groups, in first-seen order. Returns (key dict, sub-frame)."""
    if frame.empty:
        return []
    keys = frame[GROUP_COLS].astype(str).agg("\x1f".join, axis=1)
    out = []
    for key in dict.fromkeys(keys):
        sub = frame[keys == key]
        out.append(({c: sub[c].iloc[0] for c in GROUP_COLS}, sub))
    return out


def _dedupe_runs(g: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the latest run per (variant, seed); pairing by seed needs one run per seed."""
    dup = g.duplicated(["variant", "seed"], keep="last")
    return g[~dup], int(dup.sum())


def group_meta(g: pd.DataFrame) -> dict:
    """Everything the header line of a table needs, taken from the runs themselves."""

    def _uniq(col):
        return [str(x) for x in dict.fromkeys(g[col].dropna()) if str(x)]

    seeds = {v: int(g.loc[g["variant"] == v, "seed"].nunique()) for v in variant_order(g.variant)}
    return {
        "task": ", ".join(_uniq("task")),
        "budget_mode": str(g["budget_mode"].iloc[0]),
        "budget_value": float(g["budget_value"].iloc[0]),
        "model_size": ", ".join(_uniq("model_size")),
        "device_names": _uniq("device_name"),
        "hostnames": _uniq("hostname"),
        "torch": _uniq("torch"),
        "triton": _uniq("triton"),
        "git_commits": _uniq("git_commit"),
        "seeds": seeds,
        "train_cfgs": _uniq("train_cfg"),
        "lrs": _uniq("lr"),
        "optimizers": _uniq("optimizer"),
        "workers": _uniq("workers"),
        "torch_threads": _uniq("torch_threads"),
        "n_runs": len(g),
    }


# --------------------------------------------------------------------------- summary


def _metric_by_seed(runs: pd.DataFrame, metric: str) -> pd.Series:
    s = runs.set_index("seed")[metric]
    return s[np.isfinite(s.to_numpy(dtype=float))]


def _paired_metric(base: pd.DataFrame, var: pd.DataFrame, metric: str, lower: bool) -> dict:
    """Paired t on the seeds both sides finished; Welch if fewer than two seeds are shared."""
    b, v = _metric_by_seed(base, metric), _metric_by_seed(var, metric)
    common = [s for s in b.index if s in set(v.index)]
    if len(common) < 2 and len(b) >= 2 and len(v) >= 2:
        return stats.compare(b.to_numpy(), v.to_numpy(), paired=False, lower_is_better=lower)
    return stats.compare(b[common].to_numpy(), v[common].to_numpy(), lower_is_better=lower)


def _welch_metric(base: pd.DataFrame, var: pd.DataFrame, metric: str, lower: bool) -> dict:
    return stats.compare(
        base[metric].to_numpy(dtype=float),
        var[metric].to_numpy(dtype=float),
        paired=False,
        lower_is_better=lower,
        n_boot=0,
    )


def _pct(value: float, ref: float) -> float:
    if not (np.isfinite(value) and np.isfinite(ref)) or ref == 0:
        return math.nan
    return 100.0 * (value / ref - 1.0)


def _fmt_ci(lo: float, hi: float) -> str | None:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return f"[{lo:+.4g}, {hi:+.4g}]"


def _mean_std(runs: pd.DataFrame, metric: str) -> tuple[float, float]:
    x = runs[metric].to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def learned(runs: pd.DataFrame, has_acc: bool) -> bool | None:
    """The learning guard for one variant's finished runs: True when their mean val loss is at
    most LEARN_LOSS_FRAC x the task's frequency floor (`Task.frequency_loss`) and, on tasks
    with accuracy, their mean exact match is at least LEARN_MIN_ACCURACY. None when it cannot
    be told (no finished run; records that predate the floor and have no accuracy)."""
    ok = runs[runs["ok"]]
    loss, _ = _mean_std(ok, "val_loss")
    if not np.isfinite(loss):
        return None
    floor, _ = _mean_std(ok, "freq_loss") if "freq_loss" in ok else (math.nan, math.nan)
    checks = []
    if np.isfinite(floor):
        checks.append(loss <= LEARN_LOSS_FRAC * floor)
    if has_acc:
        acc, _ = _mean_std(ok, "accuracy")
        checks.append(bool(np.isfinite(acc) and acc >= LEARN_MIN_ACCURACY))
    return all(checks) if checks else None


def _variant_row(name: str, runs: pd.DataFrame, has_acc: bool) -> dict:
    ok = runs[runs["ok"]]
    row: dict = {"variant": name, "n_seeds": int(runs["seed"].nunique())}
    row["n_diverged"] = int((~runs["ok"]).sum())
    metrics = ["val_loss"] + (["accuracy"] if has_acc else [])
    metrics += ["step_ms", "tokens_per_s", "peak_mem_mb"]
    for m in metrics:
        row[f"{m}_mean"], row[f"{m}_std"] = _mean_std(ok, m)
    params = runs["params"].dropna()
    row["params"] = int(params.median()) if len(params) else math.nan
    row["learned"] = learned(runs, has_acc)
    return row


def _curves_by_seed(runs: pd.DataFrame, curves: dict) -> dict:
    return {s: curves.get(rid) or [] for s, rid in zip(runs["seed"], runs["run_id"], strict=True)}


def _multiplier_columns(base: pd.DataFrame, var: pd.DataFrame, row: dict, curves: dict):
    """Crossing multipliers (steps and wall-clock seconds) over the seeds both finished."""
    for axis, key in (("step", "x_steps"), ("time_s", "x_time")):
        m = multiplier.crossing_multipliers(
            _curves_by_seed(base, curves), _curves_by_seed(var, curves), axis=axis
        )
        row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = m["mean"], m["ci_low"], m["ci_high"]


def _rungs(ladder: pd.DataFrame) -> dict:
    """The ladder's finished runs as seed -> {budget: final val loss}."""
    rungs: dict = {}
    ok = ladder[ladder["ok"]]
    for seed, budget, loss in zip(ok["seed"], ok["budget_value"], ok["val_loss"], strict=True):
        if np.isfinite(loss):
            rungs.setdefault(seed, {})[float(budget)] = float(loss)
    return rungs


def _ladder_columns(rungs: dict, var: pd.DataFrame, row: dict, main_budget: float, control: dict):
    """'The baseline would need k x the budget': the variant's final losses read off the
    baseline's own budget ladder (bench.multiplier.ladder_multiplier), with the form of the
    fit and the status of the ladder's control, so a row is never read without them."""
    finals = {s: float(v) for s, v in _metric_by_seed(var, "val_loss").items()}
    try:
        lad = multiplier.ladder_multiplier(rungs, finals, main_budget)
    except ValueError as err:
        row["x_ladder_note"] = str(err)
        return
    row.update(
        x_ladder=lad["multiplier"],
        x_ladder_ci_low=lad["ci_low"],
        x_ladder_ci_high=lad["ci_high"],
        x_ladder_extrapolated=bool(lad["extrapolated"]),
        x_ladder_unreachable=bool(lad["unreachable"]),
        x_ladder_form=lad["form"],
        x_ladder_control=control["status"],
    )


def _diff_columns(base: pd.DataFrame, var: pd.DataFrame, row: dict, brow: dict, has_acc: bool):
    """Fill the d_* columns of one variant row against the baseline's runs and row."""
    base_ok, var_ok = base[base["ok"]], var[var["ok"]]
    c = _paired_metric(base_ok, var_ok, "val_loss", lower=True)
    verdict = c["verdict"]
    if brow.get("learned") is False:
        verdict = INCONCLUSIVE
    elif row.get("learned") is False and brow.get("learned") is True:
        verdict = DID_NOT_LEARN
    row.update(
        d_val_loss=c["mean_diff"],
        d_val_loss_ci=_fmt_ci(c["ci_low"], c["ci_high"]),
        verdict=verdict,
        d_val_loss_ci_low=c["ci_low"],
        d_val_loss_ci_high=c["ci_high"],
        d_val_loss_p=c["p_value"],
        d_val_loss_n=c["n"],
        d_val_loss_test=c["test"],
        d_val_loss_boot_ci=_fmt_ci(c["boot_ci_low"], c["boot_ci_high"]),
        d_val_loss_sd=c.get("sd_diff", math.nan),
        mde=c.get("mde", math.nan),
        seeds_needed=c.get("seeds_needed"),
    )
    row["d_step_ms_pct"] = _pct(row["step_ms_mean"], brow["step_ms_mean"])
    row["d_step_ms_verdict"] = _welch_metric(base_ok, var_ok, "step_ms", lower=True)["verdict"]
    row["d_tokens_per_s_pct"] = _pct(row["tokens_per_s_mean"], brow["tokens_per_s_mean"])
    tok = _welch_metric(base_ok, var_ok, "tokens_per_s", lower=False)
    row["d_tokens_per_s_verdict"] = tok["verdict"]
    row["d_peak_mem_pct"] = _pct(row["peak_mem_mb_mean"], brow["peak_mem_mb_mean"])
    if has_acc:
        a = _paired_metric(base_ok, var_ok, "accuracy", lower=False)
        row.update(
            d_accuracy=a["mean_diff"],
            d_accuracy_ci=_fmt_ci(a["ci_low"], a["ci_high"]),
            accuracy_verdict=a["verdict"],
        )


def _columns(has_acc: bool) -> list[str]:
    cols = ["variant", "n_seeds", "n_diverged", "learned", "val_loss_mean", "val_loss_std"]
    cols += ["accuracy_mean", "accuracy_std"] if has_acc else []
    cols += [
        "step_ms_mean", "step_ms_std", "tokens_per_s_mean", "tokens_per_s_std",
        "peak_mem_mb_mean", "peak_mem_mb_std", "params",
        "d_val_loss", "d_val_loss_ci", "verdict", "mde", "seeds_needed",
        "x_steps", "x_steps_ci_low", "x_steps_ci_high",
        "x_time", "x_time_ci_low", "x_time_ci_high",
        "x_ladder", "x_ladder_ci_low", "x_ladder_ci_high", "x_ladder_extrapolated",
        "x_ladder_unreachable", "x_ladder_form", "x_ladder_control",
        "x_ladder_note", "d_step_ms_pct", "d_tokens_per_s_pct", "d_peak_mem_pct",
    ]  # fmt: skip
    cols += ["d_accuracy", "d_accuracy_ci", "accuracy_verdict"] if has_acc else []
    cols += [
        "d_val_loss_ci_low", "d_val_loss_ci_high", "d_val_loss_p", "d_val_loss_n",
        "d_val_loss_test", "d_val_loss_sd", "d_val_loss_boot_ci", "d_step_ms_verdict",
        "d_tokens_per_s_verdict",
    ]  # fmt: skip
    return cols


def _group_summary(g: pd.DataFrame, curves: dict, ladder: tuple | None) -> pd.DataFrame:
    """One group's frame; `ladder` is (rungs, control) of the baseline's budget ladder."""
    g, _ = _dedupe_runs(g)
    has_acc = bool(np.isfinite(g["accuracy"].to_numpy(dtype=float)).any())
    order = variant_order(g["variant"])
    runs = {v: g[g["variant"] == v] for v in order}
    rows = {v: _variant_row(v, runs[v], has_acc) for v in order}
    if BASELINE in rows:
        base = runs[BASELINE]
        for v in order:
            if v == BASELINE:
                continue
            _diff_columns(base, runs[v], rows[v], rows[BASELINE], has_acc)
            ok_b, ok_v = base[base["ok"]], runs[v][runs[v]["ok"]]
            _multiplier_columns(ok_b, ok_v, rows[v], curves)
            if ladder is not None:
                _ladder_columns(ladder[0], ok_v, rows[v], _main_budget(g), ladder[1])
    df = pd.DataFrame([rows[v] for v in order])
    df = df.reindex(columns=_columns(has_acc))
    text_cols = [c for c in df.columns if c.endswith(("_ci", "verdict", "_test", "_note"))]
    text_cols += ["learned", "x_ladder_extrapolated", "x_ladder_unreachable", "x_ladder_form"]
    text_cols += ["x_ladder_control", "seeds_needed"]
    df[text_cols] = df[text_cols].astype(object).where(df[text_cols].notna(), None)
    df["d_val_loss_n"] = df["d_val_loss_n"].astype("Int64")
    return df


def _main_budget(g: pd.DataFrame) -> float:
    return float(g["budget_value"].iloc[0])


_LADDER_KEY = ["task", "budget_mode", "model_size", "device_name", "train_cfg_ladder"]


def _ladders(groups: list[tuple[dict, pd.DataFrame]]) -> tuple[dict, set]:
    """For each comparison group (index), the baseline's budget ladder: its own baseline runs
    and those of baseline-only groups trained alike at other budgets. Returns
    ({group index: ladder frame}, indices of the baseline-only groups used as rungs)."""

    def key(g):
        return tuple(str(g[c].iloc[0]) for c in _LADDER_KEY)

    only_base = {i for i, (_, g) in enumerate(groups) if set(g["variant"]) == {BASELINE}}
    ladders, used = {}, set()
    for i, (_, g) in enumerate(groups):
        if i in only_base or BASELINE not in set(g["variant"]):
            continue
        rungs = [j for j in only_base if key(groups[j][1]) == key(g)]
        if not rungs:
            continue
        frames = [_dedupe_runs(groups[k][1])[0] for k in (i, *rungs)]
        frames[0] = frames[0][frames[0]["variant"] == BASELINE]
        ladders[i] = pd.concat(frames, ignore_index=True)
        used.update(rungs)
    return ladders, used


def summaries(records: list[dict]) -> list[tuple[dict, pd.DataFrame]]:
    """One (meta, summary frame) per comparable group of runs; see the module docstring.
    Baseline-only groups that serve as the budget ladder of a comparison are folded into it
    (meta["ladder_budgets"]) instead of getting a table of their own; the ladder's control
    (bench.multiplier.ladder_control, from these records alone) is meta["ladder_control"] and
    the forms its fits took are meta["ladder_forms"]."""
    records = [as_record(r) for r in records]
    frame = records_frame(records)
    curves = {r.run_id: r.curve for r in records}
    groups = split_groups(frame)
    ladders, used = _ladders(groups)
    out = []
    for i, (_key, g) in enumerate(groups):
        if i in used:
            continue
        meta = group_meta(g)
        meta["n_duplicates"] = _dedupe_runs(g)[1]
        meta["positions"] = list(g.index)  # rows of records_frame(records) in this group
        ladder, rung_runs = None, ladders.get(i)
        if rung_runs is not None:
            meta["ladder_budgets"] = sorted(float(b) for b in rung_runs["budget_value"].unique())
            rungs = _rungs(rung_runs)
            meta["ladder_control"] = multiplier.ladder_control(rungs, _main_budget(g))
            ladder = (rungs, meta["ladder_control"])
        base = g[g["variant"] == BASELINE]
        meta["freq_loss"] = _mean_std(base, "freq_loss")[0] if len(base) else math.nan
        df = _group_summary(g, curves, ladder)
        if ladder is not None:
            meta["ladder_forms"] = sorted(set(df["x_ladder_form"].dropna()))
        out.append((meta, df))
    return out


def summary(records: list[dict]) -> pd.DataFrame:
    """Summary of one comparable group of runs (one row per variant, baseline first).

    Raises ValueError if the records mix tasks, budgets, model sizes or devices: use
    :func:`summaries` (or :func:`write_summary`) to get one table per group.
    """
    groups = summaries(records)
    if not groups:
        raise ValueError("no run records to summarise")
    if len(groups) > 1:
        labels = "; ".join(group_title(m) for m, _ in groups)
        raise ValueError(
            f"records span {len(groups)} incomparable groups ({labels}); "
            "use bench.tables.summaries() for one table per group"
        )
    return groups[0][1]


def ci_widths(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Per variant (not the baseline): the width of the 95% CI of Δ val loss and the sd of the
    paired differences, over every group in `records` (inf when there is no interval yet)."""
    out = {}
    for _, df in summaries(records):
        for _, r in df.iterrows():
            if r["variant"] == BASELINE:
                continue
            lo, hi = _num_or_nan(r, "d_val_loss_ci_low"), _num_or_nan(r, "d_val_loss_ci_high")
            width = hi - lo if np.isfinite(lo) and np.isfinite(hi) else math.inf
            out[r["variant"]] = (width, _num_or_nan(r, "d_val_loss_sd"))
    return out


# --------------------------------------------------------------------------- formatting


def _budget_text(mode: str, value: float) -> str:
    v = int(value) if np.isfinite(value) and float(value).is_integer() else value
    unit = BUDGET_UNITS.get(mode, mode)
    return f"{v:,} {unit}" if isinstance(v, int) else f"{v} {unit}"


def budget_label(meta: dict) -> str:
    """E.g. '2,000 steps (equal budget: same steps)'."""
    mode = meta.get("budget_mode", "?")
    words = BUDGET_WORDS.get(mode, f"equal budget: same {mode}")
    return f"{_budget_text(mode, meta.get('budget_value', math.nan))} ({words})"


def group_title(meta: dict) -> str:
    """One-line name of a group: task · budget · model size · device."""
    mode = meta.get("budget_mode", "?")
    parts = [meta.get("task", "?"), _budget_text(mode, meta.get("budget_value", math.nan))]
    parts += [meta.get("model_size", "?"), ", ".join(meta.get("device_names") or ["?"])]
    return " · ".join(str(p) for p in parts)


def _seeds_text(seeds: dict) -> str:
    counts = set(seeds.values())
    if len(counts) == 1:
        return str(counts.pop())
    return ", ".join(f"{v} {n}" for v, n in seeds.items())


def summary_header(meta: dict) -> str:
    """The line that states what was compared, under which budget and on what."""
    parts = [
        f"Task: {meta.get('task', '?')}",
        f"budget: {budget_label(meta)}",
        f"model: {meta.get('model_size', '?')}",
        f"seeds per variant: {_seeds_text(meta.get('seeds') or {})}",
        f"device: {', '.join(meta.get('device_names') or ['?'])}",
        f"torch {', '.join(meta.get('torch') or ['?'])}",
        f"triton {', '.join(meta.get('triton') or ['n/a'])}",
        f"git {', '.join(c[:10] for c in meta.get('git_commits') or ['?'])}",
    ]
    return "; ".join(parts) + "."


def _pm(mean: float, std: float, fmt: str) -> str:
    if not np.isfinite(mean):
        return "—"
    if not np.isfinite(std):
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(std, fmt)}"


def _decimals(value: float, sig: int = 3) -> int:
    """Decimals that show `sig` significant digits of `value` (at least 0)."""
    if not np.isfinite(value) or value == 0:
        return sig - 1
    return max(0, sig - 1 - int(math.floor(math.log10(abs(value)))))


def _pm_sig(mean: float, std: float, sig: int = 3) -> str:
    """'mean ± std' with the mean to `sig` significant digits and std to the same decimals."""
    d = _decimals(mean, sig)
    return _pm(mean, std, f",.{d}f")


def _short_verdict(verdict) -> str:
    return {"no significant difference": "n.s."}.get(verdict, verdict or "—")


def _signed(value: float, fmt: str, suffix: str = "") -> str:
    return "—" if not np.isfinite(value) else f"{format(value, '+' + fmt)}{suffix}"


def _ns(verdict) -> str:
    """Marks a speed difference the test could not separate from timing noise."""
    return " (n.s.)" if verdict in ("no significant difference", "too few seeds") else ""


def _num_or_nan(row: pd.Series, col: str) -> float:
    value = row.get(col)
    return float(value) if value is not None and pd.notna(value) else math.nan


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Human-readable table (strings): 'mean ± std', signed deltas, '—' where not applicable."""
    has_acc = "accuracy_mean" in df.columns
    rows = []
    for _, r in df.iterrows():

        def f(c, r=r):
            return _num_or_nan(r, c)

        out = {
            "variant": r["variant"],
            "ok/seeds": f"{int(r['n_seeds']) - int(r['n_diverged'])}/{int(r['n_seeds'])}",
            "learned": {True: "yes", False: "no"}.get(r.get("learned"), "?"),
            "val loss": _pm(f("val_loss_mean"), f("val_loss_std"), ".4f"),
            "Δ val loss": _signed(f("d_val_loss"), ".4f"),
            "95% CI (Δ)": r.get("d_val_loss_ci") or "—",
            "verdict": r.get("verdict") or "—",
        }
        if has_acc:
            out["accuracy"] = _pm(f("accuracy_mean"), f("accuracy_std"), ".3f")
            acc = _signed(f("d_accuracy"), ".3f")
            verdict = _short_verdict(r.get("accuracy_verdict"))
            out["Δ acc (verdict)"] = acc if acc == "—" else f"{acc} ({verdict})"
        step = _signed(f("d_step_ms_pct"), ".1f", "%")
        tok = _signed(f("d_tokens_per_s_pct"), ".1f", "%")
        out.update(
            {
                "step ms": _pm_sig(f("step_ms_mean"), f("step_ms_std")),
                "Δ step": step + ("" if step == "—" else _ns(r.get("d_step_ms_verdict"))),
                "tokens/s": _pm(f("tokens_per_s_mean"), f("tokens_per_s_std"), ",.0f"),
                "Δ tok/s": tok + ("" if tok == "—" else _ns(r.get("d_tokens_per_s_verdict"))),
                "peak MB": _pm(f("peak_mem_mb_mean"), f("peak_mem_mb_std"), ",.1f"),
                "Δ mem": _signed(f("d_peak_mem_pct"), ".1f", "%"),
                "params": "—" if not np.isfinite(f("params")) else f"{int(f('params')):,}",
            }
        )
        rows.append(out)
    return pd.DataFrame(rows)


def _x(value: float) -> str:
    return "∞" if value == math.inf else f"{value:.2f}"


def _times(value: float, lo: float = math.nan, hi: float = math.nan) -> str:
    """A multiplier with its interval: '1.32× [1.10, 1.58]'; an unreachable budget is '∞'."""
    if np.isnan(value):
        return "—"
    text = f"{_x(value)}×"
    if not (np.isnan(lo) or np.isnan(hi)):
        text += f" [{_x(lo)}, {_x(hi)}]"
    return text


def _ladder_cell(r: pd.Series) -> str:
    """The ladder multiplier as the headline shows it: with its interval, whether it lies
    outside the ladder, and, where the ladder's control failed, that it is no finding."""
    lo, hi = _num_or_nan(r, "x_ladder_ci_low"), _num_or_nan(r, "x_ladder_ci_high")
    text = _times(_num_or_nan(r, "x_ladder"), lo, hi)
    if r.get("x_ladder_unreachable"):
        text += " unreachable"
    elif r.get("x_ladder_extrapolated"):
        text += " extrap."
    if r.get("x_ladder_control") == "failed":
        text += " (control failed)"
    return text


def _verdict_text(r: pd.Series) -> str:
    """The verdict, short enough for the headline: 'n.s.' plus the seeds that would resolve
    the observed Δ where there is no significant difference."""
    verdict = _short_verdict(r.get("verdict"))
    need = r.get("seeds_needed")
    if verdict == "n.s." and need is not None and pd.notna(need):
        verdict += f" (≈{int(need)} seeds to resolve)"
    return verdict


def headline_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The compact table a person reads first: one row per variant against the baseline."""
    rows = []
    for _, r in df.iterrows():
        if r["variant"] == BASELINE:
            continue

        def f(c, r=r):
            return _num_or_nan(r, c)

        ci = r.get("d_val_loss_ci")
        out = {
            "variant": r["variant"],
            "Δ val loss [95% CI]": _signed(f("d_val_loss"), ".4f") + (f" {ci}" if ci else ""),
            "verdict": _verdict_text(r),
            "MDE": "—" if not np.isfinite(f("mde")) else f"{f('mde'):.4f}",
            "× steps (crossing)": _times(f("x_steps"), f("x_steps_ci_low"), f("x_steps_ci_high")),
            "× time (crossing)": _times(f("x_time"), f("x_time_ci_low"), f("x_time_ci_high")),
        }
        if "x_ladder" in df.columns and df["x_ladder"].astype(float).notna().any():
            out["× steps (ladder)"] = _ladder_cell(r)
        step = _signed(f("d_step_ms_pct"), ".1f", "%")
        out["Δ step time"] = step + ("" if step == "—" else _ns(r.get("d_step_ms_verdict")))
        out["Δ memory"] = _signed(f("d_peak_mem_pct"), ".1f", "%")
        rows.append(out)
    return pd.DataFrame(rows)


def ladder_control_text(meta: dict | None) -> str:
    """What the ladder's positive control read ('' without a ladder): the 2× rung left out of
    the fit and read off the other rungs should read 2×, or the ladder column is no finding."""
    c = (meta or {}).get("ladder_control")
    if not c:
        return ""
    if "multiplier" not in c:
        return f"Ladder control: could not be run ({c['reason']})."
    factor = f"{c['factor']:g}"
    budget = _budget_text(meta.get("budget_mode", "?"), c["budget"])
    text = (
        f"Ladder control: the baseline at {factor}× the budget ({budget}), left out of the "
        f"{c['form']} fit and read off the other rungs, reads "
        f"{_times(c['multiplier'], c['ci_low'], c['ci_high'])}: "
    )
    if c["status"] == "passed":
        return text + f"passed ({factor} lies inside its interval)."
    if c["status"] == "failed":
        return text + (
            f"failed ({c['reason']}), so this table's ladder multipliers are not findings: "
            "the ladder misreads a budget it was trained at."
        )
    return text + f"not judged ({c['reason']})."


def guard_text(meta: dict | None) -> str:
    floor = (meta or {}).get("freq_loss", math.nan)
    here = f" ({floor:.3f} nats here)" if floor is not None and np.isfinite(floor) else ""
    return (
        f"Learning guard: a variant learned when its mean val loss is at most "
        f"{LEARN_LOSS_FRAC:g} × the loss of a token-frequency table{here} and, on tasks with "
        f"exact answers, its mean exact match is at least {LEARN_MIN_ACCURACY:.0%}. If the "
        f"baseline did not learn, every verdict is '{INCONCLUSIVE}'; a variant that did not "
        f"learn while the baseline did is '{DID_NOT_LEARN}'."
    )


def multiplier_text(meta: dict | None) -> str:
    text = (
        "n.s.: no significant difference. "
        "MDE: the |Δ val loss| a paired t-test over these seeds would detect with 80% power at "
        "α = 0.05, from the observed spread of the per-seed differences; a sweep whose MDE "
        "exceeds the effect you care about could not have seen it ('≈N seeds to resolve': how "
        "many would resolve the observed Δ with 80% power). × steps (crossing): per seed, "
        "the steps the baseline needs to reach the worse of the two final val losses over the "
        "steps the variant needs (interpolated on the validation curves), geometric mean over "
        "seeds with a 95% t "
        "interval on the log scale; > 1: the variant is worth that many times the baseline's "
        "steps. × time: the same in training seconds, which charges a slower block for its "
        "cost. The crossing reads both curves inside one learning-rate schedule: at the "
        "crossing the variant's lr is still high, which by itself makes the ratio understate "
        "a gain; --ladder measures against baselines trained to the end of their own schedule."
    )
    budgets = (meta or {}).get("ladder_budgets")
    if budgets:
        text += " " + ladder_text(meta)
    return text


LADDER_FORM_WORDS = {
    multiplier.POWER_LAW: "L = E + B·budget^(−β), a saturating power law (4 or more budgets; "
    "β searched on a grid, E and B by least squares at each β)",
    multiplier.LOG_LINEAR: "L = a + b·ln(budget), log-linear (fewer than 4 budgets)",
}


def ladder_text(meta: dict) -> str:
    """How the ladder column was read, in the form its fits took, and what its control is."""
    mode = BUDGET_UNITS.get(meta.get("budget_mode", ""), "")
    rungs = ", ".join(f"{b:g}" for b in meta["ladder_budgets"])
    forms = meta.get("ladder_forms") or []
    fitted = "; ".join(LADDER_FORM_WORDS[f] for f in forms) if forms else "the ladder's fit"
    factor = f"{multiplier.CONTROL_FACTOR:g}"
    floor = "; 'unreachable' = at or below the power law's floor E, which no budget reaches (∞)"
    return (
        f"× steps (ladder): the baseline trained with its own full schedule at {rungs} "
        f"{mode}; {fitted}, fitted through its final losses and inverted at the variant's mean "
        "final loss; 95% percentile bootstrap over seeds (coarse with few seeds: 3 seeds give "
        "10 distinct resamples); 'extrap.' = outside the ladder"
        f"{floor if multiplier.POWER_LAW in forms else ''}. Ladder control: the "
        f"{factor}× rung is left out, the other rungs are fitted in the same form and read at "
        f"the {factor}× runs' own final losses with the same bootstrap; a fit that can be "
        f"trusted reads {factor}×, and the control passes when {factor} lies inside its "
        "interval. Where it fails, the ladder misreads a budget it was trained at, and its "
        "multipliers are marked '(control failed)': not findings."
    )


MUON_WORDS = (
    "Muon (Nesterov momentum orthogonalised by torch's Newton–Schulz iteration, attention's Q, K "
    "and V as three matrices, each update scaled to AdamW's RMS) for the blocks' 2-D matrices "
    "and AdamW for embeddings, norms and biases, one lr and schedule for both"
)


def optimizer_text(meta: dict | None) -> str:
    """Which optimizer trained the runs, and in an optimizer comparison the reference arm."""
    optimizers = (meta or {}).get("optimizers") or [DEFAULT_OPTIMIZER]
    if optimizers == [DEFAULT_OPTIMIZER]:
        return ""
    if len(optimizers) == 1:
        return f" Every run trained with {MUON_WORDS if optimizers == ['muon'] else optimizers[0]}."
    others = ", ".join(f"'NAME{ARM_SEP}{o}'" for o in optimizers if o != DEFAULT_OPTIMIZER)
    return (
        f" Optimizer arms: {others} is the variant trained with "
        f"{MUON_WORDS if 'muon' in optimizers else 'that optimizer'}; the plain names trained "
        f"with AdamW. Reference arm: '{BASELINE}' with AdamW."
    )


def lr_text(meta: dict | None) -> str:
    """The convention, where the runs trained at their task recipe's lr and that lr was chosen
    by a committed sweep of the baseline: every arm at the baseline's own best."""
    lrs = (meta or {}).get("lrs") or []
    if len(lrs) != 1 or "," in meta.get("task", ""):
        return ""
    from bench.tasks import task_names, task_recipe

    if meta["task"] not in task_names():
        return ""
    recipe = task_recipe(meta["task"])
    if not recipe.lr_sweep or float(lrs[0]) != recipe.lr:
        return ""
    return (
        f" Every arm trained at lr {recipe.lr:g}, the baseline's own best at this task's recipe "
        f"({recipe.steps:,} steps; the sweep: {recipe.lr_sweep}): variants are compared at the "
        "baseline's tuned lr, as Narang et al. (2021) compare them; --tune lr gives each arm "
        "its own."
    )


def footnote(meta: dict | None = None) -> str:
    """How to read the table; stated under every table so a verdict is never read without it."""
    text = (
        "Mean ± std over runs that finished (status ok); diverged runs are counted in "
        "ok/seeds and excluded from every mean, std and test. Δ = variant − baseline. "
        "Verdict: paired t-test on validation loss by seed over the seeds both finished "
        "(Welch if fewer than two are shared), two-sided α = 0.05; 'better'/'worse' only when "
        "the 95% CI of Δ excludes 0, otherwise 'no significant difference'; fewer than two "
        "seeds: 'too few seeds'. Speed deltas are relative to the baseline mean; '(n.s.)' marks "
        "a difference Welch's test cannot separate from timing noise."
    )
    if meta and meta.get("workers"):
        text += (
            f" Timed with {', '.join(meta['workers'])} run(s) at once, "
            f"{', '.join(meta.get('torch_threads') or ['?'])} torch thread(s) each."
        )
    text += " " + guard_text(meta) + " " + multiplier_text(meta)
    if meta and meta.get("n_duplicates"):
        text += f" {meta['n_duplicates']} repeated run(s) of the same variant and seed ignored "
        text += "(latest kept)."
    text += optimizer_text(meta) + lr_text(meta)
    if meta and len(meta.get("train_cfgs") or []) > 1:
        text += f" Warning: these runs used {len(meta['train_cfgs'])} different training configs."
    return text


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table of a frame of strings (no tabulate dependency)."""

    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(df.columns))) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def format_summary(df: pd.DataFrame, meta: dict, notes: list[str] = ()) -> str:
    """Markdown: a title, the header line, the headline table, the full table, the footnote."""
    lines = [f"### {group_title(meta)}", "", summary_header(meta), ""]
    head = headline_frame(df)
    if not head.empty:
        control = ladder_control_text(meta)
        lines += [markdown_table(head), ""] + ([control, ""] if control else [])
        lines += ["Full table:", ""]
    lines += [markdown_table(display_frame(df)), "", f"_{footnote(meta)}_"]
    lines += [f"\n_{n}_" for n in notes]
    if BASELINE not in set(df["variant"]):
        lines += ["", f"_No '{BASELINE}' runs in this group: no deltas or verdicts._"]
    return "\n".join(lines) + "\n"


def summary_csv_frame(groups: list[tuple[dict, pd.DataFrame]]) -> pd.DataFrame:
    """All groups' raw numbers in one frame, with the group keys as trailing columns."""
    parts = []
    for meta, df in groups:
        df = df.copy()
        df["task"] = meta["task"]
        df["budget_mode"] = meta["budget_mode"]
        df["budget_value"] = meta["budget_value"]
        df["model_size"] = meta["model_size"]
        df["device_name"] = ", ".join(meta["device_names"])
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def write_summary(records: list[dict], out_dir, notes: list[str] = ()) -> pd.DataFrame:
    """Write summary.csv (raw numbers, all groups) and summary.md (one table per group).

    Returns the frame written to summary.csv.
    """
    groups = summaries(records)
    if not groups:
        raise ValueError("no run records to summarise")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = summary_csv_frame(groups)
    # atomic: sweeps sharing the folder may write their tables at the same moment
    write_bytes_atomic(out / "summary.csv", frame.to_csv(index=False).encode("utf-8"))
    text = "\n".join(format_summary(df, meta, notes) for meta, df in groups)
    from bench import lengths  # late: it builds its table with this module's helpers

    text += lengths.section(records)  # '' unless runs took the lengths probe
    write_bytes_atomic(out / "summary.md", text.encode("utf-8"))
    return frame
