"""sources.lock: every resolved source (package version, URL) with its sha256.

A rebuild whose sources changed stops and names what changed, unless the user asks to update
the lock (``update_lock: true`` in config, or ``--config update_lock=true``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.arrow_io import write_json
from pipeline.errors import PolyforgeError

Resolved = list[dict[str, Any]]


class LockMismatchError(PolyforgeError, RuntimeError):
    """A source resolved to something other than what sources.lock records."""


def read_lock(path: str | Path) -> dict[str, Resolved]:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("sources", {})
    except json.JSONDecodeError as exc:
        raise LockMismatchError(f"{path}: not a valid lock file ({exc}); delete it to make a new one") from None


def _by_name(entries: Resolved) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


def differences(locked: Resolved, resolved: Resolved) -> list[str]:
    """Human-readable changes between the locked and the newly resolved entries of one source."""
    old, new = _by_name(locked), _by_name(resolved)
    changes = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            changes.append(f"{name}: no longer fetched")
        elif name not in old:
            changes.append(f"{name}: new ({new[name].get('version') or new[name].get('url')})")
        else:
            for key in ("version", "sha256"):
                if old[name].get(key) != new[name].get(key):
                    changes.append(f"{name}: {key} {old[name].get(key)} -> {new[name].get(key)}")
    return changes


def locked_entries(cfg: dict[str, Any], source: str) -> Resolved:
    return read_lock(cfg.get("lock_file", "sources.lock")).get(source, [])


def check_against_lock(cfg: dict[str, Any], source: str, resolved: Resolved) -> None:
    """Raise LockMismatchError naming each change, unless config says to update the lock."""
    locked = locked_entries(cfg, source)
    if not locked or cfg.get("update_lock", False):
        return
    changes = differences(locked, resolved)
    if changes:
        raise LockMismatchError(
            f"source {source!r} changed since {cfg.get('lock_file', 'sources.lock')} was written:\n  "
            + "\n  ".join(changes)
            + "\nRun with --config update_lock=true to accept the new versions."
        )


def update_lock_file(path: str | Path, all_resolved: dict[str, Resolved], keep_others: bool = True) -> None:
    """Write the lock atomically: the given sources replace theirs, others are kept."""
    sources = read_lock(path) if keep_others else {}
    sources.update({name: sorted(entries, key=lambda e: e["name"]) for name, entries in all_resolved.items()})
    write_json(path, {"sources": dict(sorted(sources.items()))})
