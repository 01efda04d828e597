"""FreeDict extraction: entries quoted verbatim from the Debian packages, a hand-built dictionary, and
(network) the real ``dict-freedict-eng-spa`` package with pairs checked by reading its raw text."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from pipeline import config as pfconfig
from pipeline.archives import extract_deb
from pipeline.arrow_io import read_table
from pipeline.extract import extract_source
from pipeline.extract import freedict as fd

SPA_PACKAGE = "dict-freedict-eng-spa=2022.04.21-1"  # pinned: the expected pairs below are from this version

# Verbatim entries (dictd text between two index offsets) from the 2022 Debian packages.
JPN_WATER = """water //ˈwoːtə// //ˈwætəɹ// /[ˈwæɾɚ]/ <n>
水, みず 2.
clear liquid H₂O
 3.
one of the basic elements
"""
HIN_A_FEW = """a few /ɐ fjˈuː/ <Det>
1. कुछ
      "Only a few students of this class can expect to get first division in their examination results."
2.  In the party only a few persons were known to me
"""
HIN_ABANDON = """abandon /ɐbˈandən/ <V>
1. छोड़~देना
      "A baby abandoned by its parents was found here."
"""
DEU_FIX = """fix /fˈɪks/ <v>
fixieren, haltbar machen <v, trans>
 see: {fixing}, {fixed}, {fixes}, {fixed}
"""
DEU_ARGUED = """argued /ˈɑːɡjuːd/
gestritten
      "I/he/she argued"  - ich/er/sie stritt
   Synonyms: {quarreled}, {quarrelled}
