"""A finished (or running) study in Python: `emogrid.open_study(results_dir)`.

    study = emogrid.open_study("results/quickstart")   # or the study file: "studies/quickstart.yaml"
    study.cells          # one row per cell: axes, status, metrics, intervals, efficiency
    study.summary        # one row per (cell without seed, metric): mean, std, n, intervals
    study.comparisons    # paired method comparisons (per subset; pooled rows descriptive)
    study.replication    # published numbers next to the measured ones (report.reference)
    study.per_class      # per (cell, split, class): precision, recall, F1, support
    study.predictions(cell_id)   # one row per evaluated example of one cell
    print(study.status)  # done / failed / running / pending, as `emogrid status` shows it

`results_dir` is the study's results folder, the one that holds `runs/` and `tables/` (the
config's `results:`, else `results/<study.name>`), or the study's file: its folder by the same
rule as the Snakefile (emogrid.study.results_dir), and its config for pending cells. The
frames are the tables `emogrid aggregate` wrote (tables/*.parquet|csv: the same columns, see
docs/CONTRACTS.md "Tables", and docs/RESULTS.md for a walk through them). Without tables, or with
`recompute=True`, they are computed from the result files in memory (emogrid.report.aggregate's
`compute`; nothing is written), with `config` (a loaded study config) for the pending cells,
the axis order and the reference. Tables older than a result file are reported (`status.stale`,
and a warning when the study is opened): rerun `emogrid aggregate`, or open with recompute=True.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from emogrid.errors import EmogridError

FRAMES = ("cells", "summary", "comparisons", "per_class", "replication")
# text columns where "" means something (no variant) and a CSV round trip reads NaN
_TEXT_COLUMNS = ("variant", "variant_a", "variant_b")


def open_study(results_dir: str | os.PathLike, *, config: dict | None = None,
               recompute: bool = False) -> StudyResults:
    """The results of one study (module docstring): its results folder, or its study file.
    EmogridError if the folder holds neither tables nor result files."""
    from emogrid.study.config import load_config
    from emogrid.study.results_dir import is_study_file, study_results_dir

    if is_study_file(results_dir):
        config = config if config is not None else load_config([results_dir])
        results_dir = study_results_dir(config)
    return StudyResults(results_dir, config=config, recompute=recompute)


@dataclass
class StudyStatus:
    """State of every cell from its files now (`emogrid status`'s vocabulary: done, invalid,
    failed, running, interrupted, pending). `print()` shows the grid as `emogrid status` does."""

    counts: dict[str, int]
    cells: pd.DataFrame  # cell_id, status, error, did_not_learn
    outside_grid: list[str]
    did_not_learn: list[str]
    stale: list[str] = field(default_factory=list)  # cells whose files changed after the tables
    raw: dict = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        from emogrid.report.status import render

        text = render(self.raw, width=100)
        if self.stale:
            text += (f"\n{len(self.stale)} cell(s) changed after the tables were written "
                     "(rerun emogrid aggregate, or open_study(..., recompute=True))\n")
        return text


class StudyResults:
    """The tidy frames of one study; see the module docstring. Frames load on first use."""

    def __init__(self, results_dir: str | os.PathLike, *, config: dict | None = None, recompute: bool = False):
        self.results_dir = Path(results_dir)
        self.runs_dir = self.results_dir / "runs"
        self.tables_dir = self.results_dir / "tables"
        self.config = config
        has_tables = (self.tables_dir / "cells.parquet").is_file() or (self.tables_dir / "cells.csv").is_file()
        if not has_tables and not self.runs_dir.is_dir():
            raise EmogridError(f"{self.results_dir}: neither tables/cells.parquet nor runs/ found",
                               hint="pass the study's results directory (the folder that holds runs/ and tables/)")
        self.source = "runs" if recompute or not has_tables else "tables"
        if self.source == "tables":
            stale = self._stale()
            if stale:
                warnings.warn(f"{self.tables_dir}: {len(stale)} cell(s) changed after the tables were written "
                              f"(e.g. {stale[0]}); rerun emogrid aggregate, or open_study(..., recompute=True)",
                              stacklevel=3)

    def __repr__(self) -> str:
        counts = self.cells["status"].value_counts().to_dict()
        parts = ", ".join(f"{n} {s}" for s, n in counts.items())
        return f"<StudyResults {self.results_dir} (from {self.source}): {len(self.cells)} cells: {parts}>"

    # ------------------------------------------------------------------ the frames

    @cached_property
    def _computed(self) -> dict[str, Any]:
        from emogrid.report.aggregate import compute

        return compute(self.runs_dir, config=self.config)

    def _frame(self, name: str) -> pd.DataFrame:
        if self.source == "runs":
            frame = self._computed[name]
            if frame is None:  # no reference
                from emogrid.results.replication import OUT_COLUMNS

                frame = pd.DataFrame(columns=OUT_COLUMNS)
            return frame.copy()
        parquet, csv = self.tables_dir / f"{name}.parquet", self.tables_dir / f"{name}.csv"
        if parquet.is_file():
            return pd.read_parquet(parquet)
        if not csv.is_file():
            if name == "replication":  # written with the paper tables; absent with --no-tables
                from emogrid.results.replication import OUT_COLUMNS

                return pd.DataFrame(columns=OUT_COLUMNS)
            raise EmogridError(f"{csv}: missing", hint="rerun emogrid aggregate, or open_study(..., recompute=True)")
        return _restore_types(pd.read_csv(csv))

    @cached_property
    def cells(self) -> pd.DataFrame:
        """One row per cell (cells.csv): axes, status, metrics, intervals, efficiency, provenance."""
        return self._frame("cells")

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per (cell without seed, metric) (summary.csv): mean, std, n and intervals."""
        return self._frame("summary")

    @cached_property
    def comparisons(self) -> pd.DataFrame:
        """Paired method comparisons (comparisons.csv)."""
        return self._frame("comparisons")

    @cached_property
    def replication(self) -> pd.DataFrame:
        """Published numbers vs measured (replication.csv); empty without report.reference."""
        return self._frame("replication")

    @cached_property
    def per_class(self) -> pd.DataFrame:
        """Per (cell, split, class): precision, recall, F1, support (per_class.csv)."""
        return self._frame("per_class")

    @cached_property
    def levels(self) -> dict:
        """The order of every axis (levels.json), and the report settings under "report"."""
        if self.source == "runs":
            return dict(self._computed["levels"])
        return json.loads((self.tables_dir / "levels.json").read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ one cell

    def predictions(self, cell: str | Any, split: str | None = None) -> pd.DataFrame:
        """One row per evaluated example of one cell (its predictions.jsonl): cell_id, id, split,
        gold, pred (label indices; lists in multi-label mode), gold_label, pred_label, correct
        (exact match in multi-label mode) and p_<label> (the predicted probability of each label).
        `cell`: a cell id, or a row of `cells` (anything with a cell_id)."""
        cell_id = cell if isinstance(cell, str) else cell["cell_id"]
        run_dir = self.runs_dir / cell_id
        path = run_dir / "predictions.jsonl"
        if not path.is_file():
            known = set(self.cells["cell_id"])
            raise EmogridError(f"{path}: no predictions" + ("" if cell_id in known else
                                                            f" ({cell_id!r} is not a cell of this study)"),
                               hint="a failed or pending cell has none; study.cells lists each cell's status")
        labels = _label_names(run_dir)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if split is not None:
            rows = [r for r in rows if r.get("split") == split]
        multi = any(len(r["gold"]) != 1 or len(r["pred"]) != 1 for r in rows)

        def name(i: int) -> str:
            return labels[i] if i < len(labels) else str(i)

        out = pd.DataFrame({
            "cell_id": cell_id, "id": [r.get("id") for r in rows], "split": [r.get("split") for r in rows],
            "gold": [r["gold"] if multi else r["gold"][0] for r in rows],
            "pred": [r["pred"] if multi else r["pred"][0] for r in rows],
            "gold_label": [[name(i) for i in r["gold"]] if multi else name(r["gold"][0]) for r in rows],
            "pred_label": [[name(i) for i in r["pred"]] if multi else name(r["pred"][0]) for r in rows],
            "correct": [sorted(r["gold"]) == sorted(r["pred"]) for r in rows],
        })
        width = max([len(r.get("probs") or []) for r in rows], default=0)
        for j in range(width):
            out[f"p_{name(j)}"] = [(r.get("probs") or [None] * width)[j] for r in rows]
        return out

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> StudyStatus:
        """State of every cell, read from its files now (not from the tables)."""
        from emogrid.report.status import grid_status

        raw = grid_status(self.results_dir, self._expected())
        frame = pd.DataFrame([{"cell_id": c["cell_id"], "status": c["status"],
                               "error": (c.get("error") or {}).get("message"),
                               "did_not_learn": bool(c.get("learning", {}).get("did_not_learn"))}
                              for c in raw["cells"]], columns=["cell_id", "status", "error", "did_not_learn"])
        return StudyStatus(dict(raw["counts"]), frame, list(raw["outside_grid"]), list(raw["did_not_learn"]),
                           self._stale() if self.source == "tables" else [], raw)

    def _expected(self) -> list[dict[str, Any]]:
        """The study's cells: from `config` when given, else the rows of the cells table that
        belong to the grid (all rows when the table was written without a config)."""
        if self.config is not None:
            from emogrid.results.collect import expected_cells

            return expected_cells(config=self.config, results=self.results_dir)
        cells = self.cells
        if "in_grid" in cells:
            cells = cells[cells["in_grid"].fillna(False).astype(bool)]
        from emogrid.results.collect import axis_columns

        axes = [c for c in axis_columns(cells) if c not in ("cell_id", "variant")]
        return [{"cell_id": rec["cell_id"], **{k: _plain(rec[k]) for k in axes if not _missing(rec[k])}}
                for rec in cells.to_dict("records")]

    def _stale(self) -> list[str]:
        """Cells whose result files are newer than the cells table, or missing from it."""
        from emogrid.results.collect import find_result_files

        table = self.tables_dir / "cells.parquet"
        table = table if table.is_file() else self.tables_dir / "cells.csv"
        written = table.stat().st_mtime
        try:
            tabled = set(pd.read_parquet(table, columns=["cell_id"])["cell_id"]) if table.suffix == ".parquet" \
                else set(pd.read_csv(table, usecols=["cell_id"])["cell_id"])
        except (OSError, ValueError, KeyError):
            tabled = set()
        out = []
        for cid, paths in find_result_files(self.runs_dir).items():
            if cid not in tabled or any(p.stat().st_mtime > written for p in paths.values()):
                out.append(cid)
        return sorted(out)


def _restore_types(frame: pd.DataFrame) -> pd.DataFrame:
    """The types `emogrid aggregate` wrote, after a CSV round trip: "" for no variant, whole-number
    axes (labels, samples, seed, swept integers such as lora.r) as nullable integers."""
    from emogrid.study.cell_id import INT_AXES

    for col in _TEXT_COLUMNS:
        if col in frame:
            frame[col] = frame[col].fillna("").astype(str)
    for col in frame.columns:
        if (col in INT_AXES or "." in col) and pd.api.types.is_numeric_dtype(frame[col]) \
                and not pd.api.types.is_bool_dtype(frame[col]):
            values = frame[col].dropna()
            if (values % 1 == 0).all():
                frame[col] = frame[col].astype("Int64")
    return frame


def _label_names(run_dir: Path) -> list[str]:
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    for split in ("test", "val"):
        labels = (metrics.get(split) or {}).get("labels") if isinstance(metrics, dict) else None
        if isinstance(labels, list):
            return [str(x) for x in labels]
    return []


def _missing(value: Any) -> bool:
    from emogrid.results.collect import is_missing

    return is_missing(value)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
