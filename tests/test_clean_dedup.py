"""The dedup key set, the batched text keys (same bytes as pipeline.splits.text_key), and partition reads."""

from __future__ import annotations

import re
import sys

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from pipeline import clean
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


def _batched_file(path, sizes: list[int], dictionary: bool = False) -> pa.Table:
    """An Arrow IPC file whose record batches have the given row counts (zero-row batches included)."""
    n = sum(sizes)
    strings = pa.array([f"r{i % 3}" for i in range(n)], pa.string())
    table = pa.table({"n": pa.array(range(n), pa.int64()), "s": strings.dictionary_encode() if dictionary else strings})
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        offset = 0
        batch = table.combine_chunks().to_batches()[0]
        for size in sizes:
            writer.write_batch(batch.slice(offset, size))
            offset += size
    return table


@pytest.mark.parametrize("dictionary", [False, True], ids=["plain", "dictionary-batches"])
def test_read_rows_gives_every_range_across_uneven_batches(tmp_path, dictionary):
    path = tmp_path / "rows.arrow"
    table = _batched_file(path, [3, 1, 0, 5, 4, 0], dictionary)
    assert (clean._file_layout(str(path)).offsets is None) == dictionary  # dictionaries: through the file reader
    for start in range(0, 14):
        for stop in range(start, 15):
            got = clean.read_rows(str(path), start, stop, ["n"])
            assert got.column("n").to_pylist() == list(range(start, min(stop, 13))), (start, stop)
    got = clean.read_rows(str(path), 2, 6)
    assert got.schema == table.schema and got.to_pylist() == table.slice(2, 4).to_pylist()
    _batched_file(path, [2, 2], dictionary)  # rewritten in place: the cached layout of the old file is not used
    assert clean.read_rows(str(path), 0, 10).column("n").to_pylist() == [0, 1, 2, 3]


def test_reading_every_partition_reads_each_batch_about_once(tmp_path, monkeypatch):
    """Batch offsets are kept: partitions do not rescan the file from its first batch (quadratic)."""
    path = tmp_path / "many.arrow"
    _batched_file(path, [10] * 200)
    reads = []

    class CountingReader:
        def __init__(self, reader):
            self._reader = reader

        def __getattr__(self, name):
            return getattr(self._reader, name)

        def get_batch(self, i):
            reads.append(i)
            return self._reader.get_batch(i)

    open_file, read_message = ipc.open_file, ipc.read_message
    monkeypatch.setattr(clean.ipc, "open_file", lambda source: CountingReader(open_file(source)))
    monkeypatch.setattr(clean.ipc, "read_message", lambda source: reads.append(-1) or read_message(source))
    rows = [n for start in range(0, 2000, 25) for n in clean.read_rows(str(path), start, start + 25, ["n"])
            .column("n").to_pylist()]  # fmt: skip
    assert rows == list(range(2000))
    # One pass over the 201 messages to find the offsets, then each of 80 partitions reads the 3 or 4
    # batches it overlaps (a rescan from the first batch would read ~100 a partition).
    assert len(reads) <= 202 + 80 * 4, len(reads)
