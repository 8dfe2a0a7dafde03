# Fetch once, where the network is: one job per hub model and per hub dataset, run on the
# machine Snakemake runs on (the login node under profiles/slurm). Training and data jobs
# take the receipt as input and load the snapshot offline (HF_HUB_OFFLINE=1), so a missing
# model stops its cells before any of them is queued. Logic: emogrid.data.fetch.


localrules:
    fetch_model,
    fetch_dataset,


rule fetch_model:
    output:
        f"{RESULTS}/fetch/models/{{model}}.json",
    log:
        f"{RESULTS}/logs/fetch/models/{{model}}.log",
    conda:
        "../../envs/train.yaml"
    params:
        spec=lambda wc: json.dumps(HUB_MODELS[wc.model], sort_keys=True),
        cache=str(FETCH_CACHE),
    shell:
        "python -m emogrid fetch --model {wildcards.model} --spec {params.spec:q}"
        " --cache {params.cache:q} --receipt {output:q} > {log:q} 2>&1"


rule fetch_dataset:
    output:
        f"{RESULTS}/fetch/datasets/{{dataset}}.json",
    log:
        f"{RESULTS}/logs/fetch/datasets/{{dataset}}.log",
    conda:
        "../../envs/train.yaml"
    params:
        spec=lambda wc: json.dumps(HUB_DATASETS[wc.dataset], sort_keys=True),
        cache=str(FETCH_CACHE),
    shell:
        "python -m emogrid fetch --dataset {wildcards.dataset} --spec {params.spec:q}"
        " --cache {params.cache:q} --receipt {output:q} > {log:q} 2>&1"
