"""Experiment trackers (`--log tensorboard`, `--log wandb`): each run's config, curve and final
metrics, logged under its run id and variant.

Logged from the record, once it is written: the record holds the whole curve, so one seam
(`bench.exec.outcome.train_and_record`) serves every executor, and nothing a tracker does can
touch training or the record. The records stay the source of truth: a tracker that raises
(a broken install, a full disk, a W&B refusal) is one warning line on stderr naming it and the
error, it is off for the rest of this process's runs, and the sweep goes on. An unknown name or
a missing optional package is refused before any training (`check_trackers`), with the extra to
install.

Where the files go: ``<out>/trackers/tensorboard/<variant>/<run_id>/`` (TensorBoard's event
files; ``tensorboard --logdir <out>/trackers/tensorboard``) and ``<out>/trackers/wandb/wandb/``
(W&B's run folders; offline unless WANDB_MODE says otherwise, ``wandb sync`` uploads them).
Failed runs are not logged: they are no result, and a rerun retries them.

A new tracker is one class with `start`, `log_point` and `finish` (the `Tracker` protocol)
and one entry in `TRACKERS`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import ClassVar, Protocol

from bench.core.records import RunRecord

TRACKERS_DIR = "trackers"  # under --out


class Tracker(Protocol):
    """One run's log in one tracker: `start`, a `log_point` per curve point, `finish`."""

    requires: ClassVar[tuple[str, ...]]  # the modules it imports (checked before training)
    extra: ClassVar[str]  # the pyproject extra that installs them

    def start(self, record: RunRecord, out: Path) -> None: ...

    def log_point(self, point: dict) -> None: ...

    def finish(self, metrics: dict) -> None: ...


def scalars(values: dict) -> dict:
    """The numbers of a curve point or of a record's metrics, as the record on disk has them:
    a NaN or infinity is written as null there (strict JSON), so it is left out here too, as
    are None, text, lists and flags."""
    return {
        k: v
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def run_config(record: RunRecord) -> dict:
    """What a tracker shows as the run's config: its identity and the spec it hashes from."""
    return {
        "run_id": record.run_id,
        "variant": record.variant,
        "seed": record.seed,
        "task": record.task,
        "status": record.status,
        "budget": record.budget,
        "spec": record.spec,
    }


def _folder_name(text: str) -> str:
    """A variant name as one folder name (a plugin's name may hold any character)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text) or "_"


class TensorBoardTracker:
    """Event files through torch's SummaryWriter: the curve's numbers under their own names
    (val_loss, train_loss, accuracy, ...) at their step, the final metrics as final/NAME at
    the last step, the config as text. A rerun of a run replaces its folder, as its record
    replaces the old one."""

    requires = ("tensorboard",)
    extra = "tensorboard"

    def start(self, record: RunRecord, out: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = out / TRACKERS_DIR / "tensorboard" / _folder_name(record.variant) / record.run_id
        shutil.rmtree(folder, ignore_errors=True)
        self.writer = SummaryWriter(log_dir=str(folder))
        self.step = 0
        text = json.dumps(run_config(record), indent=1)
        self.writer.add_text("config", f"```\n{text}\n```")

    def log_point(self, point: dict) -> None:
        self.step = int(point["step"])
        for key, value in scalars(point).items():
            if key != "step":
                self.writer.add_scalar(key, value, self.step)

    def finish(self, metrics: dict) -> None:
        for key, value in scalars(metrics).items():
            self.writer.add_scalar(f"final/{key}", value, self.step)
        self.writer.close()


class WandbTracker:
    """A W&B run with the record's run id as its id, `<variant> seed <seed>` as its name and
    the variant as its group: the curve as history at each point's step, the final metrics as
    its summary. Offline (files only, no account, no network) unless WANDB_MODE is set."""

    requires = ("wandb",)
    extra = "wandb"

    def start(self, record: RunRecord, out: Path) -> None:
        import wandb

        folder = out / TRACKERS_DIR / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            mode=None if os.environ.get("WANDB_MODE") else "offline",
            dir=str(folder),
            project=os.environ.get("WANDB_PROJECT") or "transformer-bench",
            id=record.run_id,
            name=f"{record.variant} seed {record.seed}",
            group=record.variant,
            job_type=record.task,
            config=run_config(record),
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log_point(self, point: dict) -> None:
        values = {k: v for k, v in scalars(point).items() if k != "step"}
        # committed now: a row left open until `finish` would overwrite the summary's final
        # metrics with the curve's last values
        self.run.log(values, step=int(point["step"]), commit=True)

    def finish(self, metrics: dict) -> None:
        self.run.summary.update(scalars(metrics))
        self.run.finish()


# name (as --log takes it) -> the tracker class; a new tracker is one class and one entry
TRACKERS: dict[str, type] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}


def check_trackers(names) -> None:
    """Refuse, in one line, a name that is no tracker or one whose package is not installed:
    before any training, not as a warning after each run."""
    for name in names:
        cls = TRACKERS.get(name)
        if cls is None:
            valid = ", ".join(TRACKERS) or "none"
            raise ValueError(f"--log {name!r} is no tracker; valid: {valid}")
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(
                f'--log {name} needs the {missing[0]} package: pip install -e ".[{cls.extra}]"'
            )


def log_record(tracker: Tracker, record: RunRecord, out: Path) -> None:
    """One record, start to finish, into one tracker."""
    tracker.start(record, out)
    for point in record.curve:
        tracker.log_point(point)
    tracker.finish(record.metrics)


class Trackers:
    """The trackers of one process's runs (`--log`): each record goes to each of them; one
    that raises is one warning line and is off from then on. Picklable (names and a folder),
    so worker processes and cluster jobs take it along."""

    def __init__(self, names, out: Path):
        self.names = list(dict.fromkeys(names))
        self.out = Path(out)
        self.off: set[str] = set()

    def log(self, record: RunRecord) -> None:
        """Log a written record to every tracker still on; failed runs are not logged."""
        if record.status == "failed":
            return
        for name in self.names:
            if name in self.off:
                continue
            try:
                log_record(TRACKERS[name](), record, self.out)
            except Exception as err:  # whatever the tracker raises: the record is written
                self.off.add(name)
                print(
                    f"warning: --log {name} failed at run {record.run_id} ({_error_line(err)}); "
                    f"{name} is off for the rest of this process's runs, the records are "
                    "written as usual",
                    file=sys.stderr,
                )


def _error_line(err: BaseException) -> str:
    from bench.exec.outcome import error_line  # outcome imports this module

    return error_line(err)
