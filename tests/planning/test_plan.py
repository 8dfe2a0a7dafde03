"""`emogrid plan`: the CLI on a small config (tables, exit 1 when a cell can't fit), printing by
hand without touching the workflow's tables, and the device each model is planned for."""

from __future__ import annotations


def test_cli_writes_tables(tmp_path, tiny_models, capsys):
    """`emogrid plan` on a small study config: plan + sizing tables, exit 1 when a cell can't fit."""
    import yaml

    from emogrid.cli import main

    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({
        "grid": {"models": ["tiny"], "methods": ["full", "lora", "qlora"], "labels": [2, 4],
                 "samples": [60], "seeds": [0, 1]},
        "models": {"tiny": {"path": str(tiny_models["llama"])}},
        "lora": {"r": [4, 8]},
        "resources": {"train": {"gpu_mem_mb": 100000}}}))
    out = tmp_path / "tables"
    assert main(["plan", "--configfile", "config.yaml", "--configfile", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lora.r=8" in text and "LoRA sizing" in text
    import csv

    rows = list(csv.DictReader(open(out / "plan.csv")))
    # full: 2 label counts; lora, qlora: 2 ranks x 2 label counts -> 10 rows (seeds share a plan)
    assert len(rows) == 10 and all(r["fits"] == "yes" for r in rows)
    assert (out / "plan.md").is_file() and (out / "lora_sizing.csv").is_file()
    assert main(["plan", "--configfile", "config.yaml", "--configfile", str(cfg), "--out", str(out),
                 "--gpu-mem-mb", "1", "--quiet", "--no-sizing"]) == 1



def test_plan_by_hand_prints_and_never_writes_the_rules_tables(tmp_path, monkeypatch, capsys):
    """`emogrid plan` by hand writes to stdout (or --out DIR), never results/tables/plan.md,
    which the workflow's plan rule owns; the plan names the device the cells run on."""
    from emogrid.cli import main
    from tests.helpers import REPO

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMOGRID_GPUS", raising=False)
    args = ["plan", "--configfile", str(REPO / "config.yaml"), "--configfile",
            str(REPO / "studies" / "quickstart.yaml"), "--no-sizing"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # the CPU quickstart (resources.train.gpu: 0) is planned for the CPU, on any machine
    assert "| minilm | lora |  | 2 | cpu |" in out and "device: minilm=cpu" in out
    assert not (tmp_path / "results").exists()
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text("resources: {train: {gpu: 1}}\n")
    assert main(args + ["--configfile", str(gpu), "--out", "mine", "--quiet", "--device", "cuda"]) == 0
    assert "| minilm | lora |  | 2 | cuda |" in (tmp_path / "mine" / "plan.md").read_text()


def test_plan_names_the_device_cells_really_use(tmp_path, monkeypatch, capsys):
    """`gpu: 1` on a machine without a GPU (jobs not sent to a cluster): gpu-slot runs the cells
    on the CPU, so the plan is a CPU plan and says why. It planned "cuda, bf16"."""
    from emogrid.cli import main
    from emogrid.planning import job_resources
    from tests.helpers import REPO

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMOGRID_GPUS", raising=False)
    monkeypatch.setattr(job_resources, "_cuda_here", lambda: False)
    monkeypatch.delenv("EMOGRID_REMOTE_JOBS", raising=False)
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text("resources: {train: {gpu: 1}}\n")
    args = ["plan", "--configfile", str(REPO / "config.yaml"), "--configfile",
            str(REPO / "studies" / "quickstart.yaml"), "--configfile", str(gpu), "--no-sizing"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| minilm | lora |  | 2 | cpu |" in out and "device: minilm=cpu" in out
    assert "resources gpu: 1 but this machine has no GPU: its cells run on the CPU" in out


def test_planned_device_follows_resources_then_declared_gpus(monkeypatch):
    from emogrid.planning import job_resources
    from emogrid.planning.plan import planned_device

    config = {"resources": {"train": {}}, "models": {"m": {}}}
    here = {"cuda": False}
    monkeypatch.setattr(job_resources, "_cuda_here", lambda: here["cuda"])
    assert planned_device(config, "m", environ={"EMOGRID_GPUS": "0"}) == "cpu"
    assert planned_device(config, "m", environ={"EMOGRID_GPUS": "4"}) == "cuda"
    config["resources"]["train"]["gpu"] = 0
    assert planned_device(config, "m", environ={"EMOGRID_GPUS": "4"}) == "cpu"
    config["models"]["m"]["resources"] = {"gres": "gpu:a100:1"}
    assert planned_device(config, "m", environ={}) == "cuda"  # a gres: a SLURM GPU node
    config["models"]["m"]["resources"] = {"gpu": 1}
    assert planned_device(config, "m", environ={}) == "cpu"  # asked, but no GPU here, jobs stay here
    assert planned_device(config, "m", environ={"EMOGRID_REMOTE_JOBS": "1"}) == "cuda"  # the cluster's nodes
    here["cuda"] = True
    assert planned_device(config, "m", environ={}) == "cuda"
    del config["models"]["m"]["resources"]
    del config["resources"]["train"]["gpu"]
    assert planned_device(config, "m", environ={}) == "cuda"  # nothing asked: what the machine has
    here["cuda"] = False
    assert planned_device(config, "m", environ={}) == "cpu"


