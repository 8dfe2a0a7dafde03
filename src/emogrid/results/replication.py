"""Replication view: published numbers next to what this study measured.

`report.reference` names a CSV of published numbers (its columns and checks:
emogrid.study.reference, which checks it when the study is loaded), one per row:

    study, dataset, model, method, labels, samples, split, metric, value [, source]

`value` is the published number in % (as papers print it; values <= 1 are read as fractions
only if every value of the file is <= 1). Model and method are this study's names (the
config's `models:` keys and methods). `replication_frame` matches each row with the
measured mean over seeds, its 95% interval (the bootstrap over seeds and examples where
there is one, else Student t over seeds), n (seeds), the difference measured - published
and whether the published value lies inside the interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emogrid.errors import ConfigError
from emogrid.study.reference import COLUMNS, read_rows

OUT_COLUMNS = COLUMNS + ["variant", "n", "measured", "low", "high", "interval", "diff", "inside", "status"]


def load_reference(path: str | Path) -> pd.DataFrame:
    """The reference CSV as a frame, checked (emogrid.study.reference: one ConfigError naming the
    file, line and column of every problem). A relative path is read from the working directory,
    else from the workflow's folder (where config.yaml and studies/references/ live)."""
    path, rows, problems = read_rows(path)
    if problems:
        raise ConfigError("; ".join(problems))
    ref = pd.DataFrame([{k: v for k, v in r.items() if k != "line"} for r in rows],
                       columns=list(dict.fromkeys(COLUMNS + [k for r in rows for k in r if k != "line"])))
    ref["labels"] = ref["labels"].astype(float).astype(int)
    ref["samples"] = ref["samples"].astype(float).astype(int)
    ref["value"] = ref["value"].astype(float)
    if len(ref) and (ref["value"] <= 1).all():  # a file of fractions
        ref["value"] = 100 * ref["value"]
    return ref


def reference_splits(path: str | Path | None) -> tuple[str, ...]:
    """The evaluation splits a reference file reports (to compute their intervals)."""
    if not path:
        return ()
    return tuple(sorted(set(load_reference(path)["split"])))


def replication_frame(reference: pd.DataFrame, summary: pd.DataFrame,
                      study_arms: set[tuple[str, str, str]] | None = None) -> pd.DataFrame:
    """One row per (reference row, measured variant): published vs measured, in %.

    `study_arms`: the (dataset, model, method) this study has (finished or not); reference
    rows of other arms are left out, so a study that inherits config.yaml's reference shows
    only what it can compare."""
    rows = []
    for rec in reference.to_dict("records"):
        if study_arms is not None and (rec["dataset"], rec["model"], rec["method"]) not in study_arms:
            continue
        metric = f"{rec['split']}_{rec['metric']}"
        sel = summary[(summary["metric"] == metric) & (summary["dataset"].astype(str) == rec["dataset"])
                      & (summary["model"].astype(str) == rec["model"])
                      & (summary["method"].astype(str) == rec["method"])
                      & (summary["labels"] == rec["labels"]) & (summary["samples"] == rec["samples"])]
        base = {c: rec[c] for c in COLUMNS}
        if sel.empty:
            rows.append({**base, "variant": "", "n": 0, "status": "not measured"})
            continue
        for m in sel.to_dict("records"):
            low, high, kind = m.get("ci95_boot_low"), m.get("ci95_boot_high"), "bootstrap"
            if low is None or pd.isna(low):
                half = m.get("ci95_t_half")
                low, high, kind = ((m["mean"] - half, m["mean"] + half, "t")
                                   if half is not None and not pd.isna(half) else (np.nan, np.nan, ""))
            measured = 100 * m["mean"]
            low, high = 100 * low, 100 * high
            inside = bool(low <= rec["value"] <= high) if not pd.isna(low) else None
            rows.append({**base, "variant": m.get("variant") or "", "n": int(m["n"]), "measured": measured,
                         "low": low, "high": high, "interval": kind, "diff": measured - rec["value"],
                         "inside": inside, "status": "measured"})
    out = pd.DataFrame(rows)
    for col in OUT_COLUMNS:
        if col not in out:
            out[col] = np.nan
    return out[OUT_COLUMNS]
