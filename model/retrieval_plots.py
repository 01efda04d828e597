"""Plots of the retrieval, CKA and resource families (matplotlib Agg, no timestamps in the PNGs)."""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
import numpy as np  # noqa: E402

from pipeline import plots  # noqa: E402
from pipeline.arrow_io import save_png  # noqa: E402
from pipeline.plots import CHANCE, FLOOR, OURS, REF, TWIN  # noqa: E402

MODELS, VARIANTS = ("ours", "twin"), ("cosine", "cosine_centred")
MAX_HEATMAP_ROWS = 5  # layers drawn as heatmaps; the summary line above them shows every layer
MAX_ANNOTATED_LANGUAGES = 6  # cells get their value written in when the matrix is at most this wide
DATASET_TITLES = {"libreoffice": "LibreOffice help, test pairs", "udhr": "UDHR paragraphs (many-way)"}


def _panels(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(dataset, language, row) for every language of both retrieval datasets, "no data" ones included."""
    return [(d, lang, row) for d in ("libreoffice", "udhr")
            for lang, row in sorted(result[d].get("languages", {}).items())]  # fmt: skip


def _curve_values(result: dict[str, Any]) -> list[float]:
    """Every value the per-layer panels draw on their shared y-axis (the reference is kept off it)."""
    values = []
    for _, _, row in _panels(result):
        if row["status"] != "ok":
            continue
        values += [row["lexical_overlap"]["mean"], row["chance"]]
        values += [e["mean"] for name in MODELS for v in VARIANTS for e in row[name]["test_by_layer"][v]]
    return values


def _draw_language(ax: plt.Axes, dataset: str, lang: str, row: dict[str, Any], result: dict[str, Any]) -> None:
    unseen = dataset == "udhr" and not row.get("seen_in_training", True)
    n = f" (N = {row['n_test']})" if row["status"] == "ok" else ""
    ax.set_title(f"{DATASET_TITLES[dataset].split(',')[0].split(' (')[0]}: {result['pivot']}–{lang}"
                 + (" (unseen)" if unseen else "") + n, fontsize=plots.LABEL_SIZE)  # fmt: skip
    if row["status"] != "ok":
        plots.no_data_panel(ax, f"{row.get('n_test', 0)} test items")
        return
    layers = np.arange(result["model"]["layers"])
    for name, colour, marker in (("ours", OURS, "o"), ("twin", TWIN, "s")):
        curves = row[name]["test_by_layer"]
        ax.plot(layers, [e["mean"] for e in curves["cosine"]], "-", marker=marker, color=colour, ms=4, lw=1.6)
        ax.plot(layers, [e["mean"] for e in curves["cosine_centred"]], "--", marker=marker, color=colour, ms=3,
                mfc="white", lw=1.2)  # fmt: skip
        best = row[name]["test"]["cosine"]["layer"]
        ax.plot([best], [curves["cosine"][best]["mean"]], "*", color=colour, ms=13, mec="black", mew=0.6, zorder=4)
    ax.axhline(row["lexical_overlap"]["mean"], color=FLOOR, ls="-.", lw=1.5)
    ax.axhline(row["chance"], color=CHANCE, ls=":", lw=1)
    _draw_reference(ax, row, result)
    ax.set_xticks(layers)
    ax.tick_params(labelsize=plots.TICK_SIZE)
    ax.grid(alpha=0.3)


def _draw_reference(ax: plt.Axes, row: dict[str, Any], result: dict[str, Any]) -> None:
    """The reference encoder as a labelled horizontal line where it fits the curves' scale, and always as a note
    with its score and ours on the same items (it is scored on its own smaller sample, so that is the fair pair);
    a reference far above the curves is not allowed to squash them."""
    reference = result["reference"]
    if reference["status"] != "ok":
        return
    ref = row.get("reference", {})
    if ref.get("status") != "ok":
        note = f"{reference['name']}: {ref.get('status', 'no data')}"
    else:
        score = ref["scores"]["cosine"]["mean"]
        off_scale = score > ax.get_ylim()[1]
        if not off_scale:
            ax.axhline(score, color=REF, ls="--", lw=1.5)
        note = (f"{'↑ ' if off_scale else ''}{reference['name']} {score:.2f} on its {ref['n']} items "
                f"(ours {ref['ours_same_items']['cosine']['mean']:.2f})")  # fmt: skip
    box = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": REF, "alpha": 0.85}
    ax.text(0.98, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=plots.NOTE_SIZE, color=REF,
            bbox=box, gid="reference")  # fmt: skip


def _legend_handles(result: dict[str, Any]) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=OURS, marker="o", ms=4, label="ours, cosine"),
               Line2D([], [], color=OURS, ls="--", marker="o", ms=3, mfc="white", label="ours, centred"),
               Line2D([], [], color=TWIN, marker="s", ms=4, label="random twin, cosine"),
               Line2D([], [], color=TWIN, ls="--", marker="s", ms=3, mfc="white", label="random twin, centred"),
               Line2D([], [], color="none", marker="*", ms=11, mfc="white", mec="black", label="layer chosen on valid"),
               Line2D([], [], color=FLOOR, ls="-.", lw=1.5, label="lexical overlap floor"),
               Line2D([], [], color=CHANCE, ls=":", label="chance (1/N)")]  # fmt: skip
    reference = result["reference"]
    if reference["status"] == "ok":
        items = f"its own ≤{reference['max_items']} items"
        label = f"{reference['name']} reference, final vector, {items} (↑: above the scale)"
        handles.append(Line2D([], [], color=REF, ls="--", lw=1.5, label=label))
    return handles


def plot_retrieval_layers(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write retrieval_layers.png (``retrieval_layers_figure``) atomically."""
    save_png(retrieval_layers_figure(result), path)


def retrieval_layers_figure(result: dict[str, Any]) -> plt.Figure:
    """Test P@1 by layer per language on one shared y-scale: ours vs the twin (solid cosine, dashed centred), the
    chosen layer starred, the lexical floor, chance, and the reference beside them."""
    panels = _panels(result)
    cols = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    height = 3.0 * rows + 1.3
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, height), squeeze=False, sharey=True)
    axes[0, 0].set_ylim(-0.01, plots.value_top(_curve_values(result), headroom=1.3, cap=1.02))
    for ax, (dataset, lang, row) in zip(axes.flat, panels, strict=False):
        _draw_language(ax, dataset, lang, row, result)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    for r in range(rows):
        axes[r, 0].set_ylabel("test P@1, mean of both directions", fontsize=plots.NOTE_SIZE)
    for ax in list(axes.flat)[: len(panels)]:
        ax.set_xlabel("layer (0 = embeddings)", fontsize=plots.NOTE_SIZE)
    fig.legend(handles=_legend_handles(result), loc="lower center", ncol=4, fontsize=plots.NOTE_SIZE, frameon=False)
    ref = result["reference"]
    note = "" if ref["status"] == "ok" else f"   (reference {ref['name']} absent: {ref['reason'][:80]})"
    fig.suptitle(f"Cross-lingual retrieval by layer{note}", fontsize=plots.TITLE_SIZE + 1)
    fig.tight_layout(rect=(0, 0.6 / height, 1, 1 - 0.3 / height))
    return fig


