"""Study figures from the aggregated tables (`emogrid figures`), PNG + PDF.

Reads ``cells.csv``, ``summary.csv``, ``per_class.csv`` and ``levels.json`` written by
`emogrid aggregate` (never the runs, except for confusion matrices asked for by cell id) and
writes, under the figures directory (fixed names, so Snakemake can declare them):

- ``study_heatmap``: test accuracy (%) by model x (labels k, samples n), one panel per
  method; cells without a finished seed are hatched and listed under the figure;
- ``accuracy_vs_samples``: accuracy vs training samples, one line per model, one panel per
  label count (rows: methods), 95% t confidence bands over seeds;
- ``tradeoffs``: accuracy vs trainable parameters, train time and peak memory per model x
  method, at the (k, n) setting that most methods finished;
- ``per_class_f1``: test F1 per class (rows) for every model / method (columns), one panel
  per label count, at its largest sample size;
- ``confusion/<cell>``: row-normalised confusion matrix of one cell (``--confusion``).

Style: Agg backend, Okabe-Ito palette and viridis (colour-blind safe, legible in greyscale),
values printed on heatmaps, same model / method order everywhere (levels.json = config
order). Everything style-related lives in this module, which the `figures` rule declares as
an input: editing it reruns the figures, never aggregation or training.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from emogrid import outputs  # noqa: E402
from emogrid.atomic import atomic_path  # noqa: E402
from emogrid.cell_id import arm_label, short_variant  # noqa: E402
from emogrid.errors import EmogridError  # noqa: E402

FIGURES = outputs.FIGURE_NAMES
FORMATS = ("png", "pdf")
# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
LINESTYLES = ["-", "--", "-.", ":"]
HEATMAP_CMAP = "viridis"
MAX_PANEL_ROWS = 12  # accuracy-vs-samples rows (methods x variants) drawn; the rest are named
MAX_COLUMNS = 40  # per-class F1 columns (model x method) drawn; the rest are named
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


def _styled(func):
    """Draw inside the house style (rcParams apply at creation and at save time)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


# ----------------------------------------------------------------------------- data


def load_tables(tables_dir: str | Path) -> dict[str, Any]:
    tables_dir = Path(tables_dir)
    needed = ["cells.csv", "summary.csv"]
    missing = [n for n in needed if not (tables_dir / n).is_file()]
    if missing:
        raise EmogridError(f"{tables_dir}: missing {', '.join(missing)}",
                           hint="run `emogrid aggregate` first (it writes the tables the figures read)")
    cells = pd.read_csv(tables_dir / "cells.csv", keep_default_na=True, low_memory=False)
    summary = pd.read_csv(tables_dir / "summary.csv")
    pc_path = tables_dir / "per_class.csv"
    per_class = pd.read_csv(pc_path) if pc_path.is_file() else pd.DataFrame()
    lv_path = tables_dir / "levels.json"
    levels = json.loads(lv_path.read_text()) if lv_path.is_file() else {}
    for frame in (cells, summary, per_class):
        if "variant" in frame:
            frame["variant"] = frame["variant"].astype("string").fillna("").astype(str)
    return {"cells": cells, "summary": summary, "per_class": per_class, "levels": levels}


def _order(values, levels: dict, key: str) -> list:
    ref = levels.get(key, [])
    rank = {v: i for i, v in enumerate(ref)}
    vals = list(dict.fromkeys(v for v in values if not (isinstance(v, float) and math.isnan(v))))
    return sorted(vals, key=lambda v: (rank.get(v, len(rank)), str(v)))


def _arms(frame: pd.DataFrame, levels: dict) -> list[tuple[str, str]]:
    methods = _order(frame["method"], levels, "method")
    out = []
    for m in methods:
        out += [(m, v) for v in _order(frame.loc[frame["method"] == m, "variant"], levels, "variant")]
    return out


def _palette(models: list) -> dict:
    return {m: OKABE_ITO[i % len(OKABE_ITO)] for i, m in enumerate(models)}


