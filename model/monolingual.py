"""Monolingual transfer (Artetxe, Ruder & Yogatama 2020, "On the cross-lingual transferability of monolingual
representations"): can a model trained on the pivot language alone be moved to another language by relearning
only its vocabulary and token embeddings?

For a trained pivot model (``models/{variant}/model.pt`` and its ``spm.model``), per target language:

1. a new SentencePiece vocabulary, trained on the target's clean train text (the vocab stage's special ids);
2. new token embeddings (and output bias; the output projection is tied to them) learned by MLM on that text
   with everything else frozen: the Transformer body, the position and language embeddings and the embedding
   LayerNorm stay the pivot's, bit for bit. The special-token rows (``<pad> <s> </s> <unk> <mask>``) are the
   pivot's and stay fixed: the classifier reads the first ``</s>``, which must mean the same in both languages;
3. the classifier (model/classify.py's task, head and fine-tuning) is fine-tuned on the pivot with the pivot's
   token embeddings frozen (so the body keeps speaking their language), then the target's embeddings are
   swapped in and the target's test blocks are classified: zero-shot accuracy per language.

Each language row also gives two floors: the pivot's own vocabulary and embeddings on the target text (what the
model does without relearning anything), and the random twin (the same steps on a body with random weights:
what embedding learning and fine-tuning reach without any pretrained body). The joint model's zero-shot
accuracy from eval/{run}/classify.json stands beside them when given, with a flag saying whether it was scored
on the same test blocks.

    python -m model.monolingual MODEL_DIR --clean en=clean/en.arrow --clean de=clean/de.arrow --pivot en \\
        --out eval/mono_en/monolingual.json [--joint eval/RUN/classify.json] [--params '{"steps": 500}']
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import io
import json
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
import torch.nn as nn

from model import classify
from model.batches import IGNORE, N_SPECIAL, DataConfig, mask_tokens
from model.classify import Classifier, ClassifyConfig
from model.embed import encode
from model.eval_common import EvalError, load_models, no_data, pyplot, save_figure, set_threads, write_result
from model.xlm import XLM
from pipeline.logs import stage_logging
from pipeline.schemas import BOS, EOS, MASK, PAD, SPECIAL_PIECES, UNK

LOG = logging.getLogger(__name__)
VOCAB_PARAMETERS = ("tokens.weight", "out_bias")  # what a vocabulary swap replaces; everything else is "the body"


@dataclass
class MonolingualConfig:
    """eval.monolingual in config (workflow/schemas/config.schema.yaml describes each key)."""

    vocab_size: int | None = None
    max_sentences: int = 20000
    max_valid_sentences: int = 500
    steps: int = 1000
    batch_size: int = 16
    bptt: int = 128
    lr: float = 2e-3
    warmup_steps: int = 50
    mlm_probability: float = 0.15
    eval_batches: int = 8
    log_every: int = 50
    twin: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> MonolingualConfig:
        return cls(**{k: v for k, v in (params or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class TargetModel:
    """A target language's vocabulary and the pivot model with that language's embeddings swapped in."""

    lang: str
    sp: spm.SentencePieceProcessor
    model: XLM
    mlm: dict[str, Any]


# ------------------------------------------------------------------------------------------- text


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()


def language_texts(path: str | os.PathLike[str], split: str, cap: int, seed: int) -> list[str]:
    """At most ``cap`` rows of ``split`` from clean/{lang}.arrow: a seeded sample, in file order."""
    frame = pl.read_ipc(path, columns=["row_id", "split", "text"]).filter(pl.col("split") == split)
    keep = sorted(range(frame.height), key=lambda i: _hash(seed, frame["row_id"][i]))[:cap]
    return [frame["text"][i] for i in sorted(keep)]


def train_vocabulary(texts: Sequence[str], vocab: Mapping[str, Any], vocab_size: int, seed: int) -> bytes:
    """A SentencePiece model of the target text with Polyforge's special ids (as the vocab stage trains one).

    ``vocab`` is the run's ``vocab`` config section (model type, coverage, byte fallback, threads); the size is a
    soft limit, so a small corpus gives a smaller vocabulary instead of an error.
    """
    if not texts:
        raise EvalError("no target text to learn a vocabulary from")
    writer = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=writer,
        model_type=vocab.get("model_type", "unigram"), vocab_size=vocab_size, hard_vocab_limit=False,
        character_coverage=vocab.get("character_coverage", 0.9995), byte_fallback=vocab.get("byte_fallback", True),
        num_threads=vocab.get("num_threads", 1), max_sentence_length=vocab.get("max_sentence_length", 4192),
        input_sentence_size=0, pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=UNK,
        pad_piece=SPECIAL_PIECES[PAD], bos_piece=SPECIAL_PIECES[BOS], eos_piece=SPECIAL_PIECES[EOS],
        unk_piece=SPECIAL_PIECES[UNK], user_defined_symbols=[SPECIAL_PIECES[MASK]], minloglevel=2,
    )  # fmt: skip
    return writer.getvalue()


def tokens_per_word(sp: spm.SentencePieceProcessor, texts: Sequence[str]) -> float:
    """Fertility: pieces per whitespace word (a vocabulary made for the language needs fewer)."""
    words = sum(len(t.split()) for t in texts)
    return sum(len(ids) for ids in sp.encode(list(texts))) / max(words, 1)


def mlm_windows(sp: spm.SentencePieceProcessor, texts: Sequence[str], bptt: int) -> np.ndarray:
    """(rows, bptt) int64: the texts as one ``</s> ids </s> ids ...`` stream (as the MLM shards), cut into rows."""
    stream = np.fromiter((i for ids in sp.encode(list(texts)) for i in (EOS, *ids)), dtype=np.int64)
    rows = len(stream) // bptt
    if rows == 0:
        raise EvalError(f"the target text holds {len(stream)} ids, fewer than one window of {bptt}")
    return stream[: rows * bptt].reshape(rows, bptt)


# ------------------------------------------------------------------------------------- embeddings


def body_state(model: XLM) -> dict[str, torch.Tensor]:
    """Every weight except the vocabulary's: what embedding learning and the swap must leave bit-identical."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in VOCAB_PARAMETERS}


