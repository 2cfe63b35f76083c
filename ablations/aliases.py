"""The short flags of ablations/run.py (`--lr`, `--steps`, `--jobs`, ...), each an alias of a
config key (`ablations.flags._ALIASES` says which); every key is also `--section.key=VALUE`.
Kept as they were, names, help and types, so that every command of before still runs.
"""

from __future__ import annotations

from bench.exec.placement import EXECUTORS
from bench.tasks import DEFAULT_TASK
from variants.config import PRESETS

DEFAULT_LADDER = (0.5, 2.0, 4.0)  # with the main budget: 4 rungs, the power law's fit


def _repeatable(group, flag: str, metavar: str, help: str) -> None:
    """A flag that may be given several times; its values arrive as a list ([] if never)."""
    group.add_argument(flag, action="append", default=[], metavar=metavar, help=help)


def add_alias_flags(p) -> None:
    """Every short flag, in the order --help shows them."""
    _what_flags(p)
    _recipe_flags(p)
    _measure_flags(p)
    _precision_flags(p)
    _output_flags(p)
    _executor_flags(p)


def _what_flags(p) -> None:
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="a sweep file (see ablations/config.py); flags given as well override it. Every "
        "result folder has the resolved one, config.toml, to rerun it",
    )
    _repeatable(
        p,
        "--set",
        "KEY=VALUE",
        "any config field, e.g. train.beta2=0.95 or executor.slurm.time_min=30 "
        "(repeatable; after the file and the flags)",
    )
    _repeatable(
        p, "--variant", "NAME", "variant to compare with the baseline (repeatable, or 'all')"
    )
    p.add_argument("--task", help=f"task name (see --list); default {DEFAULT_TASK}")
    p.add_argument(
        "--data",
        help="the text task's data: a .txt, .jsonl/.json, .parquet or .csv file, a folder or a"
        " quoted glob of them (read in sorted order)",
    )
    p.add_argument(
        "--data-field",
        metavar="KEY",
        help="the field (.jsonl/.json) or column (.parquet/.csv) holding the text; default text",
    )
    p.add_argument(
        "--tokenizer",
        metavar="char|bpe:N|PATH",
        help="the text tasks' tokeniser: char (default), bpe:N (byte-level BPE of N tokens "
        "trained on the train split) or a saved tokenizer.json",
    )
    _repeatable(p, "--task-option", "KEY=VALUE", "task option, e.g. n_digits=4 (repeatable)")
    _repeatable(
        p, "--block-option", "SLOT.KEY=VALUE",
        "an option of the chosen block of SLOT, e.g. mlp.hidden_mult=3 (repeatable; see --list)",
    )  # fmt: skip


def _recipe_flags(p) -> None:
    r = p.add_argument_group("recipe: each task has a default one (--list); these override it")
    b = r.add_mutually_exclusive_group()
    b.add_argument("--steps", type=int, help="budget in optimizer steps")
    b.add_argument("--tokens", type=float, help="budget in training tokens")
    b.add_argument("--time", type=float, metavar="SECONDS", help="budget in training seconds")
    r.add_argument("--seeds", type=int, help="seeds per variant")
    r.add_argument("--model", help=f"size preset: {', '.join(PRESETS)}")
    r.add_argument("--batch-size", type=int)
    r.add_argument("--lr", type=float)
    r.add_argument("--warmup-frac", type=float, help="linear warm-up, fraction of the budget")
    r.add_argument("--weight-decay", type=float)
    r.add_argument("--betas", metavar="B1,B2", help="AdamW's betas, e.g. 0.9,0.95")
    r.add_argument("--grad-clip", type=float, help="gradient norm clip")
    r.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    r.add_argument("--eval-every", type=int, help="steps between validation points")
    r.add_argument("--dropout", type=float)
    _repeatable(
        r,
        "--optimizer",
        "NAME",
        "adamw (default) or muon: Muon for the blocks' 2-D matrices, AdamW for embeddings, "
        "norms and biases, one --lr and schedule for both. Repeat it to compare optimizers: "
        "'--optimizer adamw --optimizer muon' trains every variant with each; the table names "
        "the Muon arms 'NAME · muon' and reads them against the AdamW baseline",
    )


def _measure_flags(p) -> None:
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    _repeatable(
        p,
        "--probe",
        "NAME",
        "extra measurement in every run's record (repeatable): 'lengths' = val loss at 1, "
        "2, 4 and 8x the trained context (a length-generalisation table in the summary); "
        "'grad_norms' = per-block gradient norms",
    )


