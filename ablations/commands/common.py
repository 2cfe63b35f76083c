"""What the commands share: where the runs happen (`run_specs`), how many at once, the output
folder's check, and the resolved config and specs written beside the results."""

from __future__ import annotations

import json
import stat
import sys
import tempfile
from pathlib import Path

from ablations import config_toml
from ablations.config import SweepConfig
from bench.core.records import RUNS_FILE, write_bytes_atomic
from bench.core.spec import RunSpec
from bench.exec.executor import cpu_cores, execute


def plugin_paths(cfg: SweepConfig) -> tuple[str, ...]:
    """The plugin files as absolute paths: worker processes and jobs import them again."""
    return tuple(str(Path(p).resolve()) for p in cfg.plugins)


def default_jobs(cfg: SweepConfig, device: str, world: int) -> int:
    """--jobs when not given: on a CPU, one one-thread worker process per core (two such
    processes beat one two-thread process on a 2-core machine); one run at a time elsewhere."""
    if cfg.executor.jobs is not None:
        return cfg.executor.jobs
    if device == "cpu" and cfg.executor.kind == "local" and world == 1:
        return cpu_cores()
    return 1


def write_command(out: Path, cfg: SweepConfig, argv, world: int, specs: list[RunSpec],
                  seeds: int) -> None:  # fmt: skip
    """Beside the results: the resolved config (config.toml, which --config takes back) and
    the command with every resolved spec (command.json; rewritten when seeds grow). Both are
    written atomically: a full disk leaves the old file whole, never a truncated one."""
    write_bytes_atomic(out / "config.toml", config_toml.dumps(cfg).encode("utf-8"))
    argv = sys.argv[1:] if argv is None else argv
    command = {"argv": argv, "world_size": world, "seeds": seeds,
               "specs": [s.to_dict() for s in specs]}  # fmt: skip
    write_bytes_atomic(out / "command.json", json.dumps(command, indent=1).encode("utf-8"))


def run_specs(cfg: SweepConfig, specs: list[RunSpec], out: Path, task, jobs: int, force: bool,
              retry_failed: bool = True):  # fmt: skip
    """Train what of `specs` is not finished, where the config's executor says; returns the
    `bench.exec.executor.Tally` (runs trained or submitted, skipped, held, failed)."""
    return execute(specs, out, force=force, quiet=cfg.quiet, task=task, jobs=jobs,
                   where=cfg.executor, plugins=plugin_paths(cfg),
                   retry_failed=retry_failed)  # fmt: skip


# what a command writes in its output folder, and whether each is a folder (else a file)
_OUT_ENTRIES = {
    RUNS_FILE: False, "summary.md": False, "summary.csv": False, "config.toml": False,
    "command.json": False, "claims": True, "errors": True, "checkpoints": True,
    "trackers": True,
}  # fmt: skip


def _check_entries(out: Path) -> None:
    """Each thing the command writes in `out` is absent or of its kind: a folder where a file
    goes would fail after every run trained, and a FIFO for runs.jsonl would hang."""
    for name, folder in _OUT_ENTRIES.items():
        try:
            mode = (out / name).stat().st_mode  # follows a symlink; a loop raises
        except FileNotFoundError:
            continue
        except OSError as err:
            raise ValueError(f"--out {out}: {name} cannot be read ({err.strerror})") from None
        if stat.S_ISDIR(mode) != folder or not (folder or stat.S_ISREG(mode)):
            kind = "a folder" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else (
                "no regular file")  # fmt: skip
            want = "a folder" if folder else "a file"
            raise ValueError(
                f"--out {out}: {name} is {kind}, where the command writes {want}; move it away "
                "or name another --out"
            )


def check_output(out: Path) -> None:
    """Before anything trains: the output folder can be made and its runs.jsonl appended to,
    and nothing in it stands where the command writes (a folder named summary.md, say), so no
    finished run is lost to an unwritable output. One line if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        _check_entries(out)
        if (out / RUNS_FILE).exists():
            with open(out / RUNS_FILE, "a", encoding="utf-8"):
                pass
        else:  # a probe, so that a cluster sweep's folder gets no empty runs.jsonl
            with tempfile.TemporaryFile(dir=out):
                pass
    except FileExistsError:
        raise ValueError(f"--out {out} is a file, not a folder; name a folder") from None
    except NotADirectoryError:
        raise ValueError(f"--out {out}: a part of that path is a file, not a folder") from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(
            f"--out {out} cannot be written ({reason}); name a folder you can write to"
        ) from None


def storage_error(err: OSError) -> str:
    """One line for a file the command could not write (disk full, a read-only folder)."""
    where = f"{err.filename}: " if err.filename else ""
    return (
        f"cannot write {where}{err.strerror or err}; every finished run is kept: free the disk "
        "(or make the folder writable) and rerun the same command to resume"
    )


def format_seconds(seconds: float) -> str:
    """E.g. '42 s', '3 min 05 s', '1 h 02 min'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
