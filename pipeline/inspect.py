"""``python -m pipeline inspect PATH``: what is in any Polyforge Arrow dataset, or a folder of them.

Works on extracted monolingual/parallel files, clean and rejected files (monolingual and pairs), a shard
file or a directory of shards: the schema, rows (and tokens, for token-id datasets) per language and
split, and the first N rows, with token ids decoded back to text by the SentencePiece model (``--spm``, or
``<root>/vocab/spm.model`` found by walking up from PATH). Counting streams record batches, so it is
cheap on big files. ``--format json`` prints the same as one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schemas
from pipeline.arrow_io import iter_batches, read_schema, sha256_file
from pipeline.errors import PolyforgeError

TOKEN_COLUMNS = {"input_ids": "text", "src_ids": "src_text", "tgt_ids": "tgt_text"}  # ids -> decoded column
TEXT_LIMIT = 300  # characters of a text cell shown in text format
IDS_LIMIT = 24  # ids of a token column shown in text format


class InspectError(PolyforgeError, ValueError):
    """A path that is not a readable Arrow dataset, named in the message."""


# Column signatures for files without Polyforge metadata, most specific first.
_FALLBACK_KINDS = (
    ("mlm_shard", {"input_ids"}),
    ("tlm_shard", {"src_ids", "tgt_ids"}),
    ("rejected_parallel", {"src_text", "tgt_text", "reason"}),
    ("clean_parallel", {"src_text", "tgt_text", "src_lid_prob"}),
    ("parallel", {"src_text", "tgt_text"}),
    ("rejected", {"text", "reason"}),
    ("clean", {"text", "lid_label"}),
    ("monolingual", {"text"}),
)


def dataset_kind(schema: pa.Schema) -> str:
    """The kind in the schema's metadata, else guessed from its column names ('unknown' if nothing fits)."""
    kind = schemas.kind_of(schema)
    if kind:
        return kind
    names = set(schema.names)
    return next((k for k, needed in _FALLBACK_KINDS if needed <= names), "unknown")


def arrow_files(path: Path) -> list[Path]:
    """The file itself, or every finished ``*.arrow`` under a directory (hidden temp files skipped)."""
    if not path.exists():
        raise InspectError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.arrow") if not p.name.startswith("."))
    if not files:
        raise InspectError(f"{path}: directory holds no .arrow files")
    return files


def open_schema(path: Path) -> pa.Schema:
    try:
        return read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InspectError(f"{path}: not an Arrow IPC file ({exc})") from None


def find_spm(path: Path) -> Path | None:
    """``vocab/spm.model`` of the output root: the first ancestor of PATH holding ``shards/`` or ``vocab/``."""
    for folder in [path if path.is_dir() else path.parent, *path.resolve().parents]:
        if (folder / "vocab").is_dir() or (folder / "shards").is_dir():
            model = folder / "vocab" / "spm.model"
            return model if model.is_file() else None
    return None


def manifest_mismatch(path: Path, model: Path) -> str | None:
    """A note when the shards manifest nearest above PATH records another SentencePiece model than ``model``."""
    for folder in [path if path.is_dir() else path.parent, *path.resolve().parents]:
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                expected = (json.loads(manifest.read_text(encoding="utf-8")).get("spm_model") or {}).get("sha256")
            except (json.JSONDecodeError, AttributeError):
                return None
            if expected and sha256_file(model) != expected:
                return f"{model} is not the model {manifest} was encoded with: ids not decoded (give --spm)"
            return None
    return None


def language_key(batch: pa.RecordBatch) -> pa.Array:
    """Per row: ``lang`` or ``src-tgt``; '?' where the dataset has no language column."""
    names = batch.schema.names
    if "lang" in names:
        return batch.column("lang")
    if "src_lang" in names and "tgt_lang" in names:
        return pc.binary_join_element_wise(batch.column("src_lang"), batch.column("tgt_lang"), "-")
    return pa.array(["?"] * batch.num_rows, pa.string())


def row_tokens(batch: pa.RecordBatch, token_columns: list[str]) -> pa.Array:
    """Non-padding ids per row, summed over the token columns."""
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for name in token_columns:
        column = batch.column(name)
        not_pad = pc.not_equal(pc.list_flatten(column), schemas.PAD).to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(column).to_numpy()
        total += np.bincount(parents, weights=not_pad, minlength=batch.num_rows).astype(np.int64)
    return pa.array(total)


@dataclass
class KindSummary:
    """Everything reported about the files of one kind."""

    kind: str
    schema: pa.Schema
    files: list[Path] = field(default_factory=list)
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=lambda: defaultdict(dict))
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def token_columns(self) -> list[str]:
        return [c for c in TOKEN_COLUMNS if c in self.schema.names]

    def add_batch(self, batch: pa.RecordBatch, want_samples: int) -> None:
        langs = language_key(batch)
        splits = batch.column("split") if "split" in batch.schema.names else pa.array(["?"] * batch.num_rows)
        columns = {"lang": langs, "split": splits, "rows": pa.array([1] * batch.num_rows, pa.int64())}
        if self.token_columns:
            columns["tokens"] = row_tokens(batch, self.token_columns)
        sums = [(name, "sum") for name in columns if name in ("rows", "tokens")]
        grouped = pa.table(columns).group_by(["lang", "split"]).aggregate(sums)
        for row in grouped.to_pylist():
            slot = self.counts[row["lang"]].setdefault(row["split"], {"rows": 0} | ({"tokens": 0} if sums[1:] else {}))
            slot["rows"] += row["rows_sum"]
            if "tokens_sum" in row:
                slot["tokens"] += row["tokens_sum"]
        if len(self.samples) < want_samples:
            self.samples += batch.slice(0, want_samples - len(self.samples)).to_pylist()

    def totals(self) -> dict[str, int]:
        result = {"rows": 0} | ({"tokens": 0} if self.token_columns else {})
        for splits in self.counts.values():
            for slot in splits.values():
                for key in result:
                    result[key] += slot.get(key, 0)
        return result


