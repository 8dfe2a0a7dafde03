"""The replication figure: published (x) vs measured (y) numbers of the cells a study
reproduces (replication.csv, written by `emogrid aggregate` from `report.reference`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emogrid.report.figures.style import MARKERS, model_palette, placeholder, styled


@styled
def replication_figure(path: Path):
    """Published (x) vs measured (y, mean over seeds with its 95% interval), in %; y = x dashed."""
    frame = pd.read_csv(path) if Path(path).is_file() else pd.DataFrame()
    if frame.empty or "status" not in frame or not (frame["status"] == "measured").any():
        empty = ("no published numbers to compare: report.reference is unset, or none of its rows matches "
                 "a cell of this study (tables/replication.md says which)")
        return placeholder("Replication", empty if frame.empty else "none of the published cells has been measured yet")
    got = frame[frame["status"] == "measured"].reset_index(drop=True)
    models = list(dict.fromkeys(got["model"]))
    palette = model_palette(models)
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
