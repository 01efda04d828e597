"""What every extractor shares: the source's languages and caps, row building, stats, outputs.

An extractor gets a ``SourceContext`` (which languages to keep, max_docs, splits, stats) and an
``OutputSet`` (lazily opened Arrow writers, one per language and per pair), and only decides how
its format turns files into blocks.  Nothing is dropped silently: every skipped file and dropped
block is counted under a reason in ``extract_stats.json``, and bad input gives a warning that
names the file.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import langcodes

from pipeline import config as pfconfig
from pipeline import langs, schemas
from pipeline.arrow_io import ArrowWriter
from pipeline.splits import SplitConfig, assign_split

LOG = logging.getLogger(__name__)
STATS_FILE = "extract_stats.json"
MAX_WARNINGS_KEPT = 1000  # the stats file lists this many; the total is always counted
# Group keys whose split is remembered. The split is a pure hash of the key, so the cache is only a
# speed-up (a LibreOffice page or a gettext msgid gives many rows in a row); it must not grow with the
# corpus, since a text/JSONL/Parquet group is one line.
SPLIT_CACHE_SIZE = 1 << 14

# ANSI/VT100 escape sequences (colour codes in some fortune files, stray ones in man output).
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")
# gettext modifiers that only name the script, which the canonical code already carries.
_SCRIPT_MODIFIERS = frozenset({"latin", "cyrillic", "devanagari"})

T = TypeVar("T")
R = TypeVar("R")


def clean_text(text: str) -> str:
    """NFC, escape sequences removed, every run of whitespace (newlines included) one space."""
    if "\x1b" in text:
        # Until none is left: some files nest a sequence inside another one (``ESC[;ESC[34;1mm``).
        while (stripped := _ANSI_ESCAPE.sub("", text)) != text:
            text = stripped
        text = text.replace("\x1b", "")
    if not text.isascii():  # ASCII is NFC already (isascii is a flag: no scan)
        text = unicodedata.normalize("NFC", text)
    # str.split() splits at exactly the characters the \s of a str regex matches (str.isspace), so this is
    # re.sub(r"\s+", " ", text).strip(), at half the cost: it runs once per block of every source.
    return " ".join(text.split())


class ExtractStats:
    """Counts and warnings of one source's extraction, written to extract_stats.json."""

    def __init__(self, source: str, fmt: str):
        self.source = source
        self.format = fmt
        self.dropped: collections.Counter[str] = collections.Counter()  # blocks/rows, by reason
        self.skipped: collections.Counter[str] = collections.Counter()  # files/documents, by reason
        self.skipped_languages: collections.Counter[str] = collections.Counter()  # source tag -> files
        self.docs: collections.Counter[str] = collections.Counter()  # lang -> documents kept
        self.warnings: list[str] = []
        self.warning_count = 0
        self.root: str | None = None  # warnings name files relative to the raw folder, so stats do not move

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] += n

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] += n

    def warn(self, where: str | os.PathLike[str], message: str) -> None:
        """Record bad input, naming the file (and line) it is in."""
        where = str(where)
        if self.root and where.startswith(self.root + os.sep):
            where = where[len(self.root) + 1 :]
        text = f"{where}: {message}"
        self.warning_count += 1
        if len(self.warnings) < MAX_WARNINGS_KEPT:
            self.warnings.append(text)
        LOG.warning(text)

    def to_dict(self, rows: dict[str, int]) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows": dict(sorted(rows.items())),
            "docs": dict(sorted(self.docs.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_languages": dict(sorted(self.skipped_languages.items())),
            "warnings": self.warnings,
            "warning_count": self.warning_count,
        }


def eval_extra_languages(cfg: dict[str, Any], source: dict[str, Any]) -> set[str]:
    """``eval.udhr.extra_languages`` for a UDHR eval source: languages the model never sees, extracted only
    for many-way retrieval (their rows never reach clean, and they get no pairs)."""
    if source.get("role") != "eval" or source.get("format") != "udhr":
        return set()
    return {langs.canonical(t) for t in cfg.get("eval", {}).get("udhr", {}).get("extra_languages", [])}


class SourceContext:
    """One source's settings as extraction needs them, plus its stats.

    ``languages``: configured languages, restricted by the source's ``languages`` key.
    ``pairs``: the pivot–X pairs of the config whose two languages this source may give.
    """

    def __init__(self, cfg: dict[str, Any], source_name: str):
        self.name = source_name
        self.source: dict[str, Any] = cfg["sources"][source_name]
        self.pivot: str = cfg["pivot"]
        allowed = set(cfg["languages"])
        if self.source.get("languages"):
            allowed &= {langs.canonical(t) for t in self.source["languages"]}
        self.pairs: list[tuple[str, str]] = [
            (s, t) for s, t in pfconfig.pairs(cfg) if s in allowed and t in allowed
        ]
        allowed |= eval_extra_languages(cfg, self.source)
        self.languages: list[str] = sorted(allowed)
        self.max_docs: int | None = self.source.get("max_docs")
        self.split_config = SplitConfig.from_config(cfg)
        self.stats = ExtractStats(source_name, self.source["format"])
        self._split = functools.lru_cache(maxsize=SPLIT_CACHE_SIZE)(
            functools.partial(assign_split, config=self.split_config)
        )
        self._streamed_docs: dict[str, tuple[str, bool]] = {}

    def language_of(self, tag: str, where: str | os.PathLike[str]) -> str | None:
        """Canonical code of a source's own tag, or None (counted) when it is not wanted."""
        try:
            code = langs.canonical(tag)
        except langs.UnknownLanguageError:
            self.stats.skip("unknown_language")
            self.stats.skipped_languages[tag] += 1
            LOG.debug("%s: unknown language tag %r", where, tag)
            return None
        if code not in self.languages:
            self.stats.skip("language_not_configured")
            self.stats.skipped_languages[code] += 1
            return None
        return code

    def split(self, group: str) -> str:
        """The group's split (``pipeline.splits.assign_split``), from a cache of fixed size."""
        return self._split(group)

    def cap_docs(self, lang: str, doc_ids: Iterable[str]) -> list[str]:
        """``max_docs`` doc ids of a language, sorted; the rest counted as skipped.

        The cap takes the first ids in order of a stable hash, not of the name: sorted names would
        take whole sections (every ``text/sbasic`` page first) and lose the topic labels.  The same
        ids in two languages hash alike, so capped languages stay aligned page for page.
        """
        ordered = sorted(doc_ids)
        kept = ordered
        if self.max_docs is not None:
            kept = sorted(sorted(ordered, key=_stable_hash)[: self.max_docs])
        self.stats.skip("max_docs", len(ordered) - len(kept))
        self.stats.docs[lang] += len(kept)
        return kept

    def admit_streamed_doc(self, lang: str, doc_id: str) -> bool:
        """For streamed corpora, whose rows come document by document in file order: keep the
        first ``max_docs`` documents of each language (only the last one seen is remembered)."""
        last = self._streamed_docs.get(lang)
        if last is not None and last[0] == doc_id:
            return last[1]
        admitted = self.max_docs is None or self.stats.docs[lang] < self.max_docs
        self._streamed_docs[lang] = (doc_id, admitted)
        if admitted:
            self.stats.docs[lang] += 1
        else:
            self.stats.skip("max_docs")
        return admitted

    def mono_row(self, lang: str, doc_id: str, block: str, group: str, text: str, label: str | None = None,
                 row_id: str | None = None) -> dict[str, Any]:
        return {
            "row_id": row_id or f"{self.name}/{lang}/{doc_id}/{block}",
            "source": self.name,
            "lang": lang,
            "doc_id": doc_id,
            "group": group,
            "split": self.split(group),
            "label": label,
            "text": text,
        }

    def pair_row(self, src: dict[str, Any], tgt: dict[str, Any], block: str) -> dict[str, Any]:
        """A pair made of two monolingual rows of the same document and group."""
        return {
            "row_id": f"{self.name}/{src['lang']}-{tgt['lang']}/{tgt['doc_id']}/{block}",
            "source": self.name,
            "src_lang": src["lang"],
            "tgt_lang": tgt["lang"],
            "src_row_id": src["row_id"],
            "tgt_row_id": tgt["row_id"],
            "doc_id": tgt["doc_id"],
            "group": tgt["group"],
            "split": tgt["split"],
            "label": tgt["label"],
            "src_text": src["text"],
            "tgt_text": tgt["text"],
        }


class OutputSet:
    """Arrow writers of one source, opened on the first row, so only outputs with rows exist."""

    def __init__(self, directory: Path, ctx: SourceContext):
        self.directory = directory
        self.ctx = ctx
        self._writers: dict[str, ArrowWriter] = {}
        # A row's language, or its (src, tgt) pair, to its writer: one dict lookup per row, no file name built.
        self._by_key: dict[str | tuple[str, str], ArrowWriter] = {}

    def _writer(self, name: str, schema) -> ArrowWriter:
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = ArrowWriter(self.directory / name, schema)
        return writer

    def write_mono(self, row: dict[str, Any]) -> None:
        writer = self._by_key.get(row["lang"])
        if writer is None:
            writer = self._by_key[row["lang"]] = self._writer(f"{row['lang']}.arrow", schemas.MONOLINGUAL)
        writer.write_row(row)

    def write_pair(self, row: dict[str, Any]) -> None:
        key = (row["src_lang"], row["tgt_lang"])
        writer = self._by_key.get(key)
        if writer is None:  # the first row of a pair: check it is a configured one
            if key not in self.ctx.pairs:
                raise ValueError(f"pair {row['src_lang']}-{row['tgt_lang']} is not one of the configured pairs")
            writer = self._by_key[key] = self._writer(f"{row['src_lang']}-{row['tgt_lang']}.arrow", schemas.PARALLEL)
        writer.write_row(row)

    def rows(self) -> dict[str, int]:
        return {name: writer.rows_written for name, writer in self._writers.items()}

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp dir beside ``target``; it replaces ``target`` only when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary one
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decode_utf8(data: bytes, where: str | os.PathLike[str], stats: ExtractStats) -> str:
    """Decode UTF-8; invalid bytes become U+FFFD, are counted, and warn naming the file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - data.count("\ufffd".encode())
        stats.drop("undecodable_bytes", bad)
        stats.warn(where, f"invalid UTF-8 at byte {exc.start} ({bad} bad sequence(s) replaced)")
        return text


def valid_utf8(data: bytes, where: str | os.PathLike[str], stats: ExtractStats) -> bytes:
    """``data`` when it is valid UTF-8, else its repair by ``decode_utf8`` (counted, with a warning), encoded."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_utf8(data, where, stats).encode("utf-8")
    return data


def locale_rank(tag: str, code: str) -> tuple[int, int, str]:
    """Order the source tags that map to one canonical code, most direct first.

    ``de`` before ``de_CH``; ``zh_TW`` (the likely region of zh-Hant) before ``zh_HK``;
    ``en-US`` before ``en-GB``; ``ca`` before ``ca@valencia``; ties by the tag itself.
    """
    base, _, modifier = tag.partition("@")
    base = re.sub(r"\.[A-Za-z0-9-]+$", "", base).replace("_", "-")
    modifier_rank = 0 if not modifier or modifier.lower() in _SCRIPT_MODIFIERS else 1
    region = next((p for p in base.split("-")[1:] if len(p) == 2 or (len(p) == 3 and p.isdigit())), None)
    if region is None:
        region_rank = 0
    elif region.upper() == (langcodes.Language.get(code).maximize().territory or ""):
        region_rank = 1
    else:
        region_rank = 2
    return (modifier_rank, region_rank, tag)


def choose_variants(found: dict[str, list[str]], stats: ExtractStats, what: str) -> dict[str, str]:
    """For each canonical code, the most direct of the source tags found; the others are counted."""
    chosen: dict[str, str] = {}
    for code, tags in sorted(found.items()):
        ordered = sorted(set(tags), key=lambda t: locale_rank(t, code))
        chosen[code] = ordered[0]
        for other in ordered[1:]:
            stats.skip("variant_of_chosen_language")
            LOG.info("%s: %s %r is a variant of %s; using %r", stats.source, what, other, code, ordered[0])
    return chosen


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int, window: int = 64) -> Iterator[R]:
    """``map`` over a thread pool, results in input order, at most ``window`` items in flight."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        pending: collections.deque[concurrent.futures.Future[R]] = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def package_dirs(raw_dir: Path, marker: str) -> list[Path]:
    """Roots under ``raw_dir`` that contain ``marker`` (a relative path): each package tree, or raw_dir itself."""
    roots = [p for p in sorted(raw_dir.iterdir()) if p.is_dir() and (p / marker).is_dir()] if raw_dir.is_dir() else []
    if (raw_dir / marker).is_dir():
        roots.insert(0, raw_dir)
    return roots


def _stable_hash(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
