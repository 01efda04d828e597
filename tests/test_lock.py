"""sources.lock names every change between a rebuild's sources and the recorded ones."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pipeline import lock


def _entry(name: str, version: str, sha: str) -> dict:
    return {"name": name, "version": version, "url": f"apt:{name}", "sha256": sha, "filename": f"{name}.deb"}


def test_lock_round_trip_and_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "sources.lock"
    lock.update_lock_file(path, {"help": [_entry("libreoffice-help-de", "7.4.7", "a" * 64)]})
    cfg = {"lock_file": str(path)}
    lock.check_against_lock(cfg, "help", [_entry("libreoffice-help-de", "7.4.7", "a" * 64)])  # unchanged: fine
    with pytest.raises(lock.LockMismatchError) as excinfo:
        lock.check_against_lock(cfg, "help", [_entry("libreoffice-help-de", "7.4.8", "b" * 64),
                                              _entry("libreoffice-help-fr", "7.4.8", "c" * 64)])  # fmt: skip
    message = str(excinfo.value)
    assert "libreoffice-help-de: version 7.4.7 -> 7.4.8" in message
    assert "libreoffice-help-fr: new" in message and "update_lock=true" in message
    cfg["update_lock"] = True
    lock.check_against_lock(cfg, "help", [_entry("libreoffice-help-de", "7.4.8", "b" * 64)])


def test_unlocked_source_passes_and_other_sources_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "sources.lock"
    lock.update_lock_file(path, {"a": [_entry("x", "1", "a" * 64)]})
    lock.check_against_lock({"lock_file": str(path)}, "b", [_entry("y", "1", "b" * 64)])
    lock.update_lock_file(path, {"b": [_entry("y", "1", "b" * 64)]})
    assert sorted(json.loads(path.read_text())["sources"]) == ["a", "b"]


def test_corrupt_lock_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sources.lock"
    path.write_text("{not json")
    with pytest.raises(lock.LockMismatchError, match="sources.lock"):
        lock.read_lock(path)


# ----------------------------------------------------------------- through Snakemake


def _local_config(tmp_path: Path, name: str, lock_file: Path, text: str = "Hello there, world.\n") -> Path:
    """A config with one local text source, so the lock rule runs in seconds without a registry."""
    import yaml

    corpus = tmp_path / f"{name}.txt"
    corpus.write_text(text)
    cfg = {
        "output_dir": str(tmp_path / name), "lock_file": str(lock_file), "cache_dir": str(tmp_path / "cache"),
        "languages": {"en": {}},
        "sources": {name: {"adapter": "local", "path": str(corpus), "format": "text", "role": "train",
                           "licence": "CC0-1.0", "lang": "en"}},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snakemake(configfile: Path, *args: str) -> subprocess.CompletedProcess:
    from tests.workflow_runner import REPO, SNAKEMAKE

    command = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO), "--configfile",
               str(configfile), "--cores", "1", "--nolock", *args]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


@pytest.mark.workflow
@pytest.mark.slow
def test_a_second_config_keeps_the_first_configs_sources_in_a_shared_lock(tmp_path: Path) -> None:
    shared = tmp_path / "shared.lock"
    first, second = _local_config(tmp_path, "first", shared), _local_config(tmp_path, "second", shared)
    for configfile in (first, second):
        result = _snakemake(configfile, str(shared))  # the lock rule and the downloads it needs
        assert result.returncode == 0, result.stderr[-3000:]
    locked = lock.read_lock(shared)
    assert sorted(locked) == ["first", "second"]
    assert locked["first"][0]["url"] == f"local:{tmp_path / 'first.txt'}"

    # The first config again, after its source changed: the lock names the change and the command to accept it.
    (tmp_path / "first.txt").write_text("Something else entirely.\n")
    result = _snakemake(first, str(shared), "--forcerun", "download")
    assert result.returncode != 0 and "first.txt: sha256" in result.stderr
    command = re.search(r"Run with (--config \S+)", result.stderr)
    assert command, result.stderr[-3000:]
    # ... and that exact command is accepted: the source is fetched again and the lock updated, the other kept.
    result = _snakemake(first, str(shared), "--forcerun", "download", *command.group(1).split())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is not of type" not in result.stderr
    locked_again = lock.read_lock(shared)
    assert sorted(locked_again) == ["first", "second"] and locked_again["second"] == locked["second"]
    assert locked_again["first"][0]["sha256"] != locked["first"][0]["sha256"]
