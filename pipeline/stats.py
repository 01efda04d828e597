"""Per-language statistics of the clean stage, its plots, and the LID evaluation on UDHR.

Counts are integers only (so ``languages.json`` is byte-identical across runs and worker counts);
the driver of the clean stage feeds kept and rejected tables here in partition order.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import lid, textrules
from pipeline.arrow_io import iter_batches, save_png, write_json
from pipeline.dedup import KeySet, as_keys

LOG = logging.getLogger(__name__)


@dataclass
class GroupStats:
    """Counts for one language (or one pair) of the clean stage."""

    name: str
    word_unit: str = "words"  # "characters" for unspaced scripts
    rows_in: int = 0
    kept: int = 0
    characters: int = 0
    words: int = 0
    repairs: collections.Counter = field(default_factory=collections.Counter)  # invalid UTF-8, NUL, controls
    rejected: collections.Counter = field(default_factory=collections.Counter)
    predicted: collections.Counter = field(default_factory=collections.Counter)  # labels of LID-rejected rows
    hist_kept: np.ndarray = field(default_factory=lambda: np.zeros(lid.PROB_BINS, dtype=np.int64))
    hist_rejected: np.ndarray = field(default_factory=lambda: np.zeros(lid.PROB_BINS, dtype=np.int64))
    docs: KeySet = field(default_factory=KeySet)  # (source, doc_id) of kept rows, 16 bytes a document
    # Per source: [rows LID judged, kept by the strict rule, kept by the declared rule] per length bucket.
    lid_recall: dict[str, np.ndarray] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)  # source -> the LID policy it is cleaned with

    def add_counts(self, counts: dict[str, int]) -> None:
        self.rows_in += counts["rows_in"]
        self.repairs.update({k: v for k, v in counts.items() if k != "rows_in"})

    def add_lid_recall(self, per_source: dict[str, np.ndarray]) -> None:
        for source, counts in per_source.items():
            if source in self.lid_recall:
                self.lid_recall[source] = self.lid_recall[source] + counts
            else:
                self.lid_recall[source] = np.asarray(counts, dtype=np.int64).copy()

    def add_kept(self, table: pa.Table, chars: np.ndarray, words: np.ndarray, prob_columns: list[str]) -> None:
        self.kept += table.num_rows
        self.characters += int(chars.sum())
        self.words += int(words.sum())
        if table.num_rows:
            docs = pc.binary_join_element_wise(table.column("source"), table.column("doc_id"), "\x00")
            digests = [hashlib.blake2b(d.encode("utf-8"), digest_size=16).digest() for d in pc.unique(docs).to_pylist()]
            self.docs.first_new(as_keys(digests))
        for column in prob_columns:
            self.hist_kept += _hist(table.column(column))

    def add_rejected(self, table: pa.Table, prob_columns: list[str]) -> None:
        for reason, count in _value_counts(table.column("reason")):
            self.rejected[reason] += count
        if "lid_label" in table.column_names:  # what LID said of the rows it rejected: a wrong code shows here
            lid_rejected = table.filter(pc.starts_with(table.column("reason"), "lid-"))
            for label, count in _value_counts(lid_rejected.column("lid_label")):
                self.predicted[label] += count
        for column in prob_columns:
            self.hist_rejected += _hist(table.column(column))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "documents": len(self.docs),
            "lines": self.kept,
            "characters": self.characters,
            "words": self.words,
            "word_unit": self.word_unit,
            "kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "repaired": {k: int(v) for k, v in sorted(self.repairs.items())},
            "rejected_lid_labels": dict(self.top_predicted(10)),
            "lid_histogram": {
                "bins": [f"{i / lid.PROB_BINS:.1f}-{(i + 1) / lid.PROB_BINS:.1f}" for i in range(lid.PROB_BINS)],
                "kept": self.hist_kept.astype(int).tolist(),
                "rejected": self.hist_rejected.astype(int).tolist(),
            },
            **({"lid_recall": self.recall_dict()} if self.lid_recall else {}),
        }

    def recall_dict(self) -> dict[str, Any]:
        """LID recall on this language's rows, per source and length bucket, under each policy.

        Every row of a source is taken to be in the language its source declares, so "recall" is the share
        that LID lets through: ``strict`` (top-1 is the language with p >= threshold) and ``declared``
        (no other language is top-1 with p >= threshold).  ``policy`` is the rule the source is cleaned with.
        """
        out: dict[str, Any] = {}
        for source in sorted(self.lid_recall):
            counts = self.lid_recall[source]
            buckets = {
                name: _recall_entry(*counts[i]) for i, name in enumerate(textrules.BUCKET_NAMES) if counts[i, 0]
            }
            out[source] = {
                "policy": self.policies.get(source, "strict"),
                "unit": "characters",
                "all": _recall_entry(*counts.sum(axis=0)),
                "by_length": buckets,
            }
        return out

    def top_predicted(self, n: int = 5) -> list[tuple[str, int]]:
        """The most frequent LID labels among rejected rows (ties broken by label)."""
        return sorted(self.predicted.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def describe_predicted(self, n: int = 5) -> str:
        return ", ".join(f"{label} ({count})" for label, count in self.top_predicted(n)) or "none (no row reached LID)"


def _recall_entry(rows: int, strict: int, declared: int) -> dict[str, Any]:
    return {
        "rows": int(rows),
        "kept_strict": int(strict),
        "kept_declared": int(declared),
        "recall_strict": round(int(strict) / int(rows), 4) if rows else None,
        "recall_declared": round(int(declared) / int(rows), 4) if rows else None,
    }


def _value_counts(column: pa.ChunkedArray) -> list[tuple[str, int]]:
    if len(column) == 0:
        return []
    counts = pc.value_counts(column.drop_null())
    return list(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))


def _hist(column: pa.ChunkedArray) -> np.ndarray:
    probs = column.drop_null().to_numpy()
    return np.asarray(lid.histogram(probs), dtype=np.int64) if len(probs) else np.zeros(lid.PROB_BINS, np.int64)


def write_languages_json(path: str | os.PathLike[str], languages: dict[str, GroupStats], pairs: dict[str, GroupStats]):
    write_json(
        path,
        {
            "languages": {k: v.to_dict() for k, v in sorted(languages.items())},
            "pairs": {k: v.to_dict() for k, v in sorted(pairs.items())},
        },
    )


def plot_sizes(path: str | os.PathLike[str], languages: dict[str, GroupStats]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(languages)
    y = np.arange(len(names))
    # Languages on the y axis (names never collide) and a log x axis that starts at 1: sizes span orders of
    # magnitude, and an empty language shows as no bar with its count written beside it.
    fig, axes = plt.subplots(1, 2, figsize=(11, max(3, 0.4 * len(names) + 1.5)))
    for ax, title, values, color in (
        (axes[0], "kept lines per language", [languages[n].kept for n in names], "tab:blue"),
        (axes[1], "kept characters per language", [languages[n].characters for n in names], "tab:green"),
    ):
        ax.barh(y, values, color=color)
        ax.set_xscale("log")
        ax.set_xlim(left=1, right=max([*values, 10]) * 4)
        for row, value in zip(y, values, strict=True):
            ax.annotate(f"{value:,}", (max(value, 1), row), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize="small")  # fmt: skip
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_title(title)
    fig.tight_layout()
    save_png(fig, path)


def plot_rejections(path: str | os.PathLike[str], languages: dict[str, GroupStats]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(languages)
    reasons = sorted({r for s in languages.values() for r in s.rejected})
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 4))
    bottom = np.zeros(len(names))
    for reason in reasons:
        values = np.array([languages[n].rejected.get(reason, 0) for n in names], dtype=float)
        ax.bar(names, values, bottom=bottom, label=reason)
        bottom += values
    ax.set_title("rejected rows per language, by reason")
    if reasons:
        ax.legend(fontsize="small")
    fig.tight_layout()
    save_png(fig, path)


def plot_lid_udhr(lid_json: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """stats/lid_udhr.json as bars: LID accuracy per language on UDHR rows (correct/scored written beside each
    bar, with the commonest wrong labels); a skipped language is listed with its reason, never dropped."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(lid_json).read_text(encoding="utf-8"))
    rows = [(f"{lang} ({source})" if len(data["sources"]) > 1 else lang, entry)
            for source, per_lang in sorted(data["sources"].items()) for lang, entry in sorted(per_lang.items())]  # fmt: skip
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.4 * len(rows) + 1.5)))
    y = np.arange(len(rows))
    values = [entry.get("accuracy") or 0.0 for _, entry in rows]
    ax.barh(y, values, color="tab:purple")
    for row, (_, entry) in zip(y, rows, strict=True):
        if "skipped" in entry or entry.get("accuracy") is None:
            text = f"not scored: {entry.get('skipped', 'no rows')}"
        else:
            text = f"{entry['accuracy']:.3f} ({entry['correct']}/{entry['rows']})"
            if entry.get("top_confusions"):
                text += "  wrong: " + ", ".join(f"{k} {v}" for k, v in entry["top_confusions"].items())
        ax.annotate(text, (0, row), xytext=(3, 0), textcoords="offset points", va="center", fontsize="small",
                    color="white" if (entry.get("accuracy") or 0) > 0.5 else "black")  # fmt: skip
    ax.set_yticks(y, [name for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of UDHR rows whose top-1 label is the language with p ≥ its threshold")
    ax.set_title("language identification on UDHR (held out; rows too short for the clean stage not scored)")
    if not rows:
        ax.text(0.5, 0.5, data.get("note", "no UDHR source configured"), ha="center", transform=ax.transAxes)
    fig.tight_layout()
    save_png(fig, path)
    LOG.info("LID on UDHR: %s (%d languages)", path, len(rows))


def evaluate_lid_udhr(
    cfg: dict[str, Any],
    udhr_dirs: dict[str, Path],
    model_path: str | os.PathLike[str],
    specs: dict[str, textrules.LangSpec] | None = None,
) -> dict:
    """LID accuracy per configured language on UDHR rows, by the strict rule (top-1 is the language, p ≥ threshold).

    Rows are judged by the clean stage's own text rules (pipeline.textrules) first: rows they reject
    ("Article 2", "第一条" are too short) never reach LID there, so they are counted, not scored.
    ``specs`` are the clean stage's language specs (built from the model's labels when not given).
    """
    if not udhr_dirs:
        return {"note": "no eval source with format 'udhr' is configured", "sources": {}}
    rules = textrules.Rules.from_config(cfg)
    if specs is None:
        specs = textrules.lang_specs(cfg, lid.label_map(cfg, model_path))
    batch_size = int(cfg["lid"]["batch_size"])
    result: dict[str, Any] = {"sources": {}}
    for source in sorted(udhr_dirs):
        per_lang: dict[str, Any] = {}
        for code, spec in specs.items():
            path = Path(udhr_dirs[source]) / f"{code}.arrow"
            if spec.lid_expected is None:
                per_lang[code] = {"skipped": "lid: false"}
                continue
            if not path.exists():
                per_lang[code] = {"skipped": "no UDHR text for this language"}
                continue
            per_lang[code] = _score_lid(path, spec, rules, str(model_path), batch_size)
        result["sources"][source] = per_lang
    return result


def _score_lid(path: Path, spec: textrules.LangSpec, rules: textrules.Rules, model_path: str, batch_size: int) -> dict:
    texts, too_short = [], 0
    for batch in iter_batches(path, ["text"]):
        judged = textrules.rule_reasons(batch.column(0), rules, spec.unspaced)
        nonempty = judged.chars > 0
        too_short += int(((judged.reasons == "too-short") & nonempty).sum())
        keep = (judged.reasons == None) & nonempty  # noqa: E711 (elementwise on an object array)
        texts.extend(judged.text.filter(pa.array(keep)).to_pylist())
    reasons = np.full(len(texts), None, dtype=object)
    said = textrules.apply_lid(pa.array(texts, pa.string()), reasons, spec, model_path, batch_size)  # strict rule
    correct = int((reasons == None).sum())  # noqa: E711
    confusions = collections.Counter(label for label in said.labels if label != spec.code)
    return {
        "rows": len(texts),
        "rows_too_short": too_short,
        "correct": correct,
        "accuracy": round(correct / len(texts), 4) if texts else None,
        "threshold": spec.threshold,
        "top_confusions": dict(sorted(confusions.most_common(3))),
    }
