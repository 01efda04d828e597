"""What every extractor shares: text cleaning and the output writers."""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from pipeline import config as pfconfig
from pipeline.extract.common import OutputSet, SourceContext, clean_text

EVERY_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def test_clean_text_folds_every_unicode_space_as_the_regex_did() -> None:
    """str.split() is the folding; it must fold exactly what re's \\s+ folded, NEL and U+3000 included."""
    texts = [f"{EVERY_SPACE}a{c}b {c}{c}c{c}" for c in EVERY_SPACE] + ["x\u200by", "Cafe\u0301\n\nau\u00a0lait", ""]
    for text in texts:
        expected = re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()
        assert clean_text(text) == expected
    assert clean_text(" Cafe\u0301 \u2028 au\u3000lait\x85") == "Café au lait"
    assert clean_text("x\u200by") == "x\u200by"  # zero-width space is not a space


def _context() -> SourceContext:
    cfg = pfconfig.prepare({
        "languages": {"en": {}, "de": {}, "fr": {}},
        "sources": {"s": {"adapter": "local", "path": ".", "format": "text", "role": "train", "licence": "-",
                          "languages": ["en", "de"]}},
    })  # fmt: skip
    return SourceContext(cfg, "s")


def test_output_set_writes_rows_to_their_language_and_pair(tmp_path: Path) -> None:
    ctx = _context()
    with OutputSet(tmp_path, ctx) as out:
        rows = {lang: [ctx.mono_row(lang, "d", str(i), "d", f"{lang} {i}") for i in range(3)] for lang in ("en", "de")}
        for en, de in zip(rows["en"], rows["de"], strict=True):
            out.write_mono(en)
            out.write_mono(de)
            out.write_pair(ctx.pair_row(en, de, "b"))
    assert out.rows() == {"en.arrow": 3, "de.arrow": 3, "en-de.arrow": 3}
    with ipc.open_file(str(tmp_path / "de.arrow")) as reader:
        assert reader.read_all().column("text").to_pylist() == ["de 0", "de 1", "de 2"]
    with ipc.open_file(str(tmp_path / "en-de.arrow")) as reader:
        assert reader.read_all().column("tgt_text").to_pylist() == ["de 0", "de 1", "de 2"]


def test_a_pair_that_is_not_configured_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    ctx = _context()
    out = OutputSet(tmp_path, ctx)
    en, fr = ctx.mono_row("en", "d", "1", "d", "a"), ctx.mono_row("fr", "d", "1", "d", "b")
    with pytest.raises(ValueError, match="en-fr is not one of the configured pairs"):
        out.write_pair(ctx.pair_row(en, fr, "1"))
    with pytest.raises(ValueError, match="en-fr"):  # asked again: still refused, not a cached writer
        out.write_pair(ctx.pair_row(en, fr, "1"))
    out.close()
    assert not list(tmp_path.iterdir())
