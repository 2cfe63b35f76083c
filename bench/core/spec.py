"""What a run is: a frozen `RunSpec` whose canonical JSON hashes to the run id.

Configs flow one way: CLI -> RunSpec -> run(spec) -> record. Everything a run does is decided by
its spec, so the same spec on any machine is the same run (that is what resume and fan-out rely
on), and the resolved spec is stored in every record.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from variants.config import ModelConfig, id_dict, preset

BUDGET_MODES = ("steps", "tokens", "seconds")
BUDGET_FLAGS = {"steps": "--steps", "tokens": "--tokens", "seconds": "--time"}  # the CLI's names
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout (results/ lives there)


@dataclass(frozen=True)
class Budget:
    """How long a run trains. Equal budgets make a fair comparison: same steps, same tokens, or
    same wall-clock seconds (which favours fast variants, on purpose)."""

    mode: str = "steps"
    value: float = 1000

    def validate(self, tokens_per_step: int | None = None) -> Budget:
        """One-line ValueError for a bad budget; with `tokens_per_step`, also a token budget
        smaller than one step."""
        if self.mode not in BUDGET_MODES:
            raise ValueError(f"unknown budget mode {self.mode!r}; valid: {', '.join(BUDGET_MODES)}")
        flag = BUDGET_FLAGS[self.mode]
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"budget {flag} must be a positive number, got {self.value:g}")
        if self.mode == "tokens" and tokens_per_step and self.value < tokens_per_step:
            raise ValueError(
                f"--tokens {self.value:g} is less than one step ({tokens_per_step} tokens a "
                f"step); give at least {tokens_per_step}"
            )
        return self

    def describe(self) -> str:
        v = int(self.value) if float(self.value).is_integer() else self.value
        return f"{v} {self.mode}"


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac
    warmup_frac: float = 0.05  # linear warm-up over this fraction of the budget
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every: int = 100  # steps between validation-loss points of the curve
    eval_batches: int = 8
    eval_batch_size: int = 64
    compile: bool = False
    amp: bool = True  # bf16 autocast on CUDA; no effect on CPU
    timing_warmup: int = 10  # steps not timed (compilation, allocator warm-up)
    # extra measurements: "grad_norms" (per block, at eval points), "lengths" (bench.probes)
    probes: tuple[str, ...] = ()
    save_checkpoint: bool = False  # keep the final weights (e.g. a pretraining run)
    optimizer: str = "adamw"  # or "muon": Muon for the blocks' matrices, AdamW for the rest
    muon_momentum: float = 0.95  # Muon's (Nesterov) momentum; unused by AdamW

    def to_dict(self) -> dict:
        """The JSON form (probes a list), as stored in a record's spec."""
        d = id_dict(self)  # the run-id rule: variants.config.ID_SCHEME_FIELDS
        return {**d, "probes": list(d["probes"])}

    # (field, flag, lowest, highest, highest included): every number a run takes, checked here
    # once, whether it came from a flag, a config file or code
    _RANGES: ClassVar[tuple] = (
        ("lr", "--lr", 0.0, math.inf, False), ("grad_clip", "--grad-clip", 0.0, math.inf, False),
        ("weight_decay", "--weight-decay", 0.0, math.inf, False),
        ("min_lr_frac", "train.min_lr_frac", 0.0, 1.0, True),
        ("warmup_frac", "--warmup-frac", 0.0, 1.0, True),
        ("beta1", "--betas", 0.0, 1.0, False), ("beta2", "--betas", 0.0, 1.0, False),
        ("muon_momentum", "train.muon_momentum", 0.0, 1.0, False),
    )  # fmt: skip

    def validate(self) -> TrainConfig:
        for name in ("batch_size", "eval_every", "eval_batches", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.timing_warmup < 0:
            raise ValueError(f"timing_warmup must be at least 0, got {self.timing_warmup}")
        for name, flag, lo, hi, closed in self._RANGES:
            value = getattr(self, name)
            inside = lo <= value <= hi if closed else lo <= value < hi  # NaN is outside
            if name in ("lr", "grad_clip"):
                inside = inside and value > 0
            if not inside:
                what = "a positive finite number" if name in ("lr", "grad_clip") else (
                    f"in [{lo:g}, {hi:g}{']' if closed else ')'}")  # fmt: skip
                raise ValueError(f"{flag} ({name}) must be {what}, got {value}")
        from bench.core.optim import check_available  # imports torch: only when validating

        check_available(self.optimizer)
        from bench.probes import PROBES  # the built-ins and whatever plugins registered

        for name in self.probes:
            PROBES.get(name)  # one line naming the valid probes
        return self


@dataclass(frozen=True)
class RunSpec:
    variant: str
    model: ModelConfig
    task: dict  # {"name": ..., plus the task's options, "data": path or None}
    budget: Budget = field(default_factory=Budget)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "cpu"  # "cpu" or "cuda": part of the identity, a GPU run is another run
    init_from: str | None = None  # run id whose saved weights initialise this run (finetuning)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"], d["train"] = self.model.to_dict(), self.train.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        return cls(
            variant=d["variant"],
            model=ModelConfig.from_dict(d["model"]),
            task=dict(d["task"]),
            budget=Budget(**d["budget"]),
            train=TrainConfig(**{**d["train"], "probes": tuple(d["train"].get("probes", ()))}),
            seed=d["seed"],
            device=d["device"],
            init_from=d.get("init_from"),
        )


