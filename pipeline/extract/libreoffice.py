"""LibreOffice help pages: blocks with ids ``hd_id*``/``par_id*``, aligned across languages.

The help of every language is the same set of pages (``help/{lang}/text/{module}/...html``)
made from the same sources, so a block is identified by (page, block id) in every language.
Pairs are pivot–X blocks with the same (page, block id), both non-empty and not identical
(an identical block is an untranslated one: counted as ``identical``, kept as monolingual).
Hidden ``switchinline`` variants (macOS key names, other modules' wording) are left out: the
``default…`` variant is the text.  A block id that occurs twice in a page (embedded sections) gets ``.2``, ``.3``… in order, which
is the same in every language because the pages share their structure.
"""

from __future__ import annotations

import html.parser
import re
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.extract.common import (
    OutputSet,
    SourceContext,
    choose_variants,
    clean_text,
    decode_utf8,
    package_dirs,
)

HELP_ROOT = "usr/share/libreoffice/help"
BLOCK_ID = re.compile(r"^(?:(?:hd|par)_\w+|N\d+)$")
# Elements whose content never is help text, even inside a block.
_SKIP_CONTENT = frozenset({"script", "style", "noscript"})
_SPACED = frozenset({"br", "li", "td", "th", "tr", "div", "p"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


@dataclass(frozen=True)
class Block:
    block_id: str
    text: str


def _is_hidden_variant(attrs: dict[str, str | None]) -> bool:
    """A hidden alternative of a ``switchinline`` (macOS keys, another module's wording).

    The help shows one variant by script; without it, the ``default…`` one is the text to keep.
    """
    return "hidden" in attrs and not (attrs.get("id") or "").startswith("default")


class _HelpPageParser(html.parser.HTMLParser):
    """Collect the flattened text of every element whose id is a help block id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []
        self._block_id: str | None = None  # the block being read
        self._stack: list[str] = []  # tags open inside the block, the block's own first
        self._skip_from: int | None = None  # stack depth where skipped content began
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if self._block_id is None:
            block_id = values.get("id") or ""
            if BLOCK_ID.match(block_id) and tag not in _VOID:
                self._block_id, self._stack, self._parts, self._skip_from = block_id, [tag], [], None
            return
        if tag in _SPACED:
            self._parts.append(" ")
        if tag in _VOID:
            return
        self._stack.append(tag)
        if self._skip_from is None and (tag in _SKIP_CONTENT or _is_hidden_variant(values)):
            self._skip_from = len(self._stack)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._block_id is not None and tag in _SPACED:
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self._block_id is None or tag not in self._stack:
            return  # outside a block, or a stray end tag
        while self._stack:  # close up to the matching tag (tolerates unclosed inline tags)
            closed = self._stack.pop()
            if self._skip_from is not None and len(self._stack) < self._skip_from:
                self._skip_from = None
            if closed == tag:
                break
        if tag in _SPACED:
            self._parts.append(" ")
        if not self._stack:
            self._finish()

    def handle_data(self, data: str) -> None:
        if self._block_id is not None and self._skip_from is None:
            self._parts.append(data)

    def _finish(self) -> None:
        assert self._block_id is not None
        self.blocks.append((self._block_id, "".join(self._parts)))
        self._block_id, self._stack, self._parts, self._skip_from = None, [], [], None

    def close(self) -> None:
        super().close()
        if self._block_id is not None:  # an unclosed block at the end of the page: keep what it had
            self._finish()


def parse_help_page(html_text: str) -> list[Block]:
    """The blocks of one page in document order, repeated ids numbered ``id.2``, ``id.3``…"""
    parser = _HelpPageParser()
    parser.feed(html_text)
    parser.close()
    seen: dict[str, int] = {}
    blocks = []
    for block_id, raw in parser.blocks:
        seen[block_id] = seen.get(block_id, 0) + 1
        unique = block_id if seen[block_id] == 1 else f"{block_id}.{seen[block_id]}"
        blocks.append(Block(unique, clean_text(raw)))
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
        blocks = parse_help_page(decode_utf8(path.read_bytes(), path, ctx.stats))
    except (OSError, AssertionError) as exc:
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
