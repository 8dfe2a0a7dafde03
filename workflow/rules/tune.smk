# Tuning (the study's `tune:` section): tuning cells (validation only) -> one selection per group
# (a checkpoint writing <results>/tune/<group>.json) -> the study's cells with the chosen values.
# Logic: emogrid.study.tuning (what to train and choose), emogrid.results.tune_select (the choice).
#
# The study's train jobs take their group's choice file as an `ancient` input through a
# checkpoint (train.smk, common.smk: tuned_choice): Snakemake plans them once the choice exists,
# and only a changed choice (their spec, a param) reruns them, never a re-selection that chose
# the same values. Under successive halving each earlier rung is a checkpoint too (its rung file
# says which candidates go on). Without `tune:` these rules match nothing.


localrules:
    tune_rung,
    tune_select,


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
