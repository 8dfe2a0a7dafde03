# Tables, figures and the HTML report: thin rules around `emogrid aggregate` and
# `emogrid figures`.
#
# Output names live in emogrid.report.outputs; what the rules wait for in emogrid.report.rule_inputs (through
# the helpers of common.smk).
#
# Rerun triggers (Snakemake 9: mtime, params, input, software-env, code), by design:
# - `aggregate` declares the table code (emogrid.report.outputs.AGGREGATE_CODE) as inputs and
#   `figures` declares the plotting code (emogrid.report.outputs.FIGURES_CODE): editing plotting code
#   reruns `figures` only; editing table code reruns `aggregate` + `figures`. None of these files is an input of
#   `train` or `prepare_data`, and nothing downstream of the tables feeds training, so
#   presentation changes can never retrain a cell.
# - A failed cell (failure.json, no metrics.json) enters `aggregate` through its
#   failure.json, so it does not block the tables on the next run. Retry one explicitly
#   (snakemake <results>/runs/<cell>/metrics.json) or delete its failure.json.
# - Report-only mode (--config report_only=True, or env EMOGRID_REPORT_ONLY=1) drops every
#   results file from the inputs of `aggregate`: the DAG then holds `aggregate` and
#   `figures` only, so no training or data job can be scheduled, whatever changed in the
#   config or code. A fingerprint of the result files (path, size, mtime) is a param
#   instead, so new or changed results still rerun the tables.
#       snakemake --cores 1 figures --configfile studies/x.yaml --config report_only=True
#       snakemake --report results/x/report.html figures --configfile studies/x.yaml --config report_only=True
#   (<results> = the study's folder: `results:`, else results/<study.name>; emogrid.report.regenerate)
#   (Snakemake reads `True` as a boolean; `true` stays a string and fails validation.)
report: REPORT_TEXT  # workflow/report/workflow.rst with the study's folder and commands (common.smk)


# Seconds of pandas/matplotlib: not worth two queue round-trips on a cluster.
localrules:
    aggregate,
    figures,


rule aggregate:
    input:
        results=aggregate_results,
        reference=reference_file,
        tune=tune_choices,  # the tuning choices (tune.smk): the report's Tuning section
        code=[str(EMOGRID_SRC / n) for n in outputs.AGGREGATE_CODE],
    output:
        [table_output(n) for n in outputs.AGGREGATE_DATA + outputs.TABLE_FILES],
    log:
        f"{RESULTS}/logs/report/aggregate.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(config, "report"),
    params:
        runs=f"{RESULTS}/runs",
        out=lambda wildcards, output: os.path.dirname(output[0]),
        config=json.dumps(config, sort_keys=True, default=str),
        fingerprint=results_fingerprint,
    shell:
        "python -m emogrid aggregate --runs {params.runs:q} --out {params.out:q}"
        " --config-json {params.config:q} > {log:q} 2>&1"


rule figures:
    input:
        tables=[f"{TABLES}/{n}" for n in outputs.FIGURE_INPUTS],
        code=[str(EMOGRID_SRC / n) for n in outputs.FIGURES_CODE],
    output:
        [
            report(
                update(f"{FIGURES}/{n}.png"),
                caption=f"../report/{n}.rst",
                category=outputs.REPORT_CATEGORY.get(n, "Figures"),
            )
            for n in outputs.FIGURE_NAMES
        ],
        [update(f"{FIGURES}/{n}.pdf") for n in outputs.FIGURE_NAMES],
    log:
        f"{RESULTS}/logs/report/figures.log",
    conda:
        "../../envs/report.yaml"
    resources:
        **rule_resources(config, "report"),
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        out=lambda wildcards, output: os.path.dirname(output[0]),
        runs=f"{RESULTS}/runs",
    shell:
        "python -m emogrid figures --tables {params.tables:q} --out {params.out:q}"
        " --runs {params.runs:q} > {log:q} 2>&1"
