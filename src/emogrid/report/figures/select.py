"""The rows a figure draws and their order: the study's order (levels.json = config order)
for every axis, the arms (method + variant) of a frame, the summary rows of one metric.
"""

from __future__ import annotations

import math

import pandas as pd


def ordered(values, levels: dict, key: str) -> list:
    """The distinct values of an axis in the study's order (levels.json), unknown ones last."""
    ref = levels.get(key, [])
    rank = {v: i for i, v in enumerate(ref)}
    vals = list(dict.fromkeys(v for v in values if not (isinstance(v, float) and math.isnan(v))))
    return sorted(vals, key=lambda v: (rank.get(v, len(rank)), str(v)))


def arms_of(frame: pd.DataFrame, levels: dict) -> list[tuple[str, str]]:
    """The (method, variant) arms of a frame, in the study's method then variant order."""
    methods = ordered(frame["method"], levels, "method")
    out = []
    for m in methods:
        out += [(m, v) for v in ordered(frame.loc[frame["method"] == m, "variant"], levels, "variant")]
    return out


def metric_rows(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The summary rows of one metric, with integer labels and samples."""
    sub = summary[summary["metric"] == metric].copy()
    for col in ("labels", "samples"):
        if col in sub:
            sub[col] = sub[col].astype(int)
    return sub
