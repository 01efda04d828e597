"""fortune extraction on trees laid out like the fortunes, fortunes-de and fortunes-zh packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config as pfconfig
from pipeline.arrow_io import read_table
from pipeline.extract import extract_source
from pipeline.extract.fortune import package_language, split_entries


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture()
def raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw" / "fortunes"
    games = "usr/share/games/fortunes"
    write(raw / "fortunes" / games / "science", b"E = mc^2\n  -- Einstein\n%\nSecond\nfortune\n%\n")
    write(raw / "fortunes" / games / "science.dat", b"\x00\x00\x00\x02binary index")
    (raw / "fortunes" / games / "science.u8").symlink_to("science")
    write(raw / "fortunes" / games / "off" / "rude", b"Ebg13 grkg\n%\n")
    write(raw / "fortunes-de" / games / "de" / "zitate", "Wer rastet, der rostet.\n%\nÜbung macht\nden Meister.\n"
          "%\n".encode() + b"kaputt \xff\xfe\n%\nNoch einer.\n")
    write(raw / "fortunes-de/usr/share/games/fortunes-de/zitate.dat", b"\x00index")
    # a legacy (koi8-r) file with its UTF-8 copy beside it: only the .u8 one is read
    write(raw / "fortunes-ru" / games / "ru" / "mudrost", "Тише едешь\n%\n".encode("koi8-r"))
    write(raw / "fortunes-ru" / games / "ru" / "mudrost.u8", "Тише едешь\n%\n".encode())
    write(raw / "fortunes-zh" / games / "tang300", "\x1b[32m床前明月光\x1b[m\n疑是地上霜\n%\n".encode())
    return raw


def make_config(tmp_path: Path, **source) -> dict:
    return pfconfig.prepare({
        "output_dir": str(tmp_path / "out"),
        "languages": {"en": {}, "de": {}, "zh-Hans": {}, "ru": {}},
        "sources": {"fortunes": {"adapter": "deb", "packages": ["fortunes"], "format": "fortune", "role": "train",
                                 "licence": "BSD", **source}},
    })


def test_package_language():
    assert package_language("fortunes-zh") == "zh"
    assert package_language("fortunes-eo-ascii") == "eo"
    assert package_language("fortunes") == "en"
    assert package_language("fortunes-min") == "en"  # not Minangkabau
    assert package_language("fortunes-bofh-excuses") == "en"


def test_split_entries():
    assert split_entries(b"a\nb\n%\nc\n%\n") == [b"a\nb\n", b"c\n", b""]


def test_extract_entries_languages_and_counts(tmp_path: Path, raw_dir: Path):
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path), "fortunes", raw_dir, out)
    en = read_table(out / "en.arrow").to_pylist()
    de = read_table(out / "de.arrow").to_pylist()
    zh = read_table(out / "zh-Hans.arrow").to_pylist()
    ru = read_table(out / "ru.arrow").to_pylist()

    assert [r["text"] for r in en] == ["E = mc^2 -- Einstein", "Second fortune"]
    assert en[0]["row_id"] == "fortunes/en/fortunes/science/0"
    assert en[1]["group"] == "fortunes/science:1" and en[1]["label"] == "science"
    assert [r["text"] for r in de] == ["Wer rastet, der rostet.", "Übung macht den Meister.", "Noch einer."]
    assert [r["row_id"].rsplit("/", 1)[1] for r in de] == ["0", "1", "3"]  # entry 2 was undecodable
    assert [r["text"] for r in zh] == ["床前明月光 疑是地上霜"]  # colour escapes removed
    assert [r["text"] for r in ru] == ["Тише едешь"] and ru[0]["doc_id"] == "fortunes/ru/mudrost"

    assert stats["dropped"]["undecodable"] == 1
    assert any("fortunes/de/zitate" in w and "entry 2" in w for w in stats["warnings"])
    assert stats["skipped"]["offensive"] == 1
    assert stats["skipped"]["legacy_encoding_copy"] == 1
    assert stats["docs"] == {"de": 1, "en": 1, "ru": 1, "zh-Hans": 1}


def test_max_docs_caps_files_per_language(tmp_path: Path, raw_dir: Path):
    games = raw_dir / "fortunes/usr/share/games/fortunes"
    (games / "art").write_bytes(b"Art.\n%\n")
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path, max_docs=1), "fortunes", raw_dir, out)
    assert {r["doc_id"] for r in read_table(out / "en.arrow").to_pylist()} == {"fortunes/science"}  # first by stable hash
    assert stats["skipped"]["max_docs"] == 1
