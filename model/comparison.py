"""eval/experiments/comparison.json: every experiment variant beside the default run, per language.

For each language and each headline metric (retrieval P@1 on held-out LibreOffice help pairs at the layer chosen
on valid pairs, zero-shot help-module accuracy, MLM perplexity) the comparison lists every run's number (one
per seed: ``experiments.seeds``), the mean over a group's seeds, the variant's difference from the default run's
mean, and the spread (max - min) over seeds; ``beyond_spread`` says whether a difference is larger than both
groups' spreads (null with one seed, where nothing measures the noise). Nothing is computed from the models
here: every number is one the evaluation families wrote into ``eval/{run}/<family>.json``. A number a family
could not produce is null, with the reason under ``missing``.

Beside the JSON: comparison.md (one table per metric) and two plots, comparison.png (every run's number per
language, the group mean as a bar) and differences.png (variant - default per language, one panel per metric).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.eval_common import dig
from pipeline.arrow_io import atomic_path, save_png, write_json
from pipeline.logs import stage_logging

LOG = logging.getLogger(__name__)

DEFAULT = "default"  # the group name of the default run (and its seed runs)
FAMILIES = ("retrieval", "classify", "mlm")  # the eval/{run}/<family>.json files the comparison reads


def _row(data: Any, *keys: str) -> tuple[Mapping[str, Any] | None, str | None]:
    """The family's per-language row when its status is ok, else None and the reason."""
    row = dig(data, *keys)
    if not isinstance(row, Mapping):
        return None, "not in the results file"
    if row.get("status") != "ok":
        return None, str(row.get("reason") or row.get("status") or "no status")
    return row, None


Reading = tuple[float | None, str | None]  # the number, or None and why not


def _retrieval(results: Mapping[str, Any], lang: str) -> Reading:
    data = results["retrieval"]
    variant = data.get("headline", "cosine")
    if lang == dig(data, "pivot"):
        return None, "pivot (no cross-lingual pair)"
    row, reason = _row(data, "libreoffice", "languages", lang)
    return (None, reason) if row is None else (dig(row, "ours", "test", variant, "mean"), None)


def _zero_shot(results: Mapping[str, Any], lang: str) -> Reading:
    row, reason = _row(results["classify"], "languages", lang)
    return (None, reason) if row is None else (dig(row, "finetune_ours", "accuracy"), None)


def _perplexity(results: Mapping[str, Any], lang: str) -> Reading:
    row, reason = _row(results["mlm"], "mlm", lang)
    return (None, reason) if row is None else (dig(row, "ours", "perplexity"), None)


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool
    read: Callable[[Mapping[str, Any], str], Reading]


METRICS = (
    Metric("retrieval", "retrieval P@1 (LibreOffice test pairs, layer chosen on valid)", True, _retrieval),
    Metric("zero_shot", "zero-shot help-module accuracy (fine-tuned on the pivot)", True, _zero_shot),
    Metric("mlm_perplexity", "MLM perplexity on the test shards (lower is better)", False, _perplexity),
)
# Said under a metric's table: what a reader would otherwise get wrong.
NOTES = {
    "mlm_perplexity": "Perplexity is per token of each run's own vocabulary: a smaller vocabulary cuts text into more, "
    "more predictable tokens, so compare it only between runs that share a vocabulary (not across vocab_* "
    "variants).",
}


def _summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "spread": None}
    return {"mean": statistics.fmean(values), "spread": max(values) - min(values) if len(values) > 1 else None}


def _compare(group: dict[str, Any], default: dict[str, Any]) -> None:
    """Add the difference from the default group (and whether it exceeds both spreads) to ``group``."""
    if group["mean"] is None or default["mean"] is None:
        group.update(difference=None, beyond_spread=None)
        return
    group["difference"] = group["mean"] - default["mean"]
    spreads = [s for s in (group["spread"], default["spread"]) if s is not None]
    group["beyond_spread"] = abs(group["difference"]) > max(spreads) if spreads else None


def compare(groups: Mapping[str, Sequence[str]], languages: Sequence[str], results: Mapping[str, Mapping[str, Any]],
            run_languages: Mapping[str, Sequence[str]]) -> dict[str, Any]:  # fmt: skip
    """The comparison from parsed results: ``groups`` is group -> run names (DEFAULT first), ``results`` run ->
    family -> parsed JSON, ``run_languages`` run -> the languages that run trained on."""
    table: dict[str, Any] = {}
    missing: list[str] = []
    for lang in languages:
        per_metric: dict[str, Any] = {}
        for metric in METRICS:
            entries: dict[str, Any] = {}
            for group, runs in groups.items():
                values: dict[str, float | None] = {}
                for run in runs:
                    if lang not in run_languages[run]:
                        value, reason = None, "not one of the run's languages"
                    else:
                        value, reason = metric.read(results[run], lang)
                    values[run] = value
                    if value is None:
                        missing.append(f"{metric.name}, {lang}, {run}: {reason}")
                entries[group] = {"runs": values, **_summary([v for v in values.values() if v is not None])}
            for group, entry in entries.items():
                if group != DEFAULT:
                    _compare(entry, entries[DEFAULT])
            per_metric[metric.name] = entries
        table[lang] = per_metric
    return {
        "default_run": groups[DEFAULT][0],
        "groups": {group: list(runs) for group, runs in groups.items()},
        "metrics": {m.name: {"label": m.label, "higher_is_better": m.higher_is_better} for m in METRICS},
        "languages": table,
        "missing": missing,
    }


# ----------------------------------------------------------------------------- tables and plots


