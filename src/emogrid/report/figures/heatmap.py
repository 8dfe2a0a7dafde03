"""The study heatmap: the report metric (%) by model x (labels k, samples n), one panel per
method, with the interval under each mean, seeds-short (†) and did-not-learn (✗) marks, and
the cells without a finished seed hatched and listed under the figure.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from emogrid.report.figures.select import metric_rows, ordered
from emogrid.report.figures.style import HEATMAP_CMAP, MISSING_COLOR, footnote, metric_name, placeholder, styled
from emogrid.study.cell_id import arm_label, short_variant

AXES = ["dataset", "model", "method", "variant", "labels", "samples"]
NOTES = {
    "intervals": "[low–high]: 95% interval (Wilson / BCa per cell; over seeds: seed spread + example noise)",
    "no_learn": "✗ did not learn: Cohen's kappa's interval includes 0 in every seed",
    "few_seeds": "† fewer seeds than the rest of the grid (a seed failed or is pending)",
}


@styled
def study_heatmap(data: dict[str, Any], metric: str = "test_accuracy"):
    """Accuracy by model x (k, n), one panel per method. Returns (fig, info).

    info: {"annotated": number of cells with a printed value, "missing": [descriptions],
    "panels": [method names]}.
    """
    from emogrid.report.paper_tables.problems import hatched_positions
    from emogrid.report.paper_tables.study import with_learn_flags

    summary, cells, levels = data["summary"], data["cells"], data["levels"]
    sub = metric_rows(with_learn_flags(summary, metric.partition("_")[0]), metric)
    frame = pd.concat([sub[AXES], cells[cells["status"].isin(["failed", "pending"])][AXES]]).dropna(
        subset=["labels", "samples"])
    if frame.empty:
        return placeholder("Study heatmap", "no finished cells yet"), {"annotated": 0, "missing": [], "panels": []}
    frame["labels"], frame["samples"] = frame["labels"].astype(int), frame["samples"].astype(int)
    multi_ds = frame["dataset"].nunique() > 1
    ks = ordered(frame["labels"], levels, "labels")
    cols = [(k, n) for k in sorted(ks) for n in sorted(ordered(frame["samples"], levels, "samples"))]
    values = {(r.dataset, r.model, r.method, r.variant, int(r.labels), int(r.samples)): r
              for r in sub.itertuples(index=False)}
    failed_keys = cells[cells["status"] == "failed"]
    failed_set = {(r.dataset, r.model, r.method, r.variant, int(r.labels), int(r.samples))
                  for r in failed_keys.itertuples(index=False) if not pd.isna(r.labels)}
    # positions where the study has no cell at all (problems.md lists every hatched position with why)
    no_cell = {tuple(p[a] for a in ("dataset", "model", "method", "variant", "labels", "samples"))
               for p in hatched_positions(cells) if p["why"] == "no cell"}
    n_mode = int(sub["n"].mode().max()) if len(sub) else 0
    cmap, norm = _colour_scale(sub["mean"].dropna())
    panels = _panels(frame, levels)
    with_ci = "ci95_boot_low" in sub and sub["ci95_boot_low"].notna().any()
    fig, axes = _figure(panels, cols, with_ci, multi_ds)
    nrows, ncols = axes.shape
    annotated, missing, marks = 0, [], set()
    for idx, ax in enumerate(axes.flat):
        if idx >= len(panels):
            ax.axis("off")
            continue
        method, rows = panels[idx]
        grid_values, grid_labels = _grid(method, rows, cols, values, n_mode, marks)
        # seaborn draws the finished cells with their values; missing ones are hatched below
        before = len(ax.texts)
        sns.heatmap(grid_values, ax=ax, mask=np.isnan(grid_values), cmap=cmap, vmin=norm.vmin, vmax=norm.vmax,
                    annot=grid_labels, fmt="", annot_kws={"fontsize": 7.5}, cbar=False,
                    linewidths=1, linecolor="white", square=False)
        for text in ax.texts[before:]:
            text.set_gid("value")
            annotated += 1
        for desc in _hatch_missing(ax, method, rows, cols, grid_values, failed_set, no_cell, multi_ds):
            if desc not in missing:
                missing.append(desc)
        _label_axes(ax, method, rows, cols, multi_ds)
        if idx // ncols == nrows - 1 or idx + ncols >= len(panels):
            ax.set_xlabel("training samples n")
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    cbar = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02, fraction=0.04)
    cbar.set_label(f"{metric_name(metric)} (%)")
    cbar.outline.set_visible(False)
    fig.suptitle(f"{metric_name(metric)} (%) by model and subset, mean over seeds "
                 f"(n = {n_mode} seed{'s' if n_mode != 1 else ''})", fontsize=10, fontweight="bold")
    notes = [text for mark, text in NOTES.items() if mark in marks]
    if missing:
        notes.append(f"Hatched: no finished seed ({len(missing)} cells; the study's tables/problems.md lists each "
                     "with why):")
        notes += ["  " + m for m in missing]
    footnote(fig, notes, max_lines=10, more_in="the study's tables/problems.md, 'Hatched in the study heatmap'")
    return fig, {"annotated": annotated, "missing": missing, "panels": [p[0] for p in panels]}


def _colour_scale(finite: pd.Series):
    """(colormap, norm) over the finished means in %; at least one point wide."""
    vmin = 100 * float(finite.min()) if len(finite) else 0.0
    vmax = 100 * float(finite.max()) if len(finite) else 100.0
    if vmax - vmin < 1:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    return plt.get_cmap(HEATMAP_CMAP), matplotlib.colors.Normalize(vmin=vmin, vmax=vmax)


def _panels(frame: pd.DataFrame, levels: dict) -> list[tuple[str, list[tuple]]]:
    """[(method, [(dataset, model, variant) rows])] in the study's order; methods without rows left out."""
    methods = ordered(frame["method"], levels, "method")
    models = ordered(frame["model"], levels, "model")
    datasets = ordered(frame["dataset"], levels, "dataset")
    panels = []
    for method in methods:
        mframe = frame[frame["method"] == method]
        rows = []
        for ds in datasets:
            for model in models:
                for variant in ordered(mframe.loc[(mframe["model"] == model) & (mframe["dataset"] == ds),
                                                  "variant"], levels, "variant"):
                    rows.append((ds, model, variant))
        if rows:
            panels.append((method, rows))
    return panels