def _metric(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    sub = summary[summary["metric"] == metric].copy()
    for col in ("labels", "samples"):
        if col in sub:
            sub[col] = sub[col].astype(int)
    return sub


@_styled
def _placeholder(title: str, message: str):
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def _footnote(fig, lines: list[str], max_lines: int = 8) -> None:
    if not lines:
        return
    shown = lines[:max_lines]
    if len(lines) > max_lines:
        shown.append(f"… and {len(lines) - max_lines} more (see results/tables/problems.md)")
    fig.text(0.01, -0.01, "\n".join(shown), ha="left", va="top", fontsize=7, color="#404040",
             transform=fig.transFigure)


# ----------------------------------------------------------------------------- heatmap


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


@_styled
def study_heatmap(data: dict[str, Any], metric: str = "test_accuracy"):
    """Accuracy by model x (k, n), one panel per method. Returns (fig, info).

    info: {"annotated": number of cells with a printed value, "missing": [descriptions],
    "panels": [method names]}.
    """
    from emogrid.tables import _with_learn_flags

    summary, cells, levels = data["summary"], data["cells"], data["levels"]
    sub = _metric(_with_learn_flags(summary, metric.partition("_")[0]), metric)
    frame = pd.concat([sub[["dataset", "model", "method", "variant", "labels", "samples"]],
                       cells[cells["status"].isin(["failed", "pending"])][
                           ["dataset", "model", "method", "variant", "labels", "samples"]]]).dropna(
        subset=["labels", "samples"])
    if frame.empty:
        return _placeholder("Study heatmap", "no finished cells yet"), {"annotated": 0, "missing": [], "panels": []}
    frame["labels"], frame["samples"] = frame["labels"].astype(int), frame["samples"].astype(int)
    multi_ds = frame["dataset"].nunique() > 1
    ks = _order(frame["labels"], levels, "labels")
    cols = [(k, n) for k in sorted(ks) for n in sorted(_order(frame["samples"], levels, "samples"))]
    methods = _order(frame["method"], levels, "method")
    models = _order(frame["model"], levels, "model")
    datasets = _order(frame["dataset"], levels, "dataset")
    values = {(r.dataset, r.model, r.method, r.variant, int(r.labels), int(r.samples)): r
              for r in sub.itertuples(index=False)}
    failed_keys = cells[cells["status"] == "failed"]
    failed_set = {(r.dataset, r.model, r.method, r.variant, int(r.labels), int(r.samples))
                  for r in failed_keys.itertuples(index=False) if not pd.isna(r.labels)}
    n_mode = int(sub["n"].mode().max()) if len(sub) else 0
    finite = sub["mean"].dropna()
    vmin = 100 * float(finite.min()) if len(finite) else 0.0
    vmax = 100 * float(finite.max()) if len(finite) else 100.0
    if vmax - vmin < 1:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    cmap = plt.get_cmap(HEATMAP_CMAP)
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax)

    panels = []
    for method in methods:
        mframe = frame[frame["method"] == method]
        rows = []
        for ds in datasets:
            for model in models:
                for variant in _order(mframe.loc[(mframe["model"] == model) & (mframe["dataset"] == ds),
                                                 "variant"], levels, "variant"):
                    rows.append((ds, model, variant))
        if rows:
            panels.append((method, rows))
    # keep panels whose layout is the same (same row count) side by side, else stack
    same = len({len(r) for _, r in panels}) == 1
    with_ci = "ci95_boot_low" in sub and sub["ci95_boot_low"].notna().any()
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
    fig, axes = plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [h + 3 for h in heights]})
    annotated, missing, seen_missing = 0, [], set()
    few_seeds = no_learn = intervals = False
    for idx, ax in enumerate(axes.flat):
        if idx >= len(panels):
            ax.axis("off")
            continue
        method, rows = panels[idx]
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
                        few_seeds = True
                    if bool(getattr(rec, "did_not_learn_flag", False)):
                        label += "✗"
                        no_learn = True
                    low, high = getattr(rec, "ci95_boot_low", np.nan), getattr(rec, "ci95_boot_high", np.nan)
                    if not pd.isna(low):  # the interval under the mean: colours alone exaggerate
                        label += f"\n[{100 * low:.0f}–{100 * high:.0f}]"
                        intervals = True
                    grid_labels[i, j] = label
        # seaborn draws the finished cells with their values; missing ones are hatched below
        before = len(ax.texts)
        sns.heatmap(grid_values, ax=ax, mask=np.isnan(grid_values), cmap=cmap, vmin=vmin, vmax=vmax,
                    annot=grid_labels, fmt="", annot_kws={"fontsize": 7.5}, cbar=False,
                    linewidths=1, linecolor="white", square=False)
        for text in ax.texts[before:]:
            text.set_gid("value")
            annotated += 1
        for i, (ds, model, variant) in enumerate(rows):
            for j, (k, n) in enumerate(cols):
                key = (ds, model, method, variant, k, n)
                if not np.isnan(grid_values[i, j]):
                    pass
                else:
                    ax.add_patch(Rectangle((j, i), 1, 1, facecolor=MISSING_COLOR, edgecolor="white",
                                           lw=1, hatch="////"))
                    if key in failed_set:
                        ax.text(j + 0.5, i + 0.5, "failed", ha="center", va="center", fontsize=6.5,
                                color="#404040", gid="failed")
                    name = f"{ds}/" if multi_ds else ""
                    desc = (f"{name}{model} · {arm_label(method, variant, short=True)} · k={k}, n={n}"
                            + (" (failed)" if key in failed_set else ""))
                    if desc not in seen_missing:
                        seen_missing.add(desc)
                        missing.append(desc)
        ax.set_xlim(0, len(cols))
        ax.set_ylim(len(rows), 0)
        ax.set_xticks([j + 0.5 for j in range(len(cols))], [f"{n}" for _, n in cols])
        ylabels = [(f"{ds} · " if multi_ds else "") + model + (f"\n{short_variant(variant)}" if variant else "")
                   for ds, model, variant in rows]
        ax.set_yticks([i + 0.5 for i in range(len(rows))], ylabels)
        ax.tick_params(length=0)
        for side in ("left", "bottom", "top", "right"):
            ax.spines[side].set_visible(False)
        if idx // ncols == nrows - 1 or idx + ncols >= len(panels):
            ax.set_xlabel("training samples n")
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
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    cbar = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02, fraction=0.04)
    cbar.set_label(f"{_metric_name(metric)} (%)")
    cbar.outline.set_visible(False)
    fig.suptitle(f"{_metric_name(metric)} (%) by model and subset, mean over seeds "
                 f"(n = {n_mode} seed{'s' if n_mode != 1 else ''})", fontsize=10, fontweight="bold")
    notes = []
    if intervals:
        notes.append("[low–high]: 95% bootstrap interval over test examples (seeds first, when n > 1)")
    if no_learn:
        notes.append("✗ did not learn: the interval is not above the majority-class baseline")
    if few_seeds:
        notes.append("† fewer seeds than the rest of the grid (a seed failed or is pending)")
    if missing:
        notes.append(f"Hatched: no finished seed ({len(missing)} cells):")
        notes += ["  " + m for m in missing]
    _footnote(fig, notes, max_lines=10)
    return fig, {"annotated": annotated, "missing": missing, "panels": [p[0] for p in panels]}


