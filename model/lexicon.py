"""Bilingual lexicon induction (Xing et al. 2015; MUSE, Conneau et al. 2018) on FreeDict gold dictionaries.

Words are the vocabulary's *whole-word pieces* that occur in the language's corpus (clean/{lang}.arrow,
train rows): a piece ``▁word`` standing for a whole whitespace word (the next piece does not continue it
with a letter or digit); for scripts written without spaces (ja, zh, ...) any piece. Each word gets two
vectors from a model: its input embedding, and its mean contextual vector (hidden state of
``layer`` over at most ``max_occurrences`` corpus occurrences). Both kinds cover the same words, so they
are scored on the same seed and test pairs.

A dictionary pair is usable when both words are words of their language. Headwords (casefolded, the
extractor's ``group``) are split into disjoint seed and test words by a seeded hash: ``test_fraction`` of
them, at most ``max_test``, are test words, the rest seed. The splits module's valid+test groups are not
used because they are a few percent of a dictionary chosen before knowing which words the vocabulary can
represent: after that filter they leave a handful of test words. Fewer than ``min_seed`` seed pairs is
"no data".

Per language, model and vector kind: centre each language's vectors and scale them to unit length (MUSE's
normalisation), fit orthogonal Procrustes on the seed pairs, map the test words, and retrieve among the
target language's words only, by nearest neighbour (cosine) and by CSLS (k = 10). Precision@1 counts a
query right when its top word is any of its gold translations.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import sentencepiece as spm
import torch

from model.eval_common import MODELS, Models, load_models, no_data, pyplot, save_figure, set_threads, write_result
from model.geometry import (
    CSLS_K,
    bootstrap_mean_ci,
    cosine_similarity,
    csls_scores,
    l2_normalize,
    precision_at_1,
    procrustes,
)
from model.xlm import XLM
from pipeline import plots
from pipeline.langs import is_unspaced
from pipeline.logs import stage_logging
from pipeline.schemas import EOS, PAD

LOG = logging.getLogger(__name__)
KINDS = ("input_embedding", "contextual")
SPACE = "\u2581"  # SentencePiece's word-start mark


@dataclass
class LexiconConfig:
    """eval.lexicon in config (workflow/schemas/config.schema.yaml describes each key)."""

    test_fraction: float = 0.3
    max_test: int = 1500
    min_seed: int = 50
    max_sentences: int = 1000
    max_occurrences: int = 20
    max_tokens: int = 64
    max_vocab: int = 5000
    layer: int | None = None
    csls_k: int = CSLS_K
    bootstrap: int = 1000

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> LexiconConfig:
        return cls(**{k: v for k, v in (params or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class Words:
    """One language's words: the piece id and string of each, and corpus occurrences (sentence, position)."""

    ids: list[int]
    words: list[str]
    occurrences: list[list[tuple[int, int]]]
    sentences: list[list[int]]  # framed ``</s> ids </s>``

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}


# ------------------------------------------------------------------------------------- words


def _hash(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{key}".encode()).digest()[:8], "big")


def corpus_sentences(path: str | os.PathLike[str], cfg: LexiconConfig, seed: int) -> list[str]:
    """At most ``max_sentences`` train rows, a seeded sample independent of file order."""
    frame = pl.read_ipc(path, columns=["row_id", "split", "text"]).filter(pl.col("split") == "train")
    order = sorted(range(frame.height), key=lambda i: _hash(seed, frame["row_id"][i]))[: cfg.max_sentences]
    return [frame["text"][i] for i in sorted(order)]


def whole_word_pieces(sp: spm.SentencePieceProcessor, unspaced: bool) -> dict[int, str]:
    """Piece id -> word for pieces that can stand for a whole word (``▁word``; any piece when unspaced)."""
    pieces = {}
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i):
            continue
        piece = sp.id_to_piece(i)
        word = piece[1:] if piece.startswith(SPACE) else (piece if unspaced else "")
        if word and any(c.isalpha() for c in word):
            pieces[i] = word
    return pieces


def _continues_word(sp: spm.SentencePieceProcessor, next_id: int | None) -> bool:
    """Whether the piece after a ``▁word`` piece glues more letters onto it (``▁house`` + ``s``)."""
    if next_id is None or next_id == EOS:
        return False
    piece = sp.id_to_piece(next_id)
    return not piece.startswith(SPACE) and piece[:1].isalnum()


