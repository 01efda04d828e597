"""The clean stage: normalize, filter, language-ID and deduplicate extracted rows, on Dask.

Work is split into *partitions*: fixed row ranges (``clean.partition_rows``) of each input file,
never derived from the worker count.  A task opens its file (memory-mapped), cleans and LIDs
its rows with vectorized Arrow kernels and one batched fastText call, and returns the kept and
rejected rows plus integer counts.  The driver takes results strictly in partition order (with a
bounded number in flight, so memory stays bounded), applies decontamination and exact dedup in
that order, and appends to the outputs.  So bytes are the same for 1 worker, 2 workers or an
external scheduler.

Order of the rules for one row (the first that fires is its reason):
too-long (raw length, before any work) → too-short → too-long → encoding (U+FFFD) → symbols →
lid-mismatch / lid-low-confidence → eval-overlap (train rows only) → duplicate.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from pipeline import config as pfconfig
from pipeline import langs, lid, schemas, stats
from pipeline.arrow_io import ArrowWriter, count_rows, write_json
from pipeline.dedup import KeySet, as_keys, text_keys
from pipeline.logs import stage_logging

LOG = logging.getLogger("pipeline.clean")

# A raw line longer than this many times max_chars is rejected before it is even normalized:
# whitespace folding cannot bring it under the bound, and a 5 MB line must cost nothing.
RAW_LENGTH_FACTOR = 8
# C0/C1 control characters except whitespace (\t \n \v \f \r, NEL), which is folded instead; BOM and
# noncharacters too.  Zero-width (non-)joiners are kept: Indic and Arabic-script text needs them.
_CONTROL = r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\x{feff}\x{fffe}\x{ffff}]"
_SPACE_RUN = r"[\t-\r \x{85}\p{Z}]+"
# Rows that need folding at all: whitespace other than a plain space (\p{Z} spelled out), or two in a row.
_ODD_SPACE = r"[\t-\r\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]|  "
_MARKUP = r"<[^<>]{0,200}>|&[#\w]{1,10};"
_NON_LETTER = r"[^\p{L}\p{M} ]"  # after folding, " " is the only whitespace left
_REPLACEMENT = "\ufffd"
POS = "_pos"  # row position in its input file: rejected rows are written back in input order


class CleanError(RuntimeError):
    """The clean stage cannot give a usable result (e.g. a required language lost every row)."""


@dataclass(frozen=True)
class Rules:
    """Row-level bounds from config["clean"]."""

    min_chars: int
    max_chars: int
    min_words: int
    max_words: int
    max_symbol_ratio: float
    max_replacement_ratio: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Rules:
        c = cfg["clean"]
        return cls(
            int(c["min_chars"]),
            int(c["max_chars"]),
            int(c["min_words"]),
            int(c["max_words"]),
            float(c["max_symbol_ratio"]),
            float(c["max_replacement_ratio"]),
        )


@dataclass(frozen=True)
class LangSpec:
    """How rows of one language are judged: word unit and LID expectation."""

    code: str
    unspaced: bool
    lid_expected: str | None  # None: this language skips LID (config `lid: false`)
    threshold: float


@dataclass(frozen=True)
class Partition:
    kind: str  # "mono" | "pair"
    group: str  # language code or "src-tgt"
    path: str
    start: int
    stop: int


def lang_specs(cfg: dict[str, Any]) -> dict[str, LangSpec]:
    overrides = cfg["lid"].get("labels") or {}
    default = float(cfg["lid"]["threshold"])
    specs = {}
    for code, options in cfg["languages"].items():
        enabled = options.get("lid", True) is not False
        specs[code] = LangSpec(
            code=code,
            unspaced=langs.is_unspaced(code),
            lid_expected=lid.expected_label(code, overrides) if enabled else None,
            threshold=float(options.get("lid_threshold", default)),
        )
    return specs


# --------------------------------------------------------------------------- text rules (vectorized)


def repair_utf8(texts: pa.Array) -> tuple[pa.Array, int]:
    """Replace invalid UTF-8 (which an Arrow file can hold) by U+FFFD; return the count of rows changed."""
    try:
        texts.validate(full=True)
        return texts, 0
    except pa.ArrowInvalid:
        pass
    raw = texts.cast(pa.binary()).to_pylist()
    fixed = [None if b is None else b.decode("utf-8", errors="replace") for b in raw]
    changed = sum(1 for b, t in zip(raw, fixed, strict=True) if b is not None and b != t.encode("utf-8"))
    return pa.array(fixed, pa.string()), changed


def _where(texts: pa.Array, mask: pa.Array, transform) -> pa.Array:
    """``transform`` applied to the rows of ``mask`` only (most rows need no work: skip them cheaply)."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return texts
    return pc.replace_with_mask(texts, mask, transform(texts.filter(mask)))


