"""A corpus tokenised once into a memory-mapped id array, kept in the cache; its split.

    toks, tokenizer = tokenize(open_corpus("shards/"), "bpe:1024")
    toks.ids[: toks.n_train]     # the train split, a view of a np.memmap (N,)

The split is by text: the first 90% of the corpus's characters (`TRAIN_TENTHS`) are the train
split, the rest the validation split, each tokenised on its own and written one after the
other, so `ids[:n_train]` and `ids[n_train:]` never share a token and no held-out character
reaches a tokeniser's training (`bpe:N` trains on the train text alone). With `char` a
character is a token, so this is exactly the first 90% / last 10% of the token stream.

The ids are written as nanoGPT's prepare.py writes them (np.memmap, uint8/uint16/uint32 by
vocabulary size) to `<cache>/tokens/<key>.bin`, with `<key>.json` beside it (token and byte
counts, the char vocabulary); both are written to a temporary file and renamed, the .json
last, so a half-written cache is never read. The key is the sha256 of the corpus's content
hash and the tokeniser's (its name for `char`, which the corpus determines): a second build
reads the cache instead of tokenising again, and an edited file is another key. Text is
tokenised in chunks of `CHUNK_CHARS` characters of the running text, counted from the start
of each split, so the ids depend on the text alone, not on how it was split into files or
rows (a chunk boundary may cut a word, once per million characters).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.records import CACHE_ENV, cache_dir, write_bytes_atomic

from .base import TaskError
from .datafiles import Corpus
from .tokenizers import BPE_PREFIX, CHAR, CharTokenizer, cached_bpe, load_tokenizer

TRAIN_TENTHS = 9  # first 90% of the text is train, the rest validation
CHUNK_CHARS = 1 << 20  # characters per tokeniser call
TOKENS_VERSION = 1  # part of every cache key: bump when the encoding above changes
_TOKENS_DIR = "tokens"


def id_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


@dataclass(frozen=True)
class Tokens:
    """A tokenised corpus: `ids` (N,) with the train split first, and the sizes of the text
    each split came from (`val_bytes`: the held-out text's UTF-8 bytes, for bits per byte)."""

    ids: np.ndarray  # (N,) np.memmap, read-only
    path: Path  # the file `ids` maps (`map_ids` maps it again, e.g. in a worker process)
    n_train: int  # tokens of the train split: ids[:n_train]
    train_chars: int
    val_chars: int
    train_bytes: int
    val_bytes: int


# ---------------------------------------------------------------------------------------------
# the running text, by split
# ---------------------------------------------------------------------------------------------


def scan(corpus: Corpus) -> tuple[int, set[str]]:
    """The corpus's length in characters and its set of characters (one pass)."""
    n, chars = 0, set()
    for piece in corpus.stream():
        n += len(piece)
        chars.update(piece)
    if n == 0:
        what = f"data file {corpus.files[0]}" if len(corpus.files) == 1 else "the corpus"
        raise TaskError(f"{what} is empty; pass --data PATH to a non-empty text")
    return n, chars


def split_at(n_chars: int) -> int:
    return (n_chars * TRAIN_TENTHS) // 10


def _split_pieces(corpus: Corpus, n_train: int) -> Iterator[tuple[bool, str]]:
    """(is_train, piece) over the running text, cut at character `n_train`."""
    pos = 0
    for piece in corpus.stream():
        if pos >= n_train:
            yield False, piece
        elif pos + len(piece) <= n_train:
            yield True, piece
        else:
            yield True, piece[: n_train - pos]
            yield False, piece[n_train - pos :]
        pos += len(piece)


def _chunks(pieces: Iterator[tuple[bool, str]], size: int) -> Iterator[tuple[bool, str]]:
    """The same text as exactly `size`-character chunks, restarting at the split (the last
    chunk of each split shorter): chunking by the text, not by the pieces it came in."""
    buf: list[str] = []
    n, current = 0, True
    for is_train, piece in pieces:
        if is_train != current and n:
            yield current, "".join(buf)
            buf, n = [], 0
        current = is_train
        buf.append(piece)
        n += len(piece)
        if n >= size:
            text, start = "".join(buf), 0
            while n - start >= size:
                yield current, text[start : start + size]
                start += size
            buf, n = [text[start:]], n - start
    if n:
        yield current, "".join(buf)


def train_text(corpus: Corpus, n_train: int) -> Iterator[str]:
    """The train split's text in chunks (what `bpe:N` trains on)."""
    for is_train, chunk in _chunks(_split_pieces(corpus, n_train), CHUNK_CHARS):
        if not is_train:
            return
        yield chunk


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------


def cache_key(corpus_sha256: str, tokenizer) -> str:
    ident = CHAR if tokenizer.name == CHAR else tokenizer.sha256
    blob = f"v{TOKENS_VERSION}:{corpus_sha256}:{ident}"
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def tokens_dir() -> Path:
    return cache_dir() / _TOKENS_DIR


def map_ids(path: str | Path, dtype: str, n: int) -> np.ndarray:
    """The (n,) ids in the cache file `path`, memory-mapped read-only."""
    return np.memmap(path, dtype=np.dtype(dtype), mode="r", shape=(n,))


_SIZES = ("n_train", "train_chars", "val_chars", "train_bytes", "val_bytes")


def _load(key: str) -> tuple[Tokens, dict] | None:
    path = tokens_dir() / f"{key}.bin"
    try:
        meta = json.loads((tokens_dir() / f"{key}.json").read_text(encoding="utf-8"))
        ids = map_ids(path, meta["dtype"], meta["n"])
    except (OSError, ValueError, KeyError):  # absent, or damaged: built again
        return None
    return Tokens(ids=ids, path=path, **{k: meta[k] for k in _SIZES}), meta


def _progress(total: int, what: str):
    """A progress bar on stderr where stderr is a terminal (tqdm; without it, a line at the
    start and one at the end); nothing in a log or a pipe, where one-line errors are read."""
    if not sys.stderr.isatty():
        return False
    try:
        from tqdm import tqdm
    except ImportError:
        print(f"tokenising {what} ({total:,} characters) ...", file=sys.stderr)
        return None
    return tqdm(total=total, desc=f"tokenising {what}", unit="char", unit_scale=True,
                file=sys.stderr, leave=False)  # fmt: skip


def _write_ids(corpus: Corpus, tokenizer, n_chars: int, f) -> dict:
    """Tokenise the corpus split by split into the open binary file `f`; the sizes."""
    n_train = split_at(n_chars)
    dtype = id_dtype(len(tokenizer))
    sizes = {"n": 0, "n_train": 0, "train_chars": n_train, "val_chars": n_chars - n_train,
             "train_bytes": 0, "val_bytes": 0, "dtype": dtype.name}  # fmt: skip
    bar = _progress(n_chars, f"{len(corpus.files)} file(s) with {tokenizer.name}")
    for is_train, chunk in _chunks(_split_pieces(corpus, n_train), CHUNK_CHARS):
        ids = tokenizer.encode_array(chunk).astype(dtype)  # (k,)
        ids.tofile(f)
        sizes["n"] += ids.size
        sizes["n_train"] += ids.size if is_train else 0
        sizes["train_bytes" if is_train else "val_bytes"] += len(chunk.encode("utf-8"))
        if bar not in (None, False):
            bar.update(len(chunk))
    if bar is None:
        print(f"tokenised: {sizes['n']:,} tokens", file=sys.stderr)
    elif bar is not False:
        bar.close()
    return sizes


def _build(corpus: Corpus, tokenizer, n_chars: int, key: str) -> None:
    """Write `<key>.bin`, then `<key>.json`, each atomically."""
    folder = tokens_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
    except OSError as e:
        raise TaskError(
            f"cannot write tokenised data to {folder} ({e.strerror or e}); set {CACHE_ENV} to"
            " a writable directory"
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            sizes = _write_ids(corpus, tokenizer, n_chars, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{key}.bin")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {**sizes, "corpus_sha256": corpus.sha256, "tokenizer": tokenizer.name}
    if tokenizer.name == CHAR:
        meta["chars"] = tokenizer.chars
    write_bytes_atomic(folder / f"{key}.json", json.dumps(meta).encode("utf-8"))


def _tokenizer(corpus: Corpus, name: str, counts):
    """The tokeniser `name` for this corpus; `counts()` gives (n_chars, chars), once."""
    if name == CHAR:
        return CharTokenizer("".join(sorted(counts()[1])))
    if name.startswith(BPE_PREFIX):
        n = int(name[len(BPE_PREFIX) :])
        return cached_bpe(corpus.sha256, n, lambda: train_text(corpus, split_at(counts()[0])))
    return load_tokenizer(name)


def tokenize(corpus: Corpus, name: str) -> tuple[Tokens, object]:
    """The corpus's ids under tokeniser `name` ("char", "bpe:N" or a tokenizer.json path), from
    the cache or built into it, and the tokeniser itself."""
    memo: list = []

    def counts() -> tuple[int, set[str]]:
        if not memo:
            memo.append(scan(corpus))
        return memo[0]

    if name == CHAR:  # the vocabulary is in the cache's .json: no pass over the text on a hit
        key = cache_key(corpus.sha256, CharTokenizer(""))
        hit = _load(key)
        if hit is not None and "chars" in hit[1]:
            return hit[0], CharTokenizer(hit[1]["chars"])
    tokenizer = _tokenizer(corpus, name, counts)
    key = cache_key(corpus.sha256, tokenizer)
    hit = _load(key)
    if hit is None:
        _build(corpus, tokenizer, counts()[0], key)
        hit = _load(key)
        if hit is None:  # pragma: no cover - the cache vanished under us
            raise TaskError(f"the tokenised data in {tokens_dir()} could not be read back")
    return hit[0], tokenizer
