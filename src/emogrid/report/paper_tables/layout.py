"""What every paper table shares: split and metric names, the dash for "no result", LaTeX
escaping, which columns name a row, the study's row order and the row label cells.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from emogrid.study.cell_id import arm_label

SPLIT_NAMES = {"test": "test", "val": "validation"}
METRIC_NAMES = {"accuracy": "accuracy", "f1_macro": "macro-F1"}
DASH = "–"
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}


def table_title(split: str, metric: str) -> str:
    """'Test accuracy (%)': every table names its split and metric."""
    return f"{SPLIT_NAMES.get(split, split).capitalize()} {METRIC_NAMES.get(metric, metric)} (%)"


def latex_escape(text: Any) -> str:
    """Text safe inside a LaTeX tabular cell."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def ranker(levels: dict, key: str):
    """A sort key for one axis: its study order (levels.json), unknown values last."""
    order = {v: i for i, v in enumerate(levels.get(key, []))}
    return lambda v: (order.get(v, len(order)), str(v))


def row_keys_of(frame: pd.DataFrame, levels: dict) -> list[str]:
    """The columns that name a table row: model, method, variant (and dataset when several)."""
    keys = ["model", "method", "variant"]
    if frame["dataset"].nunique(dropna=True) > 1:
        keys = ["dataset"] + keys
    return keys


def sorted_rows(rows: list[tuple], keys: list[str], levels: dict) -> list[tuple]:
    """Row key tuples in the study's order, axis by axis."""
    rankers = [ranker(levels, k) for k in keys]
    return sorted(rows, key=lambda r: tuple(f(v) for f, v in zip(rankers, r)))


def row_label_cells(row: tuple, row_keys: list[str]) -> list[str]:
    """The leading label cells of a row: (dataset,) model, arm."""
    values = dict(zip(row_keys, row))
    out = [str(values["dataset"])] if "dataset" in values else []
    return out + [str(values["model"]), arm_label(values["method"], values["variant"])]


def header_names(row_keys: list[str]) -> list[str]:
    """The headers of the label columns that `row_label_cells` fills."""
    return (["Dataset"] if "dataset" in row_keys else []) + ["Model", "Method"]
