"""`text` and `shakespeare`: language modelling on your own data files, or on tiny Shakespeare.

`text` reads `data=PATH` (--data): a .txt, .jsonl/.json, .parquet or .csv file, a folder or a
glob of them (bench.tasks.datafiles: formats, order, the field, the separator), tokenised with
`tokenizer` (--tokenizer: `char`, the default, `bpe:N` or a tokenizer.json; see
bench.tasks.tokenizers) once into a memory-mapped id array in the cache (bench.tasks.tokens),
so a corpus larger than memory trains without being read whole. The first 90% of the text is
the train split and the last 10% the validation split (with `char`: exactly the first 90% /
last 10% of the token stream).

Rows are windows of length context + 1 from a split: x = window[:-1], y = window[1:], so
`seq_len` = context and every position carries a loss. Training windows start at positions
drawn from the caller's generator; the validation batches start at positions drawn once from a
fixed internal seed, so every variant and run seed is scored on the same text. Each task
reports `val_tokens_per_byte` (validation tokens over the held-out text's UTF-8 bytes), which
turns a loss in nats per token into bits per byte, comparable across tokenisers.

A run's spec names the data by content (`data_sha256`, bench.tasks.datafiles.Corpus.sha256)
and a BPE tokeniser by its hash (`tokenizer`, `tokenizer_sha256`): editing a file in place or
retraining a tokeniser is another run, while `char` and the default field add nothing, so the
ids of runs made before these options existed are unchanged (`run_identity`). A worker checks
that the data and tokeniser it builds are the ones the spec names.

`shakespeare` is `text` on tiny Shakespeare (Karpathy's char-rnn `input.txt`), which ships
with the package (xz-compressed), is unpacked once into the cache directory
($TRANSFORMER_BENCH_CACHE, else ~/.cache/transformer-bench/) and checked against a fixed
sha256; `data=PATH` takes another copy (also hash-checked: any copy is the same run, so it is
left out of the spec). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.core.records import CACHE_ENV, cache_dir, write_bytes_atomic
from bench.core.spec import Recipe

from .base import CharVocab, Task, TaskError, option, register_task
from .datafiles import DEFAULT_FIELD, open_corpus
from .datafiles import read_chunks as _read_chunks  # noqa: F401 (bench.tasks.corpus reads it here)
from .tokenizers import CHAR, parse_tokenizer
from .tokens import TRAIN_TENTHS, map_ids, tokenize  # noqa: F401 (TRAIN_TENTHS: bench.tasks.corpus)
from .tokens import id_dtype as _id_dtype  # noqa: F401 (bench.tasks.corpus reads it here)

_VAL_SEED = 1337  # fixed: validation windows never depend on the run seed
_TRAIN_EVAL_SEED = 7331  # fixed: the train-split windows of `train_eval_batches`


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

    def train_eval_batches(self) -> list[tuple[Tensor, Tensor]]:
        """As many fixed windows of the *train* split as `val_batches` has (fixed seed): the
        train loss measured the same way as the validation loss, to see whether they part."""
        return self._fixed_windows(self._train, _TRAIN_EVAL_SEED)

    @torch.no_grad()
    def evaluate(self, model, device) -> dict:
        """The loss on `train_eval_batches`, beside the val loss: do train and val part
        (overfitting)? {"train_split_loss": nats per token}."""
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for x, y in self.train_eval_batches():
            _, loss = model(x.to(device), y.to(device))
            total += float(loss) * y.numel()
            count += y.numel()
        model.train(was_training)
        return {"train_split_loss": total / count}

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


@dataclass(frozen=True)
class TextOptions:
    tokenizer: str = option(CHAR, parse=parse_tokenizer)  # char, bpe:N or a tokenizer.json
    data_field: str = option(DEFAULT_FIELD)  # the field/column of .jsonl/.json/.parquet/.csv
    # set by the plan, checked by the worker: the content the run was planned on
    data_sha256: str | None = option(None)
    tokenizer_sha256: str | None = option(None)


_IDENTITY_OPTIONS = ("tokenizer", "data_field", "data_sha256", "tokenizer_sha256")


@register_task
class TextTask(CharWindowsTask):
    """Next-token prediction on local data files (`data=PATH`); see the module docstring."""

    name = "text"
    description = "language modelling on your files (--data: txt/jsonl/parquet/csv, a folder)"
    Options = TextOptions

    def _build(self, data: str | os.PathLike | None) -> None:
        if data is None:
            raise TaskError(
                f"task '{self.name}' needs data: pass --data PATH (a text, jsonl, parquet or"
                " csv file, a folder or a glob)"
            )
        opts = self.options
        self.path = Path(data)
        self.corpus = open_corpus(data, opts.data_field)
        self.sha256 = self.corpus.sha256
        _check_pinned(f"--data {data}", opts.data_sha256, self.sha256)
        toks, self.tokenizer = tokenize(self.corpus, opts.tokenizer)
        _check_pinned(f"--tokenizer {opts.tokenizer}", opts.tokenizer_sha256, self.tokenizer.sha256)
        self.vocab = self.tokenizer
        self.vocab_size = len(self.tokenizer)
        self.seq_len = self.context
        self.n_train = toks.n_train
        self.n_val = toks.ids.size - self.n_train
        self._ids_file = (str(toks.path), toks.ids.dtype.name, int(toks.ids.size))
        self._map_ids()
        self.val_bytes = toks.val_bytes
        self.val_tokens_per_byte = self.n_val / toks.val_bytes if toks.val_bytes else None
        self._check_sizes()

    def _map_ids(self) -> None:
        self.tokens = map_ids(*self._ids_file)  # (N,) memmap: train split, then validation
        self._train = self.tokens[: self.n_train]  # views, not copies
        self._val = self.tokens[self.n_train :]

    def __getstate__(self) -> dict:
        """Pickled for a worker process (bench.exec.pool) without its ids, which the worker
        maps again from the cache file: a corpus is never copied through a pipe."""
        return {k: v for k, v in self.__dict__.items() if k not in ("tokens", "_train", "_val")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._map_ids()

    def _check_sizes(self) -> None:
        """One line, before any training, when a split cannot give the windows it must."""
        need = self.seq_len + 1
        unit = "characters" if self.tokenizer.name == CHAR else "tokens"
        if self.n_val < need or self.n_train < need:
            raise TaskError(
                f"data {self.path} is too short: its validation split (last 10%) has"
                f" {self.n_val} {unit} but one window needs context+1 = {need}; use at"
                f" least {10 * need} {unit} of text or a smaller context"
            )
        windows = self.n_val - self.seq_len  # distinct validation windows
        if windows < self.eval_batch_size:
            raise TaskError(
                f"data {self.path} is too short: its validation split (last 10%) holds"
                f" {windows} distinct windows of context+1 = {need} {unit}, fewer than one"
                f" validation batch ({self.eval_batch_size}); use more text, a smaller context"
                " or a smaller --train.eval_batch_size"
            )

    def run_identity(self, data, given: dict) -> dict:
        """The data by content (`data_sha256`) beside its path, the field where a file has
        fields, and a tokeniser other than `char` by name and hash; `char` and the default
        field add nothing, so runs from before these options keep their ids."""
        out = super().run_identity(data, given)
        for key in _IDENTITY_OPTIONS:
            out.pop(key, None)
        if data is not None:
            out["data_sha256"] = self.sha256
        if self.options.data_field != DEFAULT_FIELD and set(self.corpus.kinds) != {"text"}:
            out["data_field"] = self.options.data_field
        if self.tokenizer.name != CHAR:
            name = self.options.tokenizer
            out["tokenizer"] = name if name.startswith("bpe:") else str(Path(name).resolve())
            out["tokenizer_sha256"] = self.tokenizer.sha256
        return out

    def describe(self) -> dict:
        out = {"task": self.name, "path": str(self.path.resolve()), **self.corpus.describe()}
        if len(self.corpus.files) == 1:
            del out["files"]  # the path says it
        out.update(tokenizer=self.tokenizer.name, n_tokens=int(self.tokens.size))
        if self.tokenizer.sha256:
            out["tokenizer_sha256"] = self.tokenizer.sha256
        out.update(val_bytes=int(self.val_bytes), val_tokens_per_byte=self.val_tokens_per_byte)
        return {**out, **self._describe_windows()}


def _check_pinned(what: str, want: str | None, got: str | None) -> None:
    """A spec that names a content hash gets that content, or one line saying it changed."""
    if want is not None and want != got:
        raise TaskError(
            f"{what} has changed since this run was planned (sha256 {got}, the run's spec"
            f" says {want}); run the command again to plan runs on the new content"
        )


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
    description = (
        "tiny Shakespeare (char-rnn input.txt, ships with the package), char or --tokenizer"
    )

    def _build(self, data: str | os.PathLike | None) -> None:
        path, self.source = shakespeare_path(data)
        super()._build(path)

    def run_identity(self, data, given: dict) -> dict:
        """Any copy of the corpus is the same text (its hash is checked): no path, no hash."""
        out = super().run_identity(data, given)
        out.pop("data_sha256", None)
        return {**out, "data": None}

    def describe(self) -> dict:
        d = super().describe()
        d.update(source=self.source, url=SHAKESPEARE_URL)
        return d
