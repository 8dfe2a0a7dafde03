"""Which devices (and CPU threads) a training process uses, and what its device errors mean.

One `emogrid train` process trains on exactly the devices it was given:

- Outside a distributed launch (no torchrun/accelerate WORLD_SIZE > 1) a cell is one process on
  one GPU. If several are visible (a whole-node SLURM allocation whose jobs all see every GPU,
  `emogrid train` by hand on a multi-GPU machine) the Trainer would multiply the micro-batch by
  the device count and wrap the model in nn.DataParallel. `pin_visible_devices` keeps the first
  visible GPU (before CUDA initialises) and says so; `single_process_n_gpu` is the second guard
  on the TrainingArguments.
- Under torchrun each rank uses its LOCAL_RANK device (the Trainer's DDP path); nothing changes.

No torch import at module level: `pin_visible_devices` must run before CUDA initialises.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from emogrid.errors import EmogridError

log = logging.getLogger("emogrid.training.train")

# GPU memory a CUDA process holds outside PyTorch's caching allocator (the CUDA context, loaded
# kernel images with lazy module loading, cuBLAS handles): the planner counts it beside the
# tensors, and a packed cell's allocator cap leaves it out of its share (cap_gpu_memory).
CUDA_CONTEXT_MB = 500.0


def cpu_threads(environ=None) -> int:
    """Threads this job may use: Snakemake's OMP_NUM_THREADS, SLURM's allocation, else its cores.

    torch defaults to every physical core of the machine; with two jobs on two cores its
    OpenMP threads spin against each other and a step gets 20-40x slower (bench/README.md).
    """
    environ = os.environ if environ is None else environ
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def distributed(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    try:
        return int(environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def visible_ids(environ=None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list ([] when set empty: no GPU), None when unset."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return None
    return [part.strip() for part in environ["CUDA_VISIBLE_DEVICES"].split(",") if part.strip()]


def pin_visible_devices(environ=None, detect=None) -> str | None:
    """Restrict a single-process cell to one GPU; returns a message when it changed anything.

    `detect()` counts the machine's GPUs when CUDA_VISIBLE_DEVICES is unset (default:
    detect_gpu_count, which does not initialise CUDA)."""
    environ = os.environ if environ is None else environ
    if distributed(environ):
        return None
    ids = visible_ids(environ)
    if ids is None:
        if detect is None:
            detect = detect_gpu_count
        count = detect()
        if count <= 1:
            return None
        ids = [str(i) for i in range(count)]
    if len(ids) <= 1:
        return None
    environ["CUDA_VISIBLE_DEVICES"] = ids[0]
    return (f"{len(ids)} GPUs visible ({','.join(ids)}) to a single-process cell: pinned to GPU {ids[0]} "
            "(the Trainer would otherwise split each micro-batch over all of them with nn.DataParallel); "
            "resources.train.gpu: N > 1 launches the cell over N GPUs with torchrun instead")


def cap_gpu_memory(environ=None) -> str | None:
    """Cap this process's PyTorch at the share of the GPU gpu-slot packed it into
    (EMOGRID_GPU_MEM_FRACTION: a fraction of the device's memory, the CUDA context left out);
    returns a message when it did. Beyond the cap PyTorch frees its cache and then raises out
    of memory, so a cell that outgrows its plan fails alone (and its retry halves the batch)
    instead of taking its neighbour's memory. Initialises CUDA: call after pin_visible_devices."""
    environ = os.environ if environ is None else environ
    value = environ.get("EMOGRID_GPU_MEM_FRACTION", "").strip()
    if not value:
        return None
    try:
        fraction = float(value)
    except ValueError:
        raise EmogridError(f"EMOGRID_GPU_MEM_FRACTION: expected a fraction in (0, 1], got {value!r}") from None
    if not 0 < fraction <= 1:
        raise EmogridError(f"EMOGRID_GPU_MEM_FRACTION: expected a fraction in (0, 1], got {value!r}")
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    return f"packed with other cells on one GPU: PyTorch capped at {100 * fraction:.1f}% of its memory"


def single_process_n_gpu(args) -> None:
    """Second guard: a non-distributed Trainer never sees more than one GPU (no DataParallel)."""
    if getattr(args, "_n_gpu", 0) > 1 and getattr(args, "world_size", 1) == 1:
        log.warning("Trainer counted %d GPUs in one process; using one", args._n_gpu)
        args._n_gpu = 1


# ---------------------------------------------------------------- out of memory

_OOM_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                "CUBLAS_STATUS_NOT_INITIALIZED",  # cuBLAS could not allocate its workspace
                "CUDA error: out of memory")


def is_oom(err: BaseException) -> bool:
    """CUDA out of memory in any of its guises: torch's OutOfMemoryError, or a cuBLAS/cuDNN
    allocation failure that surfaces as a plain RuntimeError (same cure: a smaller batch)."""
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return True
    if isinstance(err, RuntimeError):
        text = str(err)
        return any(marker in text for marker in _OOM_MARKERS)
    return False


# ---------------------------------------------------------------- precision


def bf16_native() -> bool:
    """A CUDA device with native bf16 (compute capability >= 8: Ampere and later).

    torch.cuda.is_bf16_supported() also counts emulation: a V100 or T4 "supports" bf16 at a
    fraction of fp32 speed, so `precision: auto` would pick the slow path there."""
    import torch

    if not torch.cuda.is_available():
        return False
    if getattr(torch.version, "hip", None):
        return torch.cuda.is_bf16_supported()
    major, _ = torch.cuda.get_device_capability()
    return major >= 8 and torch.cuda.is_bf16_supported(including_emulation=False)


# ---------------------------------------------------------------- bitsandbytes int8


class _Once(logging.Filter):
    """Let a message through once per process; later copies are dropped."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def quiet_int8_casts() -> None:
    """bitsandbytes' int8 matmul (CUDA) warns on every non-fp16 input, ~7 lines per layer per
    step; the cast to fp16 is how LLM.int8() works. Keep the first line, drop the repeats."""
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _Once) for f in logger.filters):
        logger.addFilter(_Once("MatMul8bitLt: inputs will be cast"))


# ---------------------------------------------------------------- the machine's GPUs (no CUDA init)

def detect_gpu_count(dev: Path = Path("/dev")) -> int:
    """Number of NVIDIA devices, without importing torch (which would initialise CUDA).

    /dev/nvidia<k> nodes first; where there are none but a GPU may still exist (WSL2 exposes
    /dev/dxg, some containers hide the nodes) `nvidia-smi -L` counts them. A GPU that cannot be
    counted is an error, never a silent CPU run."""
    count = sum(1 for node in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", node.name))
    if count:
        return count
    smi = nvidia_smi_ids()
    if smi:
        return len(smi)
    if (dev / "dxg").exists() or (dev / "nvidiactl").exists():
        raise EmogridError("this machine seems to have an NVIDIA GPU (/dev/dxg or /dev/nvidiactl) but emogrid "
                           "cannot count it (no /dev/nvidia<k>, no working nvidia-smi)",
                           hint="declare the count: `--resources gpu=N` for Snakemake, or EMOGRID_GPUS=N "
                                "(EMOGRID_GPUS=0 to train on CPU)")
    return 0


@functools.lru_cache(maxsize=1)
def nvidia_smi_ids() -> dict[str, str]:
    """{index: UUID} of the machine's GPUs from nvidia-smi (PCI bus order), {} without it."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        res = subprocess.run([exe, "--query-gpu=index,uuid", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    ids = {}
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].startswith("GPU-"):
            ids[parts[0]] = parts[1]
    return ids
