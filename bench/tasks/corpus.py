"""`corpus`: character-level language modelling on one or more local UTF-8 files, with an
optional fixed vocabulary so that two corpora can share one embedding (pretraining and
finetuning).

    build_task("corpus", context=64, files=["a.md", "b.md"], vocab=corpus_vocab([...]))

Options:

* ``files``: the text, as a list of paths or one string of paths separated by os.pathsep
  (':' here). ``data=PATH`` (the harness's --data) is the same as ``files=[PATH]``.
* ``vocab``: the vocabulary as a string of distinct characters (its order is the id order).
  Leave it out to use the sorted characters of the files themselves; give it (e.g.
  `corpus_vocab` over *both* corpora of a pretrain/finetune pair) to share one id table
  between tasks. A character of the files missing from `vocab` is an error, never mapped to
  something else. Both options are part of the run spec's task dict, so a run id names the
  exact files and vocabulary.

Split: *each file* contributes its first 90% of characters to the train split and its last
10% to the validation split (so every file is represented in validation, and no character is
in both). Rows are windows of context + 1 characters, as in the `text` task: x = w[:-1],
y = w[1:], every position carries a loss; training windows start at positions drawn from the
caller's generator, validation windows at positions drawn once from a fixed seed. A window may
run across the boundary between two files.

Loading streams each file in 16 MiB chunks twice (characters and hash, then ids) into two
preallocated id arrays (uint8 for a vocabulary of at most 256 characters); the text itself is
never held as one Python string.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import CharVocab, TaskError, option, register_task
from .text import TRAIN_TENTHS, CharWindowsTask, _id_dtype, _read_chunks


def parse_files(files) -> list[Path]:
    """A list of paths, or a string of paths separated by os.pathsep; TaskError if empty."""
    if isinstance(files, (str, os.PathLike)):
        items = [p for p in str(files).split(os.pathsep) if p.strip()]
    elif isinstance(files, Sequence):
        items = [str(p) for p in files]
    else:
        raise TaskError(f"files must be a list of paths or a {os.pathsep!r}-separated string")
    if not items:
        raise TaskError("task 'corpus' needs at least one file (files=[...] or --data PATH)")
    out = []
    for item in items:
        path = Path(item)
        if not path.is_file():
            raise TaskError(f"corpus file {path} does not exist or is not a file")
        out.append(path)
    return out


def _scan(paths: Iterable[Path]) -> tuple[set[str], list[int], list[str]]:
    """Characters, character count per file and sha256 per file, streaming."""
    chars: set[str] = set()
    counts, hashes = [], []
    for path in paths:
        sha, n = hashlib.sha256(), 0
        try:
            for _, raw, text in _read_chunks(path):
                sha.update(raw)
                chars.update(text)
                n += len(text)
        except OSError as e:
            raise TaskError(f"cannot read corpus file {path}: {e.strerror or e}") from None
        if n == 0:
            raise TaskError(f"corpus file {path} is empty")
        counts.append(n)
        hashes.append(sha.hexdigest())
    return chars, counts, hashes


def corpus_vocab(paths: Iterable[str | os.PathLike]) -> str:
    """The sorted characters of all `paths` together: a vocabulary two corpora can share."""
    chars, _, _ = _scan(Path(p) for p in paths)
    return "".join(sorted(chars))


@dataclass(frozen=True)
class CorpusOptions:
    files: object = option(None, parse=lambda name, v: v)  # read by parse_files in _build
    vocab: str | None = option(None)  # the characters, in id order (default: the files')


@register_task
class CorpusTask(CharWindowsTask):
    """Character-level next-token prediction on `files`; see the module docstring."""

    name = "corpus"
    description = "char-level LM on local files (files=[...]), optional shared vocab"

    Options = CorpusOptions

    def _build(self, data: str | os.PathLike | None) -> None:
        files, vocab = self.options.files, self.options.vocab
        if files is not None and data is not None:
            raise TaskError("task 'corpus' takes files=[...] or --data PATH, not both")
        self.paths = parse_files(files if files is not None else (data or []))
        chars, counts, self.sha256 = _scan(self.paths)
        if vocab is None:
            vocab = "".join(sorted(chars))
        if not isinstance(vocab, str) or not vocab:
            raise TaskError(f"vocab must be a non-empty string of characters, got {vocab!r}")
        if len(set(vocab)) != len(vocab):
            raise TaskError("vocab lists a character twice")
        missing = sorted(chars - set(vocab))
        if missing:
            raise TaskError(
                f"corpus files contain {len(missing)} character(s) not in vocab, e.g."
                f" {''.join(missing[:10])!r}; build the vocabulary over every file"
                " (bench.tasks.corpus.corpus_vocab)"
            )
        self.vocab = CharVocab(vocab)
        self.vocab_size = len(self.vocab)
        self.seq_len = self.context
        self.file_chars = counts

        cuts = [(n * TRAIN_TENTHS) // 10 for n in counts]
        self.n_train = sum(cuts)
        self.n_val = sum(counts) - self.n_train
        need = self.seq_len + 1
        if self.n_val < need or self.n_train < need:
            raise TaskError(
                f"the corpus is too short: its validation split (the last 10% of each file)"
                f" has {self.n_val} characters but one window needs context+1 = {need}; use"
                f" more text or a smaller context"
            )
        dtype = _id_dtype(self.vocab_size)
        self._train = np.empty(self.n_train, dtype=dtype)  # (N_train,)
        self._val = np.empty(self.n_val, dtype=dtype)  # (N_val,)
        self._encode_into(cuts, counts)

    def _encode_into(self, cuts: list[int], counts: list[int]) -> None:
        # id of a code point: searchsorted into the vocabulary's sorted code points
        cps = np.array([ord(c) for c in self.vocab.chars], dtype=np.uint32)
        order = np.argsort(cps)
        sorted_cps = cps[order]
        tpos = vpos = val_bytes = 0
        for path, cut, n in zip(self.paths, cuts, counts, strict=True):
            pos = 0  # character position inside this file
            for _, _, text in _read_chunks(path):
                if not text:
                    continue
                cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # (chunk,)
                hit = np.minimum(np.searchsorted(sorted_cps, cp), sorted_cps.size - 1)
                if (sorted_cps[hit] != cp).any():  # only if the file changed since the scan
                    raise TaskError(f"corpus file {path} changed while it was read; try again")
                ids = order[hit].astype(self._train.dtype)
                k = ids.size
                if pos + k > n:
                    raise TaskError(f"corpus file {path} changed while it was read; try again")
                to_train = max(0, min(cut - pos, k))
                self._train[tpos : tpos + to_train] = ids[:to_train]
                self._val[vpos : vpos + k - to_train] = ids[to_train:]
                val_bytes += len(text[to_train:].encode("utf-8")) if to_train < k else 0
                tpos += to_train
                vpos += k - to_train
                pos += k
            if pos != n:
                raise TaskError(f"corpus file {path} changed while it was read; try again")
        # one character is one token: bits per byte = loss x characters per byte / ln 2
        self.val_tokens_per_byte = self.n_val / val_bytes if val_bytes else None

    def describe(self) -> dict:
        return {
            "task": self.name,
            "files": [str(p.resolve()) for p in self.paths],
            "sha256": self.sha256,
            "file_chars": self.file_chars,
            "vocab": self.vocab.chars,
            **self._describe_windows(),
        }
