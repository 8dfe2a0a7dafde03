"""Collect finished grid cells into tidy tables (`emogrid aggregate`).

Reads every ``metrics.json`` and ``failure.json`` under a runs directory (layout and fields:
docs/CONTRACTS.md) and writes, under the tables directory:

``cells.csv`` / ``cells.parquet``
    one row per cell: every axis (dataset, model, method, variant, labels, samples, seed and
    each swept parameter as its own column, e.g. ``lora.r``), ``status`` (ok / failed /
    invalid / pending), the error of a failed cell, every scalar metric as
    ``{split}_{metric}`` (``val_accuracy``, ``test_f1_macro``, ...), every efficiency field
    under its own name (``trainable_params``, ``train_seconds``, ...) and a few provenance
    fields. With a study config (``--configfile``) the expected-but-missing cells are rows with status pending.
    Also, per cell (emogrid.results.uncertainty): ``{split}_{metric}_ci95_low/high`` (Wilson for
    accuracy, BCa bootstrap over the evaluation examples for macro-F1), ``{split}_kappa`` with
    its interval, ``{split}_did_not_learn`` (kappa's interval includes 0; NA = not checked),
    ``{split}_min_class_n``, ``{split}_majority_*`` / ``{split}_uniform_*`` baselines.
``summary.csv`` / ``summary.parquet``
    one row per (cell without seed, metric): mean, std, n and a 95% confidence interval of
    the mean over seeds from Student's t (df = n - 1): ``ci95_t_half``, ``ci95_t_low``,
    ``ci95_t_high``; ``n_failed`` counts failed seeds of the group; for accuracy and F1 also
    ``ci95_boot_low/high``, the example-aware interval (``boot_method``: seed and example
    variance with a Satterthwaite t on a shared evaluation set, t over seeds when each seed has
    its own; one seed: the cell's interval), ``se_mean``, ``df_mean``, ``n_eval``,
    ``eval_sets``, ``baseline_majority``, ``baseline_uniform``, ``did_not_learn`` (every seed)
    and ``n_did_not_learn``.
``comparisons.csv``
    the family of paired tests per metric (emogrid.results.paired_comparisons): each arm vs
    the reference arm within model and subset, and in each study-table column the best row vs
    every other row; the mean difference a - b, its interval and test on the shared examples
    (McNemar exact with one seed: "these two runs"), adjusted by ``report.correction`` over
    the named family; pooled reference rows per model and study, descriptive only.
``per_class.csv``
    long table of per-class precision / recall / F1 / support per cell and split.
``levels.json``
    the order of models, methods, variants, label counts and sample sizes (config order when
    a study config is given) so every table and figure uses the same order.
``tuning.csv``
    a tuned study (`tune:`): one row per (group, rung, candidate) with its values, mean
    validation score, rank, training health and whether it was chosen (emogrid.results.tuning,
    from results/tune/<group>.json); only the header otherwise.

Then the paper tables (`emogrid.report.tables`). Never crashes on a partial, mixed-version or
unreadable tree: bad files become rows with status ``invalid``; an empty tree is a clear
`EmogridError`.

This module writes; the reading is emogrid.results.collect, the statistics emogrid.results.summary,
emogrid.results.paired_comparisons and emogrid.results.uncertainty, the axis order emogrid.results.levels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from emogrid.atomic import atomic_path, staged_dir, write_json, write_text
from emogrid.results.collect import collect, expected_cells, is_missing
from emogrid.results.levels import compute_levels
from emogrid.results.paired_comparisons import compare_methods
from emogrid.results.summary import group_columns, summarize


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with mixed types (mixed-version trees) become strings for parquet."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col].dropna().tolist()}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: v if is_missing(v) else str(v)).astype("string")
    return df


def write_frame(df: pd.DataFrame, path: Path, parquet: bool = False) -> None:
    """Write a frame as CSV (and parquet when asked), atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    if parquet:
        with atomic_path(path.with_suffix(".parquet")) as tmp:
            _arrow_safe(df).to_parquet(tmp, index=False)


