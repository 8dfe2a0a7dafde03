"""The names of the files the report steps write: one light module (no pandas, no torch), read
by `emogrid.report.tables`, `emogrid.report.plots`, `emogrid.report.aggregate` and the workflow's report rules, so a
table or figure is named in exactly one place."""

from __future__ import annotations

# `emogrid aggregate`: the tidy data (tuning.csv: a tuned study's candidates, emogrid.results.tuning)
AGGREGATE_DATA = ["cells.csv", "cells.parquet", "summary.csv", "summary.parquet", "comparisons.csv",
                  "per_class.csv", "levels.json", "sources.csv", "sources.md", "tuning.csv"]
# `emogrid aggregate`: the paper tables, each as .csv, .md and booktabs .tex
TABLE_STEMS = ["study_accuracy", "study_f1_macro", "efficiency", "per_class_f1", "method_comparisons",
               "replication", "recipe"]
TABLE_FILES = [f"{stem}.{ext}" for stem in TABLE_STEMS for ext in ("csv", "md", "tex")] + ["problems.md"]
# `emogrid figures`: each as .png and .pdf, with a caption workflow/report/<name>.rst
FIGURE_NAMES = ["study_heatmap", "accuracy_vs_samples", "tradeoffs", "per_class_f1", "replication", "tuning"]
# the tables that `emogrid figures` reads
FIGURE_INPUTS = ["cells.csv", "summary.csv", "per_class.csv", "levels.json", "replication.csv", "tuning.csv"]
# tables shown in the HTML report: file -> (caption in workflow/report/, subcategory)
REPORT_TABLES = {
    "cells.csv": ("cells.rst", "Data"),
    "summary.csv": ("summary.rst", "Data"),
    "sources.csv": ("sources.rst", "Data"),
    "comparisons.csv": ("comparisons.rst", "Data"),
    "study_accuracy.csv": ("study_tables.rst", "Paper tables"),
    "study_f1_macro.csv": ("study_tables.rst", "Paper tables"),
    "efficiency.csv": ("efficiency.rst", "Paper tables"),
    "per_class_f1.csv": ("per_class_table.rst", "Paper tables"),
    "replication.csv": ("replication_table.rst", "Paper tables"),
    "recipe.csv": ("recipe.rst", "Paper tables"),
    "tuning.csv": ("tuning_table.rst", "Tuning"),
}
# the HTML report's section of a figure or table, where it is not the default (Figures / Tables)
REPORT_CATEGORY = {"tuning": "Tuning", "tuning.csv": "Tuning"}
# code whose edits rerun a report step (never a training cell): inputs of the rules
AGGREGATE_CODE = ["report/aggregate.py", "report/tables.py", "report/outputs.py", "training/cell_files.py",
                  "results/stats.py", "results/uncertainty.py", "results/replication.py", "results/sources.py",
                  "results/collect.py", "results/summary.py", "results/paired_comparisons.py", "results/levels.py",
                  "report/paper_tables/__init__.py", "report/paper_tables/layout.py",
                  "report/paper_tables/study.py", "report/paper_tables/efficiency.py",
                  "report/paper_tables/per_class.py", "report/paper_tables/comparisons.py",
                  "report/paper_tables/problems.py", "report/paper_tables/replication.py",
                  "report/paper_tables/recipe.py", "study/recipe.py", "study/stated.py",
                  "report/paper_tables/health.py", "results/tuning.py", "training/health.py"]
FIGURES_CODE = ["report/plots.py", "report/outputs.py", "report/figures/__init__.py", "report/figures/style.py",
                "report/figures/select.py", "report/figures/heatmap.py", "report/figures/lines.py",
                "report/figures/tradeoffs.py", "report/figures/per_class.py", "report/figures/replication.py",
                "report/figures/tuning.py"]
