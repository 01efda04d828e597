"""Plain text, JSON Lines and Parquet user corpora, with bad bytes and bad records."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import config as pfconfig
from pipeline.arrow_io import read_table
from pipeline.extract import common, extract_source
from pipeline.splits import SplitConfig, assign_split


def make_config(tmp_path: Path, fmt: str, **source) -> dict:
    return pfconfig.prepare({
        "output_dir": str(tmp_path / "out"),
        "languages": {"en": {}, "de": {}, "zh-Hans": {}},
        "sources": {"corpus": {"adapter": "local", "path": "corpus", "format": fmt, "role": "train",
                               "licence": "CC0", **source}},
    })


def test_text_lines_with_invalid_utf8(tmp_path: Path):
    raw = tmp_path / "raw" / "corpus"
    raw.mkdir(parents=True)
    (raw / "a.txt").write_bytes(b"Erste Zeile.\n\nZweite Zeile\r\nkaputt \xff\n")
    (raw / "b.txt.gz").write_bytes(gzip.compress(b"Dritte Zeile.\n", mtime=0))
    (raw / "empty.txt").write_bytes(b"")
    (raw / "resolved.json").write_text("[]")
    (raw / "a.txt.sha256").write_text("0" * 64)
    (raw / "more.tar.gz").write_bytes(gzip.compress(b"tar header junk\n", mtime=0))  # unpacked beside it
    (raw / "more").mkdir()
    (raw / "more" / "c.txt").write_bytes(b"Aus dem Archiv.\n")
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path, "text", lang="de"), "corpus", raw, out)

    rows = read_table(out / "de.arrow").to_pylist()
    assert [(r["row_id"], r["text"]) for r in rows] == [
        ("corpus/de/a.txt:1/0", "Erste Zeile."), ("corpus/de/a.txt:3/0", "Zweite Zeile"),
        ("corpus/de/b.txt.gz:1/0", "Dritte Zeile."), ("corpus/de/more/c.txt:1/0", "Aus dem Archiv.")]
    assert all(r["group"] == r["doc_id"] for r in rows)
    assert stats["dropped"] == {"empty": 1, "undecodable": 1}
    assert any("a.txt:4" in w for w in stats["warnings"])
    assert stats["rows"] == {"de.arrow": 4}


def test_text_needs_a_language(tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(ValueError, match=r"sources\.corpus\.lang"):
        extract_source(make_config(tmp_path, "text"), "corpus", raw, tmp_path / "x")


def test_jsonl_with_language_field_and_bad_records(tmp_path: Path):
    raw = tmp_path / "raw" / "corpus"
    raw.mkdir(parents=True)
    records = [
        json.dumps({"content": "Hello world.\nSecond line.", "language": "en"}),
        json.dumps({"content": "Hallo Welt.", "language": "de"}),
        json.dumps({"content": "你好，世界。", "language": "zh_CN"}),
        json.dumps({"content": "Bonjour.", "language": "fr"}),
        "{not json",
        json.dumps({"other": 1}),
        json.dumps({"content": "Default language.", "language": None}),
    ]
    data = ("\n".join(records) + "\n").encode() + b'{"content": "bad \xff"}\n'
    (raw / "part.jsonl.gz").write_bytes(gzip.compress(data, mtime=0))
    out = tmp_path / "extracted"
    cfg = make_config(tmp_path, "jsonl", text_field="content", lang_field="language", lang="en")
    stats = extract_source(cfg, "corpus", raw, out)

    en = read_table(out / "en.arrow").to_pylist()
    assert [(r["row_id"], r["text"]) for r in en] == [
        ("corpus/en/part.jsonl.gz:1/0", "Hello world."), ("corpus/en/part.jsonl.gz:1/1", "Second line."),
        ("corpus/en/part.jsonl.gz:7/0", "Default language.")]
    assert en[0]["group"] == en[1]["group"] == "part.jsonl.gz:1"  # one record, one group
    assert read_table(out / "zh-Hans.arrow").column("text").to_pylist() == ["你好，世界。"]
    assert stats["dropped"] == {"invalid_json": 1, "missing_text_field": 1, "undecodable": 1,
                                "language_not_configured": 1}
    assert stats["skipped_languages"] == {"fr": 1}
    assert any("part.jsonl.gz:5" in w for w in stats["warnings"])
    assert any("part.jsonl.gz:8" in w for w in stats["warnings"])


def test_parquet_streamed_with_max_docs(tmp_path: Path):
    raw = tmp_path / "raw" / "corpus"
    raw.mkdir(parents=True)
    table = pa.table({"text": [f"Satz Nummer {i}." for i in range(10)] + [None], "id": list(range(11))})
    pq.write_table(table, raw / "train.parquet", row_group_size=3)
    (raw / "broken.parquet").write_bytes(b"PAR1 not really")
    out = tmp_path / "extracted"
    stats = extract_source(make_config(tmp_path, "parquet", lang="de", max_docs=4), "corpus", raw, out)
    rows = read_table(out / "de.arrow").to_pylist()
    assert [r["text"] for r in rows] == [f"Satz Nummer {i}." for i in range(4)]
    assert rows[3]["doc_id"] == "train.parquet:4"
    assert stats["skipped"] == {"max_docs": 6, "unreadable_file": 1}
    assert stats["dropped"] == {"missing_text_field": 1}
    assert any("broken.parquet" in w for w in stats["warnings"])


def test_split_cache_is_bounded_and_only_a_speed_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A text group is one line: the split cache must stay at its size however many lines there are."""
    monkeypatch.setattr(common, "SPLIT_CACHE_SIZE", 64)
    raw = tmp_path / "raw" / "corpus"
    raw.mkdir(parents=True)
    (raw / "a.txt").write_text("".join(f"Zeile {i}.\n" for i in range(1000)))
    cfg = make_config(tmp_path, "text", lang="de")
    ctx = common.SourceContext(cfg, "corpus")
    split_cfg = SplitConfig.from_config(cfg)
    groups = [f"a.txt:{i}" for i in range(1, 1001)]
    assert [ctx.split(g) for g in groups + groups[:10]] == [assign_split(g, split_cfg) for g in groups + groups[:10]]
    assert ctx._split.cache_info().currsize == 64

    extract_source(cfg, "corpus", raw, tmp_path / "extracted")
    rows = read_table(tmp_path / "extracted" / "de.arrow").to_pylist()
    assert len(rows) == 1000
    assert [r["split"] for r in rows] == [assign_split(r["group"], split_cfg) for r in rows]
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
