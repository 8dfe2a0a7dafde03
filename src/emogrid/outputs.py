"""The names of the files the report steps write: one light module (no pandas, no torch), read
by `emogrid.tables`, `emogrid.plots`, `emogrid.aggregate` and the workflow's report rules, so a
table or figure is named in exactly one place."""

from __future__ import annotations

# `emogrid aggregate`: the tidy data
AGGREGATE_DATA = ["cells.csv", "cells.parquet", "summary.csv", "summary.parquet", "comparisons.csv",
                  "per_class.csv", "levels.json", "sources.csv", "sources.md"]
# `emogrid aggregate`: the paper tables, each as .csv, .md and booktabs .tex
TABLE_STEMS = ["study_accuracy", "study_f1_macro", "efficiency", "per_class_f1", "method_comparisons",
               "replication"]
TABLE_FILES = [f"{stem}.{ext}" for stem in TABLE_STEMS for ext in ("csv", "md", "tex")] + ["problems.md"]
# `emogrid figures`: each as .png and .pdf, with a caption workflow/report/<name>.rst
FIGURE_NAMES = ["study_heatmap", "accuracy_vs_samples", "tradeoffs", "per_class_f1", "replication"]
# the tables that `emogrid figures` reads
FIGURE_INPUTS = ["cells.csv", "summary.csv", "per_class.csv", "levels.json", "replication.csv"]
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
}
# code whose edits rerun a report step (never a training cell): inputs of the rules
AGGREGATE_CODE = ["aggregate.py", "tables.py", "stats.py", "uncertainty.py", "replication.py", "results.py",
                  "sources.py", "outputs.py", "collect.py", "summary.py", "paired_comparisons.py", "levels.py",
                  "paper_tables/__init__.py", "paper_tables/layout.py",
                  "paper_tables/study.py", "paper_tables/efficiency.py", "paper_tables/per_class.py",
                  "paper_tables/comparisons.py", "paper_tables/problems.py"]
FIGURES_CODE = ["plots.py", "outputs.py", "figures/__init__.py", "figures/style.py", "figures/select.py",
                "figures/heatmap.py", "figures/lines.py", "figures/tradeoffs.py", "figures/per_class.py",
                "figures/replication.py"]
