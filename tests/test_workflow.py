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
    report = json.loads(result.stdout)
    assert report["rows"] == pl.read_ipc(path).height
    assert report["samples"]