def with_new_vocabulary(model: XLM, vocab_size: int, seed: int) -> XLM:
    """A copy of ``model`` with fresh token embeddings for ``vocab_size`` ids (XLM's init), a zero output bias,
    and the pivot's special-token rows; the body (a copy) is frozen."""
    new = copy.deepcopy(model)
    new.cfg = dataclasses.replace(model.cfg, vocab_size=vocab_size)
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab_size, model.cfg.dim, generator=gen) * 0.02
    weight[:N_SPECIAL] = model.tokens.weight.detach()[:N_SPECIAL]
    new.tokens = nn.Embedding(vocab_size, model.cfg.dim, padding_idx=PAD, _weight=weight)
    new.out_bias = nn.Parameter(torch.zeros(vocab_size))
    for name, param in new.named_parameters():
        param.requires_grad_(name in VOCAB_PARAMETERS)
    return new


def _lr_factor(step: int, cfg: MonolingualConfig) -> float:
    """Linear warmup, then linear decay to zero at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return max(0.0, (cfg.steps - step) / max(1, cfg.steps - cfg.warmup_steps))


def _masked(windows: np.ndarray, rng: np.random.Generator, vocab_size: int,
            cfg: MonolingualConfig) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    inputs, targets = mask_tokens(windows, rng, vocab_size, DataConfig(mlm_probability=cfg.mlm_probability))
    return torch.from_numpy(inputs), torch.from_numpy(targets)


@torch.no_grad()
def mlm_loss(model: XLM, windows: np.ndarray, lang: int, cfg: MonolingualConfig, seed: int) -> float:
    """Mean MLM cross-entropy per predicted token on ``windows`` (eval mode, masks fixed by ``seed``)."""
    model.eval()
    rng = np.random.default_rng(seed)
    total, count = 0.0, 0
    for start in range(0, min(len(windows), cfg.eval_batches * cfg.batch_size), cfg.batch_size):
        inputs, targets = _masked(windows[start : start + cfg.batch_size], rng, model.cfg.vocab_size, cfg)
        n = int((targets != IGNORE).sum())
        if n:
            _, loss = model(inputs, torch.full_like(inputs, lang), targets=targets)
            total, count = total + float(loss) * n, count + n
    return total / count if count else float("nan")


def learn_embeddings(model: XLM, windows: np.ndarray, lang: int, cfg: MonolingualConfig,
                     seed: int) -> list[dict[str, float]]:  # fmt: skip
    """MLM on ``windows`` updating only the token embeddings (not their special rows) and the output bias.

    The body is frozen by ``requires_grad`` and kept out of the optimizer; dropout stays on, as in training.
    Returns the loss history, one entry per ``log_every`` steps.
    """
    params = [model.tokens.weight, model.out_bias]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    rng = np.random.default_rng(seed)
    history, running = [], []
    model.train()
    for step in range(cfg.steps):
        inputs, targets = _masked(windows[rng.integers(0, len(windows), cfg.batch_size)], rng, model.cfg.vocab_size,
                                  cfg)  # fmt: skip
        _, loss = model(inputs, torch.full_like(inputs, lang), targets=targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        model.tokens.weight.grad[:N_SPECIAL] = 0.0  # with no decay, Adam leaves a zero-gradient row unchanged
        optimizer.step()
        scheduler.step()
        running.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "loss": float(np.mean(running))})
            running = []
    model.eval()
    return history


def transfer_to(model: XLM, lang: str, sp: spm.SentencePieceProcessor, train_texts: Sequence[str],
                valid_texts: Sequence[str], pivot_lang_id: int, cfg: MonolingualConfig,
                seed: int) -> TargetModel:  # fmt: skip
    """Step 2 for one language: embeddings for its vocabulary ``sp`` (step 1) learned under the frozen body.

    The target text is fed with the pivot's language id: a pivot-only model has no other.
    """
    bptt = min(cfg.bptt, model.cfg.max_positions)
    train, valid = mlm_windows(sp, train_texts, bptt), mlm_windows(sp, valid_texts or train_texts[:100], bptt)
    target = with_new_vocabulary(model, sp.get_piece_size(), seed)
    fresh = mlm_loss(target, valid, pivot_lang_id, cfg, seed)
    history = learn_embeddings(target, train, pivot_lang_id, cfg, seed)
    learned = mlm_loss(target, valid, pivot_lang_id, cfg, seed)
    LOG.info("monolingual: %s: %d pieces, MLM loss on valid text %.3f (fresh) -> %.3f (learned, %d steps)", lang,
             sp.get_piece_size(), fresh, learned, cfg.steps)  # fmt: skip
    mlm = {"fresh_loss": fresh, "learned_loss": learned, "steps": cfg.steps, "train_windows": len(train),
           "valid_windows": len(valid), "history": history}  # fmt: skip
    return TargetModel(lang, sp, target, mlm)


# ------------------------------------------------------------------------------------ classification


def frozen_embeddings(model: XLM) -> XLM:
    """A copy whose token embeddings take no gradient (fine-tuning then changes only the body and the head)."""
    frozen = copy.deepcopy(model)
    frozen.tokens.weight.requires_grad_(False)
    return frozen


def swap_embeddings(clf: Classifier, target: TargetModel) -> Classifier:
    """The fine-tuned classifier with the target's token embeddings in place of the pivot's; nothing else changes."""
    swapped = copy.deepcopy(clf)
    swapped.encoder.tokens = copy.deepcopy(target.model.tokens)
    swapped.encoder.cfg = dataclasses.replace(swapped.encoder.cfg, vocab_size=target.model.cfg.vocab_size)
    return swapped.eval()


def label_ids(labels: Sequence[str], names: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(x, -1) for x in labels], dtype=np.int64)


def zero_shot(model: XLM, pivot_sp: spm.SentencePieceProcessor, targets: Mapping[str, TargetModel],
              blocks: Mapping[str, pl.DataFrame], pivot: str, pivot_lang_id: int, cfg: ClassifyConfig,
              seed: int) -> dict[str, Any]:  # fmt: skip
    """Step 3: fine-tune on the pivot with its embeddings frozen, swap each target's in, classify its test blocks.

    Returns per-item correctness (``transfer`` per language with the swap, ``pivot_vocabulary`` per language
    through the pivot's own vocabulary, ``pivot``), the test pages and keys, and the fine-tuning record.
    """
    train = classify.pivot_items(blocks, pivot, "train", cfg.max_train, seed)
    valid = classify.pivot_items(blocks, pivot, "valid", cfg.max_valid, seed)
    test = classify.aligned_test_items(blocks, pivot, cfg.max_test, seed)
    names = sorted(set(train.labels))
    y_train, y_valid, y_test = (label_ids(items.labels, names) for items in (train, valid, test))
    if not len(y_train) or not len(y_valid) or not len(y_test):
        raise EvalError(f"too few {classify.SOURCE} blocks: {len(y_train)} train, {len(y_valid)} valid, "
                        f"{len(y_test)} test aligned across {sorted(blocks)}")  # fmt: skip
    max_tokens = min(cfg.max_tokens, model.cfg.max_positions)
    pivot_seqs = lambda texts: encode(pivot_sp, texts, max_tokens)  # noqa: E731
    clf, selection = classify.fine_tune(frozen_embeddings(model), (pivot_seqs(train.texts[pivot]), y_train),
                                        (pivot_seqs(valid.texts[pivot]), y_valid), pivot_lang_id, len(names), cfg,
                                        seed)  # fmt: skip
    correct = {"pivot": classify.predict(clf, pivot_seqs(test.texts[pivot]), pivot_lang_id, 64) == y_test,
               "transfer": {}, "pivot_vocabulary": {}}  # fmt: skip
    for lang, target in targets.items():
        swapped = swap_embeddings(clf, target)
        target_seqs = encode(target.sp, test.texts[lang], max_tokens)
        correct["transfer"][lang] = classify.predict(swapped, target_seqs, pivot_lang_id, 64) == y_test
        correct["pivot_vocabulary"][lang] = classify.predict(clf, pivot_seqs(test.texts[lang]), pivot_lang_id,
                                                             64) == y_test  # fmt: skip
    majority = float(np.mean(y_test == np.bincount(y_train).argmax()))
    return {"correct": correct, "pages": test.pages, "keys": test.keys, "labels": names, "majority": majority,
            "finetune": selection, "n_train": len(y_train), "n_valid": len(y_valid), "n_test": len(y_test)}  # fmt: skip


# ---------------------------------------------------------------------------------------- evaluation


def joint_row(joint: Mapping[str, Any] | None, lang: str, keys: Sequence[str]) -> dict[str, Any]:
    """The joint model's fine-tuned zero-shot accuracy for ``lang`` from its classify.json."""
    if joint is None:
        return no_data("no classify.json of the joint model given")
    row = joint.get("languages", {}).get(lang, {})
    if row.get("status") != "ok":
        return no_data(f"the joint model's classify.json has no score for {lang}")
    return {"status": "ok", **row["finetune_ours"], "same_items": list(joint.get("test_blocks", [])) == list(keys)}


def _score(correct: np.ndarray, pages: Sequence[str], cfg: ClassifyConfig, seed: int) -> dict[str, float]:
    return classify.score(correct, pages, cfg, seed)


def evaluate_body(name: str, model: XLM, pivot_sp: spm.SentencePieceProcessor, blocks: Mapping[str, pl.DataFrame],
                  texts: Mapping[str, tuple[list[str], list[str]]],
                  vocabularies: Mapping[str, spm.SentencePieceProcessor], pivot: str, pivot_lang_id: int,
                  cfg: MonolingualConfig, ccfg: ClassifyConfig,
                  seed: int) -> tuple[dict[str, TargetModel], dict[str, Any]]:  # fmt: skip
    """Transfer one body (ours or the twin) to every target language and classify zero-shot."""
    targets = {lang: transfer_to(model, lang, vocabularies[lang], *texts[lang], pivot_lang_id, cfg, seed)
               for lang in sorted(texts)}  # fmt: skip
    found = zero_shot(model, pivot_sp, targets, blocks, pivot, pivot_lang_id, ccfg, seed)
    LOG.info("monolingual: %s: pivot accuracy %.3f; %s", name, found["correct"]["pivot"].mean(),
             {lang: round(float(c.mean()), 3) for lang, c in found["correct"]["transfer"].items()})  # fmt: skip
    return targets, found


def evaluate(model: XLM, meta: Mapping[str, Any], pivot_sp: spm.SentencePieceProcessor, twin: XLM | None,
             clean: Mapping[str, str | os.PathLike[str]], pivot: str, targets: Sequence[str],
             vocab: Mapping[str, Any], cfg: MonolingualConfig, ccfg: ClassifyConfig, seed: int,
             joint: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The whole family: the monolingual.json dict, one row per target language."""
    if pivot not in meta["languages"]:
        raise EvalError(f"{meta['path']} was not trained on the pivot {pivot} (its languages: {meta['languages']})")
    pivot_lang_id = int(meta["lang2id"][pivot])
    blocks = classify.read_blocks({lang: clean[lang] for lang in (pivot, *targets) if lang in clean})
    result: dict[str, Any] = {"pivot": pivot, "seed": seed, "config": asdict(cfg), "classify_config": asdict(ccfg),
                              "model": {"languages": list(meta["languages"]), "pivot_only": meta["languages"] == [pivot],
                                        "step": meta["step"], "spm_sha256": meta["spm_sha256"]},
                              "languages": {}}  # fmt: skip
    missing = {lang: f"no clean/{lang}.arrow given" if lang not in clean else f"no {classify.SOURCE} blocks"
               for lang in targets if lang not in blocks}  # fmt: skip
    if pivot not in blocks:
        result["languages"] = {lang: no_data(f"no {classify.SOURCE} blocks in the pivot {pivot}") for lang in targets}
        return result
    usable = [lang for lang in targets if lang not in missing]
    blocks = {lang: blocks[lang] for lang in (pivot, *usable)}
    texts = {lang: (language_texts(clean[lang], "train", cfg.max_sentences, seed),
                    language_texts(clean[lang], "valid", cfg.max_valid_sentences, seed)) for lang in usable}  # fmt: skip
    size = cfg.vocab_size or model.cfg.vocab_size  # step 1, once per language: both bodies read one vocabulary
    vocabularies = {lang: spm.SentencePieceProcessor(model_proto=train_vocabulary(texts[lang][0], vocab, size, seed))
                    for lang in usable}  # fmt: skip
    bodies = [("ours", model)] + ([("twin", twin)] if twin is not None and cfg.twin else [])
    runs = {name: evaluate_body(name, body, pivot_sp, blocks, texts, vocabularies, pivot, pivot_lang_id, cfg, ccfg,
                                seed) for name, body in bodies}  # fmt: skip
    found = runs["ours"][1]
    result.update({"labels": found["labels"], "n_train": found["n_train"], "n_valid": found["n_valid"],
                   "n_test": found["n_test"], "majority": found["majority"], "test_blocks": found["keys"],
                   "pivot_accuracy": {name: _score(r[1]["correct"]["pivot"], r[1]["pages"], ccfg, seed)
                                      for name, r in runs.items()},
                   "finetune": {name: r[1]["finetune"] for name, r in runs.items()}})  # fmt: skip
    for lang in targets:
        if lang in missing:
            result["languages"][lang] = no_data(missing[lang])
            continue
        result["languages"][lang] = language_row(lang, runs, texts[lang], pivot_sp, joint, ccfg, seed)
    return result


def language_row(lang: str, runs: Mapping[str, tuple[dict[str, TargetModel], dict[str, Any]]],
                 texts: tuple[list[str], list[str]], pivot_sp: spm.SentencePieceProcessor,
                 joint: Mapping[str, Any] | None, ccfg: ClassifyConfig, seed: int) -> dict[str, Any]:  # fmt: skip
    """One target language's row: its vocabulary, and per body the swap's accuracy, the floor and the MLM losses."""
    found = runs["ours"][1]
    sp = runs["ours"][0][lang].sp
    valid_texts = texts[1] or texts[0][:100]
    row: dict[str, Any] = {
        "status": "ok", "vocab_size": sp.get_piece_size(),
        "vocab_sha256": hashlib.sha256(sp.serialized_model_proto()).hexdigest(),
        "tokens_per_word": {"target_vocabulary": tokens_per_word(sp, valid_texts),
                            "pivot_vocabulary": tokens_per_word(pivot_sp, valid_texts)},
        "train_sentences": len(texts[0]), "majority": found["majority"], "joint": joint_row(joint, lang, found["keys"]),
    }  # fmt: skip
    for name, (targets, scored) in runs.items():
        transfer = _score(scored["correct"]["transfer"][lang], scored["pages"], ccfg, seed)
        pivot_acc = float(scored["correct"]["pivot"].mean())
        row[name] = {"transfer": {**transfer, "transfer_gap": pivot_acc - transfer["accuracy"]},
                     "pivot_vocabulary": _score(scored["correct"]["pivot_vocabulary"][lang], scored["pages"], ccfg,
                                                seed),
                     "mlm": targets[lang].mlm}  # fmt: skip
    return row


# ------------------------------------------------------------------------------------------- plot


def _cell(row: Mapping[str, Any], keys: Sequence[str]) -> Mapping[str, Any]:
    """``row[k1][k2]...``, or {} where a key is missing (a "no data" row, the twin turned off)."""
    for key in keys:
        row = row.get(key) or {}
    return row if row.get("accuracy") is not None else {}


def plot(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Zero-shot accuracy per target language: the swap (ours, twin), the pivot's own vocabulary, the joint model."""
    plt = pyplot()
    langs = list(result["languages"])
    bars = [(("ours", "transfer"), "relearned embeddings, ours", "#1f77b4"),
            (("twin", "transfer"), "relearned embeddings, random twin", "#aec7e8"),
            (("ours", "pivot_vocabulary"), "pivot's own vocabulary, ours", "#ff7f0e"),
            (("joint",), "joint multilingual model", "#2ca02c")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(langs) + 3), 4.2))
    x, width = np.arange(len(langs)), 0.8 / len(bars)
    for j, (keys, label, color) in enumerate(bars):
        cells = [_cell(result["languages"][lang], keys) for lang in langs]
        acc, low, high = (
            np.array([c.get(k, np.nan) for c in cells], dtype=float) for k in ("accuracy", "ci_low", "ci_high")
        )
        ax.bar(x + (j - 1.5) * width, acc, width, label=label, color=color, yerr=[acc - low, high - acc], capsize=2,
               error_kw={"linewidth": 0.8, "ecolor": "#555555"})  # fmt: skip
    for i, lang in enumerate(langs):
        if result["languages"][lang].get("status") != "ok":
            ax.text(i, 0.02, "no data", ha="center", va="bottom", rotation=90, color="grey")
    if "majority" in result:
        ax.axhline(result["majority"], color="black", linestyle="--", linewidth=1,
                   label=f"majority class ({result['majority']:.2f})")  # fmt: skip
    if "pivot_accuracy" in result:
        pivot_acc = result["pivot_accuracy"]["ours"]["accuracy"]
        ax.axhline(pivot_acc, color="#1f77b4", linestyle=":", linewidth=1,
                   label=f"{result['pivot']} (pivot), ours ({pivot_acc:.2f})")  # fmt: skip
    ax.set_xticks(x, langs)
    ax.set_xlim(-0.6, len(langs) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("zero-shot test accuracy (95% CI over help pages)")
    only = "pivot-only" if result["model"]["pivot_only"] else "joint (not pivot-only!)"
    ax.set_title(f"Monolingual transfer from {result['pivot']}: new vocabulary + embeddings, frozen {only} body")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path)


