"""LibreOffice help extraction throughput on one core, beside the raw read of the same files.

    .venv/bin/python bench/bench_extract_libreoffice.py              # fetches LibreOffice help en-US + de
    .venv/bin/python bench/bench_extract_libreoffice.py --raw R/raw/libreoffice_help --languages en de hi

Without --raw, ``apt-get download`` fetches the help packages into a temp folder and unpacks them the
way the download stage does (``{raw}/{package}/`` = ``dpkg-deb -x`` tree).  The process is pinned to
one CPU.  Each timing is the best of --repeat runs (wall clock, with the CPU seconds beside it: on a
busy machine the CPU figure is the steadier one).  Prints MB/s of reading the pages that the
extraction reads (those of --languages only, already in the page cache), of ``extract_source``, and
their ratio.  The goal (issue 11) is 4x the 6 MB/s of the stdlib ``html.parser`` reader this one
replaced: 24 MB/s.  With --json PATH the figures are also written there as JSON (what
bench/run_all.py collects).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bar in the timings
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import config as pfconfig  # noqa: E402
from pipeline.arrow_io import write_json  # noqa: E402
from pipeline.extract import extract_source, libreoffice  # noqa: E402

DEFAULT_PACKAGES = ["libreoffice-help-en-us", "libreoffice-help-de"]


def fetch_packages(packages: list[str], raw: Path) -> None:
    """apt-get download each package (one per call: one missing name fails the whole call), then unpack."""
    debs = raw.parent / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    raw.mkdir(parents=True, exist_ok=True)
    for package in packages:
        subprocess.run(["apt-get", "download", "-q", package], cwd=debs, check=True, stdout=subprocess.DEVNULL)
        deb = next(debs.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(raw / package)], check=True)


def bench_config(languages: list[str]) -> dict:
    return pfconfig.prepare({
        "languages": {code: {} for code in languages},
        "sources": {"bench": {"adapter": "local", "path": ".", "format": "libreoffice_help", "role": "train",
                              "licence": "-"}},
    })


def best_of(repeat: int, fn) -> tuple[float, float]:
    """(wall s, CPU s) of the fastest of ``repeat`` calls."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def read_all(files: list[Path]) -> int:
    return sum(len(path.read_bytes()) for path in files)


def pages_read(cfg: dict, raw: Path, out: Path) -> list[Path]:
    """The pages one extraction reads: those of the configured languages only (a raw folder of the whole
    run holds every language's package, and counting their bytes would inflate MB/s)."""
    read: list[Path] = []
    saved = libreoffice.read_page

    def recording(ctx, path: Path):
        read.append(path)
        return saved(ctx, path)

    libreoffice.read_page = recording
    try:
        extract_source(cfg, "bench", raw, out)
    finally:
        libreoffice.read_page = saved
    return sorted(read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, help="a raw/{source} folder of help packages (default: fetch en-US, de)")
    parser.add_argument("--languages", nargs="+", default=["en", "de"])
    parser.add_argument("--packages", nargs="+", default=DEFAULT_PACKAGES, help="with no --raw: packages to fetch")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per timing")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cfg = bench_config(args.languages)

    with tempfile.TemporaryDirectory(prefix="bench-extract-lo-") as tmp:
        raw = args.raw
        if raw is None:
            raw = Path(tmp) / "raw"
            print(f"fetching {' '.join(args.packages)} ...", file=sys.stderr)
            fetch_packages(args.packages, raw)
        files = pages_read(cfg, raw, Path(tmp) / "warm-up")
        total = read_all(files)  # with the warm-up extraction, puts every page in the page cache
        mb = total / 1e6
        read_s = best_of(args.repeat, lambda: read_all(files))
        stats: dict = {}
        new_s = best_of(args.repeat, lambda: stats.update(extract_source(cfg, "bench", raw, Path(tmp) / "out")))

        def line(name: str, seconds: tuple[float, float], extra: str = "") -> None:
            wall, cpu_s = seconds
            print(f"{name:<22} {wall:8.3f} s {mb / wall:9.1f} MB/s   (CPU {cpu_s:7.3f} s {mb / cpu_s:9.1f} MB/s){extra}")

        rows = sum(stats["rows"].values())
        result = {"pages": len(files), "mb": mb, "languages": args.languages, "cpu": cpu, "repeat": args.repeat,
                  "rows": rows, "read": {"wall_s": read_s[0], "cpu_s": read_s[1], "mb_s": mb / read_s[0]},
                  "extract": {"wall_s": new_s[0], "cpu_s": new_s[1], "mb_s": mb / new_s[0]},
                  "extract_over_read_mb_s": read_s[0] / new_s[0], "extract_over_read_mb_s_cpu": read_s[1] / new_s[1]}
        print(f"input: {len(files)} pages, {mb:.1f} MB (languages {' '.join(args.languages)}), "
              f"one CPU (#{cpu}), best of {args.repeat}")
        line("raw read", read_s)
        line("extract (lxml)", new_s, f"  {rows} rows")
        print(f"ratio lxml extract / raw read MB/s: {read_s[0] / new_s[0]:.3f} (CPU {read_s[1] / new_s[1]:.3f})")
        if args.json:
            write_json(args.json, result)


if __name__ == "__main__":
    main()
