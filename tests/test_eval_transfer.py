"""Evaluation, transfer families (MLM/TLM, zero-shot classification, lexicon induction).

Constructed inputs first (alignment, seed/test split, masking, scoring, "no data", vocabulary mismatch),
then the three rules run for real on the tiny workflow's outputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from model import classify, lexicon, mlm_eval
from model.checkpoint import save_model
from model.eval_common import NO_DATA, EvalError, Models, load_models, random_twin
from model.xlm import IGNORE, XLM, XLMConfig
from pipeline.schemas import EOS, MASK

# ------------------------------------------------------------------------------ classification


def _blocks(rows: dict[str, list[tuple[str, str, str]]]) -> dict[str, pl.DataFrame]:
    """lang -> rows of (key, split, text); page = key's first letter, label = "shared"."""
    return {
        lang: pl.DataFrame({"key": [k for k, _, _ in r], "doc_id": [k[0] for k, _, _ in r],
                            "split": [s for _, s, _ in r], "label": ["shared"] * len(r),
                            "text": [t for _, _, t in r]})  # fmt: skip
        for lang, r in rows.items()
    }


def test_classification_scores_only_blocks_aligned_across_every_language_and_translated():
    blocks = _blocks({
        "en": [("a1", "test", "Open"), ("b1", "test", "Close"), ("c1", "test", "Save"), ("d1", "test", "Print"),
               ("e1", "train", "Edit")],
        "de": [("a1", "test", "Öffnen"), ("b1", "test", "Schließen"), ("c1", "test", "Save"), ("e1", "train", "X")],
        "hi": [("a1", "test", "खोलें"), ("c1", "test", "सहेजें"), ("d1", "test", "छापें")],
    })  # fmt: skip
    items = classify.aligned_test_items(blocks, "en", cap=100, seed=1)
    # b1 lacks hi, d1 lacks de, c1 is untranslated in de (the English text verbatim), e1 is train.
    assert items.keys == ["a1"]
    assert items.texts == {"de": ["Öffnen"], "en": ["Open"], "hi": ["खोलें"]}


def test_block_key_drops_source_and_language_and_refuses_other_rows():
    assert classify.block_key("libreoffice_help/de/text/swriter/x.html/par_1", "de") == "text/swriter/x.html/par_1"
    with pytest.raises(EvalError, match="cannot align"):
        classify.block_key("gettext/de/gtk/msg", "de")


def test_probe_learns_a_linearly_separable_label_and_transfers_to_a_shifted_copy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    centres = np.eye(3, 8) * 4
    x = centres[y] + rng.normal(size=(300, 8))
    predictions, fit = classify.probe((x[:200], y[:200]), (x[200:250], y[200:250]), {"same": x[250:]}, 3)
    assert fit["valid_accuracy"] > 0.9
    assert np.mean(predictions["same"] == y[250:]) > 0.9


def test_length_batches_cover_every_block_once_in_batches_of_similar_length():
    lengths = np.random.default_rng(1).integers(3, 120, size=1000)
    sequences = [[5] * n for n in lengths]
    batches = classify.length_batches(sequences, 16, np.random.default_rng(2), pool=10)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert max(len(b) for b in batches) == 16
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 20  # random batches of 16 from 3..120 spread about 100


# ------------------------------------------------------------------------------------ lexicon


def _words(words: list[str]) -> lexicon.Words:
    return lexicon.Words(list(range(len(words))), words, [[] for _ in words], [])


def test_lexicon_seed_and_test_headwords_are_disjoint_and_cover_the_usable_pairs():
    english = [f"w{i}" for i in range(200)] + ["House", "house"]
    german = [f"g{i}" for i in range(200)] + ["Haus"]
    rows = [(f"w{i}", f"g{i}") for i in range(200)] + [("House", "Haus"), ("house", "Haus"), ("w1", "g2")]
    rows += [("unknown", "g3"), ("w4", "unbekannt")]  # a word outside a vocabulary: not usable
    pairs = pl.DataFrame({"group": [s.casefold() for s, _ in rows], "src_text": [s for s, _ in rows],
                          "tgt_text": [t for _, t in rows]})  # fmt: skip
    cfg = lexicon.LexiconConfig(test_fraction=0.3)
    split = lexicon.split_dictionary(pairs, _words(english), _words(german), cfg, seed=7)
    assert split.usable_pairs == 203
    assert not split.seed_groups & split.test_groups
    assert split.seed_groups | split.test_groups == {f"w{i}" for i in range(200)} | {"house"}
    assert 50 <= len(split.test_groups) <= 70  # 30% of 201 headwords
    seed_sources = {english[s].casefold() for s, _ in split.seed_pairs}
    test_sources = {english[q].casefold() for q in split.test_queries}
    assert not seed_sources & test_sources
    # "w1" has two translations: when it is a test word, both are gold.
    if "w1" in split.test_groups:
        assert split.test_gold[split.test_queries.index(1)] == {1, 2}


