# One job per grid cell. The spec parameter holds everything that affects the cell, so a
# changed hyperparameter reruns exactly the cells that use it.


rule train:
    input:
        unpack(cell_data),
    output:
        metrics=f"{RESULTS}/runs/{{cell}}/metrics.json",
        predictions=f"{RESULTS}/runs/{{cell}}/predictions.jsonl",
        train_log=f"{RESULTS}/runs/{{cell}}/train_log.jsonl",
    log:
        f"{RESULTS}/runs/{{cell}}/run.log",
    params:
        spec=lambda wc: json.dumps(cell_of(wc).spec, sort_keys=True),
        data=lambda wc: f"{RESULTS}/{cell_of(wc).data_dir}",
        out=lambda wc: f"{RESULTS}/{cell_of(wc).run_dir}",
    resources:
        attempt=lambda wc, attempt: attempt,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m emogrid train --spec {params.spec:q} --data {params.data:q} --out {params.out:q}"
        " --attempt {resources.attempt}"
