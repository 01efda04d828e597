"""Vocab stage: an α-sampled sample of the clean train text, one joint SentencePiece model, and a report.

The sample is streamed: each language gives round(q_i · sample_sentences) sentences (largest
remainder, so quotas sum to the sample size), as whole passes over its train rows plus a seeded
random subset of the remainder.  SentencePiece reads it from a ``sentence_iterator`` and writes into
a ``model_writer``, so the model never records a path, and memory holds the sample, not the corpus.

Special ids are fixed: <pad>=0, <s>=1, </s>=2, <unk>=3, <mask>=4, then ``<lang:xx>`` tags if
``vocab.language_tags``.  The report counts tokens as non-padding ids with one </s> per sentence.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import sentencepiece as spm
from tqdm import tqdm

from pipeline import langs
from pipeline.arrow_io import atomic_path, iter_batches, save_png, write_json
from pipeline.errors import PolyforgeError
from pipeline.logs import stage_logging
from pipeline.mixture import alpha_sample
from pipeline.schemas import BOS, EOS, MASK, PAD, SPECIAL_PIECES, UNK

LOG = logging.getLogger(__name__)

MODEL_NAME, VOCAB_NAME, REPORT_JSON, REPORT_PNG, HF_DIR = "spm.model", "spm.vocab", "report.json", "report.png", "hf"

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


@dataclass(frozen=True)
class VocabOutputs:
    """The files the vocab stage writes: the vocab rule's declared outputs, or the standard names in a folder."""

    model: str | os.PathLike[str]
    vocab: str | os.PathLike[str]
    report: str | os.PathLike[str]
    plot: str | os.PathLike[str]
    hf: str | os.PathLike[str]

    @classmethod
    def of(cls, output: Any) -> VocabOutputs:
        """From anything with these names as attributes (the vocab rule's ``output``)."""
        return cls(output.model, output.vocab, output.report, output.plot, output.hf)

    @classmethod
    def in_folder(cls, out_dir: str | os.PathLike[str]) -> VocabOutputs:
        out_dir = Path(out_dir)
        return cls(out_dir / MODEL_NAME, out_dir / VOCAB_NAME, out_dir / REPORT_JSON, out_dir / REPORT_PNG,
                   out_dir / HF_DIR)  # fmt: skip


class VocabError(PolyforgeError, ValueError):
    """A vocab setting the data cannot support, naming the config key."""


def language_tag(code: str) -> str:
    return f"<lang:{code}>"


# ---------------------------------------------------------------- sample


def quotas(shares: Mapping[str, float], size: int) -> dict[str, int]:
    """round(q_i · size) that sums exactly to ``size``: floors, then +1 by largest remainder (ties by code)."""
    exact = {lang: shares[lang] * size for lang in sorted(shares)}
    result = {lang: math.floor(x) for lang, x in exact.items()}
    missing = size - sum(result.values())
    by_remainder = sorted(exact, key=lambda lang: (-(exact[lang] - result[lang]), lang))
    for lang in by_remainder[:missing]:
        result[lang] += 1
    return result


def language_rng(seed: int, lang: str, purpose: str) -> np.random.Generator:
    """A generator that depends on the seed, the language and the purpose only (not on order or hashing salt)."""
    offset = int.from_bytes(hashlib.blake2b(f"{purpose}/{lang}".encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed, offset])


