# One job per grid cell. The spec parameter holds everything that affects the cell, so a
# changed hyperparameter reruns exactly the cells that use it.
# Resources (gpu/gres, mem_mb, runtime, cpus_per_task, slurm_partition, slurm_account,
# constraint) come from config resources.train + models.<name>.resources (emogrid.scheduling.resources).
# `emogrid gpu-slot` gives each concurrent job its own GPU on a workstation (one lock file per
# GPU; EMOGRID_GPUS = the declared `--resources gpu=N`) and keeps SLURM's assignment on a cluster.
# resources.train.cells_per_gpu (auto | N) lets gpu-slot pack several cells on one GPU (emogrid.scheduling.gpu_ledger);
# resources.train.gpu: N > 1 runs the cell over N GPUs (torchrun: DDP, FSDP for full; emogrid.training.distributed).
# (EMOGRID_GPUS and the packing settings are exported in common.smk.)
from emogrid.planning.job_resources import needs_planner, planned_host_mem_mb, rule_resources


rule train:
    input:
        unpack(cell_data),
        unpack(tuned_choice),  # a tuned cell waits for its group's choice (tune.smk)
    output:
        metrics=f"{RESULTS}/runs/{{cell}}/metrics.json",
        predictions=f"{RESULTS}/runs/{{cell}}/predictions.jsonl",
        train_log=f"{RESULTS}/runs/{{cell}}/train_log.jsonl",
    # run.log in the cell folder is written by `emogrid train` itself and appended across
    # resumes and retries (Snakemake empties a rule's `log:` before each attempt); this log
    # holds one attempt's console output.
    log:
        f"{RESULTS}/logs/train/{{cell}}.log",
    conda:
        "../../envs/train.yaml"
    threads: lambda wc: int(config["resources"].get("train", {}).get("cpus_per_task", 1))
    resources:
        **rule_resources(
            config,
            "train",
            cell_of,
            planner=(lambda cell: planned_host_mem_mb(cell, config)) if needs_planner(config) else None,
        ),
        attempt=lambda wc, attempt: attempt,
        # no mem_mb in config -> planned host memory x resources.safety_margin (emogrid.planning.memory)
    params:
        spec=lambda wc: json.dumps(cell_of(wc).spec, sort_keys=True),
        data=lambda wc: f"{RESULTS}/{cell_of(wc).data_dir}",
        out=lambda wc: f"{RESULTS}/{cell_of(wc).run_dir}",
        fetched=lambda wc: model_receipt(cell_of(wc)),
    shell:
        # Offline: hub models come from their fetch receipt (a compute node has no network).
        "HF_HUB_OFFLINE=1 python -m emogrid gpu-slot --need {resources.cell_gpus} --mem-mb {resources.gpu_plan_mb}"
        " -- python -m emogrid train --spec {params.spec:q}"
        " --data {params.data:q} --out {params.out:q} --fetched={params.fetched:q} --attempt {resources.attempt}"
        " --processes {resources.cell_gpus} > {log:q} 2>&1"