def normalize_texts(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, dict[str, int]]:
    """Valid UTF-8, control characters removed (counted), NFC, whitespace runs folded to one space, trimmed."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    texts, invalid = repair_utf8(texts)
    controls = pc.count_substring_regex(texts, _CONTROL)
    counts = {
        "invalid_utf8_rows": invalid,
        "control_chars_removed": int(pc.sum(controls).as_py() or 0),
        "nul_removed": int(_on_rows(texts, _np(controls) > 0, lambda t: pc.count_substring(t, "\x00")).sum()),
    }
    out = _where(texts, pc.greater(controls, 0), lambda t: pc.replace_substring_regex(t, _CONTROL, ""))
    out = _where(out, pc.invert(pc.string_is_ascii(out)), lambda t: pc.utf8_normalize(t, "NFC"))
    out = _where(
        out, pc.match_substring_regex(out, _ODD_SPACE), lambda t: pc.replace_substring_regex(t, _SPACE_RUN, " ")
    )
    return pc.utf8_trim(out, " "), counts


def _np(array: pa.Array) -> np.ndarray:
    return array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def _bool(array: pa.Array) -> np.ndarray:
    return array.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _on_rows(texts: pa.Array, rows: np.ndarray, count) -> np.ndarray:
    """``count`` (an integer kernel) on the rows of the boolean mask ``rows``, zero elsewhere."""
    out = np.zeros(len(texts), dtype=np.int64)
    if rows.any():
        out[rows] = _np(count(texts.filter(pa.array(rows))))
    return out


@dataclass
class RuleResult:
    """What the text rules say about a column of rows."""

    text: pa.Array  # cleaned text; the raw (UTF-8-repaired) text for rows too long to clean
    reasons: np.ndarray  # object array: None (passes) or the reason
    chars: np.ndarray
    words: np.ndarray  # whitespace words, or characters for unspaced scripts
    counts: dict[str, int]


def rule_reasons(raw: pa.Array, rules: Rules, unspaced: bool) -> RuleResult:
    """Clean a column of texts and give each row the first rule it fails (too-long is checked first)."""
    raw_len = _np(pc.utf8_length(raw))
    huge = raw_len > rules.max_chars * RAW_LENGTH_FACTOR
    huge_mask = pa.array(huge)
    if huge.any():
        raw, _ = repair_utf8(raw)  # kept as it came in (made valid): never normalized nor shown to LID
        text, counts = normalize_texts(pc.if_else(huge_mask, "", raw))
        text = pc.if_else(huge_mask, raw, text)
    else:
        text, counts = normalize_texts(raw)
    chars = np.where(huge, raw_len, _np(pc.utf8_length(text)))
    spaces = _np(pc.count_substring(text, " "))
    words = chars.copy() if unspaced else np.where(chars > 0, spaces + 1, 0)
    fffd = _on_rows(text, ~_bool(pc.string_is_ascii(text)), lambda t: pc.count_substring(t, _REPLACEMENT))
    # Letters outside markup, over all non-space characters: tags and entities count as symbols.
    letters = chars - spaces - _np(pc.count_substring_regex(text, _NON_LETTER))
    markup = _bool(pc.match_substring_regex(text, "[<&]"))
    if markup.any():
        bare = pc.replace_substring_regex(text.filter(pa.array(markup)), _MARKUP, "")
        letters[markup] = _np(pc.utf8_length(bare)) - _np(pc.count_substring(bare, " "))
        letters[markup] -= _np(pc.count_substring_regex(bare, _NON_LETTER))
    symbol_ratio = 1.0 - letters / np.maximum(chars - spaces, 1)
    # Word bounds only where words are spaced: a 600-character Japanese line is not "600 words".
    too_few_words = np.zeros(len(chars), bool) if unspaced else words < rules.min_words
    too_many_words = np.zeros(len(chars), bool) if unspaced else words > rules.max_words

    reasons = np.full(len(raw_len), None, dtype=object)
    for mask, reason in (
        (huge, "too-long"),
        ((chars < rules.min_chars) | too_few_words, "too-short"),
        ((chars > rules.max_chars) | too_many_words, "too-long"),
        ((fffd > 0) & (fffd > rules.max_replacement_ratio * np.maximum(chars, 1)), "encoding"),
        (symbol_ratio > rules.max_symbol_ratio, "symbols"),
    ):
        reasons[(reasons == None) & mask] = reason  # noqa: E711 (elementwise on an object array)
    return RuleResult(text, reasons, chars, words, counts)


def apply_lid(
    texts: pa.Array, reasons: np.ndarray, spec: LangSpec, model_path: str, batch_size: int
) -> tuple[list[str | None], np.ndarray]:
    """Run LID on rows that passed so far; update reasons in place; return canonical labels, probs."""
    n = len(reasons)
    probs = np.full(n, np.nan, dtype=np.float32)
    todo = np.flatnonzero(reasons == None)  # noqa: E711
    if spec.lid_expected is None or len(todo) == 0:
        return [None] * n, probs
    got_labels, got_probs = lid.predict(model_path, texts.take(pa.array(todo)).to_pylist(), batch_size)
    reasons[todo] = lid.decide(got_labels, got_probs, spec.lid_expected, spec.threshold)
    labels_out = np.full(n, None, dtype=object)
    labels_out[todo] = lid.to_canonical(got_labels)
    probs[todo] = got_probs
    return labels_out.tolist(), probs


def _prob_array(probs: np.ndarray) -> pa.Array:
    return pa.array(probs, type=pa.float32(), mask=np.isnan(probs))


# --------------------------------------------------------------------------- worker tasks


def read_rows(path: str, start: int, stop: int, columns: Sequence[str] | None = None) -> pa.Table:
    """Rows [start, stop) of an Arrow IPC file, memory-mapped (pages are released with the table).

    Only the record batches that hold these rows are read, found from the file's layout (``_file_layout``:
    where each batch starts, in rows and in bytes; one pass over a file per process), and read straight
    from their byte offsets. So reading every partition of a file is linear in its batches: no rescan
    from the first batch, and not even the footer (which lists every batch) is parsed again.
    """
    layout = _file_layout(path)
    starts = layout.starts
    first = max(int(np.searchsorted(starts, start, side="right")) - 1, 0)
    with pa.memory_map(path, "r") as source:
        reader = ipc.open_file(source) if layout.offsets is None else None
        pieces = []
        for i in range(first, len(starts) - 1):
            row = int(starts[i])
            if row >= stop:
                break
            if reader is not None:
                batch = reader.get_batch(i)
            else:
                source.seek(int(layout.offsets[i]))
                batch = ipc.read_record_batch(ipc.read_message(source), layout.schema)
            lo, hi = max(start - row, 0), min(stop - row, batch.num_rows)
            if hi > lo:
                pieces.append(batch.slice(lo, hi - lo))
        table = pa.Table.from_batches(pieces, schema=layout.schema)
    return table.select(list(columns)) if columns else table


@dataclass(frozen=True)
class _FileLayout:
    """Where the record batches of an Arrow IPC file are: ``starts`` (first row of each batch, then the row
    count) and ``offsets`` (byte offset of each batch's message; None when the file has dictionary batches,
    which must be read through the file reader)."""

    schema: pa.Schema
    starts: np.ndarray
    offsets: np.ndarray | None


_FILE_LAYOUTS: collections.OrderedDict[tuple, _FileLayout] = collections.OrderedDict()
_FILE_LAYOUTS_KEPT = 64  # files whose layout a process keeps (16 bytes a batch)
_IPC_FILE_PREFIX = 8  # "ARROW1" and two bytes of padding; then the stream: schema, batches, end marker


def _file_layout(path: str) -> _FileLayout:
    """The layout of an Arrow IPC file, cached per process (an LRU of ``_FILE_LAYOUTS_KEPT`` files), keyed by
    the file's identity, so a rewritten file is read afresh.

    The messages are walked once through a memory map: their headers are read, their bodies are not touched.
    """
    st = os.stat(path)
    key = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    layout = _FILE_LAYOUTS.get(key)
    if layout is not None:
        with contextlib.suppress(KeyError):  # another thread may have just evicted it
            _FILE_LAYOUTS.move_to_end(key)
        return layout
    with pa.memory_map(os.fspath(path), "r") as source:
        reader = ipc.open_file(source)
        schema, count = reader.schema, reader.num_record_batches
        rows, offsets = [], []
        source.seek(_IPC_FILE_PREFIX)
        while True:
            offset = source.tell()
            try:
                message = ipc.read_message(source)
            except EOFError:  # the stream's end marker
                break
            if message.type == "record batch":
                offsets.append(offset)
                rows.append(ipc.read_record_batch(message, schema).num_rows)
            elif message.type != "schema":
                offsets = None  # dictionary batches: read through the file reader
                break
        if offsets is None or len(offsets) != count:  # not the plain layout pyarrow writes: use the footer
            rows, offsets = [reader.get_batch(i).num_rows for i in range(count)], None
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(rows, out=starts[1:])
    layout = _FileLayout(schema, starts, None if offsets is None else np.asarray(offsets, dtype=np.int64))
    _FILE_LAYOUTS[key] = layout
    while len(_FILE_LAYOUTS) > _FILE_LAYOUTS_KEPT:
        with contextlib.suppress(KeyError):
            _FILE_LAYOUTS.popitem(last=False)
    return layout


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def eval_keys_task(part: Partition) -> np.ndarray:
    """text_keys of the valid/test rows of a partition (for decontamination of train rows)."""
    table = read_rows(part.path, part.start, part.stop, ["split", "text"])
    held_out = table.filter(pc.not_equal(table.column("split"), "train"))
    if held_out.num_rows == 0:
        return as_keys([])
    text, _ = normalize_texts(held_out.column("text"))
    return _keys(text.to_pylist())


def _keys(texts: Sequence[str]) -> np.ndarray:
    return text_keys(texts)


def _positions(part: Partition) -> pa.Array:
    return pa.array(np.arange(part.start, part.stop, dtype=np.int64))


def clean_mono_task(part: Partition, spec: LangSpec, rules: Rules, model_path: str, batch_size: int) -> dict:
    """Clean + LID one monolingual partition; kept rows carry their dedup key."""
    table = read_rows(part.path, part.start, part.stop)
    result = rule_reasons(table.column("text").combine_chunks(), rules, spec.unspaced)
    reasons = result.reasons
    labels, probs = apply_lid(result.text, reasons, spec, model_path, batch_size)
    table = table.set_column(table.schema.get_field_index("text"), "text", result.text)
    table = table.append_column("lid_label", pa.array(labels, pa.string()))
    table = table.append_column("lid_prob", _prob_array(probs))
    table = table.append_column(POS, _positions(part))
    keep = reasons == None  # noqa: E711
    kept = table.filter(pa.array(keep))
    rejected = table.filter(pa.array(~keep)).append_column("reason", pa.array(reasons[~keep].tolist(), pa.string()))
    return {
        "kept": kept,
        "keys": _keys(kept.column("text").to_pylist()),
        "chars": result.chars[keep],
        "words": result.words[keep],
        "rejected": rejected.select([*schemas.REJECTED.names, POS]),
        "counts": {"rows_in": table.num_rows, **result.counts},
        "worker": _worker_address(),
    }


def clean_pair_task(
    part: Partition, src: LangSpec, tgt: LangSpec, rules: Rules, model_path: str, batch_size: int
) -> dict:
    """Clean + LID both sides of one parallel partition; reasons say which side failed (``tgt-lid-mismatch``)."""
    table = read_rows(part.path, part.start, part.stop)
    reasons = np.full(table.num_rows, None, dtype=object)
    sides = {"src": src, "tgt": tgt}
    results = {
        side: rule_reasons(table.column(f"{side}_text").combine_chunks(), rules, sides[side].unspaced) for side in sides
    }
    counts = {"rows_in": table.num_rows}
    for side, result in results.items():
        _merge_reasons(reasons, result.reasons, side)
        for key, value in result.counts.items():
            counts[key] = counts.get(key, 0) + value
    probs = {}
    for side, spec in sides.items():
        # LID only where both sides passed the rules and the other side's LID (so far): no wasted predictions.
        side_reasons = np.where(reasons == None, None, "skip").astype(object)  # noqa: E711
        _, probs[side] = apply_lid(results[side].text, side_reasons, spec, model_path, batch_size)
        side_reasons[side_reasons == "skip"] = None
        _merge_reasons(reasons, side_reasons, side)
    for side, result in results.items():
        table = table.set_column(table.schema.get_field_index(f"{side}_text"), f"{side}_text", result.text)
    table = table.append_column(POS, _positions(part))
    keep = reasons == None  # noqa: E711
    kept = table.append_column("src_lid_prob", _prob_array(probs["src"]))
    kept = kept.append_column("tgt_lid_prob", _prob_array(probs["tgt"])).filter(pa.array(keep))
    rejected = table.filter(pa.array(~keep)).append_column("reason", pa.array(reasons[~keep].tolist(), pa.string()))
    src_keys = _keys(kept.column("src_text").to_pylist())
    tgt_keys = _keys(kept.column("tgt_text").to_pylist())
    return {
        "kept": kept,
        "keys": as_keys(
            [hashlib.blake2b(s + t, digest_size=16).digest() for s, t in zip(src_keys, tgt_keys, strict=True)]
        ),
        "src_keys": as_keys(src_keys),
        "tgt_keys": as_keys(tgt_keys),
        "chars": (results["src"].chars + results["tgt"].chars)[keep],
        "words": (results["src"].words + results["tgt"].words)[keep],
        "rejected": rejected.select([*schemas.REJECTED_PARALLEL.names, POS]),
        "counts": counts,
        "worker": _worker_address(),
    }


def _merge_reasons(reasons: np.ndarray, side_reasons: np.ndarray, side: str) -> None:
    for i in np.flatnonzero((reasons == None) & (side_reasons != None)):  # noqa: E711
        reasons[i] = f"{side}-{side_reasons[i]}"


# --------------------------------------------------------------------------- driver state


@dataclass
class Group:
    """One output pair of files: a language or a pair, with its partitions in stable order."""

    kind: str
    name: str
    partitions: list[Partition]
    clean_path: Path
    rejected_path: Path


def plan_groups(
    cfg: dict[str, Any], extracted_dirs: dict[str, Path], out_root: Path, partition_rows: int
) -> list[Group]:
    """Every configured language, then every pair; inputs by sorted source, then row ranges."""
    groups = []
    targets = [("mono", code, f"{code}.arrow", out_root / "clean", out_root / "rejected") for code in cfg["languages"]]
    targets += [
        ("pair", f"{s}-{t}", f"{s}-{t}.arrow", out_root / "clean" / "pairs", out_root / "rejected" / "pairs")
        for s, t in pfconfig.pairs(cfg)
    ]
    for kind, name, filename, clean_dir, rejected_dir in targets:
        parts = []
        for source in sorted(extracted_dirs):
            path = Path(extracted_dirs[source]) / filename
            if not path.exists():
                continue
            rows = _input_rows(path)
            parts += [
                Partition(kind, name, str(path), start, min(start + partition_rows, rows))
                for start in range(0, rows, partition_rows)
            ]
        groups.append(Group(kind, name, parts, clean_dir / filename, rejected_dir / filename))
    return groups


def _input_rows(path: Path) -> int:
    """Rows of an extracted file; a zero-byte file counts as empty (with a warning), a broken one is an error."""
    if path.stat().st_size == 0:
        LOG.warning("clean: input file %s is empty (0 bytes); it contributes no rows", path)
        return 0
    try:
        return count_rows(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CleanError(f"clean: input file {path} is not a readable Arrow IPC file: {exc}") from None


@contextlib.contextmanager
def dask_client(cfg: dict[str, Any], threads: int) -> Iterator[Any]:
    """Client of config clean.scheduler, else of a LocalCluster of clean.workers (or threads) processes."""
    from distributed import Client, LocalCluster

    address = cfg["clean"].get("scheduler")
    if address:
        with Client(address) as client:
            yield client
        return
    workers = int(cfg["clean"].get("workers") or threads or 1)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def ordered_results(client: Any, calls: list[tuple], window: int, desc: str) -> Iterator[Any]:
    """Submit calls with at most ``window`` in flight; yield their results in submission order."""
    from tqdm import tqdm

    pending: collections.deque = collections.deque()
    todo = iter(calls)
    with tqdm(total=len(calls), desc=desc, unit="partition", disable=None) as bar:  # stderr, when a terminal
        while True:
            while len(pending) < window and (call := next(todo, None)) is not None:
                pending.append(client.submit(*call, pure=False))
            if not pending:
                return
            future = pending.popleft()
            result = future.result()
            future.release()
            bar.update(1)
            yield result


# --------------------------------------------------------------------------- the stage


def clean_corpus(
    cfg: dict[str, Any],
    extracted_dirs: dict[str, str | os.PathLike[str]],
    model_path: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    udhr_dirs: dict[str, str | os.PathLike[str]] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Run the whole clean stage; return a summary (stats per group, tasks run per worker)."""
    out_root = Path(out_root)
    rules = Rules.from_config(cfg)
    specs = lang_specs(cfg)
    model = str(Path(model_path).resolve())
    batch_size = int(cfg["lid"]["batch_size"])
    groups = plan_groups(
        cfg, {k: Path(v) for k, v in extracted_dirs.items()}, out_root, int(cfg["clean"]["partition_rows"])
    )
    worker_tasks: collections.Counter[str] = collections.Counter()
    with dask_client(cfg, threads) as client:
        window = 2 * max(1, len(client.scheduler_info().get("workers", {}))) + 1
        eval_keys = _collect_eval_keys(client, groups, window)
        calls = []
        for group in groups:
            for part in group.partitions:
                if part.kind == "mono":
                    calls.append((clean_mono_task, part, specs[group.name], rules, model, batch_size))
                else:
                    src, tgt = _split_pair(group.name, specs)
                    calls.append((clean_pair_task, part, specs[src], specs[tgt], rules, model, batch_size))
        results = ordered_results(client, calls, window, "clean: clean + LID")
        group_stats = {
            group.name: _write_group(group, results, _eval_checks(group, eval_keys, specs), specs, worker_tasks)
            for group in groups
        }
    lang_stats = {g.name: group_stats[g.name] for g in groups if g.kind == "mono"}
    pair_stats = {g.name: group_stats[g.name] for g in groups if g.kind == "pair"}
    stats_dir = out_root / "stats"
    stats.write_languages_json(stats_dir / "languages.json", lang_stats, pair_stats)
    stats.plot_sizes(stats_dir / "sizes.png", lang_stats)
    stats.plot_rejections(stats_dir / "rejections.png", lang_stats)
    write_json(
        stats_dir / "lid_udhr.json",
        stats.evaluate_lid_udhr(cfg, {k: Path(v) for k, v in (udhr_dirs or {}).items()}, model),
    )
    LOG.info("tasks per worker: %s", dict(sorted(worker_tasks.items())))
    _check_required(cfg, lang_stats)
    return {"languages": lang_stats, "pairs": pair_stats, "tasks_by_worker": dict(worker_tasks)}


