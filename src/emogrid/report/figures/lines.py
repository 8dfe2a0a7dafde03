"""Accuracy vs training samples: one line per model, one panel per label count (rows: method
settings), with the 95% band over seeds (bootstrap where there is one, else Student t).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from emogrid.report.figures.select import arms_of, metric_rows, ordered
from emogrid.report.figures.style import LINESTYLES, MARKERS, STYLE, metric_name, model_palette, placeholder, styled
from emogrid.study.cell_id import arm_label

MAX_PANEL_ROWS = 12  # accuracy-vs-samples rows (methods x variants) drawn; the rest are named


@styled
def accuracy_vs_samples(data: dict[str, Any], metric: str = "test_accuracy"):
    """The metric vs training samples: one line per model, panels (arm, k)."""
    summary, levels = data["summary"], data["levels"]
    sub = metric_rows(summary, metric)
    if sub.empty:
        return placeholder("Accuracy vs samples", "no finished cells yet")
    models = ordered(sub["model"], levels, "model")
    palette = model_palette(models)
    ks = sorted(ordered(sub["labels"], levels, "labels"))
    datasets = ordered(sub["dataset"], levels, "dataset")
    row_keys = [(ds, arm) for ds in datasets for arm in arms_of(sub[sub["dataset"] == ds], levels)]
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
                    ax.set_ylabel(f"{ds_txt}{arm_label(method, variant, short=True)}\n{metric_name(metric)} (%)")
                if i == len(row_keys) - 1:
                    ax.set_xlabel("training samples n")
        handles = [plt.Line2D([], [], color=palette[m], marker=MARKERS[i % len(MARKERS)],
                              linestyle=LINESTYLES[i % len(LINESTYLES)], label=m)
                   for i, m in enumerate(models)]
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(models), 5), title="model")
        fig.suptitle(f"{metric_name(metric)} (%) vs training samples", fontsize=10, fontweight="bold")
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