"""


def test_index_numbers_are_base64_digits():
    assert fd.decode_number("B") == 1 and fd.decode_number("BG") == 64 + 6 and fd.decode_number("/") == 63
    assert fd.decode_number("EFb") == 4 * 64**2 + 5 * 64 + 27
    with pytest.raises(ValueError, match="base64 digit"):
        fd.decode_number("A-B")


def test_japanese_entry_drops_english_gloss_lines_and_stray_sense_numbers():
    entry = fd.parse_entry(JPN_WATER, "Jpan")
    assert entry.headword == "water"
    assert entry.translations == ["水", "みず"]
    assert entry.dropped_lines == {"gloss_line": 2}  # "clear liquid H₂O", "one of the basic elements"


def test_hindi_entry_drops_examples_and_english_senses_and_reads_tilde_as_space():
    entry = fd.parse_entry(HIN_A_FEW, "Deva")
    assert entry.headword == "a few" and entry.translations == ["कुछ"]
    assert entry.dropped_lines == {"example_line": 1, "gloss_line": 1}
    assert fd.pair_drop_reason(entry.headword, "कुछ", "Deva") == "multi_word_headword"
    abandon = fd.parse_entry(HIN_ABANDON, "Deva")
    assert abandon.translations == ["छोड़ देना"]
    assert fd.pair_drop_reason("abandon", "छोड़ देना", "Deva") == "multi_word_translation"


def test_german_entry_loses_grammar_tags_and_reference_lines():
    fix = fd.parse_entry(DEU_FIX, "Latn")
    assert fix.translations == ["fixieren", "haltbar machen"]  # the comma in <v, trans> splits nothing
    assert fix.dropped_lines == {"reference_line": 1}
    argued = fd.parse_entry(DEU_ARGUED, "Latn")
    assert argued.translations == ["gestritten"]
    assert argued.dropped_lines == {"example_line": 1, "reference_line": 1}


@pytest.mark.parametrize(("headword", "translation", "script", "reason"), [
    ("dog", "perro", "Latn", None),
    ("water‐", "aqu‐", "Latn", "affix"),
    ("cerebral", "Gehirn…", "Latn", "affix"),
    ("taxi", "taxi", "Latn", "same_string"),
    ("taxi", "Taxi", "Latn", None),  # different strings, different vocabulary pieces
    ("NGO", "NGO", "Jpan", "wrong_script"),
    ("clam", "clams", "Jpan", "wrong_script"),
    ("water", "вода", "Latn", "wrong_script"),
    ("what", "¿quéhoraes?", "Latn", "non_word_character"),
    ("zero", "〇", "Jpan", "no_letters"),
    ("Qur'an", "クルアーン", "Jpan", None),
    ("tell a lie", "брехать", "Cyrl", "multi_word_headword"),
])
def test_pair_drop_reasons(headword: str, translation: str, script: str, reason: str | None):
    assert fd.pair_drop_reason(headword, translation, script) == reason


def test_enclosing_quotes_are_removed():
    assert fd.normalize_word(" 'Aeneid' ") == "Aeneid"
    assert fd.normalize_word("Qur'an") == "Qur'an"


# ------------------------------------------------------------------- a hand-built dictionary


def _b64(n: int) -> str:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = digits[n % 64]
    while n := n // 64:
        out = digits[n % 64] + out
    return out


def _write_dictionary(folder: Path, name: str, entries: list[tuple[str, str]], extra_index: str = "") -> None:
    """entries: (index key, entry text); the index lists them sorted by key, as dictfmt does."""
    folder.mkdir(parents=True, exist_ok=True)
    data, index = b"", []
    for key, text in [("00databaseshort", "Test dictionary\n")] + entries:
        raw = text.encode("utf-8")
        index.append(f"{key}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw
    (folder / f"{name}.dict.dz").write_bytes(gzip.compress(data))
    (folder / f"{name}.index").write_text("\n".join(sorted(index)) + "\n" + extra_index, encoding="utf-8")


def _config(tmp_path: Path, languages: list[str]) -> dict:
    return pfconfig.prepare({
        "output_dir": str(tmp_path / "out"),
        "languages": {lang: {} for lang in languages},
        "sources": {"freedict": {"adapter": "deb", "packages": ["dict-freedict-eng-fra"], "format": "freedict",
                                 "role": "eval", "licence": "GPL-2.0-or-later"}},
    })


def test_extract_hand_built_dictionary(tmp_path: Path):
    raw = tmp_path / "raw" / "freedict"
    dictd = raw / "dict-freedict-eng-fra" / "usr" / "share" / "dictd"
    _write_dictionary(dictd, "freedict-eng-fra", [
        ("dog", "dog /dɔg/\n1. chien, clébard\n2. chien\n"),  # second chien: duplicate pair
        ("house", "house /haus/\nmaison\n"),
        ("taxi", "taxi /tæksi/\ntaxi\n"),
        ("armenian", "Armenian /ɑːmiːniən/\n1. arménien\n2. Arménien\n"),
        ("a few", "a few /əfjuː/\n1. quelques uns\n2. quelques\n"),
    ], extra_index="broken line without tabs\n")
    with (dictd / "freedict-eng-fra.index").open("a") as index:
        index.write("home\tA\tZZZZZZ\n")  # a length far past the end of the text
    _write_dictionary(raw / "dict-freedict-eng-kur" / "usr" / "share" / "dictd", "freedict-eng-kur",
                      [("dog", "dog\nse\n")])
    out = tmp_path / "extracted"
    stats = extract_source(_config(tmp_path, ["en", "fr", "de"]), "freedict", raw, out)

    rows = read_table(out / "en-fr.arrow").to_pylist()
    assert [(r["src_text"], r["tgt_text"]) for r in rows] == [
        ("Armenian", "Arménien"), ("Armenian", "arménien"), ("dog", "chien"), ("dog", "clébard"), ("house", "maison")]
    first = rows[0]
    assert first["row_id"] == "freedict/en-fr/Armenian/Arménien" and first["group"] == "armenian"
    assert first["doc_id"] == "freedict-eng-fra" and first["src_lang"] == "en" and first["tgt_lang"] == "fr"
    assert {r["split"] for r in rows if r["group"] == "dog"} == {rows[2]["split"]}
    assert stats["dropped"] == {"duplicate_pair": 1, "same_string": 1, "multi_word_headword": 2, "bad_index_line": 2}
    assert stats["skipped"]["metadata_entry"] == 1  # the Kurdish dictionary is never read
    assert stats["skipped"]["language_not_configured"] == 1  # Kurdish is not a configured language
    assert len([w for w in stats["warnings"] if "bad index line" in w]) == 2  # no tabs; runs past the end
    assert stats["rows"] == {"en-fr.arrow": 5}


def test_duplicate_index_keys_read_an_entry_once(tmp_path: Path):
    raw = tmp_path / "raw" / "freedict"
    dictd = raw / "pkg" / "usr" / "share" / "dictd"
    _write_dictionary(dictd, "freedict-eng-fra", [("dog", "dog /dɔg/\nchien\n")])
    index = dictd / "freedict-eng-fra.index"
    dog_line = next(line for line in index.read_text().splitlines() if line.startswith("dog\t"))
    index.write_text(index.read_text() + dog_line.replace("dog", "hound", 1) + "\n")
    stats = extract_source(_config(tmp_path, ["en", "fr"]), "freedict", raw, tmp_path / "extracted")
    assert stats["dropped"] == {"duplicate_index_entry": 1} and stats["rows"] == {"en-fr.arrow": 1}


# ------------------------------------------------------------------- the real eng-spa package


def _test_cache() -> Path:
    return Path(os.environ.get("POLYFORGE_TEST_CACHE", Path.home() / ".cache" / "polyforge-tests"))


@pytest.fixture(scope="session")
def eng_spa_deb() -> Path:
    """The real dict-freedict-eng-spa .deb from Debian's archive (apt-get download; cached)."""
    folder = _test_cache() / "freedict"
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob("dict-freedict-eng-spa_2022.04.21-1_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", SPA_PACKAGE], cwd=folder, check=True, capture_output=True)
        found = sorted(folder.glob("dict-freedict-eng-spa_2022.04.21-1_*.deb"))
    return found[0]