def _split_pair(name: str, specs: dict[str, LangSpec]) -> tuple[str, str]:
    """Split "en-zh-Hans" into its two codes (codes may contain a hyphen)."""
    for code in specs:
        if name.startswith(code + "-") and name[len(code) + 1 :] in specs:
            return code, name[len(code) + 1 :]
    raise CleanError(f"pair {name!r} does not name two configured languages")


def _collect_eval_keys(client: Any, groups: list[Group], window: int) -> dict[str, KeySet]:
    """Per language, the keys of every valid/test row (all train sources), before any train row is judged."""
    mono = [(g.name, p) for g in groups if g.kind == "mono" for p in g.partitions]
    keysets: dict[str, KeySet] = collections.defaultdict(KeySet)
    for (name, _), keys in zip(
        mono,
        ordered_results(client, [(eval_keys_task, p) for _, p in mono], window, "clean: valid/test keys"),
        strict=True,
    ):
        keysets[name].add(keys)  # runs are merged with np.unique, so repeats across partitions fold
    return keysets


EvalChecks = list[tuple[str, KeySet]]


def _eval_checks(group: Group, eval_keys: dict[str, KeySet], specs: dict[str, LangSpec]) -> EvalChecks:
    """Which key column of a result to test against which language's valid/test keys.

    A train pair is decontaminated on both sides: its source or target text must not be any held-out
    text of that language, or the pair would carry it into the TLM training shards.
    """
    if group.kind == "mono":
        fields = [("keys", group.name)]
    else:
        src, tgt = _split_pair(group.name, specs)
        fields = [("src_keys", src), ("tgt_keys", tgt)]
    return [(field, eval_keys[lang]) for field, lang in fields if lang in eval_keys]


