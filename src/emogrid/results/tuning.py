"""The tuning of a study as tables: every candidate's validation score per group and rung
(`tuning.csv`, the report's Tuning section) and the tuning compute per model x method (beside
the study's own compute in the efficiency table). Read from the choice files
`results/tune/<group>.json` (emogrid.results.tune_select), never from test scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from emogrid.study.cell_id import format_value

COLUMNS = ["group", "dataset", "model", "method", "labels", "samples", "arm", "rung", "budget", "candidate",
           "metric", "val_score", "rank", "chosen", "healthy", "states", "cells"]
COMPUTE_COLUMNS = ["dataset", "model", "method", "variant", "tuning_groups", "tuning_cells", "tuning_seconds",
                   "tuning_steps", "full_search_seconds", "full_search_steps"]


def read_choices(tune_dir: str | Path, groups: list[str] | None = None) -> list[dict]:
    """The choice files under `tune_dir` (those of `groups` when given; rung files and tuning
    cells are not choices); unreadable ones are skipped (the select job writes them again)."""
    tune_dir = Path(tune_dir)
    if groups is not None:
        paths = [tune_dir / f"{g}.json" for g in groups]
    else:
        paths = sorted(p for p in tune_dir.rglob("*.json")
                       if "cells" not in p.relative_to(tune_dir).parts[:1] and ".rung" not in p.name)
    out = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "choice" in data and "candidates" in data:
            out.append(data)
    return out


def tuning_frame(choices: list[dict]) -> pd.DataFrame:
    """One row per (group, rung, candidate): its values (one column per tuned key), mean validation
    score, rank, health and whether it is the group's choice."""
    rows = []
    for choice in choices:
        axes = choice.get("axes") or {}
        where = {a: axes.get(a) for a in ("dataset", "model", "method", "labels", "samples", "arm")}
        if not where["method"]:  # one choice shared by several methods (tune.per without `method`)
            where["method"] = "+".join(choice.get("methods") or [])
        for rung in [*choice.get("rungs", []), choice]:
            for cand in rung["candidates"]:
                row = {"group": choice["group"], **where, "rung": rung["rung"], "budget": rung["budget"],
                       "candidate": cand["label"], "metric": rung["metric"], "val_score": cand["score"],
                       "rank": cand["rank"], "chosen": rung is choice and cand["label"] == choice["choice_label"],
                       "healthy": cand["healthy"], "states": " ".join(cand["states"]), "cells": cand["cells"]}
                row.update({f"value.{k}": v for k, v in cand["values"].items()})
                rows.append(row)
    frame = pd.DataFrame.from_records(rows)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = pd.Series(dtype=object)
    values = sorted(c for c in frame.columns if c.startswith("value."))
    return frame[COLUMNS + values]


def tuning_compute(choices: list[dict]) -> pd.DataFrame:
    """Tuning compute per (dataset, model, method, variant = the grid's arm): cells, train seconds and optimizer steps over
    every rung, and the full search that halving stands in for. A group spanning several methods
    (tune.per without `method`) is split evenly between them."""
    rows = []
    for choice in choices:
        axes = choice.get("axes") or {}
        total = choice.get("total_compute") or {}
        methods = [axes["method"]] if axes.get("method") else list(choice.get("methods") or [None])
        models = [axes.get("model")]
        share = 1.0 / len(methods)
        for method in methods:
            for model in models:
                rows.append({"dataset": axes.get("dataset"), "model": model, "method": method,
                             "variant": axes.get("arm") or "", "tuning_groups": share,
                             "tuning_cells": share * total.get("cells", 0),
                             "tuning_seconds": share * total.get("train_seconds", 0.0),
                             "tuning_steps": share * total.get("optimizer_steps", 0),
                             "full_search_seconds": share * total.get("full_search_seconds", 0.0),
                             "full_search_steps": share * total.get("full_search_steps", 0)})
    frame = pd.DataFrame.from_records(rows, columns=COMPUTE_COLUMNS)
    if frame.empty:
        return frame
    keys = ["dataset", "model", "method", "variant"]
    return frame.groupby(keys, dropna=False, sort=False).sum(numeric_only=True).reset_index()


def tuned_keys(choices: list[dict]) -> list[str]:
    """Every key some group tuned, sorted (for the study tables' captions)."""
    return sorted({k for c in choices for k in c.get("keys", [])})


def caption_suffix(choices: list[dict]) -> str:
    """'; tuned on validation: train.lr' for a tuned study, '' otherwise."""
    keys = tuned_keys(choices)
    return f"; tuned on validation: {', '.join(keys)}" if keys else ""


def chosen_label(values: dict) -> str:
    """'lr=0.0001 r=8' for a tuned cell's chosen values (tables)."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in sorted(values.items()))