def plot_cka(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write cka.png (``cka_figure``) atomically."""
    save_png(cka_figure(result), path)


def shown_layers(n_layers: int, most: int = MAX_HEATMAP_ROWS) -> list[int]:
    """Every layer when few, else ``most`` evenly spaced ones, always the embeddings (0) and the last."""
    if n_layers <= most:
        return list(range(n_layers))
    return sorted({round(i * (n_layers - 1) / (most - 1)) for i in range(most)})


def mean_off_diagonal(matrix: Any) -> float:
    """The mean similarity between different languages (the diagonal, each language with itself, is 1)."""
    m = np.asarray(matrix, dtype=float)
    return float(m[~np.eye(len(m), dtype=bool)].mean()) if len(m) > 1 else float("nan")


def cka_figure(result: dict[str, Any]) -> plt.Figure:
    """Per dataset, ours beside the random twin: a line of the mean cross-language CKA over every layer on top,
    then one heatmap per shown layer on one colour scale (values written in the cells when there are few)."""
    datasets = [(name, d) for name, d in sorted(result["datasets"].items()) if d["status"] == "ok"]
    missing = [f"{name}: no data ({d.get('reason', d['status'])})" for name, d in sorted(result["datasets"].items())
               if d["status"] != "ok"]  # fmt: skip
    if not datasets:
        fig, ax = plt.subplots(figsize=(7, 2.5))
        ax.set_title("Layer-wise debiased CKA between languages", fontsize=plots.TITLE_SIZE)
        plots.no_data_panel(ax, "\n".join(missing))
        return fig
    layers = shown_layers(result["model"]["layers"])
    n_langs = max(len(d["languages"]) for _, d in datasets)
    side = max(2.6, 0.22 * n_langs + 1.4)
    fig = plt.figure(figsize=(2 * side * len(datasets) + 1.4, side * len(layers) + 3.4), layout="constrained")
    grid = fig.add_gridspec(1 + len(layers), 2 * len(datasets), height_ratios=[0.7 * side] + [side] * len(layers))
    image = None
    for d_index, (name, data) in enumerate(datasets):
        _cka_summary(fig.add_subplot(grid[0, 2 * d_index : 2 * d_index + 2]), name, data)
        for m_index, model_name in enumerate(MODELS):
            for r, layer in enumerate(layers):
                ax = fig.add_subplot(grid[1 + r, 2 * d_index + m_index])
                image = _cka_heatmap(ax, data, model_name, layer, first_row=r == 0, last_row=r == len(layers) - 1)
                if d_index == m_index == 0:
                    ax.set_ylabel(f"layer {layer}", fontsize=plots.LABEL_SIZE + 1, fontweight="bold")
    negative = any(min(map(min, m)) < 0 for _, d in datasets for name in MODELS for m in d[name])
    fig.colorbar(image, ax=fig.axes, shrink=0.5, extend="min" if negative else "neither",
                 label="debiased linear CKA (1 = same geometry)")  # fmt: skip
    shown = "every layer" if len(layers) == result["model"]["layers"] else f"layers {', '.join(map(str, layers))}"
    fig.suptitle("Layer-wise debiased CKA between languages, trained model beside its random twin "
                 f"(heatmaps: {shown}; * = unseen language)" + ("\n" + "; ".join(missing) if missing else ""),
                 fontsize=plots.TITLE_SIZE + 1)  # fmt: skip
    return fig


def _cka_summary(ax: plt.Axes, name: str, data: dict[str, Any]) -> None:
    for model_name, colour, marker in (("ours", OURS, "o"), ("twin", TWIN, "s")):
        means = [mean_off_diagonal(m) for m in data[model_name]]
        ax.plot(range(len(means)), means, "-", marker=marker, color=colour, ms=4,
                label="ours" if model_name == "ours" else "random twin")  # fmt: skip
    ax.set_xticks(range(len(data["ours"])))
    ax.set_ylim(0, 1)
    ax.set_xlabel("layer (0 = embeddings)", fontsize=plots.NOTE_SIZE)
    ax.set_ylabel("mean CKA between\ndifferent languages", fontsize=plots.NOTE_SIZE)
    ax.set_title(f"{DATASET_TITLES.get(name, name).split(',')[0]} ({len(data['languages'])} languages, "
                 f"{data['n_items']} parallel items)", fontsize=plots.LABEL_SIZE + 1)  # fmt: skip
    ax.tick_params(labelsize=plots.TICK_SIZE)
    ax.legend(fontsize=plots.NOTE_SIZE, loc="upper right")
    ax.grid(alpha=0.3)


def _cka_heatmap(ax: plt.Axes, data: dict[str, Any], model_name: str, layer: int, first_row: bool,
                 last_row: bool) -> Any:  # fmt: skip
    labels = [f"{lang}*" if lang in data["unseen"] else lang for lang in data["languages"]]
    matrix = np.array(data[model_name][layer])
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    if len(labels) <= MAX_ANNOTATED_LANGUAGES:
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=plots.TICK_SIZE,
                    color="white" if v < 0.5 else "black")  # fmt: skip
    upright = max(map(len, labels)) <= 3  # language codes like "de" or "mr*" fit under their column
    ax.set_xticks(range(len(labels)), labels if last_row else [], rotation=0 if upright else 90,
                  fontsize=plots.TICK_SIZE)  # fmt: skip
    ax.set_yticks(range(len(labels)), labels if model_name == "ours" else [], fontsize=plots.TICK_SIZE)
    if first_row:
        ax.set_title("ours" if model_name == "ours" else "random twin", fontsize=plots.LABEL_SIZE + 1)
    return image


def plot_resource(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Test P@1 (ours filled, twin hollow) against training size, log x; unseen languages at the left edge."""
    datasets = [(name, rows) for name, rows in sorted(result["datasets"].items()) if rows]
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(6.0 * max(1, len(datasets)), 4.6), squeeze=False)
    for ax, (name, rows) in zip(axes.flat, datasets, strict=False):
        _resource_panel(ax, name, rows, result["size_unit"])
    fig.suptitle(f"Resource vs. performance: retrieval P@1 ({result['variant']}, layer chosen on valid) "
                 "against training size", fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    save_png(fig, path)


def _resource_panel(ax: plt.Axes, name: str, rows: dict[str, Any], unit: str) -> None:
    ok = {lang: r for lang, r in rows.items() if r["status"] == "ok"}
    seen = [r["train_size"] for r in ok.values() if r["seen_in_training"] and r["train_size"] > 0]
    unseen_x = (min(seen) / 10) if seen else 1.0  # a column of its own, left of every trained language
    for lang, r in sorted(ok.items()):
        x = r["train_size"] if r["seen_in_training"] and r["train_size"] > 0 else unseen_x
        ax.plot([x, x], [r["twin"], r["ours"]], color="lightgray", zorder=1)
        ax.scatter([x], [r["ours"]], color=OURS, zorder=3, s=36)
        ax.scatter([x], [r["twin"]], facecolors="none", edgecolors=TWIN, zorder=3, s=36)
        ax.annotate(lang, (x, r["ours"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    if seen:
        low, high = unseen_x / 2.5, max(seen) * 2.5
        ax.set_xlim(low, high)
        ax.axvline(unseen_x * 2, color="lightgray", ls="--", lw=1)
        decades = [10.0**e for e in range(math.ceil(math.log10(unseen_x * 2)), math.floor(math.log10(high)) + 1)]
        ax.set_xticks([unseen_x, *decades], ["unseen\n(0)", *(f"{d:,.0f}" for d in decades)])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    missing = sorted(set(rows) - set(ok))
    if missing:
        ax.text(0.98, 0.97, "no data: " + ", ".join(missing), transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="dimgray")  # fmt: skip
    ax.scatter([], [], color=OURS, label="trained model")
    ax.scatter([], [], facecolors="none", edgecolors=TWIN, label="random twin")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(-0.12, 1.05)
    ax.set_xlabel(f"training size ({unit}, log scale)", fontsize=9)
    ax.set_ylabel("test P@1, mean of both directions", fontsize=9)
    ax.set_title(DATASET_TITLES[name], fontsize=10)
    ax.grid(alpha=0.3)
