# Plan before spending: exact parameter counts and memory estimates per cell (offline,
# meta device). The training rule's mem_mb comes from here when the config sets none, and a
# declared resources.train.gpu_mem_mb is checked for every cell before anything is submitted.


rule plan:
    input:
        workflow.configfiles,
        # hub models are planned from their fetched config.json, never from the hub
        [ancient(receipt_path(RESULTS, "models", name)) for name in HUB_MODELS],
    output:
        report(f"{RESULTS}/tables/plan.md", caption="../report/plan.rst", category="Plan"),
        f"{RESULTS}/tables/plan.csv",
        report(f"{RESULTS}/tables/lora_sizing.md", caption="../report/lora_sizing.rst", category="Plan"),
        f"{RESULTS}/tables/lora_sizing.csv",
    log:
        f"{RESULTS}/logs/report/plan.log",
    conda:
        "../../envs/train.yaml"
    resources:
        **rule_resources(config, "report"),
    params:
        # the config exactly as Snakemake merged it (the study's --configfile files in order, or
        # the default study, then --config), not the file list: the order of
        # workflow.configfiles is not the merge order
        config=json.dumps(config, sort_keys=True, default=str),
        results=lambda wildcards, output: str(Path(output[0]).parents[1]),
        out=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m emogrid plan --config-json {params.config:q} --results {params.results:q} --out {params.out:q}"
        " --quiet > {log:q} 2>&1"
