"""Shared styling for the stage and evaluation plots, so every figure reads the same way.

One colour per model everywhere (ours blue, the random twin grey, the lexical floor orange, the reference
green); a darker and a lighter shade of it tell two methods apart. The helpers make the failures found by
looking at the PNGs impossible: log axes printed as ``2×10⁻¹``, category labels printed over each other,
zero-height bars that look like missing ones, and panels left blank when there is no data. matplotlib is
imported inside the helpers, so importing this module (as a stage module does at import) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

OURS, OURS_LIGHT = "#1f77b4", "#9ecae1"
TWIN, TWIN_LIGHT = "#636363", "#bdbdbd"
FLOOR, REF, CHANCE = "#ff7f0e", "#2ca02c", "black"
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, NOTE_SIZE = 10, 9, 8, 8
HALO = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7}  # text over lines
NO_DATA_GID = "no-data"  # the gid of a "no data" note, so a test can find it without matching prose

# An 8-point character is about 0.6 of 8 pt wide on average in DejaVu Sans (matplotlib's default).
_CHAR_WIDTH_IN = 0.6 * TICK_SIZE / 72


def no_data_panel(ax: Any, reason: str = "") -> None:
    """Write "no data" (and why) in the middle of ``ax`` instead of leaving it blank."""
    text = "no data" + (f"\n{reason}" if reason else "")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=LABEL_SIZE,
            color="dimgray", wrap=True, gid=NO_DATA_GID)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def no_data_bar_note(ax: Any, x: float) -> None:
    """Mark one category of a bar chart "no data" (vertical, from the baseline) so it is not read as zero."""
    ax.text(x, 0.03, "no data", ha="center", va="bottom", rotation=90, color="dimgray", fontsize=NOTE_SIZE,
            transform=ax.get_xaxis_transform(), gid=NO_DATA_GID)  # fmt: skip


def nice_log_ticks(low: float, high: float, max_ticks: int = 8) -> list[float]:
    """m × 10^k values inside [low, high]: every leading digit for a short range, thinned to 1-2-3-5, 1-2-5 and
    powers of ten as the range grows, so there are a few ticks and never a crowd."""
    if not (0 < low < high):
        return []
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for mantissas in ((1, 2, 3, 4, 5, 6, 8), (1, 2, 3, 5), (1, 2, 5), (1,)):
        ticks = [m * 10.0**e for e in decades for m in mantissas if low <= m * 10.0**e <= high]
        if len(ticks) <= max_ticks:
            return ticks
    return ticks


def plain_number(value: float) -> str:
    """0.3 not 3×10⁻¹, 2,000 not 2×10³; floating noise (0.30000000000000004) rounded away."""
    return f"{float(f'{value:.6g}'):,g}"


def plain_log_axis(axis: Any, low: float, high: float) -> None:
    """Log-scale ticks printed as plain numbers, no minor labels (matplotlib's default prints 2×10⁻¹)."""
    import matplotlib.ticker as ticker

    ticks = nice_log_ticks(low, high)
    if ticks:
        axis.set_major_locator(ticker.FixedLocator(ticks))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: plain_number(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def category_ticks(ax: Any, positions: Sequence[float], labels: Sequence[str]) -> None:
    """Category tick labels that never overlap: horizontal when they fit the axis width, else slanted 35°."""
    ax.set_xticks(list(positions), list(labels), fontsize=TICK_SIZE)
    if labels and _labels_width_in(labels) > 0.9 * _axes_width_in(ax):
        for label in ax.get_xticklabels():
            label.set_rotation(35)
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")


def _labels_width_in(labels: Sequence[str]) -> float:
    """The widest label times their number, in inches: each label is allotted as much room as the widest."""
    widest = max(len(line) for label in labels for line in str(label).split("\n"))
    return len(labels) * (widest + 1) * _CHAR_WIDTH_IN


def _axes_width_in(ax: Any) -> float:
    return ax.get_position().width * ax.figure.get_figwidth()


def label_bars(ax: Any, bars: Any, values: Sequence[float], fmt: str = "{:.2f}") -> None:
    """Each bar's value above it, so a zero-height bar reads "0.00" instead of looking like a missing one.

    Vertical when the bar is narrower than the label; no label for a missing (NaN) value.
    """
    labels = ["" if not math.isfinite(v) else fmt.format(v) for v in values]
    bar_width_in = bars[0].get_width() * _axes_width_in(ax) / abs(ax.get_xlim()[1] - ax.get_xlim()[0]) if bars else 0
    widest = max((len(s) for s in labels), default=0) * 0.6 * 7 / 72
    ax.bar_label(bars, labels=labels, fontsize=7, padding=2, rotation=90 if bar_width_in < widest else 0, bbox=HALO)


def all_zero_note(ax: Any, values: Sequence[float], what: str) -> None:
    """Say so in the panel when every score in it is 0, which otherwise reads as a blank panel."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if finite and not any(finite):
        ax.text(0.5, 0.55, f"every {what} is 0", ha="center", va="center", transform=ax.transAxes,
                fontsize=LABEL_SIZE, color="dimgray")  # fmt: skip


def value_top(values: Sequence[float], floor: float = 0.1, headroom: float = 1.25, cap: float = 1.0) -> float:
    """An upper y-limit over finite values with room for labels: small scores stay visible, never over ``cap``."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return min(cap, max(floor, headroom * max(finite, default=0.0)))
