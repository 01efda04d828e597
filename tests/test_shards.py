"""Shards stage: MLM streams, TLM filters, the three readers, manifest, verify, vocabulary guard, reproducibility."""

from __future__ import annotations

import copy
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sentencepiece as spm

from pipeline import config as pfconfig
from pipeline import schemas, shards
from pipeline.arrow_io import ArrowWriter, iter_rows, read_table, sha256_file

REPO = Path(__file__).resolve().parent.parent
LANGS = ("de", "en", "hi")
TEST_MARKER = "zqxheldout"  # only in test-split rows: must never reach a train shard

WORDS = {
    "en": "the house is small and the garden is green we open a file to save the document in a folder".split(),
    "de": "das Haus ist klein und der Garten ist grün wir öffnen eine Datei um das Dokument zu speichern".split(),
    "hi": "घर छोटा है और बगीचा हरा है हम दस्तावेज़ को सहेजने के लिए एक फ़ाइल खोलते हैं".split(),
}


def sentence(rng: random.Random, lang: str, n: int | None = None) -> str:
    return " ".join(rng.choice(WORDS[lang]) for _ in range(n or rng.randint(3, 14)))


def split_of(i: int) -> str:
    return "test" if i % 10 == 3 else "valid" if i % 10 == 7 else "train"


def train_spm(vocab_size: int = 350, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines = [sentence(rng, lang) for _ in range(400) for lang in LANGS] + [TEST_MARKER] * 5
    writer = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=writer, vocab_size=vocab_size, pad_id=0, bos_id=1, eos_id=2,
        unk_id=3, user_defined_symbols=["<mask>"], byte_fallback=True, num_threads=1, minloglevel=2,
    )  # fmt: skip
    return writer.getvalue()


def clean_rows(lang: str, n: int = 60) -> list[dict]:
    rng = random.Random(f"clean-{lang}")
    rows = []
    for i in range(n):
        text = sentence(rng, lang) + (f" {TEST_MARKER}" if split_of(i) == "test" else "")
        rows.append({"row_id": f"t/{lang}/{i}", "source": "t", "lang": lang, "doc_id": f"d{i}", "group": f"g{i}",
                     "split": split_of(i), "label": None, "text": text, "lid_label": lang, "lid_prob": 0.99})  # fmt: skip
    return rows


def pair_row(i: int, src_lang: str, tgt_lang: str, src: str, tgt: str, split: str = "train") -> dict:
    return {"row_id": f"t/{src_lang}-{tgt_lang}/{i}", "source": "t", "src_lang": src_lang, "tgt_lang": tgt_lang,
            "src_row_id": f"s{i}", "tgt_row_id": f"t{i}", "doc_id": f"d{i}", "group": f"g{i}", "split": split,
            "label": None, "src_text": src, "tgt_text": tgt, "src_lid_prob": 0.9, "tgt_lid_prob": 0.9}  # fmt: skip


# Words the test model encodes as exactly one token each, so pair lengths below are known.
ONE_TOKEN = {"en": ["the", "is", "a", "document"], "de": ["das", "Haus", "klein", "Garten"],
             "hi": ["घर", "छोटा", "और", "बगीचा"]}  # fmt: skip


def words(lang: str, n: int, offset: int = 0) -> str:
    """n one-token words; different ``offset`` values give different texts."""
    return " ".join(ONE_TOKEN[lang][(offset >> (2 * (k % 4))) % 4] for k in range(n))


def pair_rows(tgt_lang: str) -> list[dict]:
    """40 ordinary pairs plus one pair for each reject reason (limits set in make_config)."""
    rows = []
    for i in range(40):
        marker = f" {TEST_MARKER}" if split_of(i) == "test" else ""
        rows.append(pair_row(i, "en", tgt_lang, words("en", 4, i) + marker, words(tgt_lang, 4, i) + marker,
                             split_of(i)))  # fmt: skip
    rows += [
        pair_row(100, "en", tgt_lang, "", words(tgt_lang, 3)),  # src_too_short (0 < min_tokens 1)
        pair_row(101, "en", tgt_lang, words("en", 3), ""),  # tgt_too_short
        pair_row(102, "en", tgt_lang, words("en", 45), words(tgt_lang, 45)),  # src_too_long (> max_tokens 40)
        pair_row(103, "en", tgt_lang, words("en", 1), words(tgt_lang, 5)),  # length_ratio (5 > 3 × 1)
        pair_row(104, "en", tgt_lang, words("en", 30), words(tgt_lang, 30)),  # total_too_long (30 + 30 + 4 > 60)
        {**rows[0], "row_id": f"t/en-{tgt_lang}/dup"},  # duplicate of the first pair
    ]
    return rows


