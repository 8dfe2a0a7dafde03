# One job per (dataset, labels k, samples n, seed): every model and method of that subset
# reads these very files.
from emogrid.resources import rule_resources  # resources.data of config.yaml


rule prepare_data:
    output:
        multiext(f"{RESULTS}/data/{{dataset}}/k{{k}}_n{{n}}_s{{seed}}/",
                 "train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"),
    params:
        # this dataset's definition only: editing another dataset reruns none of these subsets
        data=lambda wc: json.dumps(DATASETS[wc.dataset], sort_keys=True),
        cache=f"{RESULTS}/.cache/datasets",
        out=lambda wc: f"{RESULTS}/{subset_dir(wc.dataset, wc.k, wc.n, wc.seed)}",
    resources:
        **rule_resources(config, "data"),
    log:
        f"{RESULTS}/logs/data/{{dataset}}/k{{k}}_n{{n}}_s{{seed}}.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m emogrid prepare --data {params.data:q} --labels {wildcards.k} --samples {wildcards.n}"
        " --seed {wildcards.seed} --out {params.out:q} --cache {params.cache:q} > {log:q} 2>&1"
