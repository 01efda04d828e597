"""LibreOffice help pages: blocks with ids ``hd_id*``/``par_id*``, aligned across languages.

The help of every language is the same set of pages (``help/{lang}/text/{module}/...html``)
made from the same sources, so a block is identified by (page, block id) in every language.
Pairs are pivot–X blocks with the same (page, block id), both non-empty and not identical
(an identical block is an untranslated one: counted as ``identical``, kept as monolingual).
Hidden ``switchinline`` variants (macOS key names, other modules' wording) are left out: the
``default…`` variant is the text.  A block id that occurs twice in a page (embedded sections) gets ``.2``, ``.3``… in order, which
is the same in every language because the pages share their structure.

Pages are parsed with lxml (libxml2's HTML parser) and the blocks read off the tree.  The text
rules (what is skipped, where a space goes) are those of the stdlib ``html.parser`` reader this
replaced, which gave the same blocks on every page of three whole help packages; they part only
on markup that HTML's own rules restructure (a ``<div>`` or ``<table>`` inside a ``<p>`` ends the
``<p>``), which the help pages do not have.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from lxml import etree
from tqdm import tqdm

from pipeline.extract.common import (
    OutputSet,
    SourceContext,
    choose_variants,
    clean_text,
    package_dirs,
    valid_utf8,
)

HELP_ROOT = "usr/share/libreoffice/help"
BLOCK_ID = re.compile(r"^(?:(?:hd|par)_\w+|N\d+)$")
# Elements whose content never is help text, even inside a block.
_SKIP_CONTENT = frozenset({"script", "style", "noscript"})
_SPACED = frozenset({"br", "li", "td", "th", "tr", "div", "p"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
# Where the help text of a page starts, and anything before it that could make a block (see _content).
_CONTENT_MARKER = b'<div id="DisplayArea"'
_BLOCK_LIKE_ID = re.compile(rb"(?i:\bid)\s*=\s*[\"']?\s*(?:hd_|par_|N\d)")
_N_DIGIT = re.compile(rb"N\d")


class Block(NamedTuple):
    block_id: str
    text: str


_LOCAL = threading.local()  # an lxml parser serves one thread at a time


def _html_parser() -> etree.HTMLParser:
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        # encoding given: the page is valid UTF-8 (repaired if need be), its <meta charset> must not win.
        # Comments and processing instructions give no text: dropped while parsing, their neighbours' text joins.
        parser = _LOCAL.parser = etree.HTMLParser(encoding="utf-8", collect_ids=False, no_network=True,
                                                  remove_comments=True, remove_pis=True)
    return parser


def _append_text(el: etree._Element, parts: list[str], skipping: bool, hidden: bool) -> None:
    """Append the text of ``el`` (inside a block) and of its tail to ``parts``.

    A space at the start and at the end of every ``_SPACED`` element (even a skipped one, so that
    a hidden ``<br>`` still separates words); nothing from ``_SKIP_CONTENT`` elements or hidden
    variants.  ``hidden``: the page has a ``hidden`` attribute somewhere (most have none, and then
    need not look for one).
    """
    tag = el.tag
    if tag.__class__ is str:  # always, as the parser drops comments and PIs; kept for a tree from elsewhere
        spaced = tag in _SPACED
        if spaced:
            parts.append(" ")
        if tag not in _VOID:
            skip = skipping or tag in _SKIP_CONTENT or (
                hidden and el.get("hidden") is not None and not (el.get("id") or "").startswith("default"))
            if not skip and el.text:
                parts.append(el.text)
            for child in el:
                _append_text(child, parts, skip, hidden)
            if spaced:
                parts.append(" ")
    if not skipping and el.tail:
        parts.append(el.tail)


def _collect_blocks(root: etree._Element, found: list[tuple[str, str]], hidden: bool) -> None:
    """Document order: an element with a block id is a block (ids inside it are its text).

    One flat pass over the tree in lxml's own iterator (most elements have no id: one ``get`` each);
    after a block, its descendants are stepped over, as they are its text.
    """
    nodes = root.iter()
    for el in nodes:
        block_id = el.get("id")
        if block_id is None or not _is_block(el, block_id):
            continue
        if len(el):
            parts = [el.text] if el.text else []
            for child in el:
                _append_text(child, parts, False, hidden)
            found.append((block_id, "".join(parts)))
            deque(islice(nodes, sum(1 for _ in el.iterdescendants())), maxlen=0)
        else:
            found.append((block_id, el.text or ""))


def _is_block(el: etree._Element, block_id: str) -> bool:
    """An element (not a comment nor a processing instruction), not void, whose id is a block id."""
    tag = el.tag
    return tag.__class__ is str and tag not in _VOID and BLOCK_ID.match(block_id) is not None


def _content(data: bytes) -> bytes:
    """The page from its content area on, when the navigation before it has no block-like id.

    Every help page is one template: ``<head>``, then header and side panels (about a quarter
    of the bytes and more of the elements, none of them a block), then
    ``<div id="DisplayArea">`` with the help text.  Parsing from there gives the same blocks for
    less; a page whose part before it has anything like a block id (even in a comment or a
    script) is parsed whole, as is a page without the marker.
    """
    start = data.find(_CONTENT_MARKER)
    if start <= 0 or (_may_hold_block_id(data, start) and _BLOCK_LIKE_ID.search(data, 0, start)):
        return data
    return data[start:]


def _may_hold_block_id(data: bytes, end: int) -> bool:
    """Whether ``data[:end]`` has what every block-like id has (``hd_``, ``par_`` or N and a digit).

    Three fast scans that rule out the case-insensitive search of _BLOCK_LIKE_ID on almost every page.
    """
    return data.find(b"hd_", 0, end) >= 0 or data.find(b"par_", 0, end) >= 0 or _N_DIGIT.search(data, 0, end) is not None


def _raw_blocks(page: bytes) -> list[tuple[str, str]]:
    data = _content(page)
    root = etree.fromstring(data, _html_parser())
    found: list[tuple[str, str]] = []
    if root is not None:  # None: nothing but blanks and comments
        _collect_blocks(root, found, b"hidden" in data.lower())
    return found


def parse_help_page(page: str | bytes) -> list[Block]:
    """The blocks of one page (text, or valid UTF-8 bytes) in document order, repeated ids numbered ``id.2``…"""
    seen: dict[str, int] = {}
    blocks = []
    for block_id, raw in _raw_blocks(page.encode("utf-8") if isinstance(page, str) else page):
        n = seen[block_id] = seen.get(block_id, 0) + 1
        blocks.append(Block(block_id if n == 1 else f"{block_id}.{n}", clean_text(raw)))
    return blocks


def help_module(page: str) -> str | None:
    """The help module of a page (``text/scalc/01/x.html`` → ``scalc``): the topic label."""
    parts = page.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "text" else None


def find_language_dirs(ctx: SourceContext, raw_dir: Path) -> dict[str, Path]:
    """Canonical code → ``help/{tag}`` folder, one per configured language (variants counted)."""
    found: dict[str, list[str]] = {}
    dirs: dict[str, Path] = {}
    for root in package_dirs(raw_dir, HELP_ROOT):
        for lang_dir in sorted((root / HELP_ROOT).iterdir()):
            if not (lang_dir / "text").is_dir() or lang_dir.name in dirs:
                continue
            code = ctx.language_of(lang_dir.name, lang_dir)
            if code is not None:
                found.setdefault(code, []).append(lang_dir.name)
                dirs[lang_dir.name] = lang_dir
    return {code: dirs[tag] for code, tag in choose_variants(found, ctx.stats, "help folder").items()}


def list_pages(lang_dir: Path) -> list[str]:
    return sorted(p.relative_to(lang_dir).as_posix() for p in (lang_dir / "text").rglob("*.html"))


def read_page(ctx: SourceContext, path: Path) -> list[Block]:
    try:
        blocks = parse_help_page(valid_utf8(path.read_bytes(), path, ctx.stats))
    except (OSError, AssertionError, etree.LxmlError) as exc:
        ctx.stats.warn(path, f"unreadable help page: {exc}")
        ctx.stats.skip("unreadable_page")
        return []
    if not blocks:
        ctx.stats.warn(path, "no help blocks (no element with an hd_id/par_id id)")
        ctx.stats.skip("page_without_blocks")
    return blocks


def extract(ctx: SourceContext, raw_dir: Path, out: OutputSet, threads: int = 1) -> None:
    lang_dirs = find_language_dirs(ctx, raw_dir)
    if not lang_dirs:
        ctx.stats.warn(raw_dir, f"no LibreOffice help folder ({HELP_ROOT}/<lang>/text) of a configured language")
        return
    kept = {code: set(ctx.cap_docs(code, list_pages(d))) for code, d in lang_dirs.items()}
    pivot = ctx.pivot if ctx.pivot in lang_dirs else None
    for page in tqdm(sorted(set().union(*kept.values())), desc=f"extract {ctx.name}", unit="page", leave=False):
        label = help_module(page)
        pivot_rows: dict[str, dict] = {}
        if pivot and page in kept[pivot]:
            pivot_rows = _write_language(ctx, out, pivot, page, label, read_page(ctx, lang_dirs[pivot] / page))
        for code in sorted(lang_dirs):
            if code == pivot or page not in kept[code]:
                continue
            rows = _write_language(ctx, out, code, page, label, read_page(ctx, lang_dirs[code] / page))
            if (ctx.pivot, code) in ctx.pairs and pivot_rows:
                _write_pairs(ctx, out, pivot_rows, rows)


def _write_language(ctx: SourceContext, out: OutputSet, code: str, page: str, label: str | None,
                    blocks: list[Block]) -> dict[str, dict]:
    """Write the non-empty blocks of one page as monolingual rows; return them by block id."""
    rows: dict[str, dict] = {}
    for block in blocks:
        if not block.text:
            ctx.stats.drop("empty")
            continue
        row = ctx.mono_row(code, page, block.block_id, page, block.text, label)
        out.write_mono(row)
        rows[block.block_id] = row
    return rows


def _write_pairs(ctx: SourceContext, out: OutputSet, pivot_rows: dict[str, dict], rows: dict[str, dict]) -> None:
    for block_id, row in rows.items():
        src = pivot_rows.get(block_id)
        if src is None:
            ctx.stats.drop("unaligned")
        elif src["text"] == row["text"]:
            ctx.stats.drop("identical")
        else:
            out.write_pair(ctx.pair_row(src, row, block_id))
