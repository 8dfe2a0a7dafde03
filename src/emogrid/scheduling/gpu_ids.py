"""Which GPUs a gpu-slot may hand out: ids, counts and the scheduler's own assignment.

Decisions only, no locks: the ids a machine offers (EMOGRID_GPU_IDS, an exported
CUDA_VISIBLE_DEVICES, EMOGRID_GPUS or the /dev/nvidia<k> count), the name a GPU's slot is
keyed by (its UUID where nvidia-smi knows it), and when a SLURM allocation is shared out.
"""

from __future__ import annotations

import argparse
import re

from emogrid.errors import EmogridError
from emogrid.models.devices import detect_gpu_count, nvidia_smi_ids

# Variables that mean "a scheduler started this process and owns device assignment".
SCHEDULER_VARS = ("SLURM_JOB_ID", "SLURM_JOBID")
# an index, a GPU-/MIG- UUID, or an old-style MIG id MIG-GPU-<uuid>/<gi>/<ci> (driver < 470)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]*$|^MIG-GPU-[A-Za-z0-9-]+/\d+/\d+$")


def nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def under_scheduler(env: dict) -> bool:
    return any(env.get(name) for name in SCHEDULER_VARS)


def parse_ids(text: str, where: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    for gpu_id in ids:
        if not _ID_RE.match(gpu_id):
            raise EmogridError(f"{where}: {gpu_id!r} is not a GPU index or UUID")
    if len(set(ids)) != len(ids) or len({lock_key(i) for i in ids}) != len(ids):
        raise EmogridError(f"{where}: duplicate GPU ids in {text!r} (an index and the UUID of one GPU "
                           "name the same device)")
    return ids


def lock_key(gpu_id: str, uuids: dict[str, str] | None = None) -> str:
    """The name a GPU's slot file is keyed by: its UUID where known, so `0` and `GPU-...` of the
    same device share one slot. Indices are nvidia-smi's (gpu-slot sets CUDA_DEVICE_ORDER=PCI_BUS_ID
    so that CUDA numbers devices the same way)."""
    uuids = nvidia_smi_ids() if uuids is None else uuids
    key = uuids.get(gpu_id, gpu_id)
    return re.sub(r"[^A-Za-z0-9:._-]", "_", key)  # old MIG ids hold '/'


def gpu_pool(gpus: int | None, env: dict) -> list[str]:
    """The GPU ids this machine hands out (possibly empty)."""
    ids: list[str] | None = None
    if env.get("EMOGRID_GPU_IDS", "").strip():
        ids = parse_ids(env["EMOGRID_GPU_IDS"], "EMOGRID_GPU_IDS")
    elif "CUDA_VISIBLE_DEVICES" in env and not under_scheduler(env):
        ids = parse_ids(env["CUDA_VISIBLE_DEVICES"], "CUDA_VISIBLE_DEVICES")
        if not ids:  # exported empty: the user hid every GPU, whatever count was declared
            return []
    if gpus is None:
        gpus = exported_gpu_count(env)
    if ids is None:
        count = detect_gpu_count() if gpus is None else gpus
        return [str(i) for i in range(count)]
    if gpus is None:
        return ids
    if gpus > len(ids):
        raise EmogridError(f"--gpus {gpus} but only {len(ids)} GPU ids are allowed ({','.join(ids)})",
                           hint="set EMOGRID_GPU_IDS / CUDA_VISIBLE_DEVICES to all the GPUs to use")
    return ids[:gpus]


def exported_gpu_count(env: dict) -> int | None:
    """The GPU count the Snakefile exported (EMOGRID_GPUS), or None when unset."""
    value = env.get("EMOGRID_GPUS", "").strip()
    if not value:
        return None
    try:
        return nonneg_int(value)
    except argparse.ArgumentTypeError as err:
        raise EmogridError(f"EMOGRID_GPUS: {err}") from None


def scheduler_pool(gpus: int | None, need: int, env: dict, packing: bool = False) -> list[str] | None:
    """Inside a SLURM job: None = keep SLURM's assignment as it is (the usual case: the SLURM
    executor asked for exactly this job's GPUs). A list = the allocation's GPUs to share out:
    only when the Snakemake that started this command runs *inside this same allocation* with a
    declared GPU count (a workstation-style run in one big `salloc`/`sbatch` job; the Snakefile
    exports EMOGRID_GPUS and EMOGRID_GPUS_SLURM_JOB=<its job id>) and SLURM gave more GPUs than
    this one command needs (or, with packing, any number: the cells share even one GPU)."""
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    cvd = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not cvd or not job_id or env.get("EMOGRID_GPUS_SLURM_JOB") != job_id:
        return None
    declared = gpus if gpus is not None else exported_gpu_count(env)
    if declared is None:
        return None
    ids = parse_ids(cvd, "CUDA_VISIBLE_DEVICES (from SLURM)")
    if len(ids) <= max(need, 1) and not (packing and need == 1):
        return None
    return ids[:declared]