def write_inputs(root: Path) -> tuple[dict[str, Path], list[Path], Path]:
    """clean/{lang}.arrow, clean/pairs/{src}-{tgt}.arrow (+ one pair outside config), vocab/spm.model."""
    clean = {}
    for lang in LANGS:
        clean[lang] = root / "clean" / f"{lang}.arrow"
        with ArrowWriter(clean[lang], schemas.CLEAN, batch_rows=16) as writer:  # several input batches
            writer.write_rows(clean_rows(lang))
    pairs = []
    for tgt in ("de", "hi", "fr"):  # fr is not configured
        pairs.append(root / "clean" / "pairs" / f"en-{tgt}.arrow")
        with ArrowWriter(pairs[-1], schemas.CLEAN_PARALLEL, batch_rows=16) as writer:
            writer.write_rows(pair_rows(tgt) if tgt != "fr" else pair_rows("de")[:3])
    model = root / "vocab" / "spm.model"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(train_spm())
    return clean, pairs, model


def make_config(root: Path) -> dict:
    cfg = pfconfig.load(REPO / "tests" / "tiny.yaml")
    cfg["output_dir"] = str(root)
    cfg["shards"] = {"bptt": 16, "max_shard_rows": 5,
                     "tlm": {"min_tokens": 1, "max_tokens": 40, "max_len_ratio": 3.0, "max_total_tokens": 60}}  # fmt: skip
    return cfg


def build(root: Path) -> dict:
    clean, pairs, model = write_inputs(root)
    return shards.run_shards_stage(make_config(root), clean, pairs, model, root / "shards" / "manifest.json",
                                   log=root / "shards.log")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run1")
    build(root)
    return root


def manifest_of(root: Path) -> dict:
    return json.loads((root / "shards" / "manifest.json").read_text())


def shard_paths(root: Path, kind: str, split: str, prefix: str) -> list[Path]:
    return sorted((root / "shards" / kind / split).glob(f"{prefix}-*.arrow"))


def processor(root: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(root / "vocab" / "spm.model"))


def test_mlm_streams_are_bptt_long_with_eos_after_every_document(built):
    sp, bptt = processor(built), 16
    paths = shard_paths(built, "mlm", "train", "en")
    assert len(paths) > 1  # max_shard_rows=5 cuts the stream into several files
    rows = [row["input_ids"] for p in paths for row in iter_rows(p)]
    assert all(len(r) == bptt for r in rows[:-1]) and 0 < len(rows[-1]) <= bptt
    texts = [r["text"] for r in clean_rows("en") if r["split"] == "train"]
    expected = [i for ids in sp.encode(texts) for i in [*ids, shards.EOS]]
    assert [i for r in rows for i in r] == expected  # documents in order, each followed by </s>
    entries = [s for s in manifest_of(built)["shards"] if s["kind"] == "mlm" and s["split"] == "train"
               and s["languages"] == ["en"]]  # fmt: skip
    assert sum(s["tokens"] for s in entries) == sum(len(ids) + 1 for ids in sp.encode(texts))
    assert sum(s["rows"] for s in entries) == len(rows)
    assert all(s["rows"] <= 5 for s in entries)


def test_tlm_filters_count_each_reason(built):
    stats = manifest_of(built)["tlm"]["pairs"]["en-de"]
    rejected = {k: v for k, v in stats["rejected"].items() if v}
    assert rejected == {"src_too_short": 1, "tgt_too_short": 1, "src_too_long": 1, "length_ratio": 1,
                        "total_too_long": 1, "duplicate": 1}  # fmt: skip
    assert stats["read"] == 46 and stats["kept"] == 40
    kept = [r for split in schemas.SPLITS for p in shard_paths(built, "tlm", split, "en-de") for r in iter_rows(p)]
    assert sorted(r["row_id"] for r in kept) == sorted(f"t/en-de/{i}" for i in range(40))
    sp = processor(built)
    first = next(r for r in kept if r["row_id"] == "t/en-de/0")
    source = pair_rows("de")[0]
    assert first["src_ids"] == sp.encode(source["src_text"]) and first["tgt_ids"] == sp.encode(source["tgt_text"])
    assert (first["src_lang"], first["tgt_lang"]) == ("en", "de")


