"""The house style of every figure: palette, markers, rcParams, and how a figure is saved.

Okabe-Ito palette and viridis (colour-blind safe, legible in greyscale); `styled` draws a
figure inside STYLE; `save` writes it atomically with reproducible bytes (no timestamps).
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt

from emogrid.atomic import atomic_path

FORMATS = ("png", "pdf")
# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
LINESTYLES = ["-", "--", "-.", ":"]
HEATMAP_CMAP = "viridis"
MISSING_COLOR = "#e6e6e6"
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": "#d9d9d9",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    "ps.fonttype": 42,
    "hatch.color": "#8c8c8c",
    "hatch.linewidth": 0.8,
}


def styled(func):
    """Draw inside the house style (rcParams apply at creation and at save time)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def model_palette(models: list) -> dict:
    """One Okabe-Ito colour per model, in the order given."""
    return {m: OKABE_ITO[i % len(OKABE_ITO)] for i, m in enumerate(models)}


@styled
def placeholder(title: str, message: str):
    """A small figure that says why there is nothing to draw yet."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def footnote(fig, lines: list[str], max_lines: int = 8, more_in: str = "") -> None:
    """Notes under a figure, at most `max_lines` (the rest counted, and where they are all listed)."""
    if not lines:
        return
    shown = lines[:max_lines]
    if len(lines) > max_lines:
        shown.append(f"… and {len(lines) - max_lines} more" + (f" (all in {more_in})" if more_in else ""))
    fig.text(0.01, -0.01, "\n".join(shown), ha="left", va="top", fontsize=7, color="#404040",
             transform=fig.transFigure)


def text_color(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour `rgba`."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def metric_name(metric: str) -> str:
    """'test_f1_macro' -> 'Test macro-F1': the axis and title name of a summary metric."""
    base = metric.split("_", 1)[1] if metric.startswith(("test_", "val_")) else metric
    split = "Test" if metric.startswith("test_") else ("Validation" if metric.startswith("val_") else "")
    name = {"accuracy": "accuracy", "f1_macro": "macro-F1", "f1_micro": "micro-F1"}.get(base, base)
    return f"{split} {name}".strip()


@styled
def save(fig, out_stem: Path, formats=FORMATS) -> list[Path]:
    """Write a figure as every format asked for (atomically, no timestamps); returns the paths."""
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in formats:
        path = out_stem.with_name(f"{out_stem.name}.{ext}")
        meta = {"CreationDate": None} if ext == "pdf" else ({"Software": None} if ext == "png" else None)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, metadata=meta)
        written.append(path)
    plt.close(fig)
    return written
