"""Shards stage: clean text -> token-id shards for MLM (streams of bptt ids) and TLM (filtered pairs).

MLM: per language and split, every clean row is encoded with the joint SentencePiece model and followed
by </s> (XLM separates sentences with </s>); the concatenation is cut into rows of exactly ``shards.bptt``
ids. The last row of each (language, split) keeps the tail shorter than bptt rather than dropping it, so
a series holds exactly Σ (len(encode(text)) + 1) tokens. Rows never hold padding.

TLM: per clean pair file, both sides encoded; rows hold the ids without special tokens (training frames
them as ``</s> src </s></s> tgt </s>``, TLM_SPECIAL_TOKENS ids). A pair is kept when each side has
min_tokens..max_tokens ids, the longer side is at most max_len_ratio × the shorter, src + tgt + specials
≤ max_total_tokens, and its exact (src ids, tgt ids) was not kept before from the same pair file. Each
rejected pair is counted under the first reason it fails (REJECT_REASONS order).

Splits come from the clean rows' ``split`` column (pipeline.splits decided them at extraction, and the
clean stage decontaminated train), so shards follow them and never invent their own.

Outputs: ``{shards}/mlm/{split}/{lang}-{i:05d}.arrow``, ``{shards}/tlm/{split}/{src}-{tgt}-{i:05d}.arrow``
(at most ``shards.max_shard_rows`` rows each), then ``{shards}/manifest.json`` last. Record batches are cut
from the token stream at fixed sizes, so shard bytes do not depend on how the inputs were batched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import sentencepiece as spm
from tqdm import tqdm

from pipeline import config as pfconfig
from pipeline import manifest, schemas
from pipeline.arrow_io import ArrowWriter, read_schema, sha256_file
from pipeline.dedup import KeySet, as_keys
from pipeline.errors import PolyforgeError
from pipeline.logs import stage_logging
from pipeline.schemas import EOS, PAD

BATCH_ROWS = 1024  # rows per record batch inside a shard file
TLM_SPECIAL_TOKENS = 4  # </s> src </s></s> tgt </s>
REJECT_REASONS = (
    "wrong_languages",
    "src_too_short",
    "tgt_too_short",
    "src_too_long",
    "tgt_too_long",
    "length_ratio",
    "total_too_long",
    "duplicate",
)

LOG = logging.getLogger(__name__)


class ShardsError(PolyforgeError, ValueError):
    """Input the shard stage cannot use, naming the file or config key."""


# ---------------------------------------------------------------- writing


SPM_META_KEY = b"polyforge.spm_sha256"


def stamped(schema: pa.Schema, spm_sha256: str) -> pa.Schema:
    """The shard schema with the SentencePiece model's sha256 in its metadata.

    Snakemake deletes a rule's declared output (the manifest) before rerunning it, so the shard files
    themselves carry the vocabulary they were encoded with; that is what the vocabulary check reads
    when no manifest is left.
    """
    return schema.with_metadata({**(schema.metadata or {}), SPM_META_KEY: spm_sha256.encode()})


@dataclass
class ShardRecord:
    """One finished shard file, as the manifest lists it (path relative to the shards dir)."""

    path: str
    kind: str
    split: str
    languages: list[str]
    rows: int
    tokens: int


def count_tokens(column: pa.Array) -> int:
    """Non-padding ids in a list<int> column."""
    flat = pc.list_flatten(column)
    return int(len(flat) - pc.sum(pc.equal(flat, PAD)).as_py()) if len(flat) else 0


class ShardSeries:
    """Numbered shard files ``{prefix}-{i:05d}.arrow`` of one kind, split and language(s).

    A file is opened at its first batch and closed when it holds ``max_rows`` rows; producers ask
    ``room()`` for the size of the next batch so batches never straddle two files.
    """

    def __init__(self, shards_dir: Path, prefix: str, schema: pa.Schema, kind: str, split: str,
                 languages: list[str], max_rows: int, token_columns: Sequence[str]) -> None:  # fmt: skip
        self.shards_dir, self.prefix, self.schema = shards_dir, prefix, schema
        self.kind, self.split, self.languages = kind, split, languages
        self.max_rows, self.token_columns = max_rows, token_columns
        self.file_schema = schema
        self.records: list[ShardRecord] = []
        self._writer: ArrowWriter | None = None
        self._rows = 0
        self._tokens = 0

    def room(self) -> int:
        return min(BATCH_ROWS, self.max_rows - self._rows)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows > self.room():
            raise AssertionError(f"batch of {batch.num_rows} rows does not fit in {self.room()}")
        if self._writer is None:
            relative = f"{self.prefix}-{len(self.records):05d}.arrow"
            self._writer = ArrowWriter(self.shards_dir / relative, self.file_schema)
        self._writer.write_batch(batch)
        self._rows += batch.num_rows
        self._tokens += sum(count_tokens(batch.column(c)) for c in self.token_columns)
        if self._rows == self.max_rows:
            self._finish_file()

    def _finish_file(self) -> None:
        assert self._writer is not None
        self._writer.close()
        path = self._writer.path.relative_to(self.shards_dir).as_posix()
        self.records.append(ShardRecord(path, self.kind, self.split, self.languages, self._rows, self._tokens))
        self._writer, self._rows, self._tokens = None, 0, 0

    def close(self) -> None:
        if self._writer is not None:
            self._finish_file()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def list_array(offsets: np.ndarray, values: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int32()))


# ---------------------------------------------------------------- MLM


class TokenStream:
    """One (language, split) token stream, cut into rows of ``bptt`` ids and written to a shard series."""

    def __init__(self, series: ShardSeries, lang: str, bptt: int) -> None:
        self.series, self.lang, self.bptt = series, lang, bptt
        self.documents = 0
        self._pending: list[np.ndarray] = []
        self._pending_len = 0

    def extend(self, tokens: np.ndarray, documents: int) -> None:
        self._pending.append(tokens)
        self._pending_len += len(tokens)
        self.documents += documents
        while self._pending_len >= self.series.room() * self.bptt:  # a whole batch is ready
            self._emit_rows(self.series.room())

    def _take(self, n: int) -> np.ndarray:
        buffer = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = [buffer[n:]]
        self._pending_len -= n
        return buffer[:n]

    def _emit_rows(self, rows: int, tail: int = 0) -> None:
        values = self._take(rows * self.bptt + tail)
        offsets = np.arange(0, rows * self.bptt + 1, self.bptt, dtype=np.int32)
        if tail:
            offsets = np.append(offsets, len(values)).astype(np.int32)
        n = len(offsets) - 1
        batch = pa.RecordBatch.from_arrays(
            [pa.repeat(self.lang, n), pa.repeat(self.series.split, n), list_array(offsets, values)],
            schema=schemas.MLM_SHARD,
        )
        self.series.write(batch)

    def close(self) -> None:
        """Write the remaining full rows, then the tail shorter than bptt as one last row."""
        while self._pending_len >= self.bptt:
            self._emit_rows(min(self.series.room(), self._pending_len // self.bptt))
        if self._pending_len:
            self._emit_rows(0, tail=self._pending_len)
        self.series.close()


EOS_BYTES = np.int32(EOS).tobytes()


# A probe batch for the private sentencepiece call: scripts, normalization (NFKC, spaces), byte fallback,
# empty and whitespace-only text, control characters, a long text. The model's own pieces are added.
PROBE_TEXTS = (
    "The file was saved and can now be opened.",
    "Grüße aus Köln: ÄÖÜ äöü ß, ﬁle ①②, Ｆｕｌｌｗｉｄｔｈ",
    "Выберите Формат - Ячейки, чтобы изменить формат чисел.",
    "दस्तावेज़ को छापने के लिए इस बटन पर क्लिक करें।",
    "日本語のテキストと中文文本，한국어 텍스트",
    "emoji 🙂🚀 and rare 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ",
    "",
    "   ",
    "  leading\tand trailing  \n",
    "control \x01\x1f chars \u200b zero width",
    " ".join(["a long line of many words"] * 200),
)
PROBE_THREADS = 2
_PRIVATE_ENCODE_OK: weakref.WeakKeyDictionary[spm.SentencePieceProcessor, bool] = weakref.WeakKeyDictionary()


def _private_encode(sp: spm.SentencePieceProcessor, texts: list[str], threads: int) -> list[Any]:
    """The C++ batch call behind ``sp.encode(texts, return_type="numpy")``, without its per-text numpy wrapping.

    Arguments: input, num_threads, thread_pool, enable_sampling, nbest_size, alpha, add_bos, add_eos, reverse.
    """
    return sp._processor._EncodeAsBufferBatch(texts, threads, None, False, -1, 0.0, False, False, False)


def _public_encode(sp: spm.SentencePieceProcessor, texts: list[str], threads: int) -> list[np.ndarray]:
    return sp.encode(texts, return_type="numpy", num_threads=threads)


def probe_texts(sp: spm.SentencePieceProcessor) -> list[str]:
    """PROBE_TEXTS plus a text made of the model's own pieces (every 7th id, special ids left out)."""
    ids = [i for i in range(0, sp.get_piece_size(), 7) if not (sp.is_control(i) or sp.is_unknown(i))]
    return [*PROBE_TEXTS, sp.decode(ids)]


