"""shards/manifest.json: what the shards are, what made them, and a check that they are still that.

The manifest lists every shard (path relative to the shards dir, kind, split, languages, rows, tokens,
sha256), the SentencePiece model's sha256, the validated config minus the keys that only say where this
machine keeps files (LOCAL_PATH_KEYS: two rebuilds into different roots give the same bytes), the
training sources with licence and attribution, the versions of the libraries that shape the bytes, and
TLM reject counts. No timestamps; keys sorted; written atomically.

``python -m pipeline verify MANIFEST`` rechecks every sha256 and that no listed shard is missing and no
unlisted shard lies beside them.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.arrow_io import sha256_file, write_json
from pipeline.config import DOWNSTREAM_KEYS, EXECUTION_KEYS, TRAIN_MIXTURE_KEYS
from pipeline.errors import PolyforgeError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
LOCAL_PATH_KEYS = ("output_dir", "cache_dir", "lock_file", "update_lock")
LIBRARIES = ("datasets", "fasttext-numpy2-wheel", "numpy", "polars", "pyarrow", "sentencepiece", "snakemake")
SHARD_KINDS = ("mlm", "tlm")


class ManifestError(PolyforgeError, ValueError):
    """A manifest that cannot be read, or that contradicts what is being built."""


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def portable_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The validated config without machine-local paths, execution settings and what is read only after the
    shards (train, eval, experiments, the training mixture's α_train and budget): what shapes the data."""
    result = copy.deepcopy(dict(cfg))
    for key in LOCAL_PATH_KEYS + DOWNSTREAM_KEYS:
        result.pop(key, None)
    for key in TRAIN_MIXTURE_KEYS:
        result.get("mixture", {}).pop(key, None)
    for section, keys in EXECUTION_KEYS.items():
        for key in keys:
            result.get(section, {}).pop(key, None)
    return result


