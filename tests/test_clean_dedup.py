"""The dedup key set and the batched text keys (same bytes as pipeline.splits.text_key)."""

from __future__ import annotations

import re
import sys

import numpy as np

from pipeline.dedup import KeySet, as_keys, text_keys
from pipeline.splits import text_key

TRICKY = [
    "Straße",  # casefold: ss
    "STRASSE",
    "ﬁle  name",  # NFKC ligature, double space
    " leading and trailing\t",
    "tab\tand\nnewline\r\nand\u00a0nbsp\u2003em\u3000ideographic",
    "\u2028line separator\u2029",
    "a\x1cb\x1dc\x1ed\x1fe",  # str.isspace() is true for these; re's \s too
    "Ǆ ǅ ǆ ΣΑΣ ς",
    "e\u0301 é",  # decomposed vs composed
    "",
    "   ",
    "日本語のテキスト",
    "¨ ´ ̈",  # NFKC introduces spaces
]


def test_text_keys_equal_splits_text_key():
    assert text_keys(TRICKY).tolist() == [text_key(t) for t in TRICKY]
    assert text_keys([]).shape == (0,)


def test_str_split_and_regex_whitespace_agree_on_every_code_point():
    # text_keys relies on " ".join(s.split()) == re.sub(r"\s+", " ", s).strip().
    space = re.compile(r"\s")
    assert all(
        bool(space.match(chr(c))) == chr(c).isspace() for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000
    )


def _keys(*words: str) -> np.ndarray:
    return text_keys(list(words))


def test_first_new_marks_first_occurrences_across_batches():
    seen = KeySet()
    assert seen.first_new(_keys("a", "b", "a", "c")).tolist() == [True, True, False, True]
    assert seen.first_new(_keys("c", "d", "d", "A")).tolist() == [False, True, False, False]
    assert len(seen) == 4
    assert seen.contains(_keys("a", "b", "c", "d", "e")).tolist() == [True, True, True, True, False]


def test_runs_merge_and_stay_sorted_and_disjoint():
    rng = np.random.default_rng(0)
    seen = KeySet()
    reference: set[bytes] = set()
    for _ in range(60):
        batch = as_keys([int(rng.integers(0, 500)).to_bytes(16, "big") for _ in range(int(rng.integers(1, 40)))])
        expected = []
        for key in batch.tolist():
            expected.append(key not in reference)
            reference.add(key)
        assert seen.first_new(batch).tolist() == expected
    assert len(seen) == len(reference)
    assert len(seen._runs) < 10  # merged geometrically, not one run per batch
    for run in seen._runs:
        assert (run[:-1] < run[1:]).all()
    seen.add(as_keys(sorted(reference)[:5]))  # re-adding known keys changes nothing
    assert len(seen) == len(reference)
