# emogrid: config.yaml (or --configfile studies/*.yaml) -> one data job per subset,
# one training job per grid cell, then tables, figures and the HTML report.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        [cell_output(cell, "metrics.json") for cell in CELLS],
        REPORT_TARGETS,
        rules.plan.output,
