"""User corpora: plain text, JSON Lines and Parquet files, streamed.

- ``text``: every file under the raw folder (``.gz`` read through), one line = one document and
  one row; the language is the source's ``lang``.
- ``jsonl``: one JSON object per line (``.jsonl``/``.json``/``.ndjson``, ``.gz`` allowed); the text
  is ``text_field`` (default ``text``), the language ``lang_field`` of each record or the source's
  ``lang``.  A record is one document; each non-empty line of its text is one row (block).
- ``parquet``: record batches of ``text_field`` (and ``lang_field``), rows as for jsonl.
Document id ``{file}:{line or record number}`` (1-based), also the split group; row_id
``{source}/{lang}/{doc}/{block}``.  Undecodable bytes, invalid JSON and records without text
are dropped, counted and named (file and line) in a warning; the rest of the file is kept.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline import langs
from pipeline.extract.common import OutputSet, SourceContext, clean_text

METADATA_FILES = frozenset({"resolved.json"})
METADATA_SUFFIXES = (".sha256", ".lock", ".part", ".tmp")
# The url adapter unpacks archives beside them (``x.tar.gz`` → ``x/``): read the members, not the archive.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip", ".tar.zst")
SUFFIXES = {
    "text": None,  # any file that is not download metadata
    "jsonl": (".jsonl", ".json", ".ndjson"),
    "parquet": (".parquet",),
}
PARQUET_BATCH_ROWS = 8192


def find_files(raw_dir: Path, fmt: str) -> list[Path]:
    suffixes = SUFFIXES[fmt]
    files = []
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
        name = path.name.removesuffix(".gz")
        if path.name in METADATA_FILES or path.name.endswith(METADATA_SUFFIXES) or path.name.startswith("."):
            continue
        if path.name.endswith(ARCHIVE_SUFFIXES):
            continue
        if suffixes is None or name.endswith(suffixes):
            files.append(path)
    return files


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115 - caller closes


class _Languages:
    """Per-record language tags → configured canonical codes, cached; others counted as dropped."""

    def __init__(self, ctx: SourceContext):
        self.ctx = ctx
        self.default: str | None = ctx.source.get("lang")
        self.field: str | None = ctx.source.get("lang_field")
        self._cache: dict[str, str | None] = {}

    def resolve(self, tag: Any) -> str | None:
        if self.field is None or tag is None or tag == "":
            tag = self.default
        if tag is None:
            self.ctx.stats.drop("no_language")
            return None
        code = self._cache.get(tag, "")
        if code == "":
            code = self._cache[tag] = self._lookup(str(tag))
        if code is None:
            self.ctx.stats.drop("language_not_configured")
        return code

    def _lookup(self, tag: str) -> str | None:
        try:
            code = langs.canonical(tag)
        except langs.UnknownLanguageError:
            self.ctx.stats.skipped_languages[tag] += 1
            return None
        if code not in self.ctx.languages:
            self.ctx.stats.skipped_languages[code] += 1
            return None
        return code


def iter_text_records(ctx: SourceContext, path: Path, rel: str) -> Iterator[tuple[str, Any, str]]:
    """(doc id, language tag, text) per line of a text file."""
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                ctx.stats.drop("undecodable")
                ctx.stats.warn(f"{path}:{number}", f"invalid UTF-8 at byte {exc.start} of the line; line dropped")
                continue
            yield f"{rel}:{number}", None, line


def iter_jsonl_records(ctx: SourceContext, path: Path, rel: str) -> Iterator[tuple[str, Any, str]]:
    text_field = ctx.source.get("text_field", "text")
    lang_field = ctx.source.get("lang_field")
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                ctx.stats.drop("undecodable")
                ctx.stats.warn(where, f"invalid UTF-8 at byte {exc.start} of the line; record dropped")
                continue
            except json.JSONDecodeError as exc:
                ctx.stats.drop("invalid_json")
                ctx.stats.warn(where, f"not valid JSON ({exc.msg}); record dropped")
                continue
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                ctx.stats.drop("missing_text_field")
                ctx.stats.warn(where, f"no string field {text_field!r} (config key sources.{ctx.name}.text_field)")
                continue
            yield f"{rel}:{number}", record.get(lang_field) if lang_field else None, text


def iter_parquet_records(ctx: SourceContext, path: Path, rel: str) -> Iterator[tuple[str, Any, str]]:
    text_field = ctx.source.get("text_field", "text")
    lang_field = ctx.source.get("lang_field")
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError...
        ctx.stats.skip("unreadable_file")
        ctx.stats.warn(path, f"not a readable Parquet file: {exc}")
        return
    columns = [text_field] + ([lang_field] if lang_field else [])
    missing = [c for c in columns if c not in parquet.schema_arrow.names]
    if missing:
        ctx.stats.skip("missing_text_field")
        ctx.stats.warn(path, f"no column(s) {missing} (config keys sources.{ctx.name}.text_field / lang_field)")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        texts = batch.column(text_field).to_pylist()
        tags = batch.column(lang_field).to_pylist() if lang_field else [None] * len(texts)
        for text, tag in zip(texts, tags, strict=True):
            number += 1
            if not isinstance(text, str):
                ctx.stats.drop("missing_text_field")
                continue
            yield f"{rel}:{number}", tag, text


READERS = {"text": iter_text_records, "jsonl": iter_jsonl_records, "parquet": iter_parquet_records}


def extract(ctx: SourceContext, raw_dir: Path, out: OutputSet, threads: int = 1) -> None:
    fmt = ctx.source["format"]
    if not ctx.source.get("lang") and not (fmt != "text" and ctx.source.get("lang_field")):
        raise ValueError(f"config key 'sources.{ctx.name}.lang': format {fmt!r} needs 'lang' (or 'lang_field')")
    files = find_files(raw_dir, fmt)
    if not files:
        ctx.stats.warn(raw_dir, f"no {fmt} file")
        return
    languages = _Languages(ctx)
    for path in tqdm(files, desc=f"extract {ctx.name}", unit="file", leave=False):
        rel = path.relative_to(raw_dir).as_posix()
        for doc_id, tag, text in READERS[fmt](ctx, path, rel):
            _write_record(ctx, out, languages, doc_id, tag, text)


def _write_record(ctx: SourceContext, out: OutputSet, languages: _Languages, doc_id: str, tag: Any,
                  text: str) -> None:
    code = languages.resolve(tag)
    if code is None or not ctx.admit_streamed_doc(code, doc_id):
        return
    lines = [clean_text(line) for line in text.splitlines()] or [""]
    for block, line in enumerate(lines):
        if line:
            out.write_mono(ctx.mono_row(code, doc_id, str(block), doc_id, line))
        else:
            ctx.stats.drop("empty")
