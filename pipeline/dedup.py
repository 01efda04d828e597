"""Exact deduplication state: a set of 16-byte text keys (``splits.text_key``), 16 bytes a key.

The set is the one structure of the clean stage that grows with the corpus.  It is held as sorted
numpy runs of fixed-width bytes (no Python object per key) and merged like an LSM tree, so lookups
stay O(log n) per run and memory stays at ~16 bytes a key (plus the run being merged, while it merges).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.splits import text_key

KEY_DTYPE = "S16"


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """``pipeline.splits.text_key`` of every text, as a key array."""
    return as_keys([text_key(t) for t in texts])


def as_keys(digests: list[bytes]) -> np.ndarray:
    """A key array from a list of 16-byte digests (an empty list gives an empty array)."""
    return np.array(digests, dtype=KEY_DTYPE).reshape(len(digests))


class KeySet:
    """A set of 16-byte keys held as sorted numpy runs."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            idx = np.minimum(np.searchsorted(run, keys), len(run) - 1)
            found |= run[idx] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        """Add keys (repeats and keys already held are ignored)."""
        keys = np.unique(keys)
        self._add_new(keys[~self.contains(keys)])

    def _add_new(self, keys: np.ndarray) -> None:
        """Add sorted keys that are all new; merge a run into its neighbour once that is at most twice as big.

        Runs are disjoint, so a merge is one sorted insertion: peak memory is the set plus the merged run.
        """
        if len(keys) == 0:
            return
        self._runs.append(keys)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last = self._runs.pop()
            self._runs[-1] = np.insert(self._runs[-1], np.searchsorted(self._runs[-1], last), last)

    def first_new(self, keys: np.ndarray) -> np.ndarray:
        """Mask of the keys seen neither before nor earlier in ``keys``; adds them to the set."""
        first = np.zeros(len(keys), dtype=bool)
        if len(keys):
            first[np.unique(keys, return_index=True)[1]] = True
        new = first & ~self.contains(keys)
        self._add_new(np.sort(keys[new]))
        return new
