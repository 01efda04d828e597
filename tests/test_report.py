"""The report stage: eval/{run}/summary.md (model/summary.py) and `snakemake --report` on the tiny run.

The summary's cells are checked on constructed results files ("no data" with its reason, "pivot", "absent")
and for shape on the tiny run; the HTML report is written from the tiny run and must embed every plot the run
made, each with its caption's title.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pytest

from model.summary import NO_DATA, summarize
from tests.workflow_runner import REPO, run_workflow

RUN = "tiny"
LANGUAGES = ["en", "de", "hi"]  # tests/tiny.yaml: the pivot first, as the summary lists them
CAPTIONS = REPO / "workflow" / "report"
NUMBER = re.compile(r"^\d+(\.\d+)?( \[\d+\.\d+, \d+\.\d+\]| \(n=\d+\))?$")
ALLOWED_WORDS = {NO_DATA, "pivot", "absent"}


def table_rows(markdown: str, first_header: str = "language") -> dict[str, list[str]]:
    """The first Markdown table whose header starts with ``first_header``: language -> its cells."""
    rows: dict[str, list[str]] = {}
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split(" ")[0]] = cells[1:]
    return rows


# ------------------------------------------------------------------------------ constructed results


def _retrieval_row(ours: float, twin: float) -> dict:
    def scored(mean: float) -> dict:
        return {"test": {"cosine": {"mean": mean, "ci95": [mean - 0.1, mean + 0.1], "layer": 1}}}

    return {"status": "ok", "ours": scored(ours), "twin": scored(twin), "lexical_overlap": {"mean": 0.05},
            "reference": {"status": "absent"}}  # fmt: skip


def constructed() -> dict:
    """Results in which de has everything and hi has no test pairs, no dictionary and no aligned blocks."""
    retrieval = {
        "headline": "cosine",
        "reference": {"status": "absent", "reason": "ConnectionError: no registry"},
        "libreoffice": {
            "best_layer": {"ours": {"cosine": {"layer": 1}}, "twin": {"cosine": {"layer": 0}}},
            "languages": {"de": _retrieval_row(0.5, 0.1), "hi": {"status": NO_DATA, "reason": "no test pairs"}},
        },
        "udhr": {"status": NO_DATA, "reason": "no eval source of format udhr is configured", "languages": {}},
    }
    acc = {"accuracy": 0.6, "ci_low": 0.4, "ci_high": 0.8}
    classify = {"languages": {"en": {"status": "ok", "finetune_ours": acc, "finetune_twin": acc, "majority": 0.3},
                              "de": {"status": "ok", "finetune_ours": acc, "finetune_twin": acc, "majority": 0.3},
                              "hi": {"status": NO_DATA, "reason": "no aligned test block"}}}  # fmt: skip
    ppl = {"status": "ok", "ours": {"perplexity": 50.0}, "twin": {"perplexity": 2000.0}}
    mlm = {"mlm": {"en": ppl, "de": ppl, "hi": ppl}}
    p1 = {"csls": {"p_at_1": 0.2, "ci_low": 0.1, "ci_high": 0.3}}
    lexicon = {"languages": {"de": {"status": "ok", "contextual": {"ours": p1, "twin": p1}}}}
    return {"retrieval": retrieval, "classify": classify, "mlm": mlm, "lexicon": lexicon}


def test_summary_marks_missing_data_per_cell_and_says_why():
    r = constructed()
    text = summarize(LANGUAGES, "en", RUN, r["retrieval"], r["classify"], r["mlm"], r["lexicon"])
    rows = table_rows(text)
    assert list(rows) == LANGUAGES
    assert rows["en"][:4] == ["pivot"] * 4 and rows["en"][-2:] == ["pivot"] * 2
    assert rows["de"][:4] == ["0.500 [0.40, 0.60]", "0.100 [0.00, 0.20]", "0.050", "absent"]
    # hi: no pairs, no aligned blocks, no dictionary entry at all; its MLM cells still have numbers
    assert rows["hi"][:7] == [NO_DATA] * 7 and rows["hi"][7:9] == ["50.0", "2000.0"] and rows["hi"][9:] == [NO_DATA] * 2
    notes = text.split("## Cells without data", 1)[1]
    assert "no test pairs" in notes and "no aligned test block" in notes and "lexicon induction, hi" in notes
    assert "absent (ConnectionError: no registry)" in text
    assert "no eval source of format udhr is configured" in text


def test_report_script_finds_the_output_dir_as_snakemake_does():
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    try:
        from report import output_dir
    finally:
        sys.path.pop(0)
    tiny = ["--configfile", str(REPO / "tests" / "tiny.yaml")]
    assert output_dir(tiny) == Path("results-tiny")
    assert output_dir([*tiny, "--config", "seed=1", "output_dir=/tmp/x", "--cores", "2"]) == Path("/tmp/x")
    assert output_dir([*tiny, "--cores", "2", "output_dir=/tmp/not-config"]) == Path("results-tiny")


# ------------------------------------------------------------------------------------- the tiny run


def on_tiny_run(test):  # noqa: ANN001, ANN201
    for mark in (pytest.mark.workflow, pytest.mark.network, pytest.mark.slow):
        test = mark(test)
    return test


@on_tiny_run
def test_summary_has_a_row_per_configured_language_with_numbers_or_no_data(tiny_run: Path):
    text = (tiny_run / "eval" / RUN / "summary.md").read_text(encoding="utf-8")
    rows = table_rows(text)
    assert list(rows) == LANGUAGES
    for lang, cells in rows.items():
        assert len(cells) == 11, (lang, cells)
        for cell in cells:
            assert NUMBER.match(cell) or cell in ALLOWED_WORDS, (lang, cell)
    # the languages other than the pivot have a retrieval score of their own (tiny.yaml has pairs for both)
    assert all(NUMBER.match(rows[lang][0]) for lang in ("de", "hi"))


def _captions_and_files(report_html: str) -> tuple[list[str], set[str]]:
    """The captions (as plain text) and the embedded file names of a Snakemake HTML report."""
    captions = []
    for raw in re.findall(r'"caption": ("(?:[^"\\]|\\.)*")', report_html):
        text = html.unescape(re.sub(r"<[^>]+>", "", json.loads(raw)))
        captions.append(" ".join(text.split()))
    embedded = set(re.findall(r"data:[^;\"]+;charset=utf8;filename=([^;\"]+);base64,", report_html))
    return captions, embedded


def caption_title(path: Path) -> str:
    """The bold first sentence of a caption, up to its first template expression."""
    match = re.match(r"\*\*(.+?)\*\*", path.read_text(encoding="utf-8"), re.S)
    assert match, f"{path.name} does not start with a bold title"
    return " ".join(match.group(1).split("{{")[0].split())


# Captions of `make experiments`' comparison (rules/experiments.smk), checked in tests/test_experiments.py.
EXPERIMENT_CAPTIONS = ("comparison.rst", "comparison_table.rst", "differences.rst")


@on_tiny_run
def test_report_embeds_every_plot_of_the_run_with_its_caption(tiny_run: Path, tmp_path: Path):
    report = tmp_path / "report.html"
    run_workflow(tiny_run, ["--report", str(report)])
    text = report.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html")
    captions, embedded = _captions_and_files(text)
    # every plot the run wrote (stages and evaluation), and the summary, is in the report with its data
    plots = {
        p.name for stage in ("stats", "mixture", "vocab", "models", "eval") for p in (tiny_run / stage).rglob("*.png")
    }
    assert {"sizes.png", "rejections.png", "lid_udhr.png", "alpha.png", "report.png", "loss.png",
            "retrieval_layers.png", "cka.png", "resource.png", "mlm.png", "classify.png", "lexicon.png"} <= plots  # fmt: skip
    assert plots | {"summary.md"} <= embedded, sorted(plots - embedded)
    # every caption file is used, and its title is shown
    for path in sorted(CAPTIONS.glob("*.rst")):
        if path.name in ("workflow.rst", *EXPERIMENT_CAPTIONS):  # the experiments' plots are not part of this run
            continue
        title = caption_title(path)
        assert any(c.startswith(title) for c in captions), (path.name, title)
