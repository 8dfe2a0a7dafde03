"""Each training job's resources as its rule declares them: the study's resources (emogrid.scheduling.resources)
completed by the memory plan (emogrid.planning.memory): GPUs per cell, planned GPU and host peaks,
and the cells that cannot fit before anything is submitted."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from emogrid.scheduling.resources import (
    cells_per_gpu,
    config_section,
    gpus_of,
    max_gpus_per_cell,
    packing_active,
    safety_margin,
    step_resources,
    train_resources,
    validate_resources,
)
from emogrid.study.spec_sections import MethodSpec


def rule_resources(config: Mapping, step: str, cell_of: Callable | None = None, *,
                   planner: Callable[[Any], float | None] | None = None) -> dict:
    """The `resources:` of a rule, for `resources: **rule_resources(config, "train", cell_of)`.

    data/report: plain values. train: one callable per key (a model may set keys the others
    don't; a callable that returns None leaves the key unset for that job). `planner(cell)`
    may return a planned mem_mb (see train_resources).
    """
    if step != "train":
        return step_resources(config, step)
    if cell_of is None:
        raise ValueError("train resources need cell_of(wildcards) -> cell")
    keys = set(config_section(config, "train"))
    for name, model_cfg in (config.get("models") or {}).items():
        keys |= set(validate_resources((model_cfg or {}).get("resources"), f"models.{name}.resources"))
    if planner is not None:
        keys.add("mem_mb")
    packing = packing_active(config)

    def getter(key: str):
        def value(wildcards):
            cell = cell_of(wildcards)
            planned = planner(cell) if planner is not None else None
            got = train_resources(config, cell, planned_mem_mb=planned).get(key)
            if key == "gpu" and got == 1:
                n = planned_gpus(config, cell)
                if n > 1:
                    return n  # the planner's answer: one GPU cannot hold this cell
                if packing:
                    return 0  # a share of a GPU: emogrid gpu-slot packs, Snakemake doesn't count it
            return got
        return value

    out = {key: getter(key) for key in sorted(keys)}

    # for `emogrid gpu-slot`: how many GPUs the cell uses (torchrun over N > 1) and, when packing by
    # memory, its planned GPU peak x safety margin (0 = none)
    def cell_gpus(wildcards):
        return planned_gpus(config, cell_of(wildcards))

    def gpu_plan_mb(wildcards):
        if cells_per_gpu(config) != "auto" or not packing_active(config):
            return 0
        return planned_gpu_mb(config, cell_of(wildcards))

    def nodes(wildcards):
        # a cell over several GPUs is one torchrun on one machine: SLURM must not split its --gpus
        # over nodes (the executor sets no --ntasks/--nodes for GPU jobs by itself)
        return 1 if planned_gpus(config, cell_of(wildcards)) > 1 else None

    out["cell_gpus"] = cell_gpus
    out["gpu_plan_mb"] = gpu_plan_mb
    out["nodes"] = nodes
    return out


def planned_gpus(config: Mapping, cell) -> int:
    """GPUs a cell runs on: the configured `gpu`/`gres` count; where that is 1 and
    resources.train.gpu_mem_mb is set, the planner's answer for a full fine-tuning cell one GPU
    cannot hold (FSDP over 2, 4 or 8 GPUs: emogrid.planning.memory.gpus_for)."""
    res = train_resources(config, cell)
    n = gpus_of(res)
    gpu_mem = ((config.get("resources") or {}).get("train") or {}).get("gpu_mem_mb")
    if n != 1 or not gpu_mem:
        return n
    from emogrid.planning.memory import gpus_for
    from emogrid.planning.tokens import dataset_token_stats

    spec = cell.spec if hasattr(cell, "spec") else cell
    margin = safety_margin(config)
    stats = dataset_token_stats(config)
    return gpus_for(spec, gpu_mem, margin=margin, max_gpus=max_gpus_per_cell(), token_stats=stats) or 1


def planned_gpu_mb(config: Mapping, cell) -> int:
    """The cell's planned GPU peak (`emogrid plan`) x resources.safety_margin, rounded up."""
    from emogrid.planning.memory import plan_cell_memory
    from emogrid.planning.tokens import dataset_token_stats

    spec = cell.spec if hasattr(cell, "spec") else cell
    margin = safety_margin(config)
    stats = dataset_token_stats(config)
    return int(math.ceil(plan_cell_memory(spec, token_stats=stats)["train_peak_mb"] * margin))


def needs_planner(config: Mapping) -> bool:
    """Plan memory only when some train job has no explicit mem_mb (planning imports peft)."""
    return "mem_mb" not in ((config.get("resources") or {}).get("train") or {})


def planned_host_mem_mb(cell, config: Mapping | None = None) -> float:
    """The cell's planned host memory on the device it will run on (with `config`; else a GPU).

    Over N GPUs the job is N processes: N runtimes; under DDP every process loads the weights on
    the host, under FSDP rank 0 alone (the others build the model on the meta device:
    emogrid.training.distributed.loads_on_meta); the save copy is rank 0's."""
    from emogrid.planning.memory import HOST_RUNTIME_MB, plan_cell_memory
    from emogrid.planning.tokens import dataset_token_stats

    spec = cell.spec if hasattr(cell, "spec") else cell
    if config is None:
        return plan_cell_memory(spec)["host_mem_mb"]
    device = device_plan(config, spec["cell"]["model"])[0]
    est = plan_cell_memory(spec, device=device, token_stats=dataset_token_stats(config))
    n = planned_gpus(config, cell)
    if device != "cuda" or n <= 1:
        return est["host_mem_mb"]
    loading = 1 if MethodSpec.from_spec(spec).trains_every_weight else n  # FSDP: rank 0 reads the weights
    return n * HOST_RUNTIME_MB["cuda"] + max(loading * est["host_load_mb"], est["host_save_mb"])


def device_plan(config: Mapping, model: str, environ=None) -> tuple[str, str]:
    """("cpu" | "cuda", why): the device a model's cells will really run on.

    resources gpu: 0, or a run declared with --resources gpu=0 (EMOGRID_GPUS=0): the CPU. A GPU
    asked for (gpu >= 1): CUDA where this machine has one or the run declared some; a `gres`,
    or a Snakemake that sends its jobs to other machines (the SLURM profile: the Snakefile sets
    EMOGRID_REMOTE_JOBS=1), puts the cells on GPU nodes; otherwise gpu-slot finds no GPU and the
    cells run on this machine's CPU -- planned as such, and said (`emogrid plan --device cuda`
    plans for a GPU machine). Nothing asked: whatever the run declared, else what this machine has."""
    import os

    environ = os.environ if environ is None else environ
    res = train_resources(config, model)
    declared = environ.get("EMOGRID_GPUS", "").strip()
    if "gpu" in res or "gres" in res:
        n = gpus_of(res)
        key = "gres" if "gres" in res else "gpu"
        if n == 0:
            return "cpu", f"resources {key}: 0"
        if key == "gres":
            return "cuda", f"resources gres {res['gres']}: a SLURM GPU node"
        if declared.isdigit():
            return ("cuda", f"resources gpu: {n}, --resources gpu={declared}") if int(declared) > 0 else \
                ("cpu", "--resources gpu=0: no GPU for this run")
        if environ.get("EMOGRID_REMOTE_JOBS") == "1":
            return "cuda", f"resources gpu: {n}, jobs on the cluster's GPU nodes"
        if _cuda_here():
            return "cuda", f"resources gpu: {n}, a GPU on this machine"
        return "cpu", (f"resources gpu: {n} but this machine has no GPU: its cells run on the CPU "
                       "(plan with --device cuda for a GPU machine or cluster)")
    if declared.isdigit():
        return ("cuda", f"--resources gpu={declared}") if int(declared) > 0 else ("cpu", "--resources gpu=0")
    return ("cuda", "a GPU on this machine") if _cuda_here() else ("cpu", "no GPU on this machine")


def _cuda_here() -> bool:
    import torch

    return torch.cuda.is_available()


def unfit_cells_message(config: Mapping, cells) -> str | None:
    """A message listing cells whose planned GPU peak exceeds resources.train.gpu_mem_mb."""
    gpu_mem = ((config.get("resources") or {}).get("train") or {}).get("gpu_mem_mb")
    if not gpu_mem:
        return None
    from emogrid.planning.memory import check_fit
    from emogrid.planning.tokens import dataset_token_stats

    margin = safety_margin(config)
    most = max_gpus_per_cell()
    bad = check_fit([c.spec for c in cells], gpu_mem, margin=margin, max_gpus=most,
                    token_stats=dataset_token_stats(config))
    if not bad:
        return None
    lines = [f"{b['cell_id']}: needs ~{b['need_mb']:.0f} MB (estimate x {margin})" for b in bad[:20]]
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    over = f" (full fine-tuning cells: not even sharded over up to {most} GPUs)" if most > 1 else ""
    return (f"{len(bad)} cell(s) cannot fit resources.train.gpu_mem_mb={gpu_mem}{over}:\n  "
            + "\n  ".join(lines) + more
            + "\n  hint: use qlora, lower train.batch_size or lora.r, or raise gpu_mem_mb "
              "(see `emogrid plan` for the breakdown)")
