# Input functions of the tuning rules (workflow/rules/tune.smk): the tuning cells' specs and
# subset files, the cells and earlier rungs a selection waits on, the selection job, the choices
# the report reads. Kept apart from the rules (Snakemake's lint: no functions beside rules).
import re

TUNED_GROUPS = TUNING.tuned_groups() if TUNING.enabled else []
# the exact group names: a group path never matches a tuning cell's or a rung's file
GROUP_RE = "|".join(re.escape(g) for g in TUNED_GROUPS) or "(?!)"


def tune_cell_of(wildcards):
    try:
        return TUNING.tune_cell(wildcards.budget, wildcards.cell)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{RESULTS}/tune/cells/{wildcards.budget}/{wildcards.cell}: {err}") from None


def tune_cell_data(wildcards):
    """A tuning cell's subset files: train, val and the manifest, never test.jsonl."""
    cell = tune_cell_of(wildcards)
    files = {name: f"{RESULTS}/{cell.data_dir}/{name}.jsonl" for name in ("train", "val")}
    files["manifest"] = f"{RESULTS}/{cell.data_dir}/manifest.json"
    if model_receipt(cell):
        files["fetched"] = ancient(model_receipt(cell))
    return files


def tune_inputs(group, rung):
    """The result files of a rung's cells (failure.json for a failed one, so it loses instead of
    blocking the choice) and the earlier rung files; rung r > 0 waits for rung r - 1's checkpoint."""
    labels = None
    if rung > 0:
        checkpoints.tune_rung.get(group=group, rung=rung - 1)
        labels = TUNING.kept(group, rung - 1)
    run_dirs = [TUNING.run_dir(TUNING.budget(rung), c.cell_id) for c in TUNING.cells(group, rung, labels)]
    return {
        "cells": reporting.result_inputs(run_dirs, False),
        "previous": [str(TUNING.rung_path(group, r)) for r in range(rung)],
    }


def tune_job(group, rung):
    """The selection job as JSON (a param: new candidates or rules reselect; same ones never do)."""
    try:
        labels = TUNING.kept(group, rung - 1) if rung > 0 else None
    except FileNotFoundError as err:  # asked before the earlier rung ran: the job is rebuilt once it has
        return json.dumps({"pending": err.args[0]})
    job = TUNING.select_job(group, rung, labels)
    job["previous"] = [str(TUNING.rung_path(group, r)) for r in range(rung)]
    return json.dumps(job, sort_keys=True)


def tune_choices(wildcards):
    """Every choice file, for the Tuning section of the report (none in report-only mode)."""
    return [] if REPORT_ONLY else [str(TUNING.choice_path(g)) for g in TUNED_GROUPS]