def distinct_indices(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k distinct indices of range(n), sorted, in O(k) memory (never a permutation of n)."""
    if k > n // 2:  # cheaper to draw what to leave out; n < 2k keeps this O(k)
        left_out = distinct_indices(rng, n, n - k)
        return np.setdiff1d(np.arange(n, dtype=np.int64), left_out, assume_unique=True)
    chosen = np.empty(0, dtype=np.int64)
    while chosen.size < k:
        need = k - chosen.size
        draws = np.concatenate([chosen, rng.integers(0, n, size=need + need // 8 + 16, dtype=np.int64)])
        # Keep first occurrences in draw order: equal to drawing without replacement.
        _, first = np.unique(draws, return_index=True)
        chosen = draws[np.sort(first)][:k]
    return np.sort(chosen)


def iter_train_texts(path: str | os.PathLike[str], split: str = "train") -> Iterator[list[str]]:
    """The texts of one split, one list per Arrow batch (only two columns are read)."""
    for batch in iter_batches(path, ["split", "text"]):
        texts = pc.filter(batch.column("text"), pc.equal(batch.column("split"), split))
        if len(texts):
            yield texts.to_pylist()


@dataclass
class SampleStats:
    """What went into a sample, per language, and what was left out and why."""

    quota: dict[str, int] = field(default_factory=dict)
    full_passes: dict[str, int] = field(default_factory=dict)
    sentences: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)

    def drop(self, lang: str, reason: str) -> None:
        counts = self.dropped.setdefault(lang, {})
        counts[reason] = counts.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        total = sum(self.sentences.values())
        share = {lang: (n / total if total else 0.0) for lang, n in self.sentences.items()}
        return {"quota": self.quota, "full_passes": self.full_passes, "sentences": self.sentences,
                "share": share, "dropped": self.dropped, "total": total}  # fmt: skip


def iter_language_sample(
    path: str | os.PathLike[str], rows: int, quota: int, rng: np.random.Generator
) -> Iterator[tuple[int, list[str]]]:
    """(pass number, texts) chunks: ``quota // rows`` whole passes, then a seeded subset of ``quota % rows``."""
    full, remainder = divmod(quota, rows)
    for pass_no in range(full):
        for texts in iter_train_texts(path):
            yield pass_no, texts
    if remainder == 0:
        return
    chosen = distinct_indices(rng, rows, remainder)
    start = taken = 0
    for texts in iter_train_texts(path):
        lo, hi = np.searchsorted(chosen, [start, start + len(texts)])
        if hi > lo:
            yield full, [texts[i - start] for i in chosen[lo:hi].tolist()]
            taken = int(hi)
        start += len(texts)
        if taken == len(chosen):
            return
    raise VocabError(f"{path}: fewer train rows ({start}) than the mixture counted ({rows}); rerun the mixture stage")


def iter_sample(
    clean_paths: Mapping[str, str | os.PathLike[str]],
    rows: Mapping[str, int],
    shares: Mapping[str, float],
    size: int,
    seed: int,
    max_bytes: int,
    stats: SampleStats,
    purpose: str = "vocab",
) -> Iterator[str]:
    """Stream the α-sampled sentences, language by language in code order; fill ``stats`` as it goes."""
    stats.quota = quotas(shares, size)
    progress = tqdm(total=size, desc=f"sample ({purpose})", unit="sent", leave=False, disable=None)
    for lang in sorted(stats.quota):
        quota, n = stats.quota[lang], rows[lang]
        stats.full_passes[lang] = quota // n
        stats.sentences[lang] = 0
        for _, texts in iter_language_sample(clean_paths[lang], n, quota, language_rng(seed, lang, purpose)):
            for text in texts:
                # SentencePiece would skip these silently; count them here instead.
                if not text.strip():
                    stats.drop(lang, "empty")
                elif len(text.encode("utf-8")) > max_bytes:
                    stats.drop(lang, "longer_than_max_sentence_length")
                else:
                    stats.sentences[lang] += 1
                    yield text
            progress.update(len(texts))
    progress.close()


# ---------------------------------------------------------------- training


def trainer_options(vcfg: Mapping[str, Any], languages: Iterable[str]) -> dict[str, Any]:
    """SentencePiece options from config; nothing here depends on paths, threads of the rule, or time."""
    user_symbols = [SPECIAL_PIECES[MASK]]
    if vcfg["language_tags"]:
        user_symbols += [language_tag(code) for code in sorted(languages)]
    return {
        "model_type": vcfg["model_type"],
        "vocab_size": vcfg["vocab_size"],
        "character_coverage": vcfg["character_coverage"],
        "byte_fallback": vcfg["byte_fallback"],
        "num_threads": vcfg["num_threads"],
        "max_sentence_length": vcfg["max_sentence_length"],
        "input_sentence_size": 0,  # the sample is already the sample: use all of it
        "pad_id": PAD, "bos_id": BOS, "eos_id": EOS, "unk_id": UNK,
        "pad_piece": SPECIAL_PIECES[PAD], "bos_piece": SPECIAL_PIECES[BOS],
        "eos_piece": SPECIAL_PIECES[EOS], "unk_piece": SPECIAL_PIECES[UNK],
        "user_defined_symbols": user_symbols,
        "minloglevel": 1,
    }  # fmt: skip


def train_model(sentences: Iterable[str], vcfg: Mapping[str, Any], languages: Iterable[str], seed: int) -> bytes:
    """Train SentencePiece from an iterator and return the serialized model; explain size errors."""
    writer = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=writer, **trainer_options(vcfg, languages)
        )
    except RuntimeError as exc:
        raise explain_training_error(exc, vcfg) from exc
    return writer.getvalue()


