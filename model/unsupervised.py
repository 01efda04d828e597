"""Unsupervised alignment as an evaluation family (MUSE, Conneau et al. 2018; Tien & Steinert-Threlkeld 2021).

The supervised lexicon family (model/lexicon.py) fits an orthogonal map on FreeDict seed words. This family
learns the map *without any dictionary*, from the two languages' word vectors alone (model/align.py: the
adversarial game with restarts, CSLS-Procrustes refinement, an optional cycle loss), and scores it on the same
test words, so the two maps sit side by side: how much of the supervised result does the geometry alone give?

Words, vectors, the seed/test split and the scoring are lexicon.py's (imported, with eval.lexicon's settings),
so the test words and the supervised numbers are exactly those of eval/{run}/lexicon.json. Each language row
also scores the identity map (no mapping at all): in a joint vocabulary the two languages' vectors already share
one space, and a learned map is worth something only where it beats leaving them where they are. Every number
is given for our model and its random twin.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from model import lexicon
from model.align import AlignConfig, align
from model.eval_common import MODELS, Models, load_models, no_data, pyplot, save_figure, set_threads, write_result
from model.lexicon import LexiconConfig, Split, Words
from pipeline.logs import stage_logging

LOG = logging.getLogger(__name__)
MAPS = ("supervised", "unsupervised", "identity")  # column order of a row


@dataclass
class UnsupervisedConfig:
    """eval.unsupervised in config (workflow/schemas/config.schema.yaml describes each key).

    The alignment keys are model/align.py's ``AlignConfig`` fields, at CPU-evaluation sizes (MUSE trains for
    hours on a GPU); ``csls_k`` comes from eval.lexicon, so both maps are scored with one CSLS.
    """

    kinds: tuple[str, ...] = ("contextual",)
    epochs: int = 2
    iterations: int = 200
    batch_size: int = 128
    dis_steps: int = 2
    dis_hidden: int = 128
    map_lr: float = 1.0
    restarts: int = 2
    most_frequent: int = 2000
    cycle_weight: float = 0.0
    refine_iterations: int = 5
    dico_max_rank: int = 2000
    criterion_words: int = 1000

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> UnsupervisedConfig:
        values = {k: v for k, v in (params or {}).items() if k in cls.__dataclass_fields__}
        if "kinds" in values:
            unknown = sorted(set(values["kinds"]) - set(lexicon.KINDS))
            if unknown:
                raise ValueError(f"eval.unsupervised.kinds: {unknown} are not among {list(lexicon.KINDS)}")
            values["kinds"] = tuple(k for k in lexicon.KINDS if k in values["kinds"])
        return cls(**values)

    def align_config(self, seed: int, csls_k: int) -> AlignConfig:
        shared = {f.name for f in fields(AlignConfig)} & set(self.__dataclass_fields__)
        return AlignConfig(seed=seed, csls_k=csls_k, **{name: getattr(self, name) for name in shared})


# ---------------------------------------------------------------------------------------- scoring


def seed_pair_agreement(x: np.ndarray, y: np.ndarray, w: np.ndarray, split: Split) -> float:
    """Mean cosine of the seed pairs after mapping: how close the learned map puts known translations."""
    src, tgt = (list(side) for side in zip(*split.seed_pairs, strict=True))
    return float(np.mean(np.sum((x[src] @ w) * y[tgt], axis=1)))


def compare_maps(x_raw: np.ndarray, y_raw: np.ndarray, split: Split, lex_cfg: LexiconConfig,
                 cfg: UnsupervisedConfig, seed: int) -> dict[str, Any]:  # fmt: skip
    """The supervised map (lexicon.induce), the unsupervised one (align) and the identity, on one split."""
    x, y = lexicon.normalize(x_raw), lexicon.normalize(y_raw)  # rows stay most-frequent-first (find_words)
    found = align(x, y, cfg.align_config(seed, lex_cfg.csls_k))
    return {
        "supervised": lexicon.induce(x_raw, y_raw, split, lex_cfg, seed),
        "unsupervised": {**lexicon.score_mapping(x, y, found.w, split, lex_cfg, seed),
                         "seed_pair_cosine": seed_pair_agreement(x, y, found.w, split),
                         "criterion": found.report.criterion, "alignment": found.report.as_dict()},
        "identity": {**lexicon.score_mapping(x, y, np.eye(x.shape[1]), split, lex_cfg, seed),
                     "seed_pair_cosine": seed_pair_agreement(x, y, np.eye(x.shape[1]), split)},
    }  # fmt: skip


# ----------------------------------------------------------------------------------- evaluation


def word_vectors(models: Models, clean: Mapping[str, str | os.PathLike[str]], languages: Sequence[str],
                 lex_cfg: LexiconConfig, kinds: Sequence[str], layer: int,
                 seed: int) -> tuple[dict[str, Words], dict[tuple[str, str, str], np.ndarray]]:  # fmt: skip
    """lexicon.py's words and vectors, for the requested kinds only (contextual vectors cost a forward pass)."""
    words, vectors = {}, {}
    for lang in languages:
        words[lang] = lexicon.find_words(models.sp, lexicon.corpus_sentences(clean[lang], lex_cfg, seed), lang,
                                         lex_cfg, models.ours.cfg.max_positions)  # fmt: skip
        for name, model in models.items():
            if "input_embedding" in kinds:
                vectors[(name, "input_embedding", lang)] = lexicon.input_vectors(model, words[lang])
            if "contextual" in kinds:
                vectors[(name, "contextual", lang)] = lexicon.contextual_vectors(model, words[lang],
                                                                                 models.lang_id(lang), layer)  # fmt: skip
    return words, vectors


