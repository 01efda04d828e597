"""Benchmark of the clean stage; prints ratios against baselines run in the same process.

(a) LID filter throughput: clean + LID of every partition in this process (one worker's work) vs raw
    fastText ``model.predict(list, k=1)`` on the same lines.                    target >= 0.7x
    The two alternate (so both see the same load on a shared machine); best of each, by wall time
    (the ratio) and by this process's CPU time (``ratio_cpu``, the steadier one on a busy machine).
(b) the whole stage on a 2-worker vs a 1-worker LocalCluster, same input, best of 2 each, alternating.
    The stage has about 1 s of fixed driver work (client, plots), so run it on tens of MB.  target >= 1.6x
(c) peak memory summed over this process (driver + scheduler) and every worker process, 8x input vs
    1x input (1x >= 200 MB of text), printed with and without the dedup key set (16 bytes a kept row,
    the one structure the issue allows to grow).                              target <= 1.25x
(d) time linear in input: the whole stage on one worker, 8x input vs 1x input (``--linear-mb``), inputs
    in record batches of the extract stage's size (4096 rows).                 target <= 9x
    At sizes a bench can run, reading partitions is a sliver of the stage's time, so the part that was
    quadratic is also timed alone, on a file of ``--read-rows`` rows and 8x as many (4096-row batches,
    partitions of 50,000 rows as in the default config): ``clean.read_rows`` of every partition vs a
    rescan from the file's first batch for each partition (how read_rows worked before it kept batch
    offsets). The rescan grows ~64x for 8x rows, read_rows ~8x.

Input: real lines (LibreOffice help, gettext... from an extracted/{source}/ directory given with
--text-from, else built-in sentences), repeated with a varying number appended so that dedup keeps
most of them; every tenth row repeats an earlier one exactly.  Languages en, de, hi.

    .venv/bin/python bench/bench_clean.py --text-from results-tiny/extracted/libreoffice_help --mb 20 --parts ab
    .venv/bin/python bench/bench_clean.py --text-from results-tiny/extracted/libreoffice_help --mb 200 --parts c
    .venv/bin/python bench/bench_clean.py --parts d

With --json PATH the figures of the parts run are also written there as JSON, one key per part (what
bench/run_all.py collects).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import clean, lid, schemas  # noqa: E402
from pipeline import config as pfconfig  # noqa: E402
from pipeline.arrow_io import DEFAULT_BATCH_ROWS, iter_batches, write_json  # noqa: E402

LANGUAGES = ("de", "en", "hi")
PARTITION_ROWS = 20_000
BUILTIN = {
    "de": [
        "Die Datei wurde erfolgreich gespeichert und kann jetzt geöffnet werden.",
        "Klicken Sie auf die Schaltfläche, um das Dokument zu drucken.",
        "Wählen Sie im Menü Format den Befehl Zellen, um die Zahlen zu formatieren.",
        "Hier legen Sie fest, wie Fußnoten und Endnoten nummeriert werden.",
    ],
    "en": [
        "The file was saved successfully and can now be opened.",
        "Click the button to print the document on the default printer.",
        "Choose Format - Cells to change how the numbers are displayed.",
        "Here you decide how footnotes and endnotes are numbered.",
    ],
    "hi": [
        "फ़ाइल सफलतापूर्वक सहेजी गई है और अब इसे खोला जा सकता है।",
        "दस्तावेज़ को छापने के लिए इस बटन पर क्लिक करें।",
        "संख्याओं को दिखाने का तरीका बदलने के लिए फ़ॉर्मेट चुनें।",
    ],
}


def seed_lines(text_from: Path | None) -> dict[str, list[str]]:
    """Distinct real lines per language (at least 20 characters, so most pass the length rules)."""
    if text_from is None:
        return BUILTIN
    lines = {}
    for lang in LANGUAGES:
        texts = {t for b in iter_batches(text_from / f"{lang}.arrow", ["text"]) for t in b.column(0).to_pylist()}
        lines[lang] = sorted(t for t in texts if len(t) >= 20) or BUILTIN[lang]
    return lines


def _chunk(lang: str, base: pa.Array, start: int, stop: int) -> pa.Table:
    i = np.arange(start, stop)
    number = np.where(i % 10 == 0, 0, i // len(base))  # every tenth row: an exact repeat of an earlier one
    text = pc.binary_join_element_wise(base.take(pa.array(i % len(base))), pa.array(number).cast(pa.string()), " ")
    ids = pa.array(i).cast(pa.string())
    docs = pa.array(i // 50).cast(pa.string())
    n = stop - start
    columns = {
        "row_id": pc.binary_join_element_wise(f"bench/{lang}", ids, "/"),
        "source": pa.array(["bench"] * n),
        "lang": pa.array([lang] * n),
        "doc_id": docs,
        "group": docs,
        "split": pa.array(["train"] * n),
        "label": pa.nulls(n, pa.string()),
        "text": text,
    }
    return pa.Table.from_arrays(list(columns.values()), schema=schemas.MONOLINGUAL)


def make_input(root: Path, megabytes: float, lines: dict[str, list[str]], batch_rows: int = 65_536) -> int:
    """~``megabytes`` MB of text split evenly over the languages in extracted/bench/{lang}.arrow; returns rows.

    Record batches of at most ``batch_rows`` rows.
    """
    directory = root / "extracted" / "bench"
    directory.mkdir(parents=True, exist_ok=True)
    total = 0
    for lang in LANGUAGES:
        base = pa.array(lines[lang])
        per_row = np.mean([len(t.encode()) for t in lines[lang]]) + 4
        rows = int(megabytes * 1e6 / len(LANGUAGES) / per_row)
        with pa.OSFile(str(directory / f"{lang}.arrow"), "wb") as sink, ipc.new_file(sink, schemas.MONOLINGUAL) as w:
            for start in range(0, rows, 65_536):
                w.write_table(_chunk(lang, base, start, min(start + 65_536, rows)), max_chunksize=batch_rows)
        total += rows
    return total


def make_cfg(root: Path, **clean_opts) -> dict:
    src = {"adapter": "local", "path": "x", "format": "text", "role": "train", "licence": "bench"}
    return pfconfig.prepare(
        {
            "output_dir": str(root / "out"),
            "languages": {lang: {} for lang in LANGUAGES},
            "sources": {"bench": src},
            "clean": {"partition_rows": PARTITION_ROWS, **clean_opts},
        }
    )


def _best_of(repeats: int, work) -> float:
    """Fastest of ``repeats`` timed runs (this machine is shared: the minimum is the least disturbed)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_lid(root: Path, model: Path, repeats: int = 3) -> dict:
    """(a): the stage's per-partition work, in this process, vs raw fastText on the same lines."""
    cfg = make_cfg(root)
    groups = clean.plan_groups(cfg, {"bench": root / "extracted" / "bench"}, root / "out", PARTITION_ROWS)
    specs, rules = clean.lang_specs(cfg, lid.label_map(cfg, model)), clean.Rules.from_config(cfg)
    parts = [(g.name, p) for g in groups if g.kind == "mono" for p in g.partitions]
    rows = sum(p.stop - p.start for _, p in parts)
    lines = [
        t.replace("\n", " ")
        for _, p in parts
        for t in clean.read_rows(p.path, p.start, p.stop, ["text"]).column(0).to_pylist()
    ]
    model_obj = lid.load_model(model)

    def raw_fasttext() -> None:
        for start in range(0, len(lines), 2048):
            model_obj.predict(lines[start : start + 2048], k=1)

    kept = []

    def clean_and_lid() -> None:
        kept[:] = [clean.clean_mono_task(p, specs[n], rules, str(model), 2048)["kept"].num_rows for n, p in parts]

    # One-time costs out of the timings (the model load; the first task imports distributed for its worker
    # address), then the two alternate, so both see the same load on a shared machine.
    model_obj.predict(lines[:2048], k=1)
    clean.clean_mono_task(parts[0][1], specs[parts[0][0]], rules, str(model), 2048)
    raw_s, ours_s = [], []
    for _ in range(repeats):
        raw_s.append(_timed(raw_fasttext))
        ours_s.append(_timed(clean_and_lid))
    (raw_wall, raw_cpu), (ours_wall, ours_cpu) = _fastest(raw_s), _fastest(ours_s)
    raw, ours = rows / raw_wall, rows / ours_wall
    ratio_cpu = raw_cpu / ours_cpu
    print(f"(a) rows={rows:,} kept before dedup={sum(kept):,}: raw fastText predict(list) {raw:,.0f} lines/s; "
          f"clean+LID filter {ours:,.0f} lines/s (best of {repeats}, alternating); ratio {ours / raw:.3f}x "
          f"(target >= 0.7); by CPU time {rows / raw_cpu:,.0f} vs {rows / ours_cpu:,.0f} lines/s, "
          f"ratio {ratio_cpu:.3f}x", flush=True)  # fmt: skip
    return {"rows": rows, "kept_before_dedup": sum(kept), "raw_lines_s": raw, "filter_lines_s": ours,
            "ratio": ours / raw, "raw_lines_s_cpu": rows / raw_cpu, "filter_lines_s_cpu": rows / ours_cpu,
            "ratio_cpu": ratio_cpu, "repeats": repeats}  # fmt: skip


