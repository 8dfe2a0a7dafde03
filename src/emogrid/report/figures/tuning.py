"""The tuning figure: per group, the validation curve over the searched values with the chosen
one marked (tuning.csv, written by `emogrid aggregate` from results/tune/<group>.json).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter

from emogrid.report.figures.style import OKABE_ITO, placeholder, styled

UNHEALTHY_COLOR = "#D55E00"


@styled
def tuning_figure(path: Path):
    """One panel per group: x the first tuned key (log scale when its values span a factor 10 or
    more), y the mean validation score in %, one line per value of the other keys (and per rung
    under successive halving); a ring marks the choice, a cross a diverged / untrained / failed
    candidate (it lost whatever its score)."""
    import seaborn as sns

    frame = pd.read_csv(path) if Path(path).is_file() else pd.DataFrame()
    if frame.empty or "group" not in frame:
        return placeholder("Tuning", "this study tunes nothing (no tune: section) or no choice is made yet")
    keys = [c for c in frame.columns if c.startswith("value.")]
    groups = list(dict.fromkeys(frame["group"]))
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, layout="constrained")
    for ax, group in zip(axes.flat, groups):
        part = frame[frame["group"] == group].copy()
        used = [k for k in keys if part[k].notna().any()]
        x = used[0] if used else "candidate"
        others = used[1:]
        part["series"] = part[others].astype(str).agg(" ".join, axis=1) if others else ""
        if part["rung"].nunique() > 1:
            part["series"] = part["series"] + " budget " + part["budget"].astype(str)
        part["score_pct"] = 100 * part["val_score"].astype(float)
        series = list(dict.fromkeys(part["series"]))
        palette = {s: OKABE_ITO[i % len(OKABE_ITO)] for i, s in enumerate(series)}
        sns.lineplot(data=part.sort_values(x), x=x, y="score_pct", hue="series" if len(series) > 1 else None,
                     palette=palette if len(series) > 1 else None, marker="o", ax=ax,
                     color=None if len(series) > 1 else OKABE_ITO[0], legend=len(series) > 1)
        bad = part[~part["healthy"].astype(bool)]
        if len(bad):
            ax.scatter(bad[x], bad["score_pct"], marker="x", s=40, color=UNHEALTHY_COLOR, zorder=3,
                       label="diverged / did not train")
        best = part[part["chosen"].astype(bool)]
        ax.scatter(best[x], best["score_pct"], s=160, facecolors="none", edgecolors="black", linewidths=1.5,
                   zorder=4, label="chosen")
        for rec in best.to_dict("records"):  # the chosen value in words: the log axis labels decades only
            ax.annotate(rec["candidate"].replace("+", "\n"), (rec[x], rec["score_pct"]), textcoords="offset points",
                        xytext=(0, -16), ha="center", fontsize=6.5, color="#404040")
        values = pd.to_numeric(part[x], errors="coerce").dropna()
        if len(values) and (values > 0).all() and values.max() / values.min() >= 5:  # a learning-rate range
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^-3 labels between the decades crowd the axis
        metric = str(part["metric"].iloc[0]).replace("f1_macro", "macro-F1")
        ax.set_xlabel(x.removeprefix("value."))
        ax.set_ylabel(f"validation {metric} (%)")
        budgets = sorted(set(part["budget"].astype(str)) - {"full"})
        ax.set_title(group + (f" (rung on {budgets[0].replace('of', '/')} of the epochs)" if len(budgets) == 1
                              and part["rung"].nunique() == 1 else ""), fontsize=8)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle("Tuning on validation: mean over the tuning cells of each candidate")
    return fig
