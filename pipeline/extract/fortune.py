"""fortune files: entries separated by lines holding only ``%``; one row per entry.

Files sit under ``usr/share/games/fortunes/``: a language subfolder (``de/``, ``ru/``) names the
language; files at the top belong to the package's language (``fortunes-zh`` → zh, ``fortunes``
→ en).  The ``off/`` (offensive, rot13) folders and the ``.dat`` indexes are skipped.  Where a
package ships a legacy-encoded file and a UTF-8 ``.u8`` copy, the ``.u8`` one is read; every entry
is decoded as strict UTF-8 and one that fails is dropped, counted and named in a warning.
Lines of an entry are joined with spaces.  Document = file (``fortunes/de/unfug``), group =
``{file}:{index}``, label = the file's name (its topic: ``computers``, ``science``…).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline import langs
from pipeline.extract.common import OutputSet, SourceContext, clean_text, package_dirs

GAMES_ROOT = "usr/share/games"
FORTUNE_DIR = "fortunes"
OFFENSIVE_DIRS = frozenset({"off"})
DEFAULT_LANGUAGE = "en"  # the top folder of the ``fortunes`` package itself
_SEPARATOR = re.compile(rb"^%[ \t\r]*(?:\n|\Z)", re.MULTILINE)


@dataclass(frozen=True)
class FortuneFile:
    path: Path
    doc_id: str  # path under usr/share/games without .u8: fortunes/de/unfug
    topic: str  # unfug
    tag: str  # the language as the package gives it: de, zh, en


def package_language(package_dir_name: str) -> str:
    """``fortunes-zh`` → ``zh``, ``fortunes-eo-ascii`` → ``eo``; anything else (``fortunes``, ``fortunes-min``) → en."""
    parts = package_dir_name.split("-")
    if len(parts) > 1 and parts[0] == FORTUNE_DIR and len(parts[1]) == 2 and langs.is_known(parts[1]):
        return parts[1]
    return DEFAULT_LANGUAGE


def find_fortune_files(ctx: SourceContext, raw_dir: Path) -> list[FortuneFile]:
    """Fortune files in sorted order, each text once (the ``.u8`` copy where there are two)."""
    files = []
    for root in package_dirs(raw_dir, f"{GAMES_ROOT}/{FORTUNE_DIR}"):
        games = root / GAMES_ROOT
        default_tag = package_language(root.name) if root != raw_dir else DEFAULT_LANGUAGE
        for path in sorted((games / FORTUNE_DIR).rglob("*")):
            rel = path.relative_to(games)
            if not path.is_file() or path.is_symlink() or path.suffix == ".dat":
                continue
            if OFFENSIVE_DIRS & set(rel.parts[1:-1]):
                ctx.stats.skip("offensive")
                continue
            if path.suffix != ".u8" and path.with_name(path.name + ".u8").is_file() and not path.with_name(
                path.name + ".u8"
            ).is_symlink():
                ctx.stats.skip("legacy_encoding_copy")  # the .u8 file beside it has the same text in UTF-8
                continue
            stem = path.name.removesuffix(".u8")
            tag = rel.parts[1] if len(rel.parts) > 2 else default_tag
            files.append(FortuneFile(path, (rel.parent / stem).as_posix(), stem, tag))
    return files


def split_entries(data: bytes) -> list[bytes]:
    """The entries of a fortune file (text between ``%`` lines), raw bytes, empty ones included."""
    return _SEPARATOR.split(data)


def extract(ctx: SourceContext, raw_dir: Path, out: OutputSet, threads: int = 1) -> None:
    by_code: dict[str, dict[str, FortuneFile]] = {}
    for item in find_fortune_files(ctx, raw_dir):
        code = ctx.language_of(item.tag, item.path)
        if code is None:
            continue
        if item.doc_id in by_code.setdefault(code, {}):
            ctx.stats.skip("duplicate_file")  # the same file in two packages: the first (sorted) one is read
            continue
        by_code[code][item.doc_id] = item
    if not by_code:
        ctx.stats.warn(raw_dir, f"no fortune file ({GAMES_ROOT}/{FORTUNE_DIR}/) of a configured language")
        return
    work = [(code, by_code[code][doc]) for code in sorted(by_code) for doc in ctx.cap_docs(code, by_code[code])]
    for code, item in tqdm(work, desc=f"extract {ctx.name}", unit="file", leave=False):
        _write_file(ctx, out, code, item)


def _write_file(ctx: SourceContext, out: OutputSet, code: str, item: FortuneFile) -> None:
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        ctx.stats.warn(item.path, f"unreadable: {exc}")
        ctx.stats.skip("unreadable_file")
        return
    for index, raw in enumerate(split_entries(data)):
        try:
            text = clean_text(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            ctx.stats.drop("undecodable")
            ctx.stats.warn(item.path, f"entry {index}: invalid UTF-8 at byte {exc.start} of the entry; entry dropped")
            continue
        if not text:
            ctx.stats.drop("empty")
            continue
        group = f"{item.doc_id}:{index}"
        out.write_mono(ctx.mono_row(code, item.doc_id, str(index), group, text, item.topic))
