"""Man page extraction: groff sources rendered by the real groff, split into paragraphs."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from pipeline import config as pfconfig
from pipeline.arrow_io import read_table
from pipeline.extract import extract_source
from pipeline.extract.man import split_paragraphs

pytestmark = pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (system-deps.sh)")

LONG = " ".join(["Sehr lange Beschreibung mit ausführlichen Worterklärungen"] * 12)

EN_PAGE = r""".\" Comment line
.TH FROB 1 2024-01-01 "frob 1.0" "User Commands"
.SH NAME
frob \- frobnicate files
.SH DESCRIPTION
.B frob
frobnicates each
.I FILE
in place.
.PP
A second paragraph.
.TP
.B \-v
be verbose
"""

DE_PAGE = rf""".TH FROB 1 2024-01-01 "frob 1.0" "Dienstprogramme"
.SH BEZEICHNUNG
frob \- Dateien frobnizieren
.SH BESCHREIBUNG
{LONG}
.PP
Zweiter Absatz mit Umlauten: äöü ß.
"""


def write(path: Path, text: str, compress: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)


@pytest.fixture()
def raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw" / "manpages"
    write(raw / "manpages/usr/share/man/man1/frob.1", EN_PAGE)
    write(raw / "manpages/usr/share/man/man1/frobnicate.1", ".so man1/frob.1\n")
    write(raw / "manpages-de/usr/share/man/de/man1/frob.1", DE_PAGE)
    write(raw / "manpages-de/usr/share/man/de/man1/zap.1", DE_PAGE.replace("FROB", "ZAP"), compress=False)
    (raw / "manpages-de/usr/share/man/de/man1/frob-alias.1.gz").symlink_to("frob.1.gz")
    write(raw / "manpages-fr/usr/share/man/fr/man1/frob.1", EN_PAGE)
    return raw


def make_config(tmp_path: Path, **source) -> dict:
    return pfconfig.prepare({
        "output_dir": str(tmp_path / "out"),
        "languages": {"en": {}, "de": {}},
        "sources": {"manpages": {"adapter": "deb", "packages": ["manpages"], "format": "man", "role": "train",
                                 "licence": "GPL", **source}},
    })


def test_split_paragraphs_drops_header_footer_and_separates_headings():
    rendered = "FROB(1)        User Commands        FROB(1)\n\nNAME\n       frob - x\n\nDESCRIPTION\n" \
               "       one\n       line\n\n       two\n\nfrob 1.0        2024        FROB(1)\n"
    assert split_paragraphs(rendered) == ["NAME", "frob - x", "DESCRIPTION", "one line", "two"]


@pytest.mark.parametrize("threads", [1, 3])
def test_extract_renders_pages_into_paragraph_rows(tmp_path: Path, raw_dir: Path, threads: int):
    out = tmp_path / f"extracted{threads}"
    stats = extract_source(make_config(tmp_path), "manpages", raw_dir, out, threads=threads)
    en = read_table(out / "en.arrow").to_pylist()
    de = read_table(out / "de.arrow").to_pylist()

    assert [r["text"] for r in en] == ["NAME", "frob - frobnicate files", "DESCRIPTION",
                                       "frob frobnicates each FILE in place.", "A second paragraph.",
                                       "-v be verbose"]
    assert [r["row_id"] for r in en[:2]] == ["manpages/en/frob.1/0", "manpages/en/frob.1/1"]
    frob_de = [r for r in de if r["doc_id"] == "frob.1"]
    assert frob_de[3]["text"] == LONG  # wide rendering, no hyphenation: wrapped lines join back exactly
    assert frob_de[4]["text"] == "Zweiter Absatz mit Umlauten: äöü ß."
    assert {r["doc_id"] for r in de} == {"frob.1", "zap.1"}
    assert all("\n" not in r["text"] for r in en + de)
    # the page name is the group in every language, with one split
    assert {r["group"] for r in frob_de} == {r["group"] for r in en} == {"frob.1"}
    assert len({r["split"] for r in en + frob_de}) == 1
    assert {r["label"] for r in en + de} == {"1"}

    assert stats["skipped"]["so_redirect"] == 1
    assert stats["skipped"]["language_not_configured"] == 1  # fr
    assert stats["docs"] == {"de": 2, "en": 1}
    assert set(stats["rows"]) == {"en.arrow", "de.arrow"}  # man pages give no pairs


def test_same_output_whatever_the_threads(tmp_path: Path, raw_dir: Path):
    extract_source(make_config(tmp_path), "manpages", raw_dir, tmp_path / "a", threads=1)
    extract_source(make_config(tmp_path), "manpages", raw_dir, tmp_path / "b", threads=4)
    for name in ("en.arrow", "de.arrow", "extract_stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_max_docs_and_broken_page(tmp_path: Path, raw_dir: Path):
    bad = raw_dir / "manpages-de/usr/share/man/de/man1/aaa.1.gz"
    bad.write_bytes(b"not gzip at all")
    stats = extract_source(make_config(tmp_path, max_docs=2), "manpages", raw_dir, tmp_path / "x")
    assert stats["skipped"]["max_docs"] == 1  # de: aaa.1, frob.1 kept; zap.1 over the cap
    assert stats["skipped"]["render_failed"] == 1
    assert any("aaa.1.gz" in w for w in stats["warnings"])
    de = read_table(tmp_path / "x" / "de.arrow").to_pylist()
    assert {r["doc_id"] for r in de} == {"frob.1"}
