"""Study figures from the aggregated tables (`emogrid figures`), PNG + PDF.

Reads ``cells.csv``, ``summary.csv``, ``per_class.csv`` and ``levels.json`` written by
`emogrid aggregate` (never the runs, except for confusion matrices asked for by cell id) and
writes, under the figures directory (fixed names, so Snakemake can declare them):

- ``study_heatmap``: test accuracy (%) by model x (labels k, samples n), one panel per
  method; cells without a finished seed are hatched and listed under the figure
  (emogrid.report.figures.heatmap);
- ``accuracy_vs_samples``: accuracy vs training samples, one line per model, one panel per
  label count (rows: methods), 95% t confidence bands over seeds (emogrid.report.figures.lines);
- ``tradeoffs``: accuracy vs trainable parameters, train time and peak memory per model x
  method, at the (k, n) setting that most methods finished (emogrid.report.figures.tradeoffs);
- ``per_class_f1``: test F1 per class (rows) for every model / method (columns), one panel
  per label count, at its largest sample size (emogrid.report.figures.per_class);
- ``replication``: published vs measured numbers (emogrid.report.figures.replication);
- ``tuning``: a tuned study's validation curve per group, the choice marked
  (emogrid.report.figures.tuning);
- ``confusion/<cell>``: row-normalised confusion matrix of one cell (``--confusion``).

Style: Agg backend, Okabe-Ito palette and viridis (colour-blind safe, legible in greyscale),
values printed on heatmaps, same model / method order everywhere (levels.json = config
order), all in emogrid.report.figures.style. This module and the emogrid.report.figures package are the
inputs the `figures` rule declares (emogrid.report.outputs.FIGURES_CODE): editing them reruns the
figures, never aggregation or training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from emogrid.errors import EmogridError
from emogrid.report import outputs
from emogrid.report.figures import heatmap, lines, per_class, replication, tradeoffs, tuning
from emogrid.report.figures.style import FORMATS, save

FIGURES = outputs.FIGURE_NAMES


def load_tables(tables_dir: str | Path) -> dict[str, Any]:
    """The tables `emogrid figures` reads, from a tables directory written by `emogrid aggregate`."""
    tables_dir = Path(tables_dir)
    needed = ["cells.csv", "summary.csv"]
    missing = [n for n in needed if not (tables_dir / n).is_file()]
    if missing:
        raise EmogridError(f"{tables_dir}: missing {', '.join(missing)}",
                           hint="run `emogrid aggregate` first (it writes the tables the figures read)")
    cells = pd.read_csv(tables_dir / "cells.csv", keep_default_na=True, low_memory=False)
    summary = pd.read_csv(tables_dir / "summary.csv")
    pc_path = tables_dir / "per_class.csv"
    per_class = pd.read_csv(pc_path) if pc_path.is_file() else pd.DataFrame()
    lv_path = tables_dir / "levels.json"
    levels = json.loads(lv_path.read_text()) if lv_path.is_file() else {}
    for frame in (cells, summary, per_class):
        if "variant" in frame:
            frame["variant"] = frame["variant"].astype("string").fillna("").astype(str)
    return {"cells": cells, "summary": summary, "per_class": per_class, "levels": levels}


def report_metric(data: dict[str, Any]) -> str:
    """The summary metric the figures show: `report.split` + the first `report.metric`
    (recorded by `emogrid aggregate` in levels.json; default test accuracy)."""
    report = data.get("levels", {}).get("report") or {}
    metrics = report.get("metric") or ["accuracy"]
    metrics = metrics if isinstance(metrics, list) else [metrics]
    split = report.get("split", "test")
    present = set(data["summary"]["metric"]) if "metric" in data.get("summary", {}) else set()
    for metric in metrics:  # the first one this study has (f1_micro exists for multi-label only)
        if f"{split}_{metric}" in present:
            return f"{split}_{metric}"
    return f"{split}_{metrics[0]}"


def make_figures(tables_dir: str | Path, out_dir: str | Path, runs_dir: str | Path | None = None,
                 confusion: list[str] | None = None, formats=FORMATS) -> dict[str, Any]:
    """Draw every figure (and the asked confusion matrices) into `out_dir`; all or nothing."""
    from emogrid.atomic import staged_dir

    data = load_tables(tables_dir)
    out_dir = Path(out_dir)
    written: list[Path] = []
    metric = report_metric(data)
    # all figures are drawn into a staging folder and swapped in only when every one succeeded
    with staged_dir(out_dir) as stage:
        fig, info = heatmap.study_heatmap(data, metric)
        written += save(fig, stage / "study_heatmap", formats)
        written += save(lines.accuracy_vs_samples(data, metric), stage / "accuracy_vs_samples", formats)
        written += save(tradeoffs.tradeoffs(data, metric), stage / "tradeoffs", formats)
        written += save(per_class.per_class_f1(data), stage / "per_class_f1", formats)
        written += save(replication.replication_figure(Path(tables_dir) / "replication.csv"), stage / "replication",
                        formats)
        written += save(tuning.tuning_figure(Path(tables_dir) / "tuning.csv"), stage / "tuning", formats)
        for cell_id in confusion or []:
            safe = cell_id.strip("/").replace("/", "__")
            runs = runs_dir or Path(tables_dir).parent / "runs"  # the study's folder holds both
            written += save(per_class.confusion_matrix(runs, cell_id.strip("/")), stage / "confusion" / safe, formats)
        written = [out_dir / Path(p).relative_to(stage) for p in written]
    return {"written": written, "heatmap": info}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from emogrid.cli_config import add_config_args, add_results_arg

    add_config_args(parser)  # the study, only to find its results folder
    add_results_arg(parser)
    parser.add_argument("--tables", default=None,
                        help="tables directory written by `emogrid aggregate` (default: <results>/tables)")
    parser.add_argument("--out", default=None, help="figures directory (default: <results>/figures)")
    parser.add_argument("--runs", default=None,
                        help="runs directory, read only for --confusion (default: <results>/runs)")
    parser.add_argument("--confusion", action="append", default=[], metavar="CELL_ID",
                        help="also draw the confusion matrix of this cell (repeatable), "
                             "e.g. goemotions/minilm/lora/k4_n800/s0")
    parser.add_argument("--format", action="append", choices=["png", "pdf", "svg"], dest="formats",
                        help="file formats (repeatable; default: png and pdf)")


def run(args: argparse.Namespace) -> int:
    from emogrid.cli_config import results_from_args

    if not (args.tables and args.out and args.runs):
        results = results_from_args(args)
        args.tables = args.tables or str(results / "tables")
        args.out = args.out or str(results / "figures")
        args.runs = args.runs or str(results / "runs")
    result = make_figures(args.tables, args.out, args.runs, args.confusion,
                          tuple(args.formats) if args.formats else FORMATS)
    info = result["heatmap"]
    print(f"emogrid figures: {len(result['written'])} files -> {args.out} "
          f"(heatmap: {info['annotated']} cells, {len(info['missing'])} without results)")
    return 0
