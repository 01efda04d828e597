"""gettext extraction on real .mo/.po catalogs written with polib."""

from __future__ import annotations

from pathlib import Path

import polib
import pytest

from pipeline import config as pfconfig
from pipeline.arrow_io import read_table
from pipeline.extract import extract_source
from pipeline.extract.gettext import message_key, strip_accelerators


def catalog(entries: list[polib.POEntry], language: str) -> polib.POFile:
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": language,
                   "Plural-Forms": "nplurals=2; plural=(n != 1);"}
    po.extend(entries)
    return po


def german() -> list[polib.POEntry]:
    return [
        polib.POEntry(msgid="_Open", msgstr="Ö_ffnen"),
        polib.POEntry(msgctxt="menu", msgid="File", msgstr="Datei"),
        polib.POEntry(msgctxt="noun", msgid="File", msgstr="Akte"),
        polib.POEntry(msgid="%d file selected", msgid_plural="%d files selected",
                      msgstr_plural={0: "%d Datei ausgewählt", 1: "%d Dateien ausgewählt"}),
        polib.POEntry(msgid="%s item", msgid_plural="%s item", msgstr_plural={0: "%s Objekt", 1: "%s Objekt"}),
        polib.POEntry(msgid="OK", msgstr="OK"),
        polib.POEntry(msgid="Not translated", msgstr=""),
    ]


