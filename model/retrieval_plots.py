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

from pipeline.arrow_io import save_png  # noqa: E402

OURS, TWIN, FLOOR, REF, CHANCE = "tab:blue", "tab:gray", "tab:orange", "tab:green", "black"
DATASET_TITLES = {"libreoffice": "LibreOffice help, test pairs", "udhr": "UDHR paragraphs (many-way)"}


def _panels(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(dataset, language, row) for every language of both retrieval datasets, "no data" ones included."""
    return [(d, lang, row) for d in ("libreoffice", "udhr")
            for lang, row in sorted(result[d].get("languages", {}).items())]  # fmt: skip


def _draw_language(ax: plt.Axes, dataset: str, lang: str, row: dict[str, Any], result: dict[str, Any]) -> None:
    unseen = dataset == "udhr" and not row.get("seen_in_training", True)
    ax.set_title(f"{DATASET_TITLES[dataset].split(',')[0].split(' (')[0]}: {result['pivot']}–{lang}"
                 + (" (unseen)" if unseen else ""), fontsize=9)  # fmt: skip
    if row["status"] != "ok":
        ax.text(0.5, 0.5, f"no data\n{row.get('n_test', 0)} items", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="dimgray")  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        return
    layers = np.arange(result["model"]["layers"])
    for name, colour in (("ours", OURS), ("twin", TWIN)):
        curves = row[name]["test_by_layer"]
        ax.plot(layers, [e["mean"] for e in curves["cosine"]], "-o", color=colour, ms=3, label=f"{name}, cosine")
        ax.plot(layers, [e["mean"] for e in curves["cosine_centred"]], "--", color=colour, label=f"{name}, centred")
        best = row[name]["test"]["cosine"]["layer"]
        ax.plot([best], [curves["cosine"][best]["mean"]], "*", color=colour, ms=11, mec="black", mew=0.5)
    ax.axhline(row["lexical_overlap"]["mean"], color=FLOOR, ls=":", lw=1.5, label="lexical overlap")
    ax.axhline(row["chance"], color=CHANCE, ls=":", lw=1, label="chance (1/N)")
    ref = row.get("reference", {})
    if ref.get("status") == "ok":
        ax.plot([layers[-1] + 0.8], [ref["scores"]["cosine"]["mean"]], "D", color=REF,
                label=f"{result['reference']['name']} (final vector, its own ≤{result['reference']['max_items']} items)")
    ax.set_ylim(-0.02, 1.02)
    ticks = list(layers) + ([layers[-1] + 0.8] if ref.get("status") == "ok" else [])
    ax.set_xticks(ticks, [str(t) for t in layers] + (["ref"] if len(ticks) > len(layers) else []))
    ax.set_xlabel("layer (0 = embeddings)", fontsize=8)
    ax.set_ylabel("P@1, mean of both directions", fontsize=8)
    ax.text(0.02, 0.97, f"N = {row['n_test']}", transform=ax.transAxes, va="top", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def plot_retrieval_layers(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Test P@1 by layer per language: ours vs the twin (solid cosine, dashed centred), the chosen layer
    starred, the lexical floor, chance and the reference beside them."""
    panels = _panels(result)
    cols = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    height = 3.0 * rows + 0.9
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, height), squeeze=False)
    for ax, (dataset, lang, row) in zip(axes.flat, panels, strict=False):
        _draw_language(ax, dataset, lang, row, result)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = next((ax.get_legend_handles_labels() for ax in axes.flat if ax.get_legend_handles_labels()[0]),
                           ([], []))  # fmt: skip
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8, frameon=False)
    ref = result["reference"]
    note = "" if ref["status"] == "ok" else f"   (reference {ref['name']} absent: {ref['reason'][:80]})"
    fig.suptitle(f"Cross-lingual retrieval by layer (★ = layer chosen on valid){note}", fontsize=11)
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1 - 0.35 / height))
    save_png(fig, path)


def plot_cka(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """One heatmap per layer (columns) for ours and the twin (rows), per dataset with data."""
    datasets = [(name, d) for name, d in sorted(result["datasets"].items()) if d["status"] == "ok"]
    n_layers = result["model"]["layers"]
    if not datasets:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "CKA: no data\n" + "; ".join(f"{n}: {d['reason']}" for n, d in result["datasets"].items()),
                ha="center", va="center", fontsize=9, wrap=True)  # fmt: skip
        save_png(fig, path)
        return
    n_langs = max(len(d["languages"]) for _, d in datasets)
    size = max(2.2, 0.32 * n_langs + 1.0)
    fig, axes = plt.subplots(2 * len(datasets), n_layers, figsize=(size * n_layers + 1.2, size * 2 * len(datasets) + 0.6),
                             squeeze=False, layout="constrained")  # fmt: skip
    image = None
    for d_index, (name, data) in enumerate(datasets):
        labels = [f"{lang}*" if lang in data["unseen"] else lang for lang in data["languages"]]
        for m_index, model_name in enumerate(("ours", "twin")):
            r = 2 * d_index + m_index
            for layer in range(n_layers):
                ax = axes[r, layer]
                matrix = np.array(data[model_name][layer])
                image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
                if len(labels) <= 8:  # the values themselves, where they fit
                    for (i, j), v in np.ndenumerate(matrix):
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if v < 0.6 else "black")  # fmt: skip
                ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
                ax.set_yticks(range(len(labels)), labels if layer == 0 else [], fontsize=7)
                ax.set_title(f"layer {layer}", fontsize=8)
            axes[r, 0].set_ylabel(f"{model_name}\n{name}, n={data['n_items']}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6, label="debiased linear CKA")
    fig.suptitle("Layer-wise debiased CKA between languages: trained model vs. random twin (* = unseen language)",
                 fontsize=11)  # fmt: skip
    save_png(fig, path)


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