def _judge_in_order(
    res: dict, is_mono: bool, eval_checks: EvalChecks, seen: KeySet, rejected_names: list[str]
) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """Decontaminate and dedup one partition's kept rows against everything before it.

    Returns the rows that stay, every rejected row of the partition in input order, and the keep mask.
    """
    kept, keys = res["kept"], res["keys"]
    reasons = np.full(kept.num_rows, None, dtype=object)
    if kept.num_rows and eval_checks:
        is_train = kept.column("split").to_numpy(zero_copy_only=False) == "train"
        for field, held_out in eval_checks:
            reasons[(reasons == None) & is_train & held_out.contains(res[field])] = "eval-overlap"  # noqa: E711
    candidates = np.flatnonzero(reasons == None)  # noqa: E711
    new = seen.first_new(keys[candidates])
    reasons[candidates[~new]] = "duplicate" if is_mono else "duplicate-pair"
    keep = reasons == None  # noqa: E711
    dropped = kept.filter(pa.array(~keep)).append_column("reason", pa.array(reasons[~keep].tolist(), pa.string()))
    rejected = pa.concat_tables(
        [res["rejected"].select([*rejected_names, POS]), dropped.select([*rejected_names, POS])]
    )
    rejected = rejected.take(pc.sort_indices(rejected.column(POS)))
    return kept.filter(pa.array(keep)), rejected, keep


