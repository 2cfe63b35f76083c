"""The words under every comparison table: how to read it, the learning guard, what the
multipliers and the ladder mean, which optimizer and lr trained the runs, and what each shown
column adds of its own (`Column.footnote`).
"""

from __future__ import annotations

import math

import numpy as np

from bench.analysis import fmt, multiplier
from bench.analysis.columns import Column
from bench.analysis.compare import (
    DID_NOT_LEARN,
    INCONCLUSIVE,
    LEARN_LOSS_FRAC,
    LEARN_MIN_ACCURACY,
    OVERFIT_RISE,
)
from bench.analysis.fmt import BASELINE
from bench.analysis.frame import ARM_SEP, DEFAULT_OPTIMIZER


def ladder_control_text(meta: dict | None) -> str:
    """What the ladder's positive control read ('' without a ladder): the 2× rung left out of
    the fit and read off the other rungs should read 2×, or the ladder column is no finding."""
    c = (meta or {}).get("ladder_control")
    if not c:
        return ""
    if "multiplier" not in c:
        return f"Ladder control: could not be run ({c['reason']})."
    factor = f"{c['factor']:g}"
    budget = fmt.budget_text(meta.get("budget_mode", "?"), c["budget"])
    text = (
        f"Ladder control: the baseline at {factor}× the budget ({budget}), left out of the "
        f"{c['form']} fit and read off the other rungs, reads "
        f"{fmt.times(c['multiplier'], c['ci_low'], c['ci_high'])}: "
    )
    if c["status"] == "passed":
        return text + f"passed ({factor} lies inside its interval)."
    if c["status"] == "failed":
        return text + (
            f"failed ({c['reason']}), so this table's ladder multipliers are not findings: "
            "the ladder misreads a budget it was trained at."
        )
    return text + f"not judged ({c['reason']})."


def left_out_text(meta: dict | None) -> str:
    """The runs in no statistic, named ('' if none), under the table; a failed run is a
    fault, not a result."""
    runs = (meta or {}).get("left_out") or []
    if not runs:
        return ""
    text = f"Left out of every statistic ({len(runs)}): {'; '.join(runs)}."
    if any(": failed" in r for r in runs):
        text += " A failed run raised (a fault of code or environment, not a result; counted in "
        text += "ok/seeds as a diverged one is): rerun the command to retry it, its traceback is "
        text += "in errors/<run_id>.txt."
    return text


def guard_text(meta: dict | None) -> str:
    floor = (meta or {}).get("freq_loss", math.nan)
    here = f" ({floor:.3f} nats here)" if floor is not None and np.isfinite(floor) else ""
    return (
        f"Learning guard: a variant learned when its mean val loss is at most "
        f"{LEARN_LOSS_FRAC:g} × the loss of a token-frequency table{here} and, on tasks with "
        f"exact answers, its mean exact match is at least {LEARN_MIN_ACCURACY:.0%}. If the "
        f"baseline did not learn, every verdict is '{INCONCLUSIVE}'; a variant that did not "
        f"learn while the baseline did is '{DID_NOT_LEARN}'. Overfitting guard: a variant "
        f"overfit when its val loss ended more than {OVERFIT_RISE:.0%} above its lowest point "
        f"of the last quarter of training ({OVERFIT_RISE:g} nats where that point is below 1 "
        "nat; mean over seeds); the 'overfit' column appears when "
        "one did, and 'val − train' (text tasks) is the final val loss minus the loss on fixed "
        "windows of the train split."
    )


def tokenizer_text(meta: dict | None) -> str:
    """One line where a group's runs mix tokenisers ('' otherwise): what the verdict is in."""
    names = (meta or {}).get("tokenizers") or []
    if len(names) < 2:
        return ""
    from bench.analysis.frame import reference_tokenizer

    ref = reference_tokenizer(names)
    others = ", ".join(n for n in names if n != ref)
    return (
        f"These runs mix tokenisers ({ref}; {others}, whose arms are marked '{ARM_SEP}NAME'): a "
        "loss in nats per token is not comparable across tokenisers, so every Δ, verdict, MDE "
        "and crossing multiplier here is in bits per byte of the same held-out text (val bpb); "
        "the val loss column stays per token."
    )


def multiplier_text(meta: dict | None) -> str:
    text = (
        "n.s.: no significant difference. "
        "MDE: the |Δ val loss| a paired t-test over these seeds would detect with 80% power at "
        "α = 0.05, from the observed spread of the per-seed differences; a sweep whose MDE "
        "exceeds the effect you care about could not have seen it ('≈N seeds to resolve': how "
        "many would resolve the observed Δ with 80% power). × steps (crossing): per seed, "
        "the steps the baseline needs to reach the worse of the two final val losses over the "
        "steps the variant needs (interpolated on the validation curves), geometric mean over "
        "seeds with a 95% t "
        "interval on the log scale; > 1: the variant is worth that many times the baseline's "
        "steps. × time: the same in training seconds, which charges a slower block for its "
        "cost. The crossing reads both curves inside one learning-rate schedule: at the "
        "crossing the variant's lr is still high, which by itself makes the ratio understate "
        "a gain; --ladder measures against baselines trained to the end of their own schedule."
    )
    budgets = (meta or {}).get("ladder_budgets")
    if budgets:
        text += " " + ladder_text(meta)
    return text


