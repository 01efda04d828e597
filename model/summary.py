"""eval/{run}/summary.md: the headline table of a run, read from the evaluation families' JSON files.

One row per configured language (the pivot first): cross-lingual retrieval P@1 on the held-out LibreOffice
help pairs (ours, the random twin, the lexical-overlap floor, the reference encoder), zero-shot help-module
accuracy (ours, twin, majority class), MLM perplexity (ours, twin) and lexicon-induction P@1 (ours, twin).
A cell the evaluation could not fill says "no data" (the reason is listed under the table), the pivot's
cross-lingual cells say "pivot", and a reference encoder that could not run says "absent". UDHR retrieval,
including languages the model never saw, follows in a second table. Nothing is computed here but formatting:
every number is one the family wrote.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from model.eval_common import dig
from pipeline.arrow_io import atomic_path
from pipeline.logs import stage_logging

LOG = logging.getLogger(__name__)

NO_DATA = "no data"
PIVOT = "pivot"
ABSENT = "absent"
LEXICON_VECTORS, LEXICON_METHOD = "contextual", "csls"  # the lexicon column: mean contextual vectors, CSLS


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _num(value: Any, digits: int = 3) -> str:
    return NO_DATA if value is None else f"{value:.{digits}f}"


def _with_ci(value: Any, low: Any, high: Any, digits: int = 3) -> str:
    if value is None:
        return NO_DATA
    if low is None or high is None:
        return _num(value, digits)
    return f"{value:.{digits}f} [{low:.2f}, {high:.2f}]"


class _Notes:
    """The reasons behind "no data" / "absent" cells, listed once under the tables."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, what: str, lang: str, row: Any) -> None:
        reason = dig(row, "reason") or ("not in the results file" if row is None else row.get("status", "?"))
        line = f"- {what}, {lang}: {reason}"
        if line not in self.lines:
            self.lines.append(line)


def _ok(row: Any) -> bool:
    return isinstance(row, Mapping) and row.get("status") == "ok"


def _retrieval_cells(section: Mapping[str, Any], lang: str, variant: str, notes: _Notes, what: str) -> list[str]:
    row = dig(section, "languages", lang)
    if not _ok(row):
        notes.add(what, lang, row if row is not None or section.get("status") is None else section)
        return [NO_DATA] * 4
    cells = []
    for name in ("ours", "twin"):
        entry = dig(row, name, "test", variant) or {}
        ci = entry.get("ci95") or [None, None]
        cells.append(_with_ci(entry.get("mean"), *ci))
    cells.append(_num(dig(row, "lexical_overlap", "mean")))
    reference = row.get("reference") or {}
    if _ok(reference):
        cells.append(f"{_num(dig(reference, 'scores', variant, 'mean'))} (n={reference.get('n')})")
    else:
        cells.append(ABSENT)
    return cells


def _classify_cells(classify: Mapping[str, Any], lang: str, notes: _Notes) -> list[str]:
    row = dig(classify, "languages", lang)
    if not _ok(row):
        notes.add("zero-shot classification", lang, row)
        return [NO_DATA] * 3
    cells = []
    for name in ("finetune_ours", "finetune_twin"):
        entry = row.get(name) or {}
        cells.append(_with_ci(entry.get("accuracy"), entry.get("ci_low"), entry.get("ci_high")))
    cells.append(_num(row.get("majority")))
    return cells


def _mlm_cells(mlm: Mapping[str, Any], lang: str, notes: _Notes) -> list[str]:
    row = dig(mlm, "mlm", lang)
    if not _ok(row):
        notes.add("MLM perplexity", lang, row)
        return [NO_DATA] * 2
    return [_num(dig(row, name, "perplexity"), 1) for name in ("ours", "twin")]


def _lexicon_cells(lexicon: Mapping[str, Any], lang: str, notes: _Notes) -> list[str]:
    row = dig(lexicon, "languages", lang)
    if not _ok(row):
        notes.add("lexicon induction", lang, row)
        return [NO_DATA] * 2
    cells = []
    for name in ("ours", "twin"):
        entry = dig(row, LEXICON_VECTORS, name, LEXICON_METHOD) or {}
        cells.append(_with_ci(entry.get("p_at_1"), entry.get("ci_low"), entry.get("ci_high")))
    return cells


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _layer_note(section: Mapping[str, Any], variant: str) -> str:
    layers = [f"{name} layer {dig(section, 'best_layer', name, variant, 'layer')}" for name in ("ours", "twin")]
    return ", ".join(layers)