def _write_group(
    group: Group, results: Iterator[dict], eval_checks: EvalChecks, specs: dict[str, LangSpec], worker_tasks
) -> stats.GroupStats:
    """Consume this group's partition results in order: decontaminate, dedup, write, count."""
    is_mono = group.kind == "mono"
    clean_schema = schemas.CLEAN if is_mono else schemas.CLEAN_PARALLEL
    rejected_schema = schemas.REJECTED if is_mono else schemas.REJECTED_PARALLEL
    prob_cols = ["lid_prob"] if is_mono else ["src_lid_prob", "tgt_lid_prob"]
    unit = "characters" if is_mono and specs[group.name].unspaced else "words"
    gstats = stats.GroupStats(
        group.name, word_unit=unit if is_mono else "words (both sides; characters where unspaced)"
    )
    seen = KeySet()
    clean_w = ArrowWriter(group.clean_path, clean_schema)
    rejected_w = ArrowWriter(group.rejected_path, rejected_schema)
    try:
        for _ in group.partitions:
            res = next(results)
            worker_tasks[res["worker"]] += 1
            kept, rejected, keep = _judge_in_order(res, is_mono, eval_checks, seen, rejected_schema.names)
            clean_w.write_table(kept)
            rejected_w.write_table(rejected)
            gstats.add_counts(res["counts"])
            gstats.add_kept(kept, res["chars"][keep], res["words"][keep], prob_cols)
            gstats.add_rejected(rejected, prob_cols if is_mono else [])
    except BaseException:
        clean_w.abort()
        rejected_w.abort()
        raise
    clean_w.close()
    rejected_w.close()
    LOG.info(
        "clean: %s: %d of %d rows kept; rejected %s", group.name, gstats.kept, gstats.rows_in, dict(gstats.rejected)
    )
    if gstats.kept == 0:
        _warn_empty(group, gstats)
    return gstats