def _precision_flags(p) -> None:
    s = p.add_argument_group("precision and compute multipliers")
    s.add_argument(
        "--ci-width",
        type=float,
        metavar="W",
        help="add seeds until the 95%% CI of every Δ val loss is narrower than W (nats), "
        "or --max-seeds is reached",
    )
    s.add_argument("--max-seeds", type=int, help="cap for --ci-width (default 10)")
    s.add_argument(
        "--ladder",
        nargs="?",
        const=",".join(f"{f:g}" for f in DEFAULT_LADDER),
        metavar="FACTORS",
        help="also train the baseline with its own schedule at these multiples of the budget "
        f"(default {','.join(f'{f:g}' for f in DEFAULT_LADDER)}) and read each variant as "
        "'the baseline would need k x the steps': a power law fitted on 4 or more budgets, "
        "log-linear on fewer; the table checks the ladder by reading its 2x rung, left out of "
        "the fit, back as 2x",
    )
    t = p.add_argument_group(
        "tuned comparisons: every arm at its own best (bench/analysis/tuning.py)"
    )
    t.add_argument(
        "--tune",
        metavar="KEYS",
        help="tune these training settings per arm before comparing: lr, or lr,weight_decay "
        "(a log grid around the default, on tuning seeds 1000+ that no verdict uses)",
    )
    t.add_argument(
        "--tune-grid",
        metavar="FACTORS",
        help="the grid as factors of the default (default 0.5,0.707,1,1.41,2: steps of √2; 1 "
        "always included); a best value at an edge adds points past it until it is interior",
    )
    t.add_argument(
        "--tune-frac", type=float, help="budget of a tuning run, fraction of the budget (default 1)"
    )
    t.add_argument("--tune-seeds", type=int, help="tuning seeds per value (default 3)")


# the flags of particular studies (the scaling study's grid, any study's budget scale)
_STUDY_FLAGS = (
    ("--sizes", {"metavar": "LxD,...", "help": "--study scaling: the model ladder as n_layer x "
                 "n_embd, e.g. 1x64,2x64,3x96,4x128 (default: the preset's)"}),
    ("--preset", {"help": "--study scaling: the grid of sizes and token budgets, cpu (about 15 "
                  "min on two cores) or h100 (about an hour on one H100); default: h100 on "
                  "cuda, else cpu; --dry-run shows it"}),
    ("--dry-run", {"action": "store_true", "help": "--study scaling: print every run of the "
                   "plan with its FLOPs and estimated time, and train nothing"}),
    ("--scale", {"type": float, "help": "multiply a study's training budgets (e.g. 0.1 for a "
                 "look)"}),
)  # fmt: skip


def _output_flags(p) -> None:
    p.add_argument("--out", help="output directory (default results/local/...)")
    _repeatable(
        p,
        "--plugin",
        "FILE.py",
        "a Python file that registers your own blocks/variants (repeatable)",
    )
    p.add_argument("--study", help="run a ready-made study (see --list)")
    for flag, kw in _STUDY_FLAGS:
        p.add_argument(flag, **kw)
    p.add_argument("--list", action="store_true", help="list variants, tasks, sizes and studies")
    p.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _executor_flags(p) -> None:
    x = p.add_argument_group("where the runs happen (one run on several ranks: use torchrun)")
    kinds = "local processes (default), a SLURM job array, or submitit's local executor"
    x.add_argument("--executor", choices=EXECUTORS, help=kinds)
    x.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="runs at once: local worker processes (each cores/N threads; default on CPU: one "
        "one-thread worker per core, else 1), or the SLURM array's parallelism (default: no "
        "limit)",
    )
    x.add_argument("--runs-per-job", type=int, metavar="K", help="runs per SLURM job")
    x.add_argument(
        "--ranks-per-run",
        type=int,
        metavar="N",
        help="DDP inside each job: N tasks (one GPU each on cuda, gloo on cpu) train every run "
        "together (slurm / submitit-local; on this machine use torchrun)",
    )
    x.add_argument("--slurm-partition")
    x.add_argument("--slurm-time", type=int, metavar="MIN", help="minutes per job (default 60)")
    x.add_argument("--slurm-cpus", type=int, help="CPUs per job (= torch threads; default 4)")
    x.add_argument("--slurm-gpus", type=int, help="GPUs per job (default: 1 on cuda, else 0)")
    _repeatable(
        x,
        "--slurm-option",
        "KEY=VALUE",
        "an extra #SBATCH option, e.g. account=proj, qos=low, mem=16G (repeatable)",
    )
    x.add_argument(
        "--checkpoint-every",
        metavar="N|TIME",
        help="a checkpoint inside each run every N steps or every TIME (90s, 10m, 2h); 'auto' "
        "(the default): every 10 minutes, so shorter runs write none; 'off'. Rerunning the "
        "command resumes an interrupted run from its latest one, bit-identically",
    )
    x.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each run's checkpoints after its record is written (default: removed)",
    )
    x.add_argument(
        "--no-wait", action="store_true", help="submit the SLURM jobs and return at once"
    )
    _repeatable(
        x,
        "--log",
        "TRACKER",
        "also log each run's config, curve and final metrics to tensorboard or wandb (offline "
        "unless WANDB_MODE is set), in <out>/trackers/ (repeatable, or a comma list; needs the "
        "extra of that name)",
    )
