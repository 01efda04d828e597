"""How the lxml reader of LibreOffice help pages reads odd markup.

The expected blocks below are what the stdlib ``html.parser`` reader it replaced gave: before that
reader was removed, both were compared on these pages, on the fixtures of
tests/test_extract_libreoffice.py and on every page of the tiny run's three whole help packages
(7,683 pages), with no difference.  The last test pins where they part: markup that HTML's own
rules restructure, which the help pages do not have.
"""

from __future__ import annotations

import pytest

from pipeline.extract.libreoffice import parse_help_page
from tests.test_extract_libreoffice import PAGE

ODD_BODIES = {
    "comment and processing instruction": (
        '<p id="par_id1">a<!-- hidden -->b<?pi x?>c</p>', [("par_id1", "abc")]),
    "script and style inside a block": (
        '<p id="par_id1">a<script>var x = "<b>";</script>b<style>p{}</style>c</p>', [("par_id1", "abc")]),
    "hidden variant holding a line break": (
        '<p id="par_id1">a<span hidden="true" id="MAC1">x<br>y</span>b</p>', [("par_id1", "a b")]),
    "bare hidden attribute": (
        '<p id="par_id1">a<span hidden>x</span><span hidden id="default1">y</span></p>', [("par_id1", "ay")]),
    "nested block id is text": (
        '<div id="par_id1">a<p id="par_id2">b</p>c</div><p id="par_id2">d</p>',
        [("par_id1", "a b c"), ("par_id2", "d")]),
    "spaced tags": (
        '<p id="par_id1">a<br>b<br/>c</p><ul id="par_id3"><li>x</li><li>y</li></ul>',
        [("par_id1", "a b c"), ("par_id3", "x y")]),
    "table cells": (
        '<table id="par_id1"><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>', [("par_id1", "a b c")]),
    "unclosed inline tags": (
        '<p id="par_id1">a <b>bold <i>both</p><p id="par_id2">next</p>',
        [("par_id1", "a bold both"), ("par_id2", "next")]),
    "stray end tags": (
        '<p id="par_id1">a</span></b>b</p></i><p id="par_id2">c</p>', [("par_id1", "ab"), ("par_id2", "c")]),
    "void element with a block id": (
        '<p>x<img id="par_id1" src="a.png">y</p><p id="par_id2">z</p>', [("par_id2", "z")]),
    "entities": (
        '<p id="par_id1">&amp; &lt;x&gt; &quot;q&quot; &#233; &#x4E2D; &nbsp;|&copy;</p>',
        [("par_id1", '& <x> "q" é 中 |©')]),
    "N ids and others": (
        '<p id="N10546">n</p><p id="bm_id1">not a block</p><p id="hd_id_x">h</p>',
        [("N10546", "n"), ("hd_id_x", "h")]),
    "whitespace only between inline tags": (
        '<p id="par_id1"><span>a</span> <span>b</span>\n<a>c</a></p>', [("par_id1", "a b c")]),
    "repeated ids in a row": (
        '<h2 id="hd_id1">A</h2><h2 id="hd_id1">B</h2><h2 id="hd_id1">C</h2>',
        [("hd_id1", "A"), ("hd_id1.2", "B"), ("hd_id1.3", "C")]),
    "empty and image-only blocks": (
        '<p id="par_id1"></p><p id="par_id2"><img src="x.png" alt="Icon"></p>', [("par_id1", ""), ("par_id2", "")]),
    "unicode to normalize": ('<p id="par_id1">Cafe\u0301 \u3000 x\u00a0y</p>', [("par_id1", "Café x y")]),
    "noscript in a block": ('<p id="par_id1">a<noscript>enable JS</noscript>b</p>', [("par_id1", "ab")]),
}  # fmt: skip


def _page(body: str) -> str:
    return PAGE.format(lang="en-US", title="t", body=body)


@pytest.mark.parametrize("name", sorted(ODD_BODIES))
def test_odd_markup(name: str) -> None:
    body, expected = ODD_BODIES[name]
    assert [tuple(b) for b in parse_help_page(_page(body))] == expected


def test_pages_that_are_not_the_help_template() -> None:
    assert parse_help_page("") == parse_help_page(" \n ") == parse_help_page("<!-- only -->") == []
    assert [tuple(b) for b in parse_help_page('<p id="par_id1">a <b>b')] == [("par_id1", "a b")]  # unclosed
    assert [tuple(b) for b in parse_help_page('<html id="par_id1"><body>a</body></html>')] == [("par_id1", "a")]


def test_a_block_before_the_content_area_is_kept() -> None:
    """Pages are parsed from <div id="DisplayArea"> on, unless something before it looks like a block."""
    page = _page('<p id="par_id2">body</p>')
    header = page.replace('<header id="TopLeftHeader">', '<header id="TopLeftHeader"><p id="par_id1">top</p>')
    assert [b.block_id for b in parse_help_page(page)] == ["par_id2"]
    assert [tuple(b) for b in parse_help_page(header)] == [("par_id1", "top"), ("par_id2", "body")]
    in_comment = page.replace("<head>", '<head><!-- <p id="par_id9">x</p> -->')  # parsed whole: same blocks
    assert parse_help_page(in_comment) == parse_help_page(page)


@pytest.mark.parametrize("element", ['<h1 id="hd_id1">top</h1>', "<p ID = 'N12'>top</p>", "<p id=par_id1>top</p>"])
def test_every_kind_of_block_id_before_the_content_area_is_kept(element: str) -> None:
    """The quick scans that rule out a block before the content area see hd_, par_ and N-digit ids alike."""
    header = _page('<p id="par_id2">body</p>').replace('<header id="TopLeftHeader">', f'<header id="x">{element}')
    assert [b.text for b in parse_help_page(header)] == ["top", "body"]


def test_where_html_rules_restructure_a_block() -> None:
    """A block-level element inside a <p> ends it (HTML's rule, and libxml2's); html.parser kept it open."""
    cases = {
        '<p id="par_id1">a<div>b</div>c</p><p id="par_id2">d</p>': [("par_id1", "a"), ("par_id2", "d")],
        '<p id="par_id1">a<table><tr><td>b</td></tr></table>c</p>': [("par_id1", "a")],
        '<p id="par_id1">a<p>b</p>c</p>': [("par_id1", "a")],
        '<a id="par_id1">x<a>y</a>z</a>': [("par_id1", "x")],
    }
    for body, expected in cases.items():
        assert [tuple(b) for b in parse_help_page(_page(body))] == expected, body