@pytest.mark.network
def test_extract_real_english_spanish_dictionary(tmp_path: Path, eng_spa_deb: Path):
    raw = tmp_path / "raw" / "freedict"
    extract_deb(eng_spa_deb, raw / "dict-freedict-eng-spa")
    out = tmp_path / "extracted"
    stats = extract_source(_config(tmp_path, ["en", "es"]), "freedict", raw, out)
    pairs = {(r["src_text"], r["tgt_text"]) for r in read_table(out / "en-es.arrow").to_pylist()}

    # Read off the raw entries ("date /deit/ 1. dátil 2. fecha 3. cita", "a /ə/ 1. a, dentro de, en, por
    # 2. alguien, alguno, cierto 3. un, una", "because /bikɔːz/ 1. porque, puestoque, yaque", ...).
    assert {("dog", "perro"), ("house", "casa"), ("abandon", "abandonar"), ("date", "dátil"), ("date", "fecha"),
            ("date", "cita"), ("a", "alguien"), ("a", "una"), ("because", "porque")} <= pairs
    assert ("a", "a") not in pairs and ("Bulgaria", "Bulgaria") not in pairs  # same string
    assert ("a", "dentro de") not in pairs and ("because", "con motivo de") not in pairs  # multi-word
    assert not any(t in {"arzo‐", "archi‐"} for _, t in pairs)  # "arch /ˈɑːtʃ/ archi‐, arzo‐"
    assert not any(s == "how" and t.startswith("¿") for s, t in pairs)
    dropped = stats["dropped"]
    assert dropped["affix"] == 4  # archi‐, arzo‐ under both arch and chief (grep ‐ in the text)
    assert dropped["non_word_character"] == 5  # ¿quéhoraes?, ¿cómoestáusted? x2, ¿cuántotiempo?, %h...ago
    assert dropped["same_string"] > 100 and dropped["multi_word_translation"] > 100
    assert dropped["multi_word_headword"] > 100  # 118 index keys have a space
    assert stats["skipped"]["metadata_entry"] == 6  # the 00database* lines of the index
    assert "duplicate_index_entry" not in dropped  # no two index lines share an offset in this one
    assert stats["warning_count"] == 0
    assert 8000 < stats["rows"]["en-es.arrow"] < 9000
