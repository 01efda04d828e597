"""Monolingual transfer (model/monolingual.py) on the tiny run: its joint model stands in for a pivot-only one.

A new de vocabulary and de embeddings are learned with few steps; the body must come out bit-identical, the new
vocabulary's ids must be the ones the swapped model reads, embedding learning must lower the de MLM loss of the
fresh embeddings, and the family's JSON must score every target language.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from model import classify
from model import monolingual as mo
from model.batches import N_SPECIAL
from model.checkpoint import load_model
from model.eval_common import EvalError
from pipeline.schemas import PAD
from tests.workflow_runner import snakemake_command

SEED = 1234
VOCAB = {"model_type": "unigram", "character_coverage": 0.9995, "byte_fallback": True, "num_threads": 1}
# Few steps on small batches: a minute of CPU for the whole file. vocab_size differs from the tiny model's 2000, so
# a target text encoded with the pivot's vocabulary would index past the new embedding table.
FAST = {"vocab_size": 1500, "max_sentences": 2000, "max_valid_sentences": 200, "steps": 60, "batch_size": 8,
        "bptt": 64, "warmup_steps": 10, "eval_batches": 8, "log_every": 20, "twin": False}  # fmt: skip
CLASSIFY = {"max_train": 60, "max_valid": 30, "max_test": 60, "epochs": 1, "bootstrap": 100}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pivot(tiny_run: Path):
    model, meta = load_model(tiny_run / "models" / "tiny" / "model.pt")
    return model, meta


@pytest.fixture(scope="module")
def german(tiny_run: Path, pivot) -> tuple[mo.TargetModel, dict[str, torch.Tensor], torch.Tensor]:
    """de transferred into the tiny model; the pivot's body and token embeddings as they were before."""
    model, meta = pivot
    body, tokens = mo.body_state(model), model.tokens.weight.detach().clone()
    cfg = mo.MonolingualConfig.from_params(FAST)
    clean = tiny_run / "clean" / "de.arrow"
    train = mo.language_texts(clean, "train", cfg.max_sentences, SEED)
    valid = mo.language_texts(clean, "valid", cfg.max_valid_sentences, SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        sp = spm.SentencePieceProcessor(model_proto=mo.train_vocabulary(train, VOCAB, cfg.vocab_size, SEED))
        target = mo.transfer_to(model, "de", sp, train, valid, meta["lang2id"]["en"], cfg, SEED)
    return target, body, tokens


@pytest.mark.workflow
def test_learning_target_embeddings_leaves_the_body_bit_identical(german, pivot) -> None:
    target, body_before, tokens_before = german
    model, _ = pivot
    after = mo.body_state(target.model)
    assert after.keys() == body_before.keys() and len(after) > 10
    for name, value in body_before.items():
        assert torch.equal(after[name], value), name
    assert torch.equal(model.tokens.weight, tokens_before)  # the pivot model itself is untouched
    new = target.model.tokens.weight.detach()
    assert torch.equal(new[:N_SPECIAL], tokens_before[:N_SPECIAL])  # the shared special rows stay the pivot's
    assert not torch.equal(new[N_SPECIAL:100], tokens_before[N_SPECIAL:100])


@pytest.mark.workflow
def test_learning_lowers_the_target_mlm_loss_of_the_fresh_embeddings(german) -> None:
    mlm = german[0].mlm
    assert mlm["learned_loss"] < mlm["fresh_loss"] - 0.3, mlm
    assert [h["step"] for h in mlm["history"]] == [20, 40, 60]


@pytest.mark.workflow
def test_the_target_vocabulary_is_new_and_its_ids_index_the_new_embeddings(german, tiny_run: Path) -> None:
    target = german[0]
    pivot_sp = spm.SentencePieceProcessor(model_file=str(tiny_run / "models" / "tiny" / "spm.model"))
    assert target.sp.get_piece_size() == target.model.cfg.vocab_size == target.model.tokens.num_embeddings == 1500
    assert target.sp.id_to_piece(PAD) == pivot_sp.id_to_piece(PAD) and target.sp.piece_to_id("<mask>") == 4
    texts = mo.language_texts(tiny_run / "clean" / "de.arrow", "valid", 200, SEED)
    # A vocabulary learned on de alone spends its pieces on de: fewer pieces per de word than the joint one.
    assert mo.tokens_per_word(target.sp, texts) < mo.tokens_per_word(pivot_sp, texts)
    assert max(i for ids in pivot_sp.encode(texts) for i in ids) >= 1500  # pivot ids would not fit


@pytest.mark.workflow
def test_swapping_embeddings_into_the_classifier_changes_nothing_else(german, pivot) -> None:
    target = german[0]
    model, _ = pivot
    clf = classify.Classifier(mo.frozen_embeddings(model), n_classes=3, dropout=0.1)
    swapped = mo.swap_embeddings(clf, target)
    before, after = clf.state_dict(), swapped.state_dict()
    for name, value in before.items():
        if name != "encoder.tokens.weight":
            assert torch.equal(after[name], value), name
    assert torch.equal(after["encoder.tokens.weight"], target.model.tokens.weight)
    assert clf.encoder.tokens.num_embeddings == 2000  # the fine-tuned classifier keeps the pivot's
    assert not clf.encoder.tokens.weight.requires_grad  # fine-tuning leaves the pivot embeddings as they are


@pytest.mark.workflow
def test_the_family_scores_every_target_language_beside_the_joint_model(tiny_run: Path, tmp_path: Path) -> None:
    root = tiny_run
    clean = {lang: str(root / "clean" / f"{lang}.arrow") for lang in ("de", "en", "hi")}
    result = mo.run_monolingual(str(root / "models" / "tiny" / "model.pt"), str(root / "models" / "tiny" / "spm.model"),
                                clean, "en", ["de", "hi"], {**FAST, "max_sentences": 1000, "steps": 20, "twin": True}, CLASSIFY, VOCAB, SEED,
                                str(tmp_path / "m.json"), str(tmp_path / "m.png"),
                                str(root / "eval" / "tiny" / "classify.json"))  # fmt: skip
    assert json.loads((tmp_path / "m.json").read_text())["languages"].keys() == {"de", "hi"}
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert result["model"]["pivot_only"] is False  # the tiny model is joint; the JSON says so
    assert 0.0 <= result["pivot_accuracy"]["ours"]["accuracy"] <= 1.0
    for lang in ("de", "hi"):
        row = result["languages"][lang]
        assert row["status"] == "ok", lang
        for name in ("ours", "twin"):
            assert 0.0 <= row[name]["transfer"]["accuracy"] <= 1.0
            assert 0.0 <= row[name]["pivot_vocabulary"]["accuracy"] <= 1.0
        assert row["joint"]["status"] == "ok" and 0.0 <= row["joint"]["accuracy"] <= 1.0
        assert row["joint"]["same_items"] is True  # the joint classify.json scored the same test blocks


@pytest.mark.workflow
def test_a_model_without_the_pivot_is_refused_naming_its_file(pivot, tiny_run: Path) -> None:
    model, meta = pivot
    with pytest.raises(EvalError, match="model.pt was not trained on the pivot fr"):
        mo.evaluate(model, meta, None, None, {}, "fr", ["de"], VOCAB, mo.MonolingualConfig(),
                    classify.ClassifyConfig(), SEED)  # fmt: skip


@pytest.mark.workflow
def test_the_rule_builds_monolingual_transfer_from_a_models_folder(tiny_run: Path) -> None:
    """Dry run: eval/{variant}/monolingual.json resolves to the rule, reading models/{variant}/ and the default
    run's classify.json (here the variant is the tiny run itself)."""
    target = str(tiny_run / "eval" / "tiny" / "monolingual.json")
    done = subprocess.run([*snakemake_command(tiny_run, [target]), "--dry-run"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert re.findall(r"^(?:local)?rule (\w+):", done.stdout, re.MULTILINE) == ["monolingual_transfer"]
    assert "wildcards: variant=tiny" in done.stdout


def test_schema_defaults_of_eval_monolingual_are_the_modules_defaults() -> None:
    from dataclasses import asdict

    from pipeline.config import load_schema

    schema = load_schema()["properties"]["eval"]["properties"]["monolingual"]["properties"]
    assert {key: spec["default"] for key, spec in schema.items()} == asdict(mo.MonolingualConfig())
