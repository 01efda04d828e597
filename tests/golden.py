"""The golden list: sha256 of every data file of the tiny run (as cc_net keeps golden checksums).

A refactor must reproduce it byte for byte; a deliberate output change regenerates it in the same
commit, with the reason in the commit message:

    .venv/bin/python -m tests.golden results-tiny > tests/golden/tiny.sha256
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny.sha256"

# Every promised-identical data file: Arrow datasets, shards, manifest, SentencePiece model and the
# stats/mixture/vocab JSON. Downloads (raw/), plots, logs and timings are not data.
DATA_DIRS = ("extracted", "clean", "rejected", "shards", "vocab/hf")
DATA_FILES = ("stats/languages.json", "stats/lid_udhr.json", "mixture/vocab.json", "mixture/mixture.json",
              "vocab/spm.model", "vocab/spm.vocab", "vocab/report.json")  # fmt: skip


def data_files(root: Path) -> list[Path]:
    found = [root / name for name in DATA_FILES if (root / name).is_file()]
    for name in DATA_DIRS:
        found += [p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(found)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in data_files(root)}


def format_list(found: dict[str, str]) -> str:
    return "".join(f"{sha}  {name}\n" for name, sha in sorted(found.items()))


def read_list(path: Path = GOLDEN) -> dict[str, str]:
    lines = (line.split("  ", 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {name: sha for sha, name in lines}


if __name__ == "__main__":
    sys.stdout.write(format_list(digests(Path(sys.argv[1]))))
