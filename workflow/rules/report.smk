# Tables, figures and the HTML report: thin rules around `emogrid aggregate` and
# `emogrid figures`.
#
# Rerun triggers (Snakemake 9: mtime, params, input, software-env, code), by design:
# - `aggregate` declares src/emogrid/{aggregate,tables,stats,uncertainty}.py as inputs and `figures` declares
#   src/emogrid/plots.py (all style lives there): editing plotting code reruns `figures`
#   only; editing table code reruns `aggregate` + `figures`. Neither file is an input of
#   `train` or `prepare_data`, and nothing downstream of the tables feeds training, so
#   presentation changes can never retrain a cell.
# - A failed cell (failure.json, no metrics.json) enters `aggregate` through its
#   failure.json, so it does not block the tables on the next run. Retry one explicitly
#   (snakemake results/runs/<cell>/metrics.json) or delete its failure.json.
# - Report-only mode (--config report_only=True, or env EMOGRID_REPORT_ONLY=1) drops every
#   results file from the inputs of `aggregate`: the DAG then holds `aggregate` and
#   `figures` only, so no training or data job can be scheduled, whatever changed in the
#   config or code. A fingerprint of the result files (path, size, mtime) is a param
#   instead, so new or changed results still rerun the tables.
#       snakemake --cores 1 figures --config report_only=True
#       snakemake --report results/report.html figures --config report_only=True
#   (Snakemake reads `True` as a boolean; `true` stays a string and fails validation.)
import hashlib


def _truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


REPORT_ONLY = _truthy(config.get("report_only", False)) or _truthy(
    os.environ.get("EMOGRID_REPORT_ONLY", "0"))
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
EMOGRID_SRC = Path(workflow.basedir) / "src" / "emogrid"

# Fixed names (tests/test_report_rules.py checks them against emogrid.tables / emogrid.plots).
AGGREGATE_DATA = ["cells.csv", "cells.parquet", "summary.csv", "summary.parquet",
                  "comparisons.csv", "per_class.csv", "levels.json", "sources.csv", "sources.md"]
TABLE_STEMS = ["study_accuracy", "study_f1_macro", "efficiency", "per_class_f1", "method_comparisons",
               "replication"]
TABLE_FILES = [f"{s}.{e}" for s in TABLE_STEMS for e in ("csv", "md", "tex")] + ["problems.md"]
FIGURE_NAMES = ["study_heatmap", "accuracy_vs_samples", "tradeoffs", "per_class_f1", "replication"]
# (file, caption, category, subcategory) shown in the HTML report
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


# Tables and figures are flagged update(): Snakemake does not delete them before the job and
# restores them if it fails, and `emogrid aggregate` / `figures` write into a staging folder and
# swap the files in only when all succeeded: a failed run never loses the previous tables.
def _table_output(name):
    if name in REPORT_TABLES:
        caption, sub = REPORT_TABLES[name]
        return report(update(f"{TABLES}/{name}"), caption=f"../report/{caption}", category="Tables",
                      subcategory=sub)
    return update(f"{TABLES}/{name}")


def aggregate_results(wildcards):
    """Result files `aggregate` waits for: one per cell, none in report-only mode."""
    if REPORT_ONLY:
        return []
    paths = []
    for cell in CELLS:
        metrics = cell_output(cell, "metrics.json")
        failure = cell_output(cell, "failure.json")
        paths.append(failure if os.path.exists(failure) and not os.path.exists(metrics) else metrics)
    return paths


def reference_file(wildcards):
    """report.reference (published numbers): editing it reruns the tables."""
    ref = (config.get("report") or {}).get("reference")
    if not ref:
        return []
    local = Path(workflow.basedir) / ref  # relative to the workdir, else to the workflow
    return [ref if Path(ref).is_absolute() or Path(ref).exists() or not local.exists() else str(local)]


def results_fingerprint(wildcards):
    """Report-only mode: a digest of every result file, so new results rerun `aggregate`."""
    if not REPORT_ONLY:
        return ""
    digest = hashlib.sha256()
    runs = Path(RESULTS) / "runs"
    for root, dirs, files in os.walk(runs):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "adapter")
        for name in ("metrics.json", "failure.json"):
            if name in files:
                st = os.stat(os.path.join(root, name))
                digest.update(f"{os.path.join(root, name)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


REPORT_TARGETS = ([f"{TABLES}/{n}" for n in AGGREGATE_DATA + TABLE_FILES]
                  + [f"{FIGURES}/{n}.{e}" for n in FIGURE_NAMES for e in ("png", "pdf")])


report: "../report/workflow.rst"


# Seconds of pandas/matplotlib: not worth two queue round-trips on a cluster.
localrules:
    aggregate,
    figures,


rule aggregate:
    input:
        results=aggregate_results,
        reference=reference_file,
        code=[str(EMOGRID_SRC / n) for n in ("aggregate.py", "tables.py", "stats.py", "uncertainty.py",
                                             "replication.py")],
    output:
        [_table_output(n) for n in AGGREGATE_DATA + TABLE_FILES],
    params:
        runs=f"{RESULTS}/runs",
        out=TABLES,
        config=json.dumps(config, sort_keys=True, default=str),
        fingerprint=results_fingerprint,
    resources:
        **rule_resources(config, "report"),
    log:
        f"{RESULTS}/logs/report/aggregate.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m emogrid aggregate --runs {params.runs:q} --out {params.out:q}"
        " --config-json {params.config:q} > {log:q} 2>&1"


rule figures:
    input:
        tables=[f"{TABLES}/{n}" for n in ("cells.csv", "summary.csv", "per_class.csv", "levels.json",
                                          "replication.csv")],
        code=str(EMOGRID_SRC / "plots.py"),
    output:
        [report(update(f"{FIGURES}/{n}.png"), caption=f"../report/{n}.rst", category="Figures")
         for n in FIGURE_NAMES],
        [update(f"{FIGURES}/{n}.pdf") for n in FIGURE_NAMES],
    params:
        tables=TABLES,
        out=FIGURES,
        runs=f"{RESULTS}/runs",
    resources:
        **rule_resources(config, "report"),
    log:
        f"{RESULTS}/logs/report/figures.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m emogrid figures --tables {params.tables:q} --out {params.out:q}"
        " --runs {params.runs:q} > {log:q} 2>&1"
