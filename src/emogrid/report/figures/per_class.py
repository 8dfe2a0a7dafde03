"""Per-class figures: test F1 per class for every model / method (one panel per label count,
at its largest sample size), and the row-normalised confusion matrix of one cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from emogrid.errors import EmogridError
from emogrid.report.figures.select import arms_of, ordered
from emogrid.report.figures.style import HEATMAP_CMAP, MISSING_COLOR, STYLE, placeholder, styled, text_color
from emogrid.study.cell_id import arm_label

MAX_COLUMNS = 40  # per-class F1 columns (model x method) drawn; the rest are named


@styled
def per_class_f1(data: dict[str, Any]):
    """Test F1 per class (rows) x model / arm (columns), one panel per (dataset, k)."""
    pc, levels = data["per_class"], data["levels"]
    if pc.empty or "f1" not in pc:
        return placeholder("Per-class F1", "no per-class results yet")
    pc = pc[pc["split"] == "test"].copy()
    pc["labels"], pc["samples"] = pc["labels"].astype(int), pc["samples"].astype(int)
    largest = pc.groupby(["dataset", "labels"])["samples"].transform("max")
    pc = pc[pc["samples"] == largest]
    panels = [(ds, k) for ds in ordered(pc["dataset"], levels, "dataset")
              for k in sorted(pc.loc[pc["dataset"] == ds, "labels"].unique())]
    models = ordered(pc["model"], levels, "model")
    heights = [pc[(pc["dataset"] == ds) & (pc["labels"] == k)]["label"].nunique() for ds, k in panels]
    arms_all = [(m, a) for m in models for a in arms_of(pc[pc["model"] == m], levels)]
    dropped = arms_all[MAX_COLUMNS:]
    arms_all = arms_all[:MAX_COLUMNS]
    width = 1.8 + 0.55 * len(arms_all)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(panels), 1, figsize=(max(width, 4.0), sum(0.32 * h + 0.5 for h in heights) + 1.6),
                                 squeeze=False, layout="constrained",
                                 gridspec_kw={"height_ratios": [h + 1 for h in heights]})
        cmap = plt.get_cmap(HEATMAP_CMAP)
        norm = matplotlib.colors.Normalize(vmin=0, vmax=100)
        for p_i, (ax, (ds, k)) in enumerate(zip(axes[:, 0], panels)):
            part = pc[(pc["dataset"] == ds) & (pc["labels"] == k)]
            n = int(part["samples"].iloc[0])
            classes = list(dict.fromkeys(part["label"]))
            means = part.groupby(["label", "model", "method", "variant"])["f1"].mean()
            for i, cls in enumerate(classes):
                for j, (model, (method, variant)) in enumerate(arms_all):
                    key = (cls, model, method, variant)
                    if key in means.index and not pd.isna(means[key]):
                        v = 100 * means[key]
                        colour = cmap(norm(v))
                        ax.add_patch(Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", lw=1))
                        ax.text(j + 0.5, i + 0.5, f"{v:.0f}", ha="center", va="center", fontsize=7,
                                color=text_color(colour))
                    else:
                        ax.add_patch(Rectangle((j, i), 1, 1, facecolor=MISSING_COLOR, edgecolor="white",
                                               lw=1, hatch="////"))
            ax.set_xlim(0, len(arms_all))
            ax.set_ylim(len(classes), 0)
            ax.set_yticks([i + 0.5 for i in range(len(classes))], classes)
            last = p_i == len(panels) - 1
            ax.set_xticks([j + 0.5 for j in range(len(arms_all))],
                          [f"{m} · {arm_label(*a, short=True)}" for m, a in arms_all] if last else [],
                          rotation=45 if last else 0, ha="right", rotation_mode="anchor")
            ax.tick_params(length=0)
            for side in ax.spines.values():
                side.set_visible(False)
            ax.set_title(f"k = {k} labels, n = {n}" + (f" ({ds})" if len(set(d for d, _ in panels)) > 1 else ""))
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        cbar = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02, fraction=0.05)
        cbar.set_label("test F1 (%), mean over seeds")
        cbar.outline.set_visible(False)
        if dropped:
            fig.text(0.01, -0.01, f"{len(dropped)} more model / method columns not drawn "
                     "(see results/tables/per_class_f1.csv)", fontsize=7, color="#404040", ha="left", va="top")
    return fig


@styled
def confusion_matrix(runs_dir: str | Path, cell_id: str, split: str = "test"):
    """The row-normalised confusion matrix of one finished cell, read from its metrics.json."""
    path = Path(runs_dir) / cell_id / "metrics.json"
    if not path.is_file():
        raise EmogridError(f"no metrics.json for cell {cell_id} under {runs_dir}",
                           hint="`emogrid status` lists the finished cells")
    from emogrid.training import cell_files as results

    checked = results.read(path, "metrics", cell_id=cell_id)
    if not checked.valid:
        raise EmogridError(f"invalid result file {checked.reason}",
                           hint="the next `snakemake` run trains this cell again")
    obj = checked.data
    metrics = obj.get(split) or {}
    cm = metrics.get("confusion_matrix")
    labels = metrics.get("labels")
    if not cm:
        raise EmogridError(f"{path}: no {split} confusion matrix (multi-label cells have none)")
    cm = np.asarray(cm, dtype=float)
    labels = labels or [str(i) for i in range(len(cm))]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = 1.2 + 0.5 * len(labels)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        im = ax.imshow(100 * frac, cmap=HEATMAP_CMAP, vmin=0, vmax=100)
        cmap, norm = im.cmap, im.norm
        for i in range(len(labels)):
            for j in range(len(labels)):
                colour = cmap(norm(100 * frac[i, j]))
                ax.text(j, i, f"{int(cm[i, j])}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                        fontsize=6.5, color=text_color(colour))
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{cell_id}\naccuracy {100 * metrics.get('accuracy', float('nan')):.1f}% ({split})",
                     fontsize=8)
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cbar.set_label("share of gold row (%)")
    return fig
