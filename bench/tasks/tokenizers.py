"""The text tasks' tokenisers: `char` (the default), `bpe:N` and a saved `tokenizer.json`.

* ``char``: one id per character, the corpus's sorted characters (by code point) as the
  vocabulary, as the text tasks have always done; it adds nothing to a run's spec.
* ``bpe:N``: a byte-level BPE of N tokens (256 bytes plus N - 256 merges, fewer when the text
  runs out of pairs) trained with Hugging Face `tokenizers` on the **train split only** (the
  first 90% of the corpus's characters), so no merge is learned from held-out text. Offline;
  trained once per corpus and N, and kept in the cache (`<cache>/tokenizers/`).
* ``PATH``: a `tokenizer.json` saved by `tokenizers` (`Tokenizer.save`), e.g. one trained on
  other text or a published model's.

A BPE tokeniser's sha256 (of its tokenizer.json bytes) enters the run's spec beside its name,
so a retrained or edited tokeniser is another run. `bpe:N` and PATH need the `bpe` extra
(`pip install 'transformer-bench[bpe]'`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from torch import Tensor

from bench.core.records import cache_dir, write_bytes_atomic

from .base import IGNORE_INDEX, CharVocab, TaskError, option_int

CHAR = "char"
BPE_PREFIX = "bpe:"
BPE_MIN, BPE_MAX = 257, 1 << 20  # at least one merge over the 256 bytes
_TOKENIZERS_DIR = "tokenizers"


def parse_tokenizer(name: str, value) -> str:
    """The `tokenizer` option: "char", "bpe:N" (N checked here) or a path (checked when the
    task is built); one line for anything else."""
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{name} must be char, bpe:N or a tokenizer.json path, got {value!r}")
    value = value.strip()
    if value.startswith(BPE_PREFIX):
        n = option_int(f"{name} bpe:N's N", value[len(BPE_PREFIX) :], lo=BPE_MIN, hi=BPE_MAX)
        return f"{BPE_PREFIX}{n}"
    return value


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise TaskError(
            "--tokenizer bpe:N or a tokenizer.json needs Hugging Face tokenizers: pip install"
            " 'transformer-bench[bpe]'"
        ) from None
    return tokenizers


class CharTokenizer(CharVocab):
    """`CharVocab` with an array encoder: the `char` tokeniser."""

    name = CHAR
    sha256: str | None = None  # derived from the corpus: the corpus hash names it

    def __init__(self, chars: str):
        super().__init__(chars)
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.uint32)  # ascending

    def encode_array(self, text: str) -> np.ndarray:
        """(n,) uint32 ids of `text`; TaskError for a character outside the vocabulary."""
        cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # (n,)
        ids = np.minimum(np.searchsorted(self._codepoints, cp), len(self.chars) - 1)
        if cp.size and (self._codepoints[ids] != cp).any():  # only if a file changed under us
            raise TaskError("the data changed while it was being read; try again")
        return ids.astype(np.uint32)


class BPETokenizer:
    """A `tokenizers.Tokenizer` with the vocabulary interface the tasks use (`len`, `encode`,
    `decode`) and `encode_array`; `sha256` is that of its tokenizer.json bytes."""

    def __init__(self, tok, name: str, json_bytes: bytes):
        self.tok = tok
        self.name = name
        self.sha256 = hashlib.sha256(json_bytes).hexdigest()

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.uint32)

    def encode(self, s: str) -> list[int]:
        return self.encode_array(s).tolist()

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        if isinstance(ids, Tensor):
            ids = ids.reshape(-1).tolist()
        n = len(self)
        keep = [int(i) for i in ids if int(i) != IGNORE_INDEX and 0 <= int(i) < n]
        return self.tok.decode(keep, skip_special_tokens=False)


def load_tokenizer(path: str | Path, name: str | None = None) -> BPETokenizer:
    """A saved tokenizer.json; TaskError (one line) when it is missing or not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskError(
            f"tokenizer {path} does not exist; pass --tokenizer char, bpe:N or the path of a"
            " tokenizer.json"
        )
    tk = _tokenizers()
    raw = path.read_bytes()
    try:
        tok = tk.Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # tokenizers raises its own Exception type for a bad file
        reason = " ".join(str(e).split())[:200]
        raise TaskError(f"{path} is not a tokenizer.json ({reason})") from None
    return BPETokenizer(tok, name or str(path), raw)


def train_bpe(texts: Iterator[str], n: int) -> tuple[object, bytes]:
    """A byte-level BPE of at most `n` tokens trained on `texts`, and its tokenizer.json."""
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=n,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),  # every byte: nothing unknown
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok, tok.to_str().encode("utf-8")


def bpe_cache_path(corpus_sha256: str, n: int) -> Path:
    return cache_dir() / _TOKENIZERS_DIR / f"bpe{n}-{corpus_sha256[:32]}.json"


def cached_bpe(corpus_sha256: str, n: int, train_text: Callable[[], Iterator[str]]):
    """`bpe:n` for the corpus of `corpus_sha256`: read from the cache, else trained on
    `train_text()` (the train split) and written there atomically."""
    path = bpe_cache_path(corpus_sha256, n)
    name = f"{BPE_PREFIX}{n}"
    if path.is_file():
        return load_tokenizer(path, name)
    tok, raw = train_bpe(train_text(), n)
    try:
        write_bytes_atomic(path, raw)
    except OSError as e:
        raise TaskError(
            f"cannot write the trained tokenizer to {path} ({e.strerror or e}); set"
            " TRANSFORMER_BENCH_CACHE to a writable directory"
        ) from None
    return BPETokenizer(tok, name, raw)