def _figure(panels: list, cols: list[tuple[int, int]], with_ci: bool, multi_ds: bool):
    """The figure and its (rows, columns) of axes, sized to the cells and the row labels."""
    # keep panels whose layout is the same (same row count) side by side, else stack
    same = len({len(r) for _, r in panels}) == 1
    cell_w, cell_h = (0.72, 0.5) if with_ci else (0.62, 0.36)
    longest = max((len((f"{ds} · " if multi_ds else "") + model) if not variant else
                   max(len((f"{ds} · " if multi_ds else "") + model), len(short_variant(variant)))
                   for _, rows in panels for ds, model, variant in rows), default=10)
    row_label_w = max(1.2, 0.075 * longest + 0.3)
    panel_w = len(cols) * cell_w + row_label_w
    # side by side while the figure stays printable (about a page width), else stacked
    ncols = max(1, min(len(panels), 3, int(16 // panel_w))) if same else 1
    nrows = math.ceil(len(panels) / ncols)
    heights = [max(len(r) for _, r in panels[i * ncols:(i + 1) * ncols]) for i in range(nrows)]
    fig_w = ncols * (len(cols) * cell_w + row_label_w) + 1.0
    fig_h = sum(h * cell_h + 1.1 for h in heights) + 0.3
    return plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False, layout="constrained",
                        gridspec_kw={"height_ratios": [h + 3 for h in heights]})


def _grid(method: str, rows: list[tuple], cols: list[tuple[int, int]], values: dict, n_mode: int,
          marks: set) -> tuple[np.ndarray, np.ndarray]:
    """(values in %, printed labels) of one panel; adds to `marks` the notes its labels need."""
    grid_values = np.full((len(rows), len(cols)), np.nan)
    grid_labels = np.full((len(rows), len(cols)), "", dtype=object)
    for i, (ds, model, variant) in enumerate(rows):
        for j, (k, n) in enumerate(cols):
            rec = values.get((ds, model, method, variant, k, n))
            if rec is not None and not pd.isna(rec.mean):
                grid_values[i, j] = 100 * rec.mean
                label = f"{100 * rec.mean:.1f}"
                if int(rec.n) < n_mode:
                    label += "†"
                    marks.add("few_seeds")
                if bool(getattr(rec, "did_not_learn_flag", False)):
                    label += "✗"
                    marks.add("no_learn")
                low, high = getattr(rec, "ci95_boot_low", np.nan), getattr(rec, "ci95_boot_high", np.nan)
                if not pd.isna(low):  # the interval under the mean: colours alone exaggerate
                    label += f"\n[{100 * low:.0f}–{100 * high:.0f}]"
                    marks.add("intervals")
                grid_labels[i, j] = label
    return grid_values, grid_labels


def _hatch_missing(ax, method: str, rows: list[tuple], cols: list[tuple[int, int]], grid_values: np.ndarray,
                   failed_set: set, no_cell: set, multi_ds: bool) -> list[str]:
    """Hatch the cells without a finished seed ('failed' where one failed); returns their descriptions."""
    descs = []
    for i, (ds, model, variant) in enumerate(rows):
        for j, (k, n) in enumerate(cols):
            key = (ds, model, method, variant, k, n)
            if np.isnan(grid_values[i, j]):
                ax.add_patch(Rectangle((j, i), 1, 1, facecolor=MISSING_COLOR, edgecolor="white",
                                       lw=1, hatch="////"))
                if key in failed_set:
                    ax.text(j + 0.5, i + 0.5, "failed", ha="center", va="center", fontsize=6.5,
                            color="#404040", gid="failed")
                name = f"{ds}/" if multi_ds else ""
                descs.append(f"{name}{model} · {arm_label(method, variant, short=True)} · k={k}, n={n}"
                             + (" (failed)" if key in failed_set else " (no cell in the study)" if key in no_cell
                                else ""))
    return descs


def _label_axes(ax, method: str, rows: list[tuple], cols: list[tuple[int, int]], multi_ds: bool) -> None:
    """Ticks (n below, label-count groups above, rows on the left) and the method as title."""
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(cols))], [f"{n}" for _, n in cols])
    ylabels = [(f"{ds} · " if multi_ds else "") + model + (f"\n{short_variant(variant)}" if variant else "")
               for ds, model, variant in rows]
    ax.set_yticks([i + 0.5 for i in range(len(rows))], ylabels)
    ax.tick_params(length=0)
    for side in ("left", "bottom", "top", "right"):
        ax.spines[side].set_visible(False)
    # label-count groups above the columns, separated by white gaps
    centers, names = [], []
    for k in dict.fromkeys(k for k, _ in cols):
        js = [j for j, c in enumerate(cols) if c[0] == k]
        centers.append((js[0] + js[-1] + 1) / 2)
        names.append(f"k = {k} labels")
        if js[0] > 0:
            ax.axvline(js[0], color="white", lw=4)
    top = ax.secondary_xaxis("top")
    top.set_xticks(centers, names)
    top.tick_params(length=0)
    top.spines["top"].set_visible(False)
    ax.set_title(method)
