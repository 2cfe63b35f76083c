"""`text` and `shakespeare`: character-level language modelling on a local UTF-8 file.

The vocabulary is the sorted set of characters in the file (sorted by code point). The file is
encoded once into a single numpy array of ids (uint8 when the vocabulary has <= 256 characters,
else uint16/uint32), read in chunks so the only full-size copy kept is that array. The first
90% of the token stream is the train split and the last 10% the validation split.

Rows are windows of length context + 1 from a split: x = window[:-1], y = window[1:], so
`seq_len` = context and every position carries a loss. Training windows start at positions
drawn from the caller's generator; the validation batches start at positions drawn once from a
fixed internal seed, so every variant and run seed is scored on the same text.

`shakespeare` is the same on tiny Shakespeare (Karpathy's char-rnn `input.txt`), which ships
with the package (xz-compressed), is unpacked once into the cache directory
($TRANSFORMER_BENCH_CACHE, else ~/.cache/transformer-bench/) and checked against a fixed
sha256; `data=PATH` takes another copy (also hash-checked). Nothing is downloaded.
"""

from __future__ import annotations

import codecs
import hashlib
import lzma
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.core.records import CACHE_ENV, cache_dir, write_bytes_atomic
from bench.core.spec import Recipe

from .base import CharVocab, Task, TaskError, register_task

