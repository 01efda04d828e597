"""LibreOffice help extraction on help trees made like the real packages (dpkg-deb -x layout)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import config as pfconfig
from pipeline import schemas
from pipeline.arrow_io import read_schema, read_table
from pipeline.extract import extract_source
from pipeline.extract.libreoffice import help_module, parse_help_page

PAGE = """<!DOCTYPE html>
<html lang="{lang}" dir="ltr">
<head>
<base href="../../../">
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>{title}</title>
<script type="text/javascript" src="help.js" defer></script>
</head>
<body>
<header id="TopLeftHeader"><a class="logo" href="x"><p dir="auto">Help LibreOffice 7.4</p></a></header>
<div id="DisplayArea" itemprop="softwareHelp" itemscope="true">
<a name="bm_id3153539"></a>
{body}
</div>
</body>
</html>
"""

EN_BODY = """<h1 id="hd_id3155364" dir="auto">Find Toolbar</h1>
<p id="par_id3153990" class="paragraph" dir="auto"><span class="avis">Use the  Find toolbar
 to search.</span></p>
<p id="par_id3154894" class="paragraph" dir="auto">Key <span id="swlnsystextshared1" class="switchinline"><span hidden="true" id="MACtextshared1" class="MAC"><span class="keycode">Command</span></span><span hidden="true" id="defaulttextshared1"><span class="keycode">Ctrl</span></span></span><span class="keycode">+F</span></p>
<p id="par_idN1064A" class="paragraphintable" dir="auto"><img src="media/icon.svg" alt="Icon" style="width:38px"></p>
<p id="par_id111" class="paragraph" dir="auto">FIND()</p>
<div class="embedded"><h2 id="hd_id222" dir="auto">Close</h2></div>
<div class="embedded"><h2 id="hd_id222" dir="auto">Exit</h2></div>
<table><tr><td><p id="par_id333" class="paragraphintable" dir="auto">Cell &amp; <a href="x">link</a></p></td></tr></table>
"""

DE_BODY = """<h1 id="hd_id3155364" dir="auto">Symbolleiste Suchen</h1>
<p id="par_id3153990" class="paragraph" dir="auto"><span class="avis">Verwenden Sie die Symbolleiste Suchen.</span></p>
<p id="par_id3154894" class="paragraph" dir="auto">Taste <span id="swlnsystextshared1" class="switchinline"><span hidden="true" id="MACtextshared1" class="MAC"><span class="keycode">Befehl</span></span><span hidden="true" id="defaulttextshared1"><span class="keycode">Strg</span></span></span><span class="keycode">+F</span></p>
<p id="par_idN1064A" class="paragraphintable" dir="auto"><img src="media/icon.svg" alt="Symbol" style="width:38px"></p>
<p id="par_id111" class="paragraph" dir="auto">FIND()</p>
<div class="embedded"><h2 id="hd_id222" dir="auto">Schließen</h2></div>
<div class="embedded"><h2 id="hd_id222" dir="auto">Beenden</h2></div>
<table><tr><td><p id="par_id333" class="paragraphintable" dir="auto">Zelle &amp; <a href="x">Verweis</a></p></td></tr></table>
<p id="par_id999" class="paragraph" dir="auto">Nur auf Deutsch.</p>
"""

ZH_BODY = """<h1 id="hd_id3155364" dir="auto">查找工具栏</h1>
<p id="par_id3153990" class="paragraph" dir="auto">使用查找工具栏进行搜索。</p>
"""

SECOND_PAGE = {"en-US": '<h1 id="hd_id1" dir="auto">Sum</h1><p id="par_id2">Adds numbers.</p>',
               "de": '<h1 id="hd_id1" dir="auto">Summe</h1><p id="par_id2">Addiert Zahlen.</p>',
               "zh-CN": '<h1 id="hd_id1" dir="auto">求和</h1><p id="par_id2">数字相加。</p>',
               "fr": '<h1 id="hd_id1" dir="auto">Somme</h1>'}


def write_help(raw: Path, package: str, tag: str, pages: dict[str, str | bytes]) -> None:
    base = raw / package / "usr/share/libreoffice/help" / tag
    for rel, body in pages.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(PAGE.format(lang=tag, title="Help", body=body), encoding="utf-8")
    (base / "contents.js").write_text("var x;", encoding="utf-8")


@pytest.fixture()
def raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw" / "help"
    find, calc = "text/shared/find_toolbar.html", "text/scalc/01/func_sum.html"
    write_help(raw, "libreoffice-help-en-us", "en-US", {find: EN_BODY, calc: SECOND_PAGE["en-US"]})
    broken = PAGE.format(lang="de", title="x", body='<p id="par_id5">Gr\xfc\xdfe</p>').encode("latin-1")
    write_help(raw, "libreoffice-help-de", "de", {find: DE_BODY, calc: SECOND_PAGE["de"],
                                                  "text/swriter/empty.html": "<p>no ids here</p>",
                                                  "text/swriter/latin1.html": broken})
    write_help(raw, "libreoffice-help-zh-cn", "zh-CN", {find: ZH_BODY, calc: SECOND_PAGE["zh-CN"]})
    write_help(raw, "libreoffice-help-fr", "fr", {calc: SECOND_PAGE["fr"]})
    (raw / "libreoffice-help-en-us/usr/share/libreoffice/help/media/helpimg").mkdir(parents=True)
    return raw


def make_config(tmp_path: Path, **source) -> dict:
    return pfconfig.prepare({
        "output_dir": str(tmp_path / "out"),
        "languages": {"en": {}, "de": {}, "zh-cn": {}, "hi": {}},
        "sources": {"help": {"adapter": "deb", "packages": ["libreoffice-help-de"], "format": "libreoffice_help",
                             "role": "train", "licence": "MPL-2.0", **source}},
    })


def rows_by_id(path: Path) -> dict[str, dict]:
    return {row["row_id"]: row for row in read_table(path).to_pylist()}


def test_parse_flattens_inline_tags_and_keeps_the_default_variant():
    blocks = {b.block_id: b.text for b in parse_help_page(PAGE.format(lang="en-US", title="t", body=EN_BODY))}
    assert blocks["par_id3153990"] == "Use the Find toolbar to search."
    assert blocks["par_id3154894"] == "Key Ctrl+F"  # not "Command", the hidden macOS variant
    assert blocks["par_idN1064A"] == ""  # only an image
    assert blocks["hd_id222"] == "Close" and blocks["hd_id222.2"] == "Exit"  # repeated id, numbered
    assert blocks["par_id333"] == "Cell & link"
    assert "Help LibreOffice 7.4" not in blocks.values()  # header text has no block id


def test_help_module_is_the_first_folder_under_text():
    assert help_module("text/scalc/01/func_sum.html") == "scalc"
    assert help_module("text/shared/find_toolbar.html") == "shared"


def test_extract_writes_languages_pairs_and_stats(tmp_path: Path, raw_dir: Path):
    out = tmp_path / "out" / "extracted" / "help"
    stats = extract_source(make_config(tmp_path), "help", raw_dir, out)

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["en.arrow", "de.arrow", "zh-Hans.arrow", "en-de.arrow", "en-zh-Hans.arrow", "extract_stats.json"])
    assert read_schema(out / "de.arrow").equals(schemas.MONOLINGUAL)
    assert read_schema(out / "en-de.arrow").equals(schemas.PARALLEL)
    assert json.loads((out / "extract_stats.json").read_text()) == stats

    en, de, zh = (rows_by_id(out / f"{c}.arrow") for c in ("en", "de", "zh-Hans"))
    row = en["help/en/text/shared/find_toolbar.html/par_id3153990"]
    assert row["group"] == row["doc_id"] == "text/shared/find_toolbar.html"
    assert row["label"] == "shared" and row["lang"] == "en"
    assert de["help/de/text/scalc/01/func_sum.html/par_id2"]["label"] == "scalc"
    assert zh["help/zh-Hans/text/shared/find_toolbar.html/hd_id3155364"]["text"] == "查找工具栏"
    # the same group has the same split in every language
    splits = {(r["group"], r["split"]) for rows in (en, de, zh) for r in rows.values()}
    assert len({g for g, _ in splits}) == len(splits)

    pairs = read_table(out / "en-de.arrow").to_pylist()
    by_block = {p["row_id"].rsplit("/", 1)[1]: p for p in pairs}
    assert by_block["par_id3154894"]["src_text"] == "Key Ctrl+F"
    assert by_block["par_id3154894"]["tgt_text"] == "Taste Strg+F"
    assert by_block["hd_id222.2"]["tgt_text"] == "Beenden"
    assert "par_id111" not in by_block  # FIND() untranslated: no pair, still monolingual
    assert "help/de/text/shared/find_toolbar.html/par_id111" in de
    assert "par_id999" not in by_block  # only in German
    for p in pairs:
        assert p["src_row_id"] in en and p["tgt_row_id"] in de
        assert p["split"] == en[p["src_row_id"]]["split"] == de[p["tgt_row_id"]]["split"]

    assert stats["rows"] == {"de.arrow": len(de), "en.arrow": len(en), "zh-Hans.arrow": len(zh),
                             "en-de.arrow": len(pairs), "en-zh-Hans.arrow": 4}
    assert stats["dropped"]["identical"] == 1
    assert stats["dropped"]["unaligned"] == 1
    assert stats["dropped"]["empty"] == 2  # the icon-only paragraph in en and de
    assert stats["skipped"]["language_not_configured"] == 1 and "fr" in stats["skipped_languages"]
    assert stats["skipped"]["page_without_blocks"] == 1
    assert any("text/swriter/empty.html" in w for w in stats["warnings"])
    assert any("latin1.html" in w and "invalid UTF-8" in w for w in stats["warnings"])
    assert stats["dropped"]["undecodable_bytes"] == 2
    assert de["help/de/text/swriter/latin1.html/par_id5"]["text"] == "Gr\ufffd\ufffde"  # the rest is kept


def test_max_docs_keeps_the_first_sorted_pages_in_every_language(tmp_path: Path, raw_dir: Path):
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path, max_docs=1), "help", raw_dir, out)
    for code in ("en", "de", "zh-Hans"):
        assert {r["doc_id"] for r in read_table(out / f"{code}.arrow").to_pylist()} == {"text/scalc/01/func_sum.html"}
    assert stats["docs"] == {"de": 1, "en": 1, "zh-Hans": 1}
    assert stats["skipped"]["max_docs"] == 1 + 3 + 1


def test_languages_key_restricts_the_source(tmp_path: Path, raw_dir: Path):
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path, languages=["en", "de"]), "help", raw_dir, out)
    assert set(stats["rows"]) == {"en.arrow", "de.arrow", "en-de.arrow"}


def test_output_is_byte_identical_across_runs(tmp_path: Path, raw_dir: Path):
    cfg = make_config(tmp_path)
    first, second = tmp_path / "a", tmp_path / "b"
    extract_source(cfg, "help", raw_dir, first)
    extract_source(cfg, "help", raw_dir, second)
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_rerun_replaces_the_folder_whole(tmp_path: Path, raw_dir: Path):
    out = tmp_path / "extracted"
    extract_source(make_config(tmp_path), "help", raw_dir, out)
    assert (out / "zh-Hans.arrow").exists()
    extract_source(make_config(tmp_path, languages=["en", "de"]), "help", raw_dir, out)
    assert not (out / "zh-Hans.arrow").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