def summarize(path: Path, rows: int) -> list[KindSummary]:
    """One summary per dataset kind under PATH (a shards dir holds both mlm and tlm shards)."""
    summaries: dict[str, KindSummary] = {}
    for file in arrow_files(path):
        schema = open_schema(file)
        kind = dataset_kind(schema)
        summary = summaries.setdefault(kind, KindSummary(kind, schema))
        summary.files.append(file)
        try:
            for batch in iter_batches(file):
                summary.add_batch(batch, rows)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InspectError(f"{file}: cannot read record batches ({exc})") from None
    return [summaries[k] for k in sorted(summaries)]


def decode_samples(summary: KindSummary, sp: Any) -> None:
    """Add ``<column>_text`` beside every token column of the sample rows."""
    for row in summary.samples:
        for name in summary.token_columns:
            row[TOKEN_COLUMNS[name]] = decode_ids(sp, row[name])


def decode_ids(sp: Any, ids: list[int]) -> str:
    """Text of the ids, with each end-of-sentence shown as ``</s>`` (sentencepiece's decode drops it)."""
    eos, pieces, current = sp.eos_id(), [], []
    for i in ids:
        if i == eos:
            pieces.append(sp.decode(current) + " </s>")
            current = []
        elif i != schemas.PAD:
            current.append(i)
    if current:
        pieces.append(sp.decode(current))
    return " ".join(pieces)


def load_spm(path: Path) -> Any:
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise InspectError(f"{path}: not a SentencePiece model ({exc})") from None


def inspect_path(path: str | Path, rows: int = 3, spm_model: str | Path | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict: per kind, schema, counts per language and split, decoded samples."""
    path = Path(path)
    summaries = summarize(path, rows)
    needs_spm = any(s.token_columns for s in summaries)
    model = Path(spm_model) if spm_model else (find_spm(path) if needs_spm else None)
    notes = []
    if needs_spm and model is None:
        notes.append(f"no SentencePiece model found above {path} (give --spm): token ids are not decoded")
    elif needs_spm and not spm_model and (mismatch := manifest_mismatch(path, model)):
        notes.append(mismatch)  # a retrained vocabulary would decode old shards into plausible-looking nonsense
    elif needs_spm:
        sp = load_spm(model)
        for summary in summaries:
            decode_samples(summary, sp)
    return {
        "path": str(path),
        "spm_model": str(model) if model else None,
        "notes": notes,
        "datasets": [
            {
                "kind": s.kind,
                "files": [str(f) for f in s.files],
                "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in s.schema],
                "totals": s.totals(),
                "by_language_split": {lang: dict(sorted(v.items())) for lang, v in sorted(s.counts.items())},
                "samples": s.samples,
            }
            for s in summaries
        ],
    }


# ---------------------------------------------------------------- text output


def shorten(value: Any) -> str:
    if isinstance(value, list) and len(value) > IDS_LIMIT:
        return f"[{', '.join(map(str, value[:IDS_LIMIT]))}, ...] ({len(value)} ids)"
    if isinstance(value, list):
        return f"{value} ({len(value)} ids)"
    text = str(value)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + f"... ({len(text)} chars)"


def table_lines(counts: Mapping[str, Mapping[str, Mapping[str, int]]], with_tokens: bool) -> Iterable[str]:
    header = f"  {'language':<12} {'split':<6} {'rows':>10}" + (f" {'tokens':>12}" if with_tokens else "")
    yield header
    for lang, splits in counts.items():
        for split, slot in splits.items():
            line = f"  {lang:<12} {split:<6} {slot['rows']:>10}"
            yield line + (f" {slot['tokens']:>12}" if with_tokens else "")


def render_text(report: Mapping[str, Any]) -> str:
    lines = [f"path: {report['path']}"]
    if report["spm_model"]:
        lines.append(f"SentencePiece model: {report['spm_model']}")
    lines += [f"note: {note}" for note in report["notes"]]
    for ds in report["datasets"]:
        with_tokens = "tokens" in ds["totals"]
        lines += ["", f"kind: {ds['kind']}  ({len(ds['files'])} file(s))", "schema:"]
        lines += [f"  {f['name']}: {f['type']}{'' if f['nullable'] else ' not null'}" for f in ds["schema"]]
        totals = ", ".join(f"{k} {v}" for k, v in ds["totals"].items())
        lines += [f"total: {totals}", "by language and split:", *table_lines(ds["by_language_split"], with_tokens)]
        lines.append(f"first {len(ds['samples'])} row(s):")
        for i, row in enumerate(ds["samples"]):
            lines.append(f"  [{i}]")
            lines += [f"    {name}: {shorten(value)}" for name, value in row.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI


def inspect_main(args: argparse.Namespace) -> int:
    try:
        report = inspect_path(args.path, rows=args.rows, spm_model=args.spm)
    except InspectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="schema, counts and sample rows of an Arrow dataset",
                                   description=__doc__)  # fmt: skip
    parser.add_argument("path", type=Path, help="an .arrow file or a directory of them")
    parser.add_argument("--rows", type=int, default=3, help="sample rows to show (the first N; default 3)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--spm", type=Path, default=None, help="SentencePiece model to decode token ids with")
    parser.set_defaults(handler=inspect_main)
