"""languages.json, the PNG plots and the LID evaluation on UDHR, as the clean stage writes them."""

from __future__ import annotations

import json

import pytest

from pipeline import stats
from pipeline.clean import clean_corpus
from tests.test_clean import ENGLISH, GERMAN, LOW_CONFIDENCE_DE, make_cfg, output_hashes, write_mono

UDHR_ARTICLE_1 = {
    "en": "All human beings are born free and equal in dignity and rights. They are endowed with reason and "
    "conscience and should act towards one another in a spirit of brotherhood.",
    "de": "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen "
    "begabt und sollen einander im Geist der Brüderlichkeit begegnen.",
    "hi": "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता और समानता प्राप्त है। उन्हें बुद्धि और "
    "अन्तरात्मा की देन प्राप्त है और परस्पर उन्हें भाईचारे के भाव से बर्ताव करना चाहिए।",
}
UDHR_ARTICLE_3 = {
    "en": "Everyone has the right to life, liberty and security of person.",
    "de": "Jeder hat das Recht auf Leben, Freiheit und Sicherheit der Person.",
}


@pytest.fixture(scope="module")
def stage(tmp_path_factory, lid_model_path):
    """One run of the stage with a UDHR eval directory (one worker, started by the stage itself)."""
    root = tmp_path_factory.mktemp("stats")
    de = [GERMAN[0], GERMAN[1], GERMAN[1], ENGLISH[0], LOW_CONFIDENCE_DE, "Kurz", "Zwei\x00 Wörter hier und dort."]
    write_mono(root, "a", "de", de)
    write_mono(root, "a", "en", ENGLISH[:3])
    # A German UDHR file with one English paragraph in it, so accuracy below 1 is visible.
    write_mono(root, "udhr", "de", [UDHR_ARTICLE_1["de"], UDHR_ARTICLE_3["de"], UDHR_ARTICLE_3["en"]])
    write_mono(root, "udhr", "en", [UDHR_ARTICLE_1["en"], UDHR_ARTICLE_3["en"]])
    cfg = make_cfg(root, {"en": {}, "de": {}, "hi": {}}, workers=1)
    extracted = {"a": root / "extracted" / "a"}
    udhr = {"udhr": root / "extracted" / "udhr"}
    clean_corpus(cfg, extracted, lid_model_path, root / "out", udhr_dirs=udhr, threads=1)
    return cfg, root


def test_languages_json_counts_add_up(stage):
    _, root = stage
    report = json.loads((root / "out" / "stats" / "languages.json").read_text())
    de = report["languages"]["de"]
    assert de["rows_in"] == 7
    assert de["rejected"] == {"duplicate": 1, "lid-low-confidence": 1, "lid-mismatch": 1, "too-short": 1}
    assert de["kept"] == de["lines"] == 3 and de["rows_in"] == de["kept"] + de["rejected_total"]
    kept_texts = [GERMAN[0], GERMAN[1], "Zwei Wörter hier und dort."]
    assert de["characters"] == sum(len(t) for t in kept_texts)
    assert de["words"] == sum(len(t.split()) for t in kept_texts) and de["word_unit"] == "words"
    assert de["documents"] == 2  # kept rows 0 and 1 are in doc0, row 6 in doc3
    assert de["repaired"]["nul_removed"] == 1
    assert de["rejected_lid_labels"] == {"de": 1, "en": 1}
    assert sum(de["lid_histogram"]["kept"]) == 3
    assert sum(de["lid_histogram"]["rejected"]) == 3  # the duplicate and two LID rejects carry a probability
    assert de["lid_histogram"]["rejected"][2] == 1  # LOW_CONFIDENCE_DE: p in [0.2, 0.3)
    # LID recall by length, under both rules: 6 rows reached LID (not "Kurz"); strict keeps 4 (not the English
    # line, not LOW_CONFIDENCE_DE), declared keeps 5 (LOW_CONFIDENCE_DE's top-1 is de).
    recall = de["lid_recall"]["a"]
    assert recall["policy"] == "strict" and recall["unit"] == "characters"
    assert (recall["all"]["rows"], recall["all"]["kept_strict"], recall["all"]["kept_declared"]) == (6, 4, 5)
    assert recall["by_length"]["20-39"] == {
        "rows": 2,
        "kept_strict": 1,
        "kept_declared": 2,
        "recall_strict": 0.5,
        "recall_declared": 1.0,
    }
    assert report["languages"]["hi"]["rows_in"] == 0 and report["languages"]["hi"]["kept"] == 0
    assert "lid_recall" not in report["languages"]["hi"]
    assert set(report["pairs"]) == {"en-de", "en-hi"}


def test_plots_are_pngs_and_byte_identical_across_runs(stage, tmp_path, lid_model_path):
    cfg, root = stage
    for name in ("sizes.png", "rejections.png"):
        assert (root / "out" / "stats" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again"
    udhr = {"udhr": root / "extracted" / "udhr"}
    clean_corpus(cfg, {"a": root / "extracted" / "a"}, lid_model_path, again, udhr_dirs=udhr, threads=1)
    assert output_hashes(again) == output_hashes(root / "out")


def test_lid_udhr_accuracy_per_configured_language(stage):
    _, root = stage
    report = json.loads((root / "out" / "stats" / "lid_udhr.json").read_text())
    udhr = report["sources"]["udhr"]
    assert udhr["en"]["rows"] == 2 and udhr["en"]["accuracy"] == 1.0
    assert udhr["de"]["rows"] == 3 and udhr["de"]["correct"] == 2 and udhr["de"]["accuracy"] == pytest.approx(0.6667)
    assert udhr["de"]["top_confusions"] == {"en": 1}
    assert udhr["de"]["threshold"] == 0.5
    assert "skipped" in udhr["hi"]  # no UDHR file for hi in this eval directory


def test_lid_udhr_without_an_udhr_source_says_so(tmp_path, lid_model_path):
    cfg = make_cfg(tmp_path)
    result = stats.evaluate_lid_udhr(cfg, {}, lid_model_path)
    assert result["sources"] == {} and "no eval source" in result["note"]


def test_lid_udhr_counts_hindi_and_skips_languages_without_lid(tmp_path, lid_model_path):
    write_mono(tmp_path, "udhr", "hi", [UDHR_ARTICLE_1["hi"]])
    write_mono(tmp_path, "udhr", "de", [UDHR_ARTICLE_1["de"]])
    cfg = make_cfg(tmp_path, {"en": {}, "de": {"lid": False}, "hi": {}})
    result = stats.evaluate_lid_udhr(cfg, {"udhr": tmp_path / "extracted" / "udhr"}, lid_model_path)
    assert result["sources"]["udhr"]["hi"]["accuracy"] == 1.0
    assert result["sources"]["udhr"]["de"] == {"skipped": "lid: false"}