def explain_training_error(exc: RuntimeError, vcfg: Mapping[str, Any]) -> Exception:
    message = str(exc)
    if match := _TOO_HIGH.search(message):
        return VocabError(
            f"config key 'vocab.vocab_size': {vcfg['vocab_size']} is too large for the vocabulary sample "
            f"({vcfg['sample_sentences']} sentences); the largest that works is {match.group(2)} "
            f"(or raise vocab.sample_sentences / add data)"
        )
    if match := _TOO_LOW.search(message):
        return VocabError(
            f"config key 'vocab.vocab_size': {vcfg['vocab_size']} is smaller than the {match.group(2)} pieces the "
            f"sample's characters and special tokens need; use at least {match.group(2)} or lower "
            f"vocab.character_coverage (now {vcfg['character_coverage']})"
        )
    return exc


def load_processor(model: bytes) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=model)


def vocab_lines(model: bytes) -> str:
    """The ``.vocab`` text sentencepiece writes beside a model: piece, tab, score."""
    sp = load_processor(model)
    return "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size()))


def write_model(
    model: bytes, out_dir: str | os.PathLike[str] | None, model_path: str | os.PathLike[str] | None = None,
    vocab_path: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """Write the model and its ``.vocab`` text: to ``model_path``/``vocab_path``, or by name into ``out_dir``."""
    model_path = Path(model_path) if model_path is not None else Path(out_dir) / MODEL_NAME
    vocab_path = Path(vocab_path) if vocab_path is not None else Path(out_dir) / VOCAB_NAME
    with atomic_path(model_path) as tmp:
        tmp.write_bytes(model)
    with atomic_path(vocab_path) as tmp:
        tmp.write_text(vocab_lines(model), encoding="utf-8")
    return model_path, vocab_path


# ---------------------------------------------------------------- report


def tokenizer_stats(
    sp: spm.SentencePieceProcessor, path: str | os.PathLike[str], lang: str, split: str, num_threads: int
) -> dict[str, Any]:
    """Fertility, unknown and byte-fallback rates, characters per token, on one split of a clean file."""
    is_byte = np.array([sp.is_byte(i) for i in range(sp.get_piece_size())], dtype=bool)
    unspaced = langs.is_unspaced(lang)
    sentences = tokens = unks = byte_pieces = chars = units = 0
    for texts in iter_train_texts(path, split):
        encoded = sp.encode(texts, num_threads=num_threads)
        ids = np.fromiter((i for row in encoded for i in row), dtype=np.int64)
        sentences += len(texts)
        tokens += ids.size + len(texts)  # one </s> per sentence
        unks += int(np.count_nonzero(ids == UNK))
        byte_pieces += int(np.count_nonzero(is_byte[ids]))
        chars += sum(len(t) for t in texts)
        units += sum(len("".join(t.split())) if unspaced else len(t.split()) for t in texts)
    unit = "characters" if unspaced else "words"
    return {
        "split": split,
        "sentences": sentences,
        "tokens": tokens,
        "unit": unit,
        units_key(unit): units,
        "fertility": tokens / units if units else None,
        "fertility_label": f"tokens per {unit[:-1]}",
        "unk_rate": unks / tokens if tokens else None,
        "byte_fallback_rate": byte_pieces / tokens if tokens else None,
        "chars_per_token": chars / tokens if tokens else None,
    }


def units_key(unit: str) -> str:
    return "words" if unit == "words" else "non_space_chars"


def plot_report(report: Mapping[str, Any], out_png: str | os.PathLike[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_lang = report["languages"]
    codes = sorted(c for c in per_lang if per_lang[c]["fertility"] is not None)
    # Languages on the y axis: names never collide, however many languages there are.
    fig, axes = plt.subplots(1, 3, figsize=(14, max(3.5, 0.45 * len(codes) + 1.5)))
    y = np.arange(len(codes))
    labels = [f"{c} ({'tok/char' if per_lang[c]['unit'] == 'characters' else 'tok/word'})" for c in codes]
    axes[0].barh(y, [per_lang[c]["fertility"] for c in codes], color="tab:blue")
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    axes[0].set_title("fertility on the valid split (lower is better)")
    height = 0.4
    axes[1].barh(y - height / 2, [per_lang[c]["unk_rate"] or 0 for c in codes], height, label="unk")
    axes[1].barh(y + height / 2, [per_lang[c]["byte_fallback_rate"] or 0 for c in codes], height, label="byte fallback")
    axes[1].set_yticks(y, codes)
    axes[1].invert_yaxis()
    axes[1].set_title("share of tokens")
    axes[1].legend(fontsize="small")
    small = report.get("smallest_language") or {}
    if small.get("fertility"):
        names = list(small["fertility"])
        values = [small["fertility"][n] or 0 for n in names]
        axes[2].bar(names, values, color=["tab:orange", "tab:gray"][: len(names)])
        axes[2].set_title(f"smallest language {small['lang']}: {small['fertility_label']}")
    else:
        axes[2].set_axis_off()
    fig.tight_layout()
    save_png(fig, out_png)


# ---------------------------------------------------------------- stage


def read_mixture(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sample_and_train(
    clean_paths: Mapping[str, str | os.PathLike[str]],
    mixture: Mapping[str, Any],
    cfg: Mapping[str, Any],
    alpha: float | None = None,
    purpose: str = "vocab",
) -> tuple[bytes, SampleStats]:
    """Draw the sample (α = mixture's alpha_vocab unless given) and train one model on it."""
    sentences, stats = draw_sample(clean_paths, mixture, cfg, alpha, purpose)
    model = train_model(sentences, cfg["vocab"], cfg["languages"], cfg["seed"])
    return model, stats


def draw_sample(
    clean_paths: Mapping[str, str | os.PathLike[str]],
    mixture: Mapping[str, Any],
    cfg: Mapping[str, Any],
    alpha: float | None = None,
    purpose: str = "vocab",
) -> tuple[Iterator[str], SampleStats]:
    """The sentences the model is trained on (a stream), and the stats it fills as it is read."""
    vcfg = cfg["vocab"]
    per_lang = mixture["languages"]
    missing = sorted(set(per_lang) - set(clean_paths))
    if missing:
        raise VocabError(f"the mixture names languages with no clean file given: {missing}")
    p = {lang: v["p"] for lang, v in per_lang.items()}
    shares = alpha_sample(p, alpha) if alpha is not None else {lang: v["q"]["vocab"] for lang, v in per_lang.items()}
    rows = {lang: v["rows"] for lang, v in per_lang.items()}
    stats = SampleStats()
    sentences = iter_sample(
        clean_paths, rows, shares, vcfg["sample_sentences"], cfg["seed"], vcfg["max_sentence_length"], stats, purpose
    )
    return sentences, stats


def smallest_language_comparison(
    clean_paths: Mapping[str, str | os.PathLike[str]],
    mixture: Mapping[str, Any],
    cfg: Mapping[str, Any],
    sp: spm.SentencePieceProcessor,
    sample: SampleStats,
) -> dict[str, Any]:
    """Fertility of the smallest language under alpha_vocab beside a same-size model trained with α = 1."""
    lang = mixture["smallest"]
    alpha = mixture["alpha"]["vocab"]
    threads = cfg["vocab"]["num_threads"]
    chosen = tokenizer_stats(sp, clean_paths[lang], lang, "valid", threads)
    result = {"lang": lang, "alpha_vocab": alpha, "fertility_label": chosen["fertility_label"],
              "fertility": {f"alpha={alpha}": chosen["fertility"]},
              "sample_share": {f"alpha={alpha}": sample.as_dict()["share"].get(lang)}}  # fmt: skip
    if alpha == 1.0 or not cfg["vocab"]["compare_alpha_one"]:
        return result
    LOG.info("vocab: training the α = 1.0 comparison model for %s", lang)
    model_one, stats_one = sample_and_train(clean_paths, mixture, cfg, alpha=1.0, purpose="vocab-alpha1")
    one = tokenizer_stats(load_processor(model_one), clean_paths[lang], lang, "valid", threads)
    result["fertility"]["alpha=1.0"] = one["fertility"]
    result["sample_share"]["alpha=1.0"] = stats_one.as_dict()["share"].get(lang)
    return result


def build_report(
    clean_paths: Mapping[str, str | os.PathLike[str]],
    mixture: Mapping[str, Any],
    cfg: Mapping[str, Any],
    model: bytes,
    sample: SampleStats,
) -> dict[str, Any]:
    sp = load_processor(model)
    threads = cfg["vocab"]["num_threads"]
    per_lang = {
        lang: tokenizer_stats(sp, clean_paths[lang], lang, "valid", threads) for lang in sorted(mixture["languages"])
    }
    for lang, stats in per_lang.items():
        if stats["sentences"] == 0:
            LOG.warning("vocab report: %s has no valid-split rows; its rates are null", lang)
    return {
        "vocab_size": sp.get_piece_size(),
        "model_type": cfg["vocab"]["model_type"],
        "special_ids": {piece: i for i, piece in SPECIAL_PIECES.items()},
        "token_definition": "non-padding ids, one </s> per sentence included",
        "sample": sample.as_dict(),
        "languages": per_lang,
        "excluded": mixture.get("excluded", []),
        "smallest_language": smallest_language_comparison(clean_paths, mixture, cfg, sp, sample),
    }


def run_vocab_stage(
    cfg: Mapping[str, Any],
    clean_paths: Mapping[str, str | os.PathLike[str]],
    mixture_json: str | os.PathLike[str],
    out: VocabOutputs | str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Sample, train, write the model, its .vocab, the report (JSON, PNG) and the transformers folder.

    ``cfg`` needs ``vocab``, ``seed`` and the language codes (``pipeline.config.vocab_slice``). ``out`` is
    the rule's declared outputs (VocabOutputs), or a folder that gets the standard names.
    """
    from pipeline.hf_tokenizer import export_hf_tokenizer

    out = out if isinstance(out, VocabOutputs) else VocabOutputs.in_folder(out)
    with stage_logging(log):
        mixture = read_mixture(mixture_json)
        for lang in sorted(set(clean_paths) - set(mixture["languages"])):
            LOG.warning("vocab: %s is not in the mixture (empty train split): left out of the sample", lang)
        model, sample = sample_and_train(clean_paths, mixture, cfg)
        write_model(model, None, out.model, out.vocab)
        LOG.info("vocab: sample %s", sample.as_dict())
        report = build_report(clean_paths, mixture, cfg, model, sample)
        write_json(out.report, report)
        plot_report(report, out.plot)
        export_hf_tokenizer(out.model, out.hf, cfg)
        LOG.info("vocab: wrote %s, %s, %s, %s and %s", out.model, out.vocab, out.report, out.plot, out.hf)
    return report
