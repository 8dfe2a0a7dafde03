"""Per-rule resources from config: merge order, validation, planner hook, Snakemake glue."""

from __future__ import annotations

import pytest

from emogrid.errors import ConfigError
from emogrid.planning.job_resources import rule_resources
from emogrid.scheduling.resources import declared_gpus, export_declared_gpus, step_resources, train_resources

CONFIG = {
    "resources": {
        "train": {"gpu": 1, "mem_mb": 32000, "runtime": 240, "cpus_per_task": 4,
                  "slurm_partition": "gpu", "slurm_account": "my_lab"},
        "data": {"mem_mb": 4000, "runtime": 15, "cpus_per_task": 1},
        "safety_margin": 1.5,
    },
    "models": {
        "big": {"id": "org/big", "resources": {"mem_mb": 64000, "gres": "gpu:a100:1", "constraint": "a100"}},
        "small": {"id": "org/small"},
        "planned": {"id": "org/p"},
    },
}


def test_train_merges_model_over_step():
    assert train_resources(CONFIG, "small") == CONFIG["resources"]["train"]
    big = train_resources(CONFIG, {"model": "big", "labels": 2})
    assert big["mem_mb"] == 64000 and big["gres"] == "gpu:a100:1" and big["constraint"] == "a100"
    assert "gpu" not in big, "gres on the model replaces the step's gpu (they are alternatives)"
    assert big["slurm_partition"] == "gpu" and big["runtime"] == 240


def test_only_set_keys_and_other_steps():
    assert step_resources(CONFIG, "data") == {"mem_mb": 4000, "runtime": 15, "cpus_per_task": 1}
    assert step_resources(CONFIG, "report") == {}
    assert train_resources({"models": {}}, "x") == {}


def test_planner_hook_fills_mem_only_when_unset():
    cfg = {"resources": {"train": {"gpu": 1}, "safety_margin": 1.5}, "models": {}}
    assert train_resources(cfg, "m", planned_mem_mb=1000)["mem_mb"] == 1500
    assert train_resources(CONFIG, "small", planned_mem_mb=1000)["mem_mb"] == 32000


@pytest.mark.parametrize("bad", [
    {"mem_mb": 0}, {"mem_mb": -5}, {"runtime": "2h"}, {"gpu": True}, {"cpus_per_task": 1.5},
    {"slurm_partition": "gpu; rm -rf /"}, {"slurm_account": "a b"}, {"constraint": "$(id)"},
    {"gres": "gpu:1 --wrap x"}, {"nodes": 2}, {"gpu": 1, "gres": "gpu:1"},
])
def test_invalid_values_are_config_errors(bad):
    with pytest.raises(ConfigError):
        train_resources({"resources": {"train": bad}, "models": {}}, "m")


def test_valid_edge_values():
    cfg = {"resources": {"train": {"gpu": 0, "constraint": "a100|h100", "gres": None}}, "models": {}}
    assert train_resources(cfg, "m") == {"gpu": 0, "constraint": "a100|h100"}


def test_rule_resources_callables():
    class Cell:
        def __init__(self, model):
            self.axes = {"model": model}

    cells = {"b": Cell("big"), "s": Cell("small")}

    class WC:
        def __init__(self, cell):
            self.cell = cell

    res = rule_resources(CONFIG, "train", lambda wc: cells[wc.cell])
    assert {"gpu", "gres", "mem_mb", "constraint", "slurm_partition"} <= set(res)
    assert res["gres"](WC("s")) is None and res["gpu"](WC("s")) == 1
    assert res["gres"](WC("b")) == "gpu:a100:1" and res["gpu"](WC("b")) is None
    assert rule_resources(CONFIG, "data") == step_resources(CONFIG, "data")
    planned = rule_resources({"resources": {"train": {"gpu": 1}}, "models": {}}, "train",
                             lambda wc: Cell("m"), planner=lambda cell: 100)
    assert planned["mem_mb"](WC("x")) == 120


def test_declared_gpus():
    class Resource:
        def __init__(self, value):
            self.value = value

    assert declared_gpus({"gpu": Resource(2), "_cores": Resource(4)}) == 2
    assert declared_gpus({"gpu": 0}) == 0
    assert declared_gpus({"_cores": Resource(4)}) is None
    assert declared_gpus(None) is None
    env = {}
    assert export_declared_gpus({"gpu": Resource(3)}, env) == 3 and env == {"EMOGRID_GPUS": "3"}
    env = {"EMOGRID_GPUS": "1"}
    export_declared_gpus({}, env)
    assert env == {"EMOGRID_GPUS": "1"}
    env = {"SLURM_JOB_ID": "9"}
    export_declared_gpus({"gpu": 2}, env)
    assert env == {"SLURM_JOB_ID": "9", "EMOGRID_GPUS": "2", "EMOGRID_GPUS_SLURM_JOB": "9"}