def test_a_whole_word_piece_counts_only_where_it_is_the_whole_word():
    import io

    import sentencepiece as spm

    lines = ["Die Datei ist offen", "Dateien sind offen", "Klicken Sie auf die Datei.", "Sie sind hier"]
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines * 5), model_writer=writer, vocab_size=40,
                                   user_defined_symbols=["\u2581Datei", "\u2581offen"], pad_id=0, bos_id=1, eos_id=2,
                                   unk_id=3, control_symbols=["<mask>"], hard_vocab_limit=False, minloglevel=2)  # fmt: skip
    sp = spm.SentencePieceProcessor(model_proto=writer.getvalue())
    words = lexicon.find_words(sp, lines, "de", lexicon.LexiconConfig(), max_positions=64)
    datei = words.occurrences[words.words.index("Datei")]
    # "Datei" in lines 0 and 2 ("Datei." ends at punctuation); "Dateien" in line 1 is another word.
    assert sorted({s for s, _ in datei}) == [0, 2]
    for s, t in datei:
        assert sp.id_to_piece(words.sentences[s][t]) == "\u2581Datei"


def test_lexicon_language_without_dictionary_or_enough_seed_pairs_is_no_data():
    models = _random_models()
    words = {"en": _words(["a", "b"]), "de": _words(["x", "y"])}
    missing = lexicon.evaluate_language(models, "de", "en", None, words, {}, lexicon.LexiconConfig(), 1)
    assert missing["status"] == NO_DATA and "dictionary" in missing["reason"]
    pairs = pl.DataFrame({"group": ["a", "b"], "src_text": ["a", "b"], "tgt_text": ["x", "y"]})
    few = lexicon.evaluate_language(models, "de", "en", pairs, words, {}, lexicon.LexiconConfig(), 1)
    assert few["status"] == NO_DATA and few["usable_pairs"] == 2 and "< 50" in few["reason"]


def test_procrustes_induction_finds_rotated_translations_and_random_vectors_do_not():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16))
    rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    y = x @ rotation + 0.01 * rng.normal(size=(300, 16))
    split = lexicon.Split([(i, i) for i in range(200)], list(range(200, 300)), [{i} for i in range(200, 300)],
                          set(), set(), 300)  # fmt: skip
    cfg = lexicon.LexiconConfig(bootstrap=100)
    found = lexicon.induce(x, y, split, cfg, seed=1)
    assert found["nn"]["p_at_1"] == 1.0 and found["csls"]["p_at_1"] == 1.0
    unrelated = lexicon.induce(x, rng.normal(size=(300, 16)), split, cfg, seed=1)
    assert unrelated["nn"]["p_at_1"] < 0.1


# ------------------------------------------------------------------------------------- MLM / TLM


def test_tlm_hidden_condition_masks_every_id_of_the_other_side_and_keeps_the_targets():
    src, tgt = np.arange(10, 30), np.arange(100, 112)
    cfg = mlm_eval.MLMEvalConfig(mlm_probability=0.5)
    visible = mlm_eval.tlm_examples([(src, tgt)], (1, 0), "tgt", False, cfg, seed=5, vocab_size=200)[0]
    hidden = mlm_eval.tlm_examples([(src, tgt)], (1, 0), "tgt", True, cfg, seed=5, vocab_size=200)[0]
    n_src = len(src) + 2
    np.testing.assert_array_equal(visible.targets, hidden.targets)  # same masked tokens in both conditions
    assert (visible.targets[:n_src] == IGNORE).all() and (visible.targets[n_src:] != IGNORE).any()
    np.testing.assert_array_equal(visible.inputs[1 : n_src - 1], src)
    assert (hidden.inputs[1 : n_src - 1] == MASK).all()
    assert hidden.inputs[0] == EOS and hidden.inputs[n_src - 1] == EOS and hidden.inputs[n_src] == EOS
    targeted = visible.targets != IGNORE
    assert (visible.inputs[targeted] == MASK).all() and set(visible.targets[targeted]) <= set(tgt)
    np.testing.assert_array_equal(visible.positions, np.r_[np.arange(n_src), np.arange(len(tgt) + 2)])
    np.testing.assert_array_equal(visible.langs, np.r_[np.ones(n_src), np.zeros(len(tgt) + 2)])


