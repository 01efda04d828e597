"""pipeline.lid on the real lid.176.ftz: batching, newlines, clipping, decisions, histogram."""

from __future__ import annotations

import numpy as np

from pipeline import lid

LINES = [
    "Die Datei wurde gespeichert und kann jetzt geöffnet werden.",
    "The file has been saved and can now be opened.",
    "Le fichier a été enregistré et peut maintenant être ouvert.",
    "यह एक परीक्षण वाक्य है और यह हिंदी में लिखा गया है।",
]


def test_predict_batched_equals_one_by_one_and_probs_are_clipped(lid_model_path):
    labels, probs = lid.predict(lid_model_path, LINES, batch_size=3)
    assert labels == ["de", "en", "fr", "hi"]
    assert probs.dtype == np.float32 and (probs <= 1.0).all() and (probs > 0.5).all()
    for line, label, prob in zip(LINES, labels, probs, strict=True):
        one_label, one_prob = lid.predict(lid_model_path, [line])
        assert one_label == [label] and one_prob[0] == prob


def test_newlines_do_not_cut_the_text(lid_model_path):
    # fastText stops at "\n": without the replacement only "Hello." would be judged.
    labels, _ = lid.predict(lid_model_path, ["OK\nDie Datei wurde gespeichert und kann jetzt geöffnet werden."])
    assert labels == ["de"]


def test_decide_and_expected_label():
    probs = np.array([0.99, 0.4, 0.99], dtype=np.float32)
    assert lid.decide(["de", "de", "en"], probs, "de", 0.5) == [None, "lid-low-confidence", "lid-mismatch"]
    assert lid.expected_label("zh-Hans", {}) == "zh"
    assert lid.expected_label("de", {"de": "deu_Latn"}) == "deu_Latn"


def test_histogram_has_fixed_bins_and_one_goes_last():
    hist = lid.histogram(np.array([0.0, 0.05, 0.1, 0.55, 0.99, 1.0], dtype=np.float32))
    assert hist == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert lid.histogram(np.array([], dtype=np.float32)) == [0] * 10


def test_labels_become_canonical_codes():
    assert lid.to_canonical(["zh", "de", "zh"]) == ["zh-Hans", "de", "zh-Hans"]


def test_the_model_is_loaded_once_per_process(lid_model_path):
    assert lid.load_model(lid_model_path) is lid.load_model(str(lid_model_path))
