"""The clean stage: normalize, filter, language-ID and deduplicate extracted rows, on Dask.

Work is split into *partitions*: fixed row ranges (``clean.partition_rows``) of each input file,
never derived from the worker count.  A task opens its file (memory-mapped), cleans and LIDs
its rows with vectorized Arrow kernels and one batched fastText call, and returns the kept and
rejected rows plus integer counts.  The driver takes results strictly in partition order (with a
bounded number in flight, so memory stays bounded), applies decontamination and exact dedup in
that order, and appends to the outputs.  So bytes are the same for 1 worker, 2 workers or an
external scheduler.

The text rules and the LID rule are pipeline.textrules' (shared with the UDHR LID evaluation);
after them come eval-overlap (train rows only) → duplicate, decided here in partition order.
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
from pipeline import lid, schemas, stats
from pipeline.arrow_io import ArrowWriter, count_rows, write_json
from pipeline.dedup import KEY_DTYPE, KeySet, as_keys, text_keys
from pipeline.errors import PolyforgeError
from pipeline.logs import stage_logging
from pipeline.textrules import (  # noqa: F401 (Rules and lang_specs are part of this stage's interface)
    BUCKET_NAMES,
    LangSpec,
    LidResult,
    Rules,
    apply_lid,
    lang_specs,
    length_buckets,
    normalize_texts,
    prob_array,
    rule_reasons,
)

LOG = logging.getLogger(__name__)

POS = "_pos"  # row position in its input file: rejected rows are written back in input order


class CleanError(PolyforgeError, RuntimeError):
    """The clean stage cannot give a usable result (e.g. a required language lost every row)."""


@dataclass(frozen=True)
class Partition:
    kind: str  # "mono" | "pair"
    group: str  # language code or "src-tgt"
    path: str
    start: int
    stop: int


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
    """text_keys of the held-out texts of a partition, for decontamination of train rows.

    Held out: the valid/test rows of a train source (both sides of a pair), and every row of an
    eval-role source (``part.kind`` "eval-mono" / "eval-pair").
    """
    columns = ["src_text", "tgt_text"] if part.kind.endswith("pair") else ["text"]
    table = read_rows(part.path, part.start, part.stop, ["split", *columns])
    if not part.kind.startswith("eval"):
        table = table.filter(pc.not_equal(table.column("split"), "train"))
    if table.num_rows == 0:
        return as_keys([])
    return _keys(pa.concat_arrays([normalize_texts(table.column(column))[0] for column in columns]))


# ASCII that str.split() would change: whitespace other than one space between words (pipeline.splits folds it).
_ASCII_TO_FOLD = r"[\t-\r\x1c-\x1f]|  |^ | $"


def _keys(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``text_keys`` of a column, each distinct text hashed once.

    A text that is ASCII with single inner spaces is its own NFKC form, casefolds to its lowercase and
    has no spaces to fold, so its match form is ``ascii_lower`` (one kernel call): only the hashing is
    left per row. Other texts go through ``pipeline.splits.text_key``.
    """
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if len(texts) == 0 or texts.null_count:
        return text_keys(texts.to_pylist())
    encoded = texts.dictionary_encode()
    distinct = encoded.dictionary
    ascii_plain = pc.and_(pc.string_is_ascii(distinct), pc.invert(pc.match_substring_regex(distinct, _ASCII_TO_FOLD)))
    plain = ascii_plain.to_numpy(zero_copy_only=False)
    keys = np.empty(len(distinct), dtype=KEY_DTYPE)
    if plain.any():
        lowered = pc.ascii_lower(distinct.filter(pa.array(plain))).cast(pa.binary()).to_pylist()
        keys[plain] = [hashlib.blake2b(b, digest_size=16).digest() for b in lowered]
    if not plain.all():
        keys[~plain] = text_keys(distinct.filter(pa.array(~plain)).to_pylist())
    return keys[encoded.indices.to_numpy()]


def _positions(part: Partition) -> pa.Array:
    return pa.array(np.arange(part.start, part.stop, dtype=np.int64))


