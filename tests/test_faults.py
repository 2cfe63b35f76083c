"""Regression tests for the faults a probe of bad inputs found (issue 22, section 3): each test
is named after its defect and failed before the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "ablations" / "run.py")]


def cli(*args, timeout=300, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*RUN, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def one_line_error(r, *words) -> None:
    """A bad-input exit: status 2, one 'error: ...' line naming each of `words`, no traceback."""
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, (
        r.stderr
    )
    for w in words:
        assert w in lines[0], (w, lines[0])


# ---------------------------------------------------------------------------------------------
# 1. a plugin must not replace a built-in (its runs would keep the built-in's run ids)

HIJACKS = {
    "variant": "from variants.registry import register_variant\n"
    "register_variant('rope', 'not rope at all', mlp='swiglu')\n",
    "block": "import torch.nn as nn\nfrom variants.registry import register\n"
    "@register('mlp', 'gelu')\nclass Fake(nn.Identity):\n"
    "    def __init__(self, cfg):\n        super().__init__()\n",
    "task": "from bench.tasks import register_task\nfrom bench.tasks.addition import AdditionTask\n"
    "@register_task\nclass Fake(AdditionTask):\n"
    "    name = 'shakespeare'\n    description = 'not shakespeare'\n",
}


@pytest.mark.parametrize("kind", HIJACKS)
def test_plugin_silently_replaces_a_builtin(tmp_path, kind):
    plugin = tmp_path / "hijack.py"
    plugin.write_text(HIJACKS[kind])
    r = cli("--plugin", str(plugin), "--list")
    name = {"variant": "rope", "block": "gelu", "task": "shakespeare"}[kind]
    one_line_error(r, str(plugin), f"{name!r} is a built-in", "another name")


def test_plugin_may_register_its_own_names_again(tmp_path):
    """The same plugin loaded twice in one process (two in-process commands) is no conflict,
    but a second plugin file taking the first one's name is."""
    from bench.exec.plugins import load_plugin
    from variants.registry import VARIANTS

    first, second = tmp_path / "first.py", tmp_path / "second.py"
    source = "from variants.registry import register_variant\n"
    first.write_text(source + "register_variant('faults-mine', 'mine', mlp='swiglu')\n")
    second.write_text(source + "register_variant('faults-mine', 'theirs', mlp='relu2')\n")
    try:
        load_plugin(str(first))
        load_plugin(str(first))
        with pytest.raises(ValueError, match="registered by the plugin .*first.py"):
            load_plugin(str(second))
        assert VARIANTS["faults-mine"].overrides == {"mlp": "swiglu"}
    finally:
        VARIANTS.remove("faults-mine")


# ---------------------------------------------------------------------------------------------
# 2. a task option spelled out at its default is the same run


def test_task_option_at_its_default_trains_the_same_run_again():
    from ablations.flags import parse_args, resolve_config
    from ablations.plan import build_plan
    from bench.core.records import run_id

    def ids(*extra):
        argv = ["--task", "addition", "--model", "micro", "--steps", "10", "--device", "cpu"]
        plan, _ = build_plan(resolve_config(parse_args([*argv, *extra])))
        return [run_id(s.to_dict()) for s in plan.specs(2)]

    plain = ids()
    assert ids("--task-option", "n_digits=3") == plain
    assert ids("--task-option", "reverse=true", "--task-option", "n_heldout=1000") == plain
    assert ids("--task-option", "n_digits=4") != plain  # a real change is still another run