def test_pair_file_outside_config_is_skipped_with_warning(built):
    assert "en-fr.arrow" in (built / "shards.log").read_text()
    assert "en-fr" not in manifest_of(built)["tlm"]["pairs"]
    assert manifest_of(built)["tlm"]["skipped_files"] == ["en-fr.arrow"]
    assert not list((built / "shards" / "tlm").rglob("en-fr-*"))


def test_no_test_text_in_train_shards(built):
    sp = processor(built)
    train_mlm = [p for p in (built / "shards" / "mlm" / "train").glob("*.arrow")]
    train_text = " ".join(sp.decode(r["input_ids"]) for p in train_mlm for r in iter_rows(p))
    train_text += " ".join(sp.decode(r["src_ids"]) + sp.decode(r["tgt_ids"])
                           for p in (built / "shards" / "tlm" / "train").glob("*.arrow") for r in iter_rows(p))  # fmt: skip
    assert train_text and TEST_MARKER not in train_text
    test_text = " ".join(sp.decode(r["input_ids"]) for p in shard_paths(built, "mlm", "test", "de")
                         for r in iter_rows(p))  # fmt: skip
    assert TEST_MARKER in test_text  # the marker survives encoding, so its absence above means something


def test_three_readers_open_shards(built, tmp_path):
    import datasets
    import polars as pl
    import pyarrow.ipc as ipc

    path = shard_paths(built, "mlm", "train", "hi")[0]
    expected = read_table(path)
    with pa.memory_map(str(path)) as source:
        assert ipc.open_file(source).read_all().equals(expected)
    assert pl.read_ipc(path)["input_ids"].to_list() == expected.column("input_ids").to_pylist()
    assert pl.scan_ipc(path).select(pl.len()).collect().item() == expected.num_rows
    tlm = shard_paths(built, "tlm", "train", "en-hi")
    ds = datasets.load_dataset("arrow", data_files=[str(p) for p in tlm], split="train", cache_dir=str(tmp_path))
    assert ds.num_rows == sum(read_table(p).num_rows for p in tlm)
    assert ds[0]["src_ids"] == read_table(tlm[0]).column("src_ids")[0].as_py()


def test_manifest_sha256_and_contents(built):
    data = manifest_of(built)
    for entry in data["shards"]:
        assert sha256_file(built / "shards" / entry["path"]) == entry["sha256"]
    on_disk = {p.relative_to(built / "shards").as_posix() for p in (built / "shards").rglob("*.arrow")}
    assert on_disk == {e["path"] for e in data["shards"]}
    assert data["spm_model"]["sha256"] == sha256_file(built / "vocab" / "spm.model")
    assert not {"output_dir", "cache_dir", "lock_file"} & set(data["config"])
    assert data["sources"]["gettext"]["licence"] == "LGPL-2.1-or-later"
    assert {"sentencepiece", "pyarrow", "polars", "datasets", "snakemake", "fasttext-numpy2-wheel"} <= set(
        data["versions"]
    )
    assert data["versions"]["sentencepiece"] == spm.__version__


def run_verify(manifest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "verify", str(manifest)], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip


