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

Planner hook: `train_resources(config, cell, planned_mem_mb=...)` (or `rule_resources(...,
planner=fn)`) fills `mem_mb` from a memory estimate (x `resources.safety_margin`) whenever the
config sets no `mem_mb` for that cell. An explicit mem_mb always wins.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from emogrid.config_schema import load_schema, schema_default
from emogrid.errors import ConfigError

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


def _section(config: Mapping, step: str) -> dict:
    resources = config.get("resources") or {}
    return validate_resources(resources.get(step), f"resources.{step}")


def step_resources(config: Mapping, step: str) -> dict:
    """Resources of a non-training step (`data`, `report`) from config['resources'][step]."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; one of {STEPS}")
    return _section(config, step)


def train_resources(config: Mapping, cell, planned_mem_mb: float | None = None) -> dict:
    """Resources of one training cell: resources.train, then models[<model>].resources on top.

    `cell`: a grid Cell, its axes or spec dict, or a model name. `planned_mem_mb`: the planner's
    host-memory estimate for the cell; used (x resources.safety_margin, rounded up) only when
    no mem_mb is configured.
    """
    merged = _section(config, "train")
    model = _model_name(cell)
    model_cfg = (config.get("models") or {}).get(model) or {}
    merged = _merge(merged, validate_resources(model_cfg.get("resources"), f"models.{model}.resources"))
    if "mem_mb" not in merged and planned_mem_mb:
        margin = safety_margin(config)
        merged["mem_mb"] = int(math.ceil(float(planned_mem_mb) * margin))
    return merged


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
    keys = set(_section(config, "train"))
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

    spec = cell.spec if hasattr(cell, "spec") else cell
    margin = safety_margin(config)
    return gpus_for(spec, gpu_mem, margin=margin, max_gpus=max_gpus_per_cell()) or 1


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


def planned_gpu_mb(config: Mapping, cell) -> int:
    """The cell's planned GPU peak (`emogrid plan`) x resources.safety_margin, rounded up."""
    from emogrid.planning.memory import plan_cell_memory

    spec = cell.spec if hasattr(cell, "spec") else cell
    margin = safety_margin(config)
    return int(math.ceil(plan_cell_memory(spec)["train_peak_mb"] * margin))


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


# ---------------------------------------------------------------- planner hooks (emogrid.planning.memory)

def needs_planner(config: Mapping) -> bool:
    """Plan memory only when some train job has no explicit mem_mb (planning imports peft)."""
    return "mem_mb" not in ((config.get("resources") or {}).get("train") or {})


def planned_host_mem_mb(cell) -> float:
    from emogrid.planning.memory import plan_cell_memory

    spec = cell.spec if hasattr(cell, "spec") else cell
    return plan_cell_memory(spec)["host_mem_mb"]


def unfit_cells_message(config: Mapping, cells) -> str | None:
    """A message listing cells whose planned GPU peak exceeds resources.train.gpu_mem_mb."""
    gpu_mem = ((config.get("resources") or {}).get("train") or {}).get("gpu_mem_mb")
    if not gpu_mem:
        return None
    from emogrid.planning.memory import check_fit

    margin = safety_margin(config)
    most = max_gpus_per_cell()
    bad = check_fit([c.spec for c in cells], gpu_mem, margin=margin, max_gpus=most)
    if not bad:
        return None
    lines = [f"{b['cell_id']}: needs ~{b['need_mb']:.0f} MB (estimate x {margin})" for b in bad[:20]]
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    over = f" (full fine-tuning cells: not even sharded over up to {most} GPUs)" if most > 1 else ""
    return (f"{len(bad)} cell(s) cannot fit resources.train.gpu_mem_mb={gpu_mem}{over}:\n  "
            + "\n  ".join(lines) + more
            + "\n  hint: use qlora, lower train.batch_size or lora.r, or raise gpu_mem_mb "
              "(see `emogrid plan` for the breakdown)")