def _warn_empty(group: Group, gstats: stats.GroupStats) -> None:
    LOG.warning(
        "clean: no row of %s %r is left (%d rows in; rejected: %s; top predicted LID labels: %s)",
        "language" if group.kind == "mono" else "pair",
        group.name,
        gstats.rows_in,
        dict(sorted(gstats.rejected.items())) or "no input rows",
        gstats.describe_predicted(),
    )


def _check_required(cfg: dict[str, Any], lang_stats: dict[str, stats.GroupStats]) -> None:
    failed = []
    for code, options in cfg["languages"].items():
        if options.get("required") and lang_stats[code].kept == 0:
            top = lang_stats[code].describe_predicted()
            failed.append(
                f"required language {code!r} (config key 'languages.{code}') has no row left after cleaning; "
                f"{lang_stats[code].rows_in} rows in, rejected {dict(sorted(lang_stats[code].rejected.items()))}; "
                f"top predicted LID labels: {top} — is the language code in config right?"
            )
    if failed:
        raise CleanError("; ".join(failed))


def run_clean_stage(cfg: dict[str, Any], input: Any, output: Any, log: str | None = None, threads: int = 1) -> dict:
    """Snakemake entry point: input.extracted (train source dirs), input.udhr, input.model."""
    extracted = {Path(p).name: Path(p) for p in input.extracted}
    udhr = {Path(p).name: Path(p) for p in getattr(input, "udhr", [])}
    with stage_logging(log):
        return clean_corpus(cfg, extracted, input.model, pfconfig.output_root(cfg), udhr_dirs=udhr, threads=threads)
