"""One cell over several devices: `emogrid train --processes N` relaunches itself under torchrun.

The HF Trainer does the rest through its own DDP/FSDP support: DDP (each process holds the
model, gradients are averaged) for adapter methods, FSDP (parameters, gradients and optimizer
state sharded) for full fine-tuning on CUDA. The study's recipe does not depend on the device
count: `train.batch_size` stays the *global* micro-batch, split evenly over the processes, and
the data order is the single-process order (accelerate's batch sharding hands consecutive
per-process batches of one permutation to the ranks), so a 2-process cell sees the same
examples in each optimizer step as a 1-process cell. Only rank 0 writes the cell's files.

Ranks agree before they act: a stop request (SIGTERM) is all-reduced at each step end
(`any_rank`), checkpoints are cleaned by rank 0 behind a `barrier`, and a failed rank leaves
its own record that the launcher merges into the cell's one failure.json (`emogrid.training.failures`).
FSDP (FSDP2) loads the weights on rank 0 only (the others build the model on the meta device)
and reduces gradients in fp32 like the single-GPU autocast path (`fsdp_mixed_precision`).
"""

from __future__ import annotations

import os
import subprocess
import sys

from emogrid.errors import CellError
from emogrid.study.spec_sections import MethodSpec


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


# A multi-process cell where no GPU is visible runs its processes on the CPU (gloo) only when
# this is "1": the CPU DDP tests ask for it; a study asking for N GPUs on a machine without them
# is told so at once instead.
CPU_PROCESSES_VAR = "EMOGRID_CPU_PROCESSES"


def device_problem(processes: int, environ=None) -> str | None:
    """Why this machine cannot run a cell over `processes` GPUs, or None when it can."""
    environ = os.environ if environ is None else environ
    if processes <= 1:
        return None
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible >= processes or (visible == 0 and environ.get(CPU_PROCESSES_VAR) == "1"):
        return None
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    seen = f"CUDA_VISIBLE_DEVICES={cvd!r}" if cvd is not None else "CUDA_VISIBLE_DEVICES unset"
    return (f"this cell runs over {processes} GPUs (resources.train.gpu: {processes}) but "
            f"{visible if visible else 'no'} GPU{'' if visible == 1 else 's'} "
            f"{'is' if visible == 1 else 'are'} visible ({seen})")


def launch_command(train_argv: list[str], processes: int) -> list[str]:
    """torchrun (torch.distributed.run) on this machine, N processes of `python -m emogrid train`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "emogrid", "train", *train_argv]


def launch(train_argv: list[str], processes: int, threads: int) -> tuple[int, bool]:
    """Run torchrun and wait for it: (its exit code, whether this launcher was sent SIGTERM or
    SIGINT). A signal is passed on to torchrun, which passes it to the ranks (they save and
    stop together), and the launcher keeps waiting so it can settle the outcome."""
    import signal

    env = dict(os.environ)
    # the job's CPU threads are split among its processes (torch would otherwise oversubscribe)
    env["OMP_NUM_THREADS"] = str(max(1, threads // processes))
    env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    print(f"emogrid train: launching {processes} processes (torchrun): {' '.join(launch_command(['...'], processes))}",
          file=sys.stderr, flush=True)
    proc = subprocess.Popen(launch_command(train_argv, processes), env=env)
    signalled = []

    def forward(signum, frame):
        signalled.append(signum)
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait(), bool(signalled)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def per_device_batch(batch_size: int, processes: int) -> int:
    """The global micro-batch split over the processes (it must divide evenly: same recipe)."""
    if processes <= 1:
        return batch_size
    if batch_size % processes:
        raise CellError(f"train.batch_size {batch_size} cannot be split evenly over {processes} processes",
                        hint=f"use a batch_size that is a multiple of {processes} (resources.train.gpu), "
                             "so the cell trains with the same global batch as on one GPU")
    return batch_size // processes


# FSDP2 (transformers 5 / accelerate 1.x; FSDP1's use_orig_params / sync_module_states do not
# apply): a full shard per transformer layer, weights read by rank 0 alone and broadcast
# (cpu_ram_efficient_loading: the other ranks hold no host copy), one HF-format state dict.
FSDP_CONFIG = {"version": 2, "reshard_after_forward": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
               "cpu_ram_efficient_loading": True, "state_dict_type": "FULL_STATE_DICT"}


def parallel_arguments(spec: dict, cuda: bool, processes: int) -> dict:
    """TrainingArguments for this many processes: FSDP for full fine-tuning on CUDA, else DDP.

    DDP never searches for unused parameters (every trainable tensor gets a gradient each step),
    on the CPU (gloo, the tests) exactly as on CUDA (nccl), so a CPU run checks the CUDA setting."""
    if processes <= 1:
        return {}
    if cuda and MethodSpec.from_spec(spec).peft == "full":
        return {"fsdp": True, "fsdp_config": dict(FSDP_CONFIG)}
    return {"ddp_backend": "nccl" if cuda else "gloo", "ddp_find_unused_parameters": False}


def fsdp_mixed_precision(precision: str):
    """FSDP2's mixed-precision policy for a cell's precision: compute in bf16/fp16 but reduce
    gradients in fp32 (accelerate's own policy reduces in the compute dtype, unlike the
    single-GPU autocast path whose gradients of fp32 weights are fp32). None for fp32."""
    if precision not in ("bf16", "fp16"):
        return None
    import torch

    compute = torch.bfloat16 if precision == "bf16" else torch.float16
    return {"param_dtype": compute, "reduce_dtype": torch.float32, "output_dtype": compute}


def use_fsdp_precision(args, precision: str) -> None:
    """Put `fsdp_mixed_precision` into the TrainingArguments' FSDP plugin arguments (the Trainer
    builds accelerate's FullyShardedDataParallelPlugin from them; accelerate keeps a policy that
    is set and only fills in its bf16-reduce default when none is)."""
    plugin_args = getattr(args, "fsdp_plugin_args", None)
    policy = fsdp_mixed_precision(precision)
    if plugin_args is not None and policy is not None:
        plugin_args["mixed_precision_policy"] = policy


def loads_on_meta(spec: dict, cuda: bool, environ=None) -> bool:
    """Whether this rank builds the model on the meta device instead of reading the weights:
    FSDP ranks other than 0 (rank 0 broadcasts the weights when the model is sharded)."""
    processes = world_size(environ)
    return parallel_mode(spec, cuda, processes) == "fsdp" and not is_main(environ)


# ---------------------------------------------------------------- the ranks agree


def _initialised() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


_flag_groups: dict = {}


def _flag_group():
    """The process group for small host-side agreements: the default one under gloo, else a
    gloo group made once (no CUDA tensor, no device sync per step under NCCL)."""
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        return None
    key = id(dist.group.WORLD)
    if key not in _flag_groups:  # every rank reaches its first agreement at the same point
        _flag_groups[key] = dist.new_group(backend="gloo")
    return _flag_groups[key]


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on any (a collective: every rank calls it at the
    same point). Outside a process group: `flag`."""
    if not _initialised():
        return bool(flag)
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_flag_group())
    return bool(value.item())


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if _initialised():
        import torch.distributed as dist

        dist.barrier()


def parallel_mode(spec: dict, cuda: bool, processes: int) -> str:
    if processes <= 1:
        return "single"
    if cuda and MethodSpec.from_spec(spec).peft == "full":
        return "fsdp"
    return "ddp"
