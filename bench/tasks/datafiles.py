"""Your own data files as one corpus: which files, in which order, how each becomes documents,
and the content hash that names them.

`--data` takes one file, a folder (every data file under it, recursively; hidden files and
files of other types are skipped) or a glob (`"shards/*.jsonl"`, quoted so the shell leaves it
alone). Files are read in sorted path order, so the same files always give the same corpus.
What a file holds, by its extension:

* ``.txt``: the whole file is one document (UTF-8).
* ``.jsonl``: one JSON object a line (blank lines skipped); the document is its `field`.
* ``.json``: a JSON array of objects when the file starts with ``[``, else JSON lines.
* ``.parquet``: the column `field`, one document a row (needs pyarrow: the ``data`` extra).
* ``.csv``: the column `field` (header row), one document a row (read with pandas).

`field` is ``--data-field`` (default ``text``). Documents are joined with `SEPARATOR`, a blank
line ("\\n\\n"), between them (not after the last), and that one running text is what a
tokeniser sees: a folder of .txt files gives the same text as one file of them joined so.

The content hash (`Corpus.sha256`) names the corpus in a run's spec: a single .txt file's is
the sha256 of its bytes (what `sha256sum` prints); any other corpus's is the sha256 of the
files' hashes, in order, with the field and the separator. Editing a file in place therefore
changes the hash, and with it the run id. Every file is read once, in full, for its hash; text
files are checked to be UTF-8 on the way (parquet stores UTF-8 by its format).
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .base import TaskError

SEPARATOR = "\n\n"  # between two documents: a blank line, a character every vocabulary has
KINDS = {".txt": "text", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
DEFAULT_FIELD = "text"
_READ_CHUNK = 1 << 24  # bytes per read while hashing or reading a text file
_ROWS = 4096  # rows per batch read from a parquet or csv file
_EXTS = ", ".join(KINDS)


# ---------------------------------------------------------------------------------------------
# which files
# ---------------------------------------------------------------------------------------------


def kind_of(path: Path) -> str:
    """The format of `path` by its extension; TaskError (one line) for any other."""
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise TaskError(
            f"data file {path} has an extension this suite does not read ({path.suffix or 'none'});"
            f" use one of {_EXTS}"
        )
    return kind


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def resolve_files(data: str | os.PathLike) -> list[Path]:
    """The data files `data` names (a file, a folder or a glob), in sorted order; TaskError
    (one line) when it names none or names one of an unknown type."""
    text = str(data)
    path = Path(text).expanduser()
    if path.is_dir():
        files = [
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in KINDS
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
        if not files:
            raise TaskError(
                f"data folder {path} holds no data files ({_EXTS}); put some there or pass"
                " --data PATH to a file"
            )
    elif path.is_file():
        files = [path]
    elif _is_glob(text):
        files = [Path(p) for p in glob.glob(str(path), recursive=True)]
        files = [p for p in files if p.is_file()]
        if not files:
            raise TaskError(f"--data {text!r} matches no files; check the pattern (quote it)")
    else:
        raise TaskError(
            f"data file {path} does not exist; pass --data PATH to a file ({_EXTS}), a folder"
            " or a glob"
        )
    files = sorted(files, key=lambda p: str(p))
    for p in files:
        kind_of(p)
    return files


# ---------------------------------------------------------------------------------------------
# bytes: hashing and strict UTF-8
# ---------------------------------------------------------------------------------------------


def read_chunks(path: Path) -> Iterator[tuple[int, bytes, str]]:
    """Yield (byte offset, raw bytes, decoded text) per chunk, decoding UTF-8 strictly.

    The incremental decoder carries a multi-byte character split across two chunks over; a
    bad byte is a TaskError naming the file and the byte's offset.
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


def file_sha256(path: Path, check_utf8: bool = True) -> str:
    """sha256 of the file's bytes; with `check_utf8`, TaskError at its first non-UTF-8 byte."""
    sha = hashlib.sha256()
    try:
        if check_utf8:
            for _, raw, _ in read_chunks(path):
                sha.update(raw)
        else:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(_READ_CHUNK), b""):
                    sha.update(block)
    except OSError as e:
        raise TaskError(f"cannot read data file {path}: {e.strerror or e}") from None
    return sha.hexdigest()


# ---------------------------------------------------------------------------------------------
# documents, by format
# ---------------------------------------------------------------------------------------------


def _text_of(value, path: Path, where: str, field_: str, found) -> str:
    """A row's document: its `field_` as a string; one line naming the file otherwise."""
    if value is None:
        raise TaskError(f"{path} {where} has no value in {field_!r} (null); drop the row")
    if not isinstance(value, str):
        raise TaskError(
            f"{path} {where}: {field_!r} is {type(value).__name__}, not text; pass --data-field"
            f" naming a text field (found: {', '.join(map(str, found))})"
        )
    return value


