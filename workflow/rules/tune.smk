# Tuning (the study's `tune:` section): tuning cells (validation only) -> one selection per group
# (a checkpoint writing results/tune/<group>.json) -> the study's cells with the chosen values.
# Logic: emogrid.study.tuning (what to train and choose), emogrid.results.tune_select (the choice).
#
# The study's train jobs take their group's choice file as an `ancient` input through a
# checkpoint (train.smk, common.smk: tuned_choice): Snakemake plans them once the choice exists,
# and only a changed choice (their spec, a param) reruns them, never a re-selection that chose
# the same values. Under successive halving each earlier rung is a checkpoint too (its rung file
# says which candidates go on). Without `tune:` these rules match nothing.
import re

TUNED_GROUPS = TUNING.tuned_groups() if TUNING.enabled else []
# the exact group names: a group path never matches a tuning cell's or a rung's file
GROUP_RE = "|".join(re.escape(g) for g in TUNED_GROUPS) or "(?!)"


localrules:
    tune_rung,
    tune_select,


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
    return {"cells": reporting.result_inputs(run_dirs, False),
            "previous": [str(TUNING.rung_path(group, r)) for r in range(rung)]}


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


# A tuning cell: the train rule's command on a tuning spec (`tuning` block: validation only, a
# rung's share of the epochs), in its own folder; resources as for the study's cells.
use rule train as tune_train with:
    input:
        unpack(tune_cell_data),
    output:
        metrics=f"{RESULTS}/tune/cells/{{budget}}/{{cell}}/metrics.json",
        predictions=f"{RESULTS}/tune/cells/{{budget}}/{{cell}}/predictions.jsonl",
        train_log=f"{RESULTS}/tune/cells/{{budget}}/{{cell}}/train_log.jsonl",
    log:
        f"{RESULTS}/logs/tune/{{budget}}/{{cell}}.log",
    wildcard_constraints:
        budget=r"full|1of\d+",
    resources:
        **rule_resources(config, "train", tune_cell_of, planner=planned_host_mem_mb if needs_planner(config) else None),
        attempt=lambda wc, attempt: attempt,
    params:
        spec=lambda wc: json.dumps(tune_cell_of(wc).spec, sort_keys=True),
        data=lambda wc: f"{RESULTS}/{tune_cell_of(wc).data_dir}",
        out=lambda wc: TUNING.run_dir(wc.budget, wc.cell),
        fetched=lambda wc: model_receipt(tune_cell_of(wc)),


# An earlier rung of successive halving: which candidates go on.
checkpoint tune_rung:
    input:
        unpack(lambda wc: tune_inputs(wc.group, int(wc.rung))),
    output:
        f"{RESULTS}/tune/{{group}}.rung{{rung}}.json",
    log:
        f"{RESULTS}/logs/tune/{{group}}.rung{{rung}}.log",
    wildcard_constraints:
        group=GROUP_RE,
        rung=r"\d+",
    conda:
        "../../envs/report.yaml"
    params:
        job=lambda wc: tune_job(wc.group, int(wc.rung)),
    shell:
        "python -m emogrid tune-select --job {params.job:q} --out {output:q} > {log:q} 2>&1"


# The choice of a group: its last rung ranked, the chosen values, the rule and the compute.
checkpoint tune_select:
    input:
        unpack(lambda wc: tune_inputs(wc.group, TUNING.last_rung(wc.group))),
    output:
        f"{RESULTS}/tune/{{group}}.json",
    log:
        f"{RESULTS}/logs/tune/{{group}}.log",
    wildcard_constraints:
        group=GROUP_RE,
    conda:
        "../../envs/report.yaml"
    params:
        job=lambda wc: tune_job(wc.group, TUNING.last_rung(wc.group)),
    shell:
        "python -m emogrid tune-select --job {params.job:q} --out {output:q} > {log:q} 2>&1"
