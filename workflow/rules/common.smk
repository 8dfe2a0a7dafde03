# Config -> validated grid. All logic lives in src/emogrid (study/config.py, study/grid.py, ...).
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

from emogrid.report import outputs
from emogrid.report import regenerate
from emogrid.report import rule_inputs as reporting
from emogrid.training import tracking
from emogrid.planning.study_check import check_study
from emogrid.errors import EmogridError
from emogrid.data.fetch import cache_dir, hub_datasets, hub_models, receipt_path
from emogrid.scheduling.resources import export_declared_gpus, export_packing
from emogrid.planning.job_resources import unfit_cells_message
from emogrid.study.grid import dataset_definitions, expand_cells, subset_dir, subsets
from emogrid.study.results_dir import study_results_dir
from emogrid.study.tuning import Tuning

# Jobs run `python -m emogrid`: put this checkout's package first on the path, so conda
# envs (which hold only the dependencies) and cluster nodes run exactly this code.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")) if p
)

try:
    # Every check in one message (emogrid.planning.study_check): schema, semantics, report.reference,
    # dataset sources; in the main process also lora/ia3 targets against each model's modules and
    # each local table drawn into its subsets (the data step's own messages), before any job.
    _checked, _warnings = check_study(config, deep=workflow.is_main_process and not reporting.report_only(config))
    config.update(_checked)
except EmogridError as err:
    # A user error: one clear message, no traceback, before any job is scheduled.
    print(f"emogrid: {err}", file=sys.stderr)
    sys.exit(2)
if workflow.is_main_process:
    for _note in _warnings:
        print(f"emogrid: warning: {_note}", file=sys.stderr)
validate(config, "../schemas/config.schema.yaml")  # Snakemake's own check (passed above); a link to emogrid/schemas/
# One study, one results folder: `results:`, else results/<study.name> (emogrid.study.results_dir,
# the rule every emogrid command follows); everything below writes under it.
RESULTS = study_results_dir(config).as_posix()
# Live curves (train.report_to) travel in the environment, not in the cell spec: switching
# them on or off never reruns a finished cell (emogrid.training.tracking).
tracking.export(config)
# the declared `--resources gpu=N` and resources.train.cells_per_gpu, for emogrid gpu-slot
# (and for the fit check below: a cell may spread over the declared GPUs)
export_declared_gpus(workflow.global_resources)
export_packing(config)
# jobs on other machines (the SLURM profile): a cell asking for a GPU gets one there, whatever
# this machine has (emogrid.planning.job_resources.device_plan plans its host memory for it)
os.environ["EMOGRID_REMOTE_JOBS"] = "1" if workflow.non_local_exec else "0"


# Jobs need these (set above); remote executors pass declared variables on to them.
envvars:
    "PYTHONPATH",
    "EMOGRID_REPORT_TO",
    "EMOGRID_STUDY",
    "EMOGRID_REMOTE_JOBS",


# tune: (tune.smk, emogrid.study.tuning): the study's cells carry their group's chosen values, read
# from <results>/tune/<group>.json whenever a cell is looked up (the choice appears mid-run)
TUNING = Tuning(config, RESULTS)
CELLS = [TUNING.final(cell) for cell in expand_cells(config)]
DATASETS = dataset_definitions(config)  # name -> complete definition (grid.datasets)
CELL_BY_ID = {cell.cell_id: cell for cell in CELLS}

if workflow.is_main_process:
    # with resources.train.gpu_mem_mb declared: cells that can't fit stop here, before any
    # submission (emogrid.planning.memory on the meta device; nothing imported without it)
    _unfit = unfit_cells_message(config, CELLS)
    if _unfit:
        print(f"emogrid: {_unfit}", file=sys.stderr)
        sys.exit(2)

# Results Snakemake may not see as they are: an invalid metrics.json (schema, cell id, config
# hash) is moved aside so the cell trains again; a valid one that an interrupted Snakemake left
# marked incomplete is kept (emogrid.training.cell_files.reconcile). Main process only (cluster jobs parse
# this file too), never in report-only mode.
if (
    workflow.is_main_process
    and not str(config.get("report_only", False)).lower() in ("1", "true")
    and os.environ.get("EMOGRID_REPORT_ONLY", "0").lower() not in ("1", "true", "yes", "on")
):
    from emogrid.training.cell_files import reconcile

    for _note in reconcile(CELLS, RESULTS):  # also under -n: an invalid file is never a result
        print(f"emogrid: {_note}", file=sys.stderr)
