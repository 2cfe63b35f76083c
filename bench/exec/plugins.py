"""The one plugin loader: `--plugin FILE.py` in the command's process and in every worker
process or cluster job, which start fresh and must register the same blocks, tasks, studies
before they train.

    load_plugin("my_blocks.py")   # ValueError in one line if the file is missing or raises
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from variants.named import plugin_origin

# Imported before any plugin runs, so that no built-in registers for the first time inside a
# plugin's import and is taken for the plugin's own (which it could then replace).
_BUILT_INS = ("variants.registry", "bench.tasks", "bench.probes", "bench.core.optim",
              "bench.analysis.columns", "bench.analysis.sections")  # fmt: skip


def load_plugin(path: str, keep: bool = False) -> None:
    """Import a plugin file; any error in it is one line naming the file, line and error.

    The module sits in `sys.modules` while it runs (a @dataclass in it looks its module up
    there). The command's process takes it out again (`keep=False`), so nothing of the plugin
    pickles by a module name that workers cannot import and they rebuild what they need;
    workers keep it."""
    path = str(path)
    if not os.path.isfile(path):
        raise ValueError(f"plugin file {path!r} does not exist")
    if not path.endswith(".py"):
        raise ValueError(f"plugin file {path!r} is not a Python file; name a .py file")
    for name in _BUILT_INS:
        importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    added = sys.modules.setdefault(spec.name, module) is module
    try:
        with plugin_origin(str(Path(path).resolve())):
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
    finally:
        if added and not keep:
            del sys.modules[spec.name]


def load_plugins(paths) -> None:
    """Every plugin file in order (a worker process or a cluster job does this first)."""
    for path in paths:
        load_plugin(path, keep=True)
