"""The sweep's one config object: a TOML file and the flags fill the same SweepConfig, flags win,
every TrainConfig field is reachable, the resolved config beside the results reruns the sweep,
and a bad file or value is one line."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_harness import cli, one_line_error

from ablations import config, config_toml
from ablations.config import ConfigError, SweepConfig
from ablations.flags import parse_args, resolve_config
from ablations.plan import build_plan
from bench.core.spec import TrainConfig

# a micro sweep on addition: seconds per run
SWEEP = """
variants = ["rope"]
[task]
name = "addition"
options = { n_digits = 2 }
[model]
size = "micro"
[budget]
steps = 6
[train]
batch_size = 8
eval_every = 3
[comparison]
seeds = 1
[executor]
jobs = 1
"""


def _write(tmp_path, text: str, name: str = "sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _cfg(*argv) -> SweepConfig:
    return resolve_config(parse_args(list(argv)))


def test_a_file_fills_the_config_and_flags_override_it(tmp_path):
    path = _write(tmp_path, SWEEP)
    cfg = _cfg("--config", str(path))
    assert cfg.variants == ["rope"] and cfg.task.name == "addition"
    assert cfg.task.options == {"n_digits": 2} and cfg.budget.steps == 6
    assert cfg.train.batch_size == 8 and cfg.comparison.seeds == 1
    over = _cfg("--config", str(path), "--seeds", "3", "--time", "5", "--variant", "swiglu",
                "--task-option", "n_digits=3", "--lr", "0.01")  # fmt: skip
    assert over.comparison.seeds == 3 and over.variants == ["swiglu"]
    assert (over.budget.steps, over.budget.seconds) == (None, 5.0)  # the flag's budget, only
    assert over.task.options == {"n_digits": 3} and over.train.lr == 0.01
    assert over.train.batch_size == 8  # what no flag touched stays the file's


def test_every_train_config_field_is_reachable_from_a_file(tmp_path):
    """Each TrainConfig field set in [train] (to a value other than its default) arrives in the
    plan's TrainConfig: none is dropped on the way."""
    changed = {
        "lr": 0.02, "min_lr_frac": 0.3, "warmup_frac": 0.2, "weight_decay": 0.01, "beta1": 0.8,
        "beta2": 0.95, "grad_clip": 0.5, "eval_batches": 2, "eval_batch_size": 16,
        "compile": True, "amp": False, "timing_warmup": 3, "save_checkpoint": True,
        "muon_momentum": 0.9, "batch_size": 12, "eval_every": 2,
    }  # fmt: skip
    lines = [f"{k} = {config_toml._toml_value(v)}" for k, v in changed.items()]
    lines += ['probes = ["grad_norms"]', 'optimizers = ["muon"]']
    path = _write(tmp_path, SWEEP.replace("[train]\nbatch_size = 8\neval_every = 3",
                                          "[train]\n" + "\n".join(lines)))  # fmt: skip
    plan, _ = build_plan(_cfg("--config", str(path)))
    train = plan.train
    covered = {*changed, "probes", "optimizer"}
    assert covered == {f.name for f in dataclasses.fields(TrainConfig)}  # a new field: add it
    for name, value in changed.items():
        assert getattr(train, name) == value, name
    assert train.probes == ("grad_norms",) and train.optimizer == "muon"
    defaults = TrainConfig()
    assert all(getattr(defaults, k) != v for k, v in changed.items())  # each check can fail


def test_flags_reach_the_training_fields_the_issue_names():
    cfg = _cfg("--warmup-frac", "0.1", "--weight-decay", "0", "--betas", "0.85,0.9",
               "--grad-clip", "2", "--no-amp", "--set", "train.min_lr_frac=0.5")  # fmt: skip
    t = cfg.train
    assert (t.warmup_frac, t.weight_decay, t.beta1, t.beta2) == (0.1, 0.0, 0.85, 0.9)
    assert (t.grad_clip, t.amp, t.min_lr_frac) == (2.0, False, 0.5)


