"""Read a runs tree into tidy tables: one row per grid cell (its axes, status, scalar metrics,
efficiency and provenance) and one per (cell, split, class), plus a pending row for every
cell the study expects that has no result file yet. Each file is checked (emogrid.training.cell_files)
before it is tabled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emogrid.study.cell_id import BASE_AXES as _BASE_AXES
from emogrid.study.cell_id import INT_AXES, format_variant, parse_cell_id
from emogrid.errors import EmogridError

BASE_AXES = list(_BASE_AXES)
# columns that identify a cell; swept parameters are added after these
ID_COLUMNS = ["cell_id", "dataset", "model", "method", "variant", "labels", "samples", "seed"]
META_COLUMNS = ["mode", "status", "error_type", "error", "hint"]
# training health of a finished cell (emogrid.training.health), apart from did_not_learn (scores)
HEALTH_COLUMNS = ["train_health", "train_health_reason"]
PROVENANCE_KEYS = ["device", "precision", "git_commit", "config_hash", "data_checksum", "finished"]
NON_SCALAR_METRICS = {"labels", "per_class", "confusion_matrix"}


def find_result_files(runs_dir: Path) -> dict[str, dict[str, Path]]:
    """cell_id -> {"metrics": path, "failure": path} for every result file under runs_dir."""
    found: dict[str, dict[str, Path]] = {}
    if not runs_dir.is_dir():
        return found
    for root, dirs, files in os.walk(runs_dir):
        # checkpoints and adapters never hold results; skip them (they can be large)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "adapter"]
        for name, kind in (("metrics.json", "metrics"), ("failure.json", "failure")):
            if name in files:
                rel = Path(root).relative_to(runs_dir).as_posix()
                found.setdefault(rel, {})[kind] = Path(root) / name
    return found


def _variant_of(swept: dict[str, Any]) -> str:
    """The variant of a row whose folder name has none: its recorded swept values (None: unset)."""
    return format_variant({k: v for k, v in swept.items() if v is not None})


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def _mode(metrics: dict) -> str:
    return "multi" if ("exact_match" in metrics or "f1_micro" in metrics) else "single"


def cell_row(rel_id: str, paths: dict[str, Path], config_hash: str | None = None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One tidy row (and its per-class rows) from the result files of one cell folder.

    metrics.json wins over a stale failure.json. Each file is checked first
    (`emogrid.training.cell_files`: the JSON Schema of its kind, its cell id against its folder, and its
    config hash against `config_hash` when given); a file that fails is never tabled: the row
    gets status ``invalid`` and the file and the reason as its error. Optional fields a file
    lacks become NaN; unknown scalar fields become columns (mixed-version trees aggregate side
    by side).
    """
    from emogrid.training import cell_files as results

    row: dict[str, Any] = {"cell_id": rel_id}
    per_class: list[dict[str, Any]] = []
    kind = "metrics" if "metrics" in paths else "failure"
    checked = results.read(paths[kind], kind, cell_id=rel_id, config_hash=config_hash)

    axes = parse_cell_id(rel_id)
    if checked.valid:
        obj = checked.data
        axes.update({k: v for k, v in obj["cell"].items() if _scalar(v)}
                    if isinstance(obj.get("cell"), dict) else {})
    swept = {k: v for k, v in axes.items() if k not in BASE_AXES and k != "variant"}
    row.update({k: v for k, v in axes.items() if k != "variant"})
    row["variant"] = axes.get("variant") or _variant_of(swept)

    if not checked.valid:
        row.update(status="invalid", error_type="InvalidResult", error=checked.reason,
                   hint="the next `snakemake` run trains this cell again")
        return row, per_class
    obj = checked.data

    status = obj.get("status") or ("ok" if kind == "metrics" else "failed")
    if kind == "failure":
        status = "failed"
    row["status"] = str(status)
    error = obj.get("error")
    if isinstance(error, dict):
        row["error_type"] = error.get("type")
        row["error"] = error.get("message")
        row["hint"] = error.get("hint")
    elif error is not None:
        row["error"] = str(error)

    for split in ("val", "test"):
        metrics = obj.get(split)
        if not isinstance(metrics, dict):
            continue
        if split == "test" or "mode" not in row:
            row["mode"] = _mode(metrics)
        for key, value in metrics.items():
            if key in NON_SCALAR_METRICS or not _scalar(value):
                continue
            row[f"{split}_{key}"] = value
        if isinstance(metrics.get("confusion_matrix"), list):
            row[f"_confusion_{split}"] = metrics["confusion_matrix"]  # taken out by collect()
        pc = metrics.get("per_class")
        if isinstance(pc, dict):
            for label, vals in pc.items():
                if isinstance(vals, dict):
                    per_class.append({"cell_id": rel_id, "split": split, "label": str(label),
                                      **{k: vals.get(k) for k in ("precision", "recall", "f1", "support")}})
    row.update(health_columns(obj, paths[kind].parent))
    if isinstance(obj.get("tuned"), dict):  # a tuned study cell: the values its group chose
        row["tuned"] = format_variant(obj["tuned"])
    eff = obj.get("efficiency")
    if isinstance(eff, dict):
        row.update({k: v for k, v in eff.items() if _scalar(v) and k not in row})
    prov = obj.get("provenance")
    if isinstance(prov, dict):
        row.update({k: prov.get(k) for k in PROVENANCE_KEYS if _scalar(prov.get(k))})
        # the exact sources a cell trained on: hub id + commit (emogrid.data.fetch) or local path
        from emogrid.results.sources import source_columns

        row.update(source_columns(prov))
    return row, per_class