def clean_mono_task(part: Partition, spec: LangSpec, rules: Rules, model_path: str, batch_size: int) -> dict:
    """Clean + LID one monolingual partition; kept rows carry their dedup key."""
    table = read_rows(part.path, part.start, part.stop)
    result = rule_reasons(table.column("text").combine_chunks(), rules, spec.unspaced)
    reasons = result.reasons
    said = apply_lid(result.text, reasons, spec, model_path, batch_size, table.column("source"))
    table = table.set_column(table.schema.get_field_index("text"), "text", result.text)
    table = table.append_column("lid_label", pa.array(said.labels, pa.string()))
    table = table.append_column("lid_prob", prob_array(said.probs))
    table = table.append_column(POS, _positions(part))
    keep = reasons == None  # noqa: E711
    kept = table.filter(pa.array(keep))
    rejected = table.filter(pa.array(~keep)).append_column("reason", pa.array(reasons[~keep].tolist(), pa.string()))
    return {
        "kept": kept,
        "keys": _keys(kept.column("text")),
        "chars": result.chars[keep],
        "words": result.words[keep],
        "rejected": rejected.select([*schemas.REJECTED.names, POS]),
        "counts": {"rows_in": table.num_rows, **result.counts},
        "lid_recall": _lid_recall(table.column("source"), result.chars, said),
        "worker": _worker_address(),
    }