def _metric_name(metric: str) -> str:
    base = metric.split("_", 1)[1] if metric.startswith(("test_", "val_")) else metric
    split = "Test" if metric.startswith("test_") else ("Validation" if metric.startswith("val_") else "")
    name = {"accuracy": "accuracy", "f1_macro": "macro-F1", "f1_micro": "micro-F1"}.get(base, base)
    return f"{split} {name}".strip()


# ----------------------------------------------------------------------------- lines


@_styled
def accuracy_vs_samples(data: dict[str, Any], metric: str = "test_accuracy"):
    summary, levels = data["summary"], data["levels"]
    sub = _metric(summary, metric)
    if sub.empty:
        return _placeholder("Accuracy vs samples", "no finished cells yet")
    models = _order(sub["model"], levels, "model")
    palette = _palette(models)
    ks = sorted(_order(sub["labels"], levels, "labels"))
    datasets = _order(sub["dataset"], levels, "dataset")
    row_keys = [(ds, arm) for ds in datasets for arm in _arms(sub[sub["dataset"] == ds], levels)]
    dropped = row_keys[MAX_PANEL_ROWS:]
    row_keys = row_keys[:MAX_PANEL_ROWS]
    samples = sorted(sub["samples"].unique())
    log_x = len(samples) > 1 and samples[-1] / max(samples[0], 1) > 4
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(row_keys), len(ks), figsize=(2.6 * len(ks) + 1.6, 2.0 * len(row_keys) + 0.8),
                                 squeeze=False, sharex=True, sharey=True, layout="constrained")
        for i, (ds, (method, variant)) in enumerate(row_keys):
            for j, k in enumerate(ks):
                ax = axes[i][j]
                ax.grid(True, axis="y")
                part = sub[(sub["dataset"] == ds) & (sub["method"] == method) & (sub["variant"] == variant)
                           & (sub["labels"] == k)]
                for mi, model in enumerate(models):
                    line = part[part["model"] == model].sort_values("samples")
                    if line.empty:
                        continue
                    x, y = line["samples"].to_numpy(), 100 * line["mean"].to_numpy()
                    sns.lineplot(x=x, y=y, ax=ax, color=palette[model], marker=MARKERS[mi % len(MARKERS)],
                                 linestyle=LINESTYLES[mi % len(LINESTYLES)], label=model, legend=False,
                                 errorbar=None)
                    low, high = _band(line)
                    ok = ~np.isnan(low)
                    if ok.sum() > 1:
                        ax.fill_between(x[ok], low[ok], high[ok], color=palette[model], alpha=0.18, linewidth=0)
                    elif ok.any():  # a lone point: its interval as an error bar
                        ax.errorbar(x[ok], y[ok], yerr=[(y - low)[ok], (high - y)[ok]], color=palette[model],
                                    capsize=3, linestyle="none", marker=MARKERS[mi % len(MARKERS)])
                if log_x:
                    ax.set_xscale("log")
                ax.set_xticks(samples, [str(s) for s in samples])
                ax.minorticks_off()
                if i == 0:
                    ax.set_title(f"k = {k} labels")
                if j == 0:
                    ds_txt = f"{ds}\n" if len(datasets) > 1 else ""
                    ax.set_ylabel(f"{ds_txt}{arm_label(method, variant, short=True)}\n{_metric_name(metric)} (%)")
                if i == len(row_keys) - 1:
                    ax.set_xlabel("training samples n")
        handles = [plt.Line2D([], [], color=palette[m], marker=MARKERS[i % len(MARKERS)],
                              linestyle=LINESTYLES[i % len(LINESTYLES)], label=m)
                   for i, m in enumerate(models)]
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(models), 5), title="model")
        fig.suptitle(f"{_metric_name(metric)} (%) vs training samples", fontsize=10, fontweight="bold")
        boot = "ci95_boot_low" in sub and sub["ci95_boot_low"].notna().any()
        note = ("Lines: mean over seeds; bands: 95% " + ("percentile bootstrap (seeds, then test examples)."
                                                          if boot else "t confidence interval of the mean over seeds."))
        if dropped:
            note += (
                f"\n{len(dropped)} more method settings not drawn (see results/tables/summary.csv): "
                + ", ".join(arm_label(*a, short=True) for _, a in dropped[:6])
                + (" …" if len(dropped) > 6 else "")
            )
        fig.text(0.01, -0.01, note, fontsize=7, color="#404040", ha="left", va="top")
    return fig


