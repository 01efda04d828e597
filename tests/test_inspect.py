"""python -m pipeline inspect: every intermediate dataset kind, text and JSON, decoded token ids, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import schemas
from pipeline.arrow_io import ArrowWriter
from pipeline.inspect import InspectError, dataset_kind, inspect_path
from tests.test_shards import REPO, build, clean_rows, pair_rows, train_spm


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A built shards dir plus extracted and rejected files beside the clean ones."""
    root = tmp_path_factory.mktemp("inspect")
    build(root)
    mono = [{k: v for k, v in r.items() if k in schemas.MONOLINGUAL.names} for r in clean_rows("de")]
    with ArrowWriter(root / "extracted" / "t" / "de.arrow", schemas.MONOLINGUAL) as writer:
        writer.write_rows(mono)
    with ArrowWriter(root / "extracted" / "t" / "en-de.arrow", schemas.PARALLEL) as writer:
        writer.write_rows({k: v for k, v in r.items() if k in schemas.PARALLEL.names} for r in pair_rows("de"))
    with ArrowWriter(root / "rejected" / "de.arrow", schemas.REJECTED) as writer:
        writer.write_rows({**r, "reason": "too_short", "lid_label": None, "lid_prob": None} for r in mono[:4])
    return root


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "inspect", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip


def test_text_output_on_clean_file(root):
    result = cli(root / "clean" / "de.arrow", "--rows", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "kind: clean" in out and "lid_prob: float" in out
    train = sum(r["split"] == "train" for r in clean_rows("de"))
    assert f"de           train  {train:>10}" in out
    assert clean_rows("de")[0]["text"] in out and clean_rows("de")[2]["text"] not in out  # first 2 rows only


@pytest.mark.parametrize(
    ("relative", "kind", "rows"),
    [
        ("extracted/t/de.arrow", "monolingual", 60),
        ("extracted/t/en-de.arrow", "parallel", 46),
        ("rejected/de.arrow", "rejected", 4),
        ("clean/pairs/en-de.arrow", "clean_parallel", 46),
    ],
)
def test_json_on_text_datasets(root, relative, kind, rows):
    result = cli(root / relative, "--format", "json")
    assert result.returncode == 0, result.stderr
    (ds,) = json.loads(result.stdout)["datasets"]
    assert ds["kind"] == kind and ds["totals"] == {"rows": rows}
    assert len(ds["samples"]) == 3 and "tokens" not in ds["totals"]


def test_shard_file_decodes_with_spm_found_above(root):
    path = sorted((root / "shards" / "tlm" / "train").glob("en-de-*.arrow"))[0]
    report = json.loads(cli(path, "--format", "json", "--rows", "1").stdout)
    assert report["spm_model"] == str(root / "vocab" / "spm.model")
    (ds,) = report["datasets"]
    sample = ds["samples"][0]
    source = next(r for r in pair_rows("de") if r["row_id"] == sample["row_id"])
    assert (sample["src_text"], sample["tgt_text"]) == (source["src_text"], source["tgt_text"])
    assert ds["totals"]["tokens"] == sum(
        v["tokens"] for v in ds["by_language_split"]["en-de"].values()
    ) > 0


def test_shards_directory_counts_match_manifest(root):
    report = inspect_path(root / "shards", rows=1)
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    by_kind = {ds["kind"]: ds for ds in report["datasets"]}
    assert set(by_kind) == {"mlm_shard", "tlm_shard"}
    for kind in ("mlm", "tlm"):
        entries = [s for s in manifest["shards"] if s["kind"] == kind]
        totals = by_kind[f"{kind}_shard"]["totals"]
        assert totals == {"rows": sum(s["rows"] for s in entries), "tokens": sum(s["tokens"] for s in entries)}


def test_mlm_sample_decodes_documents(root):
    path = root / "shards" / "mlm" / "train" / "en-00000.arrow"
    text = inspect_path(path, rows=1, spm_model=root / "vocab" / "spm.model")["datasets"][0]["samples"][0]["text"]
    first = next(r["text"] for r in clean_rows("en") if r["split"] == "train")
    assert text.startswith(f"{first} </s>")  # the end-of-sentence id is shown, not dropped


def test_fallback_on_column_names(root):
    import pyarrow as pa

    assert dataset_kind(schemas.TLM_SHARD.remove_metadata()) == "tlm_shard"
    assert dataset_kind(schemas.REJECTED.remove_metadata()) == "rejected"
    assert dataset_kind(pa.schema([("x", pa.int32())])) == "unknown"


def test_clear_errors_name_the_file(root, tmp_path):
    missing = tmp_path / "nope.arrow"
    result = cli(missing)
    assert result.returncode != 0 and str(missing) in result.stderr
    not_arrow = tmp_path / "notes.arrow"
    not_arrow.write_text("hello")
    with pytest.raises(InspectError, match="notes.arrow: not an Arrow IPC file"):
        inspect_path(not_arrow)


def test_model_that_is_not_the_manifests_is_not_used_to_decode(root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root / "shards", copy / "shards")
    (copy / "vocab").mkdir()
    (copy / "vocab" / "spm.model").write_bytes(train_spm(vocab_size=340, seed=8))  # a retrained vocabulary
    report = inspect_path(copy / "shards" / "mlm" / "train", rows=1)
    assert "text" not in report["datasets"][0]["samples"][0]
    assert any("not the model" in note and "manifest.json" in note for note in report["notes"])
    given = inspect_path(copy / "shards" / "mlm" / "train", rows=1, spm_model=root / "vocab" / "spm.model")
    assert "text" in given["datasets"][0]["samples"][0] and not given["notes"]  # --spm is the user's word