SUBSETS = subsets(CELLS)
DATA_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "manifest.json")


# The three grid-level wildcards are plain names/numbers; `cell` is a whole cell id.
wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    k=r"\d+",
    n=r"\d+",
    seed=r"\d+",
    model=r"[A-Za-z0-9][A-Za-z0-9._-]*",


# Hub models and datasets are fetched once by localrules (workflow/rules/fetch.smk).
FETCH_CACHE = cache_dir(config, RESULTS)
HUB_MODELS = hub_models(config)
HUB_DATASETS = hub_datasets(config)


def dataset_receipt(dataset):
    """The fetch receipt a dataset is read from, or "" for local files."""
    return str(receipt_path(RESULTS, "datasets", dataset)) if dataset in HUB_DATASETS else ""


def model_receipt(cell):
    """The fetch receipt a cell's model is loaded from, or "" for a local model."""
    name = cell.axes["model"]
    return str(receipt_path(RESULTS, "models", name)) if name in HUB_MODELS else ""


def cell_output(cell, name):
    return f"{RESULTS}/{cell.run_dir}/{name}"


def cell_of(wildcards):
    try:
        return TUNING.final(CELL_BY_ID[wildcards.cell])
    except KeyError:
        raise ValueError(
            f"{RESULTS}/runs/{wildcards.cell} is not a cell of this grid (see `emogrid grid` for the cell ids)"
        ) from None


def cell_data(wildcards):
    cell = cell_of(wildcards)
    files = {name.split(".")[0]: f"{RESULTS}/{cell.data_dir}/{name}" for name in DATA_FILES}
    if model_receipt(cell):
        # ancient: a re-fetch that rewrote an unchanged receipt must not retrain the grid;
        # a new revision changes the cell spec, which reruns the cell anyway.
        files["fetched"] = ancient(model_receipt(cell))
    return files


def tuned_choice(wildcards):
    """The choice file a study cell waits for (through the checkpoint), {} when it is not tuned."""
    group = TUNING.group_of(cell_of(wildcards)) if TUNING.enabled else None
    if group not in TUNED_GROUPS:  # (tune.smk)
        return {}
    return {"choice": ancient(checkpoints.tune_select.get(group=group).output[0])}


# ---------------------------------------------------------------- report (report.smk)
# Names: emogrid.report.outputs; what aggregate waits for: emogrid.report.rule_inputs.
REPORT_ONLY = reporting.report_only(config)
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
EMOGRID_SRC = Path(workflow.basedir) / "src" / "emogrid"
REPORT_TARGETS = [f"{TABLES}/{n}" for n in outputs.AGGREGATE_DATA + outputs.TABLE_FILES] + [
    f"{FIGURES}/{n}.{e}" for n in outputs.FIGURE_NAMES for e in ("png", "pdf")
]


# Tables and figures are flagged update(): Snakemake does not delete them before the job and
# restores them if it fails, and `emogrid aggregate` / `figures` write into a staging folder and
# swap the files in only when all succeeded: a failed run never loses the previous tables.
def table_output(name):
    if name in outputs.REPORT_TABLES:
        caption, sub = outputs.REPORT_TABLES[name]
        category = outputs.REPORT_CATEGORY.get(name, "Tables")
        return report(update(f"{TABLES}/{name}"), caption=f"../report/{caption}", category=category, subcategory=sub)
    return update(f"{TABLES}/{name}")


def aggregate_results(wildcards):
    """Result files `aggregate` waits for: one per cell, none in report-only mode."""
    return reporting.result_inputs([f"{RESULTS}/{cell.run_dir}" for cell in CELLS], REPORT_ONLY)


def results_fingerprint(wildcards):
    """Report-only mode: a digest of every result file, so new results rerun `aggregate`."""
    return reporting.results_fingerprint(RESULTS, REPORT_ONLY)


# The study's own config files, for the commands the report and the last log line print.
STUDY_CONFIGFILES = [] if DEFAULT_STUDY else list(workflow.overwrite_configfiles or [])
# The report's text with the study's folder and regenerate commands filled in (emogrid.report.regenerate),
# rendered into Snakemake's per-run temporary folder.
REPORT_TEXT = str(
    regenerate.render_report_text(
        Path(workflow.basedir) / "workflow" / "report" / "workflow.rst",
        workflow.snakemake_tmp_dir,
        RESULTS,
        STUDY_CONFIGFILES,
    )
)


def reference_file(wildcards):
    """report.reference (published numbers): editing it reruns the tables."""
    return reporting.reference_input(config, workflow.basedir)