def _cell(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def to_markdown(comparison: Mapping[str, Any], train_seeds: Mapping[str, int]) -> str:
    """One table per metric: a row per language, per group its seeds' numbers, mean and difference."""
    groups = list(comparison["groups"])
    lines = ["# Experiments: every variant beside the default run", "",
             f"Default run `{comparison['default_run']}`. Per group: each seed run's number (train.seed in the "
             "header), then the mean; Δ is the variant's mean minus the default's, marked * where it is larger "
             "than both groups' spread over seeds.", ""]  # fmt: skip
    for name, metric in comparison["metrics"].items():
        digits = 1 if name == "mlm_perplexity" else 3
        header = ["language"]
        for group in groups:
            runs = comparison["groups"][group]
            header.append(f"{group} ({', '.join(str(train_seeds.get(run, '?')) for run in runs)})")
            if group != DEFAULT:
                header.append("Δ")
        rows = []
        for lang, per_metric in comparison["languages"].items():
            row = [lang]
            for group in groups:
                entry = per_metric[name][group]
                seeds = " / ".join(_cell(v, digits) for v in entry["runs"].values())
                row.append(seeds if len(entry["runs"]) == 1 else f"{seeds} (mean {_cell(entry['mean'], digits)})")
                if group != DEFAULT:
                    diff = entry.get("difference")
                    row.append(
                        "—" if diff is None else f"{diff:+.{digits}f}{'*' if entry.get('beyond_spread') else ''}"
                    )
            rows.append(row)
        lines += [
            f"## {metric['label']}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        lines += [NOTES[name], ""] if name in NOTES else []
    if comparison["missing"]:
        lines += ["## Numbers without data", "", *(f"- {line}" for line in comparison["missing"]), ""]
    return "\n".join(lines)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_comparison(comparison: Mapping[str, Any], out_png: str | os.PathLike[str]) -> None:
    """One panel per metric: per language a bar per group (its mean) and a dot per seed run."""
    plt = _plt()
    groups, languages = list(comparison["groups"]), list(comparison["languages"])
    metrics = comparison["metrics"]
    width = 0.8 / max(1, len(groups))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(7, 1.2 * len(languages) * max(1, len(groups)) / 2), 3.2 * len(metrics)),
                             squeeze=False)  # fmt: skip
    for ax, (name, metric) in zip(axes[:, 0], metrics.items(), strict=True):
        for g, group in enumerate(groups):
            xs = [i + (g - (len(groups) - 1) / 2) * width for i in range(len(languages))]
            entries = [comparison["languages"][lang][name][group] for lang in languages]
            means = [e["mean"] if e["mean"] is not None else 0.0 for e in entries]
            ax.bar(xs, means, width * 0.9, label=group, color=f"C{g}", alpha=0.6)
            for x, entry in zip(xs, entries, strict=True):
                seeds = [v for v in entry["runs"].values() if v is not None]
                ax.plot([x] * len(seeds), seeds, "k.", markersize=4)
        ax.set_xticks(range(len(languages)), languages)
        ax.set_title(metric["label"], fontsize=10)
        if name == "mlm_perplexity":
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=8, ncols=min(4, len(groups)))
    fig.tight_layout()
    save_png(fig, out_png)


def plot_differences(comparison: Mapping[str, Any], out_png: str | os.PathLike[str]) -> None:
    """One panel per metric: each variant's difference from the default per language (better is up)."""
    plt = _plt()
    variants = [g for g in comparison["groups"] if g != DEFAULT]
    languages, metrics = list(comparison["languages"]), comparison["metrics"]
    width = 0.8 / max(1, len(variants))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    for ax, (name, metric) in zip(axes[0], metrics.items(), strict=True):
        sign = 1.0 if metric["higher_is_better"] else -1.0
        for v, variant in enumerate(variants):
            xs = [i + (v - (len(variants) - 1) / 2) * width for i in range(len(languages))]
            diffs = [comparison["languages"][lang][name][variant].get("difference") for lang in languages]
            ax.bar(
                xs, [sign * d if d is not None else 0.0 for d in diffs], width * 0.9, label=variant, color=f"C{v + 1}"
            )
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_xticks(range(len(languages)), languages)
        direction = "variant − default" if metric["higher_is_better"] else "default − variant"
        ax.set_title(f"{name}: {direction}", fontsize=10)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Difference from the default run (above 0: the variant does better)", fontsize=10)
    fig.tight_layout()
    save_png(fig, out_png)


# ----------------------------------------------------------------------------- the rule's call


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def run_comparison(groups: Mapping[str, Sequence[str]], languages: Sequence[str],
                   run_languages: Mapping[str, Sequence[str]], train_seeds: Mapping[str, int], eval_root: str | os.PathLike[str],
                   out_json: str | os.PathLike[str], out_md: str | os.PathLike[str], out_png: str | os.PathLike[str],
                   out_diff_png: str | os.PathLike[str], log: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Read eval/{run}/{retrieval,classify,mlm}.json of every run under ``eval_root``; write the four outputs."""
    with stage_logging(log):
        runs = [run for group in groups.values() for run in group]
        results = {
            run: {family: _read(Path(eval_root) / run / f"{family}.json") for family in FAMILIES} for run in runs
        }
        comparison = compare(groups, languages, results, run_languages)
        comparison["train_seeds"] = {run: train_seeds[run] for run in runs}
        write_json(out_json, comparison)
        with atomic_path(out_md) as tmp:
            Path(tmp).write_text(to_markdown(comparison, train_seeds), encoding="utf-8")
        plot_comparison(comparison, out_png)
        plot_differences(comparison, out_diff_png)
        LOG.info("comparison: %d groups, %d runs, %d languages, %d numbers without data -> %s", len(groups),
                 len(runs), len(languages), len(comparison["missing"]), out_json)  # fmt: skip
    return comparison
