"""`text` and `shakespeare`: character-level language modelling on a local UTF-8 file.

The vocabulary is the sorted set of characters in the file (sorted by code point). The file is
encoded once into a single numpy array of ids (uint8 when the vocabulary has <= 256 characters,
else uint16/uint32), read in chunks so the only full-size copy kept is that array. The first
90% of the token stream is the train split and the last 10% the validation split.

Rows are windows of length context + 1 from a split: x = window[:-1], y = window[1:], so
`seq_len` = context and every position carries a loss. Training windows start at positions
drawn from the caller's generator; the validation batches start at positions drawn once from a
fixed internal seed, so every variant and run seed is scored on the same text.

`shakespeare` is the same on tiny Shakespeare (Karpathy's char-rnn `input.txt`), downloaded
once into the cache directory ($TRANSFORMER_BENCH_CACHE, else ~/.cache/transformer-bench/) and
checked against a fixed sha256, or taken from `data=PATH` (also hash-checked).
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import os
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..records import write_bytes_atomic
from .base import CharVocab, Task, TaskError

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


class CharWindowsTask(Task):
    """What `text` and `corpus` share: windows of context + 1 ids cut from a train and a
    validation id array (`self._train`, `self._val`, set by the subclass with `self.vocab`)."""

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

    def encode(self, s: str) -> list[int]:
        return self.vocab.encode(s)

    def decode(self, ids) -> str:
        return self.vocab.decode(ids)


class TextTask(CharWindowsTask):
    """Character-level next-token prediction on a local UTF-8 file (`data=PATH`)."""

    name = "text"

    def __init__(
        self,
        *,
        context: int,
        data: str | os.PathLike | None = None,
        eval_batches: int = 8,
        eval_batch_size: int = 32,
    ):
        super().__init__(
            context=context, eval_batches=eval_batches, eval_batch_size=eval_batch_size
        )
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
            "n_train": int(self.n_train),
            "n_val": int(self.n_val),
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "context": self.context,
            "eval_batches": self.eval_batches,
            "eval_batch_size": self.eval_batch_size,
            "val_seed": _VAL_SEED,
        }


# ---------------------------------------------------------------------------------------------
# tiny Shakespeare
# ---------------------------------------------------------------------------------------------

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_BYTES = 1_115_394
SHAKESPEARE_FILENAME = "tinyshakespeare.txt"
FETCH_TIMEOUT_S = 30.0
CACHE_ENV = "TRANSFORMER_BENCH_CACHE"


def cache_dir() -> Path:
    """Where downloads live: $TRANSFORMER_BENCH_CACHE, else ~/.cache/transformer-bench/."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "transformer-bench"


def shakespeare_cache_path() -> Path:
    return cache_dir() / SHAKESPEARE_FILENAME


def _fetch(url: str) -> bytes:
    """Download `url` (module-level so tests can replace it)."""
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as r:
        return r.read()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def shakespeare_path(data: str | os.PathLike | None = None) -> tuple[Path, str]:
    """A hash-checked tiny Shakespeare file and where it came from ("data"/"cache"/"download").

    With `data`, that file must match the hash. Otherwise the cached copy is used if its hash
    is right, else the file is downloaded and cached. Raises TaskError (one line) on any failure.
    """
    if data is not None:
        path = Path(data)
        if not path.is_file():
            raise TaskError(
                f"shakespeare data file {path} does not exist; pass --data PATH to the char-rnn"
                " tinyshakespeare input.txt, or leave --data out to download it"
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
            got = _sha256_file(path)
        except OSError as e:
            got = f"unreadable ({_one_line(e)})"
        if got == SHAKESPEARE_SHA256:
            return path, "cache"
        warnings.warn(
            f"cached {path} has sha256 {got}, expected {SHAKESPEARE_SHA256}; downloading again",
            stacklevel=2,
        )

    hint = f"save {SHAKESPEARE_URL} as {path} or pass --data PATH to a local copy"
    try:
        raw = _fetch(SHAKESPEARE_URL)
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise TaskError(f"could not download tiny Shakespeare ({_one_line(e)}); {hint}") from None
    got = hashlib.sha256(raw).hexdigest()
    if got != SHAKESPEARE_SHA256:
        raise TaskError(
            f"downloaded tiny Shakespeare has sha256 {got}, expected {SHAKESPEARE_SHA256}"
            f" ({len(raw)} bytes, expected {SHAKESPEARE_BYTES}); {hint}"
        )
    try:
        write_bytes_atomic(path, raw)
    except OSError as e:
        raise TaskError(
            f"cannot write the download to {path} ({_one_line(e)}); set {CACHE_ENV} to a"
            " writable directory or pass --data PATH"
        ) from None
    return path, "download"


class ShakespeareTask(TextTask):
    """`text` on tiny Shakespeare, downloaded once and hash-checked (or `data=PATH`)."""

    name = "shakespeare"

    def __init__(
        self,
        *,
        context: int,
        data: str | os.PathLike | None = None,
        eval_batches: int = 8,
        eval_batch_size: int = 32,
    ):
        path, self.source = shakespeare_path(data)
        super().__init__(
            context=context, data=path, eval_batches=eval_batches, eval_batch_size=eval_batch_size
        )

    def describe(self) -> dict:
        d = super().describe()
        d.update(source=self.source, url=SHAKESPEARE_URL)
        return d
