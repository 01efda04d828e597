"""Shard stage throughput against raw SentencePiece encoding, and peak memory from 1× to 8× input.

    .venv/bin/python bench/bench_shards.py --rows 40000 --scale 8

1. Throughput: the MLM+TLM shard stage on `rows` clean rows per language (3 languages, one en-de pair file)
   vs ``sp.encode(list)`` of the same texts (already in memory, same batches, same thread count) in the same
   process. Prints tokens/s of both and the ratio (target ≥ 0.8×).
2. Memory: the stage run in a fresh subprocess on 1× and `scale`× the rows; each child prints its own peak
   RSS (ru_maxrss). Prints the ratio (target ≤ 1.25×: memory flat in corpus size).

With --json PATH the figures are also written there as JSON (what bench/run_all.py collects).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sentencepiece as spm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import config as pfconfig  # noqa: E402
from pipeline import schemas, shards  # noqa: E402
from pipeline.arrow_io import ArrowWriter, iter_batches, write_json  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LANGS = ("de", "en", "hi")
SYLLABLES = {
    "en": "the an ing er ous tion com pro sta ble fi le fol der win dow sa ve op en".split(),
    "de": "ein ung der die sch ich ge be ver zu da tei ord ner spei chern öff nen".split(),
    "hi": "क ख ग घ प र स त न म ल ह फ़ा इ ल घर बगी चा हरा".split(),
}


def sentence(rng: random.Random, lang: str) -> str:
    words = ("".join(rng.choice(SYLLABLES[lang]) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(4, 16)))
    return " ".join(words)


def write_inputs(root: Path, rows: int) -> tuple[dict[str, Path], list[Path]]:
    """clean/{lang}.arrow with ``rows`` rows each and clean/pairs/en-de.arrow with rows/2 pairs (streamed)."""
    clean = {}
    for lang in LANGS:
        rng = random.Random(lang)
        clean[lang] = root / "clean" / f"{lang}.arrow"
        with ArrowWriter(clean[lang], schemas.CLEAN) as writer:
            for i in range(rows):
                writer.write_row({"row_id": f"b/{i}", "source": "b", "lang": lang, "doc_id": str(i), "group": str(i),
                                  "split": "train", "label": None, "text": sentence(rng, lang), "lid_label": lang,
                                  "lid_prob": 1.0})  # fmt: skip
    pair = root / "clean" / "pairs" / "en-de.arrow"
    rng = random.Random("pairs")
    with ArrowWriter(pair, schemas.CLEAN_PARALLEL) as writer:
        for i in range(rows // 2):
            writer.write_row({"row_id": f"b/p{i}", "source": "b", "src_lang": "en", "tgt_lang": "de",
                              "src_row_id": str(i), "tgt_row_id": str(i), "doc_id": str(i), "group": str(i),
                              "split": "train", "label": None, "src_text": sentence(rng, "en"),
                              "tgt_text": sentence(rng, "de"), "src_lid_prob": 1.0, "tgt_lid_prob": 1.0})  # fmt: skip
    return clean, [pair]


def train_model(path: Path) -> None:
    rng = random.Random(0)
    lines = [sentence(rng, lang) for _ in range(5000) for lang in LANGS]
    writer = io.BytesIO()
    spm.set_random_generator_seed(0)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=writer, vocab_size=2000, pad_id=0,
                                   bos_id=1, eos_id=2, unk_id=3, user_defined_symbols=["<mask>"], byte_fallback=True,
                                   num_threads=1, minloglevel=2)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(writer.getvalue())


def config_for(root: Path) -> dict:
    cfg = pfconfig.load(REPO / "tests" / "tiny.yaml")
    cfg["output_dir"] = str(root)
    cfg["shards"]["bptt"] = 256
    return cfg


def run_stage(root: Path, clean: dict[str, Path], pairs: list[Path], cfg: dict | None = None) -> dict:
    cfg = cfg or config_for(root)
    return shards.run_shards_stage(cfg, clean, pairs, root / "vocab" / "spm.model", root / "shards" / "manifest.json")


def raw_encode_tokens(root: Path, clean: dict[str, Path], pairs: list[Path]) -> tuple[int, float]:
    """Baseline: sp.encode(list) over the same texts, loaded into memory beforehand (not timed)."""
    sp = spm.SentencePieceProcessor(model_file=str(root / "vocab" / "spm.model"))
    batches = [b.column("text").to_pylist() for lang in sorted(clean) for b in iter_batches(clean[lang], ["text"])]
    for path in pairs:
        for b in iter_batches(path, ["src_text", "tgt_text"]):
            batches += [b.column("src_text").to_pylist(), b.column("tgt_text").to_pylist()]
    start = time.perf_counter()
    tokens = sum(len(ids) for texts in batches for ids in sp.encode(texts, num_threads=1))
    return tokens, time.perf_counter() - start


def throughput(rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        root = Path(tmp)
        clean, pairs = write_inputs(root, rows)
        train_model(root / "vocab" / "spm.model")
        raw_tokens, raw_s = raw_encode_tokens(root, clean, pairs)
        cfg = config_for(root)  # config loading and validation are not part of the stage's work
        start = time.perf_counter()
        manifest = run_stage(root, clean, pairs, cfg)
        stage_s = time.perf_counter() - start
        stage_tokens = sum(s["tokens"] for s in manifest["shards"])
        raw_rate, stage_rate = raw_tokens / raw_s, stage_tokens / stage_s
        print(f"rows/lang {rows}: raw sp.encode {raw_tokens} tokens in {raw_s:.2f}s = {raw_rate:,.0f} tok/s")
        print(f"shard stage {stage_tokens} tokens (incl. </s>, kept TLM pairs) in {stage_s:.2f}s = {stage_rate:,.0f} tok/s")
        print(f"throughput ratio stage/raw: {stage_rate / raw_rate:.2f}x (target >= 0.8x)")
        return {"raw_tokens": raw_tokens, "raw_s": raw_s, "raw_tokens_s": raw_rate, "stage_tokens": stage_tokens,
                "stage_s": stage_s, "stage_tokens_s": stage_rate, "ratio": stage_rate / raw_rate}  # fmt: skip


def child(root: Path) -> None:
    """Run the stage on inputs already under ``root``; print its seconds and peak RSS (KiB) as JSON."""
    clean = {lang: root / "clean" / f"{lang}.arrow" for lang in LANGS}
    start = time.perf_counter()
    run_stage(root, clean, [root / "clean" / "pairs" / "en-de.arrow"])
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))  # fmt: skip


def peak_memory(rows: int) -> dict:
    """The stage on ``rows`` rows per language in a fresh process: its seconds and peak RSS (KiB)."""
    with tempfile.TemporaryDirectory(prefix="bench-shards-mem-") as tmp:
        root = Path(tmp)
        write_inputs(root, rows)
        train_model(root / "vocab" / "spm.model")
        out = subprocess.run([sys.executable, __file__, "--child", str(root)], check=True, capture_output=True,
                             text=True).stdout  # fmt: skip
        return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40000, help="clean rows per language at 1× (default 40000)")
    parser.add_argument("--scale", type=int, default=8, help="the larger input, as a multiple of --rows")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    result: dict = {"rows": args.rows, "scale": args.scale}
    if not args.skip_throughput:
        result["throughput"] = throughput(args.rows)
    runs = {}
    for factor in sorted({1, max(1, args.scale // 2), args.scale}):  # 1x, 4x, 8x
        runs[factor] = peak_memory(args.rows * factor)
        print(f"stage {factor}x ({args.rows * factor} rows/lang): {runs[factor]['seconds']:.1f} s, "
              f"peak RSS {runs[factor]['maxrss_kib'] / 1024:.1f} MiB", flush=True)  # fmt: skip
    small, large = runs[1]["maxrss_kib"], runs[args.scale]["maxrss_kib"]
    print(f"peak RSS {args.scale}x / 1x: {large / small:.2f}x (target <= 1.25x)")
    result["memory"] = {"peak_rss_mib": {str(f): r["maxrss_kib"] / 1024 for f, r in runs.items()},
                        "seconds": {str(f): r["seconds"] for f, r in runs.items()}, "ratio": large / small}  # fmt: skip
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
