"""`emogrid gpu-slot`: run a command holding its own GPU(s) on a shared machine.

Snakemake only *counts* GPUs (`--resources gpu=N`); it never says which GPU a job should
use, so two concurrent jobs would both land on GPU 0. This wrapper hands out GPUs with one
lock file per GPU:

    emogrid gpu-slot [--gpus N] [--need K] [--lock-dir DIR] -- CMD ARGS...

1. Under a scheduler that already assigned devices (SLURM sets CUDA_VISIBLE_DEVICES for a
   job that asked for `--gpus`/`--gres`), the assignment is honoured: no lock, no change.
   Inside a SLURM job that got no GPU, the command runs unchanged as well. One exception: a
   Snakemake with a declared GPU count (the workstation profile) running inside one big
   allocation of several GPUs shares those out like step 3, with locks scoped to that job id
   (see `scheduler_pool`).
2. With 0 GPUs (a CPU machine, or a cell that needs none) the command runs with
   CUDA_VISIBLE_DEVICES="" and takes no lock.
3. Otherwise it takes K free slots out of N (a non-blocking `fcntl.flock` on
   `DIR/gpu-<id>.lock`, waiting while all are busy), sets CUDA_VISIBLE_DEVICES to them and
   *execs* the command. The locked file descriptor is inherited by the command, so the slot is
   held exactly as long as the command (or a child it passed the descriptor to) lives, and the
   OS releases it whatever way the job ends, SIGKILL included. Exit codes and signals are the
   command's own: there is no wrapper process left in between.

4. Packing (`--cells-per-gpu auto|N`, env EMOGRID_CELLS_PER_GPU; resources.train.cells_per_gpu):
   a one-GPU job takes a *share* of a GPU instead, its planned memory (`--mem-mb`) or 1/N of it,
   on the GPU with the most room, waiting while none has room (emogrid.scheduling.gpu_ledger;
   shares never fill the last max(1 GiB, 5 %) of a GPU). The job learns its share from the
   environment: EMOGRID_GPU_MEM_FRACTION caps its PyTorch's caching allocator
   (emogrid.models.devices.cap_gpu_memory: a job over its plan runs out of memory itself, never
   its neighbour) and EMOGRID_GPU_SHARE_FILE is its ledger record, which lists the jobs that
   shared its GPU (metrics.json says so: emogrid.training.efficiency).

Every command it runs gets PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True unless the user set
an allocator configuration (the memory plan's allocator term assumes it).

N, the number of GPUs: `--gpus`, else env EMOGRID_GPUS, else the length of the id list (below),
else the number of /dev/nvidia<k> devices (0 on a machine without NVIDIA GPUs).
The ids handed out: env EMOGRID_GPU_IDS (e.g. "2,3"), else a CUDA_VISIBLE_DEVICES the user
exported outside any scheduler (so `CUDA_VISIBLE_DEVICES=2,3 snakemake ...` shares GPUs 2 and 3
among the jobs), else 0..N-1. The lock directory is machine-wide by default
(/tmp/emogrid-gpu-locks, env EMOGRID_GPU_LOCK_DIR) so that two studies running at once on one
machine don't share a GPU either. `emogrid gpu-slot --list` shows who holds which slot.

The ids come from `emogrid.scheduling.gpu_ids`, the lock files from `emogrid.scheduling.gpu_locks`, shares of a GPU
from `emogrid.scheduling.gpu_ledger`; this module is the command that puts them together and execs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from emogrid.errors import EmogridError
from emogrid.scheduling.gpu_ids import gpu_pool, lock_key, nonneg_int, scheduler_pool, under_scheduler
from emogrid.scheduling.gpu_locks import DEFAULT_LOCK_DIR, acquire, list_slots, lock_dir, open_slot_file, record_holder


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", type=nonneg_int, default=None, metavar="N",
                   help="GPUs on this machine (default: env EMOGRID_GPUS, else the id list, "
                        "else the count of /dev/nvidia<k>); 0 = run on CPU")
    p.add_argument("--need", type=nonneg_int, default=1, metavar="K",
                   help="GPUs this command needs (default 1; 0 = run on CPU)")
    p.add_argument("--cells-per-gpu", default=None, metavar="auto|N",
                   help="jobs sharing one GPU: `auto` packs by planned GPU memory (--mem-mb), N = at most "
                        "N per GPU, 1 = a GPU per job (default: env EMOGRID_CELLS_PER_GPU, else 1)")
    p.add_argument("--mem-mb", type=float, default=None, metavar="MIB",
                   help="this job's planned GPU memory incl. safety margin (for --cells-per-gpu auto)")
    p.add_argument("--lock-dir", default=None, metavar="DIR",
                   help=f"one lock file per GPU (default: env EMOGRID_GPU_LOCK_DIR, else {DEFAULT_LOCK_DIR})")
    p.add_argument("--list", action="store_true", help="show the slots and who holds them, then exit")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")


def cells_per_gpu(arg: str | None, env: dict):
    from emogrid.scheduling.gpu_ledger import parse_mode

    return parse_mode(arg if arg is not None else env.get("EMOGRID_CELLS_PER_GPU"))


def place_share(directory: Path, pool: list[str], mode, mem_mb: float | None, command: list[str], env: dict,
                say) -> tuple[list[str], list[int]]:
    """Block until a GPU of `pool` has room for this job; ([gpu_id], [held fds]). Exports what
    the job needs to keep to its share: EMOGRID_GPU_MEM_FRACTION (its PyTorch's cap,
    emogrid.models.devices.cap_gpu_memory) and EMOGRID_GPU_SHARE_FILE (its ledger record, where
    its co-tenants are listed)."""
    from emogrid.scheduling.gpu_ledger import Ledger, gpu_memory_mb, job_label, share_fraction, usable_mb

    capacity = gpu_memory_mb(pool, env) if mode == "auto" else known_gpu_memory_mb(pool, env)
    if mode == "auto" and not mem_mb:
        say("emogrid gpu-slot: cells_per_gpu auto but no planned GPU memory for this job (--mem-mb): "
            "it takes a whole GPU")
    if mode == "auto" and mem_mb and all(mem_mb > usable_mb(capacity[g]) for g in pool):
        largest = max(pool, key=lambda g: capacity[g])
        raise EmogridError(f"this job plans {mem_mb:.0f} MiB of GPU memory (with the safety margin) but the "
                           f"largest GPU has {capacity[largest]:.0f} MiB, of which packed jobs may fill "
                           f"{usable_mb(capacity[largest]):.0f} (the rest is headroom: emogrid.scheduling.gpu_ledger)",
                           hint="use qlora or a smaller train.batch_size, lower resources.safety_margin, or "
                                "give the cell several GPUs (resources.train.gpu: N)")
    info = {"since": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": os.uname().nodename, "cmd": " ".join(command)[:300],
            "label": job_label(command)}
    ledger = Ledger(directory, lock_key, open_slot_file)
    mem_mb = mem_mb or None
    limit = (lambda g: usable_mb(capacity[g]) / capacity[g]) if mode == "auto" else None  # noqa: E731
    gpu, fds, record = ledger.acquire(pool, lambda g: share_fraction(mode, mem_mb, capacity[g]), mem_mb, info,
                                      limit_of=limit, log=say)
    share = share_fraction(mode, mem_mb, capacity[gpu])
    cap = memory_cap(mode, mem_mb, capacity[gpu])
    if cap is not None:
        env["EMOGRID_GPU_MEM_FRACTION"] = f"{cap:.4f}"
    env["EMOGRID_GPU_SHARE_FILE"] = str(record)
    say(f"emogrid gpu-slot: packed on GPU {gpu} ({100 * share:.0f}% of it"
        + (f": {mem_mb:.0f} of {capacity[gpu]:.0f} MiB planned" if mode == "auto" and mem_mb else "")
        + (f"; PyTorch capped at {100 * cap:.1f}%)" if cap is not None else ")"))
    return [gpu], fds


def memory_cap(mode, mem_mb: float | None, capacity_mb: float | None) -> float | None:
    """The fraction of the GPU a packed job's PyTorch may reserve (set_per_process_memory_fraction),
    or None for a job that has the GPU to itself. `auto`: its planned MiB less the CUDA context,
    which lives outside PyTorch's allocator and so outside the cap; `N` per GPU: 1/N of what
    packing may fill (less the context where the GPU's memory is known)."""
    from emogrid.models.devices import CUDA_CONTEXT_MB
    from emogrid.scheduling.gpu_ledger import HEADROOM_FRACTION, usable_mb

    if mode == "auto":
        if not mem_mb or not capacity_mb:
            return None
        return max(mem_mb - CUDA_CONTEXT_MB, 0.0) / capacity_mb
    if capacity_mb:
        return max(usable_mb(capacity_mb) / int(mode) - CUDA_CONTEXT_MB, 0.0) / capacity_mb
    return (1.0 - HEADROOM_FRACTION) / int(mode)


def known_gpu_memory_mb(pool: list[str], env: dict) -> dict:
    """Each GPU's memory where it can be learnt (EMOGRID_GPU_MEM_MB, nvidia-smi), else None."""
    from emogrid.scheduling.gpu_ledger import gpu_memory_mb

    try:
        return gpu_memory_mb(pool, env)
    except EmogridError:
        return {gpu: None for gpu in pool}


def _exec(command: list[str], env: dict) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as err:  # only returns on failure
        print(f"emogrid gpu-slot: cannot run {command[0]!r}: {err}", file=sys.stderr)
        return 127 if isinstance(err, FileNotFoundError) else 126
    return 0  # unreachable


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    # The memory plan's allocator term assumes expandable segments: segments grow in place
    # instead of one cudaMalloc per request size, so dynamic padding fragments far less. A
    # setting of the user's own stays as it is.
    if not env.get("PYTORCH_CUDA_ALLOC_CONF") and not env.get("PYTORCH_ALLOC_CONF"):
        env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]

    if args.list:
        return list_slots(lock_dir(args.lock_dir, env), gpu_pool(args.gpus, env))
    if not command:
        raise EmogridError("no command given", hint="emogrid gpu-slot [--gpus N] -- CMD ARGS...")

    # 1. a scheduler (or an outer gpu-slot) already decided
    if env.get("EMOGRID_GPU_SLOT") is not None and "CUDA_VISIBLE_DEVICES" in env:
        return _exec(command, env)
    directory = None
    if under_scheduler(env):
        cvd = env.get("CUDA_VISIBLE_DEVICES")
        pool = scheduler_pool(args.gpus, args.need, env, packing=cells_per_gpu(args.cells_per_gpu, env) != 1)
        if pool is None:
            print("emogrid gpu-slot: under SLURM, keeping its assignment: CUDA_VISIBLE_DEVICES="
                  + ("(unset: no GPU requested)" if cvd is None else cvd), file=sys.stderr, flush=True)
            return _exec(command, env)
        # a Snakemake running inside one allocation shares its GPUs among its jobs
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
        directory = lock_dir(args.lock_dir, env) / f"slurm-{re.sub(r'[^A-Za-z0-9_.-]', '_', job_id)}"
        directory.mkdir(exist_ok=True)
    else:
        pool = gpu_pool(args.gpus, env)
    # 2. CPU
    if not pool or args.need == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["EMOGRID_GPU_SLOT"] = ""
        return _exec(command, env)
    if args.need > len(pool):
        raise EmogridError(f"this job needs {args.need} GPUs but the machine offers {len(pool)} "
                           f"({','.join(pool)})", hint="lower resources.train.gpu or declare more GPUs")

    # 3. lock K slots (or a share of one) and exec with the locks inherited
    directory = directory or lock_dir(args.lock_dir, env)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    mode = cells_per_gpu(args.cells_per_gpu, env)
    if mode != 1 and args.need == 1:
        gpu_ids, fds = place_share(directory, pool, mode, args.mem_mb, command, env, say)
        held = {f"{gpu_ids[0]}#{i}": fd for i, fd in enumerate(fds)}
    else:
        held = acquire(directory, pool, args.need, log=say)
        gpu_ids = list(held)
        for fd in held.values():
            record_holder(fd, gpu_ids, command)
    for fd in held.values():
        os.set_inheritable(fd, True)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    env["EMOGRID_GPU_SLOT"] = ",".join(gpu_ids)
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's indices = nvidia-smi's = the slots'

    print(f"emogrid gpu-slot: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    code = _exec(command, env)
    for fd in held.values():  # exec failed
        os.close(fd)
    return code