def test_verify_detects_flipped_byte_and_missing_file(built, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    manifest = root / "shards" / "manifest.json"
    ok = run_verify(manifest)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    entries = manifest_of(root)["shards"]
    flipped, missing = root / "shards" / entries[0]["path"], root / "shards" / entries[-1]["path"]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    missing.unlink()
    bad = run_verify(manifest)
    assert bad.returncode == 1
    assert str(flipped) in bad.stderr and str(missing) in bad.stderr


def test_vocabulary_change_is_refused(built, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(built, root)
    (root / "vocab" / "spm.model").write_bytes(train_spm(vocab_size=340, seed=8))
    cfg, clean = make_config(root), {lang: root / "clean" / f"{lang}.arrow" for lang in LANGS}
    with pytest.raises(shards.ShardsError, match="vocabulary|SentencePiece model"):
        shards.run_shards_stage(cfg, clean, [], root / "vocab" / "spm.model", root / "shards" / "manifest.json")
    # Snakemake deletes the declared output (the manifest) before a rerun: the shards still say their vocabulary.
    (root / "shards" / "manifest.json").unlink()
    with pytest.raises(shards.ShardsError, match="vocabulary changed"):
        shards.run_shards_stage(cfg, clean, [], root / "vocab" / "spm.model", root / "shards" / "manifest.json")
    assert list((root / "shards" / "mlm").rglob("*.arrow"))  # nothing was deleted


def test_two_builds_into_different_roots_are_byte_identical(built, tmp_path):
    other = tmp_path / "elsewhere" / "run2"
    build(other)
    files = sorted(p.relative_to(built / "shards") for p in (built / "shards").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other / "shards") for p in (other / "shards").rglob("*") if p.is_file())
    for rel in files:
        assert (built / "shards" / rel).read_bytes() == (other / "shards" / rel).read_bytes(), rel


def test_input_batching_does_not_change_shard_bytes(built, tmp_path):
    root = tmp_path / "rebatched"
    clean, pairs, model = write_inputs(root)
    for lang in LANGS:  # same rows, one big input batch instead of 16-row batches
        rows = iter_rows(clean[lang])
        rows = list(rows)
        with ArrowWriter(clean[lang], schemas.CLEAN, batch_rows=1000) as writer:
            writer.write_rows(rows)
    cfg = copy.deepcopy(make_config(root))
    shards.run_shards_stage(cfg, clean, pairs, model, root / "shards" / "manifest.json")
    assert (root / "shards" / "manifest.json").read_bytes() == (built / "shards" / "manifest.json").read_bytes()


def test_token_count_ignores_padding():
    column = pa.array([[5, 6, 0, 0], [2]], pa.list_(pa.int32()))
    assert shards.count_tokens(column) == 3
    assert np.array_equal(shards.join_with_eos([np.array([7, 8], np.int32), np.array([], np.int32)]), [7, 8, 2, 2])


def test_pair_dedup_keeps_first_occurrences_within_and_across_batches():
    ids = [np.array(x, np.int32) for x in ([5, 6], [5], [6, 5], [])]
    seen = shards.KeySet()
    # (src, tgt) = (ids[a], ids[b]); the split point is part of the key: ([5, 6], [5]) != ([5], [6, 5]).
    src, tgt = [ids[0], ids[1], ids[0], ids[3], ids[0]], [ids[1], ids[2], ids[1], ids[0], ids[2]]
    assert shards.first_occurrences([0, 1, 2, 3], src, tgt, seen) == [0, 1, 3]
    assert shards.first_occurrences([4, 2, 1], src, tgt, seen) == [4]  # 2 and 1 were kept in the batch before
    assert len(seen) == 4 and seen.nbytes == 4 * 16


def test_private_encode_is_checked_at_stage_start_and_used(built, monkeypatch):
    assert "the private batch encode matches the public encode" in (built / "shards.log").read_text()
    sp = shards.load_processor(built / "vocab" / "spm.model")
    assert shards._PRIVATE_ENCODE_OK[sp] is True
    calls = []
    private = shards._private_encode
    monkeypatch.setattr(shards, "_private_encode", lambda *a: calls.append(a) or private(*a))
    texts = [r["text"] for r in clean_rows("hi")] + list(shards.PROBE_TEXTS)
    buffers = shards.encode_buffers(sp, texts, 2)
    assert len(calls) == 1  # the fast call, no new probe
    assert [np.frombuffer(b, np.int32).tolist() for b in buffers] == sp.encode(texts)


@pytest.mark.parametrize("fault", ["wrong ids", "missing method"])
def test_private_encode_that_differs_falls_back_to_public_encode(built, tmp_path, monkeypatch, fault):
    calls = []

    def broken(sp, texts, threads):
        calls.append(len(texts))
        if fault == "missing method":
            raise AttributeError("'SentencePieceProcessor' object has no attribute '_EncodeAsBufferBatch'")
        return [np.append(np.frombuffer(b, np.int32), 7).tobytes() for b in sp.encode(texts, return_type="numpy")]

    monkeypatch.setattr(shards, "_private_encode", broken)
    root = tmp_path / "fallback"
    build(root)
    assert len(calls) == 1  # only the probe: every batch of the stage went through the public encode
    log = (root / "shards.log").read_text()
    assert "the private batch encode differs from the public encode" in log
    assert ("AttributeError" if fault == "missing method" else "instead of") in log
    # The public path gives the same shards, byte for byte, as the checked private path.
    files = sorted(p.relative_to(built / "shards") for p in (built / "shards").rglob("*") if p.is_file())
    for rel in files:
        assert (root / "shards" / rel).read_bytes() == (built / "shards" / rel).read_bytes(), rel


def test_unknown_split_value_is_an_error_naming_the_file_and_the_value():
    column = pa.array(["train", "dev", "test", None, "dev"])
    with pytest.raises(shards.ShardsError, match=r"clean/de\.arrow: unknown split value\(s\) \['dev', None\]"):
        shards.split_codes(column, Path("clean/de.arrow"))
    assert shards.split_codes(pa.array(["test", "train", "valid"]), Path("x")).tolist() == [2, 0, 1]