def source_licences(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Licence and attribution of every train source (eval sources never reach shards)."""
    return {
        name: {
            "licence": s["licence"],
            "attribution": s.get("attribution"),
            "adapter": s["adapter"],
            "format": s["format"],
        }  # fmt: skip
        for name, s in sorted(cfg["sources"].items())
        if s["role"] == "train"
    }


def totals(shards: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """rows and tokens per kind, split and language(s)."""
    result: dict[str, Any] = {}
    for shard in shards:
        key = "-".join(shard["languages"])
        slot = (
            result.setdefault(shard["kind"], {})
            .setdefault(shard["split"], {})
            .setdefault(key, {"rows": 0, "tokens": 0, "shards": 0})
        )
        slot["rows"] += shard["rows"]
        slot["tokens"] += shard["tokens"]
        slot["shards"] += 1
    return result


def spm_reference(shards_dir: Path, spm_model: str | os.PathLike[str], sha256: str) -> dict[str, str]:
    """The model's path relative to the nearest folder above the shards dir that holds it: the output root, for
    ``shards/`` and for an experiment's ``shards/{key}/`` alike (``vocab/spm.model``, ``vocab/{key}/spm.model``)."""
    model = Path(spm_model).resolve()
    for root in shards_dir.resolve().parents:
        if model.is_relative_to(root):
            return {"path": model.relative_to(root).as_posix(), "sha256": sha256}
    return {"path": model.name, "sha256": sha256}


def _spm_path(shards_dir: Path, relative: str) -> Path:
    """Where a manifest's spm_model path points: below the nearest folder above the shards dir that has it."""
    for root in shards_dir.parents:
        if (root / relative).is_file():
            return root / relative
    return shards_dir.parent / relative


def build_manifest(shards_dir: str | os.PathLike[str], shards: Sequence[Mapping[str, Any]],
                   spm_model: str | os.PathLike[str], spm_sha256: str, cfg: Mapping[str, Any],
                   tlm: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The manifest dict for finished shard files (sha256 computed here, from the files on disk)."""
    shards_dir = Path(shards_dir)
    entries = [
        {**dict(s), "sha256": sha256_file(shards_dir / s["path"])} for s in sorted(shards, key=lambda s: s["path"])
    ]
    return {
        "format_version": FORMAT_VERSION,
        "spm_model": spm_reference(shards_dir, spm_model, spm_sha256),
        "shards": entries,
        "totals": totals(entries),
        "tlm": dict(tlm),
        "config": portable_config(cfg),
        "sources": source_licences(cfg),
        "versions": library_versions(),
    }


def write_manifest(path: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    write_json(path, manifest)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not a JSON manifest: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("shards"), list):
        raise ManifestError(f"{path}: not a Polyforge shards manifest (no 'shards' list)")
    return data


def check_vocabulary(manifest_path: str | os.PathLike[str], spm_sha256: str) -> None:
    """Refuse to add shards encoded with one vocabulary to a shards dir made with another."""
    manifest_path = Path(manifest_path)
    if not manifest_path.exists():
        return
    old = read_manifest(manifest_path).get("spm_model", {}).get("sha256")
    if old != spm_sha256:
        raise ManifestError(
            f"{manifest_path}: these shards were encoded with a SentencePiece model of sha256 {old}, but the model "
            f"given now has sha256 {spm_sha256}; mixing vocabularies would corrupt training. Delete the shards "
            f"directory {manifest_path.parent} (or its {MANIFEST_NAME}) to rebuild every shard with the new model."
        )


# ---------------------------------------------------------------- verify


@dataclass
class Verification:
    checked: int = 0
    rows: int = 0
    tokens: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(manifest_path: str | os.PathLike[str]) -> Verification:
    """Recheck every listed shard's sha256 (and the spm model's, where it is found); list unlisted shards."""
    manifest_path = Path(manifest_path)
    data = read_manifest(manifest_path)
    shards_dir = manifest_path.parent
    result = Verification()
    listed = set()
    for entry in data["shards"]:
        path = shards_dir / entry["path"]
        listed.add(path.resolve())
        result.checked += 1
        if not path.is_file():
            result.problems.append(f"{path}: missing (listed in {manifest_path})")
            continue
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            result.problems.append(f"{path}: sha256 {actual} does not match the manifest's {entry['sha256']}")
            continue
        result.rows += entry["rows"]
        result.tokens += entry["tokens"]
    for kind in SHARD_KINDS:
        for path in sorted((shards_dir / kind).rglob("*.arrow")):
            if path.resolve() not in listed:
                result.problems.append(f"{path}: shard file not listed in {manifest_path}")
    _verify_spm(data, shards_dir, result)
    return result


def _verify_spm(data: Mapping[str, Any], shards_dir: Path, result: Verification) -> None:
    spm = data.get("spm_model") or {}
    model = _spm_path(shards_dir, spm.get("path", "vocab/spm.model"))
    if not model.is_file():
        result.notes.append(f"SentencePiece model {model} not found; its sha256 was not rechecked")
        return
    actual = sha256_file(model)
    if actual != spm.get("sha256"):
        result.problems.append(f"{model}: sha256 {actual} does not match the manifest's spm_model {spm.get('sha256')}")
    else:
        result.notes.append(f"SentencePiece model {model}: sha256 matches")


def verify_main(args: argparse.Namespace) -> int:
    try:
        result = verify(args.manifest)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(note)
    for problem in result.problems:
        print(f"MISMATCH {problem}", file=sys.stderr)
    if not result.ok:
        print(f"FAILED: {len(result.problems)} problem(s) in {args.manifest}", file=sys.stderr)
        return 1
    print(f"OK: {result.checked} shards, {result.rows} rows, {result.tokens} tokens match {args.manifest}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="recheck every sha256 listed in a shards manifest",
                                   description=verify.__doc__)  # fmt: skip
    parser.add_argument("manifest", type=Path, help="path to shards/manifest.json")
    parser.set_defaults(handler=verify_main)