@dataclass(frozen=True)
class Recipe:
    """A task's default comparison: model size, batch, schedule, budget and seeds, chosen so
    that the baseline clearly learns within it (each task class carries one as `recipe`).
    Every part can be overridden from the command line; what is not overridden comes from here.
    """

    model: str = "tiny"  # a size preset (variants.config.PRESETS) ...
    model_overrides: tuple[tuple[str, object], ...] = ()  # ... with these fields changed
    # TrainConfig fields a recipe chooses (same name, TrainConfig's default; `train_fields`)
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    min_lr_frac: float = TrainConfig.min_lr_frac
    warmup_frac: float = TrainConfig.warmup_frac
    steps: int = 1000
    seeds: int = 3
    # validation points per run: the curve the step multiplier reads needs >= 20 of them
    eval_points: int = 25
    eval_batches: int = TrainConfig.eval_batches
    eval_batch_size: int = TrainConfig.eval_batch_size
    note: str = ""  # where the recipe comes from and what it reaches, for --list
    # The committed lr sweep of the baseline that chose `lr` (a folder under the checkout, e.g.
    # results/reference/ablations/lr_sweep_...): --list cites it, --tune reads its runs.
    lr_sweep: str = ""

    def train_fields(self) -> dict:
        """The TrainConfig fields this recipe sets: every field the two classes share, so a
        recipe that should choose a new training setting gets one line here and no mapping."""
        train = {f.name for f in dataclasses.fields(TrainConfig)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in train}

    def lr_sweep_dir(self) -> Path | None:
        """The sweep's folder in this checkout, or None (none cited, or an installed copy
        without results/)."""
        path = REPO_ROOT / self.lr_sweep
        return path if self.lr_sweep and path.is_dir() else None

    def model_config(self, size: str | None = None, **changes) -> ModelConfig:
        """The recipe's model, or preset `size` as it stands when the user names one (naming
        the recipe's own preset gives that preset, without the recipe's overrides)."""
        if size is not None:
            return preset(size, **changes)
        return preset(self.model, **{**dict(self.model_overrides), **changes})

    def eval_every(self, steps: int) -> int:
        """Steps between validation points so that a run of `steps` gets `eval_points`."""
        return max(1, math.ceil(steps / self.eval_points))

    def describe(self) -> str:
        size = ", ".join(f"{k}={v}" for k, v in self.model_overrides)
        model = f"{self.model}" + (f" ({size})" if size else "")
        return (
            f"model {model}, batch {self.batch_size}, lr {self.lr:g} (warm-up "
            f"{self.warmup_frac:.0%}, cosine to {self.lr * self.min_lr_frac:g}), "
            f"{self.steps} steps, {self.seeds} seeds"
            + (f"; lr chosen by {self.lr_sweep}/tune.md" if self.lr_sweep else "")
        )
