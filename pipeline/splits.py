"""Train / valid / test, decided once, by a stable hash of a per-source group key.

A *group* is what must never straddle splits: a LibreOffice help page, a man page, a gettext
msgid, a UDHR article.  Every extractor gives each row a group key that is the same in every
language, so a page is wholly in one split in every language and every pair.  Valid and test
text is also kept out of train by exact normalized-text match (``text_key``), which the clean
stage applies, so boilerplate repeated across groups cannot leak.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of groups that go to valid and test; the salt changes the draw."""

    valid_fraction: float = 0.02
    test_fraction: float = 0.02
    salt: str = "polyforge"

    @classmethod
    def from_config(cls, config: dict) -> SplitConfig:
        section = config.get("splits", {})
        return cls(
            valid_fraction=float(section.get("valid_fraction", cls.valid_fraction)),
            test_fraction=float(section.get("test_fraction", cls.test_fraction)),
            salt=str(section.get("salt", cls.salt)),
        )


def _unit_interval(key: str) -> float:
    """Map a string to [0, 1) with a hash that is stable across processes and machines."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(group: str, config: SplitConfig) -> str:
    """The split of a group: the same answer for the same group and salt, forever."""
    u = _unit_interval(f"{config.salt}\x00{group}")
    if u < config.test_fraction:
        return "test"
    if u < config.test_fraction + config.valid_fraction:
        return "valid"
    return "train"


def normalize_for_match(text: str) -> str:
    """The form two texts share when they are 'the same text': NFKC, casefolded, spaces folded.

    ``str.split()`` folds every run of Unicode whitespace, like ``re.sub(r"\\s+", " ", ...).strip()``
    but without the regex engine: this runs once per row of the corpus.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_key(text: str) -> bytes:
    """16-byte key of the normalized text, for deduplication and decontamination."""
    return hashlib.blake2b(normalize_for_match(text).encode("utf-8"), digest_size=16).digest()
