"""Mixture stage: per-language sizes of the clean train split and their α-sampling probabilities.

p_i = n_i / Σ_j n_j and q_i = p_i^α / Σ_j p_j^α (XLM, Conneau & Lample 2019), once with
``mixture.alpha_vocab`` (the vocabulary sample) and once with ``mixture.alpha_train`` (training
batches).  n_i is counted in ``mixture.unit``: sentences (train rows) or characters (of train rows).
``mixture.token_budget`` is in that same unit, so the expected number of passes over a language's
data is passes_i = q_i · budget / n_i.  Languages with no train data are excluded with a warning.

The stage writes two files in two steps, so that α_train reaches training alone: ``mixture/vocab.json`` (counts,
p and the vocabulary sample's q; what the vocab stage reads) from the clean files, then ``mixture/mixture.json``
(the same plus α_train's q, factors and passes; what training reads) and ``alpha.png`` from vocab.json.  Editing
``alpha_train`` or ``token_budget`` rewrites only the second, so the vocabulary and the shards stay.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from pipeline.arrow_io import iter_batches, save_png, write_json
from pipeline.logs import stage_logging

LOG = logging.getLogger(__name__)

PLOT_ALPHAS = (1.0, 0.7, 0.5, 0.3)
TRAIN_SPLIT = "train"


def count_language(path: str | os.PathLike[str], unit: str, split: str = TRAIN_SPLIT) -> dict[str, int]:
    """Rows and characters of one split of a clean file, streamed batch by batch.

    Characters are read only when the unit needs them, so a sentence count touches just ``split``.
    """
    columns = ["split", "text"] if unit == "characters" else ["split"]
    rows = chars = 0
    for batch in iter_batches(path, columns):
        keep = pc.equal(batch.column("split"), split)
        rows += pc.sum(keep).as_py() or 0
        if unit == "characters":
            chars += pc.sum(pc.utf8_length(pc.filter(batch.column("text"), keep))).as_py() or 0
    return {"rows": rows, "chars": chars} if unit == "characters" else {"rows": rows}


def probabilities(sizes: Mapping[str, float]) -> dict[str, float]:
    """p_i = n_i / Σ n_j over the given (non-empty) sizes."""
    total = sum(sizes.values())
    if total <= 0:
        raise ValueError("no language has any data: cannot compute a mixture")
    return {lang: n / total for lang, n in sizes.items()}


def alpha_sample(p: Mapping[str, float], alpha: float) -> dict[str, float]:
    """q_i = p_i^α / Σ p_j^α: α = 1 keeps p, α → 0 approaches uniform."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    powered = {lang: pi**alpha for lang, pi in p.items()}
    total = sum(powered.values())
    return {lang: v / total for lang, v in powered.items()}


def split_empty(sizes: Mapping[str, int]) -> tuple[dict[str, int], list[str]]:
    """Separate languages with data from empty ones (which would divide by zero downstream)."""
    kept = {lang: n for lang, n in sorted(sizes.items()) if n > 0}
    empty = sorted(lang for lang, n in sizes.items() if n <= 0)
    return kept, empty


def compute_vocab_mixture(counts: Mapping[str, Mapping[str, int]], unit: str, alpha_vocab: float) -> dict[str, Any]:
    """mixture/vocab.json from per-language counts (``rows`` and maybe ``chars``): sizes, p and q for α_vocab."""
    key = "chars" if unit == "characters" else "rows"
    sizes, empty = split_empty({lang: c[key] for lang, c in counts.items()})
    warnings = [f"language {lang!r} has no {unit} in the train split: excluded from the mixture" for lang in empty]
    if not sizes:
        raise ValueError("every language is empty in the train split: nothing to mix")
    p = probabilities(sizes)
    q_vocab = alpha_sample(p, alpha_vocab)
    q_plot = {str(a): alpha_sample(p, a) for a in PLOT_ALPHAS}
    languages = {
        lang: {**dict(counts[lang]), "n": n, "p": p[lang], "q": {"vocab": q_vocab[lang]},
               "factor": {"vocab": q_vocab[lang] / p[lang]}, "q_by_alpha": {a: q[lang] for a, q in q_plot.items()}}
        for lang, n in sizes.items()
    }  # fmt: skip
    return {
        "unit": unit,
        "alpha": {"vocab": alpha_vocab},
        "total": sum(sizes.values()),
        "languages": languages,
        "excluded": empty,
        "warnings": warnings,
        "smallest": min(sizes, key=lambda lang: (sizes[lang], lang)),
    }


def add_training(vocab_mixture: Mapping[str, Any], alpha_train: float, token_budget: int) -> dict[str, Any]:
    """mixture/mixture.json: the vocabulary's mixture plus q for α_train, its factors and the passes per language."""
    mixture = copy.deepcopy(dict(vocab_mixture))
    p = {lang: entry["p"] for lang, entry in mixture["languages"].items()}
    q_train = alpha_sample(p, alpha_train)
    for lang, entry in mixture["languages"].items():
        entry["q"]["train"] = q_train[lang]
        entry["factor"]["train"] = q_train[lang] / p[lang]
        # Expected passes over this language's data when `token_budget` units are drawn with q_train.
        entry["passes"] = q_train[lang] * token_budget / entry["n"]
    mixture["alpha"]["train"] = alpha_train
    mixture.update(token_budget=token_budget, budget_unit=mixture["unit"])
    return mixture


def compute_mixture(
    counts: Mapping[str, Mapping[str, int]], unit: str, alpha_vocab: float, alpha_train: float, token_budget: int
) -> dict[str, Any]:
    """The whole mixture.json content from per-language counts (``rows`` and maybe ``chars``)."""
    return add_training(compute_vocab_mixture(counts, unit, alpha_vocab), alpha_train, token_budget)


