"""Per-job resources from the study config, in Snakemake's (and the SLURM plugin's) vocabulary.

    resources:                      # config.yaml
      train: {gpu: 1, mem_mb: 32000, runtime: 240, cpus_per_task: 4,
              slurm_partition: gpu, slurm_account: my_lab}
      data:  {mem_mb: 4000, runtime: 15}
      report: {mem_mb: 4000}
    models:
      gpt2-xl: {id: ..., resources: {mem_mb: 64000, constraint: a100}}   # wins for its cells

Keys (only those set are returned; Snakemake passes them to sbatch through the plugin):
  gpu -> --gpus, gres -> --gres (use one of the two), mem_mb -> --mem, runtime (minutes) -> -t,
  cpus_per_task -> --cpus-per-task, slurm_partition -> -p, slurm_account -> -A,
  constraint -> -C.
On a workstation only `gpu` matters: it is counted against `--resources gpu=N`.

`train_resources(config, cell, planned_mem_mb=...)` fills `mem_mb` from a memory estimate
(x `resources.safety_margin`) whenever the config sets no `mem_mb` for that cell; an explicit
mem_mb always wins. The rules' per-cell resources, which consult the memory plan (GPUs per
cell, planned peaks), are `emogrid.planning.job_resources`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from emogrid.errors import ConfigError
from emogrid.study.schema import load_schema, schema_default

INT_KEYS = ("gpu", "mem_mb", "runtime", "cpus_per_task")
STR_KEYS = ("gres", "slurm_partition", "slurm_account", "constraint")
KEYS = INT_KEYS + STR_KEYS
# keys the config may hold that are not Snakemake resources (the planner / gpu-slot read them)
PLANNER_KEYS = ("gpu_mem_mb", "cells_per_gpu")
STEPS = ("train", "data", "report")
DEFAULT_SAFETY_MARGIN: float = schema_default("resources.safety_margin")

# The schema's own patterns (safe_string: no spaces, quotes, `;`, `$` or backticks, so a value
# can never break the sbatch command line; constraint may also use SLURM's & | [ ] * operators),
# for resources that reach us without the schema pass (a rule's resources, a profile).
_SAFE = re.compile(load_schema()["$defs"]["safe_string"]["pattern"])
_SAFE_CONSTRAINT = re.compile(load_schema()["$defs"]["resources"]["properties"]["constraint"]["pattern"])
# Stricter than the schema's safe_string: the shape of a SLURM gres list (name[:type][:count],...).
_GRES = re.compile(r"^[A-Za-z0-9_]+(:[A-Za-z0-9_.]+)?(:\d+[TGM]?)?(,[A-Za-z0-9_]+(:[A-Za-z0-9_.]+)?(:\d+[TGM]?)?)*$")


def validate_resources(res: Mapping[str, Any] | None, where: str) -> dict:
    """Checked copy of one resources mapping (unknown keys, non-positive ints, unsafe strings)."""
    if res is None:
        return {}
    if not isinstance(res, Mapping):
        raise ConfigError(f"{where}: expected a mapping of resources, got {type(res).__name__}")
    out: dict[str, Any] = {}
    for key, value in res.items():
        if key == "cells_per_gpu":
            if not (value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)):
                raise ConfigError(f"{where}.cells_per_gpu: expected `auto` or an integer >= 1, got {value!r}",
                                  hint="auto packs cells by planned GPU memory; N puts at most N on a GPU")
            continue
        if key in PLANNER_KEYS:
            continue
        if key not in KEYS:
            raise ConfigError(f"{where}.{key}: unknown resource", hint=f"known: {', '.join(KEYS + PLANNER_KEYS)}")
        if value is None:
            continue
        if key in INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
            minimum = 0 if key == "gpu" else 1
            if value < minimum:
                raise ConfigError(f"{where}.{key}: must be >= {minimum}, got {value}")
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{key}: expected text, got {value!r}")
            pattern = {"constraint": _SAFE_CONSTRAINT, "gres": _GRES}.get(key, _SAFE)
            if not pattern.match(value):
                raise ConfigError(f"{where}.{key}: {value!r} is not allowed here",
                                  hint="letters, digits and . _ : = , / + - only (no spaces or quotes)")
        out[key] = value
    if "gpu" in out and "gres" in out:
        raise ConfigError(f"{where}: set either gpu or gres, not both",
                          hint="gpu: 1 asks for any GPU (--gpus=1); gres: gpu:a100:1 for a model")
    return out


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    # gpu and gres are alternatives: whichever the more specific level sets replaces the other
    if "gres" in override:
        merged.pop("gpu", None)
    if "gpu" in override:
        merged.pop("gres", None)
    merged.update(override)
    return merged


def _model_name(cell) -> str:
    if isinstance(cell, str):
        return cell
    axes = getattr(cell, "axes", cell)
    if isinstance(axes, Mapping):
        if isinstance(axes.get("cell"), Mapping):  # a spec
            axes = axes["cell"]
        if "model" in axes:
            return str(axes["model"])
    raise TypeError(f"cannot find the model of {cell!r}")


def config_section(config: Mapping, step: str) -> dict:
    resources = config.get("resources") or {}
    return validate_resources(resources.get(step), f"resources.{step}")


def step_resources(config: Mapping, step: str) -> dict:
    """Resources of a non-training step (`data`, `report`) from config['resources'][step]."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; one of {STEPS}")
    return config_section(config, step)