def _timed(work) -> tuple[float, float]:
    """(wall s, CPU s of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def _fastest(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The least disturbed of several timed runs: fastest wall time, and fastest CPU time."""
    return min(w for w, _ in runs), min(c for _, c in runs)


class PeakMemory:
    """Peak of the summed RSS of this process and all its descendants, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._sample())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_stage(root: Path, model: Path, workers: int) -> tuple[float, int, dict]:
    """The whole stage on a fresh LocalCluster (scheduler in this process); seconds, peak RSS, summary."""
    from distributed import LocalCluster

    with PeakMemory() as mem, LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:  # fmt: skip
        cfg = make_cfg(root, scheduler=cluster.scheduler_address)
        t0 = time.perf_counter()
        summary = clean.clean_corpus(cfg, {"bench": root / "extracted" / "bench"}, model, root / "out")
        elapsed = time.perf_counter() - t0
    return elapsed, mem.peak, summary


def bench_workers(root: Path, model: Path, rows: int, repeats: int = 2) -> dict:
    """(b): the fastest of ``repeats`` whole-stage runs on 1 and on 2 workers, alternating."""
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for workers in (1, 2):
            seconds, _, summary = run_stage(root, model, workers)
            runs[workers].append(seconds)
    t1, t2 = min(runs[1]), min(runs[2])
    print(f"(b) rows={rows:,}: 1 worker {t1:.1f} s ({rows / t1:,.0f} rows/s); 2 workers {t2:.1f} s "
          f"({rows / t2:,.0f} rows/s); speed-up {t1 / t2:.2f}x (target >= 1.6); "
          f"tasks per worker {sorted(summary['tasks_by_worker'].values())}", flush=True)  # fmt: skip
    return {"rows": rows, "one_worker_s": t1, "two_workers_s": t2, "speedup": t1 / t2, "runs_s": runs}


def bench_memory(megabytes: float, model: Path, workers: int, lines: dict[str, list[str]]) -> dict:
    peaks, keysets, runs = {}, {}, {}
    for factor in (1, 4, 8):
        with tempfile.TemporaryDirectory(prefix="bench-clean-") as tmp:
            rows = make_input(Path(tmp), megabytes * factor, lines)
            elapsed, peaks[factor], summary = run_stage(Path(tmp), model, workers)
            keysets[factor] = 16 * sum(s.kept for s in summary["languages"].values())
            runs[str(factor)] = {"mb": megabytes * factor, "rows": rows, "seconds": elapsed,
                                 "peak_rss_mb": peaks[factor] / 1e6, "dedup_keys_mb": keysets[factor] / 1e6}  # fmt: skip
            print(f"(c) {factor}x: {megabytes * factor:,.0f} MB of text, {rows:,} rows, {elapsed:.0f} s; peak RSS "
                  f"(driver+scheduler+{workers} workers) {peaks[factor] / 1e6:,.0f} MB; dedup key set "
                  f"{keysets[factor] / 1e6:,.0f} MB", flush=True)  # fmt: skip
    without = [(peaks[f] - keysets[f]) for f in (1, 8)]
    print(f"(c) peak memory 8x / 1x: {peaks[8] / peaks[1]:.2f}x with the key set; "
          f"{without[1] / without[0]:.2f}x without it (target <= 1.25)")  # fmt: skip
    return {"workers": workers, "runs": runs, "ratio": peaks[8] / peaks[1], "ratio_without_keys": without[1] / without[0]}


def rescan_rows(path: str, start: int, stop: int) -> pa.Table:
    """Rows [start, stop) found by walking the record batches from the first one: read_rows before batch offsets."""
    with pa.memory_map(path, "r") as source:
        reader = ipc.open_file(source)
        pieces, offset = [], 0
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            lo, hi = max(start - offset, 0), min(stop - offset, batch.num_rows)
            if hi > lo:
                pieces.append(batch.slice(lo, hi - lo))
            offset += batch.num_rows
            if offset >= stop:
                break
        return pa.Table.from_batches(pieces, schema=reader.schema)


def bench_linear(megabytes: float, model: Path, lines: dict[str, list[str]], scale: int = 8) -> dict:
    """(d) first part: the whole stage on one worker at 1x, ``scale``/2 x and ``scale``x input."""
    stage = {}
    for factor in sorted({1, max(1, scale // 2), scale}):  # 1x, 4x, 8x
        with tempfile.TemporaryDirectory(prefix="bench-clean-") as tmp:
            rows = make_input(Path(tmp), megabytes * factor, lines, batch_rows=DEFAULT_BATCH_ROWS)
            stage[factor], _, summary = run_stage(Path(tmp), model, 1)
            kept = sum(s.kept for s in summary["languages"].values())
            print(f"(d) stage {factor}x: {megabytes * factor:,.1f} MB of text, {rows:,} rows ({kept:,} kept): "
                  f"{stage[factor]:.1f} s ({rows / stage[factor]:,.0f} rows/s, 1 worker)", flush=True)  # fmt: skip
    print(f"(d) stage time {scale}x / 1x: {stage[scale] / stage[1]:.2f}x (target <= {scale + 1})", flush=True)
    return {"mb": megabytes, "scale": scale, "seconds": {str(f): t for f, t in stage.items()},
            "ratio": stage[scale] / stage[1]}  # fmt: skip


def _time_reads(path: str, spans: list[tuple[int, int]]) -> tuple[float, float]:
    """Best-of-5 seconds to read every span with read_rows, and with a rescan from the first batch."""

    def read_all() -> None:
        clean._FILE_LAYOUTS.clear()  # the one pass per file that finds the offsets is part of the work
        for start, stop in spans:
            clean.read_rows(path, start, stop)

    def rescan_all() -> None:
        for start, stop in spans:
            rescan_rows(path, start, stop)

    return _best_of(5, read_all), _best_of(5, rescan_all)


def bench_reads(rows: int, partition_rows: int, scale: int = 8) -> dict:
    """(d) second part: every partition of one file read with read_rows, and with a rescan from the first batch."""
    reads, rescans = {}, {}
    for factor in (1, scale):
        with tempfile.TemporaryDirectory(prefix="bench-clean-reads-") as tmp:
            path = str(Path(tmp) / "rows.arrow")
            n = rows * factor
            table = pa.table({"row_id": pa.array(np.arange(n)).cast(pa.string())})
            with pa.OSFile(path, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=DEFAULT_BATCH_ROWS)
            del table
            spans = [(start, min(start + partition_rows, n)) for start in range(0, n, partition_rows)]
            reads[factor], rescans[factor] = _time_reads(path, spans)
            print(f"(d) reads {factor}x: {n:,} rows in {-(-n // DEFAULT_BATCH_ROWS):,} record batches, "
                  f"{len(spans)} partitions of {partition_rows:,} rows: read_rows {reads[factor] * 1e3:,.1f} ms; "
                  f"rescan from the first batch {rescans[factor] * 1e3:,.1f} ms", flush=True)  # fmt: skip
    print(f"(d) partition reads {scale}x / 1x time: read_rows {reads[scale] / reads[1]:.1f}x (linear: ~{scale}x); "
          f"rescan {rescans[scale] / rescans[1]:.1f}x (quadratic: ~{scale * scale}x)")  # fmt: skip
    return {"rows": rows, "partition_rows": partition_rows, "scale": scale,
            "read_rows_ratio": reads[scale] / reads[1], "rescan_ratio": rescans[scale] / rescans[1]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20, help="input size in MB of text (the issue: >= 200 for (c))")
    parser.add_argument("--parts", default="abc", help="which benchmarks to run: any of a, b, c, d")
    parser.add_argument("--text-from", type=Path, help="an extracted/{source}/ directory with de/en/hi.arrow")
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache/polyforge-tests/lid.176.ftz")
    parser.add_argument("--workers", type=int, default=2, help="workers for (c)")
    parser.add_argument("--linear-mb", type=float, default=4, help="(d): stage input at 1x, in MB of text")
    parser.add_argument("--read-rows", type=int, default=1_000_000, help="(d): rows of the partition-read file at 1x")
    parser.add_argument("--read-partition-rows", type=int, default=50_000,
                        help="(d): partition size of the partition reads (config default: 50000)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    lines = seed_lines(args.text_from)
    result: dict = {"mb": args.mb}
    if "a" in args.parts or "b" in args.parts:
        with tempfile.TemporaryDirectory(prefix="bench-clean-") as tmp:
            rows = make_input(Path(tmp), args.mb, lines)
            if "a" in args.parts:
                result["a"] = bench_lid(Path(tmp), args.model)
            if "b" in args.parts:
                result["b"] = bench_workers(Path(tmp), args.model, rows)
    if "c" in args.parts:
        result["c"] = bench_memory(args.mb, args.model, args.workers, lines)
    if "d" in args.parts:
        result["d"] = bench_linear(args.linear_mb, args.model, lines)
        result["d_reads"] = bench_reads(args.read_rows, args.read_partition_rows)
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