def health_columns(obj: dict, run_dir: Path) -> dict[str, Any]:
    """`train_health` (ok / diverged / did_not_train / unchecked: emogrid.training.health) and its
    reason, for a finished cell; judged from train_log.jsonl for a file written before emogrid
    recorded it. A failed cell: diverged when its loss became non-finite, else {}."""
    if obj.get("status") != "ok":
        from emogrid.training.health import failure_health

        health = failure_health(obj.get("error"))
        return {"train_health": health["state"], "train_health_reason": health["reason"]} if health else {}
    health = obj.get("health")
    if not isinstance(health, dict):
        from emogrid.training.health import logged_health

        health = logged_health(run_dir)
    return {"train_health": health.get("state"), "train_health_reason": health.get("reason")}


def expected_cells(configfiles: Iterable[str] = (), config: dict | None = None,
                   results: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The cells a study expects: [{"cell_id", axes..., "config_hash"}] in grid order.

    From the study's config files (as `snakemake --configfile`; none: ./config.yaml) or from an
    already loaded config dict (the `aggregate` rule passes Snakemake's config as JSON).
    With `results` (the results directory), a tuned study's cells carry the values their group
    chose (results/tune/<group>.json); one whose choice is not made yet has no hash to check.
    """
    from emogrid.study.config import finalize, load_config
    from emogrid.study.grid import expand_cells

    config = finalize(config) if config is not None else load_config(list(configfiles))
    cells = expand_cells(config)
    if results is not None:
        from emogrid.study.tuning import tuned_cells

        cells = tuned_cells(config, cells, results)
    out = []
    for cell in cells:
        row = {"cell_id": str(cell.cell_id)}
        row.update({k: v for k, v in dict(cell.axes).items() if _scalar(v)})
        pending = isinstance(cell.spec.get("tuned"), dict) and "pending" in cell.spec["tuned"]
        row["config_hash"] = None if pending else cell.spec["config_hash"]
        out.append(row)
    return out


def swept_columns(cells: pd.DataFrame) -> list[str]:
    """The swept-parameter columns (dotted names such as ``lora.r``)."""
    known = set(ID_COLUMNS) | set(META_COLUMNS)
    return [c for c in cells.columns if "." in c and c not in known
            and not c.startswith(("val_", "test_"))]


def axis_columns(cells: pd.DataFrame) -> list[str]:
    """The columns that identify a cell: id columns, then swept parameters."""
    return [c for c in ID_COLUMNS if c in cells.columns] + swept_columns(cells)


def _order_columns(cells: pd.DataFrame) -> pd.DataFrame:
    for col in ID_COLUMNS + META_COLUMNS:
        if col not in cells.columns:
            cells[col] = pd.NA if col not in ("variant",) else ""
    cells["variant"] = cells["variant"].fillna("").astype(str)
    for col in INT_AXES:
        cells[col] = pd.to_numeric(cells[col], errors="coerce").astype("Int64")
    for col in swept_columns(cells):
        values = pd.to_numeric(cells[col], errors="coerce")
        if values.notna().sum() == cells[col].notna().sum() and values.notna().any() \
                and (values.dropna() % 1 == 0).all() and not pd.api.types.is_bool_dtype(cells[col]):
            cells[col] = values.astype("Int64")
    first = axis_columns(cells) + META_COLUMNS + [c for c in HEALTH_COLUMNS if c in cells.columns]
    metric_cols = sorted(c for c in cells.columns if c.startswith(("val_", "test_")))
    rest = [c for c in cells.columns if c not in first and c not in metric_cols]
    cells = cells[first + metric_cols + rest]
    sort_cols = [c for c in ("dataset", "model", "method", "variant", "labels", "samples", "seed")]
    return cells.sort_values(sort_cols, kind="stable", na_position="last").reset_index(drop=True)


def collect(runs_dir: str | os.PathLike, expected: list[dict[str, Any]] | None = None,
            confusions: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, per_class) DataFrames from a runs directory; pending rows for ``expected``.

    ``confusions``, when given, receives {(cell_id, split): confusion matrix} (single-label)."""
    runs_dir = Path(runs_dir)
    files = find_result_files(runs_dir)
    rows, pc_rows = [], []
    hashes = {c["cell_id"]: c.get("config_hash") for c in expected or ()}
    for rel_id in sorted(files):
        row, pcs = cell_row(rel_id, files[rel_id], hashes.get(rel_id))
        for split in ("val", "test"):
            cm = row.pop(f"_confusion_{split}", None)
            if confusions is not None and cm is not None and row.get("status") == "ok":
                try:
                    confusions[(rel_id, split)] = np.asarray(cm, dtype=np.int64)
                except (TypeError, ValueError):
                    pass  # a malformed matrix: no example-level interval for this cell
        rows.append(row)
        pc_rows.extend(pcs)
    if expected:
        seen = {r["cell_id"] for r in rows}
        for cell in expected:
            if cell["cell_id"] not in seen:
                axes = {k: v for k, v in cell.items() if k not in ("variant", "config_hash")}
                swept = {k: v for k, v in axes.items() if k not in BASE_AXES and k != "cell_id"}
                variant = parse_cell_id(cell["cell_id"]).get("variant") or _variant_of(swept)
                rows.append({**axes, "variant": variant, "status": "pending"})
        expected_ids = {c["cell_id"] for c in expected}
        for row in rows:
            row["in_grid"] = row["cell_id"] in expected_ids
    if not rows:
        raise EmogridError(
            f"no results under {runs_dir}: found no metrics.json or failure.json"
            + ("" if runs_dir.is_dir() else " (the directory does not exist)"),
            hint="run the grid first (snakemake --cores all), or point --runs at the runs directory",
        )
    cells = _order_columns(pd.DataFrame.from_records(rows))
    per_class = pd.DataFrame.from_records(pc_rows) if pc_rows else pd.DataFrame(
        columns=["cell_id", "split", "label", "precision", "recall", "f1", "support"])
    if len(per_class):
        keys = [c for c in axis_columns(cells) if c != "cell_id"] + ["mode"]
        per_class = per_class.merge(cells[["cell_id"] + [k for k in keys if k in cells]],
                                    on="cell_id", how="left")
    return cells, per_class


def is_missing(value: Any) -> bool:
    """Whether one table value is missing (None, NaN, NA); False for what pd.isna cannot judge."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