def check_private_encode(sp: spm.SentencePieceProcessor) -> bool:
    """Whether the private batch call gives the public ``encode``'s ids on the probe batch (remembered per processor).

    It is kept for speed only while it agrees; otherwise (another sentencepiece version, another meaning of an
    argument, a missing method) the stage logs why and encodes with the public call.
    """
    texts = probe_texts(sp)
    expected = _public_encode(sp, texts, PROBE_THREADS)
    try:
        got = [np.frombuffer(b, dtype=np.int32) for b in _private_encode(sp, texts, PROBE_THREADS)]
        if len(got) != len(expected):
            problem = f"{len(got)} results for {len(expected)} texts"
        else:
            problem = next(
                (f"ids {g[:8].tolist()}... for probe text {i} instead of {e[:8].tolist()}..."
                 for i, (g, e) in enumerate(zip(got, expected, strict=True)) if not np.array_equal(g, e)),
                None,
            )  # fmt: skip
    except (AttributeError, TypeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        LOG.info("shards: sentencepiece %s: the private batch encode matches the public encode on %d probe "
                    "texts; using it", spm.__version__, len(texts))  # fmt: skip
    else:
        LOG.warning("shards: sentencepiece %s: the private batch encode differs from the public encode on the "
                       "probe batch (%s); encoding with the public encode instead (slower, same ids)",
                       spm.__version__, problem)  # fmt: skip
    _PRIVATE_ENCODE_OK[sp] = ok = problem is None
    return ok


def encode_buffers(sp: spm.SentencePieceProcessor, texts: list[str], threads: int) -> list[Any]:
    """Each text's ids as an int32 buffer, without a Python int per id.

    ``sp.encode(texts, return_type="numpy")`` gets exactly these buffers from C++ and then wraps each in a
    numpy array in a Python loop; calling the same C++ method directly skips that loop. The private call is
    used only once ``check_private_encode`` found it equal to the public one for this processor (the stage
    checks when it loads the model; a processor never checked is checked here, once).
    """
    ok = _PRIVATE_ENCODE_OK.get(sp)
    if ok is None:
        ok = check_private_encode(sp)
    return _private_encode(sp, texts, threads) if ok else _public_encode(sp, texts, threads)


def join_with_eos(docs: Sequence[Any]) -> np.ndarray:
    """ids(doc1) </s> ids(doc2) </s> ...: every document followed by </s>, from int32 id buffers in one join."""
    return np.frombuffer(EOS_BYTES.join(docs) + EOS_BYTES, dtype=np.int32) if len(docs) else np.empty(0, np.int32)


def read_batches(path: str | os.PathLike[str], columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC file, each read into memory of its own (not memory-mapped).

    Every page of a memory map that was touched stays resident in this process until the map is closed,
    so streaming a whole clean file through one would make the stage's RSS grow with the file; a batch
    read into its own buffer is freed when the next one comes, and memory stays flat in corpus size.
    """
    with pa.OSFile(os.fspath(path), "r") as source:
        reader = ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i).select(list(columns))


SPLIT_VALUES = pa.array(schemas.SPLITS)


def split_codes(column: pa.Array, path: Path) -> np.ndarray:
    """The split of each row as its index in ``schemas.SPLITS`` (looked up in Arrow, not per row in Python);
    an unknown split is an error naming the file."""
    codes = pc.index_in(column, value_set=SPLIT_VALUES)
    if codes.null_count:
        unknown = sorted(set(pc.filter(column, pc.is_null(codes)).to_pylist()), key=lambda v: (v is None, str(v)))
        raise ShardsError(f"{path}: unknown split value(s) {unknown!r}; expected one of {schemas.SPLITS}")
    return codes.to_numpy(zero_copy_only=False)


def build_mlm_language(sp: spm.SentencePieceProcessor, lang: str, path: Path, shards_dir: Path,
                       scfg: Mapping[str, Any], threads: int, spm_sha256: str = "") -> list[ShardRecord]:  # fmt: skip
    """Stream one clean file into MLM shards for every split it holds."""
    streams: dict[str, TokenStream] = {}

    def stream_for(split: str) -> TokenStream:
        if split not in streams:
            series = ShardSeries(shards_dir, f"mlm/{split}/{lang}", stamped(schemas.MLM_SHARD, spm_sha256), "mlm",
                                 split, [lang], scfg["max_shard_rows"], ["input_ids"])  # fmt: skip
            streams[split] = TokenStream(series, lang, scfg["bptt"])
        return streams[split]

    try:
        for batch in tqdm(read_batches(path, ["split", "text"]), desc=f"mlm {lang}", unit="batch", disable=None):
            splits = split_codes(batch.column("split"), path)
            # Python lists with </s> appended by sentencepiece, flattened in one pass: cheaper than a numpy
            # array per row (the stage stays close to raw encode speed, see bench/bench_shards.py).
            encoded = encode_buffers(sp, batch.column("text").to_pylist(), threads)
            for code, split in enumerate(schemas.SPLITS):
                rows = np.flatnonzero(splits == code)
                if rows.size:
                    docs = encoded if rows.size == len(encoded) else [encoded[i] for i in rows]
                    stream_for(split).extend(join_with_eos(docs), int(rows.size))
        for split in sorted(streams):
            streams[split].close()
    except BaseException:
        for stream in streams.values():
            stream.series.abort()
        raise
    for split in sorted(streams):
        s = streams[split]
        LOG.info("shards: mlm %s/%s: %d documents -> %d rows", split, lang, s.documents,
                 sum(r.rows for r in s.series.records))  # fmt: skip
    return [r for split in sorted(streams) for r in streams[split].series.records]


# ---------------------------------------------------------------- TLM


@dataclass(frozen=True)
class TlmLimits:
    min_tokens: int
    max_tokens: int
    max_len_ratio: float
    max_total_tokens: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TlmLimits:
        t = cfg["shards"]["tlm"]
        return cls(t["min_tokens"], t["max_tokens"], float(t["max_len_ratio"]), t["max_total_tokens"])


def length_rejections(src_len: np.ndarray, tgt_len: np.ndarray, limits: TlmLimits) -> np.ndarray:
    """The first failing length rule of each pair ('' when it passes them all)."""
    longer, shorter = np.maximum(src_len, tgt_len), np.minimum(src_len, tgt_len)
    rules = [
        ("src_too_short", src_len < limits.min_tokens),
        ("tgt_too_short", tgt_len < limits.min_tokens),
        ("src_too_long", src_len > limits.max_tokens),
        ("tgt_too_long", tgt_len > limits.max_tokens),
        ("length_ratio", longer > limits.max_len_ratio * np.maximum(shorter, 1)),
        ("total_too_long", src_len + tgt_len + TLM_SPECIAL_TOKENS > limits.max_total_tokens),
    ]
    reasons = np.full(len(src_len), "", dtype=object)
    for reason, failed in reversed(rules):  # later rules first, so the earliest failing one wins
        reasons[failed] = reason
    return reasons


def id_counts(buffers: Sequence[Any]) -> np.ndarray:
    return np.fromiter((memoryview(b).nbytes // 4 for b in buffers), dtype=np.int64, count=len(buffers))


def pair_key(src: Any, tgt: Any) -> bytes:
    """16-byte key of the exact id sequences (length-prefixed, so the split point is part of it)."""
    digest = hashlib.blake2b(memoryview(src).nbytes.to_bytes(4, "little"), digest_size=16)
    digest.update(src)
    digest.update(tgt)
    return digest.digest()


def first_occurrences(candidates: list[int], src: Sequence[Any], tgt: Sequence[Any], seen: KeySet) -> list[int]:
    """The candidates whose exact (src, tgt) ids were not seen before, in order (``seen`` is updated).

    ``seen`` holds 16 bytes a kept pair (``pipeline.dedup.KeySet``), not a Python object per pair.
    """
    keys = as_keys([pair_key(src[i], tgt[i]) for i in candidates])
    return [i for i, new in zip(candidates, seen.first_new(keys).tolist(), strict=True) if new]


class PairRows:
    """Kept pairs of one (pair, split), written in batches of the size the series has room for."""

    def __init__(self, series: ShardSeries, src_lang: str, tgt_lang: str) -> None:
        self.series, self.src_lang, self.tgt_lang = series, src_lang, tgt_lang
        self._row_ids: list[str] = []
        self._src: list[Any] = []  # int32 id buffers
        self._tgt: list[Any] = []

    def extend(self, row_ids: list[str], src: list[Any], tgt: list[Any]) -> None:
        self._row_ids += row_ids
        self._src += src
        self._tgt += tgt
        while len(self._row_ids) >= self.series.room():
            self._emit(self.series.room())

    def _emit(self, n: int) -> None:
        row_ids, self._row_ids = self._row_ids[:n], self._row_ids[n:]
        src, self._src = self._src[:n], self._src[n:]
        tgt, self._tgt = self._tgt[:n], self._tgt[n:]
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(row_ids, pa.string()),
                pa.repeat(self.series.split, n),
                pa.repeat(self.src_lang, n),
                pa.repeat(self.tgt_lang, n),
                ids_column(src),
                ids_column(tgt),
            ],
            schema=schemas.TLM_SHARD,
        )
        self.series.write(batch)

    def close(self) -> None:
        while self._row_ids:
            self._emit(min(self.series.room(), len(self._row_ids)))
        self.series.close()


def ids_column(buffers: Sequence[Any]) -> pa.ListArray:
    """A list<int32> column from int32 id buffers, one per row."""
    offsets = np.zeros(len(buffers) + 1, dtype=np.int32)
    np.cumsum(id_counts(buffers), out=offsets[1:])
    return list_array(offsets, np.frombuffer(b"".join(buffers), dtype=np.int32))


@dataclass
class PairStats:
    read: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "rejected": {r: self.rejected.get(r, 0) for r in REJECT_REASONS}}


def build_tlm_pair(sp: spm.SentencePieceProcessor, src_lang: str, tgt_lang: str, path: Path, shards_dir: Path,
                   cfg: Mapping[str, Any], threads: int, spm_sha256: str = "") -> tuple[list[ShardRecord], PairStats]:  # fmt: skip
    """Stream one clean pair file into TLM shards for every split it holds; count rejects by reason."""
    limits, stats, seen = TlmLimits.from_config(cfg), PairStats(), KeySet()
    writers: dict[str, PairRows] = {}

    def writer_for(split: str) -> PairRows:
        if split not in writers:
            series = ShardSeries(shards_dir, f"tlm/{split}/{src_lang}-{tgt_lang}", stamped(schemas.TLM_SHARD, spm_sha256),
                                 "tlm", split, [src_lang, tgt_lang], cfg["shards"]["max_shard_rows"],
                                 ["src_ids", "tgt_ids"])  # fmt: skip
            writers[split] = PairRows(series, src_lang, tgt_lang)
        return writers[split]

    columns = ["row_id", "split", "src_lang", "tgt_lang", "src_text", "tgt_text"]
    try:
        for batch in tqdm(read_batches(path, columns), desc=f"tlm {src_lang}-{tgt_lang}", unit="batch", disable=None):
            splits = split_codes(batch.column("split"), path)
            src = encode_buffers(sp, batch.column("src_text").to_pylist(), threads)
            tgt = encode_buffers(sp, batch.column("tgt_text").to_pylist(), threads)
            reasons = length_rejections(id_counts(src), id_counts(tgt), limits)
            wrong = pc.or_(pc.not_equal(batch.column("src_lang"), src_lang),
                           pc.not_equal(batch.column("tgt_lang"), tgt_lang))  # fmt: skip
            reasons[np.asarray(wrong.to_numpy(zero_copy_only=False), dtype=bool)] = "wrong_languages"
            row_ids = batch.column("row_id").to_pylist()
            kept = first_occurrences(np.flatnonzero(reasons == "").tolist(), src, tgt, seen)
            reasons[np.setdiff1d(np.flatnonzero(reasons == ""), kept)] = "duplicate"
            stats.read += batch.num_rows
            stats.kept += len(kept)
            stats.rejected.update(r for r in reasons.tolist() if r)
            kept_splits = splits[kept]
            for code, split in enumerate(schemas.SPLITS):
                rows = [kept[i] for i in np.flatnonzero(kept_splits == code)]
                if rows:
                    writer_for(split).extend([row_ids[i] for i in rows], [src[i] for i in rows], [tgt[i] for i in rows])
        for split in sorted(writers):
            writers[split].close()
    except BaseException:
        for w in writers.values():
            w.series.abort()
        raise
    LOG.info("shards: tlm %s-%s: %s", src_lang, tgt_lang, stats.as_dict())
    return [r for split in sorted(writers) for r in writers[split].series.records], stats


def configured_pair(stem: str, languages: Iterable[str]) -> tuple[str, str] | None:
    """(src, tgt) when a pair file name ``{src}-{tgt}`` names two configured languages (codes may hold '-')."""
    try:
        return pfconfig.parse_pair(stem, languages)
    except ValueError:
        return None


# ---------------------------------------------------------------- stage


def load_processor(spm_model: str | os.PathLike[str]) -> spm.SentencePieceProcessor:
    """The stage's SentencePiece model, its special ids checked, and its private batch encode probed."""
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    if sp.eos_id() != EOS or sp.pad_id() != PAD:
        raise ShardsError(f"{spm_model}: expected pad id {PAD} and eos id {EOS}, found {sp.pad_id()} and {sp.eos_id()}")
    check_private_encode(sp)
    return sp


def check_shard_vocabulary(shards_dir: Path, spm_sha256: str) -> None:
    """Refuse when shard files already in ``shards_dir`` were encoded with another SentencePiece model."""
    for kind in ("mlm", "tlm"):
        for path in sorted((shards_dir / kind).rglob("*.arrow")):
            try:
                meta = read_schema(path).metadata or {}
            except (OSError, pa.ArrowInvalid):
                continue  # an unreadable leftover is removed by the reset below
            old = meta.get(SPM_META_KEY, b"").decode()
            if old and old != spm_sha256:
                raise manifest.ManifestError(
                    f"{path}: this shard was encoded with a SentencePiece model of sha256 {old}, but the model "
                    f"given now has sha256 {spm_sha256}: the vocabulary changed. Delete the shards directory "
                    f"{shards_dir} to rebuild every shard with the new model (shards are never mixed)."
                )


# Atomic scheme: every shard file is written to a hidden temp name and renamed when complete
# (ArrowWriter), and the manifest, the rule's declared output, is written last and removed first.
# So a SIGKILL can leave complete shard files of an unfinished build, but never a manifest, and
# nothing reads shards except through the manifest; a rerun resets the folders and rebuilds. This
# keeps the shards dir path stable (no directory rename over a folder users may hold open).
def reset_shards_dir(shards_dir: Path) -> None:
    """Remove the manifest first (it marks a finished build), then old shards (a config change may leave extras)."""
    (shards_dir / manifest.MANIFEST_NAME).unlink(missing_ok=True)
    for kind in ("mlm", "tlm"):
        shutil.rmtree(shards_dir / kind, ignore_errors=True)
        (shards_dir / kind).mkdir(parents=True, exist_ok=True)


def run_shards_stage(
    cfg: Mapping[str, Any],
    clean_paths: Mapping[str, str | os.PathLike[str]],
    pair_paths: Iterable[str | os.PathLike[str]],
    spm_model: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Encode clean files (``{lang: path}``) and clean pair files into shards beside ``manifest_path`` (the
    rule's declared output, ``shards/manifest.json``: mlm/ and tlm/ go into its folder); return the manifest.

    ``cfg`` is ``pipeline.config.shards_slice``: the config the manifest records. Refuses (ShardsError) when
    the folder already has a manifest or shards made with another SentencePiece model.
    """
    manifest_path = Path(manifest_path)
    if manifest_path.name != manifest.MANIFEST_NAME:
        raise ShardsError(f"{manifest_path}: the shards manifest must be named {manifest.MANIFEST_NAME}")
    shards_dir = manifest_path.parent
    with stage_logging(log):
        spm_sha256 = sha256_file(spm_model)
        try:
            manifest.check_vocabulary(manifest_path, spm_sha256)
            check_shard_vocabulary(shards_dir, spm_sha256)
        except manifest.ManifestError as exc:
            raise ShardsError(str(exc)) from None
        sp = load_processor(spm_model)
        reset_shards_dir(shards_dir)
        records: list[ShardRecord] = []
        for lang in sorted(clean_paths):
            if lang not in cfg["languages"]:
                LOG.warning("shards: %s: language %r is not in config; skipped", clean_paths[lang], lang)
                continue
            records += build_mlm_language(sp, lang, Path(clean_paths[lang]), shards_dir, cfg["shards"], threads,
                                          spm_sha256)  # fmt: skip
        tlm_stats: dict[str, dict[str, Any]] = {}
        skipped: list[str] = []
        for path in sorted(Path(p) for p in pair_paths):
            pair = configured_pair(path.name.removesuffix(".arrow"), cfg["languages"])
            if pair is None:
                LOG.warning("shards: %s: pair languages are not both in config; skipped", path)
                skipped.append(path.name)
                continue
            pair_records, stats = build_tlm_pair(sp, *pair, path, shards_dir, cfg, threads, spm_sha256)
            records += pair_records
            tlm_stats["-".join(pair)] = stats.as_dict()
        result = manifest.build_manifest(shards_dir, [r.__dict__ for r in records], spm_model, spm_sha256, cfg,
                                         {"pairs": tlm_stats, "skipped_files": skipped})  # fmt: skip
        manifest.write_manifest(manifest_path, result)
        LOG.info("shards: wrote %d shards and %s", len(records), manifest_path)
    return result