def evaluate_language(lang: str, pivot: str, pairs: pl.DataFrame | None, words: Mapping[str, Words],
                      vectors: Mapping[tuple[str, str, str], np.ndarray], lex_cfg: LexiconConfig,
                      cfg: UnsupervisedConfig, seed: int) -> dict[str, Any]:  # fmt: skip
    if pairs is None:
        return no_data(f"no FreeDict dictionary {pivot}-{lang}")
    split = lexicon.split_dictionary(pairs, words[pivot], words[lang], lex_cfg, seed)
    counts = {"seed_pairs": len(split.seed_pairs), "test_words": len(split.test_queries),
              "source_words": len(words[pivot].words), "target_words": len(words[lang].words)}  # fmt: skip
    if len(split.seed_pairs) < lex_cfg.min_seed or not split.test_queries:
        # The supervised family's own condition: the two are scored on the same languages or neither.
        return {**no_data(f"{len(split.seed_pairs)} seed pairs (< {lex_cfg.min_seed}) and {len(split.test_queries)} "
                          "test words among the words the vocabulary holds"), **counts}  # fmt: skip
    row: dict[str, Any] = {"status": "ok", **counts, "words": {"test": sorted(split.test_groups)},
                           "chance": float(np.mean([len(g) for g in split.test_gold])) / len(words[lang].words)}  # fmt: skip
    for kind in cfg.kinds:
        row[kind] = {name: compare_maps(vectors[(name, kind, pivot)], vectors[(name, kind, lang)], split, lex_cfg,
                                        cfg, seed) for name in MODELS}  # fmt: skip
    return row


