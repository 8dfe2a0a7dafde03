"""Summaries over seeds (summary.csv): per (cell without seed, metric) the mean, std, n and a
95% Student t interval of the mean (df = n - 1), with the failed seeds of the group counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emogrid.results.collect import META_COLUMNS, PROVENANCE_KEYS, axis_columns

CI_METHOD = "Student t, 95%, two-sided, df = n - 1 (over seeds)"


def t_quantile(n: np.ndarray | pd.Series, level: float = 0.95) -> np.ndarray:
    """Two-sided Student t quantile for sample sizes n (df = n - 1); NaN where n < 2."""
    from scipy.special import stdtrit  # scipy.special imports far faster than scipy.stats

    n = np.asarray(n, dtype=float)
    df = np.where(n >= 2, n - 1, np.nan)
    return stdtrit(df, 0.5 + level / 2)


def group_columns(cells: pd.DataFrame) -> list[str]:
    """Columns that identify a cell without its seed."""
    return [c for c in axis_columns(cells) if c not in ("cell_id", "seed")]


def metric_columns(cells: pd.DataFrame) -> list[str]:
    """Numeric metric + efficiency columns worth summarising over seeds."""
    skip = set(axis_columns(cells)) | set(META_COLUMNS) | {"in_grid", "cell_id_recorded"}
    out = []
    for col in cells.columns:
        if col in skip or col in PROVENANCE_KEYS or col.endswith(("_ci95_low", "_ci95_high")) \
                or "_majority_" in col or "_uniform_" in col:
            continue
        series = cells[col]
        if pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_numeric_dtype(series):
            out.append(col)
    return out


def summarize(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, n and a 95% t interval over seeds per (cell without seed, metric)."""
    keys = group_columns(cells) + ["mode"]
    columns = keys + ["metric", "mean", "std", "n", "ci95_t_half", "ci95_t_low",
                      "ci95_t_high", "n_failed", "ci_method"]
    ok = cells[cells["status"] == "ok"]
    metrics = metric_columns(cells)
    if ok.empty or not metrics:
        return pd.DataFrame(columns=columns)
    grouped = ok.groupby(keys, dropna=False, sort=False)[metrics]
    mean = grouped.mean().stack(future_stack=True).rename("mean")
    std = grouped.std(ddof=1).stack(future_stack=True).rename("std")
    n = grouped.count().stack(future_stack=True).rename("n")
    out = pd.concat([mean, std, n], axis=1).reset_index()
    out = out.rename(columns={out.columns[len(keys)]: "metric"})
    out = out[out["n"] > 0].copy()
    out["n"] = out["n"].astype(int)
    half = t_quantile(out["n"]) * out["std"] / np.sqrt(out["n"])
    out["ci95_t_half"] = half
    out["ci95_t_low"] = out["mean"] - half
    out["ci95_t_high"] = out["mean"] + half
    fkeys = [k for k in keys if k != "mode"]  # a failed cell has no metrics, so no mode
    failed = (cells[cells["status"] == "failed"].groupby(fkeys, dropna=False, sort=False)
              .size().rename("n_failed").reset_index())
    out = out.merge(failed, on=fkeys, how="left") if len(failed) else out.assign(n_failed=0)
    out["n_failed"] = out["n_failed"].fillna(0).astype(int)
    out["ci_method"] = CI_METHOD
    return out[columns].reset_index(drop=True)
