"""Regression tests for the faults a probe of bad inputs found (issue 22, section 3): each test
is named after its defect and failed before the fix."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from faults_cli import ROOT, cli, one_line_error

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


# ---------------------------------------------------------------------------------------------
# 3. a claim must not hide a run forever: liveness is a lock its holder keeps, not a pid

HOST = socket.gethostname()
STALE_CLAIMS = {
    "live-unrelated-pid": {"pid": os.getppid(), "host": HOST},  # pid reuse: alive, not ours
    "pid-1": {"pid": 1, "host": HOST},
    "pid-0": {"pid": 0, "host": HOST},
    "pid-minus-1": {"pid": -1, "host": HOST},
    "another-host-silent": {"pid": 4242, "host": "some-other-node"},  # heartbeat old, below
}
MALFORMED_CLAIMS = {"pid-missing": {"host": HOST}, "pid-abc": {"pid": "abc", "host": HOST},
                    "a-list": [1, 2], "not-json": "{half"}  # fmt: skip


@pytest.mark.parametrize("content", [*STALE_CLAIMS, *MALFORMED_CLAIMS])
def test_claim_that_hides_a_run_forever(tmp_path, content, capsys):
    from bench.core import claims

    path = claims.claim_path(tmp_path, "aaaaaaaaaaaa")
    path.parent.mkdir(parents=True)
    value = {**STALE_CLAIMS, **MALFORMED_CLAIMS}[content]
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    old = time.time() - 2 * claims.STALE_S
    os.utime(path, (old, old))  # another host's claim counts while its heartbeat is fresh
    try:
        assert claims.claim(tmp_path, "aaaaaaaaaaaa")  # stale: taken over
        warned = [x for x in capsys.readouterr().err.splitlines() if "not a claim" in x]
        assert len(warned) == (content in MALFORMED_CLAIMS), warned
        assert json.loads(path.read_text()) == {"pid": os.getpid(), "host": HOST}
    finally:
        claims.release(tmp_path, "aaaaaaaaaaaa")
    assert not path.exists()


def test_claim_of_another_host_counts_while_its_heartbeat_is_fresh(tmp_path):
    from bench.core import claims

    path = claims.claim_path(tmp_path, "bbbbbbbbbbbb")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 4242, "host": "some-other-node"}))
    assert not claims.claim(tmp_path, "bbbbbbbbbbbb")  # just written: live
    assert json.loads(path.read_text())["host"] == "some-other-node"  # left alone


HOLDER = """
import sys
from bench.core import claims
assert claims.claim(sys.argv[1], sys.argv[2])
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_claim_held_by_a_live_process_is_not_reported_as_finished_earlier(tmp_path):
    """A run another live process holds is not trained here and is told as held, not as
    'finished earlier'; once that process is gone (killed: no release), it is trained."""
    from bench.core.records import run_id
    from bench.core.spec import Budget, RunSpec, TrainConfig
    from bench.exec.executor import execute
    from variants import preset

    train = TrainConfig(batch_size=8, eval_every=3, timing_warmup=1)
    spec = RunSpec("baseline", preset("micro", vocab_size=13), {"name": "addition", "data": None},
                   Budget("steps", 4), train, 0, "cpu")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", HOLDER, str(tmp_path), run_id(spec.to_dict())]
    pipe = subprocess.PIPE
    holder = subprocess.Popen(argv, stdin=pipe, stdout=pipe, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        got = execute([spec], tmp_path, quiet=True)
        assert (got.ran, got.skipped, len(got.held)) == (0, 0, 1)
        assert got.words().startswith("0 run(s) trained, 0 skipped (finished earlier), 1 held")
    finally:
        holder.kill()
        holder.wait()
    got = execute([spec], tmp_path, quiet=True)
    assert (got.ran, got.skipped, got.held) == (1, 0, [])