# ------------------------------------------------------------------------------------ entry points


def run_monolingual(model_pt: str, spm_model: str, clean: Mapping[str, str], pivot: str, targets: Sequence[str],
                    params: Mapping[str, Any], classify_params: Mapping[str, Any], vocab: Mapping[str, Any], seed: int,
                    out_json: str, out_png: str | None = None, joint_classify: str | None = None,
                    log: str | None = None, threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``monolingual_transfer`` rule: eval/{variant}/monolingual.json (and .png)."""
    with stage_logging(log):
        set_threads(threads)
        cfg, ccfg = MonolingualConfig.from_params(params), ClassifyConfig.from_params(classify_params)
        models = load_models(model_pt, spm_model, seed)
        joint = json.loads(Path(joint_classify).read_text(encoding="utf-8")) if joint_classify else None
        torch.manual_seed(seed)
        result = evaluate(models.ours, models.meta, models.sp, models.twin, clean, pivot,
                          [lang for lang in targets if lang != pivot], vocab, cfg, ccfg, seed, joint)  # fmt: skip
        result["model"]["path"] = Path(model_pt).name
        write_result(out_json, result)
        if out_png:
            plot(result, out_png)
        LOG.info("monolingual: wrote %s", out_json)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.monolingual", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="models/{variant}: model.pt and spm.model")
    parser.add_argument("--clean", action="append", required=True, metavar="LANG=PATH",
                        help="clean/{lang}.arrow of the pivot and of every target (repeat)")  # fmt: skip
    parser.add_argument("--pivot", required=True)
    parser.add_argument("--targets", nargs="*", help="target languages (default: every --clean but the pivot)")
    parser.add_argument("--out", required=True, help="the result JSON")
    parser.add_argument("--png", help="the plot")
    parser.add_argument("--joint", help="eval/{run}/classify.json of the joint model, shown beside")
    parser.add_argument("--params", default="{}", help="eval.monolingual settings as JSON")
    parser.add_argument("--classify-params", default="{}", help="eval.classify settings as JSON")
    parser.add_argument("--vocab-params", default="{}", help="the vocab section's settings as JSON")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    clean = dict(item.split("=", 1) for item in args.clean)
    run_monolingual(str(Path(args.model_dir) / "model.pt"), str(Path(args.model_dir) / "spm.model"), clean,
                    args.pivot, args.targets or [lang for lang in clean if lang != args.pivot],
                    json.loads(args.params), json.loads(args.classify_params), json.loads(args.vocab_params),
                    args.seed, args.out, args.png, args.joint)  # fmt: skip
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
