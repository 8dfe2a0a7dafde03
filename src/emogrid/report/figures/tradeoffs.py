"""Method trade-offs: the report metric vs trainable parameters, train time and peak memory per
model x method, at the (dataset, k, n) setting that most arms finished.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from emogrid.report.figures.select import arms_of, metric_rows, ordered
from emogrid.report.figures.style import MARKERS, STYLE, metric_name, model_palette, placeholder, styled
from emogrid.study.cell_id import arm_label

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


@styled
def tradeoffs(data: dict[str, Any], metric: str = "test_accuracy"):
    """The metric vs each efficiency number present, at `choose_setting`'s (dataset, k, n)."""
    summary, levels = data["summary"], data["levels"]
    sub = metric_rows(summary, metric)
    setting = choose_setting(sub)
    present = [a for a in TRADEOFF_AXES if (summary["metric"] == a[0]).any()]
    if setting is None or not present:
        return placeholder("Method trade-offs", "no finished cells with efficiency numbers yet")
    ds, k, n = setting
    def sel(frame):
        return frame[(frame["dataset"] == ds) & (frame["labels"] == k) & (frame["samples"] == n)]

    acc = sel(sub)
    models = ordered(acc["model"], levels, "model")
    palette = model_palette(models)
    arms = arms_of(acc, levels)
    marker_of = {a: MARKERS[i % len(MARKERS)] for i, a in enumerate(arms)}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(present), figsize=(3.1 * len(present) + 1.8, 3.0),
                                 squeeze=False, sharey=True)
        floors: set[str] = set()
        for j, (col, label, log) in enumerate(present):
            ax = axes[0][j]
            ax.grid(True)
            xs = sel(metric_rows(summary, col)).set_index(["model", "method", "variant"])["mean"]
            finite = [v for v in xs.to_numpy(dtype=float) if v > 0]
            log_axis = log and finite and max(finite) / min(finite) > 20
            for rec in acc.itertuples(index=False):
                key = (rec.model, rec.method, rec.variant)
                if key not in xs.index or pd.isna(xs[key]):
                    continue
                if log_axis and xs[key] <= 0:
                    # no trainable parameters / no training (the untrained baseline): a floor
                    # at its score across the panel, since a log axis has no 0
                    ax.axhline(100 * rec.mean, color=palette[rec.model], linestyle=":", linewidth=1.0)
                    floors.add(arm_label(rec.method, rec.variant, short=True))
                    continue
                yerr = None if pd.isna(rec.ci95_t_half) else 100 * rec.ci95_t_half
                ax.errorbar(xs[key], 100 * rec.mean, yerr=yerr, color=palette[rec.model],
                            marker=marker_of[(rec.method, rec.variant)], markersize=6, capsize=1.5, elinewidth=0.8,
                            linestyle="none", markeredgecolor="white", markeredgewidth=0.5)
            if log_axis:
                ax.set_xscale("log")
            ax.set_xlabel(label)
            if j == 0:
                ax.set_ylabel(f"{metric_name(metric)} (%)")
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
        note = "Points: mean over seeds; vertical bars: 95% t confidence interval."
        if floors:
            note += (f" Dotted lines: {', '.join(sorted(floors))} (0 on a log axis: drawn as a floor "
                     "at its score, in its model's colour).")
        fig.text(0.01, -0.01, note, fontsize=7, color="#404040", ha="left", va="top")
    return fig