def find_words(sp: spm.SentencePieceProcessor, texts: Sequence[str], lang: str, cfg: LexiconConfig,
               max_positions: int) -> Words:  # fmt: skip
    """The language's words (most frequent first, at most ``max_vocab``) and their occurrences."""
    unspaced = is_unspaced(lang)
    candidates = whole_word_pieces(sp, unspaced)
    sentences = [[EOS, *ids[: min(cfg.max_tokens, max_positions) - 2], EOS] for ids in sp.encode(list(texts))]
    found: dict[int, list[tuple[int, int]]] = {}
    for s, seq in enumerate(sentences):
        for t in range(1, len(seq) - 1):
            if seq[t] in candidates and (unspaced or not _continues_word(sp, seq[t + 1])):
                found.setdefault(seq[t], []).append((s, t))
    ranked, seen = [], set()
    for i in sorted(found, key=lambda i: (-len(found[i]), i)):
        # Unspaced scripts: ``▁水`` and ``水`` spell one word; keep its more frequent piece only.
        if candidates[i] not in seen and len(ranked) < cfg.max_vocab:
            ranked.append(i)
            seen.add(candidates[i])
    return Words(ranked, [candidates[i] for i in ranked], [found[i][: cfg.max_occurrences] for i in ranked], sentences)


# ----------------------------------------------------------------------------------- vectors


def input_vectors(model: XLM, words: Words) -> np.ndarray:
    """(words, C): each word's row of the input (= tied output) embedding."""
    return model.tokens.weight.detach()[torch.tensor(words.ids, dtype=torch.long)].double().numpy()