def test_the_dumped_config_reads_back_equal(tmp_path):
    cfg = _cfg("--config", str(_write(tmp_path, SWEEP)), "--betas", "0.9,0.95", "--ladder",
               "--slurm-option", "account=proj", "--set", "model.n_layer=3", "--probe",
               "grad_norms")  # fmt: skip
    again = config.load(_write(tmp_path, config_toml.dumps(cfg), "again.toml"))
    assert again == cfg
    assert cfg.model.fields == {"n_layer": 3} and cfg.comparison.ladder == [0.5, 2.0, 4.0]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[train]\nlrr = 1e-3", ["sweep.toml", "train.lrr", "valid", "lr"]),
        ("[trian]\nlr = 1e-3", ["sweep.toml", "trian", "valid"]),
        ('[train]\nlr = "fast"', ["train.lr", "a number", "fast"]),
        ("[train]\nbatch_size = 8.5", ["train.batch_size", "an integer"]),
        ("variants = 'rope'", ["variants", "a list of strings"]),
        ("[model]\nn_layers = 2", ["model.n_layers", "ModelConfig fields", "n_layer"]),
        ("[train]\nbetas = [0.9]", ["train.betas", "two numbers"]),
        ("[train\nlr = 1", ["not valid TOML"]),
        ("[budget]\nsteps = 5\nseconds = 3", ["one budget", "--steps", "--time"]),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_key(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        _cfg("--config", str(path))
    message = str(err.value)
    assert "\n" not in message
    for w in words:
        assert w in message, (w, message)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--config", "/no/such.toml"], ["/no/such.toml", "no such file"]),
        (["--set", "train.beta3=0.9"], ["--set", "train.beta3"]),
        (["--set", "nokey"], ["--set", "KEY=VALUE"]),
        (["--lr", "inf"], ["--lr", "positive finite"]),
        (["--weight-decay", "-1"], ["--weight-decay", "got -1"]),
        (["--betas", "0.9"], ["--betas", "two numbers"]),
        (["--betas", "1.2,0.9"], ["--betas", "beta1"]),
        (["--warmup-frac", "2"], ["--warmup-frac", "[0, 1]"]),
        (["--jobs", "0"], ["--jobs", "at least 1"]),
        (["--ladder", "2"], ["--ladder", "two budgets"]),
        (["--tune", ","], ["--tune", "setting"]),
        (["--study", "residual", "--lr", "0.1"], ["--study residual", "train", "leave those out"]),
    ],
)
def test_bad_values_from_any_source_are_one_line(tmp_path, args, words):
    r = cli("--model", "micro", "--steps", "2", "--seeds", "1", "--out", str(tmp_path), *args)
    one_line_error(r, *words)
    assert "val_loss" not in r.stderr  # nothing trained


def test_the_resolved_config_beside_the_results_reruns_the_sweep(tmp_path):
    """A sweep from a file writes config.toml beside its records; --config on that file is the
    same sweep (every run found finished), and a flag over it changes only what it names."""
    out = tmp_path / "out"
    r = cli("--config", str(_write(tmp_path, SWEEP)), "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 run(s) trained, 0 skipped" in r.stderr
    dumped = out / "config.toml"
    assert config.load(dumped).train.batch_size == 8
    again = cli("--config", str(dumped), "--quiet")
    assert again.returncode == 0 and "0 run(s) trained, 2 skipped" in again.stderr
    more = cli("--config", str(dumped), "--quiet", "--seeds", "2")
    assert more.returncode == 0 and "2 run(s) trained, 2 skipped" in more.stderr
    specs = json.loads((out / "command.json").read_text())["specs"]
    assert {s["task"]["n_digits"] for s in specs} == {2}


def test_task_options_enter_the_spec_as_the_task_types_them(tmp_path):
    """`--task-option n_digits=2.0` and `n_digits = 2` in a file are one run: the spec holds the
    task's typed value, so both hash to the same run id."""
    from_flag, _ = build_plan(_cfg("--task", "addition", "--task-option", "n_digits='2'"))
    from_file, _ = build_plan(_cfg("--config", str(_write(tmp_path, SWEEP))))
    assert from_flag.task_spec == {"name": "addition", "data": None, "n_digits": 2}
    assert from_file.task_spec == from_flag.task_spec


def test_the_readme_sweep_file_is_a_valid_config(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = config.load(_write(tmp_path, block)).validate()
    assert cfg.variants == ["rope", "swiglu"] and cfg.model.fields == {"n_layer": 6}
    plan, _ = build_plan(cfg)
    assert plan.train.weight_decay == 0.05 and (plan.train.beta1, plan.train.beta2) == (0.9, 0.95)
    assert plan.variants[0][1].n_layer == 6 and plan.seeds == 5


# every flag of before, spelled as it was (the README and scripts use them); each an alias
OLD_FLAGS = """--batch-size --betas --ci-width --compile --config --data --device --dropout
--dry-run --eval-every --executor --force --grad-clip --jobs --ladder --list --lr --max-seeds
--model --no-amp --no-wait --optimizer --out --plugin --preset --probe --quiet --ranks-per-run
--runs-per-job --scale --seeds --set --sizes --slurm-cpus --slurm-gpus --slurm-option
--slurm-partition --slurm-time --steps --study --task --task-option --time --tokens --tune
--tune-frac --tune-grid --tune-seeds --variant --warmup-frac --weight-decay""".split()


def _option_strings() -> set[str]:
    import contextlib
    import io

    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        parse_args(["--help"])
    return set(help_text.getvalue().split())


def test_every_old_flag_is_still_there():
    shown = _option_strings()
    assert [f for f in OLD_FLAGS if f not in shown] == []


def test_every_config_field_is_a_dotted_flag():
    """The dotted flags come from the dataclasses: a new field (in any section, TrainConfig or
    ModelConfig) is a flag with nothing else written."""
    from ablations.flags import config_keys
    from variants.config import ModelConfig

    keys = {k for k, _ in config_keys()}
    for f in dataclasses.fields(TrainConfig):
        assert f"train.{f.name if f.name != 'optimizer' else 'optimizers'}" in keys
    # block options are one table, model.options ({slot: {key: value}}), not the flat field
    flat = {f"model.{f.name}" for f in dataclasses.fields(ModelConfig)} - {"model.block_options"}
    assert flat <= keys and "model.options" in keys and "model.block_options" not in keys
    assert {"budget.tokens", "executor.jobs", "executor.slurm.time_min", "study.scale"} <= keys
    shown = _option_strings()
    assert [k for k in keys if f"--{k}" not in shown] == []


def test_dotted_flags_set_their_field_in_order_with_set():
    cfg = _cfg("--train.lr=3e-3", "--model.n_layer=6", "--executor.jobs=2", "--train.compile",
               "--budget.tokens", "5e4", "--set", "train.lr=0.004", "--train.beta2=0.95",
               "--task.options={n_digits = 3}", "--executor.slurm.time_min=30")  # fmt: skip
    assert cfg.train.lr == 0.004  # --set came after --train.lr
    assert cfg.model.fields == {"n_layer": 6} and cfg.executor.jobs == 2
    assert cfg.train.compile is True and cfg.budget.tokens == 5e4 and cfg.train.beta2 == 0.95
    assert cfg.task.options == {"n_digits": 3} and cfg.executor.slurm.time_min == 30
    assert _cfg("--set", "train.lr=0.004", "--train.lr=3e-3").train.lr == 3e-3
    # an alias and its dotted key are the same setting (the dotted one applied after)
    assert _cfg("--lr", "0.01").train == _cfg("--train.lr=0.01").train
    assert _cfg("--jobs", "2", "--executor.jobs=3").executor.jobs == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--train.lr=fast"], ["--train.lr=fast:", "train.lr must be a number"]),
        (["--executor.jobs", "two"], ["--executor.jobs=two:", "an integer"]),
        (["--train.lrr=1"], ["unrecognized arguments", "--train.lrr"]),
    ],
)
def test_a_bad_dotted_flag_is_one_line(args, words):
    with pytest.raises((ConfigError, SystemExit)) as err:
        _cfg(*args)
    if err.type is ConfigError:
        message = str(err.value)
        assert "\n" not in message and all(w in message for w in words), message


