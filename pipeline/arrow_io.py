"""Streaming, atomic reading and writing of Arrow IPC files and small JSON outputs.

Writers go to a hidden temp file beside the target and rename it only when closed cleanly,
so an interrupted rule never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

DEFAULT_BATCH_ROWS = 4096


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it onto ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ArrowWriter:
    """Write rows, tables or record batches of one schema to an Arrow IPC file, atomically.

    Whatever the caller passes is re-cut into record batches of exactly ``batch_rows`` rows
    (the last may be shorter), so files made from the same rows have the same bytes however
    the caller chunked them.  Tables and batches stay columnar: no trip through Python objects.
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema, batch_rows: int = DEFAULT_BATCH_ROWS):
        self.path = Path(path)
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows_written = 0
        self._rows: list[dict[str, Any]] = []
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._ctx = atomic_path(self.path)
        self._sink = pa.OSFile(str(self._ctx.__enter__()), "wb")
        self._writer = ipc.new_file(self._sink, schema)

    def write_row(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.batch_rows:
            self._rows_to_table()

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.write_row(row)

    def write_table(self, table: pa.Table) -> None:
        """Append a table (its columns are taken by name, in the schema's order)."""
        self._rows_to_table()
        if table.num_rows:
            self._append(pa.Table.from_arrays([table.column(n) for n in self.schema.names], schema=self.schema))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self.write_table(pa.Table.from_batches([batch]))

    def _rows_to_table(self) -> None:
        if self._rows:
            table = pa.Table.from_pylist(self._rows, schema=self.schema)
            self._rows = []
            self._append(table)

    def _append(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.batch_rows:
            self._emit(final=False)

    def _emit(self, final: bool) -> None:
        """Write every full batch of what is pending (and the rest too when ``final``)."""
        if not self._pending:
            return
        combined = pa.concat_tables(self._pending).combine_chunks()
        full = combined.num_rows if final else combined.num_rows // self.batch_rows * self.batch_rows
        for batch in combined.slice(0, full).to_batches(max_chunksize=self.batch_rows):
            self._writer.write_batch(batch)
        self.rows_written += full
        rest = combined.slice(full)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        self._rows_to_table()
        self._emit(final=True)
        self._writer.close()
        self._sink.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop everything written so far; the target is left as it was."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._sink.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> ArrowWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_table(path: str | os.PathLike[str], table: pa.Table, schema: pa.Schema | None = None) -> None:
    """Write a whole (small) table atomically."""
    with ArrowWriter(path, schema or table.schema) as writer:
        writer.write_table(table)


def iter_batches(path: str | os.PathLike[str], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream the record batches of an Arrow IPC file (memory-mapped, never loaded whole)."""
    with pa.memory_map(str(path), "r") as source:
        reader = ipc.open_file(source)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            yield batch.select(columns) if columns else batch


def iter_rows(path: str | os.PathLike[str], columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    for batch in iter_batches(path, columns):
        yield from batch.to_pylist()


def read_schema(path: str | os.PathLike[str]) -> pa.Schema:
    with pa.memory_map(str(path), "r") as source:
        return ipc.open_file(source).schema


def count_rows(path: str | os.PathLike[str]) -> int:
    with pa.memory_map(str(path), "r") as source:
        reader = ipc.open_file(source)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Read a whole file: only for small datasets (fixtures, stats, tests)."""
    with pa.memory_map(str(path), "r") as source:
        return ipc.open_file(source).read_all()


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write a matplotlib figure atomically and close it; no timestamp or software version in the PNG, so the
    same data gives the same bytes."""
    import matplotlib.pyplot as plt  # here, not at import: most readers of this module never plot

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically with sorted keys, so equal data gives equal bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