@torch.no_grad()
def contextual_vectors(model: XLM, words: Words, lang: int, layer: int, batch_size: int = 64) -> np.ndarray:
    """(words, C): mean hidden state of ``layer`` at the word's occurrences in the corpus sample."""
    needed = sorted({s for occ in words.occurrences for s, _ in occ})
    states: dict[int, np.ndarray] = {}
    order = sorted(needed, key=lambda s: len(words.sentences[s]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens = torch.full((len(rows), max(len(words.sentences[s]) for s in rows)), PAD, dtype=torch.long)
        for b, s in enumerate(rows):
            tokens[b, : len(words.sentences[s])] = torch.tensor(words.sentences[s])
        hidden = model.hidden_states(tokens, torch.full_like(tokens, lang))[layer].double().numpy()  # (B, T, C)
        for b, s in enumerate(rows):
            states[s] = hidden[b]
    return np.stack([np.mean([states[s][t] for s, t in occ], axis=0) for occ in words.occurrences])


def normalize(vectors: np.ndarray) -> np.ndarray:
    """MUSE's "center, renorm": subtract the language's mean vector, then unit length."""
    return l2_normalize(vectors - vectors.mean(axis=0, keepdims=True))


# ------------------------------------------------------------------------------ dictionary


@dataclass
class Split:
    """Seed pairs (source row, target row) and test queries (source row, gold target rows)."""

    seed_pairs: list[tuple[int, int]]
    test_queries: list[int]
    test_gold: list[set[int]]
    seed_groups: set[str]
    test_groups: set[str]
    usable_pairs: int


def split_dictionary(pairs: pl.DataFrame, source: Words, target: Words, cfg: LexiconConfig, seed: int) -> Split:
    """Usable pairs (both words known), split by headword group into disjoint seed and test words."""
    src_index, tgt_index = source.index(), target.index()
    usable = [(g, src_index[s], tgt_index[t]) for g, s, t in pairs.select("group", "src_text", "tgt_text").iter_rows()
              if s in src_index and t in tgt_index]  # fmt: skip
    groups = sorted({g for g, _, _ in usable}, key=lambda g: _hash(seed, g))
    n_test = min(cfg.max_test, round(cfg.test_fraction * len(groups)))
    test_groups = set(groups[:n_test])
    seed_pairs = sorted({(s, t) for g, s, t in usable if g not in test_groups})
    gold: dict[int, set[int]] = {}
    for g, s, t in usable:
        if g in test_groups:
            gold.setdefault(s, set()).add(t)
    queries = sorted(gold)
    return Split(seed_pairs, queries, [gold[q] for q in queries], set(groups) - test_groups, test_groups, len(usable))


# --------------------------------------------------------------------------------- scoring


def induce(x: np.ndarray, y: np.ndarray, split: Split, cfg: LexiconConfig, seed: int) -> dict[str, Any]:
    """Procrustes on the seed, then P@1 of the test queries by nearest neighbour and by CSLS."""
    x, y = normalize(x), normalize(y)
    src, tgt = zip(*split.seed_pairs, strict=True)
    return score_mapping(x, y, procrustes(x[list(src)], y[list(tgt)]), split, cfg, seed)


def score_mapping(x: np.ndarray, y: np.ndarray, w: np.ndarray, split: Split, cfg: LexiconConfig,
                  seed: int) -> dict[str, Any]:  # fmt: skip
    """P@1 of the test queries mapped by ``w`` (x, y normalized), by nearest neighbour and by CSLS, with intervals."""
    mapped = x @ w
    queries = mapped[split.test_queries]
    out: dict[str, Any] = {}
    for method, scores in (("nn", cosine_similarity(queries, y)),
                           ("csls", csls_scores(queries, y, cfg.csls_k, source_pool=mapped))):  # fmt: skip
        best = scores.argmax(axis=1)
        hits = np.array([int(b) in g for b, g in zip(best, split.test_gold, strict=True)], dtype=np.float64)
        ci = bootstrap_mean_ci(hits, np.arange(len(hits)), seed, cfg.bootstrap)
        out[method] = {"p_at_1": precision_at_1(scores, split.test_gold), "ci_low": ci.low, "ci_high": ci.high}
    return out


def evaluate_language(models: Models, lang: str, pivot: str, pairs: pl.DataFrame | None,
                      words: Mapping[str, Words], vectors: Mapping[tuple[str, str, str], np.ndarray],
                      cfg: LexiconConfig, seed: int) -> dict[str, Any]:  # fmt: skip
    if pairs is None:
        return no_data(f"no FreeDict dictionary {pivot}-{lang}")
    split = split_dictionary(pairs, words[pivot], words[lang], cfg, seed)
    counts = {"dictionary_pairs": pairs.height, "usable_pairs": split.usable_pairs,
              "seed_pairs": len(split.seed_pairs), "seed_words": len(split.seed_groups),
              "test_words": len(split.test_queries), "source_words": len(words[pivot].words),
              "target_words": len(words[lang].words)}  # fmt: skip
    if len(split.seed_pairs) < cfg.min_seed or not split.test_queries:
        return {**no_data(f"{len(split.seed_pairs)} seed pairs (< {cfg.min_seed}) and {len(split.test_queries)} "
                          "test words among the words the vocabulary holds"), **counts}  # fmt: skip
    row: dict[str, Any] = {"status": "ok", **counts,
                           "chance": float(np.mean([len(g) for g in split.test_gold])) / len(words[lang].words),
                           "seed_examples": _examples(split.seed_pairs, words[pivot], words[lang]),
                           "words": {"seed": sorted(split.seed_groups), "test": sorted(split.test_groups)}}  # fmt: skip
    for kind in KINDS:
        row[kind] = {name: induce(vectors[(name, kind, pivot)], vectors[(name, kind, lang)], split, cfg, seed)
                     for name in MODELS}  # fmt: skip
    return row


def _examples(pairs: Sequence[tuple[int, int]], source: Words, target: Words, n: int = 10) -> list[str]:
    return [f"{source.words[s]} -> {target.words[t]}" for s, t in pairs[:n]]


def read_dictionaries(freedict_dirs: Sequence[str | os.PathLike[str]], pivot: str,
                      languages: Sequence[str]) -> dict[str, pl.DataFrame]:  # fmt: skip
    """``{pivot}-{lang}.arrow`` of every FreeDict source (extracted/{source}/), concatenated per language."""
    out = {}
    for lang in languages:
        paths = [Path(d) / f"{pivot}-{lang}.arrow" for d in freedict_dirs]
        frames = [pl.read_ipc(p, columns=["group", "src_text", "tgt_text"]) for p in paths if p.is_file()]
        frame = pl.concat(frames).unique(maintain_order=True) if frames else None
        if frame is not None and frame.height:
            out[lang] = frame
    return out


def evaluate(models: Models, dictionaries: Mapping[str, pl.DataFrame], clean: Mapping[str, str | os.PathLike[str]],
             pivot: str, cfg: LexiconConfig, seed: int) -> dict[str, Any]:  # fmt: skip
    layer = cfg.layer if cfg.layer is not None else max(1, models.ours.cfg.n_layers // 2)
    targets = [lang for lang in models.languages if lang != pivot]
    result: dict[str, Any] = {"pivot": pivot, "config": {**asdict(cfg), "layer": layer}, "seed": seed,
                              "languages": {}}  # fmt: skip
    needed = sorted({pivot} | {lang for lang in targets if lang in dictionaries and lang in clean})
    words, vectors = {}, {}
    for lang in needed:
        words[lang] = find_words(models.sp, corpus_sentences(clean[lang], cfg, seed), lang, cfg,
                                 models.ours.cfg.max_positions)  # fmt: skip
        for name, model in models.items():
            vectors[(name, "input_embedding", lang)] = input_vectors(model, words[lang])
            vectors[(name, "contextual", lang)] = contextual_vectors(model, words[lang], models.lang_id(lang), layer)
        LOG.info("lexicon: %s: %d words from %d sentences", lang, len(words[lang].words), len(words[lang].sentences))
    for lang in targets:
        pairs = dictionaries.get(lang) if lang in words else None
        result["languages"][lang] = evaluate_language(models, lang, pivot, pairs, words, vectors, cfg, seed)
        LOG.info("lexicon: %s: %s", lang, {k: v for k, v in result["languages"][lang].items() if k not in (*KINDS, "words")})
    return result


# ----------------------------------------------------------------------------------- plot


def plot(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write lexicon.png (``draw``) atomically."""
    save_figure(draw(result), path)


def draw(result: Mapping[str, Any]) -> Any:
    """P@1 per language for input embeddings and contextual vectors: ours (blue) beside the twin (grey), NN light
    and CSLS dark, every bar with its value (a score of 0 is a visible "0.00", not an empty panel), chance dotted;
    a language without a dictionary says "no data", and a panel with no language at all says so in the middle."""
    plt = pyplot()
    langs = list(result["languages"])
    fig, axes = plt.subplots(1, 2, figsize=(max(10.0, 2.6 * len(langs) + 4), 4.4), sharey=True)
    rows = [result["languages"][lang] for lang in langs]
    ok = [r.get("status") == "ok" for r in rows]
    bars = [("ours", "nn", "ours, NN", plots.OURS_LIGHT), ("ours", "csls", "ours, CSLS", plots.OURS),
            ("twin", "nn", "random twin, NN", plots.TWIN_LIGHT),
            ("twin", "csls", "random twin, CSLS", plots.TWIN)]  # fmt: skip
    values = {kind: [np.array([r[kind][name][method]["p_at_1"] if o else np.nan for r, o in zip(rows, ok, strict=True)])
                     for name, method, _, _ in bars] for kind in KINDS}  # fmt: skip
    top = plots.value_top([v for kind in KINDS for vals in values[kind] for v in vals], headroom=1.3)
    titles = {"input_embedding": "input embeddings", "contextual": f"contextual, layer {result['config']['layer']}"}
    x, width = np.arange(len(langs)), 0.8 / len(bars)
    for ax, kind in zip(axes, KINDS, strict=True):
        ax.set_title(titles[kind], fontsize=plots.TITLE_SIZE)
        if not any(ok):
            plots.no_data_panel(ax, "no language has a dictionary with enough seed pairs")
            continue
        ax.set_xlim(-0.6, len(langs) - 0.4)
        ax.set_ylim(0, top)  # shared y: small scores stay visible
        plots.category_ticks(ax, x, [_tick(result, lang) for lang in langs])
        for j, ((_name, _method, label, color), vals) in enumerate(zip(bars, values[kind], strict=True)):
            plots.label_bars(ax, ax.bar(x + (j - 1.5) * width, vals, width, label=label, color=color), vals, "{:.3f}")
        plots.all_zero_note(ax, [v for vals in values[kind] for v in vals], "P@1 here")
        for i, (row, o) in enumerate(zip(rows, ok, strict=True)):
            if o:
                ax.plot([i - 0.4, i + 0.4], [row["chance"]] * 2, color=plots.CHANCE, linestyle=":", linewidth=1,
                        label="chance (1 / target words)" if i == ok.index(True) else None)  # fmt: skip
            else:
                plots.no_data_bar_note(ax, i)
    axes[0].set_ylabel("P@1 on test words (Procrustes on seed)", fontsize=plots.LABEL_SIZE)
    if any(ok):
        axes[1].legend(fontsize=plots.TICK_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Lexicon induction on FreeDict (whole-word pieces)", fontsize=plots.TITLE_SIZE + 1)
    return fig


def _tick(result: Mapping[str, Any], lang: str) -> str:
    row = result["languages"][lang]
    counts = f"\nseed {row['seed_pairs']}\ntest {row['test_words']}" if row.get("status") == "ok" else ""
    return f"{result['pivot']}→{lang}{counts}"


def run_lexicon(model_pt: str, spm_model: str, freedict_dirs: Sequence[str], clean: Mapping[str, str], pivot: str,
                params: Mapping[str, Any], seed: int, out_json: str, out_png: str, log: str | None = None,
                threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``lexicon`` rule: eval/{run}/lexicon.json and lexicon.png."""
    with stage_logging(log):
        set_threads(threads)
        cfg = LexiconConfig.from_params(params)
        models = load_models(model_pt, spm_model, seed)
        dictionaries = read_dictionaries(freedict_dirs, pivot, models.languages)
        result = evaluate(models, dictionaries, clean, pivot, cfg, seed)
        result["model"] = {"path": Path(model_pt).name, "step": models.meta["step"],
                           "spm_sha256": models.meta["spm_sha256"]}  # fmt: skip
        write_result(out_json, result)
        plot(result, out_png)
        LOG.info("lexicon: wrote %s", out_json)
        return result
