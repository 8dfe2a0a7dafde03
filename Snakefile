# emogrid: a study (--configfile studies/*.yaml, else the default study config.yaml beside
# this file) -> one data job per subset, one training job per grid cell, then tables, figures
# and the HTML report.
import sys

from snakemake.utils import min_version

from emogrid.errors import EmogridError
from emogrid.study.config import workflow_default_study

min_version("9.0")

# A study given with --configfile is the whole study: config.yaml is read only when none is
# given, never merged under another study (emogrid.study.config).
try:
    DEFAULT_STUDY = workflow_default_study(workflow)
except EmogridError as err:
    print(f"emogrid: {err}", file=sys.stderr)
    sys.exit(2)
if DEFAULT_STUDY:

    configfile: DEFAULT_STUDY


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tune_inputs.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/report.smk"


onsuccess:
    # Snakemake's --report is a mode, not a target: the last line says how to build the HTML report.
    print(
        f"emogrid: tables and figures in {RESULTS}/; the HTML report: "
        f"{regenerate.report_command(RESULTS, STUDY_CONFIGFILES)}"
    )


rule all:
    default_target: True
    input:
        [cell_output(cell, "metrics.json") for cell in CELLS],
        REPORT_TARGETS,
        rules.plan.output,