def _row_text(row, path: Path, where: str, field_: str) -> str:
    if not isinstance(row, dict):
        raise TaskError(
            f"{path} {where} is not a JSON object; each row must be {{{field_!r}: ...}}"
        )
    if field_ not in row:
        keys = ", ".join(map(str, row)) or "none"
        raise TaskError(
            f"{path} {where} has no field {field_!r} (its keys: {keys}); pass --data-field KEY"
        )
    return _text_of(row[field_], path, where, field_, list(row))


def _txt(path: Path, field_: str) -> Iterator[Iterable[str]]:
    yield (text for _, _, text in read_chunks(path))


def _jsonl(path: Path, field_: str) -> Iterator[Iterable[str]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskError(
                    f"{path} line {n} is not JSON ({e.msg}); one object a line"
                ) from None
            yield (_row_text(row, path, f"line {n}", field_),)


def _json(path: Path, field_: str) -> Iterator[Iterable[str]]:
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if not head.startswith("["):
        yield from _jsonl(path, field_)
        return
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TaskError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    for i, row in enumerate(rows):
        yield (_row_text(row, path, f"item {i}", field_),)


def _missing_column(path: Path, field_: str, columns) -> TaskError:
    found = ", ".join(map(str, columns)) or "none"
    return TaskError(
        f"{path} has no column {field_!r} (its columns: {found}); pass --data-field COLUMN"
    )


def _parquet(path: Path, field_: str) -> Iterator[Iterable[str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskError(
            f"reading {path} (.parquet) needs pyarrow: pip install 'transformer-bench[data]'"
        ) from None
    try:
        f = pq.ParquetFile(path)
        names = f.schema_arrow.names
        if field_ not in names:
            raise _missing_column(path, field_, names)
        row = 0
        for batch in f.iter_batches(columns=[field_], batch_size=_ROWS):
            for value in batch.column(0).to_pylist():
                yield (_text_of(value, path, f"row {row}", field_, names),)
                row += 1
    except (OSError, ValueError) as e:
        if isinstance(e, TaskError):
            raise
        raise TaskError(f"cannot read {path} as parquet: {' '.join(str(e).split())}") from None


def _csv(path: Path, field_: str) -> Iterator[Iterable[str]]:
    import pandas as pd

    read = {"encoding": "utf-8", "dtype": str, "keep_default_na": False}
    try:
        try:
            columns = list(pd.read_csv(path, nrows=0, **read).columns)
        except pd.errors.EmptyDataError:
            columns = []
        if field_ not in columns:
            raise _missing_column(path, field_, columns)
        row = 0
        for chunk in pd.read_csv(path, usecols=[field_], chunksize=_ROWS, **read):
            for value in chunk[field_]:
                yield (_text_of(value, path, f"row {row}", field_, columns),)
                row += 1
    except pd.errors.ParserError as e:
        raise TaskError(f"cannot read {path} as CSV: {' '.join(str(e).split())}") from None


_READERS = {"text": _txt, "jsonl": _jsonl, "json": _json, "parquet": _parquet, "csv": _csv}


# ---------------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """The files of one `--data`, their hashes, and the text they make (`stream`)."""

    files: tuple[Path, ...]
    kinds: tuple[str, ...]  # each file's format (KINDS' values)
    field: str
    file_sha256: tuple[str, ...]
    sha256: str  # the corpus's content hash (see the module docstring)

    def stream(self) -> Iterator[str]:
        """The corpus's running text in pieces: the documents, SEPARATOR between two."""
        first = True
        for path, kind in zip(self.files, self.kinds, strict=True):
            for doc in _READERS[kind](path, self.field):
                if not first:
                    yield SEPARATOR
                first = False
                yield from doc

    def describe(self) -> dict:
        out = {"files": [str(p.resolve()) for p in self.files], "sha256": self.sha256}
        if any(k != "text" for k in self.kinds):
            out["field"] = self.field
        if len(self.files) > 1:
            out["file_sha256"] = list(self.file_sha256)
        return out


def corpus_sha256(kinds: Iterable[str], hashes: Iterable[str], field_: str) -> str:
    """One .txt file: its own sha256. Otherwise: the sha256 of the files' (format, sha256) in
    order, the field (where a file has fields) and the separator, as canonical JSON."""
    kinds, hashes = list(kinds), list(hashes)
    if kinds == ["text"]:
        return hashes[0]
    blob = {"files": [[k, h] for k, h in zip(kinds, hashes, strict=True)], "sep": SEPARATOR}
    if any(k != "text" for k in kinds):
        blob["field"] = field_
    canonical = json.dumps(blob, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def open_corpus(data: str | os.PathLike, field_: str = DEFAULT_FIELD) -> Corpus:
    """The corpus `data` names, every file hashed (and text files checked to be UTF-8)."""
    files = resolve_files(data)
    kinds = [kind_of(p) for p in files]
    hashes = [file_sha256(p, check_utf8=k != "parquet") for p, k in zip(files, kinds, strict=True)]
    sha = corpus_sha256(kinds, hashes, field_)
    return Corpus(tuple(files), tuple(kinds), field_, tuple(hashes), sha)
