"""pipeline.lid on the real lid.176.ftz: batching, newlines, clipping, the label map, decisions, histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline import config as pfconfig
from pipeline import lid, textrules

REPO = Path(__file__).resolve().parent.parent

LINES = [
    "Die Datei wurde gespeichert und kann jetzt geöffnet werden.",
    "The file has been saved and can now be opened.",
    "Le fichier a été enregistré et peut maintenant être ouvert.",
    "यह एक परीक्षण वाक्य है और यह हिंदी में लिखा गया है।",
]
# Real sentences (written for these tests); lid.176's top-1 for each is checked below.
ALBANIAN = "Skedari u ruajt me sukses dhe tani mund të hapet."  # sq, p ≈ 0.97
SERBIAN_LATIN = "Datoteka je uspešno sačuvana i sada može da se otvori."  # sr, p ≈ 0.55
SERBIAN_CYRILLIC = "Датотека је успешно сачувана и сада може да се отвори."  # sr, p ≈ 0.91
SHORT_ENGLISH = "Specify how to scale slides in the printout."  # en, p ≈ 0.28 (a LibreOffice help line)

# A GlotLID/OpenLID-style label list (ISO 639-3 + script), with the traps: als_Latn is Albanian (not
# Alemannic), gsw_Latn Alemannic, cmn_Hani Chinese in either script, hin_Latn romanized Hindi.
GLOTLID_STYLE = [
    "__label__" + label
    for label in "eng_Latn deu_Latn fra_Latn spa_Latn rus_Cyrl jpn_Jpan cmn_Hani yue_Hani hin_Deva hin_Latn "
    "kat_Geor als_Latn gsw_Latn srp_Cyrl srp_Latn hrv_Latn bos_Latn nob_Latn nno_Latn tgl_Latn kor_Hang".split()
]

# Canonical code -> the labels it must get, under each scheme.
EXTRA_LANGUAGES = {
    "sq": ({"sq"}, {"als_Latn"}),
    "sr-Latn": ({"sr"}, {"srp_Latn"}),
    "sr-Cyrl": ({"sr"}, {"srp_Cyrl"}),
    "nb": ({"no"}, {"nob_Latn"}),
    "no": ({"no"}, {"nob_Latn"}),
    "nn": ({"nn"}, {"nno_Latn"}),
    "zh-Hant": ({"zh"}, {"cmn_Hani"}),
    "fil": ({"tl"}, {"tgl_Latn"}),
    "gsw": ({"als"}, {"gsw_Latn"}),
    "ko": ({"ko"}, {"kor_Hang"}),
}
DEFAULT_CONFIG_LANGUAGES = {
    "en": ({"en"}, {"eng_Latn"}),
    "de": ({"de"}, {"deu_Latn"}),
    "fr": ({"fr"}, {"fra_Latn"}),
    "es": ({"es"}, {"spa_Latn"}),
    "ru": ({"ru"}, {"rus_Cyrl"}),
    "ja": ({"ja"}, {"jpn_Jpan"}),
    "zh-Hans": ({"zh"}, {"cmn_Hani"}),
    "hi": ({"hi"}, {"hin_Deva"}),
    "ka": ({"ka"}, {"kat_Geor"}),
}


def test_predict_batched_equals_one_by_one_and_probs_are_clipped(lid_model_path):
    labels, probs = lid.predict(lid_model_path, LINES, batch_size=3)
    assert labels == ["de", "en", "fr", "hi"]
    assert probs.dtype == np.float32 and (probs <= 1.0).all() and (probs > 0.5).all()
    for line, label, prob in zip(LINES, labels, probs, strict=True):
        one_label, one_prob = lid.predict(lid_model_path, [line])
        assert one_label == [label] and one_prob[0] == prob


def test_newlines_do_not_cut_the_text(lid_model_path):
    # fastText stops at "\n": without the replacement only "OK" would be judged.
    line = "OK\nDie Datei wurde gespeichert und kann jetzt geöffnet werden."
    labels, _ = lid.predict(lid_model_path, [line])
    assert labels == ["de"]
    assert lid.predict(lid_model_path, pa.array([line]))[0] == ["de"]  # an Arrow column too


def test_predict_indexed_holds_each_label_once(lid_model_path):
    texts = [LINES[0], LINES[1], LINES[0], LINES[3], LINES[1], LINES[2]]
    said = lid.predict_indexed(lid_model_path, pa.chunked_array([texts[:2], texts[2:]]), batch_size=4)
    assert said.labels == ["de", "en", "hi", "fr"]  # first seen first
    assert said.index.tolist() == [0, 1, 0, 2, 1, 3]
    assert said.probs[0] == said.probs[2] and said.probs.dtype == np.float32
    labels, probs = lid.predict(lid_model_path, texts, batch_size=4)
    assert labels == [said.labels[i] for i in said.index] and (probs == said.probs).all()


# --------------------------------------------------------------------------- the label map


def test_every_language_of_the_default_config_is_covered():
    assert set(pfconfig.load(REPO / "config.yaml")["languages"]) == set(DEFAULT_CONFIG_LANGUAGES)


@pytest.mark.parametrize(
    ("code", "expected"), [(c, e[0]) for c, e in {**DEFAULT_CONFIG_LANGUAGES, **EXTRA_LANGUAGES}.items()]
)
def test_label_map_against_lid176s_own_labels(lid_model_path, code, expected):
    labels = lid.model_labels(lid_model_path)
    assert len(labels) == 176
    assert lid.build_label_map([code], labels, "lid176", {}, "lid.176")[code] == expected


@pytest.mark.parametrize(
    ("code", "expected"), [(c, e[1]) for c, e in {**DEFAULT_CONFIG_LANGUAGES, **EXTRA_LANGUAGES}.items()]
)
def test_label_map_against_a_glotlid_style_label_list(code, expected):
    assert lid.build_label_map([code], GLOTLID_STYLE, "iso639-3-script", {}, "glotlid")[code] == expected


def test_label_map_reads_the_models_labels_from_config(lid_model_path):
    cfg = pfconfig.load(REPO / "config.yaml")
    assert cfg["lid"]["model"]["label_scheme"] == "lid176"
    assert lid.label_map(cfg, lid_model_path) == {code: e[0] for code, e in DEFAULT_CONFIG_LANGUAGES.items()}


def test_a_language_the_model_cannot_label_names_the_language_and_the_model(lid_model_path):
    labels = lid.model_labels(lid_model_path)
    with pytest.raises(lid.LidLabelError) as info:
        lid.build_label_map(["de", "dz", "om"], labels, "lid176", {}, "lid.176.ftz")
    message = str(info.value)
    assert "dz, om" in message and "lid.176.ftz" in message and "lid: false" in message and "lid.labels" in message


def test_overrides_replace_a_set_and_must_name_real_labels(lid_model_path):
    labels = lid.model_labels(lid_model_path)
    got = lid.build_label_map(["sr-Latn", "dz"], labels, "lid176", {"sr-Latn": ["sr", "sh"], "dz": "bo"}, "m")
    assert got == {"sr-Latn": {"sr", "sh"}, "dz": {"bo"}}
    with pytest.raises(lid.LidLabelError, match=r"lid\.labels\.de.*dzo_Tibt.*lid\.176"):
        lid.build_label_map(["de"], labels, "lid176", {"de": "dzo_Tibt"}, "lid.176")


def test_a_label_scheme_that_does_not_fit_the_model_is_named(lid_model_path):
    with pytest.raises(lid.LidLabelError, match=r"glotlid.*'lid\.model\.label_scheme' to iso639-3-script"):
        lid.build_label_map(["de"], GLOTLID_STYLE, "lid176", {}, "glotlid")
    with pytest.raises(lid.LidLabelError, match=r"lid\.176.*'lid\.model\.label_scheme' to lid176"):
        lid.build_label_map(["de"], lid.model_labels(lid_model_path), "iso639-3-script", {}, "lid.176")


def test_labels_read_as_canonical_codes():
    assert lid.label_code("zh", "lid176") == "zh-Hans"
    assert lid.label_code("als", "lid176") == "gsw"  # Alemannic Wikipedia
    assert lid.label_code("sh", "lid176") == "hbs"  # Serbo-Croatian, not Serbian
    assert lid.label_code("als_Latn", "iso639-3-script") == "sq"
    assert lid.label_code("srp_Latn", "iso639-3-script") == "sr-Latn"
    assert lid.label_code("deu_Latn", "iso639-3-script") == "de"


# --------------------------------------------------------------------------- decisions


def test_decide_takes_a_set_of_labels():
    probs = np.array([0.99, 0.4, 0.99, 0.9], dtype=np.float32)
    got = lid.decide(["de", "de", "en", "gsw"], probs, {"de", "gsw"}, 0.5)
    assert got == [None, "lid-low-confidence", "lid-mismatch", None]


def _spec(code: str, labels: set[str], policy: str = "strict") -> textrules.LangSpec:
    return textrules.LangSpec(code, False, frozenset(labels), 0.5, "lid176", (("src", policy),))


def _judge(model, spec: textrules.LangSpec, texts: list[str]) -> tuple[list, textrules.LidResult]:
    reasons = np.full(len(texts), None, dtype=object)
    said = textrules.apply_lid(pa.array(texts), reasons, spec, str(model), 64, pa.array(["src"] * len(texts)))
    return reasons.tolist(), said


def test_strict_and_declared_policies(lid_model_path):
    texts = [SHORT_ENGLISH, LINES[1], LINES[0]]  # en p≈0.28, en p high, de p high
    strict, said = _judge(lid_model_path, _spec("en", {"en"}), texts)
    assert strict == ["lid-low-confidence", None, "lid-mismatch"]
    declared, _ = _judge(lid_model_path, _spec("en", {"en"}, "declared"), texts)
    assert declared == [None, None, "lid-mismatch"]  # only a confident other language goes
    assert said.strict_ok.tolist() == [False, True, False] and said.declared_ok.tolist() == [True, True, False]
    assert said.labels == ["en", "en", "de"]


def test_policy_is_looked_up_per_row_source(lid_model_path):
    spec = textrules.LangSpec("en", False, frozenset({"en"}), 0.5, "lid176", (("a", "declared"), ("b", "strict")))
    texts = [SHORT_ENGLISH] * 4  # en, p≈0.28: kept by the declared rule only
    reasons = np.full(4, None, dtype=object)
    textrules.apply_lid(pa.array(texts), reasons, spec, str(lid_model_path), 64, pa.array(["b", "a", None, "a"]))
    assert reasons.tolist() == ["lid-low-confidence", None, "lid-low-confidence", None]  # no source: strict


def test_serbian_script_is_judged_from_the_text(lid_model_path):
    reasons, said = _judge(lid_model_path, _spec("sr-Latn", {"sr"}), [SERBIAN_LATIN, SERBIAN_CYRILLIC])
    assert reasons == [None, "lid-script-mismatch"]
    assert said.labels == ["sr-Latn", "sr-Cyrl"]  # the language from the label, the script from the text
    reasons, said = _judge(lid_model_path, _spec("sr-Cyrl", {"sr"}), [SERBIAN_LATIN, SERBIAN_CYRILLIC])
    assert reasons == ["lid-script-mismatch", None] and said.labels == ["sr-Latn", "sr-Cyrl"]
    reasons, _ = _judge(lid_model_path, _spec("sq", {"sq"}), [ALBANIAN])
    assert reasons == [None]


def test_script_mismatch_compares_the_texts_own_letters():
    texts = pa.array([SERBIAN_LATIN, SERBIAN_CYRILLIC, "Verzija 2.0 — ОК", "12345", "简体中文", "繁體中文"])
    assert textrules.script_mismatch(texts, "sr-Latn").tolist() == [False, True, False, False, False, False]
    assert textrules.script_mismatch(texts, "sr-Cyrl").tolist() == [True, False, True, False, False, False]
    # Both Chinese scripts are Han; a row with no Han letter but Latin ones is not Chinese.
    assert textrules.script_mismatch(texts, "zh-Hant").tolist() == [True, False, True, False, False, False]
    hindi = pa.array(["Page Number", "फ़ाइल सहेजी गई", "TreeMenu मॉडल", "42 %"])
    assert textrules.script_mismatch(hindi, "hi").tolist() == [True, False, False, False]
    assert not textrules.script_mismatch(texts, "de").any()  # Latin-script languages: no check


def test_histogram_has_fixed_bins_and_one_goes_last():
    hist = lid.histogram(np.array([0.0, 0.05, 0.1, 0.55, 0.99, 1.0], dtype=np.float32))
    assert hist == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert lid.histogram(np.array([], dtype=np.float32)) == [0] * 10


def test_length_buckets():
    assert textrules.length_buckets(np.array([10, 19, 20, 79, 80, 159, 160, 2000])).tolist() == [0, 0, 1, 2, 3, 3, 4, 4]
    assert textrules.BUCKET_NAMES == ("0-19", "20-39", "40-79", "80-159", "160+")


def test_the_model_is_loaded_once_per_process(lid_model_path):
    assert lid.load_model(lid_model_path) is lid.load_model(str(lid_model_path))