def _lid_recall(sources: pa.ChunkedArray, chars: np.ndarray, said: LidResult) -> dict[str, np.ndarray]:
    """Per source, per length bucket: [rows LID judged, kept by the strict rule, kept by the declared rule]."""
    out: dict[str, np.ndarray] = {}
    if not said.ran.any():
        return out
    # Sources as dictionary indices: one comparison of small integers per row and source, no Python strings.
    encoded = sources.combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    source_of = encoded.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)
    names.append(None)
    buckets = length_buckets(chars)
    for i in sorted(np.unique(source_of[said.ran]).tolist(), key=lambda i: names[i]):
        source, rows = names[i], said.ran & (source_of == i)
        counts = np.zeros((len(BUCKET_NAMES), 3), dtype=np.int64)
        for column, mask in enumerate((rows, rows & said.strict_ok, rows & said.declared_ok)):
            counts[:, column] = np.bincount(buckets[mask], minlength=len(BUCKET_NAMES))
        out[source] = counts
    return out


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
    said = {}
    for side, spec in sides.items():
        # LID only where both sides passed the rules and the other side's LID (so far): no wasted predictions.
        side_reasons = np.where(reasons == None, None, "skip").astype(object)  # noqa: E711
        said[side] = apply_lid(results[side].text, side_reasons, spec, model_path, batch_size, table.column("source"))
        side_reasons[side_reasons == "skip"] = None
        _merge_reasons(reasons, side_reasons, side)
    for side, result in results.items():
        table = table.set_column(table.schema.get_field_index(f"{side}_text"), f"{side}_text", result.text)
    table = table.append_column(POS, _positions(part))
    for side in sides:  # what LID said of each side it judged: rejected pairs keep it, as rejected rows do
        table = table.append_column(f"{side}_lid_label", pa.array(said[side].labels, pa.string()))
        table = table.append_column(f"{side}_lid_prob", prob_array(said[side].probs))
    keep = reasons == None  # noqa: E711
    kept = table.filter(pa.array(keep))
    rejected = table.filter(pa.array(~keep)).append_column("reason", pa.array(reasons[~keep].tolist(), pa.string()))
    src_keys = _keys(kept.column("src_text"))
    tgt_keys = _keys(kept.column("tgt_text"))
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
    eval_dirs: dict[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Run the whole clean stage; return a summary (stats per group, tasks run per worker).

    udhr_dirs score the LID model and, with every other eval-role source in eval_dirs (dictionaries), are
    removed from train: none of their text may reach training.
    """
    out_root = Path(out_root)
    rules = Rules.from_config(cfg)
    model = str(Path(model_path).resolve())
    try:  # the model's own labels, checked against every configured language before any work
        specs = lang_specs(cfg, lid.label_map(cfg, model))
    except lid.LidLabelError as exc:
        raise CleanError(f"clean: {exc}") from None
    batch_size = int(cfg["lid"]["batch_size"])
    partition_rows = int(cfg["clean"]["partition_rows"])
    groups = plan_groups(cfg, {k: Path(v) for k, v in extracted_dirs.items()}, out_root, partition_rows)
    udhr_dirs = {k: Path(v) for k, v in (udhr_dirs or {}).items()}
    eval_dirs = {**udhr_dirs, **{k: Path(v) for k, v in (eval_dirs or {}).items()}}  # every eval-role source
    worker_tasks: collections.Counter[str] = collections.Counter()
    with dask_client(cfg, threads) as client:
        window = 2 * max(1, len(client.scheduler_info().get("workers", {}))) + 1
        eval_keys = _collect_eval_keys(client, groups, _eval_partitions(eval_dirs, partition_rows), window)
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
            group.name: _write_group(group, results, _eval_checks(group, eval_keys), specs, worker_tasks)
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
        stats.evaluate_lid_udhr(cfg, udhr_dirs, model, specs),
    )
    LOG.info("tasks per worker: %s", dict(sorted(worker_tasks.items())))
    _check_required(cfg, lang_stats)
    return {"languages": lang_stats, "pairs": pair_stats, "tasks_by_worker": dict(worker_tasks)}


def _split_pair(name: str, specs: dict[str, LangSpec]) -> tuple[str, str]:
    try:
        return pfconfig.parse_pair(name, specs)
    except ValueError as exc:
        raise CleanError(f"pair {name!r} does not name two configured languages") from exc


def _eval_partitions(eval_dirs: dict[str, Path], partition_rows: int) -> list[Partition]:
    """Every Arrow file of every eval-role source, all of whose rows are held out."""
    parts = []
    for source in sorted(eval_dirs):
        for path in sorted(Path(eval_dirs[source]).glob("*.arrow")):
            rows = _input_rows(path)
            with pa.memory_map(str(path), "r") as handle:
                kind = "eval-pair" if "src_text" in ipc.open_file(handle).schema.names else "eval-mono"
            parts += [
                Partition(kind, source, str(path), start, min(start + partition_rows, rows))
                for start in range(0, rows, partition_rows)
            ]
    return parts


def _collect_eval_keys(client: Any, groups: list[Group], eval_parts: list[Partition], window: int) -> KeySet:
    """The keys of every held-out text, before any train row is judged.

    Held out: valid/test rows of every train source, both sides of its valid/test pairs, and every row of
    every eval-role source (UDHR).  One set for all languages: a train row whose text is held out anywhere goes.
    """
    parts = [p for g in groups for p in g.partitions] + eval_parts
    held_out = KeySet()
    for keys in ordered_results(client, [(eval_keys_task, p) for p in parts], window, "clean: held-out keys"):
        held_out.add(keys)  # runs are merged with np.unique, so repeats across partitions fold
    return held_out


EvalChecks = list[tuple[str, KeySet]]


def _eval_checks(group: Group, held_out: KeySet) -> EvalChecks:
    """Which key columns of a result to test against the held-out keys.

    A train pair is decontaminated on both sides: its source or target text must not be any held-out
    text, or the pair would carry it into the TLM training shards.
    """
    fields = ["keys"] if group.kind == "mono" else ["src_keys", "tgt_keys"]
    return [(field, held_out) for field in fields]


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
        group.name,
        word_unit=unit if is_mono else "words (both sides; characters where unspaced)",
        policies=dict(specs[group.name].policies) if is_mono else {},
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
            gstats.add_lid_recall(res.get("lid_recall", {}))
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
    """Snakemake entry point: input.extracted (train source dirs), input.udhr, input.model; the rule's outputs.

    ``cfg`` is ``pipeline.config.clean_slice`` plus the execution settings. The stage writes into the root
    that holds the declared outputs (``output.languages`` is ``<root>/stats/languages.json``), and refuses
    to run when a declared output is not where the stage would write it, or the stage writes one undeclared.
    """
    root = Path(output.languages).parent.parent
    pair_names = [pfconfig.pair_name(s, t) for s, t in pfconfig.pairs(cfg)]
    expected = {
        "clean": [root / "clean" / f"{code}.arrow" for code in cfg["languages"]],
        "rejected": [root / "rejected" / f"{code}.arrow" for code in cfg["languages"]],
        "clean_pairs": [root / "clean" / "pairs" / f"{name}.arrow" for name in pair_names],
        "rejected_pairs": [root / "rejected" / "pairs" / f"{name}.arrow" for name in pair_names],
        "languages": [root / "stats" / "languages.json"],
        "sizes": [root / "stats" / "sizes.png"],
        "rejections": [root / "stats" / "rejections.png"],
        "lid_udhr": [root / "stats" / "lid_udhr.json"],
    }
    for key, paths in expected.items():
        declared = getattr(output, key)
        declared = [declared] if isinstance(declared, str | os.PathLike) else list(declared)
        if sorted(map(Path, declared)) != sorted(paths):
            raise CleanError(f"clean rule output {key!r}: declared {sorted(map(str, declared))}, but the stage "
                             f"writes {sorted(map(str, paths))}")  # fmt: skip
    extracted = {Path(p).name: Path(p) for p in input.extracted}
    udhr = {Path(p).name: Path(p) for p in getattr(input, "udhr", [])}
    other_eval = {Path(p).name: Path(p) for p in getattr(input, "other_eval", [])}
    with stage_logging(log):
        return clean_corpus(cfg, extracted, input.model, root, udhr_dirs=udhr, threads=threads, eval_dirs=other_eval)
