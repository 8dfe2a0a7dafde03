"""The Snakemake DAG: one data job per subset, one training job per cell, plus report targets."""

from __future__ import annotations

import pytest
from conftest_grid import RESULTS

from tests.helpers import job_counts, snakemake


def write(path, text):
    path.write_text(text)
    return path


def test_default_config_dry_run_job_counts(tmp_path, monkeypatch):
    """No --configfile: the default study, config.yaml beside the Snakefile (the run is in tmp_path)."""
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    proc = snakemake(tmp_path, "-n", base=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["prepare_data"] == 4 * 3 * 3          # (labels, samples, seed)
    assert counts["train"] == 4 * 3 * 5 * 3             # x models
    assert counts["all"] == 1
    assert counts.get("aggregate") == 1


def test_swept_grid_dry_run_job_counts(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    study = write(tmp_path / "sweep.yaml",
                  "grid: {labels: [2, 4], samples: [800], models: [bert-base, gpt2-xl],"
                  " methods: [lora, full], seeds: [0, 1]}\n"
                  "lora: {r: [8, 16, 64]}\n")
    proc = snakemake(tmp_path, "-n", configfiles=[study])
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["prepare_data"] == 2 * 1 * 2
    # lora: 3 ranks; full ignores lora.r -> 1
    assert counts["train"] == 2 * 1 * 2 * 2 * (3 + 1)
    assert "results/goemotions-qlora/runs/goemotions/gpt2-xl/lora/lora.r=64/k4_n800/s1/metrics.json" in proc.stdout


@pytest.mark.parametrize("patch, expected", [
    ("grid: {labels: []}\n", "grid.labels: must not be empty"),
    ("grid: {models: [nope]}\n", "grid.models[0]: model 'nope' is not defined"),
    ("train: {lr: 1e-4}\n", "YAML reads 1e-4 as text"),
    # N GPUs each train batch_size / N: said before scheduling, not by N processes after the data
    ("resources: {train: {gpu: 3}}\ntrain: {batch_size: 16}\n",
     "train.batch_size 16 (model qwen2.5-1.5b) cannot be split evenly over the 3 GPUs of resources.train.gpu"),
])
def test_bad_config_stops_snakemake_with_one_message(tmp_path, patch, expected):
    proc = snakemake(tmp_path, "-n", configfiles=[write(tmp_path / "bad.yaml", patch)])
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert expected in out and "Traceback" not in out


def test_plan_feeds_the_scheduler(tmp_path, monkeypatch):
    """No mem_mb in config -> the planner's host estimate x margin; a too-small GPU stops early."""
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    study = write(tmp_path / "plan.yaml",
                  "grid: {labels: [2], samples: [800], models: [gpt2-xl], methods: [qlora, full], seeds: [0]}\n")
    import yaml

    from tests.helpers import REPO

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    del base["resources"]["train"]["mem_mb"]
    nomem = write(tmp_path / "base.yaml", yaml.safe_dump(base))
    proc = snakemake(tmp_path, "-n", configfiles=[nomem, study], base=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mems = {line.split("mem_mb=")[1].split(",")[0] for line in proc.stdout.splitlines()
            if "attempt=1" in line and "mem_mb=" in line}
    assert len(mems) == 2 and all(int(m) > 4000 for m in mems)  # qlora and full plan differently

    tight = write(tmp_path / "tight.yaml", "resources: {train: {gpu_mem_mb: 16000}}\n")
    # a machine with one GPU: full fine-tuning of GPT-2 XL cannot be spread, the run stops
    proc = snakemake(tmp_path, "-n", "--resources", "gpu=1", configfiles=[study, tight])
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "cannot fit resources.train.gpu_mem_mb=16000" in out
    assert "goemotions/gpt2-xl/full/k2_n800/s0" in out and "gpt2-xl/qlora" not in out
    assert "Traceback" not in out
    # with 8 GPUs the planner spreads that cell over several (FSDP); qlora keeps one
    proc = snakemake(tmp_path, "-n", "--resources", "gpu=8", configfiles=[study, tight])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    gpus = {line.split("cell_gpus=")[1].split(",")[0] for line in proc.stdout.splitlines() if "cell_gpus=" in line}
    assert "1" in gpus and any(int(g) > 1 for g in gpus), gpus


def test_plan_rule_plans_the_study_not_the_default_grid(finished_grid):
    """`--configfile config.yaml study.yaml`: the plan rule must see the merged study (the
    session's grid, tests/conftest_grid.py: tiny models, CPU), not whichever file came last on
    its own command line (config.yaml's grid: qwen2.5-1.5b, llama-3.2-1b, gpt2-xl, ...)."""
    assert finished_grid.proc.returncode == 0, finished_grid.proc.stderr[-3000:]
    plan = (finished_grid.work / RESULTS / "tables" / "plan.md").read_text()
    assert "| tiny-llama | lora |" in plan and "| tiny-bert | full |" in plan
    assert "qwen" not in plan and "llama-3.2" not in plan and "gpt2-xl" not in plan
    assert "| cpu |" in plan and "| cuda |" not in plan
