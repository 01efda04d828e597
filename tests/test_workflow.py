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


def _udhr_texts(tiny_run: Path) -> set[str]:
    """Every normalized UDHR paragraph of the tiny run that is long enough not to be boilerplate elsewhere."""
    paths = sorted((tiny_run / "extracted" / "udhr").glob("*.arrow"))
    texts = {normalize_for_match(t) for p in paths if "-" not in p.stem for t in pl.read_ipc(p)["text"].to_list()}
    return {t for t in texts if len(t.split()) >= 5}


def _vocab_sample(tiny_run: Path) -> list[str]:
    """The sentences the vocab stage trained on, drawn again as the stage draws them (checked below)."""
    from pipeline import config as pfconfig
    from pipeline import vocab

    cfg = pfconfig.load(REPO / "tests" / "tiny.yaml")
    clean = {lang: tiny_run / "clean" / f"{lang}.arrow" for lang in cfg["languages"]}
    mixture = vocab.read_mixture(tiny_run / "mixture" / "mixture.json")
    sentences, stats = vocab.draw_sample(clean, mixture, cfg)
    sample = list(sentences)
    report = json.loads((tiny_run / "vocab" / "report.json").read_text())
    assert stats.as_dict() == report["sample"], "the redrawn sample is not the one the vocab stage used"
    return sample


def test_udhr_is_extracted_but_reaches_no_clean_file_vocab_sample_or_shard(tiny_run: Path) -> None:
    udhr = _udhr_texts(tiny_run)
    assert len(udhr) > 100  # en, de and hi declarations: the checks below have something to find

    clean_files = sorted((tiny_run / "clean").rglob("*.arrow")) + sorted((tiny_run / "rejected").rglob("*.arrow"))
    assert len(clean_files) == 2 * (3 + 2)  # clean and rejected: 3 languages, 2 pairs
    for path in clean_files:
        frame = pl.read_ipc(path)
        assert frame.height > 0 and "udhr" not in set(frame["source"]), path
        columns = ["text"] if "text" in frame.columns else ["src_text", "tgt_text"]
        texts = {normalize_for_match(t) for c in columns for t in frame[c].to_list()}
        assert not texts & udhr, path

    sample = {normalize_for_match(t) for t in _vocab_sample(tiny_run)}
    clean_train = pl.concat([pl.read_ipc(tiny_run / "clean" / f"{lang}.arrow") for lang in ("en", "de", "hi")])
    assert len(sample & {normalize_for_match(t) for t in clean_train["text"].to_list()}) > 1000  # it is clean text
    assert not sample & udhr

    shard_texts = _decoded_documents(tiny_run, "*") | _decoded_pair_sides(tiny_run, "*")
    assert len(shard_texts & {normalize_for_match(t) for t in clean_train["text"].to_list()}) > 1000
    assert not shard_texts & udhr


def test_sources_lock_records_every_source(tiny_run: Path) -> None:
    locked = json.loads((tiny_run / "sources.lock").read_text())["sources"]
    assert sorted(locked) == ["freedict", "gettext", "libreoffice_help", "udhr"]
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


def _processor(tiny_run: Path):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(tiny_run / "vocab" / "spm.model"))


def _decoded_documents(tiny_run: Path, split: str = "train") -> set[str]:
    """The documents of the MLM streams of ``split`` (``*``: all): the ids between end-of-sentence ids, decoded."""
    sp = _processor(tiny_run)
    ids = [i for shard in sorted((tiny_run / "shards" / "mlm").glob(f"{split}/*.arrow"))
           for row in pl.read_ipc(shard)["input_ids"].to_list() for i in row]  # fmt: skip
    documents, current = set(), []
    for token in ids:
        if token == sp.eos_id():
            documents.add(normalize_for_match(sp.decode(current)))
            current = []
        else:
            current.append(token)
    return documents


def _decoded_pair_sides(tiny_run: Path, split: str = "train") -> set[str]:
    """Both sides of every TLM pair of ``split`` (``*``: all), decoded."""
    sp = _processor(tiny_run)
    frames = [pl.read_ipc(p) for p in sorted((tiny_run / "shards" / "tlm").glob(f"{split}/*.arrow"))]
    return {normalize_for_match(sp.decode(ids)) for f in frames for col in ("src_ids", "tgt_ids") for ids in f[col].to_list()}


def test_no_test_group_or_test_text_reaches_training_shards(tiny_run: Path) -> None:
    clean = pl.concat([pl.read_ipc(p) for p in sorted((tiny_run / "clean").glob("*.arrow"))])
    held_out = clean.filter(pl.col("split") != "train")
    train_groups = set(clean.filter(pl.col("split") == "train")["group"])
    assert held_out.height > 0 and not train_groups & set(held_out["group"])

    train_documents = _decoded_documents(tiny_run)
    train_texts = clean.filter(pl.col("split") == "train")["text"].head(300).to_list()
    assert sum(normalize_for_match(t) in train_documents for t in train_texts) > 250  # decoding finds them
    assert not {normalize_for_match(t) for t in held_out["text"].to_list()} & train_documents

    tlm_texts = _decoded_pair_sides(tiny_run)
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
    from pipeline import config as pfconfig

    cfg = pfconfig.load(REPO / "tests" / "tiny.yaml")
    # Every train source with its licence and attribution as configured; the eval source (UDHR) is not in shards.
    assert {name: (s["licence"], s["attribution"]) for name, s in manifest["sources"].items()} == {
        name: (cfg["sources"][name]["licence"], cfg["sources"][name]["attribution"])
        for name in ("gettext", "libreoffice_help")
    }


def _dry_run_jobs(tiny_run: Path, configfile: Path) -> dict[str, int]:
    """The jobs a dry run of ``configfile`` into the tiny run's output root would run, by rule."""
    from tests.workflow_runner import planned_jobs

    return planned_jobs(tiny_run, configfile, cores=1)


@pytest.mark.parametrize(("section", "key", "value", "expected"), [
    ("vocab", "vocab_size", 1800, {"vocab", "shards", "all"}),
    ("mixture", "alpha_vocab", 0.3, {"mixture", "vocab", "shards", "all"}),
])  # fmt: skip
def test_a_config_edit_reruns_the_rules_that_read_it(tiny_run: Path, tmp_path: Path, section: str, key: str,
                                                     value: object, expected: set[str]) -> None:  # fmt: skip
    import yaml

    assert _dry_run_jobs(tiny_run, REPO / "tests" / "tiny.yaml") == {}  # the run is complete
    cfg = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    cfg[section][key] = value
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(cfg))
    jobs = _dry_run_jobs(tiny_run, edited)
    # The edited stage and everything after it (training, export, evaluation follow the shards) rerun ...
    assert expected <= set(jobs), jobs
    # ... and nothing before it: no download, LID model, extraction, cleaning, lock or stage before the edit.
    upstream = {"download", "lid_model", "lock", "extract", "clean", "lid_udhr_plot"} | (
        {"mixture"} if section == "vocab" else set()
    )
    assert not set(jobs) & upstream, jobs
