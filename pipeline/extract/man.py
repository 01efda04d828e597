"""Man pages: groff source rendered to plain text, one row per paragraph.

Pages sit at ``usr/share/man/{locale}/man{N}/{page}.{N}[.gz]`` (English at ``usr/share/man/manN``).
Each page is rendered with groff, wide and without hyphenation, colour or overstrike, so a
paragraph's lines join back with spaces; the header and footer lines are dropped; a paragraph ends
at a blank line, and an unindented line (a section heading) is a paragraph of its own.
``.so`` redirect pages and symlinks are aliases of another page: skipped, counted.
The document and split group is the page name (``ls.1``), the same in every language; the label
is the manual section (``1`` commands, ``2`` system calls, ``3`` library…).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.extract.common import (
    OutputSet,
    SourceContext,
    choose_variants,
    clean_text,
    ordered_map,
    package_dirs,
)

MAN_ROOT = "usr/share/man"
GROFF_COMMAND = ["groff", "-man", "-t", "-Tutf8", "-P-cbou", "-rLL=200n", "-rHY=0", "-K", "utf8"]
RENDER_TIMEOUT_S = 120
_SECTION_DIR = re.compile(r"^man(\d\w*)$")
_PAGE_NAME = re.compile(r"^(?P<name>.+\.(?P<section>\d)\w*?)(?:\.(?:gz|bz2|xz))?$")
_OPENERS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}


@dataclass(frozen=True)
class ManPage:
    path: Path
    name: str  # ls.1
    section: str  # 1
    locale: str  # de, pt_BR, or "en" for the untranslated tree


@dataclass(frozen=True)
class Rendered:
    page: ManPage
    paragraphs: list[str]
    error: str | None = None
    redirect: bool = False
    decode_errors: int = 0


def find_pages(raw_dir: Path) -> list[ManPage]:
    """Every page under the man trees of raw_dir (regular files only: symlinks are aliases)."""
    pages = []
    for root in package_dirs(raw_dir, MAN_ROOT):
        man_root = root / MAN_ROOT
        for section_dir in sorted(man_root.glob("man*")) + sorted(man_root.glob("*/man*")):
            if not section_dir.is_dir() or not _SECTION_DIR.match(section_dir.name):
                continue
            locale = "en" if section_dir.parent == man_root else section_dir.parent.name
            for path in sorted(section_dir.iterdir()):
                match = _PAGE_NAME.match(path.name)
                if match and path.is_file() and not path.is_symlink():
                    pages.append(ManPage(path, match["name"], match["section"], locale))
    return pages


def read_source(path: Path) -> bytes:
    data = path.read_bytes()
    opener = _OPENERS.get(path.suffix)
    return opener(data) if opener else data


def is_redirect(source: bytes) -> bool:
    """A page whose first request is ``.so other/page.N`` only includes another page."""
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith((b'.\\"', b"'\\\"")):
            continue
        return stripped.startswith(b".so ")
    return False


def render_page(page: ManPage) -> Rendered:
    """Render one page with groff and split it into paragraphs (runs in a worker thread)."""
    try:
        source = read_source(page.path)
    except (OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
        return Rendered(page, [], error=f"unreadable page: {exc}")
    if is_redirect(source):
        return Rendered(page, [], redirect=True)
    try:
        proc = subprocess.run(GROFF_COMMAND, input=source, capture_output=True, timeout=RENDER_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Rendered(page, [], error=f"groff failed: {exc}")
    if proc.returncode != 0 and not proc.stdout:
        return Rendered(page, [], error=f"groff exit {proc.returncode}: {proc.stderr.decode(errors='replace')[:200]}")
    text = proc.stdout.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - proc.stdout.count("\ufffd".encode())
    return Rendered(page, split_paragraphs(text), decode_errors=bad)


def split_paragraphs(rendered: str) -> list[str]:
    """Paragraphs of groff's text output, without the page header and footer lines."""
    lines = rendered.splitlines()
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if len(nonblank) >= 2:  # the first and last lines are the running header and footer
        lines = lines[nonblank[0] + 1 : nonblank[-1]]
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        text = clean_text(" ".join(current))
        if text:
            paragraphs.append(text)
        current.clear()

    for line in lines:
        if not line.strip():
            flush()
        elif not line[0].isspace():  # unindented: a section heading, a paragraph of its own
            flush()
            current.append(line)
            flush()
        else:
            current.append(line)
    flush()
    return paragraphs


def choose_pages(ctx: SourceContext, pages: list[ManPage]) -> dict[str, dict[str, ManPage]]:
    """Canonical code → page name → page: one locale per language, the first package's page."""
    by_code: dict[str, dict[str, dict[str, ManPage]]] = {}
    for page in pages:
        code = ctx.language_of(page.locale, page.path)
        if code is None:
            continue
        per_locale = by_code.setdefault(code, {}).setdefault(page.locale, {})
        if page.name in per_locale:
            ctx.stats.skip("duplicate_page")
            continue
        per_locale[page.name] = page
    chosen: dict[str, dict[str, ManPage]] = {}
    locales = choose_variants({code: list(per) for code, per in by_code.items()}, ctx.stats, "man locale")
    for code, locale in locales.items():
        pages_of_locale = {name: page for name, page in by_code[code][locale].items() if not _skip_redirect(ctx, page)}
        chosen[code] = {name: pages_of_locale[name] for name in ctx.cap_docs(code, pages_of_locale)}
    return chosen


def _skip_redirect(ctx: SourceContext, page: ManPage) -> bool:
    """True (counted) for a ``.so`` page, so that max_docs counts real pages only."""
    try:
        redirect = is_redirect(read_source(page.path))
    except (OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile):
        return False  # render_page reports it
    if redirect:
        ctx.stats.skip("so_redirect")
    return redirect


def extract(ctx: SourceContext, raw_dir: Path, out: OutputSet, threads: int = 1) -> None:
    chosen = choose_pages(ctx, find_pages(raw_dir))
    if not chosen:
        ctx.stats.warn(raw_dir, f"no man page ({MAN_ROOT}/[<locale>/]man<N>/) of a configured language")
        return
    work = [(code, chosen[code][name]) for code in sorted(chosen) for name in sorted(chosen[code])]
    results = ordered_map(render_page, (page for _, page in work), threads, window=threads * 8)
    for (code, _), rendered in tqdm(zip(work, results, strict=True), total=len(work), desc=f"extract {ctx.name}",
                                    unit="page", leave=False):
        _write_page(ctx, out, code, rendered)


def _write_page(ctx: SourceContext, out: OutputSet, code: str, rendered: Rendered) -> None:
    page = rendered.page
    if rendered.redirect:
        ctx.stats.skip("so_redirect")
        return
    if rendered.error:
        ctx.stats.warn(page.path, rendered.error)
        ctx.stats.skip("render_failed")
        return
    if rendered.decode_errors:
        ctx.stats.drop("undecodable_bytes", rendered.decode_errors)
        ctx.stats.warn(page.path, f"{rendered.decode_errors} undecodable byte sequence(s) in groff output, replaced")
    if not rendered.paragraphs:
        ctx.stats.warn(page.path, "rendered to no text")
        ctx.stats.skip("empty_page")
    for index, text in enumerate(rendered.paragraphs):
        out.write_mono(ctx.mono_row(code, page.name, str(index), page.name, text, page.section))