def test_cells_per_gpu_packing_resources(monkeypatch):
    """Packing on a workstation: Snakemake stops counting single-GPU cells (gpu-slot packs them),
    gpu-slot learns each cell's GPU count and planned GPU memory x safety margin."""
    import emogrid.planning.memory

    class Cell:
        axes = {"model": "m"}
        spec = {"cell": {"model": "m"}}

    class WC:
        cell = "x"

    monkeypatch.setattr(emogrid.planning.memory, "plan_cell_memory", lambda spec, **kw: {"train_peak_mb": 1000.0})
    cfg = {"resources": {"train": {"gpu": 1, "cells_per_gpu": "auto"}, "safety_margin": 1.5}, "models": {}}
    monkeypatch.setenv("EMOGRID_GPUS", "4")
    res = rule_resources(cfg, "train", lambda wc: Cell())
    assert res["gpu"](WC) == 0 and res["cell_gpus"](WC) == 1 and res["gpu_plan_mb"](WC) == 1500
    monkeypatch.delenv("EMOGRID_GPUS")  # SLURM executor: no declared count, one job per cell as before
    res = rule_resources(cfg, "train", lambda wc: Cell())
    assert res["gpu"](WC) == 1 and res["gpu_plan_mb"](WC) == 0
    monkeypatch.setenv("EMOGRID_GPUS", "4")
    two = {"resources": {"train": {"gpu": 2, "cells_per_gpu": 3}}, "models": {}}
    res = rule_resources(two, "train", lambda wc: Cell())
    assert res["gpu"](WC) == 2 and res["cell_gpus"](WC) == 2 and res["gpu_plan_mb"](WC) == 0
    gres = rule_resources({"resources": {"train": {"gres": "gpu:a100:2"}}, "models": {}}, "train", lambda wc: Cell())
    assert gres["cell_gpus"](WC) == 2


@pytest.mark.parametrize("bad", [0, "half", 1.5, True])
def test_cells_per_gpu_is_checked(bad):
    with pytest.raises(ConfigError, match="cells_per_gpu"):
        train_resources({"resources": {"train": {"cells_per_gpu": bad}}, "models": {}}, "m")


def test_export_packing():
    from emogrid.scheduling.resources import export_packing

    env = {}
    export_packing({"resources": {"train": {"cells_per_gpu": "auto", "gpu_mem_mb": 81920}}}, env)
    assert env == {"EMOGRID_CELLS_PER_GPU": "auto", "EMOGRID_GPU_MEM_MB": "81920"}
    env = {"EMOGRID_GPU_MEM_MB": "40000"}  # a declaration in the environment wins
    export_packing({"resources": {"train": {"gpu_mem_mb": 81920}}}, env)
    assert env == {"EMOGRID_CELLS_PER_GPU": "1", "EMOGRID_GPU_MEM_MB": "40000"}


def test_planner_gives_a_cell_several_gpus_when_one_cannot_hold_it(monkeypatch):
    import emogrid.planning.memory

    class Cell:
        axes = {"model": "m"}
        spec = {"cell": {"model": "m"}, "method": {"peft": "full"}}

    class WC:
        cell = "x"

    monkeypatch.setattr(emogrid.planning.memory, "gpus_for",
                        lambda spec, mem, margin, max_gpus, **kw: 4 if max_gpus >= 4 else None)
    monkeypatch.setattr(emogrid.planning.memory, "plan_cell_memory", lambda spec, **kw: {"train_peak_mb": 100.0})
    monkeypatch.setenv("EMOGRID_GPUS", "8")
    cfg = {"resources": {"train": {"gpu": 1, "gpu_mem_mb": 80000, "cells_per_gpu": "auto"}}, "models": {}}
    res = rule_resources(cfg, "train", lambda wc: Cell())
    assert res["gpu"](WC) == 4 and res["cell_gpus"](WC) == 4  # whole GPUs even while packing others
    assert res["nodes"](WC) == 1  # SLURM: all 4 GPUs on one node
    monkeypatch.setenv("EMOGRID_GPUS", "2")  # this machine has only 2: the planner has no answer, 1 stays
    assert rule_resources(cfg, "train", lambda wc: Cell())["cell_gpus"](WC) == 1
    explicit = {"resources": {"train": {"gpu": 2, "gpu_mem_mb": 80000}}, "models": {}}
    assert rule_resources(explicit, "train", lambda wc: Cell())["cell_gpus"](WC) == 2  # the config's own count
    single = {"resources": {"train": {"gpu": 1}}, "models": {}}
    assert rule_resources(single, "train", lambda wc: Cell())["nodes"](WC) is None  # unset for 1-GPU cells


def test_host_memory_of_a_cell_over_several_gpus(monkeypatch):
    """N processes hold N runtimes; DDP loads the weights in each, FSDP in rank 0 alone."""
    from emogrid.planning.job_resources import planned_host_mem_mb
    from emogrid.planning.memory import HOST_RUNTIME_MB, plan_cell_memory
    from emogrid.study.config import load_config
    from emogrid.study.grid import expand_cells
    from tests.helpers import REPO

    config = load_config([str(REPO / "config.yaml")])
    config["grid"].update(models=["llama-3.2-1b"], methods=["lora", "full"], labels=[2], samples=[800], seeds=[0])
    config["resources"]["train"] = {"gpu": 4}
    config["train"]["batch_size"] = 8
    monkeypatch.setenv("EMOGRID_GPUS", "4")  # a workstation with 4 GPUs: the cells run on CUDA
    cells = {c.axes["method"]: c for c in expand_cells(config)}
    for method, loading in (("lora", 4), ("full", 1)):
        est = plan_cell_memory(cells[method].spec)
        assert planned_host_mem_mb(cells[method], config) == pytest.approx(
            4 * HOST_RUNTIME_MB["cuda"] + max(loading * est["host_load_mb"], est["host_save_mb"]))
        assert planned_host_mem_mb(cells[method], config) > est["host_mem_mb"]
