"""The tiny configuration, run for real through Snakemake: what each stage leaves on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.ipc as ipc
import pytest

from pipeline import schemas
from pipeline.splits import normalize_for_match

pytestmark = [pytest.mark.workflow, pytest.mark.network]

REPO = Path(__file__).resolve().parent.parent


def test_extracted_datasets_exist_per_language_and_pair(tiny_run: Path) -> None:
    help_dir = tiny_run / "extracted" / "libreoffice_help"
    for name in ("en", "de", "hi", "en-de", "en-hi"):
        assert (help_dir / f"{name}.arrow").stat().st_size > 0, name
    de = pl.read_ipc(help_dir / "de.arrow")
    assert set(de["lang"]) == {"de"} and set(de["split"]) <= {"train", "valid", "test"}
    assert de["row_id"].n_unique() == de.height
    assert de["label"].n_unique() > 3  # help modules: a real topic label, several of them
    with open(help_dir / "en-de.arrow", "rb") as handle:
        assert ipc.open_file(handle).schema.equals(schemas.PARALLEL, check_metadata=False)


def test_a_group_has_one_split_in_every_language(tiny_run: Path) -> None:
    help_dir = tiny_run / "extracted" / "libreoffice_help"
    frames = [pl.read_ipc(help_dir / f"{lang}.arrow").select("group", "split") for lang in ("en", "de", "hi")]
    groups = pl.concat(frames).unique().group_by("group").agg(pl.col("split").n_unique().alias("n"))
    assert groups["n"].max() == 1
    assert set(pl.concat(frames)["split"]) == {"train", "valid", "test"}


def test_udhr_is_extracted_but_never_cleaned(tiny_run: Path) -> None:
    assert (tiny_run / "extracted" / "udhr" / "hi.arrow").exists()
    clean = tiny_run / "clean"
    if clean.exists():
        for path in clean.rglob("*.arrow"):
            assert "udhr" not in set(pl.read_ipc(path)["source"]), path


def test_sources_lock_records_every_source(tiny_run: Path) -> None:
    locked = json.loads((tiny_run / "sources.lock").read_text())["sources"]
    assert sorted(locked) == ["gettext", "libreoffice_help", "udhr"]
    for entries in locked.values():
        assert all(len(entry["sha256"]) == 64 for entry in entries)


def test_inspect_prints_schema_counts_and_samples(tiny_run: Path) -> None:
    path = tiny_run / "extracted" / "gettext" / "en-de.arrow"
    result = subprocess.run([sys.executable, "-m", "pipeline", "inspect", str(path), "--format", "json"],
                            cwd=REPO, capture_output=True, text=True, check=True)  # fmt: skip
    dataset = json.loads(result.stdout)["datasets"][0]
    assert dataset["kind"] == "parallel"
    assert dataset["totals"]["rows"] == pl.read_ipc(path).height
    assert set(dataset["by_language_split"]["en-de"]) == {"train", "valid", "test"}
    assert dataset["samples"][0]["tgt_text"]


def test_lower_alpha_vocab_helps_the_smallest_language(tiny_run: Path) -> None:
    """On the tiny config's real data: α_vocab = 0.5 gives Hindi more of the sample and fewer tokens per word."""
    small = json.loads((tiny_run / "vocab" / "report.json").read_text())["smallest_language"]
    assert small["lang"] == "hi"
    assert small["sample_share"]["alpha=0.5"] > small["sample_share"]["alpha=1.0"]
    assert small["fertility"]["alpha=0.5"] < small["fertility"]["alpha=1.0"]


def test_clean_stage_reports_every_language(tiny_run: Path) -> None:
    stats = json.loads((tiny_run / "stats" / "languages.json").read_text())["languages"]
    assert sorted(stats) == ["de", "en", "hi"]
    for lang, entry in stats.items():
        kept = pl.read_ipc(tiny_run / "clean" / f"{lang}.arrow")
        assert entry["kept"] == kept.height > 0
        # Both tiny sources are translator-declared (lid_policy "declared" by default): a kept row's top-1 is its
        # language, or another language with p under the threshold (0.5), never a confident other language.
        other = kept.filter(pl.col("lid_label") != lang)
        assert (other["lid_prob"] < 0.5).all() and (kept["lid_label"] == lang).mean() > 0.9
        assert entry["rejected"]["lid-mismatch"] > 0  # untranslated English blocks in every help language


def _decoded_train_documents(tiny_run: Path) -> set[str]:
    """The documents of the train MLM streams: the ids between end-of-sentence ids, decoded."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny_run / "vocab" / "spm.model"))
    ids = [i for shard in sorted((tiny_run / "shards" / "mlm" / "train").glob("*.arrow"))
           for row in pl.read_ipc(shard)["input_ids"].to_list() for i in row]  # fmt: skip
    documents, current = set(), []
    for token in ids:
        if token == sp.eos_id():
            documents.add(normalize_for_match(sp.decode(current)))
            current = []
        else:
            current.append(token)
    return documents


def test_no_test_group_or_test_text_reaches_training_shards(tiny_run: Path) -> None:
    clean = pl.concat([pl.read_ipc(p) for p in sorted((tiny_run / "clean").glob("*.arrow"))])
    held_out = clean.filter(pl.col("split") != "train")
    train_groups = set(clean.filter(pl.col("split") == "train")["group"])
    assert held_out.height > 0 and not train_groups & set(held_out["group"])

    train_documents = _decoded_train_documents(tiny_run)
    train_texts = clean.filter(pl.col("split") == "train")["text"].head(300).to_list()
    assert sum(normalize_for_match(t) in train_documents for t in train_texts) > 250  # decoding finds them
    assert not {normalize_for_match(t) for t in held_out["text"].to_list()} & train_documents

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny_run / "vocab" / "spm.model"))
    tlm_train = pl.concat([pl.read_ipc(p) for p in (tiny_run / "shards" / "tlm" / "train").glob("*.arrow")])
    tlm_texts = {normalize_for_match(sp.decode(ids)) for col in ("src_ids", "tgt_ids") for ids in tlm_train[col].to_list()}
    assert not {normalize_for_match(t) for t in held_out["text"].to_list()} & tlm_texts

    for shard in sorted((tiny_run / "shards" / "tlm").rglob("*.arrow")):
        split = shard.parent.name
        assert set(pl.read_ipc(shard)["split"]) == {split}
    train_pairs = pl.concat([pl.read_ipc(p) for p in (tiny_run / "shards" / "tlm" / "train").glob("*.arrow")])
    pairs = pl.concat([pl.read_ipc(p) for p in (tiny_run / "clean" / "pairs").glob("*.arrow")])
    splits_of_train_rows = pairs.filter(pl.col("row_id").is_in(train_pairs["row_id"].implode()))["split"]
    assert set(splits_of_train_rows) == {"train"}


def test_manifest_verifies(tiny_run: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline", "verify", str(tiny_run / "shards" / "manifest.json")],
                            cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tiny_run / "shards" / "manifest.json").read_text())
    assert {s["licence"] for s in manifest["sources"].values()} >= {"MPL-2.0"}
