"""Zero-shot cross-lingual transfer, XNLI-style, on a real label: the help module of a LibreOffice help block.

Fine-tune the encoder with a classification head on the first token (XLM's XNLI setup) on pivot-language
train blocks (at most ``max_train``), keep the epoch that scores best on pivot valid blocks, then classify
the test blocks of every language. The scored test items are the blocks present in *every* evaluated
language (aligned by page and block id), so every language is scored on the same items and the gap
between the pivot and a language (XLM's Table 1 "transfer gap") measures the language, not the items.
Training and selection use every pivot block of their split: no other language ever sees them.

Blocks come from ``clean/{lang}.arrow`` (source ``libreoffice_help``): LID has removed blocks that a
translation left in English, and a block whose text is the pivot's verbatim is dropped as well (it tests
nothing cross-lingual). Each row of the result: fine-tuned accuracy of our model and of its random twin,
a frozen-feature logistic probe on mean-pooled vectors of both, the majority-class rate, chance, and
cluster-bootstrap intervals over help pages. A language with no aligned test block is "no data".
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from model.embed import encode, sentence_vectors
from model.eval_common import (
    MODELS,
    EvalError,
    Models,
    load_models,
    no_data,
    pyplot,
    save_figure,
    set_threads,
    write_result,
)
from model.geometry import bootstrap_mean_ci
from model.xlm import XLM
from pipeline import plots
from pipeline.logs import stage_logging
from pipeline.schemas import PAD

LOG = logging.getLogger(__name__)
SOURCE = "libreoffice_help"
PROBE_L2 = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # L2 strengths tried for the probe, chosen on pivot valid


@dataclass
class ClassifyConfig:
    """eval.classify in config (workflow/schemas/config.schema.yaml describes each key)."""

    max_train: int = 1000
    max_valid: int = 300
    max_test: int = 300
    epochs: int = 2
    lr: float = 3e-4
    batch_size: int = 16
    max_tokens: int = 128
    dropout: float = 0.1
    bootstrap: int = 1000

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ClassifyConfig:
        return cls(**{k: v for k, v in (params or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class Items:
    """Blocks of one split: texts per language (aligned: row i is the same block everywhere), labels, pages."""

    texts: dict[str, list[str]]
    labels: list[str]
    pages: list[str]
    keys: list[str]


# ----------------------------------------------------------------------------------------- data


def block_key(row_id: str, lang: str) -> str:
    """The language-free block id: ``libreoffice_help/de/text/.../page.html/par_id1`` -> ``text/.../par_id1``."""
    prefix = f"{SOURCE}/{lang}/"
    if not row_id.startswith(prefix):
        raise EvalError(f"row_id {row_id!r} does not start with {prefix!r}: cannot align it across languages")
    return row_id[len(prefix) :]


def read_blocks(clean: Mapping[str, str | os.PathLike[str]]) -> dict[str, pl.DataFrame]:
    """Per language, its help blocks: key, doc_id, split, label, text (languages without any are left out)."""
    blocks = {}
    for lang, path in sorted(clean.items()):
        frame = pl.read_ipc(path, columns=["row_id", "source", "doc_id", "split", "label", "text"])
        frame = frame.filter((pl.col("source") == SOURCE) & pl.col("label").is_not_null())
        if frame.height:
            keys = [block_key(r, lang) for r in frame["row_id"]]
            blocks[lang] = frame.with_columns(key=pl.Series(keys)).unique("key", keep="first").sort("key")
    return blocks


def _stable_order(keys: Sequence[str], seed: int) -> list[int]:
    """Indices in a seeded, input-order-independent order (a deterministic sample takes a prefix)."""
    digest = [hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest() for k in keys]
    return sorted(range(len(keys)), key=lambda i: digest[i])


def _take(frame: pl.DataFrame, cap: int, seed: int) -> pl.DataFrame:
    order = sorted(_stable_order(frame["key"].to_list(), seed)[:cap])
    return frame[order]


def pivot_items(blocks: Mapping[str, pl.DataFrame], pivot: str, split: str, cap: int, seed: int) -> Items:
    frame = _take(blocks[pivot].filter(pl.col("split") == split), cap, seed)
    return Items({pivot: frame["text"].to_list()}, frame["label"].to_list(), frame["doc_id"].to_list(),
                 frame["key"].to_list())  # fmt: skip


def aligned_test_items(blocks: Mapping[str, pl.DataFrame], pivot: str, cap: int, seed: int) -> Items:
    """Test blocks present in every language of ``blocks`` and translated (not the pivot's text verbatim)."""
    test = {lang: frame.filter(pl.col("split") == "test") for lang, frame in blocks.items()}
    joined = test[pivot].select("key", "doc_id", "label", pl.col("text").alias(pivot))
    for lang in sorted(test):
        if lang != pivot:
            joined = joined.join(test[lang].select("key", pl.col("text").alias(lang)), on="key", how="inner")
            joined = joined.filter(pl.col(lang) != pl.col(pivot))
    joined = _take(joined.sort("key"), cap, seed)
    return Items({lang: joined[lang].to_list() for lang in sorted(test)}, joined["label"].to_list(),
                 joined["doc_id"].to_list(), joined["key"].to_list())  # fmt: skip


# ---------------------------------------------------------------------------------------- model


class Classifier(nn.Module):
    """The encoder with a linear head on the first token's top hidden state (``</s>``, as XLM for XNLI)."""

    def __init__(self, encoder: XLM, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.cfg.dim, n_classes)

    def forward(self, tokens: torch.Tensor, langs: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder.hidden_states(tokens, langs)[-1]  # (B, T, C)
        return self.head(self.drop(hidden[:, 0]))  # (B, n_classes)


def pad(sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    tokens = torch.full((len(sequences), max(len(s) for s in sequences)), PAD, dtype=torch.long)
    for i, seq in enumerate(sequences):
        tokens[i, : len(seq)] = torch.tensor(seq)
    return tokens


@torch.no_grad()
def predict(clf: Classifier, sequences: Sequence[Sequence[int]], lang: int, batch_size: int) -> np.ndarray:
    clf.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # batches of similar length
    out = np.zeros(len(sequences), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens = pad([sequences[i] for i in rows])
        out[rows] = clf(tokens, torch.full_like(tokens, lang)).argmax(dim=1).numpy()
    return out


def length_batches(sequences: Sequence[Sequence[int]], batch_size: int, rng: np.random.Generator,
                   pool: int = 50) -> list[np.ndarray]:  # fmt: skip
    """Shuffled batches of similar lengths: sort within random pools of ``pool`` batches, shuffle the batches.

    Help blocks run from a few ids to a hundred; random batches would be mostly padding.
    """
    order = rng.permutation(len(sequences))
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = sorted(order[start : start + batch_size * pool], key=lambda i: len(sequences[i]))
        batches += [np.array(chunk[b : b + batch_size]) for b in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def fine_tune(encoder: XLM, train: tuple[list[list[int]], np.ndarray], valid: tuple[list[list[int]], np.ndarray],
              lang: int, n_classes: int, cfg: ClassifyConfig, seed: int) -> tuple[Classifier, dict[str, Any]]:  # fmt: skip
    """Fine-tune encoder + head on ``train``; return the epoch with the best valid accuracy (first on ties)."""
    torch.manual_seed(seed)
    clf = Classifier(encoder, n_classes, cfg.dropout)
    optimizer = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    sequences, labels = train
    best_state, history = copy.deepcopy(clf.state_dict()), []
    best = -1.0
    for epoch in range(1, cfg.epochs + 1):
        clf.train()
        for rows in length_batches(sequences, cfg.batch_size, rng):
            tokens = pad([sequences[i] for i in rows])
            loss = F.cross_entropy(clf(tokens, torch.full_like(tokens, lang)), torch.from_numpy(labels[rows]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = float(np.mean(predict(clf, valid[0], lang, 64) == valid[1]))
        history.append({"epoch": epoch, "valid_accuracy": accuracy})
        if accuracy > best:
            best, best_state = accuracy, copy.deepcopy(clf.state_dict())
    clf.load_state_dict(best_state)
    selected = max(history, key=lambda h: (h["valid_accuracy"], -h["epoch"]))
    return clf, {"selected_epoch": selected["epoch"], "valid_accuracy": best, "history": history}


# ---------------------------------------------------------------------------------------- probe


def _standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


def logistic_regression(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (weights, bias), full-batch L-BFGS in float64: deterministic."""
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(xt @ w + b, yt) + l2 * (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def probe(train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
          tests: Mapping[str, np.ndarray], n_classes: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # fmt: skip
    """Frozen features: fit on pivot train, pick L2 on pivot valid; predictions for every test set.

    Every set is standardized with the train mean and spread (a probe needs no per-language statistics).
    """
    names = sorted(tests)
    xs = _standardize(train[0], valid[0], *(tests[n] for n in names))
    fits = {}
    for l2 in PROBE_L2:
        w, b = logistic_regression(xs[0], train[1], n_classes, l2)
        fits[l2] = (float(np.mean((xs[1] @ w + b).argmax(axis=1) == valid[1])), w, b)
    l2 = max(PROBE_L2, key=lambda c: (fits[c][0], -c))  # best valid accuracy, then the stronger L2
    _, w, b = fits[l2]
    predictions = {n: (x @ w + b).argmax(axis=1) for n, x in zip(names, xs[2:], strict=True)}
    return predictions, {"l2": l2, "valid_accuracy": fits[l2][0]}


# -------------------------------------------------------------------------------------- scoring


def score(correct: np.ndarray, pages: Sequence[str], cfg: ClassifyConfig, seed: int) -> dict[str, float]:
    ci = bootstrap_mean_ci(correct.astype(np.float64), list(pages), seed, cfg.bootstrap)
    return {"accuracy": ci.estimate, "ci_low": ci.low, "ci_high": ci.high}


def paired_difference(a: np.ndarray, b: np.ndarray, pages: Sequence[str], cfg: ClassifyConfig,
                      seed: int) -> dict[str, float]:  # fmt: skip
    """Ours minus twin on the same items, with a cluster-bootstrap interval: does ours clear its floor?"""
    ci = bootstrap_mean_ci(a.astype(np.float64) - b.astype(np.float64), list(pages), seed, cfg.bootstrap)
    return {"difference": ci.estimate, "ci_low": ci.low, "ci_high": ci.high}


def encode_texts(models: Models, texts: Sequence[str], cfg: ClassifyConfig) -> list[list[int]]:
    return encode(models.sp, texts, min(cfg.max_tokens, models.ours.cfg.max_positions))


def _features(model: XLM, sequences: list[list[int]], lang: int) -> np.ndarray:
    return sentence_vectors(model, sequences, lang, [model.cfg.n_layers])[0].astype(np.float64)


def evaluate(models: Models, blocks: Mapping[str, pl.DataFrame], pivot: str, cfg: ClassifyConfig,
             seed: int) -> dict[str, Any]:  # fmt: skip
    """The whole family: fine-tune and probe both models, score every language; the classify.json dict."""
    languages = models.languages
    result: dict[str, Any] = {"pivot": pivot, "config": asdict(cfg), "seed": seed, "languages": {}}
    if pivot not in blocks:
        result["languages"] = {lang: no_data(f"no {SOURCE} blocks in the pivot {pivot}") for lang in languages}
        return result
    evaluated = {lang: frame for lang, frame in blocks.items() if lang in languages}
    train = pivot_items(blocks, pivot, "train", cfg.max_train, seed)
    valid = pivot_items(blocks, pivot, "valid", cfg.max_valid, seed)
    test = aligned_test_items(evaluated, pivot, cfg.max_test, seed)
    names = sorted(set(train.labels))
    label_id = {name: i for i, name in enumerate(names)}
    to_ids = lambda labels: np.array([label_id.get(x, -1) for x in labels], dtype=np.int64)  # noqa: E731
    y_train, y_valid, y_test = to_ids(train.labels), to_ids(valid.labels), to_ids(test.labels)
    majority = int(np.bincount(y_train).argmax())
    result.update({
        "labels": names, "majority_label": names[majority], "chance": 1.0 / len(names),
        "n_train": len(y_train), "n_valid": len(y_valid), "n_test": len(y_test),
        "n_test_pages": len(set(test.pages)), "aligned_languages": sorted(evaluated), "test_blocks": test.keys,
    })  # fmt: skip
    LOG.info("classify: %d train, %d valid pivot blocks; %d test blocks aligned across %s; labels %s",
             len(y_train), len(y_valid), len(y_test), ", ".join(sorted(evaluated)), names)  # fmt: skip
    if not len(y_train) or not len(y_valid) or not len(y_test):
        reason = f"too few blocks: {len(y_train)} train, {len(y_valid)} valid, {len(y_test)} aligned test"
        result["languages"] = {lang: no_data(reason) for lang in languages}
        return result

    pivot_id = models.lang_id(pivot)
    seq_train, seq_valid = encode_texts(models, train.texts[pivot], cfg), encode_texts(models, valid.texts[pivot], cfg)
    seq_test = {lang: encode_texts(models, test.texts[lang], cfg) for lang in test.texts}
    correct: dict[str, dict[str, np.ndarray]] = {}  # method -> lang -> per-item 0/1
    result["models"] = {}
    for name, model in models.items():
        clf, selection = fine_tune(model, (seq_train, y_train), (seq_valid, y_valid), pivot_id, len(names), cfg, seed)
        for lang, seqs in seq_test.items():
            correct.setdefault(f"finetune_{name}", {})[lang] = predict(clf, seqs, models.lang_id(lang), 64) == y_test
        feats = {lang: _features(model, seqs, models.lang_id(lang)) for lang, seqs in seq_test.items()}
        predictions, probe_fit = probe((_features(model, seq_train, pivot_id), y_train),
                                       (_features(model, seq_valid, pivot_id), y_valid), feats, len(names))  # fmt: skip
        correct[f"probe_{name}"] = {lang: p == y_test for lang, p in predictions.items()}
        result["models"][name] = {"finetune": selection, "probe": probe_fit}
        LOG.info("classify: %s fine-tuned (epoch %d, valid %.3f), probe valid %.3f", name,
                 selection["selected_epoch"], selection["valid_accuracy"], probe_fit["valid_accuracy"])  # fmt: skip
    majority_rate = float(np.mean(y_test == majority))
    for lang in languages:
        result["languages"][lang] = (
            language_row(lang, pivot, correct, test.pages, majority_rate, cfg, seed)
            if lang in test.texts
            else no_data(f"no {SOURCE} blocks in clean/{lang}.arrow")
        )
    result["summary"] = summary(result["languages"], pivot)
    return result


def language_row(lang: str, pivot: str, correct: Mapping[str, Mapping[str, np.ndarray]], pages: Sequence[str],
                 majority_rate: float, cfg: ClassifyConfig, seed: int) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = {"status": "ok", "n_items": len(pages), "n_pages": len(set(pages)), "majority": majority_rate}
    for method, by_lang in sorted(correct.items()):
        row[method] = score(by_lang[lang], pages, cfg, seed)
        row[method]["transfer_gap"] = float(by_lang[pivot].mean() - by_lang[lang].mean())
    for method in ("finetune", "probe"):
        row[f"{method}_ours_minus_twin"] = paired_difference(
            correct[f"{method}_ours"][lang], correct[f"{method}_twin"][lang], pages, cfg, seed)  # fmt: skip
    return row


def summary(rows: Mapping[str, Mapping[str, Any]], pivot: str) -> dict[str, Any]:
    """Pivot accuracy, mean over the other scored languages, and the transfer gap (XLM Table 1), per method."""
    others = [lang for lang, row in rows.items() if lang != pivot and row.get("status") == "ok"]
    out = {}
    for method in (f"{m}_{name}" for m in ("finetune", "probe") for name in MODELS):
        if rows.get(pivot, {}).get("status") != "ok":
            continue
        pivot_acc = rows[pivot][method]["accuracy"]
        mean_other = float(np.mean([rows[lang][method]["accuracy"] for lang in others])) if others else None
        out[method] = {"pivot_accuracy": pivot_acc, "mean_other_accuracy": mean_other,
                       "transfer_gap": None if mean_other is None else pivot_acc - mean_other}  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------- plot


def plot(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write classify.png (``draw``) atomically."""
    save_figure(draw(result), path)


def draw(result: Mapping[str, Any]) -> Any:
    """Accuracy per language: fine-tuned (dark) and probe (light), ours (blue) and twin (grey), each with its
    value and interval; majority-class and chance lines; a language without items says "no data"."""
    plt = pyplot()
    langs = list(result["languages"])
    methods = [("finetune_ours", "fine-tuned, ours", plots.OURS), ("probe_ours", "probe, ours", plots.OURS_LIGHT),
               ("finetune_twin", "fine-tuned, random twin", plots.TWIN),
               ("probe_twin", "probe, random twin", plots.TWIN_LIGHT)]  # fmt: skip
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 * len(langs) + 3), 4.6))
    rows = [result["languages"][lang] for lang in langs]
    ok = [r.get("status") == "ok" for r in rows]
    n = result.get("n_test", 0)
    ax.set_title(f"Zero-shot help-module classification, trained on {result['pivot']} ({n} aligned test blocks)",
                 fontsize=plots.TITLE_SIZE)  # fmt: skip
    if not any(ok):
        plots.no_data_panel(ax, "no test blocks aligned across the evaluated languages")
        return fig
    x = np.arange(len(langs))
    ax.set_xlim(-0.6, len(langs) - 0.4)
    ax.set_ylim(0, 1.12)  # room above 1.0 for the labels of a perfect score
    plots.category_ticks(ax, x, [f"{lang} (pivot)" if lang == result["pivot"] else lang for lang in langs])
    width = 0.8 / len(methods)
    for j, (method, label, color) in enumerate(methods):
        acc, low, high = (np.array([r[method][key] if o else np.nan for r, o in zip(rows, ok, strict=True)])
                          for key in ("accuracy", "ci_low", "ci_high"))  # fmt: skip
        bars = ax.bar(x + (j - 1.5) * width, acc, width, label=label, color=color, yerr=[acc - low, high - acc],
                      capsize=2, error_kw={"linewidth": 0.7, "ecolor": "#555555"})  # fmt: skip
        plots.label_bars(ax, bars, acc)
    majority = next((r["majority"] for r, o in zip(rows, ok, strict=True) if o and "majority" in r), None)
    if majority is not None:
        ax.axhline(majority, color="black", linestyle="--", linewidth=1, label=f"majority class ({majority:.2f})")
    if "chance" in result:
        ax.axhline(result["chance"], color="grey", linestyle=":", linewidth=1, label=f"chance ({result['chance']:.2f})")
    for i in np.flatnonzero(~np.array(ok)):
        plots.no_data_bar_note(ax, i)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("test accuracy (95% CI over help pages)", fontsize=plots.LABEL_SIZE)
    ax.legend(fontsize=plots.TICK_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def run_classify(model_pt: str, spm_model: str, clean: Mapping[str, str], pivot: str, params: Mapping[str, Any],
                 seed: int, out_json: str, out_png: str, log: str | None = None,
                 threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``classify`` rule: eval/{run}/classify.json and classify.png."""
    with stage_logging(log):
        set_threads(threads)
        cfg = ClassifyConfig.from_params(params)
        models = load_models(model_pt, spm_model, seed)
        result = evaluate(models, read_blocks(clean), pivot, cfg, seed)
        result["model"] = {"path": str(Path(model_pt).name), "step": models.meta["step"],
                           "spm_sha256": models.meta["spm_sha256"]}  # fmt: skip
        write_result(out_json, result)
        plot(result, out_png)
        LOG.info("classify: wrote %s", out_json)
        return result
