"""sources.lock names every change between a rebuild's sources and the recorded ones."""

from __future__ import annotations

import json
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