def test_scoring_counts_each_sequences_correct_predictions():
    """A model whose output bias forces token 7: a target is right exactly when it is 7."""
    model = XLM(XLMConfig(vocab_size=50, n_langs=1, dim=16, n_layers=1, n_heads=2)).eval()
    with torch.no_grad():
        model.out_bias[7] = 1e4
    rng = np.random.default_rng(0)
    examples = []
    for length in (5, 12, 9):
        ids = rng.choice([7, 8, 9], size=length)
        chosen = rng.random(length) < 0.6
        examples.append(mlm_eval.Example(np.where(chosen, MASK, ids), np.where(chosen, ids, IGNORE),
                                         np.zeros(length, dtype=np.int64), np.arange(length)))  # fmt: skip
    _, correct = mlm_eval.score_examples(model, examples, batch_size=2)
    expected = [int(((e.targets == 7)).sum()) for e in examples]
    assert correct.tolist() == expected


# --------------------------------------------------------------------- models and vocabulary


def _random_models() -> Models:
    model = XLM(XLMConfig(vocab_size=50, n_langs=2, dim=16, n_layers=2, n_heads=2)).eval()
    return Models(model, random_twin(model, 1), {"languages": ["de", "en"], "lang2id": {"de": 0, "en": 1}}, None)


def test_twin_is_seeded_and_differs_from_the_model():
    model = XLM(XLMConfig(vocab_size=50, n_langs=2, dim=16, n_layers=1, n_heads=2))
    a, b = random_twin(model, 5), random_twin(model, 5)
    assert torch.equal(a.tokens.weight, b.tokens.weight)
    assert not torch.equal(a.tokens.weight, model.tokens.weight)
    assert a.cfg == model.cfg


def test_model_and_vocabulary_that_do_not_match_name_both_hashes(tmp_path: Path):
    spm_file = tmp_path / "spm.model"
    spm_file.write_bytes(b"not the vocabulary the model was trained with")
    model = XLM(XLMConfig(vocab_size=50, n_langs=1, dim=16, n_layers=1, n_heads=2))
    save_model(tmp_path / "model.pt", model, ["en"], "ab" * 32, 0)
    with pytest.raises(EvalError) as caught:
        load_models(tmp_path / "model.pt", spm_file, seed=1)
    assert "ab" * 32 in str(caught.value) and hashlib.sha256(spm_file.read_bytes()).hexdigest() in str(caught.value)


# ----------------------------------------------------------------------------- the tiny workflow

FAMILIES = ("mlm", "classify", "lexicon")


@pytest.fixture(scope="module")
def eval_run(tiny_run: Path) -> Path:
    """The tiny run with its eval/ families built (a seeded random model stands in until training runs there)."""
    import sentencepiece as spm

    from tests.workflow_runner import run_workflow

    run_dir = tiny_run / "models" / "tiny"
    if not (run_dir / "model.pt").exists():
        data = (tiny_run / "vocab" / "spm.model").read_bytes()
        size = spm.SentencePieceProcessor(model_proto=data).get_piece_size()
        torch.manual_seed(0)
        model = XLM(XLMConfig(vocab_size=size, n_langs=3, dim=32, n_layers=2, n_heads=2))
        save_model(run_dir / "model.pt", model, ["de", "en", "hi"], hashlib.sha256(data).hexdigest(), 0)
    run_workflow(tiny_run, [str(tiny_run / "eval" / "tiny" / f"{f}.json") for f in FAMILIES])
    return tiny_run / "eval" / "tiny"