def _band(line: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) in % of a line: the bootstrap interval where there is one, else mean ± t."""
    y = 100 * line["mean"].to_numpy(dtype=float)
    low = np.full_like(y, np.nan)
    high = np.full_like(y, np.nan)
    if "ci95_boot_low" in line:
        low = 100 * line["ci95_boot_low"].to_numpy(dtype=float)
        high = 100 * line["ci95_boot_high"].to_numpy(dtype=float)
    half = 100 * line["ci95_t_half"].to_numpy(dtype=float) if "ci95_t_half" in line else np.full_like(y, np.nan)
    t_only = np.isnan(low) & ~np.isnan(half)
    low[t_only], high[t_only] = (y - half)[t_only], (y + half)[t_only]
    return low, high


# ----------------------------------------------------------------------------- trade-offs


TRADEOFF_AXES = [("trainable_params", "trainable parameters", True),
                 ("train_seconds", "train time (s)", True),
                 ("peak_memory_mb", "peak memory (MB)", False)]


def choose_setting(sub: pd.DataFrame) -> tuple | None:
    """(dataset, k, n) where the most model x method arms finished; ties -> larger n, then k."""
    if sub.empty:
        return None
    counts = sub.groupby(["dataset", "labels", "samples"]).size().reset_index(name="arms")
    best = counts.sort_values(["arms", "samples", "labels"], ascending=False).iloc[0]
    return best["dataset"], int(best["labels"]), int(best["samples"])


@_styled
def tradeoffs(data: dict[str, Any], metric: str = "test_accuracy"):
    summary, levels = data["summary"], data["levels"]
    sub = _metric(summary, metric)
    setting = choose_setting(sub)
    present = [a for a in TRADEOFF_AXES if (summary["metric"] == a[0]).any()]
    if setting is None or not present:
        return _placeholder("Method trade-offs", "no finished cells with efficiency numbers yet")
    ds, k, n = setting
    def sel(frame):
        return frame[(frame["dataset"] == ds) & (frame["labels"] == k) & (frame["samples"] == n)]

    acc = sel(sub)
    models = _order(acc["model"], levels, "model")
    palette = _palette(models)
    arms = _arms(acc, levels)
    marker_of = {a: MARKERS[i % len(MARKERS)] for i, a in enumerate(arms)}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(present), figsize=(3.1 * len(present) + 1.8, 3.0),
                                 squeeze=False, sharey=True)
        for j, (col, label, log) in enumerate(present):
            ax = axes[0][j]
            ax.grid(True)
            xs = sel(_metric(summary, col)).set_index(["model", "method", "variant"])["mean"]
            for rec in acc.itertuples(index=False):
                key = (rec.model, rec.method, rec.variant)
                if key not in xs.index or pd.isna(xs[key]):
                    continue
                yerr = None if pd.isna(rec.ci95_t_half) else 100 * rec.ci95_t_half
                ax.errorbar(xs[key], 100 * rec.mean, yerr=yerr, color=palette[rec.model],
                            marker=marker_of[(rec.method, rec.variant)], markersize=6, capsize=1.5, elinewidth=0.8,
                            linestyle="none", markeredgecolor="white", markeredgewidth=0.5)
            finite = [v for v in xs.to_numpy(dtype=float) if v > 0]
            if log and finite and max(finite) / min(finite) > 20:
                ax.set_xscale("log")
            ax.set_xlabel(label)
            if j == 0:
                ax.set_ylabel(f"{_metric_name(metric)} (%)")
        model_handles = [plt.Line2D([], [], color=palette[m], marker="o", linestyle="none", label=m)
                         for m in models]
        arm_handles = [plt.Line2D([], [], color="#404040", marker=marker_of[a], linestyle="none",
                                  label=arm_label(*a, short=True)) for a in arms]
        leg1 = fig.legend(handles=model_handles, title="model", loc="upper left",
                          bbox_to_anchor=(1.0, 0.95))
        fig.add_artist(leg1)
        fig.legend(handles=arm_handles, title="method", loc="upper left",
                   bbox_to_anchor=(1.0, 0.95 - 0.07 * (len(models) + 2)))
        fig.suptitle(f"Method trade-offs at k = {k} labels, n = {n} samples"
                     + (f" ({ds})" if summary['dataset'].nunique() > 1 else ""), fontweight="bold")
        fig.tight_layout()
        fig.text(0.01, -0.01, "Points: mean over seeds; vertical bars: 95% t confidence interval.",
                 fontsize=7, color="#404040", ha="left", va="top")
    return fig


# ----------------------------------------------------------------------------- per class


@_styled
def per_class_f1(data: dict[str, Any]):
    pc, levels = data["per_class"], data["levels"]
    if pc.empty or "f1" not in pc:
        return _placeholder("Per-class F1", "no per-class results yet")
    pc = pc[pc["split"] == "test"].copy()
    pc["labels"], pc["samples"] = pc["labels"].astype(int), pc["samples"].astype(int)
    largest = pc.groupby(["dataset", "labels"])["samples"].transform("max")
    pc = pc[pc["samples"] == largest]
    panels = [(ds, k) for ds in _order(pc["dataset"], levels, "dataset")
              for k in sorted(pc.loc[pc["dataset"] == ds, "labels"].unique())]
    models = _order(pc["model"], levels, "model")
    heights = [pc[(pc["dataset"] == ds) & (pc["labels"] == k)]["label"].nunique() for ds, k in panels]
    arms_all = [(m, a) for m in models for a in _arms(pc[pc["model"] == m], levels)]
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
                                color=_text_color(colour))
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


# ----------------------------------------------------------------------------- confusion


@_styled
def confusion_matrix(runs_dir: str | Path, cell_id: str, split: str = "test"):
    path = Path(runs_dir) / cell_id / "metrics.json"
    if not path.is_file():
        raise EmogridError(f"no metrics.json for cell {cell_id} under {runs_dir}",
                           hint="`emogrid status` lists the finished cells")
    from emogrid import results

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
                        fontsize=6.5, color=_text_color(colour))
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{cell_id}\naccuracy {100 * metrics.get('accuracy', float('nan')):.1f}% ({split})",
                     fontsize=8)
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cbar.set_label("share of gold row (%)")
    return fig


# ----------------------------------------------------------------------------- writing


@_styled
def save(fig, out_stem: Path, formats=FORMATS) -> list[Path]:
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


@_styled
def replication_figure(path: Path):
    """Published (x) vs measured (y, mean over seeds with its 95% interval), in %; y = x dashed."""
    frame = pd.read_csv(path) if Path(path).is_file() else pd.DataFrame()
    if frame.empty or "status" not in frame or not (frame["status"] == "measured").any():
        return _placeholder("Replication", "no published numbers to compare (set report.reference)"
                            if frame.empty else "none of the published cells has been measured yet")
    got = frame[frame["status"] == "measured"].reset_index(drop=True)
    models = list(dict.fromkeys(got["model"]))
    palette = _palette(models)
    fig, ax = plt.subplots(figsize=(4.8, 4.4), layout="constrained")
    lo = float(np.nanmin([got["value"].min(), got["low"].min(), got["measured"].min()]))
    hi = float(np.nanmax([got["value"].max(), got["high"].max(), got["measured"].max()]))
    pad = max(2.0, 0.05 * (hi - lo))
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#8c8c8c", linestyle="--", linewidth=1,
            label="measured = published")
    for i, model in enumerate(models):
        part = got[got["model"] == model]
        y = part["measured"].to_numpy(dtype=float)
        yerr = np.vstack([y - part["low"].to_numpy(dtype=float), part["high"].to_numpy(dtype=float) - y])
        ax.errorbar(part["value"], y, yerr=np.where(np.isnan(yerr), 0, yerr), color=palette[model],
                    marker=MARKERS[i % len(MARKERS)], linestyle="none", capsize=3, label=model)
        for rec in part.to_dict("records"):
            ax.annotate(f"k={rec['labels']} n={rec['samples']}", (rec["value"], rec["measured"]),
                        textcoords="offset points", xytext=(4, -9), fontsize=6.5, color="#404040")
    what = sorted({f"{'validation' if r['split'] == 'val' else 'test'} {r['metric']}" for r in got.to_dict("records")})
    ax.set_xlabel(f"published (%): {', '.join(what)}")
    ax.set_ylabel("measured (%), mean over seeds, 95% interval")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(f"Replication: {', '.join(what)}")
    ax.legend(loc="upper left", fontsize=7)
    return fig


def report_metric(data: dict[str, Any]) -> str:
    """The summary metric the figures show: `report.split` + the first `report.metric`
    (recorded by `emogrid aggregate` in levels.json; default test accuracy)."""
    report = data.get("levels", {}).get("report") or {}
    metrics = report.get("metric") or ["accuracy"]
    metrics = metrics if isinstance(metrics, list) else [metrics]
    split = report.get("split", "test")
    present = set(data["summary"]["metric"]) if "metric" in data.get("summary", {}) else set()
    for metric in metrics:  # the first one this study has (f1_micro exists for multi-label only)
        if f"{split}_{metric}" in present:
            return f"{split}_{metric}"
    return f"{split}_{metrics[0]}"


def make_figures(tables_dir: str | Path, out_dir: str | Path, runs_dir: str | Path | None = None,
                 confusion: list[str] | None = None, formats=FORMATS) -> dict[str, Any]:
    from emogrid.atomic import staged_dir

    data = load_tables(tables_dir)
    out_dir = Path(out_dir)
    written: list[Path] = []
    metric = report_metric(data)
    # all figures are drawn into a staging folder and swapped in only when every one succeeded
    with staged_dir(out_dir) as stage:
        fig, info = study_heatmap(data, metric)
        written += save(fig, stage / "study_heatmap", formats)
        written += save(accuracy_vs_samples(data, metric), stage / "accuracy_vs_samples", formats)
        written += save(tradeoffs(data, metric), stage / "tradeoffs", formats)
        written += save(per_class_f1(data), stage / "per_class_f1", formats)
        written += save(replication_figure(Path(tables_dir) / "replication.csv"), stage / "replication", formats)
        for cell_id in confusion or []:
            safe = cell_id.strip("/").replace("/", "__")
            written += save(confusion_matrix(runs_dir or "results/runs", cell_id.strip("/")),
                            stage / "confusion" / safe, formats)
        written = [out_dir / Path(p).relative_to(stage) for p in written]
    return {"written": written, "heatmap": info}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables", default="results/tables",
                        help="tables directory written by `emogrid aggregate` (default: %(default)s)")
    parser.add_argument("--out", default="results/figures", help="figures directory (default: %(default)s)")
    parser.add_argument("--runs", default="results/runs",
                        help="runs directory, read only for --confusion (default: %(default)s)")
    parser.add_argument("--confusion", action="append", default=[], metavar="CELL_ID",
                        help="also draw the confusion matrix of this cell (repeatable), "
                             "e.g. goemotions/minilm/lora/k4_n800/s0")
    parser.add_argument("--format", action="append", choices=["png", "pdf", "svg"], dest="formats",
                        help="file formats (repeatable; default: png and pdf)")


def run(args: argparse.Namespace) -> int:
    result = make_figures(args.tables, args.out, args.runs, args.confusion,
                          tuple(args.formats) if args.formats else FORMATS)
    info = result["heatmap"]
    print(f"emogrid figures: {len(result['written'])} files -> {args.out} "
          f"(heatmap: {info['annotated']} cells, {len(info['missing'])} without results)")
    return 0