LADDER_FORM_WORDS = {
    multiplier.POWER_LAW: "L = E + B·budget^(−β), a saturating power law (4 or more budgets; "
    "β searched on a grid, E and B by least squares at each β)",
    multiplier.LOG_LINEAR: "L = a + b·ln(budget), log-linear (fewer than 4 budgets)",
}


def ladder_text(meta: dict) -> str:
    """How the ladder column was read, in the form its fits took, and what its control is."""
    mode = fmt.BUDGET_UNITS.get(meta.get("budget_mode", ""), "")
    rungs = ", ".join(f"{b:g}" for b in meta["ladder_budgets"])
    forms = meta.get("ladder_forms") or []
    fitted = "; ".join(LADDER_FORM_WORDS[f] for f in forms) if forms else "the ladder's fit"
    factor = f"{multiplier.CONTROL_FACTOR:g}"
    floor = "; 'unreachable' = at or below the power law's floor E, which no budget reaches (∞)"
    return (
        f"× steps (ladder): the baseline trained with its own full schedule at {rungs} "
        f"{mode}; {fitted}, fitted through its final losses and inverted at the variant's mean "
        "final loss; 95% percentile bootstrap over seeds (coarse with few seeds: 3 seeds give "
        "10 distinct resamples); 'extrap.' = outside the ladder"
        f"{floor if multiplier.POWER_LAW in forms else ''}. Ladder control: the "
        f"{factor}× rung is left out, the other rungs are fitted in the same form and read at "
        f"the {factor}× runs' own final losses with the same bootstrap; a fit that can be "
        f"trusted reads {factor}×, and the control passes when {factor} lies inside its "
        "interval. Where it fails, the ladder misreads a budget it was trained at, and its "
        "multipliers are marked '(control failed)': not findings."
    )


MUON_WORDS = (
    "Muon (Nesterov momentum orthogonalised by torch's Newton–Schulz iteration, attention's Q, K "
    "and V as three matrices, each update scaled to AdamW's RMS) for the blocks' 2-D matrices "
    "and AdamW for embeddings, norms and biases, one lr and schedule for both"
)


def optimizer_text(meta: dict | None) -> str:
    """Which optimizer trained the runs, and in an optimizer comparison the reference arm."""
    optimizers = (meta or {}).get("optimizers") or [DEFAULT_OPTIMIZER]
    if optimizers == [DEFAULT_OPTIMIZER]:
        return ""
    if len(optimizers) == 1:
        return f" Every run trained with {MUON_WORDS if optimizers == ['muon'] else optimizers[0]}."
    others = ", ".join(f"'NAME{ARM_SEP}{o}'" for o in optimizers if o != DEFAULT_OPTIMIZER)
    return (
        f" Optimizer arms: {others} is the variant trained with "
        f"{MUON_WORDS if 'muon' in optimizers else 'that optimizer'}; the plain names trained "
        f"with AdamW. Reference arm: '{BASELINE}' with AdamW."
    )


def lr_text(meta: dict | None) -> str:
    """The convention, where the runs trained at their task recipe's lr and that lr was chosen
    by a committed sweep of the baseline: every arm at the baseline's own best."""
    lrs = (meta or {}).get("lrs") or []
    if len(lrs) != 1 or "," in meta.get("task", ""):
        return ""
    from bench.tasks import task_names, task_recipe

    if meta["task"] not in task_names():
        return ""
    recipe = task_recipe(meta["task"])
    if not recipe.lr_sweep or float(lrs[0]) != recipe.lr:
        return ""
    return (
        f" Every arm trained at lr {recipe.lr:g}, the baseline's own best at this task's recipe "
        f"({recipe.steps:,} steps; the sweep: {recipe.lr_sweep}): variants are compared at the "
        "baseline's tuned lr, as Narang et al. (2021) compare them; --tune lr gives each arm "
        "its own."
    )


def footnote(meta: dict | None = None, columns: list[Column] | None = None) -> str:
    """How to read the table; stated under every table so a verdict is never read without it.
    `columns`: the table's columns (bench.analysis.display.frame_shows), whose own footnotes end
    it."""
    text = (
        "Mean ± std over runs that finished (status ok); diverged runs are counted in "
        "ok/seeds and excluded from every mean, std and test. Δ = variant − baseline. "
        "Verdict: paired t-test on validation loss by seed over the seeds both finished "
        "(Welch if fewer than two are shared), two-sided α = 0.05; 'better'/'worse' only when "
        "the 95% CI of Δ excludes 0, otherwise 'no significant difference'; fewer than two "
        "seeds: 'too few seeds'. Speed deltas are relative to the baseline mean; '(n.s.)' marks "
        "a difference Welch's test cannot separate from timing noise."
    )
    if meta and meta.get("workers"):
        text += (
            f" Timed with {', '.join(meta['workers'])} run(s) at once, "
            f"{', '.join(meta.get('torch_threads') or ['?'])} torch thread(s) each."
        )
    text += " " + guard_text(meta) + " " + multiplier_text(meta)
    if meta and meta.get("n_duplicates"):
        text += f" {meta['n_duplicates']} repeated run(s) of the same variant and seed ignored "
        text += "(latest kept)."
    text += optimizer_text(meta) + lr_text(meta)
    if meta and len(meta.get("train_cfgs") or []) > 1:
        text += f" Warning: these runs used {len(meta['train_cfgs'])} different training configs."
    return text + "".join(f" {c.footnote}" for c in (columns or []) if c.footnote)