def train_resources(config: Mapping, cell, planned_mem_mb: float | None = None) -> dict:
    """Resources of one training cell: resources.train, then models[<model>].resources on top.

    `cell`: a grid Cell, its axes or spec dict, or a model name. `planned_mem_mb`: the planner's
    host-memory estimate for the cell; used (x resources.safety_margin, rounded up) only when
    no mem_mb is configured.
    """
    merged = config_section(config, "train")
    model = _model_name(cell)
    model_cfg = (config.get("models") or {}).get(model) or {}
    merged = _merge(merged, validate_resources(model_cfg.get("resources"), f"models.{model}.resources"))
    if "mem_mb" not in merged and planned_mem_mb:
        margin = safety_margin(config)
        merged["mem_mb"] = int(math.ceil(float(planned_mem_mb) * margin))
    return merged


def gpus_of(res: Mapping) -> int:
    """GPUs a cell's job uses: resources `gpu`, or the count in `gres` (gpu:a100:2 -> 2); 1 by default."""
    if "gpu" in res:
        return int(res["gpu"])
    gres = str(res.get("gres") or "")
    for part in gres.split(","):
        fields = part.split(":")
        if fields[0] == "gpu":
            return int(fields[-1]) if fields[-1].isdigit() and len(fields) > 1 else 1
    return 1


def max_gpus_per_cell(environ=None) -> int:
    """GPUs one cell may be spread over: the declared count on a workstation, else a node's 8."""
    import os

    environ = os.environ if environ is None else environ
    declared = environ.get("EMOGRID_GPUS", "").strip()
    return int(declared) if declared.isdigit() and int(declared) > 0 else 8


def safety_margin(config: Mapping) -> float:
    """resources.safety_margin (the schema's default when the config does not set it)."""
    value = (config.get("resources") or {}).get("safety_margin")
    return float(DEFAULT_SAFETY_MARGIN if value is None else value)


def cells_per_gpu(config: Mapping):
    """resources.train.cells_per_gpu: "auto", or N (1 = one cell per GPU, the default)."""
    # optional by design: the schema has no default (resources.train is shared by every rule)
    value = ((config.get("resources") or {}).get("train") or {}).get("cells_per_gpu", 1)
    return value if value == "auto" else int(value)


def packing_active(config: Mapping, environ=None) -> bool:
    """Several cells per GPU on this machine: cells_per_gpu != 1 and a declared GPU count
    (`--resources gpu=N`, exported as EMOGRID_GPUS). Under the SLURM executor (no declared
    count) each cell stays one job with its own `--gpus`."""
    import os

    environ = os.environ if environ is None else environ
    declared = environ.get("EMOGRID_GPUS", "").strip()
    return cells_per_gpu(config) != 1 and declared.isdigit() and int(declared) > 0


def export_packing(config: Mapping, environ=None) -> None:
    """EMOGRID_CELLS_PER_GPU (and EMOGRID_GPU_MEM_MB from resources.train.gpu_mem_mb) for gpu-slot."""
    import os

    environ = os.environ if environ is None else environ
    environ["EMOGRID_CELLS_PER_GPU"] = str(cells_per_gpu(config))
    gpu_mem = ((config.get("resources") or {}).get("train") or {}).get("gpu_mem_mb")
    if gpu_mem and not environ.get("EMOGRID_GPU_MEM_MB"):
        environ["EMOGRID_GPU_MEM_MB"] = str(int(gpu_mem))


def declared_gpus(global_resources: Mapping | None) -> int | None:
    """N of `--resources gpu=N` (profile or command line), or None when the run declared none.

    Pass `workflow.global_resources` (Snakemake 9 wraps values in Resource objects). The
    Snakefile exports it as EMOGRID_GPUS for `emogrid gpu-slot` -- through the environment, not
    a param or the shell template, so changing the GPU count never reruns finished cells.
    Without a declaration gpu-slot detects the GPUs itself; under SLURM it keeps SLURM's choice.
    """
    if not global_resources or "gpu" not in global_resources:
        return None
    value = global_resources["gpu"]
    value = getattr(value, "value", value)
    if value is None or isinstance(value, bool):
        return None
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return None


def export_declared_gpus(global_resources: Mapping | None, environ=None) -> int | None:
    """Set EMOGRID_GPUS from the declared gpu resource (for the jobs this Snakemake starts)."""
    import os

    environ = os.environ if environ is None else environ
    count = declared_gpus(global_resources)
    if count is not None:
        environ["EMOGRID_GPUS"] = str(count)
        # running inside one SLURM allocation (salloc / a whole-node sbatch job)? then gpu-slot
        # shares that allocation's GPUs among the local jobs instead of giving each all of them
        job_id = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
        if job_id:
            environ["EMOGRID_GPUS_SLURM_JOB"] = job_id
        else:
            environ.pop("EMOGRID_GPUS_SLURM_JOB", None)
    return count
