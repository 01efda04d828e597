"""shards/manifest.json and `python -m pipeline verify`: what the manifest records, and what verify catches.

The sha256/missing-file basics are in test_shards.py; these cover the rest of verify (unlisted shards, the
SentencePiece model, unreadable manifests) and the manifest's portable config, sources and versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import manifest
from tests.test_shards import REPO, build, make_config


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("manifest")
    build(root)
    return root


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(built, root)
    return root


def verify_cli(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "verify", str(path)], cwd=REPO, capture_output=True,
                          text=True)  # fmt: skip


def test_manifest_records_portable_config_sources_and_versions(built: Path) -> None:
    data = manifest.read_manifest(built / "shards" / "manifest.json")
    cfg = make_config(built)
    assert data["config"] == json.loads(json.dumps(manifest.portable_config(cfg)))
    assert data["config"]["shards"] == cfg["shards"] and "output_dir" not in data["config"]
    train = {name for name, s in cfg["sources"].items() if s["role"] == "train"}
    assert set(data["sources"]) == train and "udhr" not in data["sources"]  # eval sources never reach shards
    assert all(data["sources"][n]["licence"] == cfg["sources"][n]["licence"] for n in train)
    assert data["spm_model"]["path"] == "vocab/spm.model"
    assert set(data["versions"]) == set(manifest.LIBRARIES) and all(data["versions"].values())
    totals = data["totals"]["mlm"]["train"]["en"]
    listed = [s for s in data["shards"] if s["kind"] == "mlm" and s["split"] == "train" and s["languages"] == ["en"]]
    assert totals == {"rows": sum(s["rows"] for s in listed), "tokens": sum(s["tokens"] for s in listed),
                      "shards": len(listed)}  # fmt: skip
    assert (built / "shards" / "manifest.json").read_text().count("\n") > 10  # indented, sorted keys
    assert list(data) == sorted(data)


def test_missing_library_is_recorded_as_null(monkeypatch) -> None:
    monkeypatch.setattr(manifest, "LIBRARIES", ("pyarrow", "no-such-package-polyforge"))
    versions = manifest.library_versions()
    assert versions["no-such-package-polyforge"] is None and versions["pyarrow"]


def test_verify_ok_summary(built: Path) -> None:
    result = verify_cli(built / "shards" / "manifest.json")
    data = manifest.read_manifest(built / "shards" / "manifest.json")
    assert result.returncode == 0, result.stderr
    assert f"OK: {len(data['shards'])} shards" in result.stdout


def test_verify_names_an_unlisted_shard(copy: Path) -> None:
    stray = copy / "shards" / "mlm" / "train" / "en-99999.arrow"
    shutil.copy(next((copy / "shards" / "mlm" / "train").glob("en-*.arrow")), stray)
    result = verify_cli(copy / "shards" / "manifest.json")
    assert result.returncode == 1 and str(stray) in result.stderr and "not listed" in result.stderr


def test_verify_checks_the_spm_model_beside_the_shards(copy: Path) -> None:
    model = copy / "vocab" / "spm.model"
    model.write_bytes(model.read_bytes() + b"\0")
    result = verify_cli(copy / "shards" / "manifest.json")
    assert result.returncode == 1 and str(model) in result.stderr
    model.unlink()  # shards copied without their vocabulary: a note, not a failure
    result = verify_cli(copy / "shards" / "manifest.json")
    assert result.returncode == 0 and "not found" in result.stdout


@pytest.mark.parametrize("content", ["{not json", '{"shards": "nope"}'])
def test_verify_refuses_an_unreadable_manifest(tmp_path: Path, content: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    result = verify_cli(path)
    assert result.returncode == 2 and str(path) in result.stderr
    result = verify_cli(tmp_path / "absent.json")
    assert result.returncode == 2 and "absent.json" in result.stderr


def test_check_vocabulary_message_says_what_to_delete(built: Path) -> None:
    manifest.check_vocabulary(built / "shards" / "manifest.json", manifest.read_manifest(
        built / "shards" / "manifest.json")["spm_model"]["sha256"])  # same model: fine  # fmt: skip
    with pytest.raises(manifest.ManifestError, match=r"(?s)sha256 .*Delete the shards directory .*manifest\.json"):
        manifest.check_vocabulary(built / "shards" / "manifest.json", "0" * 64)
    manifest.check_vocabulary(built / "nowhere" / "manifest.json", "0" * 64)  # no manifest yet: nothing to mix
