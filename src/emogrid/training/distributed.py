"""One cell over several devices: `emogrid train --processes N` relaunches itself under torchrun.

The HF Trainer does the rest through its own DDP/FSDP support: DDP (each process holds the
model, gradients are averaged) for adapter methods, FSDP (parameters, gradients and optimizer
state sharded) for full fine-tuning on CUDA. The study's recipe does not depend on the device
count: `train.batch_size` stays the *global* micro-batch, split evenly over the processes, and
the data order is the single-process order (accelerate's batch sharding hands consecutive
per-process batches of one permutation to the ranks), so a 2-process cell sees the same
examples in each optimizer step as a 1-process cell. Only rank 0 writes the cell's files.
"""

from __future__ import annotations

import os
import subprocess
import sys

from emogrid.errors import CellError


def rank(environ=None) -> int:
    environ = os.environ if environ is None else environ
    return int(environ.get("RANK", "0") or 0)


def world_size(environ=None) -> int:
    environ = os.environ if environ is None else environ
    try:
        return max(1, int(environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def is_main(environ=None) -> bool:
    return rank(environ) == 0


def launch_command(train_argv: list[str], processes: int) -> list[str]:
    """torchrun (torch.distributed.run) on this machine, N processes of `python -m emogrid train`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "emogrid", "train", *train_argv]


def launch(train_argv: list[str], processes: int, threads: int) -> int:
    env = dict(os.environ)
    # the job's CPU threads are split among its processes (torch would otherwise oversubscribe)
    env["OMP_NUM_THREADS"] = str(max(1, threads // processes))
    env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    print(f"emogrid train: launching {processes} processes (torchrun): {' '.join(launch_command(['...'], processes))}",
          file=sys.stderr, flush=True)
    return subprocess.call(launch_command(train_argv, processes), env=env)


def per_device_batch(batch_size: int, processes: int) -> int:
    """The global micro-batch split over the processes (it must divide evenly: same recipe)."""
    if processes <= 1:
        return batch_size
    if batch_size % processes:
        raise CellError(f"train.batch_size {batch_size} cannot be split evenly over {processes} processes",
                        hint=f"use a batch_size that is a multiple of {processes} (resources.train.gpu), "
                             "so the cell trains with the same global batch as on one GPU")
    return batch_size // processes


def parallel_arguments(spec: dict, cuda: bool, processes: int) -> dict:
    """TrainingArguments for this many processes: FSDP for full fine-tuning on CUDA, else DDP."""
    if processes <= 1:
        return {}
    if not cuda:
        return {"ddp_backend": "gloo"}
    if spec["method"]["peft"] == "full":
        return {"fsdp": "full_shard auto_wrap",
                "fsdp_config": {"use_orig_params": True, "sync_module_states": True}}
    return {"ddp_backend": "nccl", "ddp_find_unused_parameters": False}


def parallel_mode(spec: dict, cuda: bool, processes: int) -> str:
    if processes <= 1:
        return "single"
    if cuda and spec["method"]["peft"] == "full":
        return "fsdp"
    return "ddp"