def test_train_section_and_recipe_are_derived_from_train_config():
    from ablations.config import TrainSection
    from bench.core.spec import Recipe

    names = [f.name for f in dataclasses.fields(TrainSection)]
    expected = [f.name for f in dataclasses.fields(TrainConfig)]
    assert names == [n if n != "optimizer" else "optimizers" for n in expected]
    defaults = TrainConfig()
    recipe = Recipe().train_fields()
    assert recipe and all(getattr(defaults, k) == v for k, v in recipe.items())


def test_the_executor_section_reaches_execute_as_one_object(monkeypatch, tmp_path):
    """[executor] (file, --executor.* flags or their aliases) goes to bench.exec.executor.execute
    as the one object it is: no dict of options, no keyword per setting on the way."""
    from ablations.commands import common

    seen = {}
    monkeypatch.setattr(common, "execute", lambda *a, **kw: seen.update(kw) or (0, 0))
    cfg = _cfg("--executor", "submitit-local", "--executor.slurm.time_min=5", "--runs-per-job",
               "2", "--slurm-option", "account=proj")  # fmt: skip
    common.run_specs(cfg, [], tmp_path, None, jobs=1, force=False)
    assert seen["where"] is cfg.executor
    assert (cfg.executor.slurm.time_min, cfg.executor.runs_per_job) == (5, 2)
    assert cfg.executor.slurm.options == {"account": "proj"}


def test_one_plugin_loader_for_the_command_and_its_workers(tmp_path):
    from bench.exec import executor, plugins

    assert executor.load_plugins is plugins.load_plugins
    with pytest.raises(ValueError, match="does not exist"):
        plugins.load_plugins([str(tmp_path / "missing.py")])


def test_block_options_from_the_command_line_and_the_dumped_file(tmp_path):
    """--block-option reaches every arm's model (in its spec and run id), is written into
    config.toml as a [model] options table that --config reads back to the same runs, and an
    option the arm's block does not take is one line naming the arm."""
    from test_harness import cli, one_line_error

    from bench.core.records import load_records

    out = tmp_path / "wide"
    base = ("--model", "micro", "--steps", "3", "--seeds", "1", "--out", str(out))
    r = cli(*base, "--block-option", "mlp.hidden_mult=2")
    assert r.returncode == 0, r.stderr
    (rec,) = load_records(out)
    assert rec.spec["model"]["block_options"] == {"mlp": {"hidden_mult": 2}}
    assert 'options = { mlp = { hidden_mult = "2" } }' in (out / "config.toml").read_text()
    again = cli("--config", str(out / "config.toml"))
    assert again.returncode == 0 and "0 run(s) trained, 1 skipped" in again.stdout + again.stderr
    r = cli(*base, "--variant", "swiglu", "--block-option", "mlp.hidden_mult=2")
    one_line_error(r, "variant 'swiglu'", "takes no options")
    one_line_error(cli(*base, "--block-option", "mlp.width=2"), "mlp.width", "hidden_mult")
