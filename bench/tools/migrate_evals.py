"""One-off migration: fold a study's cached evaluations into its records' `evals`.

    python -m bench.migrate_evals results/reference/studies/addition

Before runs kept their task's evaluation in their record (`evals`), the addition, calculator
and pretraining studies reloaded each run's saved weights after training and cached what they
measured in `<study>_eval.json`, keyed by run id. Those caches were computed from exactly the
final weights of the runs in the folder's runs.jsonl, so they are those runs' evaluations:
this writes each one into its record, in the layout a run writes today, plus
`"evals_from": "<cache file>"` (where it came from). Nothing else of a record changes: not its
run id, spec or metrics, nor the order of the lines. A record the cache does not cover is left
as it is; running it twice changes nothing more.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _addition(key: str, value) -> tuple[str, dict]:
    rid, _n = key.split(":")  # "<run id>:<problems per width>"
    return rid, {"by_digits": value}


def _calculator(key: str, value) -> tuple[str, dict]:
    rid, mode, _n = key.split(":")  # "<run id>:<none|generated|given>:<problems or None>"
    return rid, {"by_cell": {mode: value}}


def _pretraining(key: str, value) -> tuple[str, dict]:
    return key, {"train_split_loss": float(value)}  # "<run id>": the train-split loss


# cache file -> how one of its entries becomes (run id, part of that run's evals)
CACHES = {
    "addition_eval.json": _addition,
    "calculator_eval.json": _calculator,
    "pretraining_eval.json": _pretraining,
}


def _merge(into: dict, part: dict, where: str) -> None:
    for k, v in part.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v, f"{where}.{k}")
        elif k in into and into[k] != v:
            raise ValueError(f"{where}: two cached evaluations of {k!r} differ; keep one")
        else:
            into[k] = v


def cached_evals(folder: Path) -> tuple[str, dict[str, dict]]:
    """(cache file name, run id -> evals) from the one `*_eval.json` cache in `folder`."""
    found = [name for name in CACHES if (folder / name).is_file()]
    if len(found) != 1:
        raise ValueError(
            f"{folder} holds {len(found)} evaluation caches ({', '.join(found) or 'none'}); "
            f"expected one of {', '.join(CACHES)}"
        )
    name = found[0]
    evals: dict[str, dict] = {}
    for key, value in json.loads((folder / name).read_text()).items():
        rid, part = CACHES[name](key, value)
        _merge(evals.setdefault(rid, {}), part, f"{name}[{key}]")
    return name, evals


def migrate(folder: Path) -> int:
    """Rewrite folder/runs.jsonl with the cached evaluations in place; returns how many
    records got them."""
    name, evals = cached_evals(folder)
    path = folder / "runs.jsonl"
    lines = path.read_text().splitlines()
    out, done = [], 0
    for line in lines:
        rec = json.loads(line)
        ev = evals.get(rec["run_id"])
        if ev is not None:
            old = rec.get("evals") or {}
            if old and old != {**ev, "evals_from": name}:
                raise ValueError(f"run {rec['run_id']} already has other evals; not touched")
            # the layout a run writes today: evals right after probes
            rec = {k: v for k, v in rec.items() if k != "evals"}
            keys = list(rec)
            at = keys.index("probes") + 1 if "probes" in keys else len(keys)
            items = list(rec.items())
            rec = dict(items[:at] + [("evals", {**ev, "evals_from": name})] + items[at:])
            done += 1
        out.append(json.dumps(rec, separators=(",", ":")))  # as bench.core.records writes them
    unknown = sorted(set(evals) - {json.loads(x)["run_id"] for x in lines})
    if unknown:
        raise ValueError(f"{name} has evaluations of runs not in {path}: {', '.join(unknown)}")
    path.write_text("\n".join(out) + "\n")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="study folders with runs.jsonl")
    args = parser.parse_args(argv)
    try:
        for folder in args.folders:
            print(f"{folder}: {migrate(folder)} record(s) given their cached evals")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