def summarize(languages: Sequence[str], pivot: str, run: str, retrieval: Mapping[str, Any],
              classify: Mapping[str, Any], mlm: Mapping[str, Any], lexicon: Mapping[str, Any]) -> str:  # fmt: skip
    """The summary as Markdown, from the families' parsed JSON files."""
    variant = retrieval.get("headline", "cosine")
    notes = _Notes()
    in_domain = retrieval.get("libreoffice") or {}
    header = ["language",
              "retrieval P@1 ours", "twin", "lexical floor", "reference",
              "zero-shot acc. ours", "twin", "majority",
              "MLM ppl ours", "twin",
              "lexicon P@1 ours", "twin"]  # fmt: skip
    rows = []
    for lang in sorted(languages, key=lambda code: code != pivot):  # the pivot first, then config order
        if lang == pivot:
            cross = [PIVOT] * 4
            lexicon_cells = [PIVOT] * 2
        else:
            cross = _retrieval_cells(in_domain, lang, variant, notes, "retrieval (LibreOffice help)")
            lexicon_cells = _lexicon_cells(lexicon, lang, notes)
        label = f"{lang} (pivot)" if lang == pivot else lang
        rows.append([label, *cross, *_classify_cells(classify, lang, notes), *_mlm_cells(mlm, lang, notes),
                     *lexicon_cells])  # fmt: skip
    model = retrieval.get("model") or mlm.get("model") or {}
    reference = retrieval.get("reference") or {}
    out = [
        f"# {run}: headline results",
        "",
        f"Model `models/{run}/model.pt` at step {model.get('step', '?')}; pivot `{pivot}`; every score is on held-out "
        "test data, with a 95% bootstrap interval in brackets where the family computes one. *twin* is the same "
        "architecture with seeded random weights.",
        "",
        *_table(header, rows),
        "",
        f"- **Retrieval**: {pivot}–X LibreOffice help test pairs, {variant} top-1 accuracy, mean of both directions; "
        f"the layer is chosen on valid pairs ({_layer_note(in_domain, variant)}) and scored on test. *Lexical floor*: "
        "cosine over bag-of-token-id vectors. *Reference*: "
        + (
            f"{reference.get('name')} {reference.get('version', '')} (final vector), on its own cap of n test pairs."
            if _ok(reference)
            else f"absent ({reference.get('reason', 'not run')})."
        )
        + f" Chance is 1/N (macro {_num(dig(in_domain, 'macro', 'chance'))}).",
        f"- **Zero-shot**: help-module classification fine-tuned on {pivot} only, tested on blocks aligned across "
        f"every language ({classify.get('n_test', '?')} test blocks, {len(classify.get('labels') or [])} labels); "
        f"the {pivot} row is in-language accuracy, the others zero-shot transfer. *Majority*: the majority class's rate.",
        "- **MLM ppl**: masked-token perplexity on the test shards (lower is better).",
        f"- **Lexicon**: FreeDict {pivot}→X word translation, P@1 by {LEXICON_METHOD.upper()} after Procrustes on seed "
        f"words, {LEXICON_VECTORS} word vectors (layer {dig(lexicon, 'config', 'layer')}).",
    ]
    udhr = retrieval.get("udhr") or {}
    out += ["", "## Many-way retrieval on UDHR (out of domain)", ""]
    if udhr.get("languages"):
        unseen = set(udhr.get("extra_languages") or [])
        udhr_rows = [[f"{lang} (unseen)" if lang in unseen else lang,
                      *_retrieval_cells(udhr, lang, variant, notes, "retrieval (UDHR)")]
                     for lang in sorted(udhr["languages"])]  # fmt: skip
        out += _table(["language", "P@1 ours", "twin", "lexical floor", "reference"], udhr_rows)
        out += [
            "",
            f"UDHR paragraphs, {pivot}–X, {variant} top-1, the layer chosen on LibreOffice valid pairs "
            f"({_layer_note(in_domain, variant)}). *Unseen*: never trained on, fed the pivot's language id.",
        ]
    else:
        out.append(f"{NO_DATA}: {udhr.get('reason', 'no UDHR results')}")
    if notes.lines:
        out += ["", "## Cells without data", "", *notes.lines]
    return "\n".join(out) + "\n"


def write_summary(languages: Sequence[str], pivot: str, run: str, inputs: Mapping[str, str],
                  out_md: str | os.PathLike[str], log: str | None = None) -> None:  # fmt: skip
    """Read the families' JSON files (``inputs``: retrieval, classify, mlm, lexicon) and write the summary."""
    with stage_logging(log):
        text = summarize(
            languages, pivot, run, *(_read(inputs[f]) for f in ("retrieval", "classify", "mlm", "lexicon"))
        )
        with atomic_path(out_md) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        LOG.info("summary: %s (%d languages, %d cells without data)", out_md, len(languages), text.count(NO_DATA))
