"""The order of every axis (levels.json): first appearance in the expected grid (config
order), else natural order ('lora.r=8' before 'lora.r=16'); the same order in every table and
figure. Also the order of the arms (method + variant) compared.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from emogrid.study.cell_id import INT_AXES, parse_cell_id
from emogrid.results.collect import is_missing, swept_columns


def compute_levels(cells: pd.DataFrame, expected: list[dict[str, Any]] | None = None) -> dict:
    """Order of every axis: first appearance in the expected grid (config order), else natural."""
    levels: dict[str, list] = {}
    source = None
    if expected:
        source = pd.DataFrame.from_records(
            [{**{k: v for k, v in c.items() if k != "config_hash"},
              "variant": parse_cell_id(c["cell_id"]).get("variant", "")} for c in expected])
    for col in ["dataset", "model", "method", "variant", "labels", "samples", "seed",
                *swept_columns(cells)]:
        values: list = []
        if source is not None and col in source:
            values = [v for v in dict.fromkeys(source[col].tolist()) if not is_missing(v)]
            if col in INT_AXES or col == "variant":
                values = sorted(values, key=natural_key) if col != "variant" else values
        if col in cells:
            extra = sorted({v for v in cells[col].tolist() if not is_missing(v)} - set(values),
                           key=natural_key)
            values = values + extra if values else extra
        if col in INT_AXES:
            values = sorted(values, key=natural_key)
        levels[col] = [_jsonable(v) for v in values]
    if source is None or "variant" not in source:
        levels["variant"] = sorted(levels.get("variant", []), key=_variant_key)
    levels["from_config"] = expected is not None
    return levels


def _variant_key(variant: str):
    """Natural order: 'lora.r=8' before 'lora.r=16'; no variant first."""
    parts = re.split(r"(\d+(?:\.\d+)?(?:e-?\d+)?)", variant)
    return (variant != "", [(0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts)])


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def natural_key(value: Any):
    """Sort key: numbers by value before text, text alphabetically."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def arm_order(ok: pd.DataFrame, levels: dict[str, list] | None) -> list[tuple[str, str]]:
    """The arms (method, variant) of `ok`: methods in the study's order, variants alphabetically."""
    arms = set(ok["arm"])
    methods = (levels or {}).get("method") or sorted({a[0] for a in arms}, key=natural_key)
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(arms, key=lambda a: (rank.get(a[0], len(rank)), natural_key(a[0]), a[1]))