def write_mo(path: Path, entries: list[polib.POEntry], language: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog(entries, language).save_as_mofile(str(path))


@pytest.fixture()
def raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw" / "gettext"
    locale = raw / "libgtk-3-common" / "usr/share/locale"
    write_mo(locale / "de/LC_MESSAGES/gtk30.mo", german(), "de")
    write_mo(locale / "de_CH/LC_MESSAGES/gtk30.mo", german(), "de_CH")  # a variant of de: not read
    write_mo(locale / "zh_CN/LC_MESSAGES/gtk30.mo", [polib.POEntry(msgid="_Open", msgstr="打开(_O)")], "zh_CN")
    write_mo(locale / "sr@latin/LC_MESSAGES/gtk30.mo", [polib.POEntry(msgid="_Open", msgstr="_Otvori")], "sr@latin")
    write_mo(locale / "en_GB/LC_MESSAGES/gtk30.mo", [polib.POEntry(msgid="Color", msgstr="Colour")], "en_GB")
    write_mo(locale / "fr/LC_MESSAGES/gtk30.mo", [polib.POEntry(msgid="_Open", msgstr="_Ouvrir")], "fr")
    bad = locale / "hi/LC_MESSAGES/gtk30.mo"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xde\x12\x04\x95 truncated")
    po = catalog([polib.POEntry(msgid="Quit", msgstr="Beenden"), polib.POEntry(msgid="Print", msgstr=""),
                  polib.POEntry(msgid="Save", msgstr="Speichern", flags=["fuzzy"])], "de")
    po_path = raw / "glib-src" / "usr/share/locale/de/LC_MESSAGES/glib20.po"
    po_path.parent.mkdir(parents=True)
    po.save(str(po_path))
    return raw


def make_config(tmp_path: Path, languages=("en", "de", "hi", "zh_CN", "sr@latin")) -> dict:
    return pfconfig.prepare({
        "output_dir": str(tmp_path / "out"),
        "languages": {code: {} for code in languages},
        "sources": {"gettext": {"adapter": "deb", "packages": ["libgtk-3-common"], "format": "gettext",
                                "role": "train", "licence": "LGPL-2.1-or-later"}},
    })


def test_strip_accelerators():
    assert strip_accelerators("_Open") == "Open"
    assert strip_accelerators("Save _As…") == "Save As…"
    assert strip_accelerators("&File") == "File"
    assert strip_accelerators("Find && Replace") == "Find & Replace"
    assert strip_accelerators("打开(_O)") == "打开"
    assert strip_accelerators("%s_%d") == "%s_%d"
    assert strip_accelerators("a__b") == "a_b"
    assert strip_accelerators("Be_fore:") == "Before:"
    assert strip_accelerators("Ö_ffnen") == "Öffnen"
    assert strip_accelerators("Sa&ve &As") == "Save &As"  # one mnemonic per string
    assert strip_accelerators("Tom & Jerry &amp; co") == "Tom & Jerry &amp; co"
    assert strip_accelerators("Set GDK_DEBUG or child_displacement_x") == "Set GDK_DEBUG or child_displacement_x"


def test_extract_pairs_monolingual_and_counts(tmp_path: Path, raw_dir: Path):
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path), "gettext", raw_dir, out)
    assert set(stats["rows"]) == {"en.arrow", "de.arrow", "zh-Hans.arrow", "sr-Latn.arrow",
                                  "en-de.arrow", "en-zh-Hans.arrow", "en-sr-Latn.arrow"}

    pairs = {(p["src_text"], p["tgt_text"]) for p in read_table(out / "en-de.arrow").to_pylist()}
    assert pairs == {
        ("Open", "Öffnen"), ("File", "Datei"), ("File", "Akte"),
        ("%d file selected", "%d Datei ausgewählt"), ("%d files selected", "%d Dateien ausgewählt"),
        ("%s item", "%s Objekt"), ("Quit", "Beenden"),
    }
    zh = read_table(out / "en-zh-Hans.arrow").to_pylist()
    assert [(p["src_text"], p["tgt_text"]) for p in zh] == [("Open", "打开")]
    assert [p["tgt_text"] for p in read_table(out / "en-sr-Latn.arrow").to_pylist()] == ["Otvori"]

    en = read_table(out / "en.arrow").to_pylist()
    en_gtk = [r["text"] for r in en if r["doc_id"] == "gtk30"]
    assert sorted(en_gtk) == sorted(set(en_gtk))  # once per (domain, msgid): "File" has two contexts
    assert "File" in en_gtk and "Colour" not in {r["text"] for r in en}
    de = read_table(out / "de.arrow").to_pylist()
    assert "OK" in {r["text"] for r in de}  # identical: no pair, still a German row

    # groups are the msgid; the same msgid has the same group and split in every language and pair
    by_id = {r["row_id"]: r for r in en + de + read_table(out / "zh-Hans.arrow").to_pylist()}
    key = message_key(None, "Open")
    assert by_id[f"gettext/de/gtk30/{key}"]["group"] == by_id[f"gettext/zh-Hans/gtk30/{key}"]["group"] == "Open"
    assert by_id[f"gettext/de/gtk30/{key}"]["split"] == by_id[f"gettext/zh-Hans/gtk30/{key}"]["split"]
    plural = [r for r in de if r["text"].startswith("%d ")]
    assert {r["group"] for r in plural} == {"%d file selected"} and len(plural) == 2
    for p in read_table(out / "en-de.arrow").to_pylist():
        assert by_id[p["src_row_id"]]["split"] == by_id[p["tgt_row_id"]]["split"] == p["split"]

    assert stats["dropped"]["identical"] == 1
    assert stats["dropped"]["untranslated"] == 1  # "Print" in the .po (a .mo holds no untranslated entry)
    assert stats["dropped"]["fuzzy"] == 1
    assert stats["dropped"]["duplicate_plural_form"] == 1  # "%s item" twice with the same translation
    assert stats["skipped"]["variant_of_chosen_language"] == 1  # de_CH
    assert stats["skipped"]["pivot_locale_catalog"] == 1  # en_GB
    assert stats["skipped"]["language_not_configured"] == 1  # fr
    assert stats["skipped"]["malformed_catalog"] == 1
    assert any("hi/LC_MESSAGES/gtk30.mo" in w and "malformed" in w for w in stats["warnings"])
    assert "hi.arrow" not in stats["rows"]


def test_without_pivot_only_monolingual_rows(tmp_path: Path, raw_dir: Path):
    cfg = make_config(tmp_path)
    cfg["sources"]["gettext"]["languages"] = ["de"]
    stats = extract_source(cfg, "gettext", raw_dir, tmp_path / "extracted")
    assert set(stats["rows"]) == {"de.arrow"}


def test_max_docs_caps_catalog_domains(tmp_path: Path, raw_dir: Path):
    cfg = make_config(tmp_path)
    cfg["sources"]["gettext"]["max_docs"] = 1
    out = tmp_path / "extracted"
    stats = extract_source(cfg, "gettext", raw_dir, out)
    assert {r["doc_id"] for r in read_table(out / "de.arrow").to_pylist()} == {"gtk30"}  # first by stable hash, not by name
    assert stats["skipped"]["max_docs"] == 1
