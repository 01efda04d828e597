"""Retrieval, CKA and resource families on the tiny run: files, "no data", the absent reference, the twin.

Until the train rule lands, the tiny run has no models/tiny/model.pt: the fixture puts a randomly initialised
checkpoint over the run's vocabulary there (step 0), and the trained-beats-twin test is skipped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model import retrieval
from model.checkpoint import load_model, save_model
from model.embed import embed_lines
from model.xlm import XLM, XLMConfig
from pipeline import config as pfconfig
from tests.workflow_runner import REPO, run_workflow

RUN = "tiny"


def on_tiny_run(test):  # noqa: ANN001, ANN201
    """A test on the tiny run: it runs the workflow, and the reference wheel comes from PyPI (absent if it cannot)."""
    for mark in (pytest.mark.workflow, pytest.mark.network, pytest.mark.slow):
        test = mark(test)
    return test
FAMILIES = {"retrieval": ["retrieval.json", "retrieval_layers.png"], "cka": ["cka.json", "cka.png"],
            "resource": ["resource.json", "resource.png"]}  # fmt: skip


def tiny_config() -> dict:
    return pfconfig.load(REPO / "tests" / "tiny.yaml")


def ensure_model(root: Path) -> Path:
    """models/tiny/model.pt of the run, or (before the train rule exists) a random one over its vocabulary."""
    model_pt = root / "models" / RUN / "model.pt"
    if not model_pt.is_file():
        vocab = root / "vocab" / "spm.model"
        torch.manual_seed(0)
        cfg = XLMConfig(vocab_size=2000, n_langs=3, dim=64, n_layers=2, n_heads=2)
        save_model(model_pt, XLM(cfg), ["de", "en", "hi"], hashlib.sha256(vocab.read_bytes()).hexdigest(), step=0)
        shutil.copyfile(vocab, model_pt.parent / "spm.model")
    return model_pt


@pytest.fixture(scope="module")
def evaluated(tiny_run: Path) -> Path:
    ensure_model(tiny_run)
    run_workflow(tiny_run, [str(tiny_run / "eval" / RUN / f"{family}.json") for family in FAMILIES])
    return tiny_run / "eval" / RUN


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def small_inputs(root: Path, languages: list[str], sources: set[str]) -> retrieval.RetrievalInputs:
    return retrieval.RetrievalInputs(root / "models" / RUN, root / "vocab" / "spm.model", root / "clean" / "pairs",
                                     [root / "extracted" / "udhr"], "en", languages, sources)  # fmt: skip


def small_settings(max_pairs: int = 30) -> dict:
    cfg = tiny_config()
    return {**cfg["eval"], "max_pairs": max_pairs, "seed": cfg["seed"]}


# ------------------------------------------------------------------------------------ end to end


@on_tiny_run
def test_every_family_writes_its_json_and_plot(evaluated: Path) -> None:
    for names in FAMILIES.values():
        for name in names:
            path = evaluated / name
            assert path.is_file() and path.stat().st_size > 1000, path
    assert (evaluated / "retrieval_layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@on_tiny_run
def test_retrieval_scores_every_layer_of_ours_and_the_twin_with_every_baseline(evaluated: Path) -> None:
    result = read(evaluated / "retrieval.json")
    layers = result["model"]["layers"]
    _, meta = load_model(evaluated.parent.parent / "models" / RUN)
    assert layers == meta["config"].n_layers + 1
    de = result["libreoffice"]["languages"]["de"]
    assert de["status"] == "ok" and de["n_test"] >= 10
    for name in ("ours", "twin"):
        for variant in retrieval.VARIANTS:
            assert len(de[name]["test_by_layer"][variant]) == layers
            assert 0 <= de[name]["test"][variant]["layer"] < layers
            low, high = de[name]["test"][variant]["ci95"]
            assert low <= de[name]["test"][variant]["mean"] <= high
    assert 0 < de["lexical_overlap"]["mean"] < 1
    # the paired difference comes from per-item hits; the two accuracies from geometry's top-1 over the matrix
    difference = de["ours"]["test"]["cosine"]["mean"] - de["twin"]["test"]["cosine"]["mean"]
    assert de["ours_minus_twin"]["cosine"]["mean"] == pytest.approx(difference, abs=2e-6)
    assert result["reference"]["status"] in ("ok", "absent")
    if result["reference"]["status"] == "ok":  # the reference is a real multilingual encoder: far above chance
        assert de["reference"]["n"] <= tiny_config()["eval"]["reference"]["max_items"]
        assert de["reference"]["scores"]["cosine"]["mean"] > 0.5
    else:
        assert result["reference"]["reason"] and de["reference"] == {"status": "absent"}


@on_tiny_run
def test_udhr_includes_the_extra_languages_as_unseen(evaluated: Path) -> None:
    udhr = read(evaluated / "retrieval.json")["udhr"]
    assert udhr["extra_languages"] == ["mr", "nl"]
    for lang in ("mr", "nl"):
        assert udhr["languages"][lang]["status"] == "ok"
        assert udhr["languages"][lang]["seen_in_training"] is False
    assert udhr["languages"]["de"]["seen_in_training"] is True
    cka = read(evaluated / "cka.json")["datasets"]["udhr"]
    assert cka["unseen"] == ["mr", "nl"] and set(cka["languages"]) == {"de", "en", "hi", "mr", "nl"}


@on_tiny_run
def test_stored_layer_score_matches_one_recomputed_through_the_embed_command(evaluated: Path) -> None:
    """Ours, en–de cosine at the last layer, recomputed from `model.embed.embed_lines` and a plain numpy argmax."""
    root = evaluated.parent.parent
    settings = small_settings(tiny_config()["eval"]["max_pairs"])
    pairs = retrieval.load_pairs(root / "clean" / "pairs" / "en-de.arrow", "de", "test", {"libreoffice_help"},
                                 settings["max_pairs"], settings["seed"])  # fmt: skip
    _, meta = load_model(root / "models" / RUN)
    layer = meta["config"].n_layers
    x = embed_lines(root / "models" / RUN, pairs.src, "en", layer)
    y = embed_lines(root / "models" / RUN, pairs.tgt, "de", layer)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    sims = x @ y.T
    expected = (np.mean(sims.argmax(1) == np.arange(len(x))) + np.mean(sims.argmax(0) == np.arange(len(x)))) / 2
    stored = read(evaluated / "retrieval.json")["libreoffice"]["languages"]["de"]["ours"]["test_by_layer"]["cosine"]
    assert stored[layer]["mean"] == pytest.approx(expected, abs=1e-6)


@on_tiny_run
def test_cka_matrices_are_symmetric_per_layer_with_a_unit_diagonal(evaluated: Path) -> None:
    result = read(evaluated / "cka.json")
    for name, data in result["datasets"].items():
        if data["status"] != "ok":
            continue
        for model_name in ("ours", "twin"):
            assert len(data[model_name]) == result["model"]["layers"]
            for matrix in map(np.array, data[model_name]):
                np.testing.assert_allclose(matrix, matrix.T)
                np.testing.assert_allclose(np.diag(matrix), 1.0)
                assert matrix.min() > -0.5, name


@on_tiny_run
def test_resource_pairs_each_score_with_the_mixture_size(evaluated: Path) -> None:
    result = read(evaluated / "resource.json")
    mixture = read(evaluated.parent.parent / "mixture" / "mixture.json")
    de = result["datasets"]["libreoffice"]["de"]
    assert de["train_size"] == mixture["languages"]["de"]["n"] and de["seen_in_training"]
    assert result["datasets"]["udhr"]["nl"] == {**result["datasets"]["udhr"]["nl"], "train_size": 0,
                                                 "seen_in_training": False}  # fmt: skip


@on_tiny_run
def test_trained_model_beats_its_random_twin_on_held_out_retrieval(evaluated: Path) -> None:
    """Macro average over en–X of test P@1 (cosine, layer chosen on valid): trained > random twin."""
    _, meta = load_model(evaluated.parent.parent / "models" / RUN)
    assert meta["step"] > 0
    macro = read(evaluated / "retrieval.json")["libreoffice"]["macro"]
    assert macro["languages"] >= 2
    assert macro["ours"]["cosine"] > macro["twin"]["cosine"], macro


# ------------------------------------------------------------------------------- bad input, unit


@on_tiny_run
def test_languages_without_pairs_are_marked_no_data_and_the_reference_absent(evaluated: Path, tmp_path: Path) -> None:
    """ka has no pairs file and no UDHR text; a pair source with no rows leaves every language without data;
    a reference that cannot be fetched is recorded as absent, and the run goes on."""
    root = evaluated.parent.parent

    def fetch(package: str, version: str, sha256: str | None) -> Path:
        raise RuntimeError(f"PyPI unreachable (simulated) for {package}=={version}")

    inputs = small_inputs(root, ["de", "en", "hi", "ka"], {"libreoffice_help"})
    out = retrieval.run_retrieval(inputs, small_settings(), tmp_path / "r.json", tmp_path / "r.png",
                                  tmp_path / "cache", fetch)  # fmt: skip
    assert out["libreoffice"]["languages"]["ka"]["status"] == retrieval.NO_DATA
    assert "0 held-out test pair" in out["libreoffice"]["languages"]["ka"]["reason"]
    assert out["udhr"]["languages"]["ka"]["status"] == retrieval.NO_DATA
    assert out["libreoffice"]["languages"]["de"]["status"] == "ok"
    assert out["reference"]["status"] == "absent" and "PyPI unreachable" in out["reference"]["reason"]
    assert out["libreoffice"]["languages"]["de"]["reference"] == {"status": "absent"}
    assert "reference" not in out["libreoffice"]["macro"]
    assert read(tmp_path / "r.json")["libreoffice"]["languages"]["ka"]["status"] == retrieval.NO_DATA
    assert (tmp_path / "r.png").stat().st_size > 1000

    mixture = read(root / "mixture" / "mixture.json")
    resource = retrieval.resource_results(out, mixture)
    assert resource["datasets"]["libreoffice"]["ka"]["status"] == retrieval.NO_DATA

    nothing = retrieval.retrieval_results(small_inputs(root, ["de", "en"], {"no-such-source"}), small_settings(),
                                          None, tmp_path / "cache")  # fmt: skip
    assert nothing["libreoffice"]["languages"]["de"]["status"] == retrieval.NO_DATA
    assert nothing["libreoffice"]["macro"] == {"languages": 0}
    assert nothing["libreoffice"]["best_layer"]["ours"]["cosine"]["chosen_on"].startswith("no valid pairs")


@on_tiny_run
def test_a_model_trained_with_another_vocabulary_is_refused_naming_both_hashes(evaluated: Path, tmp_path: Path) -> None:
    root = evaluated.parent.parent
    model, meta = load_model(root / "models" / RUN)
    other = "ab" * 32
    save_model(tmp_path / "run" / "model.pt", model, meta["languages"], other, step=meta["step"])
    vocab = root / "vocab" / "spm.model"
    with pytest.raises(ValueError) as error:
        retrieval.load_models(tmp_path / "run", vocab, "en", 1, 8)
    assert other in str(error.value) and hashlib.sha256(vocab.read_bytes()).hexdigest() in str(error.value)


def test_best_layer_is_chosen_on_valid_not_on_test() -> None:
    def curve(values: list[float]) -> dict:
        return {v: [{"mean": m} for m in values] for v in retrieval.VARIANTS}

    chosen = retrieval.choose_layers({"de": curve([0.9, 0.1, 0.5]), "hi": curve([0.1, 0.1, 0.6])}, 3)
    assert chosen["cosine"]["layer"] == 2  # macro (.5, .1, .55): layer 2, though de alone prefers layer 0
    assert retrieval.choose_layers({}, 3)["margin"]["layer"] == 2


def test_repeated_strings_are_dropped_on_either_side() -> None:
    rows = [{"s": "Note", "t": "Hinweis"}, {"s": "Note", "t": "Anmerkung"}, {"s": "Tip", "t": "Hinweis"},
            {"s": "Save", "t": "Speichern"}]  # fmt: skip
    assert retrieval._unique_both_sides(rows, "s", "t") == [rows[0], rows[3]]


def test_udhr_alignment_keeps_articles_split_alike_in_every_language() -> None:
    en = {("1", 1): "a", ("2", 1): "b", ("2", 2): "c", ("3", 1): "d"}
    de = {("1", 1): "A", ("2", 1): "B C", ("3", 1): "D"}
    hi = {("1", 1): "α", ("2", 1): "β", ("2", 2): "γ", ("3", 1): "δ"}
    assert retrieval.aligned_keys([en, hi]) == [("1", 1), ("2", 1), ("2", 2), ("3", 1)]
    assert retrieval.aligned_keys([en, de, hi]) == [("1", 1), ("3", 1)]
    assert retrieval.aligned_keys([en, {}]) == []


def test_extra_udhr_languages_rerun_only_the_udhr_extraction() -> None:
    """eval.udhr.extra_languages is part of the udhr extract rule's params, and of no other source's."""
    cfg = tiny_config()
    edited = json.loads(json.dumps(cfg))
    edited["eval"]["udhr"]["extra_languages"] = ["sw"]
    assert pfconfig.extract_slice(cfg, "udhr") != pfconfig.extract_slice(edited, "udhr")
    assert pfconfig.extract_slice(cfg, "gettext") == pfconfig.extract_slice(edited, "gettext")
    assert pfconfig.clean_slice(cfg, ["udhr"]) == pfconfig.clean_slice(edited, ["udhr"])
