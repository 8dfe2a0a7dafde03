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
   on the GPU with the most room, waiting while none has room (emogrid.gpu_ledger).

N, the number of GPUs: `--gpus`, else env EMOGRID_GPUS, else the length of the id list (below),
else the number of /dev/nvidia<k> devices (0 on a machine without NVIDIA GPUs).
The ids handed out: env EMOGRID_GPU_IDS (e.g. "2,3"), else a CUDA_VISIBLE_DEVICES the user
exported outside any scheduler (so `CUDA_VISIBLE_DEVICES=2,3 snakemake ...` shares GPUs 2 and 3
among the jobs), else 0..N-1. The lock directory is machine-wide by default
(/tmp/emogrid-gpu-locks, env EMOGRID_GPU_LOCK_DIR) so that two studies running at once on one
machine don't share a GPU either. `emogrid gpu-slot --list` shows who holds which slot.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import functools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from emogrid.errors import EmogridError

DEFAULT_LOCK_DIR = "/tmp/emogrid-gpu-locks"
POLL_SECONDS = 0.25
WAIT_MESSAGE_EVERY = 60.0

# Variables that mean "a scheduler started this process and owns device assignment".
SCHEDULER_VARS = ("SLURM_JOB_ID", "SLURM_JOBID")
# an index, a GPU-/MIG- UUID, or an old-style MIG id MIG-GPU-<uuid>/<gi>/<ci> (driver < 470)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]*$|^MIG-GPU-[A-Za-z0-9-]+/\d+/\d+$")


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", type=_nonneg_int, default=None, metavar="N",
                   help="GPUs on this machine (default: env EMOGRID_GPUS, else the id list, "
                        "else the count of /dev/nvidia<k>); 0 = run on CPU")
    p.add_argument("--need", type=_nonneg_int, default=1, metavar="K",
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


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


# --------------------------------------------------------------------------- decisions


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


def detect_gpu_count(dev: Path = Path("/dev")) -> int:
    """Number of NVIDIA devices, without importing torch (which would initialise CUDA).

    /dev/nvidia<k> nodes first; where there are none but a GPU may still exist (WSL2 exposes
    /dev/dxg, some containers hide the nodes) `nvidia-smi -L` counts them. A GPU that cannot be
    counted is an error, never a silent CPU run."""
    count = sum(1 for node in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", node.name))
    if count:
        return count
    smi = _nvidia_smi_ids()
    if smi:
        return len(smi)
    if (dev / "dxg").exists() or (dev / "nvidiactl").exists():
        raise EmogridError("this machine seems to have an NVIDIA GPU (/dev/dxg or /dev/nvidiactl) but emogrid "
                           "cannot count it (no /dev/nvidia<k>, no working nvidia-smi)",
                           hint="declare the count: `--resources gpu=N` for Snakemake, or EMOGRID_GPUS=N "
                                "(EMOGRID_GPUS=0 to train on CPU)")
    return 0


@functools.lru_cache(maxsize=1)
def _nvidia_smi_ids() -> dict[str, str]:
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


def lock_key(gpu_id: str, uuids: dict[str, str] | None = None) -> str:
    """The name a GPU's slot file is keyed by: its UUID where known, so `0` and `GPU-...` of the
    same device share one slot. Indices are nvidia-smi's (gpu-slot sets CUDA_DEVICE_ORDER=PCI_BUS_ID
    so that CUDA numbers devices the same way)."""
    uuids = _nvidia_smi_ids() if uuids is None else uuids
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
        return _nonneg_int(value)
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


# --------------------------------------------------------------------------- locking


def lock_dir(arg: str | None, env: dict) -> Path:
    path = Path(arg or env.get("EMOGRID_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)
    if not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
            if str(path) == DEFAULT_LOCK_DIR:
                os.chmod(path, 0o1777)  # machine-wide: any user may create slot files
        except OSError as err:
            raise EmogridError(f"cannot create the GPU lock directory {path}: {err}",
                               hint="pass --lock-dir or set EMOGRID_GPU_LOCK_DIR") from None
    return path


def _lock_path(directory: Path, gpu_id: str) -> Path:
    return directory / f"gpu-{lock_key(gpu_id)}.lock"


def open_slot_file(path: Path) -> int:
    """Open (creating if needed) a slot file for locking.

    An existing file is opened *without* O_CREAT: with fs.protected_regular (default on recent
    Linux) O_CREAT on another user's file in a sticky world-writable directory such as /tmp fails
    with EACCES even when the file is mode 0666. A file we may not write is opened read-only:
    flock works on any open descriptor."""
    for _ in range(10):
        for flags in (os.O_RDWR, os.O_RDONLY):
            try:
                return os.open(path, flags)
            except FileNotFoundError:
                break
            except PermissionError:
                continue
        else:
            raise PermissionError(errno.EACCES, "neither readable nor writable", str(path))
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # another job created it in between: open the existing file
    raise OSError(errno.EAGAIN, "slot file keeps appearing and disappearing", str(path))


def try_lock(directory: Path, gpu_id: str) -> int | None:
    """A file descriptor holding an exclusive lock on this GPU's slot, or None if it is busy."""
    path = _lock_path(directory, gpu_id)
    try:
        fd = open_slot_file(path)
    except PermissionError as err:
        raise EmogridError(f"cannot open GPU slot file {path}: {err}",
                           hint="pass --lock-dir or set EMOGRID_GPU_LOCK_DIR to a writable folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    try:
        os.fchmod(fd, 0o666)  # best effort, so other users can lock it later
    except OSError:
        pass
    return fd


def acquire(directory: Path, pool: list[str], need: int, *, poll: float = POLL_SECONDS,
            log=None) -> dict[str, int]:
    """Block until `need` slots of `pool` are free; return {gpu_id: locked fd}.

    All-or-nothing per attempt: a partial set is released before waiting again, so two jobs
    that each need two GPUs can't deadlock holding one each.
    """
    from emogrid import gpu_ledger

    started = time.monotonic()
    last_message = None
    wants: list = []
    while True:
        held: dict[str, int] = {}
        for gpu_id in pool:
            fd = try_lock(directory, gpu_id)
            if fd is not None:
                held[gpu_id] = fd
                if len(held) == need:
                    gpu_ledger.unreserve(wants)
                    return held
        for fd in held.values():
            os.close(fd)
        if not wants:
            # reserve the `need` GPUs with the least packed load: packed cells stop joining them
            load = sorted(pool, key=lambda g: (gpu_ledger.used_fraction(directory, lock_key(g), clean=False),
                                               pool.index(g)))
            wants = [gpu_ledger.reserve(directory, lock_key(g)) for g in load[:need]]
        now = time.monotonic()
        if log and (last_message is None or now - last_message >= WAIT_MESSAGE_EVERY):
            log(f"emogrid gpu-slot: all {len(pool)} GPU slots busy (need {need}); waiting "
                f"({now - started:.0f} s so far; `emogrid gpu-slot --list` shows the holders)")
            last_message = now
        time.sleep(poll)


def _describe(fd: int, gpu_ids: list[str], command: list[str]) -> None:
    info = (f"pid={os.getpid()} gpus={','.join(gpu_ids)} since={time.strftime('%Y-%m-%dT%H:%M:%S')} "
            f"host={os.uname().nodename} cmd={' '.join(command)[:300]}\n")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode("utf-8", "replace"), 0)
    except OSError:
        pass


def list_slots(directory: Path, pool: list[str]) -> int:
    from emogrid.gpu_ledger import live_shares

    print(f"lock dir: {directory}   GPUs: {','.join(pool) if pool else '(none)'}")
    for gpu_id in pool:
        shares = live_shares(directory, lock_key(gpu_id), clean=False)
        fd = try_lock(directory, gpu_id)
        if fd is not None:
            os.close(fd)
            print(f"  gpu {gpu_id}: free")
        elif shares:
            used = sum(float(s.get("fraction", 1.0)) for s in shares)
            print(f"  gpu {gpu_id}: shared by {len(shares)} job(s), {100 * used:.0f}% taken")
            for share in shares:
                mb = f"{share['mb']:.0f} MiB" if share.get("mb") else f"{100 * float(share.get('fraction', 1)):.0f}%"
                print(f"      pid={share.get('pid')} {mb} since={share.get('since')} cmd={share.get('cmd', '')}")
        else:
            text = _lock_path(directory, gpu_id).read_text(errors="replace").strip()
            print(f"  gpu {gpu_id}: busy  {text}")
    return 0


# --------------------------------------------------------------------------- main


def cells_per_gpu(arg: str | None, env: dict):
    from emogrid.gpu_ledger import parse_mode

    return parse_mode(arg if arg is not None else env.get("EMOGRID_CELLS_PER_GPU"))


def place_share(directory: Path, pool: list[str], mode, mem_mb: float | None, command: list[str], env: dict,
                say) -> tuple[list[str], list[int]]:
    """Block until a GPU of `pool` has room for this job; ([gpu_id], [held fds])."""
    from emogrid.gpu_ledger import Ledger, gpu_memory_mb, share_fraction

    capacity = gpu_memory_mb(pool, env) if mode == "auto" else {gpu: None for gpu in pool}
    if mode == "auto" and not mem_mb:
        say("emogrid gpu-slot: cells_per_gpu auto but no planned GPU memory for this job (--mem-mb): "
            "it takes a whole GPU")
    if mode == "auto" and mem_mb and all(mem_mb > capacity[g] for g in pool):
        raise EmogridError(f"this job plans {mem_mb:.0f} MiB of GPU memory (with the safety margin) but the "
                           f"largest GPU has {max(capacity.values()):.0f} MiB",
                           hint="use qlora or a smaller train.batch_size, lower resources.safety_margin, or "
                                "give the cell several GPUs (resources.train.gpu: N)")
    info = {"since": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": os.uname().nodename, "cmd": " ".join(command)[:300]}
    ledger = Ledger(directory, lock_key, open_slot_file)
    mem_mb = mem_mb or None
    gpu, fds = ledger.acquire(pool, lambda g: share_fraction(mode, mem_mb, capacity[g]), mem_mb, info, log=say)
    share = share_fraction(mode, mem_mb, capacity[gpu])
    say(f"emogrid gpu-slot: packed on GPU {gpu} ({100 * share:.0f}% of it"
        + (f": {mem_mb:.0f} of {capacity[gpu]:.0f} MiB planned)" if mode == "auto" and mem_mb else ")"))
    return [gpu], fds


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
            _describe(fd, gpu_ids, command)
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