def compute(runs_dir: str | os.PathLike, config: dict | None = None,
            expected: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Collect, summarise, compare, in memory: what `aggregate` writes, nothing written.

    Returns {"cells", "summary", "comparisons", "per_class", "levels", "replication" (None
    without a reference), "report" (the `report:` settings), "reps" (example-level replicates),
    "choices" (a tuned study's choice files, emogrid.results.tuning)}.
    The expected grid (pending rows, axis order) comes from `expected`, else `config`.
    """
    results_dir = Path(runs_dir).parent
    if expected is None and config is not None:
        expected = expected_cells(config=config, results=results_dir)
    report = report_settings(config)
    choices = tuning_choices(results_dir, config)
    from emogrid.results import uncertainty

    confusions: dict = {}
    cells, per_class = collect(runs_dir, expected, confusions)
    from emogrid.results import replication as replication_mod

    reference = replication_mod.load_reference(report["reference"]) if report.get("reference") else None
    splits = tuple(dict.fromkeys(["test", report["split"]]
                                 + ([] if reference is None else sorted(set(reference["split"])))))
    reps = uncertainty.example_replicates(cells, confusions, Path(runs_dir), splits)
    extra = uncertainty.cell_columns(cells, confusions, reps)
    cells = pd.concat([cells, extra], axis=1)
    levels = compute_levels(cells, expected)
    levels["report"] = report  # what tables and figures show (emogrid.report.plots reads it)
    summary = uncertainty.seed_intervals(summarize(cells), cells, reps,
                                         group_columns(cells) + ["mode"])
    compared = list(dict.fromkeys([f"{s}_{m}" for s in ("test", report["split"]) for m in ("accuracy", "f1_macro")]))
    comparisons = compare_methods(cells, levels, compared, reps=reps, reference_method=report["reference_method"],
                                  correction=report["correction"])
    arms = {(str(d), str(m), str(me)) for d, m, me in zip(cells["dataset"], cells["model"], cells["method"])}
    replication = None if reference is None else replication_mod.replication_frame(
        reference, summary, arms, report["equivalence_pp"])
    return {"cells": cells, "summary": summary, "comparisons": comparisons, "per_class": per_class,
            "levels": levels, "replication": replication, "report": report, "reps": reps, "choices": choices}


def aggregate(runs_dir: str | os.PathLike, out_dir: str | os.PathLike,
              configfiles: list[str] | None = None, tables: bool = True,
              config: dict | None = None, expected: list[dict[str, Any]] | None = None,
              per_class_samples: int | None = None) -> dict[str, Any]:
    """Collect, summarise, compare (`compute`), write. Returns the frames and timings.

    The expected grid (pending rows, axis order) comes from `expected`, else `config` (a
    config dict), else `configfiles`; without any, only the files found are reported.
    """
    t0 = time.perf_counter()
    if config is None and configfiles:
        from emogrid.study.config import load_config

        config = load_config(list(configfiles))
    frames = compute(runs_dir, config, expected)
    cells, summary, comparisons, per_class = (frames[k] for k in ("cells", "summary", "comparisons", "per_class"))
    levels, replication, report, reps = (frames[k] for k in ("levels", "replication", "report", "reps"))
    choices = frames["choices"]  # the tuning choices (results/tune/<group>.json), [] without tune:
    out_dir = Path(out_dir)
    result = {"cells": cells, "summary": summary, "comparisons": comparisons,
              "per_class": per_class, "levels": levels, "replication": replication}
    # every file is written to a staging folder first and swapped in only when all succeeded:
    # a failure anywhere leaves the previous tables in place
    with staged_dir(out_dir) as stage:
        write_frame(cells, stage / "cells.csv", parquet=True)
        write_frame(summary, stage / "summary.csv", parquet=True)
        write_frame(comparisons, stage / "comparisons.csv")
        write_frame(per_class, stage / "per_class.csv")
        from emogrid.results.tuning import tuning_frame

        write_frame(tuning_frame(choices), stage / "tuning.csv")
        write_json(stage / "levels.json", levels)
        from emogrid.results import sources

        source_table = sources.sources_frame(cells)
        write_frame(source_table, stage / "sources.csv")
        write_text(stage / "sources.md", sources.to_markdown(source_table))
        if tables:
            from emogrid.report import tables as tables_mod

            written = tables_mod.write_tables(stage, cells, summary, per_class,
                                              comparisons, levels, per_class_samples,
                                              report=report, replication=replication, config=config,
                                              tuning=choices)
            result["tables"] = [out_dir / Path(p).relative_to(stage) for p in written]
    result["seconds"] = time.perf_counter() - t0
    return result


def tuning_choices(results_dir: Path, config: dict | None) -> list[dict]:
    """The study's tuning choices (results/tune/<group>.json): its groups' with a config that
    tunes, none with one that does not, every choice file found without a config."""
    from emogrid.results.tuning import read_choices

    tune_dir = results_dir / "tune"
    if config is None:
        return read_choices(tune_dir) if tune_dir.is_dir() else []
    from emogrid.study.tuning import Tuning

    tuning = Tuning(config, results_dir)
    return read_choices(tune_dir, tuning.tuned_groups()) if tuning.enabled else []


DEFAULT_REPORT = {"metric": ["accuracy", "f1_macro"], "split": "test", "reference": None,
                  "correction": "holm", "reference_method": None, "equivalence_pp": None}


def report_settings(config: dict | None) -> dict:
    """`report:` of a config (what tables and figures show), with defaults when absent."""
    report = dict(DEFAULT_REPORT)
    report.update((config or {}).get("report") or {})
    if isinstance(report["metric"], str):
        report["metric"] = [report["metric"]]
    return report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default=None,
                        help="runs directory holding {cell_id}/metrics.json (default: <results>/runs)")
    parser.add_argument("--out", default=None,
                        help="tables directory to write (default: <results>/tables)")
    from emogrid.cli_config import add_config_args, add_results_arg

    add_config_args(parser)  # with a study config: pending rows for cells not yet run, its order
    add_results_arg(parser)
    parser.add_argument("--per-class-samples", type=int, default=None, metavar="N",
                        help="per-class F1 table at this sample size (default: the largest n of each k)")
    parser.add_argument("--no-tables", action="store_true",
                        help="write only the tidy data (cells, summary, comparisons), no paper tables")


def run(args: argparse.Namespace) -> int:
    from emogrid.cli_config import config_from_args, config_given, results_from_args

    config = config_from_args(args) if config_given(args) else None
    if not (args.runs and args.out):
        results = results_from_args(args)
        args.runs = args.runs or str(results / "runs")
        args.out = args.out or str(results / "tables")
    result = aggregate(args.runs, args.out, tables=not args.no_tables,
                       config=config, per_class_samples=args.per_class_samples)
    counts = result["cells"]["status"].value_counts().to_dict()
    parts = ", ".join(f"{counts[k]} {k}" for k in ("ok", "failed", "invalid", "pending") if k in counts)
    print(f"emogrid aggregate: {len(result['cells'])} cells ({parts}) -> {args.out} "
          f"in {result['seconds']:.2f}s")
    invalid = result["cells"][result["cells"]["status"] == "invalid"]
    if len(invalid):
        print(f"emogrid aggregate: {len(invalid)} invalid result file(s), not tabled (listed in "
              f"{Path(args.out) / 'problems.md'}; the next snakemake run trains them again):",
              file=sys.stderr)
        for error in invalid["error"].head(20):
            print(f"  {error}", file=sys.stderr)
    return 0