@pytest.mark.workflow
@pytest.mark.network
def test_every_family_writes_its_json_and_plot_with_every_language(eval_run: Path):
    for family in FAMILIES:
        assert (eval_run / f"{family}.png").read_bytes()[:4] == b"\x89PNG", family
    mlm = json.loads((eval_run / "mlm.json").read_text())
    assert sorted(mlm["mlm"]) == ["de", "en", "hi"] and sorted(mlm["tlm"]) == ["en-de", "en-hi"]
    for row in mlm["mlm"].values():
        assert row["status"] == "ok" and row["n_targets"] > 0
        assert {"ours", "twin"} <= set(row) and row["ours"]["perplexity"] > 1
    assert mlm["tlm"]["en-de"]["predict_de"]["n_targets"] > 0
    result = json.loads((eval_run / "classify.json").read_text())
    assert sorted(result["languages"]) == ["de", "en", "hi"]
    for row in result["languages"].values():
        assert row["status"] == "ok" and row["n_items"] == result["n_test"] > 0
        assert {"finetune_ours", "finetune_twin", "probe_ours", "probe_twin", "majority"} <= set(row)
    lex = json.loads((eval_run / "lexicon.json").read_text())
    assert sorted(lex["languages"]) == ["de", "hi"]  # the pivot is the source side of every dictionary
    assert lex["languages"]["de"]["status"] == "ok"


@pytest.mark.workflow
@pytest.mark.network
def test_classification_test_blocks_are_test_blocks_of_every_language(eval_run: Path):
    result = json.loads((eval_run / "classify.json").read_text())
    clean = eval_run.parent.parent / "clean"
    for lang in ("de", "en", "hi"):
        rows = pl.read_ipc(clean / f"{lang}.arrow").filter(pl.col("source") == "libreoffice_help")
        keys = {r.removeprefix(f"libreoffice_help/{lang}/") for r in rows.filter(pl.col("split") == "test")["row_id"]}
        assert set(result["test_blocks"]) <= keys, lang


@pytest.mark.workflow
@pytest.mark.network
def test_lexicon_seed_and_test_words_are_disjoint_on_the_real_dictionaries(eval_run: Path):
    lex = json.loads((eval_run / "lexicon.json").read_text())
    for lang, row in lex["languages"].items():
        if row["status"] == "ok":
            seed, test = set(row["words"]["seed"]), set(row["words"]["test"])
            assert seed and test and not seed & test, lang
            assert row["seed_pairs"] >= 50


@pytest.mark.workflow
@pytest.mark.network
def test_missing_dictionary_and_missing_help_blocks_are_marked_no_data(eval_run: Path, tmp_path: Path):
    root = eval_run.parent.parent
    model_pt, spm_model = str(root / "models" / "tiny" / "model.pt"), str(root / "vocab" / "spm.model")
    clean = {lang: str(root / "clean" / f"{lang}.arrow") for lang in ("de", "en", "hi")}
    lex = lexicon.run_lexicon(model_pt, spm_model, [], clean, "en", {"max_sentences": 50}, 1,
                              str(tmp_path / "lexicon.json"), str(tmp_path / "lexicon.png"))  # fmt: skip
    assert {row["status"] for row in lex["languages"].values()} == {NO_DATA}
    without_hi = {lang: path for lang, path in clean.items() if lang != "hi"}
    params = {"max_train": 20, "max_valid": 10, "epochs": 1, "bootstrap": 100}
    result = classify.run_classify(model_pt, spm_model, without_hi, "en", params, 1, str(tmp_path / "c.json"),
                                   str(tmp_path / "c.png"))  # fmt: skip
    assert result["languages"]["hi"]["status"] == NO_DATA
    assert result["languages"]["de"]["status"] == "ok"
    assert json.loads((tmp_path / "c.json").read_text())["languages"]["hi"]["status"] == NO_DATA


def test_config_defaults_of_the_schema_are_the_modules_defaults():
    from dataclasses import asdict

    from pipeline.config import load_schema

    schema = load_schema()["properties"]["eval"]["properties"]
    for family, cls in (("mlm", mlm_eval.MLMEvalConfig), ("classify", classify.ClassifyConfig),
                        ("lexicon", lexicon.LexiconConfig)):  # fmt: skip
        declared = {key: spec["default"] for key, spec in schema[family]["properties"].items()}
        assert declared == asdict(cls()), family