def plot_alpha(mixture: Mapping[str, Any], out_png: str | os.PathLike[str]) -> None:
    """Write alpha.png (``alpha_figure``) atomically."""
    save_png(alpha_figure(mixture), out_png)


def alpha_figure(mixture: Mapping[str, Any]) -> Any:
    """p against q for several α (log-log): below the diagonal downsampled, above upsampled.

    A language's points share one p, so they stand in a column joined by a thin line; its name sits at the
    column's top or bottom, alternating along p so that neighbours' names do not collide.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.plots import LABEL_SIZE, TICK_SIZE, TITLE_SIZE, plain_log_axis

    langs = sorted(mixture["languages"], key=lambda lang: (mixture["languages"][lang]["p"], lang))
    p = [mixture["languages"][lang]["p"] for lang in langs]
    qs = {alpha: [mixture["languages"][lang]["q_by_alpha"][str(alpha)] for lang in langs] for alpha in PLOT_ALPHAS}
    fig, ax = plt.subplots(figsize=(7, 5.2))
    for i, (lang, pi) in enumerate(zip(langs, p, strict=True)):
        column = [qs[alpha][i] for alpha in PLOT_ALPHAS]
        ax.plot([pi, pi], [min(column), max(column)], color="lightgray", lw=1, zorder=1)
        above = i % 2 == 0
        ax.annotate(lang, (pi, max(column) if above else min(column)), textcoords="offset points",
                    xytext=(0, 6 if above else -6), ha="center", va="bottom" if above else "top",
                    fontsize=TICK_SIZE)  # fmt: skip
    for alpha in PLOT_ALPHAS:
        ax.plot(p, qs[alpha], "o", ms=5, zorder=3, label=f"α = {alpha}" + (" (p itself)" if alpha == 1.0 else ""))
    values = p + [q for column in qs.values() for q in column]
    lo, hi = min(values) / 1.6, min(1.0, max(values) * 1.6)
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8, label="q = p")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    if len(langs) > 1:
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.xaxis, lo, hi)
        plain_log_axis(ax.yaxis, lo, hi)
    ax.tick_params(labelsize=TICK_SIZE)
    ax.set_xlabel(f"p (share of {mixture['unit']}, log scale)", fontsize=LABEL_SIZE)
    ax.set_ylabel("q (sampling probability, log scale)", fontsize=LABEL_SIZE)
    ax.set_title(f"α-sampling (vocab α = {mixture['alpha']['vocab']}, train α = {mixture['alpha']['train']}): "
                 "above the diagonal upsampled", fontsize=TITLE_SIZE)  # fmt: skip
    ax.legend(fontsize=TICK_SIZE, loc="upper left")
    ax.grid(alpha=0.3, which="major")
    fig.tight_layout()
    return fig


def count_languages(clean_paths: Mapping[str, str | os.PathLike[str]], unit: str) -> dict[str, dict[str, int]]:
    counts = {}
    for lang in sorted(clean_paths):
        counts[lang] = count_language(clean_paths[lang], unit)
        LOG.info("mixture: %s %s", lang, counts[lang])
    return counts


def run_vocab_mixture_stage(
    cfg: Mapping[str, Any],
    clean_paths: Mapping[str, str | os.PathLike[str]],
    out_json: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Count every clean language's train split and write mixture/vocab.json; return it.

    ``cfg`` needs ``mixture.unit`` and ``mixture.alpha_vocab`` (``pipeline.config.vocab_mixture_slice``).
    """
    mcfg = cfg["mixture"]
    with stage_logging(log):
        mixture = compute_vocab_mixture(count_languages(clean_paths, mcfg["unit"]), mcfg["unit"], mcfg["alpha_vocab"])
        for warning in mixture["warnings"]:
            LOG.warning("mixture: %s", warning)
        write_json(out_json, mixture)
        LOG.info("mixture: wrote %s", Path(out_json))
    return mixture


def run_train_mixture_stage(
    cfg: Mapping[str, Any],
    vocab_json: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Add α_train's q and passes to mixture/vocab.json: write mixture/mixture.json and alpha.png; return it.

    ``cfg`` needs ``mixture.alpha_train`` and ``mixture.token_budget`` (``pipeline.config.train_mixture_slice``).
    """
    mcfg = cfg["mixture"]
    with stage_logging(log):
        vocab_mixture = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        mixture = add_training(vocab_mixture, mcfg["alpha_train"], mcfg["token_budget"])
        write_json(out_json, mixture)
        plot_alpha(mixture, out_png)
        LOG.info("mixture: wrote %s and %s", Path(out_json), Path(out_png))
    return mixture


def run_mixture_stage(
    cfg: Mapping[str, Any],
    clean_paths: Mapping[str, str | os.PathLike[str]],
    out_json: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Both steps in one call (no vocab.json written): count, then write mixture.json and alpha.png.

    ``cfg`` needs only the ``mixture`` section (``pipeline.config.mixture_slice``).
    """
    mcfg = cfg["mixture"]
    with stage_logging(log):
        counts = count_languages(clean_paths, mcfg["unit"])
        mixture = compute_mixture(counts, mcfg["unit"], mcfg["alpha_vocab"], mcfg["alpha_train"], mcfg["token_budget"])
        for warning in mixture["warnings"]:
            LOG.warning("mixture: %s", warning)
        write_json(out_json, mixture)
        plot_alpha(mixture, out_png)
        LOG.info("mixture: wrote %s and %s", Path(out_json), Path(out_png))
    return mixture
