"""Run records as one flat frame, and that frame split into comparable groups.

A directory of records may hold runs of several tasks, budgets, model sizes or devices.
Comparing a variant against a baseline trained on another task, for another budget, at another
size or timed on another device is meaningless, so records are split into groups by
``(task, budget mode, budget value, model size, device name)``. The training config is not a
group key (a sweep may tune lr per variant); runs of one variant that differ in optimizer or lr
are separate arms (`_label_arms`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.columns import COLUMNS, metric_names
from bench.analysis.fmt import num, variant_order
from bench.core.records import RunRecord, as_record

GROUP_COLS = ["task", "budget_mode", "budget_value", "model_size", "device_name"]
DEFAULT_OPTIMIZER = "adamw"  # the reference arm of an optimizer comparison (bench.core.optim)
DEFAULT_TOKENIZER = "char"  # the text tasks' default (bench.tasks.tokenizers)
ARM_SEP = " · "  # between a variant's name and what else sets its arm apart: 'baseline · muon'


# --------------------------------------------------------------------------- records -> frame


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
# a row's columns before its metrics (one per entry of bench.analysis.columns)
ROW_COLS = [
    "run_id", "variant", "seed", "task", "budget_mode", "budget_value", "status",
    "diverged_at_step", "error", "device_name", *_ENV_COLS, "model_size", "optimizer", "lr",
    "train_cfg", "train_cfg_ladder", "tokenizer", "created",
]  # fmt: skip


def tokenizer_label(task: dict) -> str:
    """A run's tokeniser, short: 'char' (also for tasks without one), 'bpe:1024', or a saved
    tokenizer.json's file name."""
    name = (task or {}).get("tokenizer") or DEFAULT_TOKENIZER
    return name if name.startswith("bpe:") or name == DEFAULT_TOKENIZER else Path(name).name


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
        "error": rec.error,
        "device_name": rec.device_name,
        **{key: rec.env.get(key) for key in _ENV_COLS},
        "model_size": _model_size(rec.model),
        "optimizer": rec.train.get("optimizer", DEFAULT_OPTIMIZER),
        "lr": num(rec.train.get("lr")),
        "train_cfg": _train_cfg(rec.train),
        "train_cfg_ladder": _train_cfg_sans_eval(rec.train),
        "tokenizer": tokenizer_label(rec.spec.get("task")),
        "created": rec.created,
    }
    for name in metric_names():
        row[name] = COLUMNS[name].value(rec)
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
        return pd.DataFrame(columns=[*ROW_COLS, *metric_names(), "ok", "arm"])
    df["ok"] = df["status"] == "ok"
    return _label_arms(_no_val_loss(df))


_told: set[str] = set()  # warnings already printed by this process


def _no_val_loss(df: pd.DataFrame) -> pd.DataFrame:
    """A run recorded as ok without a finite val loss (a hand edit, a NaN evaluation) is in no
    statistic: here its status reads 'no val loss' and it counts as not finished, with one
    warning line, so a table never reads 2/2 over a mean of one seed."""
    lost = df["ok"] & ~np.isfinite(df["val_loss"].to_numpy(dtype=float))
    for rid, variant, seed in zip(df.loc[lost, "run_id"], df.loc[lost, "variant"],
                                  df.loc[lost, "seed"], strict=True):  # fmt: skip
        message = f"run {rid} ({variant} seed {seed}) is ok but has no finite val loss"
        if message not in _told:
            _told.add(message)
            print(f"warning: {message}; left out of every statistic", file=sys.stderr)
    df.loc[lost, "status"], df.loc[lost, "ok"] = "no val loss", False
    return df


def arm_label(variant: str, optimizer: str, mixed: bool) -> str:
    """A run's name in a table where `mixed` says whether its group mixes optimizers: the
    AdamW arm keeps the variant's name (the reference), another optimizer's is 'NAME · muon'."""
    return variant if not mixed or optimizer == DEFAULT_OPTIMIZER else variant + ARM_SEP + optimizer


def reference_tokenizer(names) -> str:
    """The tokeniser a group's other arms are read against: char where it is among them, else
    the first by name."""
    names = sorted(set(names))
    return DEFAULT_TOKENIZER if DEFAULT_TOKENIZER in names else names[0]


def _tokenizer_arms(df: pd.DataFrame, keys: list) -> pd.Series:
    """' · bpe:1024' after the arms of a group that mixes tokenisers, but for the reference's."""
    by_group = df.groupby(keys)["tokenizer"]
    ref = by_group.transform(lambda names: reference_tokenizer(names))
    mixed = by_group.transform("nunique") > 1
    tag = ARM_SEP + df["tokenizer"]
    return tag.where(mixed & (df["tokenizer"] != ref), "")


def _label_arms(df: pd.DataFrame) -> pd.DataFrame:
    """Within each comparable group, runs of one variant that differ in optimizer, tokeniser
    or lr are separate arms, named so that none silently replaces another as 'the' run of that
    variant and seed: 'baseline · muon' where a group mixes optimizers (see `arm_label`),
    'baseline · bpe:1024' where it mixes tokenisers (read against the char arms, in bits per
    byte: bench.analysis.compare), 'rope · lr 0.004' where an arm was trained at several lrs in
    the group (an lr sweep). `arm` keeps the name without the lr, `variant` becomes the full
    label."""
    keys = [df[c].astype(str) for c in GROUP_COLS]
    mixed = df.groupby(keys)["optimizer"].transform("nunique") > 1
    rows = zip(df["variant"], df["optimizer"], mixed, strict=True)
    df = df.assign(arm=[arm_label(v, o, m) for v, o, m in rows])
    df = df.assign(arm=df["arm"] + _tokenizer_arms(df, keys))
    n_lr = df.groupby([*keys, df["arm"]])["lr"].transform("nunique")
    lr_text = ARM_SEP + "lr " + df["lr"].map("{:g}".format)
    return df.assign(variant=df["arm"].where(n_lr <= 1, df["arm"] + lr_text))


# --------------------------------------------------------------------------- grouping


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
        "tokenizers": _uniq("tokenizer"),
        "workers": _uniq("workers"),
        "torch_threads": _uniq("torch_threads"),
        "n_runs": len(g),
    }
