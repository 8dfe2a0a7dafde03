"""Where each model and dataset of a study came from, exactly: `sources.csv` / `sources.md`.

One row per (kind, name, id, revision, commit) seen in the finished cells' provenance (the
commit a fetch receipt resolved, or the local path), with the number of cells that used it.
Two rows for one model mean the grid was trained on two snapshots of it: the table makes
that visible instead of averaging over it.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ["kind", "name", "id", "revision", "commit", "cells"]


def source_columns(provenance: dict) -> dict:
    """Flat cells.csv columns from a metrics.json provenance block."""
    row = {}
    for key, prefix in (("model_source", "model"), ("data_source", "data")):
        source = provenance.get(key)
        if not isinstance(source, dict):
            continue
        origin = source.get("id") or source.get("path")
        for column, value in (("source", origin), ("revision", source.get("revision")),
                              ("commit", source.get("commit"))):
            if isinstance(value, str) and value:
                row[f"{prefix}_{column}"] = value
    return row


def sources_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """The sources table from tidy cells (emogrid.results.collect), finished cells only."""
    parts = []
    ok = cells[cells["status"] == "ok"] if "status" in cells else cells.iloc[0:0]
    for kind, name_col, prefix in (("model", "model", "model"), ("dataset", "dataset", "data")):
        if name_col not in ok or f"{prefix}_source" not in ok:
            continue
        frame = pd.DataFrame({
            "kind": kind, "name": ok[name_col],
            "id": ok[f"{prefix}_source"],
            "revision": ok.get(f"{prefix}_revision", pd.Series(index=ok.index, dtype=object)),
            "commit": ok.get(f"{prefix}_commit", pd.Series(index=ok.index, dtype=object)),
        }).fillna("")
        parts.append(frame.groupby(["kind", "name", "id", "revision", "commit"], sort=False)
                     .size().rename("cells").reset_index())
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def to_markdown(frame: pd.DataFrame) -> str:
    lines = ["Sources of the finished cells (hub id or local path; commit as fetched)", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame[COLUMNS].itertuples(index=False)]
    return "\n".join(lines) + "\n"