def evaluate(models: Models, dictionaries: Mapping[str, pl.DataFrame], clean: Mapping[str, str | os.PathLike[str]],
             pivot: str, lex_cfg: LexiconConfig, cfg: UnsupervisedConfig, seed: int) -> dict[str, Any]:  # fmt: skip
    """The whole family; the unsupervised.json dict (one row per non-pivot language of the model)."""
    layer = lex_cfg.layer if lex_cfg.layer is not None else max(1, models.ours.cfg.n_layers // 2)
    targets = [lang for lang in models.languages if lang != pivot]
    needed = sorted({pivot} | {lang for lang in targets if lang in dictionaries and lang in clean})
    words, vectors = word_vectors(models, clean, needed, lex_cfg, cfg.kinds, layer, seed)
    result: dict[str, Any] = {"pivot": pivot, "seed": seed, "layer": layer, "config": asdict(cfg),
                              "lexicon_config": asdict(lex_cfg), "languages": {}}  # fmt: skip
    for lang in targets:
        pairs = dictionaries.get(lang) if lang in words else None
        row = evaluate_language(lang, pivot, pairs, words, vectors, lex_cfg, cfg, seed)
        result["languages"][lang] = row
        if row.get("status") == "ok":
            for kind in cfg.kinds:
                LOG.info("unsupervised: %s %s: CSLS P@1 ours supervised %.3f, unsupervised %.3f, identity %.3f",
                         lang, kind, *(row[kind]["ours"][m]["csls"]["p_at_1"] for m in MAPS))  # fmt: skip
        else:
            LOG.info("unsupervised: %s: %s", lang, row["reason"])
    return result


# ----------------------------------------------------------------------------------------- plot


def plot(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """CSLS P@1 per language: supervised, unsupervised and identity maps, ours (solid) and twin (hatched)."""
    plt = pyplot()
    kinds = list(result["config"]["kinds"])
    langs = list(result["languages"])
    panel_width = max(5.0, 1.8 * len(langs) + 2)
    fig, axes = plt.subplots(1, len(kinds), figsize=(panel_width * len(kinds), 4.0), sharey=True, squeeze=False)
    colors = {"supervised": "#1f77b4", "unsupervised": "#2ca02c", "identity": "#7f7f7f"}
    bars = [(name, m) for name in MODELS for m in MAPS]
    x, width = np.arange(len(langs)), 0.8 / len(bars)
    top = 0.0
    for ax, kind in zip(axes[0], kinds, strict=True):
        for j, (name, m) in enumerate(bars):
            rows = [result["languages"][lang] for lang in langs]
            val = np.array([r[kind][name][m]["csls"]["p_at_1"] if r.get("status") == "ok" else np.nan for r in rows])
            label = f"{m}, {'ours' if name == 'ours' else 'random twin'}"
            ax.bar(x + (j - (len(bars) - 1) / 2) * width, val, width, label=label, color=colors[m],
                   hatch="//" if name == "twin" else None, alpha=0.45 if name == "twin" else 1.0)  # fmt: skip
            top = max([top, *val[np.isfinite(val)]])
        for i, lang in enumerate(langs):
            row = result["languages"][lang]
            if row.get("status") != "ok":
                ax.text(i, 0.01, "no data", ha="center", va="bottom", rotation=90, color="grey")
            else:
                ax.plot([i - 0.4, i + 0.4], [row["chance"]] * 2, color="black", linestyle=":", linewidth=1)
        ticks = [f"{result['pivot']}→{lang}" + (f"\n{result['languages'][lang]['test_words']} test words"
                 if result["languages"][lang].get("status") == "ok" else "") for lang in langs]  # fmt: skip
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_xlim(-0.6, len(langs) - 0.4)
        ax.set_title("input embeddings" if kind == "input_embedding" else f"contextual, layer {result['layer']}")
    axes[0][0].set_ylim(0, min(1.0, max(0.1, 1.2 * top)))  # shared y: small scores stay visible
    axes[0][0].set_ylabel("CSLS P@1 on the lexicon family's test words")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="dotted: chance")
    fig.suptitle("Lexicon induction: Procrustes on seed words vs. unsupervised MUSE vs. no map")
    save_figure(fig, path)


def run_unsupervised(model_pt: str, spm_model: str, freedict_dirs: Sequence[str], clean: Mapping[str, str],
                     pivot: str, lexicon_params: Mapping[str, Any], params: Mapping[str, Any], seed: int,
                     out_json: str, out_png: str, log: str | None = None,
                     threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``unsupervised`` rule: eval/{run}/unsupervised.json and unsupervised.png."""
    with stage_logging(log):
        set_threads(threads)
        lex_cfg, cfg = LexiconConfig.from_params(lexicon_params), UnsupervisedConfig.from_params(params)
        models = load_models(model_pt, spm_model, seed)
        dictionaries = lexicon.read_dictionaries(freedict_dirs, pivot, models.languages)
        result = evaluate(models, dictionaries, clean, pivot, lex_cfg, cfg, seed)
        result["model"] = {"path": Path(model_pt).name, "step": models.meta["step"],
                           "spm_sha256": models.meta["spm_sha256"]}  # fmt: skip
        write_result(out_json, result)
        plot(result, out_png)
        LOG.info("unsupervised: wrote %s", out_json)
        return result
