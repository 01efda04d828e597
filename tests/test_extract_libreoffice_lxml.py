"""The lxml reader of LibreOffice help pages gives the same blocks as the stdlib html.parser one.

On the fixtures of tests/test_extract_libreoffice.py, on hand-made pages with the odd markup a
reader must survive, and on every real help page of the tiny run (three full help packages).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.extract.libreoffice import HELP_ROOT, parse_help_page, parse_help_page_stdlib
from tests.test_extract_libreoffice import DE_BODY, EN_BODY, PAGE, SECOND_PAGE, ZH_BODY

ODD_BODIES = {
    "comment and processing instruction": '<p id="par_id1">a<!-- hidden -->b<?pi x?>c</p>',
    "script and style inside a block": '<p id="par_id1">a<script>var x = "<b>";</script>b<style>p{}</style>c</p>',
    "hidden variant holding a line break": '<p id="par_id1">a<span hidden="true" id="MAC1">x<br>y</span>b</p>',
    "bare hidden attribute": '<p id="par_id1">a<span hidden>x</span><span hidden id="default1">y</span></p>',
    "nested block id is text": '<div id="par_id1">a<p id="par_id2">b</p>c</div><p id="par_id2">d</p>',
    "spaced tags": '<p id="par_id1">a<br>b<br/>c</p><ul id="par_id3"><li>x</li><li>y</li></ul>',
    "table cells": '<table id="par_id1"><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>',
    "unclosed inline tags": '<p id="par_id1">a <b>bold <i>both</p><p id="par_id2">next</p>',
    "stray end tags": '<p id="par_id1">a</span></b>b</p></i><p id="par_id2">c</p>',
    "void element with a block id": '<p>x<img id="par_id1" src="a.png">y</p><p id="par_id2">z</p>',
    "entities": '<p id="par_id1">&amp; &lt;x&gt; &quot;q&quot; &#233; &#x4E2D; &nbsp;|&copy;</p>',
    "N ids and others": '<p id="N10546">n</p><p id="bm_id1">not a block</p><p id="hd_id_x">h</p>',
    "whitespace only between inline tags": '<p id="par_id1"><span>a</span> <span>b</span>\n<a>c</a></p>',
    "repeated ids in a row": '<h2 id="hd_id1">A</h2><h2 id="hd_id1">B</h2><h2 id="hd_id1">C</h2>',
    "empty and image-only blocks": '<p id="par_id1"></p><p id="par_id2"><img src="x.png" alt="Icon"></p>',
    "unicode to normalize": '<p id="par_id1">Cafe\u0301 \u3000 x\u00a0y</p>',
    "noscript in a block": '<p id="par_id1">a<noscript>enable JS</noscript>b</p>',
}


def _page(body: str, lang: str = "en-US") -> str:
    return PAGE.format(lang=lang, title="t", body=body)


FIXTURE_PAGES = {
    "en body": _page(EN_BODY), "de body": _page(DE_BODY, "de"), "zh body": _page(ZH_BODY, "zh-CN"),
    **{f"second page {tag}": _page(body, tag) for tag, body in SECOND_PAGE.items()},
    "no ids": _page("<p>no ids here</p>"), "empty file": "", "blanks only": " \n ",
    "latin-1 bytes decoded with replacement": _page('<p id="par_id5">Gr\ufffd\ufffde</p>', "de"),
    "unclosed block at the end": '<p id="par_id1">a <b>b',
    **{name: _page(body) for name, body in ODD_BODIES.items()},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FIXTURE_PAGES))
def test_lxml_reader_matches_the_stdlib_reader_on_fixtures(name: str) -> None:
    html_text = FIXTURE_PAGES[name]
    assert parse_help_page(html_text) == parse_help_page_stdlib(html_text)


@pytest.mark.workflow
@pytest.mark.network
@pytest.mark.slow
def test_lxml_reader_matches_the_stdlib_reader_on_every_real_page(tiny_run: Path) -> None:
    pages = sorted((tiny_run / "raw" / "libreoffice_help").glob(f"*/{HELP_ROOT}/*/text/**/*.html"))
    assert len(pages) > 5000  # three whole help packages (max_docs caps only what the run extracts)
    differing = []
    for path in pages:
        html_text = path.read_bytes().decode("utf-8", errors="replace")
        if parse_help_page(html_text) != parse_help_page_stdlib(html_text):
            differing.append(path.relative_to(tiny_run).as_posix())
    assert not differing, f"{len(differing)} page(s) read differently, e.g. {differing[:5]}"