TRAIN_TENTHS = 9  # first 90% of the token stream is train, the rest validation
_VAL_SEED = 1337  # fixed: validation windows never depend on the run seed
_READ_CHUNK = 1 << 24  # bytes per read while scanning / encoding the file


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def _read_chunks(path: Path):
    """Yield (byte offset, raw bytes, decoded text) per chunk, decoding UTF-8 strictly.

    The incremental decoder carries a multi-byte character split across two chunks over.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(_READ_CHUNK)
            final = not raw
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                where = offset - pending + e.start
                raise TaskError(
                    f"data file {path} is not valid UTF-8 (bad byte at offset {where});"
                    " convert it to UTF-8 first"
                ) from None
            yield offset, raw, text
            offset += len(raw)
            if final:
                return


def _id_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def load_text(path: str | os.PathLike) -> tuple[str, np.ndarray, str]:
    """Read a UTF-8 file into (vocabulary string, id array (N,), sha256 hex of the bytes).

    Two streaming passes: the first finds the character set, length and hash; the second
    writes ids into one preallocated array. Raises TaskError for a missing, unreadable, empty
    or non-UTF-8 file.
    """
    path = Path(path)
    if not path.exists():
        raise TaskError(f"data file {path} does not exist; pass --data PATH to a UTF-8 text file")
    if not path.is_file():
        raise TaskError(f"data path {path} is not a file; pass --data PATH to a UTF-8 text file")
    try:
        chars: set[str] = set()
        n_chars = 0
        sha = hashlib.sha256()
        for _, raw, text in _read_chunks(path):
            sha.update(raw)
            chars.update(text)
            n_chars += len(text)
        if n_chars == 0:
            raise TaskError(f"data file {path} is empty; pass --data PATH to a non-empty text file")
        vocab = "".join(sorted(chars))
        codepoints = np.array([ord(c) for c in vocab], dtype=np.uint32)  # sorted ascending
        ids = np.empty(n_chars, dtype=_id_dtype(len(vocab)))  # (N,)
        pos = 0
        for _, _, text in _read_chunks(path):
            if not text:
                continue
            cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # (chunk,)
            ids[pos : pos + cp.size] = np.searchsorted(codepoints, cp)
            pos += cp.size
    except OSError as e:
        raise TaskError(f"cannot read data file {path}: {e.strerror or e}") from None
    if pos != n_chars:  # the file changed between the two passes
        raise TaskError(f"data file {path} changed while it was being read; try again")
    return vocab, ids, sha.hexdigest()


# ---------------------------------------------------------------------------------------------
# text task
# ---------------------------------------------------------------------------------------------


# nanoGPT's CPU recipe for tiny Shakespeare (4 layers, 4 heads, d=128, context 64, batch 12,
# AdamW beta2 0.99, weight decay 0.1, cosine to lr/10, dropout 0) at 1,400 steps (70% of its
# 2,000), which keeps the default comparison of two variants x 3 seeds near 5 minutes on a
# 2-core CPU. Its lr is the baseline's own best at that budget: a sweep of 1.41e-3 to 1.13e-2
# in steps of sqrt(2), 3 seeds a point (seeds 1000-1002, apart from the verdicts' 0-2), chose
# 5.66e-3 (mean val loss 1.860; 4e-3 gave 1.862, 8e-3 1.877, nanoGPT's 1e-3 region ~1.96).
CHAR_LM_RECIPE = Recipe(
    model="tiny",
    batch_size=12,
    lr=0.00565686,
    steps=1400,
    eval_batches=4,  # 4 x 64 windows x 64 characters: 16k held-out characters per point
    note="nanoGPT's CPU model and batch, 1,400 steps, the baseline's own best lr: val loss ~1.87",
    lr_sweep="results/reference/ablations/lr_sweep_shakespeare_tiny_1400steps_cpu",
)


class CharWindowsTask(Task):
    """What `text` and `corpus` share: windows of context + 1 ids cut from a train and a
    validation id array (`self._train`, `self._val`, set by the subclass with `self.vocab`)."""

    recipe = CHAR_LM_RECIPE

    _train: np.ndarray
    _val: np.ndarray
    vocab: CharVocab

    def _windows(self, split: np.ndarray, starts: Tensor) -> tuple[Tensor, Tensor]:
        offsets = np.arange(self.seq_len + 1, dtype=np.int64)  # (T+1,)
        w = split[starts.numpy()[:, None] + offsets].astype(np.int64)  # (B, T+1)
        x = torch.from_numpy(np.ascontiguousarray(w[:, :-1]))  # (B, T)
        y = torch.from_numpy(np.ascontiguousarray(w[:, 1:]))  # (B, T)
        return x, y

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        B = self._check_batch_size(batch_size)
        high = self._train.size - self.seq_len  # starts in [0, high): window end <= n_train
        starts = torch.randint(0, high, (B,), generator=generator)
        return self._windows(self._train, starts)

    def _fixed_windows(self, split: np.ndarray, seed: int) -> list[tuple[Tensor, Tensor]]:
        """`eval_batches` batches of windows at positions drawn once from `seed`."""
        g = torch.Generator().manual_seed(seed)
        high = split.size - self.seq_len
        return [
            self._windows(split, torch.randint(0, high, (self.eval_batch_size,), generator=g))
            for _ in range(self.eval_batches)
        ]

    def _build_val_batches(self) -> list[tuple[Tensor, Tensor]]:
        return self._fixed_windows(self._val, _VAL_SEED)

    def _describe_windows(self) -> dict:
        """The part of `describe` every windows task shares: splits, sizes, held-out seed."""
        return {
            "n_train": int(self.n_train),
            "n_val": int(self.n_val),
            **self._describe_rows(),
            "val_seed": _VAL_SEED,
        }

    has_spans = True

    def held_out_spans(self, n_spans: int, span: int) -> Tensor:
        """`n_spans` non-overlapping runs of span + 1 validation ids, evenly spaced over the
        validation split, so every length cut from them scores the same target characters."""
        stride = (self._val.size - 1) // n_spans
        if stride < span + 1:
            raise ValueError(
                f"the validation split ({self._val.size} ids) is too short for {n_spans} spans "
                f"of {span + 1}; use fewer spans or shorter lengths"
            )
        starts = np.arange(n_spans, dtype=np.int64)[:, None] * stride
        ids = self._val[starts + np.arange(span + 1, dtype=np.int64)].astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(ids))  # (n_spans, span + 1)


@register_task
class TextTask(CharWindowsTask):
    """Character-level next-token prediction on a local UTF-8 file (`data=PATH`)."""

    name = "text"
    description = "character-level language modelling on a local UTF-8 file (--data PATH)"

    def _build(self, data: str | os.PathLike | None) -> None:
        if data is None:
            raise TaskError(
                f"task '{self.name}' needs a data file: pass --data PATH (a UTF-8 text file)"
            )
        self.path = Path(data)
        chars, self.tokens, self.sha256 = load_text(self.path)  # tokens: (N,) uint8/16/32
        self.vocab = CharVocab(chars)
        self.vocab_size = len(self.vocab)
        self.seq_len = self.context

        n = self.tokens.size
        self.n_train = (n * TRAIN_TENTHS) // 10
        self.n_val = n - self.n_train
        # views, not copies
        self._train = self.tokens[: self.n_train]
        self._val = self.tokens[self.n_train :]
        need = self.seq_len + 1
        if self.n_val < need:
            raise TaskError(
                f"data file {self.path} is too short: its validation split (last 10%) has"
                f" {self.n_val} characters but one window needs context+1 = {need}; use a"
                f" file of at least {10 * need} characters or a smaller context"
            )

    def describe(self) -> dict:
        return {
            "task": self.name,
            "path": str(self.path.resolve()),
            "sha256": self.sha256,
            "n_tokens": int(self.tokens.size),
            **self._describe_windows(),
        }


# ---------------------------------------------------------------------------------------------
# tiny Shakespeare
# ---------------------------------------------------------------------------------------------

# where the shipped copy came from (provenance only: nothing is downloaded)
SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_BYTES = 1_115_394
SHAKESPEARE_FILENAME = "tinyshakespeare.txt"
# the corpus ships inside the package, xz-compressed (1.1 MB -> 0.36 MB)
SHIPPED_SHAKESPEARE = Path(__file__).with_name("data") / "tinyshakespeare.txt.xz"


def shakespeare_cache_path() -> Path:
    return cache_dir() / SHAKESPEARE_FILENAME


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _unpack_shipped() -> bytes:
    """The shipped corpus, decompressed and hash-checked (TaskError, one line, if damaged)."""
    try:
        raw = lzma.decompress(SHIPPED_SHAKESPEARE.read_bytes())
    except (OSError, lzma.LZMAError) as e:
        raise TaskError(
            f"the tiny Shakespeare shipped with the package ({SHIPPED_SHAKESPEARE}) cannot be"
            f" read ({_one_line(e)}); reinstall the package or pass --data PATH to a copy of"
            f" the char-rnn input.txt"
        ) from None
    got = hashlib.sha256(raw).hexdigest()
    if got != SHAKESPEARE_SHA256:
        raise TaskError(
            f"the tiny Shakespeare shipped with the package ({SHIPPED_SHAKESPEARE}) has sha256"
            f" {got}, expected {SHAKESPEARE_SHA256}; reinstall the package or pass --data PATH"
        )
    return raw


def shakespeare_path(data: str | os.PathLike | None = None) -> tuple[Path, str]:
    """A hash-checked tiny Shakespeare file and where it came from ("data"/"cache"/"package").

    With `data`, that file must match the hash. Otherwise the unpacked copy in the cache is
    used if its hash is right, else the copy shipped with the package is unpacked there (no
    network, ever). Raises TaskError (one line) on any failure.
    """
    if data is not None:
        path = Path(data)
        if not path.is_file():
            raise TaskError(
                f"shakespeare data file {path} does not exist; pass --data PATH to the char-rnn"
                " tinyshakespeare input.txt, or leave --data out to use the shipped copy"
            )
        try:
            got = _sha256_file(path)
        except OSError as e:
            raise TaskError(f"cannot read shakespeare data file {path}: {_one_line(e)}") from None
        if got != SHAKESPEARE_SHA256:
            raise TaskError(
                f"shakespeare data file {path} has sha256 {got}, expected {SHAKESPEARE_SHA256}"
                " (the char-rnn tinyshakespeare input.txt); to train on another text use"
                " --task text --data PATH"
            )
        return path, "data"

    path = shakespeare_cache_path()
    if path.is_file():
        try:
            if _sha256_file(path) == SHAKESPEARE_SHA256:
                return path, "cache"
        except OSError:
            pass  # unreadable: unpacked again below
    raw = _unpack_shipped()
    try:
        write_bytes_atomic(path, raw)
    except OSError as e:
        raise TaskError(
            f"cannot unpack tiny Shakespeare to {path} ({_one_line(e)}); set {CACHE_ENV} to a"
            " writable directory or pass --data PATH"
        ) from None
    return path, "package"


@register_task
class ShakespeareTask(TextTask):
    """`text` on tiny Shakespeare, shipped with the package and hash-checked (or `data=PATH`)."""

    name = "shakespeare"
    description = "character-level tiny Shakespeare (char-rnn input.txt, ships with the package)"

    def _build(self, data: str | os.PathLike | None) -> None:
        path, self.source = shakespeare_path(data)
        super()._build(path)

    def describe(self) -> dict:
        d = super().describe()
        d.update(source=self.source, url=SHAKESPEARE_URL)
        return d
