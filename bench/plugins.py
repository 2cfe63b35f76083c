"""The one plugin loader: `--plugin FILE.py` in the command's process and in every worker
process or cluster job, which start fresh and must register the same blocks, tasks, studies
before they train.

    load_plugin("my_blocks.py")   # ValueError in one line if the file is missing or raises
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from pathlib import Path


def load_plugin(path: str) -> None:
    """Import a plugin file; any error in it is one line naming the file, line and error."""
    path = str(path)
    if not os.path.isfile(path):
        raise ValueError(f"plugin file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ValueError(f"plugin {path}, line {err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:  # whatever the user's code raises at import
        tb = traceback.extract_tb(err.__traceback__)
        lines = [f for f in tb if Path(f.filename).resolve() == Path(path).resolve()]
        where = f", line {lines[-1].lineno}" if lines else ""
        raise ValueError(
            f"plugin {path}{where} raised {type(err).__name__} at import: {err}"
        ) from None


def load_plugins(paths) -> None:
    """Every plugin file in order (a worker process or a cluster job does this first)."""
    for path in paths:
        load_plugin(path)
