# One job per (dataset, labels k, samples n, seed): every model and method of that subset
# reads these very files.
from emogrid.planning.job_resources import rule_resources  # resources.data of config.yaml


rule prepare_data:
    input:
        # a hub dataset is read from its fetched snapshot (fetch.smk); ancient: see train.smk
        fetched=lambda wc: [ancient(dataset_receipt(wc.dataset))] if dataset_receipt(wc.dataset) else [],
    output:
        multiext(
            f"{RESULTS}/data/{{dataset}}/k{{k}}_n{{n}}_s{{seed}}/",
            "train.jsonl",
            "val.jsonl",
            "test.jsonl",
            "manifest.json",
        ),
    log:
        f"{RESULTS}/logs/data/{{dataset}}/k{{k}}_n{{n}}_s{{seed}}.log",
    conda:
        "../../envs/train.yaml"
    resources:
        **rule_resources(config, "data"),
    params:
        # this dataset's definition only: editing another dataset reruns none of these subsets
        data=lambda wc: json.dumps(DATASETS[wc.dataset].as_json(), sort_keys=True),
        cache=f"{RESULTS}/.cache/datasets",
        fetched=lambda wc: dataset_receipt(wc.dataset),
        out=lambda wc: f"{RESULTS}/{subset_dir(wc.dataset, wc.k, wc.n, wc.seed)}",
    shell:
        "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m emogrid prepare --data {params.data:q} --fetched={params.fetched:q} --labels {wildcards.k} --samples {wildcards.n}"
        " --seed {wildcards.seed} --out {params.out:q} --cache {params.cache:q} > {log:q} 2>&1"
